//! The names of the series this crate emits, and of their labels and label
//! values (see the table in [the module docs](super)).

/// Label on every series: the local server id.
pub const NODE: &str = "node";
/// Label of the per-peer series: the follower's server id.
pub const PEER: &str = "peer";
/// Label of [`WRITE_STAGE`]: `persist`, `commit` or `apply`.
pub const STAGE_LABEL: &str = "stage";
/// Label of [`STATE`]: the role.
pub const STATE_LABEL: &str = "state";
/// Label of the snapshot histograms: `take`, `install` or `restore`.
pub const KIND: &str = "kind";

/// Gauge: current term.
pub const TERM: &str = "raft_term";
/// Gauge: 1 for the node's role (label `state`), 0 for the others.
pub const STATE: &str = "raft_state";
/// Gauge: commit index.
pub const COMMIT_INDEX: &str = "raft_commit_index";
/// Gauge: index of the last entry applied to the FSM.
pub const APPLIED_INDEX: &str = "raft_applied_index";
/// Gauge: index of the last entry in the log.
pub const LAST_LOG_INDEX: &str = "raft_last_log_index";
/// Gauge: index of the newest snapshot taken, installed or restored.
pub const LAST_SNAPSHOT_INDEX: &str = "raft_last_snapshot_index";
/// Gauge (leader, per peer): entries the follower is behind.
pub const PEER_LAG: &str = "raft_peer_lag_entries";
/// Gauge (leader, per peer): seconds since the follower last answered.
pub const PEER_LAST_CONTACT: &str = "raft_peer_last_contact_seconds";

/// Counter: times this node learned of a new leader.
pub const LEADER_CHANGES: &str = "raft_leader_changes_total";
/// Counter: elections this node started.
pub const ELECTIONS: &str = "raft_elections_total";
/// Counter: entries written to the local log store.
pub const ENTRIES_APPENDED: &str = "raft_log_entries_appended_total";
/// Counter (per peer): AppendEntries carrying entries sent.
pub const APPEND_ENTRIES_SENT: &str = "raft_append_entries_sent_total";
/// Counter (per peer): payload bytes of the entries sent.
pub const APPEND_ENTRIES_SENT_BYTES: &str = "raft_append_entries_sent_bytes_total";
/// Counter (per peer): AppendEntries without entries sent.
pub const HEARTBEATS_SENT: &str = "raft_heartbeats_sent_total";
/// Counter: snapshots taken.
pub const SNAPSHOTS_TAKEN: &str = "raft_snapshots_taken_total";
/// Counter: snapshots from a leader installed.
pub const SNAPSHOTS_INSTALLED: &str = "raft_snapshots_installed_total";

/// Histogram (label `stage`): one stage of a client write, per proposal batch.
pub const WRITE_STAGE: &str = "raft_write_stage_seconds";
/// Histogram: a client write from entering the log to applied, per proposal batch.
pub const WRITE: &str = "raft_write_seconds";
/// Histogram: client writes folded into one proposal.
pub const WRITE_BATCH: &str = "raft_write_batch_writes";
/// Histogram: one durable write of entries to the log store.
pub const FSYNC: &str = "raft_fsync_seconds";
/// Histogram (per peer): entries in one AppendEntries.
pub const APPEND_ENTRIES_BATCH_ENTRIES: &str = "raft_append_entries_batch_entries";
/// Histogram (per peer): payload bytes in one AppendEntries.
pub const APPEND_ENTRIES_BATCH_BYTES: &str = "raft_append_entries_batch_bytes";
/// Histogram (label `kind`): duration of a snapshot take, install or restore.
pub const SNAPSHOT_DURATION: &str = "raft_snapshot_duration_seconds";
/// Histogram (label `kind`): size of that snapshot.
pub const SNAPSHOT_SIZE: &str = "raft_snapshot_size_bytes";

/// Every series name, in the order of the table in the module docs.
pub const ALL: [&str; 24] = [
    TERM,
    STATE,
    COMMIT_INDEX,
    APPLIED_INDEX,
    LAST_LOG_INDEX,
    LAST_SNAPSHOT_INDEX,
    PEER_LAG,
    PEER_LAST_CONTACT,
    LEADER_CHANGES,
    ELECTIONS,
    ENTRIES_APPENDED,
    APPEND_ENTRIES_SENT,
    APPEND_ENTRIES_SENT_BYTES,
    HEARTBEATS_SENT,
    SNAPSHOTS_TAKEN,
    SNAPSHOTS_INSTALLED,
    WRITE_STAGE,
    WRITE,
    WRITE_BATCH,
    FSYNC,
    APPEND_ENTRIES_BATCH_ENTRIES,
    APPEND_ENTRIES_BATCH_BYTES,
    SNAPSHOT_DURATION,
    SNAPSHOT_SIZE,
];
