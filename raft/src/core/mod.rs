//! The pure protocol core: a deterministic Raft state machine with no tokio,
//! no clock and no I/O.
//!
//! Inputs are method calls: [`Core::step`] (a message from a peer),
//! [`Core::tick`] (one unit of logical time), [`Core::propose`],
//! [`Core::read_index`], and completions such as [`Core::persisted`].
//! Outputs accumulate in a [`Ready`] that the driver takes with
//! [`Core::take_ready`] and executes in this order:
//!
//! 1. send `messages` (may go out before anything is durable);
//! 2. durably write `hard_state`, then truncate from `truncate_from`, then
//!    append `entries`;
//! 3. only then send `persisted_messages` (votes and acknowledgements that
//!    promise durable state) and report [`Core::persisted`];
//! 4. apply `committed` to the state machine in order, after the entries
//!    `apply_from_store` names (read from the log store: they left the
//!    core's log window);
//! 5. (leader) read each of `fetches` from the log store, off the main
//!    task, and hand the entries back with [`Core::entries_fetched`].
//!
//! # Memory
//! The core keeps metadata for the whole log after the last compaction
//! (terms as runs, sizes as running totals: 8 bytes per entry), but entry
//! payloads only for a window at the log's end: every entry not yet
//! durable plus the newest durable ones up to
//! [`CoreConfig::max_window_bytes`] ([`Core::held_bytes`] reports what it
//! holds). Followers further behind are served from the store through
//! `fetches`, at most one read at a time per follower. Byte flow control
//! caps what is in flight to each follower
//! ([`CoreConfig::max_inflight_bytes`]) and the leader's uncommitted bytes
//! ([`CoreConfig::max_uncommitted_bytes`], [`Refusal::UncommittedLimit`]).
//!
//! # Layout
//! - `log`: the log's metadata and the window of payloads held in memory.
//! - `progress`: per-follower replication state.
//! - `membership`: configurations in force.
//! - `quorum`: majority and joint quorums, the one place that counts them
//!   (commit index, votes, ReadIndex acknowledgements, check-quorum).
//! - `confchange`: the rules for the next configuration (single-server and
//!   joint changes) as pure functions with typed refusals.
//! - `joint`: joint consensus in the core: entering C_old,new, leaving it
//!   automatically, handing leadership to a voter of C_new.
//! - `election`: timeouts, pre-vote, votes, role changes.
//! - `replication`: AppendEntries on both sides, commitment.
//! - `read`: ReadIndex linearizable reads.
//! - `lease`: leader leases for reads, and the stickiness they rely on.
//! - `snapshot`: sending and installing snapshots, log compaction.
//! - `transfer`: leadership transfer.
//! - `promotion`: when a server added as a voter has caught up.
//! - `autopilot`: server health, stabilization before promotion and
//!   dead-server cleanup, as pure rules in ticks (driven by the runtime).
//! - `removal`: learning that this server was removed (terminal state).
//! - `rng`: seeded randomness for timeouts.
//! - `boundary`: the types crossing the boundary (`Message`, `Ready`,
//!   `InitialState`, ...).
//! - `error`: the core's error types (`Refusal`, ...).
//! - `harness` (tests and the `testing` feature): executing a `Ready`
//!   against in-memory durable state, shared by the scenario tests
//!   (`scenario`, beside each rule file in `<rule>/tests.rs`) and the core
//!   simulation.
//!
//! # Boundary
//! Every inbound request (a message with a non-zero `rpc_id`) is either
//! answered by a message carrying its `rpc_id` or listed in
//! [`Ready::declined`]; the driver never inspects the core's queues to find
//! out which. The core stays free of I/O, clocks and the runtime: the
//! `purity` test fails the build's tests if a file here names tokio,
//! `std::time`, `std::fs`, `std::net` or the runtime.

pub(crate) mod autopilot;
mod boundary;
pub mod confchange;
mod election;
mod error;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod harness;
mod joint;
mod lease;
mod log;
mod membership;
mod progress;
mod promotion;
mod quorum;
mod read;
mod removal;
mod replication;
pub(crate) mod rng;
mod snapshot;
mod transfer;

#[cfg(test)]
mod scenario;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::{Configuration, HardState, Log, LogType, RaftState, ServerId};

pub use self::boundary::{
    Body, InitialState, InstalledSnapshot, LogFetch, LogReset, Message, PeerProgress, ReadState, Ready,
};
pub use self::confchange::{ConfChange, ConfChangeError};
pub use self::error::{CompactError, InconsistentState, InvalidRequest, Refusal};
pub(crate) use self::log::RaftLog;
use self::membership::Membership;
use self::progress::Progress;
pub use self::promotion::CatchUp;
use self::rng::Rng;

/// Tick counts and switches for the core (derived from [`crate::Config`]).
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: u64,
    /// Minimum ticks a follower waits for a leader (randomized up to 2x).
    pub follower_timeout_ticks: u64,
    /// Minimum ticks a candidate waits for an election (randomized up to 2x).
    pub candidate_timeout_ticks: u64,
    /// Ticks within which a leader must hear from a quorum (check-quorum).
    pub lease_ticks: u64,
    /// How long a read lease lasts, in the leader's ticks, from the moment
    /// the heartbeat round a quorum acknowledged was sent; 0 turns lease
    /// reads off ([`Core::lease_read`] then always takes a round). Must be
    /// below `follower_timeout_ticks` by the clock-drift bound (the runtime
    /// derives it from [`crate::Config::max_clock_drift`]).
    pub read_lease_ticks: u64,
    /// Run a pre-vote round before elections.
    pub pre_vote: bool,
    /// Step down without a quorum; ignore votes while a leader is live.
    pub check_quorum: bool,
    /// Maximum entries per AppendEntries.
    pub max_append_entries: usize,
    /// Maximum AppendEntries in flight per follower.
    pub max_inflight: usize,
    /// Byte budget of the entries in one AppendEntries, each counted as its
    /// data plus [`ENTRY_OVERHEAD`](crate::transport::ENTRY_OVERHEAD); a
    /// request always carries at least one entry, even one over the budget.
    pub max_append_bytes: usize,
    /// Bytes of entry payloads kept in memory beyond the unpersisted ones
    /// (the log window); older entries are fetched from the store through
    /// [`Ready::fetches`] and [`Ready::apply_from_store`].
    pub max_window_bytes: usize,
    /// Entry bytes in flight (unacknowledged) per follower.
    pub max_inflight_bytes: usize,
    /// Bytes of uncommitted entries a leader accepts before refusing
    /// proposals with [`Refusal::UncommittedLimit`].
    pub max_uncommitted_bytes: usize,
}

impl CoreConfig {
    /// A small configuration convenient for tests and simulations (the
    /// inspection accessors below gated the same way serve their checks).
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests() -> Self {
        Self {
            heartbeat_ticks: 1,
            follower_timeout_ticks: 10,
            candidate_timeout_ticks: 10,
            lease_ticks: 10,
            read_lease_ticks: 7,
            pre_vote: true,
            check_quorum: true,
            max_append_entries: 64,
            max_inflight: 4,
            max_append_bytes: 1024 * 1024,
            max_window_bytes: 64 << 20,
            max_inflight_bytes: 32 << 20,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

pub(crate) enum Role {
    Follower,
    PreCandidate {
        granted: Vec<ServerId>,
    },
    Candidate {
        granted: Vec<ServerId>,
    },
    Leader(LeaderState),
    /// Terminal: this node learned it was removed from the configuration.
    /// It ignores ticks and messages and refuses every request.
    Removed,
}

/// State only a leader has.
pub(crate) struct LeaderState {
    pub(crate) peers: BTreeMap<ServerId, Progress>,
    /// Index of the no-op that opened this term: reads wait for its commit.
    pub(crate) term_start: u64,
    pub(crate) heartbeat_elapsed: u64,
    pub(crate) lease_elapsed: u64,
    /// Last read round started.
    pub(crate) round: u64,
    pub(crate) reads: read::ReadQueue,
    /// The read lease (see `lease`): gone with this state on stepping down.
    pub(crate) lease: lease::Lease,
    pub(crate) transfer: Option<transfer::Transfer>,
    /// Servers whose removal committed and that have not yet confirmed
    /// they learned it (see `removal`).
    pub(crate) departing: BTreeMap<ServerId, removal::Departing>,
}

/// The Raft protocol state machine for one node.
pub struct Core {
    pub(crate) id: ServerId,
    pub(crate) cfg: CoreConfig,
    pub(crate) rng: Rng,
    /// Invariant: term never decreases; vote set at most once per term.
    pub(crate) hard: HardState,
    pub(crate) log: RaftLog,
    /// Invariant: never decreases; entries <= commit are on a quorum.
    pub(crate) commit: u64,
    /// Highest index handed to the driver for applying.
    pub(crate) applied_sent: u64,
    /// Highest index known durable locally for the current log.
    pub(crate) persisted: u64,
    pub(crate) membership: Membership,
    pub(crate) role: Role,
    pub(crate) leader: Option<ServerId>,
    pub(crate) election_elapsed: u64,
    pub(crate) election_timeout: u64,
    /// Ticks since this node last heard from a leader, or since it
    /// (re)started (see `lease`: restart stickiness).
    pub(crate) since_leader: u64,
    pub(crate) ready: Ready,
}

impl Core {
    /// Builds a core from durable state. Fails if the state is
    /// inconsistent (a gap in the log or between `entry_meta` and
    /// `entries`, a decreasing term, an undecodable configuration entry, a
    /// configuration entry the log does not hold).
    ///
    /// The commit index starts at the highest of the snapshot index, the
    /// applied index and the recorded `commit` (bounded by the last log
    /// index); committed entries not yet applied are handed out by the
    /// first [`Core::take_ready`] (through `apply_from_store` for those
    /// outside the window), so a single-node cluster restarts with its
    /// state without waiting for an election.
    pub fn new(
        id: ServerId,
        cfg: CoreConfig,
        seed: u64,
        init: InitialState,
    ) -> Result<Self, InconsistentState> {
        let snapshot = init.snapshot.unwrap_or_default();
        let mut membership = Membership::new(snapshot.configuration_index, snapshot.configuration);
        let log = RaftLog::with_meta(snapshot.index, snapshot.term, &init.entry_meta, init.entries)?;
        // Configuration entries known by their metadata come with their
        // payloads in `configurations`; the held ones are in the window.
        let mut last_conf = snapshot.index;
        for e in init.configurations.iter().filter(|e| e.index > snapshot.index) {
            if e.index <= last_conf || log.term(e.index) != Some(e.term) {
                return Err(InconsistentState::ConfigurationNotInLog { index: e.index });
            }
            last_conf = e.index;
        }
        let held: Vec<&Log> = (log.window_start()..=log.last_index()).filter_map(|i| log.entry(i)).collect();
        for e in init.configurations.iter().filter(|e| e.index < log.window_start()).chain(held) {
            if e.index <= snapshot.index || e.log_type != LogType::Configuration {
                continue;
            }
            let conf: Configuration = crate::codec::decode(&e.data)
                .map_err(|source| InconsistentState::UndecodableConfiguration { index: e.index, source })?;
            membership.push(e.index, conf);
        }
        let persisted = log.last_index();
        let applied = init.applied.max(snapshot.index).min(log.last_index());
        let commit = applied.max(init.commit.min(log.last_index()));
        let mut core = Self {
            id,
            cfg,
            rng: Rng::new(seed),
            hard: init.hard_state,
            log,
            commit,
            applied_sent: applied,
            persisted,
            membership,
            role: Role::Follower,
            leader: None,
            election_elapsed: 0,
            election_timeout: 0,
            // As if a leader had just been heard from: a restarted voter
            // may have promised a leader not to vote (see `lease`).
            since_leader: 0,
            ready: Ready::default(),
        };
        core.log.evict(core.persisted, core.cfg.max_window_bytes);
        core.reset_election_timer();
        if init.removed || core.removal_committed() {
            tracing::warn!(id = %core.id, "this server was removed from the cluster configuration; starting as removed");
            core.role = Role::Removed;
        }
        Ok(core)
    }

    /// This node's id.
    #[cfg(any(test, feature = "testing"))]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.hard.term
    }

    /// Who this node voted for in the current term.
    #[cfg(any(test, feature = "testing"))]
    pub fn vote(&self) -> Option<&ServerId> {
        self.hard.vote.as_ref()
    }

    /// The node's role.
    pub fn state(&self) -> RaftState {
        match self.role {
            Role::Follower => RaftState::Follower,
            Role::PreCandidate { .. } | Role::Candidate { .. } => RaftState::Candidate,
            Role::Leader(_) => RaftState::Leader,
            Role::Removed => RaftState::Removed,
        }
    }

    /// Whether this node learned it was removed from the configuration
    /// (terminal).
    pub fn is_removed(&self) -> bool {
        matches!(self.role, Role::Removed)
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<&ServerId> {
        self.leader.as_ref()
    }

    /// Commit index.
    pub fn commit_index(&self) -> u64 {
        self.commit
    }

    /// Last log index.
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// Term of the last log entry.
    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }

    /// Highest index locally durable (for the simulation's checks and the
    /// scenario tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn persisted_index(&self) -> u64 {
        self.persisted
    }

    /// Highest index handed out for applying.
    #[cfg(any(test, feature = "testing"))]
    pub fn applied_index(&self) -> u64 {
        self.applied_sent
    }

    /// The entry at `index`, if held in memory.
    #[cfg(any(test, feature = "testing"))]
    pub fn entry(&self, index: u64) -> Option<&Log> {
        self.log.entry(index)
    }

    /// First index whose payload the core holds in memory (its log
    /// window); entries before it are read from the store.
    #[cfg(any(test, feature = "testing"))]
    pub fn window_start(&self) -> u64 {
        self.log.window_start()
    }

    /// Bytes of entry payloads the core holds in memory (its log window),
    /// each entry counted as its data plus
    /// [`ENTRY_OVERHEAD`](crate::transport::ENTRY_OVERHEAD). Bounded by
    /// [`CoreConfig::max_window_bytes`] plus the entries not yet durable
    /// (on a leader, those are bounded by
    /// [`CoreConfig::max_uncommitted_bytes`] unless durability lags behind
    /// commitment). Entries only queued in a [`Ready`] share these
    /// payloads (reference counted) and are not counted again.
    pub fn held_bytes(&self) -> usize {
        usize::try_from(self.log.held_bytes()).unwrap_or(usize::MAX)
    }

    /// (Leader) bytes of entries after the commit index, counted like
    /// [`Core::held_bytes`].
    pub fn uncommitted_bytes(&self) -> usize {
        usize::try_from(self.log.bytes(self.commit + 1, self.log.last_index())).unwrap_or(usize::MAX)
    }

    /// Cuts entries `lo..=hi` into consecutive ranges to read from the log
    /// store, each of at most `max` entries and `max_bytes` entry bytes by
    /// the sizes the core records for every entry (a single entry over the
    /// budget is a range of its own). The runtime applies entries that
    /// left the window in these ranges, so a read is bounded by what the
    /// entries weigh, not by a guess from the previous read.
    pub(crate) fn store_read_ranges(
        &self,
        lo: u64,
        hi: u64,
        max: usize,
        max_bytes: usize,
    ) -> Vec<(u64, u64)> {
        self.log.read_ranges(lo, hi, max, max_bytes)
    }

    /// Term of the entry at `index`, if known.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }

    /// Index of the last compacted entry.
    pub fn snapshot_index(&self) -> u64 {
        self.log.snapshot_index()
    }

    /// The latest configuration and its index.
    pub fn configuration(&self) -> (&Configuration, u64) {
        self.membership.latest()
    }

    /// The newest committed configuration and its index.
    pub fn committed_configuration(&self) -> (&Configuration, u64) {
        self.membership.committed(self.commit)
    }

    /// Per-follower replication progress, when leader.
    pub fn peer_progress(&self) -> Vec<PeerProgress> {
        match &self.role {
            Role::Leader(l) => l
                .peers
                .iter()
                .map(|(id, p)| PeerProgress {
                    id: id.clone(),
                    matched: p.matched,
                    next: p.next,
                    ticks_since_contact: p.ticks_since_contact,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Replaces the tick counts and switches (reloadable settings). The
    /// current election timer is re-randomized with the new bounds; a
    /// smaller log window takes effect at once.
    pub fn reconfigure(&mut self, cfg: CoreConfig) {
        self.cfg = cfg;
        self.log.evict(self.persisted, self.cfg.max_window_bytes);
        if !self.is_leader() {
            let elapsed = self.election_elapsed;
            self.reset_election_timer();
            self.election_elapsed = elapsed;
        }
    }

    /// Whether a leadership transfer is running.
    pub fn transfer_in_progress(&self) -> bool {
        matches!(&self.role, Role::Leader(l) if l.transfer.is_some())
    }

    /// Takes the accumulated work, adding newly applicable committed entries.
    pub fn take_ready(&mut self) -> Ready {
        self.flush_reads();
        let applicable = self.commit.min(self.persisted);
        let window_start = self.log.window_start();
        if applicable > self.applied_sent && self.applied_sent + 1 < window_start {
            // Committed entries whose payloads left the window: the driver
            // reads them from the store, ahead of `committed`.
            let hi = applicable.min(window_start - 1);
            // Only set here, and the whole Ready is taken below: nothing
            // from an earlier call can be pending.
            debug_assert!(self.ready.apply_from_store.is_none() && self.ready.committed.is_empty());
            self.ready.apply_from_store = Some((self.applied_sent + 1, hi));
            self.applied_sent = hi;
        }
        if applicable > self.applied_sent {
            let entries = self.log.slice(self.applied_sent + 1, applicable, usize::MAX);
            if let Some(last) = entries.last() {
                self.applied_sent = last.index;
            }
            self.ready.committed.extend(entries);
        }
        std::mem::take(&mut self.ready)
    }

    /// Whether [`Core::take_ready`] would return work.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
            || self.commit.min(self.persisted) > self.applied_sent
            || self.reads_unflushed()
    }

    /// Reports that the log up to `index` (whose entry has `term`) is
    /// durable. Stale reports for entries since replaced are ignored.
    pub fn persisted(&mut self, index: u64, term: u64) {
        if index <= self.persisted || self.log.term(index) != Some(term) {
            return;
        }
        self.persisted = index.min(self.log.last_index());
        self.log.evict(self.persisted, self.cfg.max_window_bytes);
        if self.is_leader() {
            self.maybe_commit();
        }
    }

    /// Appends entries as leader. Returns the index of the first one.
    pub fn propose(&mut self, commands: impl IntoIterator<Item = (LogType, Bytes)>) -> Result<u64, Refusal> {
        match &self.role {
            Role::Leader(l) if l.transfer.is_some() => return Err(Refusal::TransferInProgress),
            Role::Leader(_) => {}
            Role::Removed => return Err(Refusal::Removed),
            _ => return Err(Refusal::NotLeader(self.leader.clone())),
        }
        let first = self.log.last_index() + 1;
        let term = self.hard.term;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for (index, (log_type, data)) in (first..).zip(commands) {
            if log_type == LogType::Configuration {
                return Err(InvalidRequest::ConfigurationViaPropose.into());
            }
            let entry = Log { index, term, log_type, data };
            bytes = bytes.saturating_add(log::entry_bytes(&entry));
            entries.push(entry);
        }
        let uncommitted = self.uncommitted_bytes();
        let limit = self.cfg.max_uncommitted_bytes;
        if uncommitted > 0 && uncommitted.saturating_add(bytes) > limit {
            tracing::debug!(uncommitted, limit, "proposal refused: too many uncommitted bytes");
            return Err(Refusal::UncommittedLimit { uncommitted, limit });
        }
        self.append_local(entries);
        self.broadcast_append();
        Ok(first)
    }

    /// Proposes a new configuration (one change at a time). Returns its index.
    ///
    /// A joint configuration is refused here (joint changes go through
    /// [`Core::propose_joint`], which checks that incoming voters caught
    /// up), and so is any change while the latest configuration is joint.
    pub fn propose_configuration(&mut self, configuration: Configuration) -> Result<u64, Refusal> {
        self.check_configuration_change()?;
        if configuration.is_joint() {
            return Err(InvalidRequest::Configuration(
                "a joint configuration is entered with propose_joint".into(),
            )
            .into());
        }
        self.append_configuration(configuration)
    }

    /// Writes the first configuration of a brand-new cluster: term 1, entry 1.
    pub fn bootstrap(&mut self, configuration: Configuration) -> Result<(), Refusal> {
        if self.is_removed() {
            return Err(Refusal::Removed);
        }
        if self.hard.term != 0 || self.log.last_index() != 0 || self.log.snapshot_index() != 0 {
            return Err(InvalidRequest::AlreadyHasState.into());
        }
        configuration.validate().map_err(InvalidRequest::Configuration)?;
        let data =
            crate::codec::encode(&configuration).map_err(|e| InvalidRequest::Unencodable(e.to_string()))?;
        self.hard.term = 1;
        self.ready.hard_state = Some(self.hard.clone());
        self.append_local(vec![Log {
            index: 1,
            term: 1,
            log_type: LogType::Configuration,
            data: data.into(),
        }]);
        self.reset_election_timer();
        Ok(())
    }

    /// Appends entries to the local log (and the durable-write queue),
    /// applying configuration entries as they are appended.
    pub(crate) fn append_local(&mut self, entries: Vec<Log>) {
        for e in &entries {
            if e.log_type == LogType::Configuration {
                match crate::codec::decode::<Configuration>(&e.data) {
                    Ok(conf) => {
                        self.membership.push(e.index, conf);
                    }
                    Err(err) => {
                        tracing::error!(index = e.index, error = %err, "ignoring undecodable configuration entry");
                    }
                }
            }
        }
        self.ready.entries.extend(entries.iter().cloned());
        self.log.append(entries);
        self.on_configuration_changed();
    }

    /// Removes entries >= `index` from the log (conflict truncation).
    pub(crate) fn truncate_local(&mut self, index: u64) {
        self.log.truncate_from(index);
        self.membership.truncate_from(index);
        self.persisted = self.persisted.min(index.saturating_sub(1));
        self.ready.entries.retain(|e| e.index < index);
        self.ready.truncate_from = Some(self.ready.truncate_from.map_or(index, |t| t.min(index)));
        self.on_configuration_changed();
    }

    /// Forgets log entries up to `index` after a snapshot covers them.
    /// Only committed, applied entries can be compacted.
    pub fn compact(&mut self, index: u64) -> Result<(), CompactError> {
        if index > self.applied_sent || index > self.commit {
            return Err(CompactError::NotApplied { index, applied: self.applied_sent });
        }
        let term = self.log.term(index).ok_or(CompactError::NotInLog { index })?;
        self.log.compact_to(index, term);
        self.membership.compact(self.commit);
        Ok(())
    }

    /// Whether this node may vote and campaign.
    pub(crate) fn is_voter(&self) -> bool {
        self.membership.latest().0.is_voter(&self.id)
    }

    pub(crate) fn send(&mut self, to: ServerId, body: Body) {
        self.ready.messages.push(Message { from: self.id.clone(), to, rpc_id: 0, body });
    }

    pub(crate) fn reply(&mut self, to: ServerId, rpc_id: u64, body: Body, after_persist: bool) {
        let msg = Message { from: self.id.clone(), to, rpc_id, body };
        if after_persist {
            self.ready.persisted_messages.push(msg);
        } else {
            self.ready.messages.push(msg);
        }
    }

    /// Whether the pending work holds an answer to inbound request `rpc_id`.
    fn answered(&self, rpc_id: u64) -> bool {
        let ready = &self.ready;
        ready.messages.iter().chain(&ready.persisted_messages).any(|m| m.rpc_id == rpc_id)
    }

    pub(crate) fn persist_hard_state(&mut self) {
        self.ready.hard_state = Some(self.hard.clone());
    }
}
