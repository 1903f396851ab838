//! [`Metrics`]: a snapshot of a node's state, published through a
//! `tokio::sync::watch` channel by [`Raft::metrics`](crate::Raft::metrics).

use std::collections::BTreeMap;

use crate::types::{Configuration, RaftState, ServerAddress, ServerId};

/// What the leader knows about one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMetrics {
    /// Highest index known to be replicated on the follower.
    pub match_index: u64,
    /// Next index the leader will send.
    pub next_index: u64,
    /// How long ago the follower last answered (tick resolution).
    pub last_contact: std::time::Duration,
    /// How many times, since this node started, the follower's log was
    /// found to have lost entries it had acknowledged (a replaced disk, a
    /// cut-off tail) and its replication started over (see
    /// [`Observation::FollowerLogReset`](crate::observer::Observation::FollowerLogReset)).
    pub log_resets: u64,
    /// Autopilot's verdict ([`crate::autopilot`]): the follower answered
    /// within [`AutopilotConfig::last_contact_threshold`] and is at most
    /// [`AutopilotConfig::max_trailing_logs`] entries behind the leader's
    /// last index (and has acknowledged an entry). Computed with
    /// [`AutopilotConfig::default`]'s bounds when
    /// [`Config::autopilot`](crate::Config::autopilot) is `None`.
    ///
    /// [`AutopilotConfig::last_contact_threshold`]: crate::AutopilotConfig::last_contact_threshold
    /// [`AutopilotConfig::max_trailing_logs`]: crate::AutopilotConfig::max_trailing_logs
    /// [`AutopilotConfig::default`]: crate::AutopilotConfig::default
    pub healthy: bool,
    /// How long the follower has been healthy without a break, as seen by
    /// this leader (tick resolution; zero when unhealthy). A server added
    /// with `add_voter` is promoted once this reaches
    /// [`AutopilotConfig::server_stabilization_time`](crate::AutopilotConfig::server_stabilization_time)
    /// (with autopilot on).
    pub healthy_for: std::time::Duration,
    /// Entries the follower is behind: the leader's last index minus
    /// [`match_index`](Self::match_index).
    pub lag: u64,
}

/// A point-in-time view of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// This node.
    pub id: ServerId,
    /// Its role.
    pub state: RaftState,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub current_leader: Option<(ServerId, ServerAddress)>,
    /// Last log index.
    pub last_log_index: u64,
    /// Term of the last log entry.
    pub last_log_term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Index of the last entry applied to the FSM.
    pub applied_index: u64,
    /// The index the log is compacted through: the same value as
    /// [`log_compacted_through`](Self::log_compacted_through), kept under
    /// its old name for compatibility. For the newest snapshot see
    /// [`last_snapshot_index`](Self::last_snapshot_index).
    pub snapshot_index: u64,
    /// The latest configuration.
    pub configuration: Configuration,
    /// Index of the entry that carried it.
    pub configuration_index: u64,
    /// Per-follower replication progress (only on the leader).
    pub peers: BTreeMap<ServerId, PeerMetrics>,
    /// The cluster this node belongs to (`None` until it is bootstrapped
    /// or first contacted by a leader); see [`Raft::cluster_id`](crate::Raft::cluster_id).
    pub cluster_id: Option<crate::types::ClusterId>,
    /// Index of the newest snapshot this node took, installed from a leader
    /// or restored (at start or by [`Raft::restore`](crate::Raft::restore));
    /// 0 if none. HashiCorp's `last_snapshot_index`.
    pub last_snapshot_index: u64,
    /// Term of that snapshot's last entry.
    pub last_snapshot_term: u64,
    /// Index of the first entry of the log: everything before it was
    /// deleted from the log store behind a snapshot (or never existed).
    /// Always `log_compacted_through + 1`; see
    /// [`Raft::first_index`](crate::Raft::first_index).
    pub first_index: u64,
    /// The log store holds no entry at or below this index: it is the
    /// compaction point, what the log store actually deleted (0 if nothing).
    pub log_compacted_through: u64,
    /// Why the node stopped, if a storage failure stopped it (the node is
    /// then in state [`RaftState::Shutdown`]).
    pub fatal_error: Option<String>,
    /// Payload bytes of log entries the protocol core holds in memory (its
    /// log window): the unpersisted entries plus the newest persisted ones
    /// up to [`Config::max_log_window_bytes`](crate::Config::max_log_window_bytes).
    pub log_window_bytes: u64,
    /// (Leader) client writes waiting for room under
    /// [`Config::max_uncommitted_bytes`](crate::Config::max_uncommitted_bytes):
    /// they enter the log as commits free room, or fail with
    /// [`Error::EnqueueTimeout`](crate::Error::EnqueueTimeout) at their
    /// deadline. Non-zero for long: followers are not acknowledging.
    pub writes_waiting_for_room: u64,
    /// Payload bytes of those writes.
    pub bytes_waiting_for_room: u64,
    /// Writes that timed out waiting for room since this node started.
    pub writes_timed_out_waiting_for_room: u64,
    /// (Leader) reads of entries from the log store for followers that
    /// needed entries outside the log window, since this node started.
    pub log_fetches: u64,
    /// Such reads that failed (each logged; the follower waits for a
    /// later read).
    pub log_fetch_failures: u64,
    /// Payload bytes those reads returned.
    pub log_fetched_bytes: u64,
    /// The commit index last queued to be recorded in the stable store
    /// (what a restart applies without a leader).
    pub recorded_commit_index: u64,
    /// (Leader) bytes of entries after the commit index, counted like
    /// [`log_window_bytes`](Self::log_window_bytes); proposals wait while it
    /// is at [`Config::max_uncommitted_bytes`](crate::Config::max_uncommitted_bytes).
    pub uncommitted_bytes: u64,
    /// Reads served through this node since it started, by kind (see
    /// [`Raft::read`](crate::Raft::read)).
    pub reads: ReadMetrics,
    /// (Leader) how long its read lease still holds, in whole ticks: zero
    /// when a lease read would take a quorum round now (no lease yet, lease
    /// expired, leases off, a transfer started this term). `None` on
    /// other nodes. See [`ReadPolicy::Lease`](crate::ReadPolicy::Lease).
    pub lease_remaining: Option<std::time::Duration>,
}

/// Counts of reads since the node started (see [`Metrics::reads`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadMetrics {
    /// Calls of [`Raft::read`](crate::Raft::read) with
    /// [`ReadPolicy::Stale`](crate::ReadPolicy::Stale).
    pub stale: u64,
    /// Calls with [`ReadPolicy::Lease`](crate::ReadPolicy::Lease).
    pub lease: u64,
    /// Calls with [`ReadPolicy::ReadIndex`](crate::ReadPolicy::ReadIndex),
    /// plus calls of [`Raft::read_index`](crate::Raft::read_index) (and the
    /// methods built on it).
    pub read_index: u64,
    /// (Leader) lease reads, its own or asked by followers, answered from
    /// the lease, without a quorum round.
    pub lease_served: u64,
    /// (Leader) lease reads that found no valid lease and took a quorum
    /// round instead.
    pub lease_fallbacks: u64,
    /// Linearizable reads this node served as a follower, with a read
    /// index from the leader.
    pub follower_reads: u64,
    /// Follower reads that failed (no leader known, the leader refused or
    /// was unreachable, or the timeout passed); each is logged.
    pub follower_read_failures: u64,
    /// (Leader) read-index requests from followers answered with a read
    /// index.
    pub read_index_requests_answered: u64,
}

impl Metrics {
    pub(crate) fn new(id: ServerId) -> Self {
        Self {
            id,
            state: RaftState::Follower,
            term: 0,
            current_leader: None,
            last_log_index: 0,
            last_log_term: 0,
            commit_index: 0,
            applied_index: 0,
            snapshot_index: 0,
            configuration: Configuration::default(),
            configuration_index: 0,
            peers: BTreeMap::new(),
            cluster_id: None,
            last_snapshot_index: 0,
            last_snapshot_term: 0,
            first_index: 1,
            log_compacted_through: 0,
            fatal_error: None,
            log_window_bytes: 0,
            writes_waiting_for_room: 0,
            bytes_waiting_for_room: 0,
            writes_timed_out_waiting_for_room: 0,
            log_fetches: 0,
            log_fetch_failures: 0,
            log_fetched_bytes: 0,
            recorded_commit_index: 0,
            uncommitted_bytes: 0,
            reads: ReadMetrics::default(),
            lease_remaining: None,
        }
    }

    /// The metrics as string pairs, HashiCorp `Stats()` style.
    pub fn to_stats(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("id".into(), self.id.to_string());
        m.insert("state".into(), self.state.to_string());
        m.insert("term".into(), self.term.to_string());
        m.insert("last_log_index".into(), self.last_log_index.to_string());
        m.insert("last_log_term".into(), self.last_log_term.to_string());
        m.insert("commit_index".into(), self.commit_index.to_string());
        m.insert("applied_index".into(), self.applied_index.to_string());
        m.insert("last_snapshot_index".into(), self.last_snapshot_index.to_string());
        m.insert("last_snapshot_term".into(), self.last_snapshot_term.to_string());
        m.insert("first_index".into(), self.first_index.to_string());
        m.insert("log_compacted_through".into(), self.log_compacted_through.to_string());
        m.insert("latest_configuration_index".into(), self.configuration_index.to_string());
        m.insert("num_peers".into(), self.configuration.servers.len().saturating_sub(1).to_string());
        let leader =
            self.current_leader.as_ref().map(|(id, addr)| format!("{id}@{addr}")).unwrap_or_default();
        m.insert("leader".into(), leader);
        m.insert("cluster_id".into(), self.cluster_id.as_ref().map(|c| c.to_string()).unwrap_or_default());
        m.insert("log_window_bytes".into(), self.log_window_bytes.to_string());
        m.insert("writes_waiting_for_room".into(), self.writes_waiting_for_room.to_string());
        m.insert("bytes_waiting_for_room".into(), self.bytes_waiting_for_room.to_string());
        m.insert(
            "writes_timed_out_waiting_for_room".into(),
            self.writes_timed_out_waiting_for_room.to_string(),
        );
        m.insert("log_fetches".into(), self.log_fetches.to_string());
        m.insert("log_fetch_failures".into(), self.log_fetch_failures.to_string());
        m.insert("log_fetched_bytes".into(), self.log_fetched_bytes.to_string());
        m.insert("recorded_commit_index".into(), self.recorded_commit_index.to_string());
        m.insert("uncommitted_bytes".into(), self.uncommitted_bytes.to_string());
        let r = &self.reads;
        for (name, value) in [
            ("reads_stale", r.stale),
            ("reads_lease", r.lease),
            ("reads_read_index", r.read_index),
            ("reads_lease_served", r.lease_served),
            ("reads_lease_fallbacks", r.lease_fallbacks),
            ("reads_follower", r.follower_reads),
            ("reads_follower_failures", r.follower_read_failures),
            ("reads_index_requests_answered", r.read_index_requests_answered),
        ] {
            m.insert(name.into(), value.to_string());
        }
        self.autopilot_stats(&mut m);
        if let Some(err) = &self.fatal_error {
            m.insert("fatal_error".into(), err.clone());
        }
        m
    }

    /// (Leader) autopilot's figures: `autopilot_healthy` (every server of
    /// the configuration healthy, the leader counted healthy),
    /// `autopilot_failure_tolerance` (healthy voters beyond a majority of
    /// the voters), and per follower `peer.<id>.healthy` and
    /// `peer.<id>.lag`.
    fn autopilot_stats(&self, m: &mut BTreeMap<String, String>) {
        if self.state != RaftState::Leader {
            return;
        }
        let healthy = |id: &ServerId| *id == self.id || self.peers.get(id).is_some_and(|p| p.healthy);
        let all = self.configuration.servers.iter().all(|s| healthy(&s.id));
        let voters: Vec<&ServerId> = self.configuration.voters().collect();
        let healthy_voters = voters.iter().filter(|v| healthy(v)).count();
        let tolerance = healthy_voters.saturating_sub(voters.len() / 2 + 1);
        m.insert("autopilot_healthy".into(), all.to_string());
        m.insert("autopilot_failure_tolerance".into(), tolerance.to_string());
        for (id, p) in &self.peers {
            m.insert(format!("peer.{id}.healthy"), p.healthy.to_string());
            m.insert(format!("peer.{id}.lag"), p.lag.to_string());
        }
    }
}
