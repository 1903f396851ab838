//! The main task: drives the protocol core with client requests (batched
//! into one proposal per loop turn), inbound RPCs, ticks, its own log
//! writes (polled in its loop, see [`LogWriter`]) and completions from the
//! peer and FSM tasks, and executes the work the core returns.
//!
//! Its state is split by concern, each part a named struct with its
//! handlers in its own submodule:
//! - `clients` ([`Clients`]): client requests, proposals and the writes
//!   waiting to be applied; `deadlines`: their callers' deadlines;
//! - `reads` ([`Reads`]): ReadIndex rounds under way;
//! - `rpc` ([`Rpcs`]): inbound RPCs and the answers the core owes them;
//! - `peers` ([`Peers`]): peer tasks, the messages routed to them and
//!   their reports;
//! - `persist` ([`Persistence`]): durable work queued to the log writer
//!   and the compaction of the log behind snapshots;
//! - `snapshots` ([`Snapshots`]): the snapshot task and snapshot transfer;
//!   `restore`: a user's restore;
//! - `membership` ([`Membership`]): configuration changes and promotions;
//!   `joint`: joint changes (several servers in one step);
//! - `commit` ([`CommitFlush`]): telling followers a new commit index;
//!   `commit_record` ([`CommitRecord`]): recording it in the stable store
//!   for restarts;
//! - `fetch` ([`Fetches`]): reading entries outside the core's log window
//!   from the log store for lagging followers, off this task;
//! - `room` ([`Room`]): writes waiting for room under the
//!   uncommitted-bytes limit;
//! - `publish` ([`Publisher`]): state, metrics and observers;
//! - `cluster` ([`ClusterGuard`]): the cluster identity of requests;
//! - `removed`: the terminal state after this server was removed;
//! - `autopilot` ([`Autopilot`]): followers' health, stabilization before
//!   promotion and dead-server cleanup.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::apply::{ApplyBatch, ApplyMsg};
use super::peer::{self, PeerEvent, PeerHandle};
use super::reads::{refusal_error, ReadFailure, ReadTicket};
use super::snapshot::{SnapshotCmd, SnapshotReply, SnapshotTaken};
use super::writer::{LogWriter, PersistJob, WriterEvent};
use super::{MembershipChange, Request, RestoreRequest, Waiter};
use crate::config::Config;
use crate::core::{Body, Core, Message, Refusal};
use crate::error::{Error, StorageError, TransportError};
use crate::message::{InstallSnapshotRequest, InstallSnapshotResponse, RpcRequest, RpcResponse};
use crate::metrics::{Metrics, PeerMetrics};
use crate::observer::Observation;
use crate::raft::Shared;
use crate::snapshot::{SnapshotReader, SnapshotStore, SnapshotWriter};
use crate::transport::{InboundRequest, InboundRpc, RpcReply, Transport};
use crate::types::{Configuration, LogType, RaftState, ServerAddress, ServerId, SnapshotMeta};

mod autopilot;
mod clients;
mod clock;
mod cluster;
mod commit;
mod commit_record;
mod deadlines;
mod fetch;
mod joint;
mod membership;
mod peers;
mod persist;
mod publish;
mod reads;
mod removed;
mod restore;
mod room;
mod rpc;
mod snapshots;

use self::autopilot::Autopilot;
use self::clients::{Clients, Pending};
use self::clock::TickClock;
use self::cluster::ClusterGuard;
use self::commit::CommitFlush;
use self::commit_record::CommitRecord;
use self::fetch::Fetches;
use self::membership::Membership;
use self::peers::Peers;
use self::persist::{NewestSnapshot, Persistence};
use self::publish::Publisher;
use self::reads::Reads;
use self::room::Room;
use self::rpc::Rpcs;
use self::snapshots::{store_snapshot, Snapshots};

/// Most events of one kind handled before looking at the others.
const MAX_DRAIN: usize = 1024;

/// Everything the handle hands to the main task when it starts it.
pub(crate) struct NodeTask<R> {
    /// The protocol core, recovered from the stores.
    pub(crate) core: Core,
    /// This node's settings.
    pub(crate) config: Config,
    /// Sends RPCs to peers and streams snapshots.
    pub(crate) transport: Arc<dyn Transport>,
    /// State shared with the handle.
    pub(crate) shared: Arc<Shared>,
    /// Client requests from the handle.
    pub(crate) requests: mpsc::Receiver<Request<R>>,
    /// RPCs the transport received for this node.
    pub(crate) inbound: Option<mpsc::Receiver<InboundRpc>>,
    /// The log writer, driven by the main task's loop.
    pub(crate) writer: LogWriter,
    /// Failures the FSM task reports (they stop the node).
    pub(crate) fsm_failures: mpsc::UnboundedReceiver<WriterEvent>,
    /// Work for the FSM task.
    pub(crate) apply_tx: mpsc::UnboundedSender<ApplyMsg<R>>,
    /// The FSM task.
    pub(crate) apply_task: JoinHandle<()>,
    /// The snapshot store.
    pub(crate) snaps: Arc<dyn SnapshotStore>,
    /// Commands for the snapshot task.
    pub(crate) snapshot_cmds: mpsc::UnboundedSender<SnapshotCmd>,
    /// Snapshots the snapshot task took.
    pub(crate) snapshot_events: mpsc::UnboundedReceiver<SnapshotTaken>,
    /// The snapshot task.
    pub(crate) snapshot_task: JoinHandle<()>,
    /// Where peer tasks and background transfers report.
    pub(crate) peer_events_tx: mpsc::UnboundedSender<PeerEvent>,
    /// Their reports.
    pub(crate) peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    /// The cluster this node belongs to (`None`: adopts the first leader's).
    pub(crate) cluster_id: Option<crate::types::ClusterId>,
    /// The log store holds no entry at or below this index (read from the
    /// store at start, advanced as compactions complete).
    pub(crate) compacted_through: u64,
    /// Index and term of the newest snapshot taken, installed or restored.
    pub(crate) last_snapshot: (u64, u64),
    /// The log store, read (off the main task) for entries the core no
    /// longer holds in memory.
    pub(crate) logs: Arc<dyn crate::storage::LogStore>,
}

/// Another task of this node: the channel feeding it, and its handle.
struct Worker<T> {
    /// Work for the task; dropping it lets the task finish.
    tx: mpsc::UnboundedSender<T>,
    /// The task, awaited on shutdown.
    task: JoinHandle<()>,
}

impl<T> Worker<T> {
    /// Closes the task's queue and waits until it has finished what was
    /// queued.
    async fn stop(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// The main task's state, by concern.
struct Node<R> {
    /// The protocol core this task drives.
    core: Core,
    /// This node's settings (replaced by a reload).
    config: Config,
    /// Sends RPCs to peers and streams snapshots.
    transport: Arc<dyn Transport>,
    /// State shared with the handle: role, leader, watches, observers.
    shared: Arc<Shared>,
    /// Client requests and the writes waiting to be applied.
    clients: Clients<R>,
    /// ReadIndex rounds under way.
    reads: Reads,
    /// Inbound RPCs and the answers owed to them.
    rpcs: Rpcs,
    /// Peer tasks and their reports.
    peers: Peers,
    /// The log writer and the durable work queued to it.
    store: Persistence,
    /// The FSM task.
    apply: Worker<ApplyMsg<R>>,
    /// The snapshot task, snapshot transfers and restores.
    snapshots: Snapshots,
    /// Membership changes under way and the configuration observers saw.
    membership: Membership,
    /// (Leader) telling followers about a new commit index.
    commit: CommitFlush,
    /// What was last published to the handle, watches and observers.
    publisher: Publisher,
    /// Reads of stored entries for lagging followers.
    fetches: Fetches,
    /// Writes waiting for room under the uncommitted-bytes limit.
    room: Room<R>,
    /// The commit index recorded in the stable store.
    commit_record: CommitRecord,
    /// Cluster-identity checks on inbound requests and adoption state.
    cluster: ClusterGuard,
    /// Why the node stops, if a store failed (reported to every waiter and
    /// in the metrics).
    fatal: Option<String>,
    /// Callers of [`Raft::shutdown`](crate::Raft::shutdown), answered once
    /// everything stopped.
    shutdown_ack: Vec<oneshot::Sender<()>>,
    /// The tick interval changed (config reload): the loop restarts its
    /// ticker.
    reload_ticker: bool,
    /// How many ticks the core is owed, from the monotonic clock.
    clock: TickClock,
    /// Metric handles and the write-stage tracker ([`crate::telemetry`]).
    telemetry: crate::telemetry::NodeTelemetry,
    /// Followers' health, stabilization and dead-server cleanup.
    autopilot: Autopilot,
}

enum Flow {
    Continue,
    Stop,
}

impl<R> Node<R> {
    /// Sorts what the handle handed over by concern.
    fn new(task: NodeTask<R>) -> Self {
        let (index, term) = task.last_snapshot;
        let snapshot_task = Worker { tx: task.snapshot_cmds, task: task.snapshot_task };
        let task_tick = task.config.tick_interval();
        let max_catch_up = max_catch_up(&task.config);
        let telemetry = crate::telemetry::NodeTelemetry::new(&task.config.local_id);
        Node {
            clients: Clients::new(task.requests),
            reads: Reads::default(),
            rpcs: Rpcs::new(task.inbound),
            peers: Peers::new(task.peer_events_tx, task.peer_events),
            store: Persistence::new(
                task.writer,
                task.fsm_failures,
                task.compacted_through,
                NewestSnapshot { index, term },
            ),
            apply: Worker { tx: task.apply_tx, task: task.apply_task },
            snapshots: Snapshots::new(task.snaps, snapshot_task, task.snapshot_events),
            core: task.core,
            config: task.config,
            transport: task.transport,
            shared: task.shared,
            membership: Membership::default(),
            commit: CommitFlush::default(),
            publisher: Publisher::default(),
            fetches: Fetches::new(task.logs),
            room: Room::default(),
            commit_record: CommitRecord::default(),
            cluster: ClusterGuard::new(task.cluster_id),
            fatal: None,
            shutdown_ack: Vec::new(),
            reload_ticker: false,
            clock: TickClock::new(tokio::time::Instant::now(), task_tick, max_catch_up),
            telemetry,
            autopilot: Autopilot::default(),
        }
    }
}

/// Most ticks delivered at once after a stall: four times the longest
/// timeout the ticks measure (every timer has fired by then).
fn max_catch_up(config: &Config) -> u64 {
    let longest = config.heartbeat_timeout.max(config.election_timeout).max(config.leader_lease_timeout);
    let tick = config.tick_interval().as_micros().max(1);
    u64::try_from(longest.as_micros() * 4 / tick).unwrap_or(u64::MAX).max(16)
}

pub(crate) async fn run<R: Send + 'static>(task: NodeTask<R>) {
    let mut node = Node::new(task);
    node.publish(true);
    node.clock.restart(tokio::time::Instant::now(), node.config.tick_interval());
    // Ticks are counted from the monotonic clock (see `clock`): one timer,
    // re-armed for the next tick after each delivery.
    let tick_sleep = tokio::time::sleep_until(node.clock.next_at());
    tokio::pin!(tick_sleep);
    // One timer for the commit flush, re-armed only when its deadline
    // changes: a fresh `sleep_until` per loop turn would register and
    // deregister a timer on every event under load.
    let commit_sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(commit_sleep);
    // Likewise one timer for all callers' deadlines.
    let deadline_sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(deadline_sleep);
    loop {
        if let Some(at) = node.commit.at {
            if commit_sleep.deadline() != at {
                commit_sleep.as_mut().reset(at);
            }
        }
        if let Some(at) = node.clients.next_deadline {
            if deadline_sleep.deadline() != at {
                deadline_sleep.as_mut().reset(at);
            }
        }
        let next_tick = node.clock.next_at();
        if tick_sleep.deadline() != next_tick {
            tick_sleep.as_mut().reset(next_tick);
        }
        let flow = tokio::select! {
            ev = node.store.writer.next_done(), if node.store.writer.busy() => node.on_writer_event(ev),
            Some(ev) = node.store.fsm_failures.recv() => node.on_writer_event(ev),
            Some(ev) = node.peers.events.recv() => {
                node.on_peer_event(ev);
                for _ in 0..MAX_DRAIN {
                    match node.peers.events.try_recv() {
                        Ok(ev) => node.on_peer_event(ev),
                        Err(_) => break,
                    }
                }
                Flow::Continue
            }
            rpc = recv_inbound(&mut node.rpcs.inbound) => {
                match rpc {
                    Some(rpc) => {
                        node.on_rpc(rpc);
                        for _ in 0..MAX_DRAIN {
                            match node.rpcs.inbound.as_mut().map(|r| r.try_recv()) {
                                Some(Ok(rpc)) => node.on_rpc(rpc),
                                _ => break,
                            }
                        }
                    }
                    None => node.rpcs.inbound = None,
                }
                Flow::Continue
            }
            Some(taken) = node.snapshots.taken.recv() => {
                node.on_snapshot_taken(taken);
                Flow::Continue
            }
            req = node.clients.requests.recv(), if !node.clients.restoring => match req {
                Some(req) => {
                    if node.more_requests_likely() {
                        // Let the other tasks ready on this worker run
                        // first (see `more_requests_likely`).
                        tokio::task::yield_now().await;
                    }
                    node.on_requests(req)
                }
                None => Flow::Stop,
            },
            () = &mut commit_sleep, if node.commit.at.is_some() => {
                node.flush_commit();
                Flow::Continue
            }
            () = &mut deadline_sleep, if node.clients.next_deadline.is_some() => {
                node.expire_waiters();
                Flow::Continue
            }
            () = &mut tick_sleep => {
                node.on_ticks_due();
                node.check_store_progress();
                node.prune_peers();
                node.autopilot_tick();
                node.advance_promotions();
                node.assign_legacy_cluster_id();
                node.record_commit(false);
                node.publish(true);
                Flow::Continue
            }
        };
        node.process_ready();
        if node.writes_held() {
            // Commits (or a new role) may have made room: propose what fits.
            node.retry_held();
            node.process_ready();
        }
        if let Flow::Stop = flow {
            break;
        }
        if std::mem::take(&mut node.reload_ticker) {
            node.clock.restart(tokio::time::Instant::now(), node.config.tick_interval());
        }
    }
    node.stop().await;
}

async fn recv_inbound(inbound: &mut Option<mpsc::Receiver<InboundRpc>>) -> Option<InboundRpc> {
    match inbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<R: Send + 'static> Node<R> {
    fn id(&self) -> &ServerId {
        &self.config.local_id
    }

    /// The tick timer fired: first handles the acknowledgements and
    /// requests that queued up meanwhile (a loop that fell behind must not
    /// time peers out for answers it has not read yet), then delivers every
    /// tick due.
    fn on_ticks_due(&mut self) {
        for _ in 0..MAX_DRAIN {
            match self.peers.events.try_recv() {
                Ok(ev) => self.on_peer_event(ev),
                Err(_) => break,
            }
        }
        for _ in 0..MAX_DRAIN {
            match self.rpcs.inbound.as_mut().map(|r| r.try_recv()) {
                Some(Ok(rpc)) => self.on_rpc(rpc),
                _ => break,
            }
        }
        self.deliver_due_ticks();
    }

    /// Gives the core every tick due by the monotonic clock (several after
    /// a stall, none if the last one was delivered already).
    pub(super) fn deliver_due_ticks(&mut self) {
        let due = self.clock.take_due(tokio::time::Instant::now());
        if due > 1 {
            if due == self.clock.max_catch_up() {
                tracing::warn!(
                    ticks = due,
                    "the main loop stalled for longer than every timeout: catching up"
                );
            } else {
                tracing::debug!(ticks = due, "the main loop fell behind the clock: catching up ticks");
            }
        }
        for _ in 0..due {
            self.core.tick();
        }
    }

    fn address_of(&self, id: &ServerId) -> Option<ServerAddress> {
        self.core
            .configuration()
            .0
            .server(id)
            .or_else(|| self.core.committed_configuration().0.server(id))
            .map(|s| s.address.clone())
            .or_else(|| self.peers.handles.get(id).map(|p| p.addr.clone()))
    }

    fn refusal(&self, r: Refusal) -> Error {
        let leader = self.refusal_leader(&r);
        refusal_error(r, leader)
    }

    /// The id and address of the leader a [`Refusal::NotLeader`] names.
    fn refusal_leader(&self, r: &Refusal) -> Option<(ServerId, ServerAddress)> {
        match r {
            Refusal::NotLeader(Some(id)) => self.address_of(id).map(|addr| (id.clone(), addr)),
            _ => None,
        }
    }

    /// Executes the work the core returned: messages, durable writes,
    /// snapshot transfers, entries to apply, reads and transfers to answer.
    fn process_ready(&mut self) {
        // Before any message of this step leaves: a step that ends the
        // lease (a transfer's TimeoutNow) must withdraw it first.
        self.publish_lease();
        if self.fatal.is_some() || !self.core.has_ready() {
            self.settle_lease_reads();
            self.after_state_change();
            return;
        }
        let mut ready = self.core.take_ready();
        for m in std::mem::take(&mut ready.messages) {
            self.route(m);
        }
        self.declined(std::mem::take(&mut ready.declined));
        if ready.needs_persist() {
            let job = PersistJob {
                seq: 0,
                compact_through: None,
                hard_state: ready.hard_state,
                truncate_from: ready.truncate_from,
                entries: ready.entries,
                messages: ready.persisted_messages,
                mark_removed: false,
                cluster_id: None,
                // Piggybacked on the log write when a record is due.
                commit: self.commit_to_record(false),
            };
            self.persist(job);
        }
        if !ready.snapshots_to_send.is_empty() {
            self.send_snapshots(std::mem::take(&mut ready.snapshots_to_send));
        }
        if !ready.fetches.is_empty() {
            self.start_fetches(std::mem::take(&mut ready.fetches));
        }
        // Entries the core no longer holds go first: the FSM applies in
        // log order.
        if let Some((lo, hi)) = ready.apply_from_store.take() {
            self.dispatch_apply_from_store(lo, hi);
        }
        if !ready.committed.is_empty() {
            self.dispatch_apply(ready.committed);
        }
        self.reads_done(ready.reads, ready.failed_reads);
        let transfer_completed = ready.transfer_completed;
        if ready.transfer_aborted {
            self.transfer_aborted();
        }
        self.count_log_resets(std::mem::take(&mut ready.log_resets));
        self.observe_configuration();
        self.schedule_commit_flush();
        self.after_state_change();
        // After the new role is published: a transfer's caller that resumes
        // must already see that this node no longer leads.
        if transfer_completed {
            self.transfer_completed();
        }
    }

    /// Shuts everything down; stores are no longer touched once this returns.
    async fn stop(mut self) {
        let fatal_msg = self.fatal.clone();
        let err = || match &fatal_msg {
            Some(msg) => Error::Storage(StorageError::Failed(msg.clone())),
            None => Error::Shutdown,
        };
        if let Some(msg) = &self.fatal {
            tracing::error!(error = %msg, "node stopped after a storage failure");
        }
        // A stopped node answers no read, from its lease or otherwise.
        self.shared.lease.withdraw();
        for (_, p) in std::mem::take(&mut self.clients.waiters) {
            p.waiter.fail(err());
        }
        self.fail_held(err);
        // Reads of stored entries stop before the stores are released.
        self.fetches.tasks.shutdown().await;
        // A clean stop records the final commit index (queued behind every
        // log write, so it is durable after them).
        self.record_commit(true);
        let read_failure = match &self.fatal {
            Some(msg) => ReadFailure::StorageFailed(msg.clone()),
            None => ReadFailure::Shutdown,
        };
        self.reads.fail_all(&read_failure);
        for r in std::mem::take(&mut self.snapshots.replies) {
            let _ = r.reply.0.send(Err(err()));
        }
        if let Some(tx) = self.clients.transfer.take() {
            let _ = tx.send(Err(err()));
        }
        for p in self.membership.promotions.drain(..) {
            let _ = p.tx.send(Err(err()));
        }
        self.fail_joint(err());
        for (_, p) in self.peers.handles.drain() {
            p.task.abort();
        }
        for t in self.snapshots.transfers.drain(..) {
            t.abort();
        }
        self.rpcs.pending.clear();
        self.rpcs.inbound = None;
        self.telemetry.stopped(self.core.term());
        let Node { snapshots, store, apply, shared, fatal, shutdown_ack, .. } = self;
        snapshots.task.stop().await;
        store.writer.finish().await;
        apply.stop().await;
        // The metrics (with the reason of a fatal stop) first: whoever sees
        // the state turn to Shutdown finds the reason already published.
        shared.metrics_tx.send_modify(|m| {
            m.state = RaftState::Shutdown;
            m.current_leader = None;
            m.fatal_error = fatal;
        });
        shared.set_state(RaftState::Shutdown, None);
        shared.leader_tx.send_replace(false);
        for tx in shutdown_ack {
            let _ = tx.send(());
        }
    }
}
