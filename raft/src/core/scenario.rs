//! The one deterministic driver of the core's scenario tests (test-only).
//!
//! Each rule file of the core (`election.rs`, `replication.rs`, `read.rs`,
//! `snapshot.rs`, `transfer.rs`, `membership.rs`, `removal.rs`) keeps its
//! scenario tests next to it (`election/tests.rs`, ...), all written against
//! this driver, in the style of etcd-io/raft's interaction tests: steps in
//! (tick, deliver, propose, read, persist, cut a link, crash, restart) and
//! expected messages and `Ready` out, rendered as short text lines by
//! [`render`] and [`render_ready`] so an expectation reads like a trace.
//!
//! The driver executes every `Ready` with [`harness::execute`], the same
//! executor the core simulation uses, in the order the core documents (see
//! the [module docs](super)): messages go out at once; the durable part (term
//! and vote, an installed snapshot's log deletion, truncation, entries) is
//! written to the node's in-memory [`Disk`] (a [`MemLog`]) when its simulated
//! fsync completes, and only then do `persisted_messages` go out and
//! [`Core::persisted`] get reported; committed entries are applied last. With [`Cluster::auto_persist`] on
//! (the default) every fsync completes at once; off, writes wait for
//! [`Cluster::sync`], and [`Cluster::crash`] loses the ones still waiting, so
//! [`Cluster::restart`] rebuilds a core from what really reached the disk.
//! Messages travel FIFO over links that can be cut. Reads of the log store
//! a leader asks for ([`Ready::fetches`]) are served from the node's disk
//! right after its `Ready` ran, or, with [`Cluster::auto_fetch`] off, only
//! when [`Cluster::complete_fetches`] is called; committed entries to apply
//! from the store ([`Ready::apply_from_store`]) are read from the disk.

mod render;
pub(super) mod script;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

pub(super) use self::render::{render, render_ready};
use super::harness::{self, DurableWrite, MemLog, ReadyHost};
use super::{
    Body, Core, CoreConfig, InitialState, InstalledSnapshot, LogFetch, LogReset, Message, ReadState, Ready,
    Refusal,
};
use crate::message::{AppendEntriesRequest, RequestPreVoteRequest, RequestVoteRequest};
use crate::types::{Configuration, HardState, Log, LogType, Server, ServerId, SnapshotPosition};

/// The ids `n1..=nN`.
pub(super) fn ids(n: usize) -> Vec<ServerId> {
    (1..=n).map(|i| ServerId::from(format!("n{i}"))).collect()
}

/// A configuration in which every one of `ids` is a voter.
pub(super) fn config_of(ids: &[ServerId]) -> Configuration {
    Configuration { servers: ids.iter().map(|id| Server::voter(id.clone(), id.as_str())).collect() }
}

/// The durable state of a node bootstrapped with `conf` (term 1, entry 1).
pub(super) fn bootstrapped(conf: &Configuration) -> InitialState {
    let data = crate::codec::encode(conf).expect("encode");
    InitialState {
        hard_state: HardState { term: 1, vote: None },
        entries: vec![Log::new(1, 1, LogType::Configuration, data)],
        ..InitialState::default()
    }
}

/// A client command carrying `s`.
pub(super) fn cmd(s: &str) -> (LogType, Bytes) {
    (LogType::Command, Bytes::copy_from_slice(s.as_bytes()))
}

/// A message from `from` to `to` with request token `rpc_id`.
pub(super) fn msg(from: &str, to: &str, rpc_id: u64, body: Body) -> Message {
    Message { from: from.into(), to: to.into(), rpc_id, body }
}

/// A vote request from `candidate` for `term`, its log ending at `last`
/// (index, term).
pub(super) fn vote_request(term: u64, candidate: &str, last: (u64, u64)) -> RequestVoteRequest {
    RequestVoteRequest {
        term,
        candidate_id: candidate.into(),
        last_log_index: last.0,
        last_log_term: last.1,
        leadership_transfer: false,
        cluster_id: None,
    }
}

/// A vote request of a leadership transfer (it bypasses leader stickiness).
pub(super) fn transfer_vote_request(term: u64, candidate: &str, last: (u64, u64)) -> RequestVoteRequest {
    RequestVoteRequest { leadership_transfer: true, ..vote_request(term, candidate, last) }
}

/// A pre-vote request from `candidate` for `term`, its log ending at `last`.
pub(super) fn pre_vote_request(term: u64, candidate: &str, last: (u64, u64)) -> RequestPreVoteRequest {
    RequestPreVoteRequest {
        term,
        candidate_id: candidate.into(),
        last_log_index: last.0,
        last_log_term: last.1,
        cluster_id: None,
    }
}

/// An AppendEntries from `leader` of `term` (read round 0): `entries` after
/// `prev` (index, term), and the leader's commit index.
pub(super) fn append_request(
    term: u64,
    leader: &str,
    prev: (u64, u64),
    entries: Vec<Log>,
    leader_commit: u64,
) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        leader_id: leader.into(),
        prev_log_index: prev.0,
        prev_log_term: prev.1,
        entries,
        leader_commit,
        round: 0,
        cluster_id: None,
    }
}

/// A node's disk: what completed fsyncs made durable.
#[derive(Debug, Default)]
pub(super) struct Disk {
    /// Term, vote and log.
    pub(super) mem: MemLog,
    /// The snapshot the log was last replaced with, if any: a restart
    /// needs its configuration.
    snapshot: Option<SnapshotPosition>,
}

impl Disk {
    /// The disk of a node started from `init`.
    fn from_initial(init: &InitialState) -> Self {
        let mem = MemLog {
            hard: init.hard_state.clone(),
            log_start: init.snapshot_index(),
            log_start_term: init.snapshot_term(),
            log: init.entries.clone(),
        };
        Self { mem, snapshot: init.snapshot.clone() }
    }

    /// What a core restarting from this disk starts with: the state machine
    /// restarts from the snapshot the log starts after.
    pub(super) fn initial_state(&self) -> InitialState {
        InitialState {
            hard_state: self.mem.hard.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.mem.log.clone(),
            applied: self.mem.log_start,
            removed: false,
            ..InitialState::default()
        }
    }
}

impl Disk {
    /// What a core restarting from this disk starts with when its store
    /// keeps payloads on disk: only the newest `held` entries come with
    /// payloads, the older ones as metadata (their configuration entries
    /// with payloads), with the recorded commit index `commit`. The state
    /// machine restarts from the snapshot.
    pub(super) fn windowed_initial_state(&self, held: usize, commit: u64) -> InitialState {
        let split = self.mem.log.len().saturating_sub(held);
        let (meta, entries) = self.mem.log.split_at(split);
        InitialState {
            entry_meta: meta.iter().map(crate::types::LogEntryMeta::of).collect(),
            configurations: meta.iter().filter(|e| e.log_type == LogType::Configuration).cloned().collect(),
            entries: entries.to_vec(),
            commit,
            ..self.initial_state()
        }
    }
}

/// One core with its disk and everything its `Ready`s reported.
pub(super) struct Node {
    /// The protocol core; `None` while crashed.
    core: Option<Core>,
    /// What reached the disk.
    pub(super) disk: Disk,
    /// Writes waiting for their fsync, oldest first.
    pending: VecDeque<DurableWrite>,
    /// Every entry applied, in order.
    pub(super) applied: Vec<Log>,
    /// Confirmed reads.
    pub(super) reads: Vec<ReadState>,
    /// Failed reads.
    pub(super) failed_reads: Vec<(u64, Refusal)>,
    /// Followers a snapshot was requested for.
    pub(super) snapshots_to_send: Vec<ServerId>,
    /// Reported log resets.
    pub(super) log_resets: Vec<LogReset>,
    /// Leadership transfers reported aborted.
    pub(super) transfers_aborted: usize,
    /// Leadership transfers reported completed.
    pub(super) transfers_completed: usize,
    /// Inbound requests (by `rpc_id`) the core declined to answer.
    pub(super) declined: Vec<u64>,
    /// Reads of the log store asked for and not yet served.
    pub(super) fetches: VecDeque<LogFetch>,
    /// Reads of the log store served so far.
    pub(super) fetches_done: usize,
    /// Ranges of committed entries applied from the disk.
    pub(super) applied_from_store: Vec<(u64, u64)>,
}

impl Node {
    fn new(core: Core, disk: Disk) -> Self {
        Self {
            core: Some(core),
            disk,
            pending: VecDeque::new(),
            applied: Vec::new(),
            reads: Vec::new(),
            failed_reads: Vec::new(),
            snapshots_to_send: Vec::new(),
            log_resets: Vec::new(),
            transfers_aborted: 0,
            transfers_completed: 0,
            declined: Vec::new(),
            fetches: VecDeque::new(),
            fetches_done: 0,
            applied_from_store: Vec::new(),
        }
    }

    /// The running core.
    pub(super) fn core(&mut self) -> &mut Core {
        self.core.as_mut().expect("node is running")
    }

    /// Serves the pending reads of the log store from the disk (failing
    /// those `ok` rejects) and hands the outcomes to the core.
    fn serve_fetches(&mut self, mut ok: impl FnMut(&LogFetch) -> bool) -> usize {
        let mut served = 0;
        while let Some(f) = self.fetches.pop_front() {
            let result = if ok(&f) {
                self.disk.mem.read(f.lo, f.hi)
            } else {
                Err("simulated read failure".to_owned())
            };
            served += 1;
            self.fetches_done += 1;
            if let Some(core) = self.core.as_mut() {
                core.entries_fetched(f, result);
            }
        }
        served
    }

    /// Completes the oldest pending fsync: the write reaches the disk, then
    /// its persisted messages go out and the core learns what is durable.
    fn sync(&mut self, out: &mut VecDeque<Message>) -> bool {
        let Some(w) = self.pending.pop_front() else { return false };
        if let Err(e) = self.disk.mem.write(&w) {
            panic!("{}: the core asked for a corrupting write: {e}", self.core().id());
        }
        out.extend(w.completed(self.core.as_mut()));
        true
    }
}

/// A node executing one `Ready` (see [`harness::execute`]).
struct Executing<'a> {
    node: &'a mut Node,
    /// Messages sent, delivered later in order.
    out: &'a mut VecDeque<Message>,
    /// Complete each fsync as soon as the write is queued.
    sync: bool,
}

impl ReadyHost for Executing<'_> {
    type Error = std::convert::Infallible;

    fn log_reset(&mut self, reset: LogReset) -> Result<(), Self::Error> {
        self.node.log_resets.push(reset);
        Ok(())
    }

    fn send(&mut self, msg: Message) -> Result<(), Self::Error> {
        self.out.push_back(msg);
        Ok(())
    }

    fn install(&mut self, snapshot: InstalledSnapshot) -> Result<(), Self::Error> {
        // Keep the snapshot's position (its configuration) for restarts;
        // the state machine here is the list of applied entries.
        self.node.disk.snapshot = Some(snapshot.position);
        Ok(())
    }

    fn write(&mut self, write: DurableWrite) -> Result<(), Self::Error> {
        self.node.pending.push_back(write);
        if self.sync {
            self.node.sync(self.out);
        }
        Ok(())
    }

    fn send_snapshots(&mut self, to: Vec<ServerId>) -> Result<(), Self::Error> {
        self.node.snapshots_to_send.extend(to);
        Ok(())
    }

    fn fetch(&mut self, fetch: LogFetch) -> Result<(), Self::Error> {
        self.node.fetches.push_back(fetch);
        Ok(())
    }

    fn apply_from_store(&mut self, lo: u64, hi: u64) -> Result<(), Self::Error> {
        let entries = match self.node.disk.mem.read(lo, hi) {
            Ok(entries) => entries,
            Err(e) => panic!("{}: applying committed entries from the disk: {e}", self.node.core().id()),
        };
        self.node.applied_from_store.push((lo, hi));
        self.node.applied.extend(entries);
        Ok(())
    }

    fn apply(&mut self, entry: Log) -> Result<(), Self::Error> {
        self.node.applied.push(entry);
        Ok(())
    }

    fn read(&mut self, read: ReadState) -> Result<(), Self::Error> {
        self.node.reads.push(read);
        Ok(())
    }

    fn read_failed(&mut self, id: u64, why: Refusal) -> Result<(), Self::Error> {
        self.node.failed_reads.push((id, why));
        Ok(())
    }

    fn transfer_aborted(&mut self) -> Result<(), Self::Error> {
        self.node.transfers_aborted += 1;
        Ok(())
    }

    fn transfer_completed(&mut self) -> Result<(), Self::Error> {
        self.node.transfers_completed += 1;
        Ok(())
    }

    fn declined(&mut self, rpc_id: u64) -> Result<(), Self::Error> {
        self.node.declined.push(rpc_id);
        Ok(())
    }
}

/// Executes `ready` for `node` in the documented order, after the snapshot
/// install `installed` (if any).
fn execute(
    node: &mut Node,
    ready: Ready,
    installed: Option<InstalledSnapshot>,
    sync: bool,
    out: &mut VecDeque<Message>,
) {
    let Ok(()) = harness::execute(ready, installed, &mut Executing { node, out, sync });
}

/// A synchronous cluster of cores driven by [`Node::execute`].
pub(super) struct Cluster {
    /// The nodes by id.
    pub(super) nodes: BTreeMap<ServerId, Node>,
    /// Directed links that drop messages.
    pub(super) cut: BTreeSet<(ServerId, ServerId)>,
    /// Messages in flight, delivered FIFO.
    pub(super) queue: VecDeque<Message>,
    /// Whether fsyncs complete as soon as a write is queued.
    pub(super) auto_persist: bool,
    /// Every message delivered so far, rendered (see [`render`]), when
    /// [`Cluster::record`] is on.
    pub(super) delivered: Vec<String>,
    /// Record delivered messages in `delivered`.
    pub(super) record: bool,
    /// Whether reads of the log store are served as soon as they are asked
    /// for (see [`Cluster::complete_fetches`]).
    pub(super) auto_fetch: bool,
}

impl Cluster {
    /// `n` voters `n1..=nN`, all bootstrapped with the same configuration,
    /// that have been up for a follower timeout when the test begins: none
    /// of them still refuses votes for having just started (restart
    /// stickiness, see `lease`), which a freshly started node does (see
    /// [`Cluster::start`], [`Cluster::restart`]).
    pub(super) fn new(n: usize, cfg: CoreConfig) -> Self {
        let all = ids(n);
        let init = bootstrapped(&config_of(&all));
        let mut c = Self {
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            auto_persist: true,
            delivered: Vec::new(),
            record: false,
            auto_fetch: true,
        };
        for (i, id) in all.iter().enumerate() {
            c.start(id.as_str(), cfg.clone(), i as u64 + 1, init.clone());
        }
        for core in c.cores() {
            core.since_leader = core.cfg.follower_timeout_ticks;
        }
        c
    }

    /// Starts (or replaces) node `id` from `init`, its disk holding `init`.
    pub(super) fn start(&mut self, id: &str, cfg: CoreConfig, seed: u64, init: InitialState) {
        let core = Core::new(id.into(), cfg, seed, init.clone()).expect("core");
        self.nodes.insert(id.into(), Node::new(core, Disk::from_initial(&init)));
    }

    /// Replaces node `id` with one restarted from an empty disk.
    pub(super) fn wipe(&mut self, id: &str) {
        self.start(id, CoreConfig::for_tests(), 99, InitialState::default());
    }

    /// The core of node `id`.
    pub(super) fn node(&mut self, id: &str) -> &mut Core {
        self.nodes.get_mut(&ServerId::from(id)).expect("node exists").core()
    }

    /// Node `id` with its disk and reports.
    pub(super) fn host(&mut self, id: &str) -> &mut Node {
        self.nodes.get_mut(&ServerId::from(id)).expect("node exists")
    }

    /// Everything node `id` applied.
    pub(super) fn applied(&mut self, id: &str) -> &[Log] {
        &self.host(id).applied
    }

    /// The reads node `id` confirmed.
    pub(super) fn reads(&mut self, id: &str) -> &[ReadState] {
        &self.host(id).reads
    }

    /// The running cores.
    pub(super) fn cores(&mut self) -> impl Iterator<Item = &mut Core> {
        self.nodes.values_mut().filter_map(|n| n.core.as_mut())
    }

    /// Whether no running core has work left.
    pub(super) fn at_rest(&mut self) -> bool {
        self.cores().all(|c| !c.has_ready())
    }

    /// Cuts every link to and from `id`.
    pub(super) fn isolate(&mut self, id: &str) {
        let id = ServerId::from(id);
        for other in self.nodes.keys() {
            if *other != id {
                self.cut.insert((id.clone(), other.clone()));
                self.cut.insert((other.clone(), id.clone()));
            }
        }
    }

    /// Cuts the link between `a` and `b` both ways.
    pub(super) fn cut_between(&mut self, a: &str, b: &str) {
        self.cut.insert((a.into(), b.into()));
        self.cut.insert((b.into(), a.into()));
    }

    /// Restores the link between `a` and `b` both ways.
    pub(super) fn connect(&mut self, a: &str, b: &str) {
        self.cut.remove(&(a.into(), b.into()));
        self.cut.remove(&(b.into(), a.into()));
    }

    /// Restores every link.
    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Executes every running core's `Ready` (serving its reads of the
    /// log store at once with [`Cluster::auto_fetch`]).
    pub(super) fn collect(&mut self) {
        let sync = self.auto_persist;
        let fetch = self.auto_fetch;
        for node in self.nodes.values_mut() {
            for round in 0.. {
                let Some(core) = node.core.as_mut() else { break };
                if !core.has_ready() {
                    break;
                }
                assert!(round < 10_000, "{}: the core reports work that taking it does not clear", core.id());
                let ready = core.take_ready();
                execute(node, ready, None, sync, &mut self.queue);
                if fetch {
                    node.serve_fetches(|_| true);
                }
            }
        }
    }

    /// Serves node `id`'s pending reads of the log store from its disk;
    /// those `ok` rejects fail with an error instead. Returns how many were
    /// served.
    pub(super) fn complete_fetches(&mut self, id: &str, ok: impl FnMut(&LogFetch) -> bool) -> usize {
        self.host(id).serve_fetches(ok)
    }

    /// Takes node `id`'s `Ready` without executing it.
    pub(super) fn take_ready(&mut self, id: &str) -> Ready {
        self.node(id).take_ready()
    }

    /// Executes a `Ready` taken with [`Cluster::take_ready`] as if the driver
    /// had run it.
    pub(super) fn execute(&mut self, id: &str, ready: Ready) {
        let sync = self.auto_persist;
        let node = self.nodes.get_mut(&ServerId::from(id)).expect("node exists");
        execute(node, ready, None, sync, &mut self.queue);
    }

    /// Node `id` installs `snapshot`, streamed by the leader `from` of
    /// `term` (see [`Core::install_snapshot`]); an accepted install is
    /// executed at once, with the `Ready` it leaves. Returns what the core
    /// returned.
    pub(super) fn install_snapshot(
        &mut self,
        id: &str,
        from: &str,
        term: u64,
        snapshot: SnapshotPosition,
    ) -> Result<Option<InstalledSnapshot>, u64> {
        let outcome = self.node(id).install_snapshot(&from.into(), term, snapshot);
        if let Ok(Some(installed)) = &outcome {
            let sync = self.auto_persist;
            let node = self.nodes.get_mut(&ServerId::from(id)).expect("node exists");
            let ready = node.core().take_ready();
            execute(node, ready, Some(installed.clone()), sync, &mut self.queue);
        }
        outcome
    }

    /// Completes node `id`'s oldest pending fsync. Returns whether there
    /// was one.
    pub(super) fn sync(&mut self, id: &str) -> bool {
        let node = self.nodes.get_mut(&ServerId::from(id)).expect("node exists");
        node.sync(&mut self.queue)
    }

    /// Crashes node `id`: its core stops and writes not yet synced are lost.
    pub(super) fn crash(&mut self, id: &str) {
        let node = self.host(id);
        node.core = None;
        node.pending.clear();
    }

    /// Restarts node `id` from its disk (its state machine replays from the
    /// snapshot).
    pub(super) fn restart(&mut self, id: &str, cfg: CoreConfig, seed: u64) {
        let node = self.host(id);
        let init = node.disk.initial_state();
        node.core = Some(Core::new(id.into(), cfg, seed, init).expect("restart from the disk"));
    }

    /// Restarts node `id` from `init` (built from its disk), keeping the
    /// disk; its state machine replays from scratch.
    pub(super) fn restart_from(&mut self, id: &str, cfg: CoreConfig, seed: u64, init: InitialState) {
        let node = self.host(id);
        node.pending.clear();
        node.applied.clear();
        node.core = Some(Core::new(id.into(), cfg, seed, init).expect("restart from the disk"));
    }

    /// Delivers one message unless its link is cut.
    pub(super) fn deliver(&mut self, m: Message) {
        if self.cut.contains(&(m.from.clone(), m.to.clone())) {
            return;
        }
        if self.record {
            self.delivered.push(render(&m));
        }
        if let Some(core) = self.nodes.get_mut(&m.to).and_then(|n| n.core.as_mut()) {
            core.step(m);
        }
    }

    /// Executes `Ready`s and delivers at most `limit` messages (for
    /// exchanges that may never come to rest).
    pub(super) fn deliver_some(&mut self, limit: usize) {
        for _ in 0..limit {
            self.collect();
            let Some(m) = self.queue.pop_front() else { return };
            self.deliver(m);
        }
    }

    /// Delivers messages until nothing is left.
    pub(super) fn settle(&mut self) {
        self.settle_with(Some);
    }

    /// Delivers messages until nothing is left, passing each one through
    /// `f` first (which may inspect it, change it, or drop it).
    pub(super) fn settle_with(&mut self, mut f: impl FnMut(Message) -> Option<Message>) {
        for _ in 0..10_000 {
            self.collect();
            let Some(m) = self.queue.pop_front() else { return };
            if self.cut.contains(&(m.from.clone(), m.to.clone())) {
                continue;
            }
            if let Some(m) = f(m) {
                self.deliver(m);
            }
        }
        panic!("cluster did not settle");
    }

    /// Ticks every running core once, then settles; `n` times.
    pub(super) fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            for core in self.cores() {
                core.tick();
            }
            self.settle();
        }
    }

    /// The current leaders.
    pub(super) fn leaders(&mut self) -> Vec<ServerId> {
        self.cores().filter(|c| c.is_leader()).map(|c| c.id().clone()).collect()
    }

    /// Ticks until exactly one leader exists.
    pub(super) fn elect(&mut self) -> ServerId {
        for _ in 0..200 {
            self.tick_all(1);
            let leaders = self.leaders();
            if leaders.len() == 1 {
                return leaders[0].clone();
            }
        }
        panic!("no leader elected");
    }

    /// Makes `id` leader by letting it time out first: every other node's
    /// timer is pushed far out, then the whole cluster ticks.
    pub(super) fn elect_node(&mut self, id: &str) {
        let target = ServerId::from(id);
        for _ in 0..200 {
            for core in self.cores() {
                if *core.id() != target && !core.is_leader() {
                    core.election_timeout = 10_000;
                }
            }
            self.tick_all(1);
            if self.node(id).is_leader() {
                return;
            }
        }
        panic!("{id} should have won");
    }

    /// Proposes `n` commands (`v0`, `v1`, ...) one by one on `leader`, then
    /// settles.
    pub(super) fn propose_many(&mut self, leader: &str, n: usize) {
        for i in 0..n {
            self.node(leader).propose([cmd(&format!("v{i}"))]).expect("leader");
        }
        self.settle();
    }

    /// Proposes `conf` on the leader `id`, lets the cluster settle and tick
    /// twice; returns the configuration's index.
    pub(super) fn reconfigure(&mut self, leader: &str, conf: Configuration) -> u64 {
        let idx = self.node(leader).propose_configuration(conf).expect("leader accepts the change");
        self.settle();
        self.tick_all(2);
        idx
    }

    /// The leader `of`'s view of `peer`.
    pub(super) fn progress(&mut self, of: &str, peer: &str) -> Option<super::PeerProgress> {
        self.node(of).peer_progress().into_iter().find(|p| p.id.as_str() == peer)
    }
}
