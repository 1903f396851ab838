//! Metrics through the [`metrics`](https://docs.rs/metrics) crate facade,
//! and what the write path traces.
//!
//! Every node emits the series below through the `metrics` facade. The
//! library installs no recorder and no exporter: a program that wants them
//! installs one (for example `metrics-exporter-prometheus`, as
//! `kv serve --metrics-addr` does) **before** it starts its nodes, since
//! each node registers its series once, when it starts (a node started
//! before any recorder was installed emits nothing). Without a recorder
//! every emission is a branch on an empty handle.
//!
//! These series complement [`Metrics`](crate::Metrics) (the watch channel
//! of [`Raft::metrics`](crate::Raft::metrics)): that one is a point-in-time
//! view for code in the process, these are for a monitoring system.
//!
//! # Series
//! Names follow Prometheus conventions (base units: seconds and bytes;
//! counters end in `_total`). Every series carries the label `node`: the
//! local server id. Their names are also constants in [`names`], and
//! [`describe`] registers their help texts and units with the installed
//! recorder (each node also does when it starts).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `raft_term` | gauge | `node` | current term |
//! | `raft_state` | gauge | `node`, `state` | 1 for the node's role (`follower`, `candidate`, `leader`, `shutdown`, `removed`), 0 for the others |
//! | `raft_commit_index` | gauge | `node` | commit index |
//! | `raft_applied_index` | gauge | `node` | index of the last entry applied to the FSM |
//! | `raft_last_log_index` | gauge | `node` | index of the last entry in the log |
//! | `raft_last_snapshot_index` | gauge | `node` | index of the newest snapshot taken, installed or restored |
//! | `raft_peer_lag_entries` | gauge | `node`, `peer` | (leader) entries the follower's log is behind the leader's last index; `NaN` once this node stops leading, stops replicating to it or shuts down |
//! | `raft_peer_last_contact_seconds` | gauge | `node`, `peer` | (leader) time since the follower last answered (tick resolution); `NaN` as above |
//! | `raft_leader_changes_total` | counter | `node` | times this node learned of a leader other than the last one it knew (itself included) |
//! | `raft_elections_total` | counter | `node` | elections this node started (its term went up as a candidate; a failed pre-vote round is not one) |
//! | `raft_log_entries_appended_total` | counter | `node` | entries written to the local log store |
//! | `raft_append_entries_sent_total` | counter | `node`, `peer` | AppendEntries carrying entries sent to the peer (heartbeats excluded) |
//! | `raft_append_entries_sent_bytes_total` | counter | `node`, `peer` | payload bytes of the entries they carried |
//! | `raft_heartbeats_sent_total` | counter | `node`, `peer` | AppendEntries without entries (heartbeats, commit index updates) sent to the peer |
//! | `raft_snapshots_taken_total` | counter | `node` | snapshots this node took and stored |
//! | `raft_snapshots_installed_total` | counter | `node` | snapshots from a leader this node installed |
//! | `raft_write_stage_seconds` | histogram | `node`, `stage` | (leader) one stage of a client write: `persist` (from entering the leader's log, queued to its log writer, to durable in its log store), `commit` (durable to committed; 0 when a quorum of followers committed it first), `apply` (committed to applied by the FSM) |
//! | `raft_write_seconds` | histogram | `node` | (leader) a client write from entering the leader's log to applied |
//! | `raft_write_batch_writes` | histogram | `node` | (leader) client writes folded into one proposal |
//! | `raft_fsync_seconds` | histogram | `node` | one durable write of entries to the log store (`LogStore::store_logs`, one per group commit) |
//! | `raft_append_entries_batch_entries` | histogram | `node`, `peer` | entries in one AppendEntries sent to the peer |
//! | `raft_append_entries_batch_bytes` | histogram | `node`, `peer` | payload bytes in one AppendEntries sent to the peer |
//! | `raft_snapshot_duration_seconds` | histogram | `node`, `kind` | `take`: capturing the FSM and writing the snapshot to the store; `install`: receiving a leader's snapshot into the store and verifying it; `restore`: loading a stored snapshot into the FSM (after an install or [`Raft::restore`](crate::Raft::restore)) |
//! | `raft_snapshot_size_bytes` | histogram | `node`, `kind` | size of the snapshot of each such operation |
//!
//! The gauges are updated by the node's main task at every tick (a tenth of
//! `heartbeat_timeout`) and on every change of role, so they trail the
//! node by at most a tick.
//!
//! ## Cost on the write path
//! Handles are created once per node (per peer for the per-peer series);
//! recording is an atomic operation of the installed recorder, with no
//! allocation in this crate. The write-stage histograms are recorded **per
//! proposal batch**, not per write: the main task folds every client write
//! waiting in its queue into one proposal, and all writes of a batch share
//! its stage times (timing each of up to thousands of writes would cost
//! more than the write itself). `raft_write_batch_writes` tells how many
//! writes a sample stood for. Writes whose entries the FSM reads back from
//! the log store (they left the in-memory log window before being applied)
//! have no `apply` or total sample.
//!
//! # Task polls
//! [`task_polls`] counts, process-wide and by kind of task, how often the
//! nodes' tasks were polled: each poll follows a wake-up, so polls per write
//! tell how many hand-offs between tasks a write costs (the bench prints
//! them). This is not a `metrics` series: it is read directly.
//!
//! # Traces
//! The write path emits `tracing` spans and events at `debug` and `trace`
//! level (close to free when those levels are disabled). The main task's
//! run inside the node's `raft{id=...}` span; the log writer's and the FSM
//! task's carry a `node` field instead:
//! - span `client_requests` (debug, main task) around each batch of client
//!   requests taken from the queue, with `term`; inside it, event
//!   `proposed` (debug) per proposal with `term`, `first`, `last` (the
//!   batch's index range) and `writes`;
//! - span `log_write` (debug, log writer) around each group commit, with
//!   `node`, `first`, `last`, `entries`; event `persisted` (debug) when it
//!   is durable, with `took_us`;
//! - event `log durable` (trace, main task) with the last durable `index`;
//! - event `committed` (debug, main task) with `term` and the range
//!   `lo`..=`hi` handed to the FSM;
//! - event `applied` (debug, FSM task) with `node`, `lo`, `hi`.

mod handles;
pub mod names;
mod node;
pub(crate) mod polls;
mod stages;

pub use self::polls::{task_polls, TaskPolls};

pub(crate) use self::handles::{ApplyTelemetry, PeerTelemetry, SnapshotTelemetry, WriterTelemetry};
pub(crate) use self::node::NodeTelemetry;
pub(crate) use self::stages::WriteStamp;

/// Registers the help text and unit of every series in the table above with
/// the installed recorder (so an exporter can print them). Each node calls
/// it when it starts; call it yourself to have the descriptions before any
/// node starts.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_gauge!(TERM, Unit::Count, "Current term.");
    describe_gauge!(STATE, "1 for the node's role (label state), 0 for the others.");
    describe_gauge!(COMMIT_INDEX, Unit::Count, "Commit index.");
    describe_gauge!(APPLIED_INDEX, Unit::Count, "Index of the last entry applied to the FSM.");
    describe_gauge!(LAST_LOG_INDEX, Unit::Count, "Index of the last entry in the log.");
    describe_gauge!(LAST_SNAPSHOT_INDEX, Unit::Count, "Index of the newest snapshot.");
    describe_gauge!(
        PEER_LAG,
        Unit::Count,
        "(Leader) entries the follower is behind the leader's last index."
    );
    describe_gauge!(PEER_LAST_CONTACT, Unit::Seconds, "(Leader) time since the follower last answered.");
    describe_counter!(LEADER_CHANGES, Unit::Count, "Times this node learned of a new leader.");
    describe_counter!(ELECTIONS, Unit::Count, "Elections this node started.");
    describe_counter!(ENTRIES_APPENDED, Unit::Count, "Entries written to the local log store.");
    describe_counter!(APPEND_ENTRIES_SENT, Unit::Count, "AppendEntries with entries sent to the peer.");
    describe_counter!(
        APPEND_ENTRIES_SENT_BYTES,
        Unit::Bytes,
        "Payload bytes of the entries sent to the peer."
    );
    describe_counter!(HEARTBEATS_SENT, Unit::Count, "AppendEntries without entries sent to the peer.");
    describe_counter!(SNAPSHOTS_TAKEN, Unit::Count, "Snapshots this node took.");
    describe_counter!(SNAPSHOTS_INSTALLED, Unit::Count, "Snapshots from a leader this node installed.");
    describe_histogram!(
        WRITE_STAGE,
        Unit::Seconds,
        "(Leader) one stage of a client write (label stage), per proposal batch."
    );
    describe_histogram!(
        WRITE,
        Unit::Seconds,
        "(Leader) a client write from entering the log to applied, per proposal batch."
    );
    describe_histogram!(WRITE_BATCH, Unit::Count, "(Leader) client writes folded into one proposal.");
    describe_histogram!(FSYNC, Unit::Seconds, "One durable write of entries to the log store.");
    describe_histogram!(APPEND_ENTRIES_BATCH_ENTRIES, Unit::Count, "Entries in one AppendEntries.");
    describe_histogram!(APPEND_ENTRIES_BATCH_BYTES, Unit::Bytes, "Payload bytes in one AppendEntries.");
    describe_histogram!(
        SNAPSHOT_DURATION,
        Unit::Seconds,
        "Duration of a snapshot take, install or restore (label kind)."
    );
    describe_histogram!(
        SNAPSHOT_SIZE,
        Unit::Bytes,
        "Size of the snapshot taken, installed or restored (label kind)."
    );
}
