//! The main task: drives the protocol core with client requests (batched
//! into one proposal per loop turn), inbound RPCs, ticks, and completions
//! from the writer, peer and FSM tasks, and executes the work the core
//! returns.
//!
//! Submodules: `membership` (configuration changes and promotions),
//! `publish` (state, metrics and observers), `snapshots` (snapshot
//! transfer and compaction) and `removed` (the terminal state after this
//! server was removed from the cluster).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::apply::{ApplyBatch, ApplyMsg};
use super::peer::{self, PeerEvent, PeerHandle};
use super::reads::{refusal_error, ReadFailure, ReadTicket};
use super::snapshot::{SnapshotCmd, SnapshotReply, SnapshotTaken};
use super::writer::{PersistJob, WriterEvent};
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
use crate::types::{
    Configuration, LogType, RaftState, Server, ServerAddress, ServerId, SnapshotMeta, Suffrage,
};

mod cluster;
mod deadlines;
mod membership;
mod publish;
mod removed;
mod snapshots;

use self::cluster::ClusterGuard;
use self::membership::Promotion;
use self::snapshots::store_snapshot;

/// Most client requests folded into one proposal.
const MAX_PROPOSAL_BATCH: usize = 4096;
/// Most events of one kind handled before looking at the others.
const MAX_DRAIN: usize = 1024;

/// Everything the main task owns.
pub(crate) struct NodeTask<R> {
    pub(crate) core: Core,
    pub(crate) config: Config,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: mpsc::Receiver<Request<R>>,
    pub(crate) inbound: Option<mpsc::Receiver<InboundRpc>>,
    pub(crate) writer_tx: mpsc::UnboundedSender<PersistJob>,
    pub(crate) writer_events: mpsc::UnboundedReceiver<WriterEvent>,
    pub(crate) writer_task: JoinHandle<()>,
    pub(crate) apply_tx: mpsc::UnboundedSender<ApplyMsg<R>>,
    pub(crate) apply_task: JoinHandle<()>,
    pub(crate) snaps: Arc<dyn SnapshotStore>,
    pub(crate) snapshot_cmds: mpsc::UnboundedSender<SnapshotCmd>,
    pub(crate) snapshot_events: mpsc::UnboundedReceiver<SnapshotTaken>,
    pub(crate) snapshot_task: JoinHandle<()>,
    pub(crate) peer_events_tx: mpsc::UnboundedSender<PeerEvent>,
    pub(crate) peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    /// The cluster this node belongs to (`None`: adopts the first leader's).
    pub(crate) cluster_id: Option<crate::types::ClusterId>,
    /// The log store holds no entry at or below this index (read from the
    /// store at start, advanced as compactions complete).
    pub(crate) compacted_through: u64,
    /// Index and term of the newest snapshot taken, installed or restored.
    pub(crate) last_snapshot: (u64, u64),
}

/// A proposal waiting to be applied.
struct Pending<R> {
    /// The term it was proposed in: another term's entry at its index means
    /// it was lost.
    term: u64,
    waiter: Waiter<R>,
    /// When its caller stops waiting (`None`: never).
    deadline: Option<tokio::time::Instant>,
}

impl<R> Pending<R> {
    fn new(term: u64, waiter: Waiter<R>) -> Self {
        Self { term, waiter, deadline: None }
    }
}

/// One client write folded into a proposal.
type Proposed<R> = (LogType, bytes::Bytes, Waiter<R>, Option<tokio::time::Instant>);

/// Per-run bookkeeping of the main task.
struct Node<R> {
    t: NodeTask<R>,
    peers: HashMap<ServerId, PeerHandle>,
    replies: HashMap<u64, RpcReply>,
    next_rpc_id: u64,
    /// Proposals waiting to be applied, by index.
    waiters: BTreeMap<u64, Pending<R>>,
    /// The earliest deadline among `waiters` (or earlier: it is only
    /// recomputed when it passes).
    next_deadline: Option<tokio::time::Instant>,
    /// Read batches whose ReadIndex round is under way, by read id.
    reads: HashMap<u64, ReadTicket>,
    next_read_id: u64,
    transfer: Option<oneshot::Sender<Result<(), Error>>>,
    published: (RaftState, u64, Option<ServerId>),
    shutdown_ack: Vec<oneshot::Sender<()>>,
    fatal: Option<String>,
    /// Peers a snapshot is being streamed to.
    sending_snapshots: HashSet<ServerId>,
    /// Consecutive failed snapshot transfers per peer, for back-off.
    snapshot_failures: HashMap<ServerId, u32>,
    /// Background snapshot transfers, aborted on shutdown.
    transfers: Vec<JoinHandle<()>>,
    /// Servers being added as voters, waiting to catch up as non-voters.
    promotions: Vec<Promotion>,
    /// The tick interval changed (config reload).
    reload_ticker: bool,
    /// The configuration observers last heard about.
    seen_config: (Configuration, u64),
    /// Last sequence number given to a persist job.
    persist_seq: u64,
    /// Persist jobs not yet completed, with when they were queued.
    persist_pending: std::collections::VecDeque<(u64, tokio::time::Instant)>,
    /// A user restore is storing its snapshot; client requests wait.
    restoring: bool,
    /// (Leader) when to tell followers about a commit index they have not
    /// heard yet (`commit_timeout` after it advanced).
    commit_flush: Option<tokio::time::Instant>,
    /// The commit index last sent out by such a flush.
    commit_flushed: u64,
    /// (Leader) per follower: how many times its log was found to have lost
    /// acknowledged entries and its replication started over.
    log_resets: HashMap<ServerId, u64>,
    /// Cluster-identity checks on inbound requests and adoption state.
    cluster: ClusterGuard,
    /// Log deletions behind a snapshot queued to the writer and not yet
    /// done: (persist sequence number, compacted through).
    compactions: std::collections::VecDeque<(u64, u64)>,
    /// User snapshot requests answered once the compaction queued with this
    /// persist sequence number is done.
    snapshot_replies: Vec<(u64, SnapshotReply)>,
}

enum Flow {
    Continue,
    Stop,
}

pub(crate) async fn run<R: Send + 'static>(task: NodeTask<R>) {
    let mut node = Node {
        published: (RaftState::Shutdown, u64::MAX, None),
        t: task,
        peers: HashMap::new(),
        replies: HashMap::new(),
        next_rpc_id: 1,
        waiters: BTreeMap::new(),
        next_deadline: None,
        reads: HashMap::new(),
        next_read_id: 1,
        transfer: None,
        shutdown_ack: Vec::new(),
        fatal: None,
        sending_snapshots: HashSet::new(),
        snapshot_failures: HashMap::new(),
        transfers: Vec::new(),
        promotions: Vec::new(),
        reload_ticker: false,
        seen_config: (Configuration::default(), u64::MAX),
        persist_seq: 0,
        persist_pending: std::collections::VecDeque::new(),
        restoring: false,
        commit_flush: None,
        commit_flushed: 0,
        log_resets: HashMap::new(),
        cluster: ClusterGuard::default(),
        compactions: std::collections::VecDeque::new(),
        snapshot_replies: Vec::new(),
    };
    node.publish(true);
    let mut ticker = tokio::time::interval(node.t.config.tick_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One timer for the commit flush, re-armed only when its deadline
    // changes: a fresh `sleep_until` per loop turn would register and
    // deregister a timer on every event under load.
    let commit_sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(commit_sleep);
    // Likewise one timer for all callers' deadlines.
    let deadline_sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(deadline_sleep);
    loop {
        if let Some(at) = node.commit_flush {
            if commit_sleep.deadline() != at {
                commit_sleep.as_mut().reset(at);
            }
        }
        if let Some(at) = node.next_deadline {
            if deadline_sleep.deadline() != at {
                deadline_sleep.as_mut().reset(at);
            }
        }
        let flow = tokio::select! {
            Some(ev) = node.t.writer_events.recv() => node.on_writer_event(ev),
            Some(ev) = node.t.peer_events.recv() => {
                node.on_peer_event(ev);
                for _ in 0..MAX_DRAIN {
                    match node.t.peer_events.try_recv() {
                        Ok(ev) => node.on_peer_event(ev),
                        Err(_) => break,
                    }
                }
                Flow::Continue
            }
            rpc = recv_inbound(&mut node.t.inbound) => {
                match rpc {
                    Some(rpc) => {
                        node.on_rpc(rpc);
                        for _ in 0..MAX_DRAIN {
                            match node.t.inbound.as_mut().map(|r| r.try_recv()) {
                                Some(Ok(rpc)) => node.on_rpc(rpc),
                                _ => break,
                            }
                        }
                    }
                    None => node.t.inbound = None,
                }
                Flow::Continue
            }
            Some(taken) = node.t.snapshot_events.recv() => {
                node.on_snapshot_taken(taken);
                Flow::Continue
            }
            req = node.t.requests.recv(), if !node.restoring => match req {
                Some(req) => node.on_requests(req),
                None => Flow::Stop,
            },
            () = &mut commit_sleep, if node.commit_flush.is_some() => {
                node.flush_commit();
                Flow::Continue
            }
            () = &mut deadline_sleep, if node.next_deadline.is_some() => {
                node.expire_waiters();
                Flow::Continue
            }
            _ = ticker.tick() => {
                node.t.core.tick();
                node.check_store_progress();
                node.prune_peers();
                node.advance_promotions();
                node.assign_legacy_cluster_id();
                node.publish(true);
                Flow::Continue
            }
        };
        node.process_ready();
        if let Flow::Stop = flow {
            break;
        }
        if std::mem::take(&mut node.reload_ticker) {
            ticker = tokio::time::interval(node.t.config.tick_interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        &self.t.config.local_id
    }

    fn address_of(&self, id: &ServerId) -> Option<ServerAddress> {
        self.t
            .core
            .configuration()
            .0
            .server(id)
            .or_else(|| self.t.core.committed_configuration().0.server(id))
            .map(|s| s.address.clone())
            .or_else(|| self.peers.get(id).map(|p| p.addr.clone()))
    }

    fn refusal(&self, r: Refusal) -> Error {
        let leader = self.refusal_leader(&r);
        refusal_error(r, leader)
    }

    /// A refusal, to hand to every read of a batch.
    fn read_failure(&self, refusal: Refusal) -> ReadFailure {
        let leader = self.refusal_leader(&refusal);
        ReadFailure::Refused { refusal, leader }
    }

    /// The id and address of the leader a [`Refusal::NotLeader`] names.
    fn refusal_leader(&self, r: &Refusal) -> Option<(ServerId, ServerAddress)> {
        match r {
            Refusal::NotLeader(Some(id)) => self.address_of(id).map(|addr| (id.clone(), addr)),
            _ => None,
        }
    }

    fn on_writer_event(&mut self, ev: WriterEvent) -> Flow {
        match ev {
            WriterEvent::Persisted { last, messages, seq, first_index } => {
                while self.persist_pending.front().is_some_and(|(s, _)| *s <= seq) {
                    self.persist_pending.pop_front();
                }
                self.compactions_done(seq, first_index);
                if let Some((index, term)) = last {
                    self.t.core.persisted(index, term);
                    self.t.shared.last_index.store(self.t.core.last_index(), Ordering::Release);
                }
                for m in messages {
                    self.route(m);
                }
                self.adoption_persisted(seq);
                Flow::Continue
            }
            WriterEvent::Failed(err) => {
                self.fatal = Some(err.to_string());
                Flow::Stop
            }
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Response(msg) => self.t.core.step(msg),
            PeerEvent::Unreachable(peer) => {
                if self.t.core.is_leader() {
                    let tick = self.t.config.tick_interval();
                    let last_contact = self
                        .t
                        .core
                        .peer_progress()
                        .into_iter()
                        .find(|p| p.id == peer)
                        .map(|p| tick * p.ticks_since_contact.min(u32::MAX as u64) as u32);
                    self.t.shared.observers.notify(Observation::FailedHeartbeat { peer, last_contact });
                }
            }
            PeerEvent::RestoreStored { result, tx } => {
                self.restoring = false;
                let meta = match result {
                    Ok(meta) => meta,
                    Err(e) => {
                        tracing::error!(error = %e, "restore refused: storing or verifying the snapshot failed");
                        let _ = tx.send(Err(Error::Storage(e)));
                        return;
                    }
                };
                match self.t.core.restore_snapshot(meta.index) {
                    Ok((noop, installed)) => {
                        // Entries up to the snapshot are gone: their outcome
                        // is unknown to whoever proposed them.
                        let gone: Vec<u64> = self.waiters.range(..=meta.index).map(|(k, _)| *k).collect();
                        for k in gone {
                            if let Some(p) = self.waiters.remove(&k) {
                                p.waiter.fail(Error::LeadershipLost);
                            }
                        }
                        let term = self.t.core.term();
                        self.waiters.insert(noop, Pending::new(term, Waiter::Index(tx)));
                        self.execute_install(meta.id, installed);
                    }
                    Err(r) => {
                        let _ = tx.send(Err(self.refusal(r)));
                    }
                }
            }
            PeerEvent::ClusterMismatch { peer, theirs, ours } => {
                self.peer_in_other_cluster(peer, theirs, ours)
            }
            PeerEvent::Reachable(peer) => {
                if self.t.core.is_leader() {
                    self.t.shared.observers.notify(Observation::ResumedHeartbeat { peer });
                }
            }
            PeerEvent::SnapshotSent { peer, index, term, success } => {
                self.sending_snapshots.remove(&peer);
                if success {
                    self.snapshot_failures.remove(&peer);
                } else {
                    *self.snapshot_failures.entry(peer.clone()).or_default() += 1;
                }
                self.t.core.snapshot_sent(&peer, index, term, success);
            }
            PeerEvent::SnapshotReceived { leader, term, result, reply } => {
                let meta = match result {
                    Ok(meta) => meta,
                    Err(e) => {
                        tracing::warn!(leader = %leader, error = %e, "receiving a snapshot failed");
                        reply.send(Err(TransportError::Other(format!("snapshot not installed: {e}"))));
                        return;
                    }
                };
                let (term, success) = match self.t.core.install_snapshot(&leader, term, meta.position()) {
                    Err(current) => (current, false),
                    Ok(installed) => {
                        if let Some(installed) = installed {
                            self.execute_install(meta.id, installed);
                        }
                        (self.t.core.term(), true)
                    }
                };
                reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse { term, success })));
            }
        }
    }

    fn on_rpc(&mut self, rpc: InboundRpc) {
        let Some(rpc) = self.admit(rpc) else { return };
        let InboundRpc { request, reply } = rpc;
        let req = match request {
            InboundRequest::Rpc(req) => req,
            InboundRequest::InstallSnapshot(req, data) => {
                self.receive_snapshot(req, data, reply);
                return;
            }
        };
        let (from, body) = match req {
            RpcRequest::AppendEntries(r) => (r.leader_id.clone(), Body::AppendEntries(r)),
            RpcRequest::RequestVote(r) => {
                let observation =
                    Observation::RequestVote { candidate: r.candidate_id.clone(), term: r.term };
                self.t.shared.observers.notify(observation);
                (r.candidate_id.clone(), Body::RequestVote(r))
            }
            RpcRequest::RequestPreVote(r) => (r.candidate_id.clone(), Body::RequestPreVote(r)),
            RpcRequest::TimeoutNow(r) => (r.leader_id.clone(), Body::TimeoutNow(r)),
        };
        if &from == self.id() || from.as_str().is_empty() {
            reply.send(Err(TransportError::Rejected(format!("invalid sender id {from:?}"))));
            return;
        }
        let rpc_id = self.next_rpc_id;
        self.next_rpc_id += 1;
        self.replies.insert(rpc_id, reply);
        let to = self.id().clone();
        // The core answers it, or lists it in `Ready::declined`.
        self.t.core.step(Message { from, to, rpc_id, body });
    }

    /// Handles one request plus any others already queued, folding
    /// consecutive writes into one proposal.
    fn on_requests(&mut self, first: Request<R>) -> Flow {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            if self.t.core.is_removed() {
                self.propose(std::mem::take(&mut batch));
                if let Flow::Stop = self.refuse_removed(req) {
                    return Flow::Stop;
                }
                next = self.t.requests.try_recv().ok();
                continue;
            }
            match req {
                Request::Apply { log_type, data, waiter, deadline } => {
                    batch.push((log_type, data, waiter, deadline));
                    if batch.len() >= MAX_PROPOSAL_BATCH {
                        self.propose(std::mem::take(&mut batch));
                    }
                }
                other => {
                    self.propose(std::mem::take(&mut batch));
                    if let Flow::Stop = self.on_request(other) {
                        return Flow::Stop;
                    }
                }
            }
            if let Ok(req) = self.t.requests.try_recv() {
                next = Some(req);
            }
        }
        self.propose(batch);
        Flow::Continue
    }

    fn propose(&mut self, mut batch: Vec<Proposed<R>>) {
        self.drop_expired(&mut batch);
        if batch.is_empty() {
            return;
        }
        // The payloads move into the log: no copy, no reference count.
        let (commands, waiters): (Vec<(LogType, bytes::Bytes)>, Vec<_>) =
            batch.into_iter().map(|(t, d, waiter, deadline)| ((t, d), (waiter, deadline))).unzip();
        match self.t.core.propose(commands) {
            Ok(first) => {
                let term = self.t.core.term();
                for (index, (waiter, deadline)) in (first..).zip(waiters) {
                    if let Some(at) = deadline {
                        self.track_deadline(at);
                    }
                    self.waiters.insert(index, Pending { term, waiter, deadline });
                }
            }
            Err(r) => {
                for (waiter, _) in waiters {
                    waiter.fail(self.refusal(r.clone()));
                }
            }
        }
    }

    fn on_request(&mut self, req: Request<R>) -> Flow {
        match req {
            Request::Apply { log_type, data, waiter, deadline } => {
                self.propose(vec![(log_type, data, waiter, deadline)])
            }
            Request::ReadIndex { ticket } => {
                // No reader may join once the round can start.
                self.t.shared.reads.close(&ticket);
                let id = self.next_read_id;
                self.next_read_id += 1;
                match self.t.core.read_index(id) {
                    Ok(()) => {
                        self.reads.insert(id, ticket);
                    }
                    Err(r) => ticket.resolve(Err(self.read_failure(r))),
                }
            }
            Request::Bootstrap { configuration, tx } => {
                let result = match configuration.validate() {
                    Err(msg) => Err(Error::InvalidConfig(msg)),
                    Ok(()) => match self.t.core.bootstrap(configuration.clone()) {
                        Ok(_) => {
                            self.bootstrap_cluster_id(&configuration);
                            Ok(())
                        }
                        Err(_) => Err(Error::CantBootstrap),
                    },
                };
                let _ = tx.send(result);
            }
            Request::GetConfiguration { tx } => {
                let (c, i) = self.t.core.configuration();
                let _ = tx.send(Ok((c.clone(), i)));
            }
            Request::ChangeMembership { change, prev_index, deadline, tx } => {
                self.on_change_membership(change, prev_index, deadline, tx)
            }
            Request::Restore(restore) => {
                let RestoreRequest { meta, reader, tx } = *restore;
                if !self.t.core.is_leader() {
                    let _ = tx.send(Err(self.refusal(Refusal::NotLeader(self.t.core.leader().cloned()))));
                    return Flow::Continue;
                }
                let (configuration, _) = self.t.core.configuration();
                let Some(index) = meta.index.max(self.t.core.last_index()).checked_add(1) else {
                    let _ = tx.send(Err(Error::InvalidConfig("snapshot index out of range".into())));
                    return Flow::Continue;
                };
                let local = SnapshotMeta {
                    id: String::new(),
                    index,
                    term: self.t.core.term(),
                    configuration: configuration.clone(),
                    configuration_index: index,
                    size: meta.size,
                };
                // Client requests wait while the snapshot is stored, so the
                // log cannot grow past the restore point meanwhile.
                self.restoring = true;
                let snaps = self.t.snaps.clone();
                let events = self.t.peer_events_tx.clone();
                let handle = tokio::spawn(async move {
                    let result = store_snapshot(&*snaps, &local, reader).await;
                    let _ = events.send(PeerEvent::RestoreStored { result, tx });
                });
                self.transfers.push(handle);
            }
            Request::Reload { config } => {
                let config = *config;
                self.t
                    .core
                    .reconfigure(config.core_config_for_transport(self.t.transport.max_message_size()));
                let _ = self.t.snapshot_cmds.send(SnapshotCmd::Reload {
                    interval: config.snapshot_interval,
                    threshold: config.snapshot_threshold,
                    log_limit: config.snapshot_log_limit,
                });
                self.t.config = config;
                self.reload_ticker = true;
            }
            Request::TransferLeadership { target, tx } => {
                // An unknown target is `UnknownServer`, a non-voter
                // `NotAVoter` (both refused by the core).
                match self.t.core.transfer_leadership(target) {
                    Ok(_) => self.transfer = Some(tx),
                    Err(r) => {
                        let _ = tx.send(Err(self.refusal(r)));
                    }
                }
            }
            Request::Snapshot { tx } => {
                if self.t.snapshot_cmds.send(SnapshotCmd::Take(tx)).is_err() {
                    tracing::error!("snapshot task stopped");
                }
            }
            Request::Shutdown { tx } => {
                self.shutdown_ack.push(tx);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Arms the commit flush when the leader's commit index moved past what
    /// followers were last told.
    fn schedule_commit_flush(&mut self) {
        if self.commit_flush.is_none()
            && self.t.core.is_leader()
            && self.t.core.commit_index() > self.commit_flushed
        {
            self.commit_flush = Some(tokio::time::Instant::now() + self.t.config.commit_timeout);
        }
    }

    /// Sends the current commit index to followers (HashiCorp's
    /// `commit_timeout`): without it, an idle cluster's followers would
    /// apply the last writes only at the next heartbeat.
    fn flush_commit(&mut self) {
        self.commit_flush = None;
        if self.t.core.is_leader() {
            self.commit_flushed = self.t.core.commit_index();
            self.t.core.send_heartbeats();
        }
    }

    /// Queues durable work for the writer task.
    fn persist(&mut self, mut job: PersistJob) {
        self.persist_seq += 1;
        job.seq = self.persist_seq;
        self.persist_pending.push_back((job.seq, tokio::time::Instant::now()));
        if self.t.writer_tx.send(job).is_err() {
            self.fatal = Some("log writer stopped".into());
        }
    }

    /// A leader whose own log store has stopped completing writes cannot
    /// lead: it could never count itself or apply anything. Step down
    /// rather than hang the cluster.
    fn check_store_progress(&mut self) {
        let Some((_, since)) = self.persist_pending.front() else { return };
        if self.t.core.is_leader() && since.elapsed() > self.t.config.election_timeout {
            tracing::error!(stalled_for = ?since.elapsed(), "log store is not completing writes; stepping down");
            self.t.core.step_down();
        }
    }

    /// Sends a message: an answer to an inbound RPC, or a request to a peer.
    fn route(&mut self, msg: Message) {
        if msg.rpc_id != 0 {
            let Some(reply) = self.replies.remove(&msg.rpc_id) else { return };
            let response = match msg.body {
                Body::AppendEntriesResponse(r) => RpcResponse::AppendEntries(r),
                Body::RequestVoteResponse(r) => RpcResponse::RequestVote(r),
                Body::RequestPreVoteResponse(r) => RpcResponse::RequestPreVote(r),
                Body::TimeoutNowResponse(r) => RpcResponse::TimeoutNow(r),
                other => {
                    tracing::error!(body = ?other, "request body used as an RPC answer");
                    return;
                }
            };
            reply.send(Ok(response));
            return;
        }
        let mut msg = msg;
        self.stamp(&mut msg.body);
        let to = msg.to.clone();
        if !self.peers.contains_key(&to) {
            let Some(addr) = self.address_of(&to) else {
                tracing::debug!(peer = %to, "no address for peer; dropping message");
                return;
            };
            let handle = peer::spawn(
                self.id().clone(),
                to.clone(),
                addr,
                self.t.transport.clone(),
                self.t.peer_events_tx.clone(),
            );
            self.peers.insert(to.clone(), handle);
        }
        if let Some(p) = self.peers.get(&to) {
            let _ = p.tx.send(msg);
        }
    }

    /// Stops peer tasks for servers no longer in the configuration (or
    /// whose address changed).
    fn prune_peers(&mut self) {
        let config = self.t.core.configuration().0;
        // A leader keeps replicating to a server it removes until the
        // removal commits: keep that peer task too.
        let tracked: HashSet<ServerId> = self.t.core.peer_progress().into_iter().map(|p| p.id).collect();
        let stale: Vec<ServerId> = self
            .peers
            .iter()
            .filter(|(id, p)| match config.server(id) {
                Some(s) => s.address != p.addr,
                None => !tracked.contains(*id),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(p) = self.peers.remove(&id) {
                p.task.abort();
            }
        }
    }

    fn process_ready(&mut self) {
        if self.fatal.is_some() || !self.t.core.has_ready() {
            self.after_state_change();
            return;
        }
        let mut ready = self.t.core.take_ready();
        for m in std::mem::take(&mut ready.messages) {
            self.route(m);
        }
        for rpc_id in std::mem::take(&mut ready.declined) {
            if let Some(reply) = self.replies.remove(&rpc_id) {
                reply.send(Err(TransportError::Rejected("request ignored by the receiver".into())));
            }
        }
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
            };
            self.persist(job);
        }
        if !ready.snapshots_to_send.is_empty() {
            self.send_snapshots(std::mem::take(&mut ready.snapshots_to_send));
        }
        if !ready.committed.is_empty() {
            self.dispatch_apply(ready.committed);
        }
        for r in ready.reads {
            if let Some(ticket) = self.reads.remove(&r.id) {
                ticket.resolve(Ok(r.index));
            }
        }
        for (id, why) in ready.failed_reads {
            if let Some(ticket) = self.reads.remove(&id) {
                ticket.resolve(Err(self.read_failure(why)));
            }
        }
        let transfer_completed = ready.transfer_completed;
        if ready.transfer_aborted {
            if let Some(tx) = self.transfer.take() {
                let msg = "the target did not take over within an election timeout";
                let _ = tx.send(Err(Error::LeadershipTransferFailed(msg.into())));
            }
        }
        for reset in std::mem::take(&mut ready.log_resets) {
            // The core logged the warning; count it and tell observers.
            *self.log_resets.entry(reset.peer.clone()).or_default() += 1;
            self.t.shared.observers.notify(Observation::FollowerLogReset {
                peer: reset.peer,
                matched: reset.matched,
                last_log_index: reset.last_log_index,
            });
        }
        self.observe_configuration();
        self.schedule_commit_flush();
        self.after_state_change();
        // After the new role is published: a transfer's caller that resumes
        // must already see that this node no longer leads.
        if transfer_completed {
            if let Some(tx) = self.transfer.take() {
                let _ = tx.send(Ok(()));
            }
        }
    }

    fn dispatch_apply(&mut self, entries: Vec<crate::types::Log>) {
        let mut waiters = Vec::new();
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            let (lo, hi) = (first.index, last.index);
            // Waiters are keyed by index, so the ones for this batch are the
            // smallest keys: pop them off the front, no lookups.
            while let Some(entry) = self.waiters.first_entry() {
                let k = *entry.key();
                if k > hi {
                    break;
                }
                let Pending { term, waiter, .. } = entry.remove();
                let entry_term = k.checked_sub(lo).and_then(|i| entries.get(i as usize)).map(|e| e.term);
                if entry_term == Some(term) {
                    waiters.push((k, waiter));
                } else {
                    // Another leader's entry replaced ours at this index (or
                    // a snapshot covered it): its outcome is unknown here.
                    waiter.fail(Error::LeadershipLost);
                }
            }
        }
        let _ = self.t.apply_tx.send(ApplyMsg::Batch(ApplyBatch { entries, waiters }));
    }

    /// Shuts everything down; stores are no longer touched once this returns.
    async fn stop(mut self) {
        let err = || match &self.fatal {
            Some(msg) => Error::Storage(StorageError::Failed(msg.clone())),
            None => Error::Shutdown,
        };
        if let Some(msg) = &self.fatal {
            tracing::error!(error = %msg, "node stopped after a storage failure");
        }
        for (_, p) in std::mem::take(&mut self.waiters) {
            p.waiter.fail(err());
        }
        let read_failure = match &self.fatal {
            Some(msg) => ReadFailure::StorageFailed(msg.clone()),
            None => ReadFailure::Shutdown,
        };
        for (_, ticket) in std::mem::take(&mut self.reads) {
            ticket.resolve(Err(read_failure.clone()));
        }
        for (_, (tx, _)) in std::mem::take(&mut self.snapshot_replies) {
            let _ = tx.send(Err(err()));
        }
        if let Some(tx) = self.transfer.take() {
            let _ = tx.send(Err(err()));
        }
        for p in self.promotions.drain(..) {
            let _ = p.tx.send(Err(err()));
        }
        for (_, p) in self.peers.drain() {
            p.task.abort();
        }
        for t in self.transfers.drain(..) {
            t.abort();
        }
        self.replies.clear();
        self.t.inbound = None;
        let NodeTask {
            writer_tx,
            writer_task,
            apply_tx,
            apply_task,
            shared,
            snapshot_cmds,
            snapshot_task,
            ..
        } = self.t;
        drop(snapshot_cmds);
        let _ = snapshot_task.await;
        drop(writer_tx);
        let _ = writer_task.await;
        drop(apply_tx);
        let _ = apply_task.await;
        shared.set_state(RaftState::Shutdown, None);
        shared.leader_tx.send_replace(false);
        let fatal = self.fatal.clone();
        shared.metrics_tx.send_modify(|m| {
            m.state = RaftState::Shutdown;
            m.current_leader = None;
            m.fatal_error = fatal;
        });
        for tx in self.shutdown_ack {
            let _ = tx.send(());
        }
    }
}
