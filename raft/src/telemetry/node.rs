//! The main task's handles: the node's gauges (indexes, term, role, per-peer
//! lag and last contact), its role counters, the write-stage tracker, and
//! the trace events of proposals and commits.

use std::collections::HashMap;
use std::time::Duration;

use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use tokio::time::Instant;

use super::handles::InstallTelemetry;
use super::names::*;
use super::stages::{Stage, StageSink, WriteStages, WriteStamp};
use crate::core::Core;
use crate::types::{RaftState, ServerId};

/// Every role, with its `state` label value.
const ROLES: [(RaftState, &str); 5] = [
    (RaftState::Follower, "follower"),
    (RaftState::Candidate, "candidate"),
    (RaftState::Leader, "leader"),
    (RaftState::Shutdown, "shutdown"),
    (RaftState::Removed, "removed"),
];

/// The per-peer gauges of one follower.
struct PeerGauges {
    /// [`PEER_LAG`].
    lag: Gauge,
    /// [`PEER_LAST_CONTACT`].
    last_contact: Gauge,
}

/// The write-stage histograms the main task records into.
struct StageHistograms {
    /// [`WRITE_STAGE`] `stage="persist"`.
    persist: Histogram,
    /// [`WRITE_STAGE`] `stage="commit"`.
    commit: Histogram,
}

impl StageSink for StageHistograms {
    fn record(&mut self, stage: Stage, took: Duration) {
        match stage {
            Stage::Persist => self.persist.record(took),
            Stage::Commit => self.commit.record(took),
        }
    }
}

/// The main task's handles and what it remembers to derive its counters.
pub(crate) struct NodeTelemetry {
    /// The local server id (label value).
    node: String,
    /// [`TERM`].
    term: Gauge,
    /// [`STATE`], one per role (in the order of [`ROLES`]).
    states: [Gauge; 5],
    /// [`COMMIT_INDEX`].
    commit_index: Gauge,
    /// [`APPLIED_INDEX`].
    applied_index: Gauge,
    /// [`LAST_LOG_INDEX`].
    last_log_index: Gauge,
    /// [`LAST_SNAPSHOT_INDEX`].
    last_snapshot_index: Gauge,
    /// [`LEADER_CHANGES`].
    leader_changes: Counter,
    /// [`ELECTIONS`].
    elections: Counter,
    /// [`SNAPSHOTS_INSTALLED`].
    snapshots_installed: Counter,
    /// [`WRITE_BATCH`].
    write_batch: Histogram,
    /// The persist and commit stages.
    stage_histograms: StageHistograms,
    /// Receiving a leader's snapshot.
    install: InstallTelemetry,
    /// (Leader) the per-peer gauges of the followers it replicates to.
    peers: HashMap<ServerId, PeerGauges>,
    /// (Leader) the proposal batches in flight.
    stages: WriteStages,
    /// The last leader this node knew of.
    last_leader: Option<ServerId>,
    /// The term at the last change of role.
    last_term: u64,
}

impl NodeTelemetry {
    /// The handles of node `id`; registers the series descriptions.
    pub(crate) fn new(id: &ServerId) -> Self {
        super::describe();
        let node = id.to_string();
        let states = ROLES.map(|(_, label)| gauge!(STATE, NODE => node.clone(), STATE_LABEL => label));
        Self {
            term: gauge!(TERM, NODE => node.clone()),
            states,
            commit_index: gauge!(COMMIT_INDEX, NODE => node.clone()),
            applied_index: gauge!(APPLIED_INDEX, NODE => node.clone()),
            last_log_index: gauge!(LAST_LOG_INDEX, NODE => node.clone()),
            last_snapshot_index: gauge!(LAST_SNAPSHOT_INDEX, NODE => node.clone()),
            leader_changes: counter!(LEADER_CHANGES, NODE => node.clone()),
            elections: counter!(ELECTIONS, NODE => node.clone()),
            snapshots_installed: counter!(SNAPSHOTS_INSTALLED, NODE => node.clone()),
            write_batch: histogram!(WRITE_BATCH, NODE => node.clone()),
            stage_histograms: StageHistograms {
                persist: histogram!(WRITE_STAGE, NODE => node.clone(), STAGE_LABEL => "persist"),
                commit: histogram!(WRITE_STAGE, NODE => node.clone(), STAGE_LABEL => "commit"),
            },
            install: InstallTelemetry::new(&node),
            peers: HashMap::new(),
            stages: WriteStages::default(),
            last_leader: None,
            last_term: 0,
            node,
        }
    }

    /// The role changed (any of state, term, leader): sets the role gauges,
    /// counts elections and leader changes, and forgets the write batches
    /// of a node that no longer leads.
    pub(crate) fn role_changed(&mut self, state: RaftState, term: u64, leader: Option<&ServerId>) {
        for ((role, _), gauge) in ROLES.iter().zip(&self.states) {
            gauge.set(if *role == state { 1.0 } else { 0.0 });
        }
        self.term.set(term as f64);
        if state == RaftState::Candidate && term > self.last_term {
            self.elections.increment(1);
        }
        self.last_term = term;
        if let Some(leader) = leader {
            if self.last_leader.as_ref() != Some(leader) {
                self.leader_changes.increment(1);
                self.last_leader = Some(leader.clone());
            }
        }
        if state != RaftState::Leader {
            self.stages.clear();
        }
    }

    /// The node stopped: its role reads `shutdown` and its per-peer gauges
    /// `NaN`.
    pub(crate) fn stopped(&mut self, term: u64) {
        self.role_changed(RaftState::Shutdown, term, None);
        for (_, gauges) in self.peers.drain() {
            gauges.lag.set(f64::NAN);
            gauges.last_contact.set(f64::NAN);
        }
    }

    /// Sets the gauges from the core (called at every tick and change of
    /// role). Per-peer gauges of followers the node no longer replicates to
    /// (it stopped leading, or they left) become `NaN`.
    pub(crate) fn publish(&mut self, core: &Core, applied: u64, last_snapshot: u64, tick: Duration) {
        self.commit_index.set(core.commit_index() as f64);
        self.applied_index.set(applied as f64);
        let last = core.last_index();
        self.last_log_index.set(last as f64);
        self.last_snapshot_index.set(last_snapshot as f64);
        let progress = core.peer_progress();
        self.peers.retain(|id, gauges| {
            let tracked = progress.iter().any(|p| &p.id == id);
            if !tracked {
                gauges.lag.set(f64::NAN);
                gauges.last_contact.set(f64::NAN);
            }
            tracked
        });
        for p in progress {
            let node = &self.node;
            let gauges = self.peers.entry(p.id).or_insert_with_key(|peer| PeerGauges {
                lag: gauge!(PEER_LAG, NODE => node.clone(), PEER => peer.to_string()),
                last_contact: gauge!(PEER_LAST_CONTACT, NODE => node.clone(), PEER => peer.to_string()),
            });
            gauges.lag.set(last.saturating_sub(p.matched) as f64);
            gauges.last_contact.set(tick.as_secs_f64() * p.ticks_since_contact as f64);
        }
    }

    /// (Leader) `writes` client writes entered the log in `term`, the
    /// first at index `first`.
    pub(crate) fn proposed(&mut self, term: u64, first: u64, writes: usize) {
        let Some(last) = (writes as u64).checked_sub(1).map(|n| first + n) else { return };
        self.write_batch.record(writes as f64);
        self.stages.proposed(last, Instant::now());
        tracing::debug!(term, first, last, writes, "proposed");
    }

    /// The local log store made every entry up to `index` durable.
    pub(crate) fn persisted(&mut self, index: u64) {
        self.stages.persisted(index, Instant::now(), &mut self.stage_histograms);
        tracing::trace!(index, "log durable");
    }

    /// Entries `lo..=hi` were committed and are handed to the FSM task.
    /// Returns the stamp of the client writes among them.
    pub(crate) fn committed(&mut self, term: u64, lo: u64, hi: u64) -> Option<WriteStamp> {
        tracing::debug!(term, lo, hi, "committed");
        self.stages.committed(hi, Instant::now(), &mut self.stage_histograms)
    }

    /// A leader's snapshot was installed.
    pub(crate) fn snapshot_installed(&self) {
        self.snapshots_installed.increment(1);
    }

    /// The handles for receiving a leader's snapshot.
    pub(crate) fn install(&self) -> InstallTelemetry {
        self.install.clone()
    }
}
