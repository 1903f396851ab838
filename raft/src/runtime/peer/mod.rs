//! One task per peer, a [`PeerTask`], that sends the core's outbound
//! requests and the snapshots the core asks for over the transport, and
//! feeds the responses back to the main task.
//!
//! AppendEntries carrying entries go through an ordered pipeline so several
//! can be in flight; votes and TimeoutNow are sent as separate unary calls,
//! and so are heartbeats unless the pipeline is idle, so they never wait
//! behind bulk data. (An idle pipeline carries a heartbeat for much less
//! than a call of its own: under a read-heavy load every ReadIndex round is
//! a heartbeat to each peer.) A snapshot is streamed in a task of its own
//! ([`snapshot`]), so appends and heartbeats never wait behind it either.
//!
//! After a failure the peer is backed off exponentially, with jitter
//! ([`backoff`]). One back-off covers every kind of send: messages for the
//! peer are dropped meanwhile (the core resends what matters on its next
//! heartbeat), and a snapshot transfer asked for meanwhile starts when it
//! ends (the core waits for the transfer's outcome, so it is not dropped).
//! A failed transfer backs the peer off like a failed append, and answers
//! to heartbeats do not clear that back-off while the follower still owes
//! a snapshot: a follower that keeps failing to take one is retried ever
//! more slowly, not at every heartbeat.

mod backoff;
mod snapshot;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::backoff::Backoff;
pub(crate) use self::snapshot::SnapshotOffer;
use self::snapshot::{StreamResult, Transfer};
use crate::core::{Body, Message};
use crate::error::{Error, TransportError};
use crate::message::AppendEntriesRequest;
use crate::snapshot::SnapshotStore;
use crate::telemetry::polls::{self, TaskKind};
use crate::transport::{AppendPipeline, Transport};
use crate::types::{ServerAddress, ServerId};

/// Events from peer, snapshot-sending and snapshot-receiving tasks.
pub(crate) enum PeerEvent {
    /// A response to step into the core.
    Response(Message),
    /// A user snapshot for `Raft::restore` was written to the local store.
    RestoreStored {
        result: Result<crate::types::SnapshotMeta, crate::error::StorageError>,
        tx: tokio::sync::oneshot::Sender<Result<u64, crate::Error>>,
    },
    /// The peer stopped answering (first failure after a success).
    Unreachable(ServerId),
    /// The peer answers again after failures.
    Reachable(ServerId),
    /// The peer refused a request as one of another cluster: it belongs to
    /// `theirs`, this node to `ours`.
    ClusterMismatch { peer: ServerId, theirs: crate::types::ClusterId, ours: crate::types::ClusterId },
    /// The peer refused a request because it was removed from the cluster
    /// (its data directory records the removal).
    PeerRemoved(ServerId),
    /// A snapshot covering `index` was streamed to `peer`.
    SnapshotSent { peer: ServerId, index: u64, term: u64, success: bool },
    /// A snapshot from `leader` was received into the local store.
    SnapshotReceived {
        leader: ServerId,
        term: u64,
        result: Result<crate::types::SnapshotMeta, String>,
        reply: crate::transport::RpcReply,
    },
    /// Entries read from the log store for a follower (see
    /// `Ready::fetches`), or why the read failed.
    Fetched { fetch: crate::core::LogFetch, result: Result<Vec<crate::types::Log>, String> },
}

/// Orders from the main task to a peer task.
#[derive(Debug)]
pub(crate) enum PeerCmd {
    /// Send one request from the core.
    Send(Message),
    /// Stream the newest stored snapshot (the core asked through
    /// `Ready::snapshots_to_send`); ignored while a transfer is under way.
    SendSnapshot(SnapshotOffer),
}

/// The main task's handle to a running peer task.
pub(crate) struct PeerHandle {
    /// Where the peer listens: a peer that moves gets a new task.
    pub(crate) addr: ServerAddress,
    /// Orders to the task.
    cmds: mpsc::UnboundedSender<PeerCmd>,
    /// The task, aborted when the peer leaves the configuration or moves,
    /// and at shutdown.
    pub(crate) task: JoinHandle<()>,
}

impl PeerHandle {
    /// Queues a request from the core.
    pub(crate) fn send(&self, msg: Message) {
        let _ = self.cmds.send(PeerCmd::Send(msg));
    }

    /// Asks for the newest stored snapshot to be streamed to the peer.
    pub(crate) fn send_snapshot(&self, offer: SnapshotOffer) {
        let _ = self.cmds.send(PeerCmd::SendSnapshot(offer));
    }
}

/// Starts the task replicating from `local` to peer `id` at `addr`.
pub(crate) fn spawn(
    local: ServerId,
    id: ServerId,
    addr: ServerAddress,
    transport: Arc<dyn Transport>,
    snaps: Arc<dyn SnapshotStore>,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> PeerHandle {
    let (cmds_tx, cmds) = mpsc::unbounded_channel();
    let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
    let backoff = Backoff::new(crate::raft::seed_for(&local) ^ crate::raft::seed_for(&id));
    let telemetry = crate::telemetry::PeerTelemetry::new(&local, &id);
    let task = PeerTask {
        addr: addr.clone(),
        transport,
        snaps,
        responder: Responder { local, peer: id, events },
        cmds,
        outcomes,
        outcomes_tx,
        backoff,
        unreachable: false,
        snapshot_owed: false,
        pipeline: None,
        transfer: None,
        telemetry,
    };
    PeerHandle { addr, cmds: cmds_tx, task: polls::spawn(TaskKind::Peer, task.run()) }
}

/// How a call running in the background (a unary call, or a request on
/// the pipeline) ended, as reported back to its peer task. A pipeline
/// reports only its first answer (every failure closes the pipeline, so
/// later answers on it tell the back-off nothing new): the answers of bulk
/// replication do not wake the peer task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallOutcome {
    /// The peer answered.
    Answered,
    /// The transport failed: no answer.
    Failed,
}

/// An open AppendEntries pipeline.
struct Pipeline {
    /// Where requests are queued, in order.
    requests: mpsc::Sender<AppendEntriesRequest>,
    /// Requests sent whose response has not arrived.
    in_flight: Arc<AtomicUsize>,
}

/// Turns a peer's answers into messages for the core and hands them to the
/// main task (cloned into every call running in the background).
#[derive(Clone)]
struct Responder {
    /// This server: the recipient of the answers.
    local: ServerId,
    /// The peer: their sender.
    peer: ServerId,
    /// The main task.
    events: mpsc::UnboundedSender<PeerEvent>,
}

impl Responder {
    fn respond(&self, body: Body) {
        let msg = Message { from: self.peer.clone(), to: self.local.clone(), rpc_id: 0, body };
        let _ = self.events.send(PeerEvent::Response(msg));
    }
}

/// Everything one peer's replication needs: what to send it, how, and how
/// it has fared. Run by [`PeerTask::run`] until the main task drops its
/// [`PeerHandle`] or aborts it.
pub(crate) struct PeerTask {
    /// Where the peer listens.
    addr: ServerAddress,
    /// Carries the calls.
    transport: Arc<dyn Transport>,
    /// Where snapshots to stream are read from.
    snaps: Arc<dyn SnapshotStore>,
    /// Who this server and the peer are, and the way to the main task
    /// (responses, reachability, cluster mismatches, snapshot outcomes).
    responder: Responder,
    /// Orders from the main task.
    cmds: mpsc::UnboundedReceiver<PeerCmd>,
    /// How the calls running in the background ended (their sending side is
    /// `outcomes_tx`, cloned into each).
    outcomes: mpsc::UnboundedReceiver<CallOutcome>,
    /// Cloned into every call running in the background.
    outcomes_tx: mpsc::UnboundedSender<CallOutcome>,
    /// The one back-off of this peer, for every kind of send.
    backoff: Backoff,
    /// The last call got no answer (the main task was told the peer is
    /// unreachable, and is told again when it answers).
    unreachable: bool,
    /// The last snapshot transfer failed and the core has not sent entries
    /// since: the follower still needs a snapshot, so answers to heartbeats
    /// do not clear the back-off (only a transfer that succeeds does).
    snapshot_owed: bool,
    /// The open AppendEntries pipeline, if any.
    pipeline: Option<Pipeline>,
    /// The snapshot transfer under way, if any.
    transfer: Option<Transfer>,
    /// Metric handles (AppendEntries sent, their sizes).
    telemetry: crate::telemetry::PeerTelemetry,
}

impl PeerTask {
    /// The peer this task sends to.
    fn peer(&self) -> &ServerId {
        &self.responder.peer
    }

    /// Sends what the main task orders until it lets go of the task.
    pub(crate) async fn run(mut self) {
        loop {
            // A waiting transfer starts when the back-off ends.
            let resume = match &self.transfer {
                Some(t) if t.waiting() => {
                    Some(self.backoff.until().unwrap_or_else(tokio::time::Instant::now))
                }
                _ => None,
            };
            let streaming = self.transfer.as_ref().is_some_and(|t| !t.waiting());
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    None => return,
                    Some(PeerCmd::Send(msg)) => {
                        // Failures already reported back off this send,
                        // except a heartbeat to a peer that answers.
                        self.drain_outcomes();
                        if !self.backoff.active() || self.keeps_alive(&msg) {
                            self.send(msg).await;
                        }
                    }
                    Some(PeerCmd::SendSnapshot(offer)) => self.offer_snapshot(offer),
                },
                Some(outcome) = self.outcomes.recv() => self.on_outcome(outcome),
                () = snapshot::resume_at(resume), if resume.is_some() => self.start_transfer(),
                result = snapshot::stream_end(&mut self.transfer), if streaming => self.transfer_done(result),
            }
        }
    }

    /// Whether `msg` is a heartbeat to a peer that answers calls but is
    /// owed a snapshot whose transfer failed: it goes out even while the
    /// back-off is on. The back-off delays the snapshot's retry, but a
    /// follower that stops hearing from its leader starts elections and,
    /// without pre-vote, deposes it, over and over (runtime simulation
    /// seeds 1, 9 and 25 found this livelock).
    fn keeps_alive(&self, msg: &Message) -> bool {
        self.snapshot_owed
            && !self.unreachable
            && matches!(&msg.body, Body::AppendEntries(r) if r.entries.is_empty())
    }

    /// Accounts for the outcomes of calls that already ended.
    fn drain_outcomes(&mut self) {
        while let Ok(outcome) = self.outcomes.try_recv() {
            self.on_outcome(outcome);
        }
    }

    fn on_outcome(&mut self, outcome: CallOutcome) {
        match outcome {
            CallOutcome::Answered => {
                self.mark_reachable();
                if !self.snapshot_owed {
                    self.backoff.succeeded();
                }
            }
            CallOutcome::Failed => {
                self.mark_unreachable();
                self.failed();
            }
        }
    }

    /// A send failed: back off, and open a new pipeline afterwards.
    fn failed(&mut self) {
        self.backoff.failed();
        self.pipeline = None;
    }

    /// The peer answered: if it had stopped answering, tell the main task.
    fn mark_reachable(&mut self) {
        if std::mem::take(&mut self.unreachable) {
            let _ = self.responder.events.send(PeerEvent::Reachable(self.peer().clone()));
        }
    }

    /// The peer did not answer: if it answered before, tell the main task.
    fn mark_unreachable(&mut self) {
        if !std::mem::replace(&mut self.unreachable, true) {
            let _ = self.responder.events.send(PeerEvent::Unreachable(self.peer().clone()));
        }
    }

    /// The core asked for a snapshot to be streamed: start now, or when
    /// the back-off ends.
    fn offer_snapshot(&mut self, offer: SnapshotOffer) {
        if self.transfer.is_some() {
            tracing::debug!(peer = %self.peer(), "a snapshot transfer is already under way");
            return;
        }
        self.drain_outcomes();
        self.transfer = Some(Transfer::new(self.peer().clone(), offer, self.responder.events.clone()));
        self.start_transfer();
    }

    /// Starts streaming the waiting transfer unless the peer is backed off.
    fn start_transfer(&mut self) {
        if self.backoff.active() {
            return;
        }
        if let Some(t) = self.transfer.as_mut().filter(|t| t.waiting()) {
            let local = self.responder.local.clone();
            t.start(local, self.addr.clone(), self.transport.clone(), self.snaps.clone(), self.unreachable);
        }
    }

    /// A transfer ended: account for it in the back-off and tell the main
    /// task (and through it the core).
    fn transfer_done(&mut self, result: StreamResult) {
        let Some(transfer) = self.transfer.take() else { return };
        let (index, term, success) = match result {
            Ok((index, resp)) => {
                self.mark_reachable();
                (index, resp.term, resp.success)
            }
            Err(e) => {
                report_refusal(&self.responder.events, self.peer(), &e);
                let unreachable = matches!(e, Error::Transport(_));
                // A peer already known to be down is reported once (when it
                // became unreachable, in the status and metrics); each
                // retry of the transfer then logs at debug only.
                if unreachable && self.unreachable {
                    tracing::debug!(peer = %self.peer(), error = %e, "sending a snapshot failed again (peer unreachable)");
                } else {
                    tracing::warn!(peer = %self.peer(), error = %e, "sending a snapshot failed; retrying with back-off");
                }
                if unreachable {
                    self.mark_unreachable();
                }
                (0, transfer.offer.term, false)
            }
        };
        self.snapshot_owed = !success;
        if success {
            self.backoff.succeeded();
        } else {
            self.failed();
        }
        transfer.report(index, term, success);
    }

    /// Sends one request from the core.
    async fn send(&mut self, msg: Message) {
        self.telemetry.sending(&msg.body);
        let body = match msg.body {
            // A heartbeat rides an idle pipeline.
            Body::AppendEntries(req) if req.entries.is_empty() => match self.pipeline.as_ref() {
                Some(p) if p.in_flight.load(Ordering::Acquire) == 0 => {
                    p.in_flight.fetch_add(1, Ordering::AcqRel);
                    match p.requests.try_send(req) {
                        Ok(()) => return,
                        Err(e) => {
                            p.in_flight.fetch_sub(1, Ordering::AcqRel);
                            Body::AppendEntries(e.into_inner())
                        }
                    }
                }
                _ => Body::AppendEntries(req),
            },
            body => body,
        };
        match body {
            Body::AppendEntries(req) if !req.entries.is_empty() => {
                // The core sends entries only to a follower that needs no
                // snapshot.
                self.snapshot_owed = false;
                self.send_pipelined(req).await;
            }
            body => self.send_unary(body),
        }
    }

    /// Queues AppendEntries with entries on the pipeline, opening it first
    /// if needed.
    async fn send_pipelined(&mut self, req: AppendEntriesRequest) {
        if self.pipeline.is_none() {
            match self.transport.append_entries_pipeline(self.peer(), &self.addr).await {
                Ok(AppendPipeline { requests, responses }) => {
                    let in_flight = Arc::new(AtomicUsize::new(0));
                    let reader = read_pipeline(
                        responses,
                        in_flight.clone(),
                        self.responder.clone(),
                        self.outcomes_tx.clone(),
                    );
                    polls::spawn(TaskKind::PipelineReader, reader);
                    self.pipeline = Some(Pipeline { requests, in_flight });
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer(), error = %e, "cannot open pipeline");
                    self.mark_unreachable();
                    self.failed();
                    return;
                }
            }
        }
        if let Some(p) = self.pipeline.as_ref() {
            p.in_flight.fetch_add(1, Ordering::AcqRel);
            if p.requests.send(req).await.is_err() {
                self.mark_unreachable();
                self.failed();
            }
        }
    }

    /// Sends a vote, TimeoutNow or heartbeat as a call of its own, in the
    /// background.
    fn send_unary(&self, body: Body) {
        let transport = self.transport.clone();
        let addr = self.addr.clone();
        let responder = self.responder.clone();
        let outcomes = self.outcomes_tx.clone();
        polls::spawn(TaskKind::Call, async move {
            let id = &responder.peer;
            let result: Result<Body, TransportError> = match body {
                Body::AppendEntries(req) => {
                    transport.append_entries(id, &addr, req).await.map(Body::AppendEntriesResponse)
                }
                Body::RequestVote(req) => {
                    transport.request_vote(id, &addr, req).await.map(Body::RequestVoteResponse)
                }
                Body::RequestPreVote(req) => {
                    transport.request_pre_vote(id, &addr, req).await.map(Body::RequestPreVoteResponse)
                }
                Body::TimeoutNow(req) => {
                    transport.timeout_now(id, &addr, req).await.map(Body::TimeoutNowResponse)
                }
                other => {
                    tracing::error!(body = ?other, "response routed to a peer task");
                    return;
                }
            };
            match result {
                Ok(body) => {
                    let _ = outcomes.send(CallOutcome::Answered);
                    responder.respond(body);
                }
                Err(e) => {
                    tracing::debug!(peer = %id, error = %e, "rpc failed");
                    report_refusal(&responder.events, id, &e);
                    let _ = outcomes.send(CallOutcome::Failed);
                }
            }
        });
    }
}

/// Hands the pipeline's responses to the core, in order, until it fails or
/// closes; reports its first answer and its failure to the peer task.
async fn read_pipeline(
    mut responses: mpsc::Receiver<Result<crate::message::AppendEntriesResponse, TransportError>>,
    in_flight: Arc<AtomicUsize>,
    responder: Responder,
    outcomes: mpsc::UnboundedSender<CallOutcome>,
) {
    let mut first = true;
    while let Some(r) = responses.recv().await {
        match r {
            Ok(resp) => {
                in_flight.fetch_sub(1, Ordering::AcqRel);
                if std::mem::take(&mut first) {
                    let _ = outcomes.send(CallOutcome::Answered);
                }
                responder.respond(Body::AppendEntriesResponse(resp));
            }
            Err(e) => {
                log_append_failure(&e);
                report_refusal(&responder.events, &responder.peer, &e);
                let _ = outcomes.send(CallOutcome::Failed);
                return;
            }
        }
    }
}

/// Logs a failed pipelined AppendEntries: at `warn` when the transport
/// refused it (a refusal repeats on every retry, so replication to this peer
/// is stuck until it is fixed), at `debug` otherwise (the peer is down or
/// slow, which the back-off and metrics already report).
fn log_append_failure(e: &TransportError) {
    if matches!(e, TransportError::Rejected(m) if super::identity::is_removed_refusal(m)) {
        // The main task says what to do (`PeerEvent::PeerRemoved`).
        tracing::debug!(error = %e, "AppendEntries refused by a removed server");
    } else if matches!(e, TransportError::Rejected(_)) {
        tracing::warn!(
            error = %e,
            "AppendEntries refused by the transport; if it is over a message size limit, make the \
             transport report that limit (Transport::max_message_size) and give every node the same one"
        );
    } else {
        tracing::debug!(error = %e, "pipelined AppendEntries failed");
    }
}

/// Tells the main task when `peer` refused a request because it belongs to
/// another cluster (the refusal names both ids), or because it was removed
/// from this one.
pub(crate) fn report_refusal(
    events: &mpsc::UnboundedSender<PeerEvent>,
    peer: &ServerId,
    error: &impl ToString,
) {
    let text = error.to_string();
    if let Some((theirs, ours)) = super::identity::parse_mismatch(&text) {
        let _ = events.send(PeerEvent::ClusterMismatch { peer: peer.clone(), theirs, ours });
    } else if super::identity::is_removed_refusal(&text) {
        let _ = events.send(PeerEvent::PeerRemoved(peer.clone()));
    }
}
