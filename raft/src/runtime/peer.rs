//! One task per peer that sends the core's outbound requests over the
//! transport and feeds the responses back to the main task.
//!
//! AppendEntries carrying entries go through an ordered pipeline so several
//! can be in flight; votes and TimeoutNow are sent as separate unary calls,
//! and so are heartbeats unless the pipeline is idle, so they never wait
//! behind bulk data. (An idle pipeline carries a heartbeat for much less
//! than a call of its own: under a read-heavy load every ReadIndex round is
//! a heartbeat to each peer.) After a failure the peer
//! is backed off exponentially (with jitter) and messages for it are dropped
//! meanwhile; the core resends what matters on its next heartbeat.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::{Body, Message};
use crate::error::TransportError;
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
    /// A snapshot covering `index` was streamed to `peer`.
    SnapshotSent { peer: ServerId, index: u64, term: u64, success: bool },
    /// A snapshot from `leader` was received into the local store.
    SnapshotReceived {
        leader: ServerId,
        term: u64,
        result: Result<crate::types::SnapshotMeta, String>,
        reply: crate::transport::RpcReply,
    },
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A handle to a running peer task.
pub(crate) struct PeerHandle {
    pub(crate) addr: ServerAddress,
    pub(crate) tx: mpsc::UnboundedSender<Message>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

pub(crate) fn spawn(
    local: ServerId,
    id: ServerId,
    addr: ServerAddress,
    transport: Arc<dyn Transport>,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> PeerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(local, id, addr.clone(), transport, rx, events));
    PeerHandle { addr, tx, task }
}

/// An open AppendEntries pipeline.
struct Pipeline {
    requests: mpsc::Sender<crate::message::AppendEntriesRequest>,
    /// Requests sent whose response has not arrived.
    in_flight: Arc<AtomicUsize>,
}

struct Backoff {
    failures: u32,
    until: Option<Instant>,
    /// Jitter source, seeded per peer.
    rng: crate::Rng,
}

impl Backoff {
    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let exp = MIN_BACKOFF.saturating_mul(1u32 << self.failures.min(10)).min(MAX_BACKOFF);
        let jitter = Duration::from_micros(self.rng.below(exp.as_micros() as u64 / 2 + 1));
        self.until = Some(Instant::now() + exp / 2 + jitter);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    fn active(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }
}

async fn run(
    local: ServerId,
    id: ServerId,
    addr: ServerAddress,
    transport: Arc<dyn Transport>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    events: mpsc::UnboundedSender<PeerEvent>,
) {
    let seed = crate::raft::seed_for(&local) ^ crate::raft::seed_for(&id);
    let mut backoff = Backoff { failures: 0, until: None, rng: crate::Rng::new(seed) };
    let mut pipeline: Option<Pipeline> = None;
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<()>();
    let (ok_tx, mut ok_rx) = mpsc::unbounded_channel::<()>();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                while fail_rx.try_recv().is_ok() {
                    if backoff.failures == 0 {
                        let _ = events.send(PeerEvent::Unreachable(id.clone()));
                    }
                    backoff.failed();
                    pipeline = None;
                }
                while ok_rx.try_recv().is_ok() {
                    if backoff.failures > 0 {
                        let _ = events.send(PeerEvent::Reachable(id.clone()));
                    }
                    backoff.succeeded();
                }
                if backoff.active() {
                    continue;
                }
                send(&local, &id, &addr, &transport, &events, &mut pipeline, &fail_tx, &ok_tx, msg).await;
            }
            Some(()) = fail_rx.recv() => {
                if backoff.failures == 0 {
                    let _ = events.send(PeerEvent::Unreachable(id.clone()));
                }
                backoff.failed();
                pipeline = None;
            }
        }
    }
}

/// Logs a failed pipelined AppendEntries: at `warn` when the transport
/// refused it (a refusal repeats on every retry, so replication to this peer
/// is stuck until it is fixed), at `debug` otherwise (the peer is down or
/// slow, which the back-off and metrics already report).
fn log_append_failure(e: &TransportError) {
    if matches!(e, TransportError::Rejected(_)) {
        tracing::warn!(
            error = %e,
            "AppendEntries refused by the transport; if it is over a message size limit, make the \
             transport report that limit (Transport::max_message_size) and give every node the same one"
        );
    } else {
        tracing::debug!(error = %e, "pipelined AppendEntries failed");
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    local: &ServerId,
    id: &ServerId,
    addr: &ServerAddress,
    transport: &Arc<dyn Transport>,
    events: &mpsc::UnboundedSender<PeerEvent>,
    pipeline: &mut Option<Pipeline>,
    fail_tx: &mpsc::UnboundedSender<()>,
    ok_tx: &mpsc::UnboundedSender<()>,
    msg: Message,
) {
    let respond = {
        let events = events.clone();
        let (local, id) = (local.clone(), id.clone());
        move |body: Body| {
            let msg = Message { from: id.clone(), to: local.clone(), rpc_id: 0, body };
            let _ = events.send(PeerEvent::Response(msg));
        }
    };
    let body = match msg.body {
        // A heartbeat rides an idle pipeline.
        Body::AppendEntries(req) if req.entries.is_empty() => match pipeline.as_ref() {
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
            if pipeline.is_none() {
                match transport.append_entries_pipeline(id, addr).await {
                    Ok(AppendPipeline { requests, mut responses }) => {
                        let fail_tx = fail_tx.clone();
                        let ok_tx = ok_tx.clone();
                        let respond = respond.clone();
                        let (events, id) = (events.clone(), id.clone());
                        let in_flight = Arc::new(AtomicUsize::new(0));
                        let answered = in_flight.clone();
                        tokio::spawn(async move {
                            while let Some(r) = responses.recv().await {
                                match r {
                                    Ok(resp) => {
                                        answered.fetch_sub(1, Ordering::AcqRel);
                                        let _ = ok_tx.send(());
                                        respond(Body::AppendEntriesResponse(resp));
                                    }
                                    Err(e) => {
                                        log_append_failure(&e);
                                        report_refusal(&events, &id, &e);
                                        let _ = fail_tx.send(());
                                        return;
                                    }
                                }
                            }
                        });
                        *pipeline = Some(Pipeline { requests, in_flight });
                    }
                    Err(e) => {
                        tracing::debug!(peer = %id, error = %e, "cannot open pipeline");
                        let _ = fail_tx.send(());
                        return;
                    }
                }
            }
            if let Some(p) = pipeline.as_ref() {
                p.in_flight.fetch_add(1, Ordering::AcqRel);
                if p.requests.send(req).await.is_err() {
                    *pipeline = None;
                    let _ = fail_tx.send(());
                }
            }
        }
        body => {
            let transport = transport.clone();
            let (id, addr) = (id.clone(), addr.clone());
            let fail_tx = fail_tx.clone();
            let ok_tx = ok_tx.clone();
            let events = events.clone();
            tokio::spawn(async move {
                let result: Result<Body, TransportError> = match body {
                    Body::AppendEntries(req) => {
                        transport.append_entries(&id, &addr, req).await.map(Body::AppendEntriesResponse)
                    }
                    Body::RequestVote(req) => {
                        transport.request_vote(&id, &addr, req).await.map(Body::RequestVoteResponse)
                    }
                    Body::RequestPreVote(req) => {
                        transport.request_pre_vote(&id, &addr, req).await.map(Body::RequestPreVoteResponse)
                    }
                    Body::TimeoutNow(req) => {
                        transport.timeout_now(&id, &addr, req).await.map(Body::TimeoutNowResponse)
                    }
                    other => {
                        tracing::error!(body = ?other, "response routed to a peer task");
                        return;
                    }
                };
                match result {
                    Ok(body) => {
                        let _ = ok_tx.send(());
                        respond(body);
                    }
                    Err(e) => {
                        tracing::debug!(peer = %id, error = %e, "rpc failed");
                        report_refusal(&events, &id, &e);
                        let _ = fail_tx.send(());
                    }
                }
            });
        }
    }
}

/// Tells the main task when `peer` refused a request because it belongs to
/// another cluster (the refusal names both ids).
pub(crate) fn report_refusal(
    events: &mpsc::UnboundedSender<PeerEvent>,
    peer: &ServerId,
    error: &impl ToString,
) {
    if let Some((theirs, ours)) = super::identity::parse_mismatch(&error.to_string()) {
        let _ = events.send(PeerEvent::ClusterMismatch { peer: peer.clone(), theirs, ours });
    }
}
