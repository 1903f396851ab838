//! In-memory transport for tests and simulations: an [`InmemNetwork`] that
//! every node's [`InmemTransport`] registers with, and fault injection on the
//! network (isolate a node, partition into groups, cut one direction of a
//! link, drop a fraction of messages, add delay) and, optionally, a message
//! size limit enforced the way the gRPC transport enforces its own (an
//! oversized request is refused, never delivered). Users test their own FSM
//! with it too.
//!
//! Long-tail faults, as real networks and hosts produce them:
//!
//! - [`InmemNetwork::set_hold`]: a fraction of messages (requests and
//!   answers) is held for a long, heavy-tailed time (log-uniform between a
//!   minimum and a maximum: TCP retransmits, GC pauses) and then delivered.
//!   A held request is delivered even if its sender gave up on it, to the
//!   node serving the address *then* (possibly a restarted incarnation).
//! - [`InmemNetwork::set_duplicate_rate`]: a fraction of requests is
//!   delivered a second time, later (a retransmitted packet); the copy's
//!   answer is discarded.
//! - [`InmemNetwork::pause`] / [`InmemNetwork::resume`]: every message to or
//!   from a paused node waits, and all of them are delivered when it resumes
//!   (the network side of a SIGSTOP or a VM pause; see
//!   [`InmemNetwork::pause`] for what it does not model).
//!
//! [`InmemNetwork::stats`] counts what happened (held, duplicated, snapshots
//! installed).
//!
//! ```
//! use raft::transport::inmem::InmemNetwork;
//! let net = InmemNetwork::new();
//! let a = net.transport("a");
//! let b = net.transport("b");
//! net.isolate(&"a".into());
//! net.heal();
//! # drop((a, b));
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Notify};

use super::{AppendPipeline, InboundRequest, InboundRpc, Transport};
use crate::core::rng::Rng;
use crate::error::TransportError;
use crate::message::*;
use crate::snapshot::SnapshotReader;
use crate::types::{ServerAddress, ServerId};

/// Capacity of each node's inbound queue.
const INBOUND_CAPACITY: usize = 4096;

struct NetInner {
    nodes: HashMap<ServerAddress, mpsc::Sender<InboundRpc>>,
    /// Directed links that drop everything: (from, to).
    cut: HashSet<(ServerAddress, ServerAddress)>,
    drop_rate: f64,
    delay: (Duration, Duration),
    /// Seeded, so a network's random faults replay.
    rng: Rng,
    rpc_timeout: Duration,
    /// Largest request delivered, in (estimated) encoded bytes.
    max_message: Option<usize>,
    /// Fraction of messages held for a long time, and the range of the hold.
    hold: (f64, Duration, Duration),
    /// Fraction of requests delivered twice.
    duplicate_rate: f64,
    /// Paused nodes: messages to and from them wait.
    paused: HashSet<ServerAddress>,
    /// Nodes whose answers are held until a virtual time.
    answers_held: HashMap<ServerAddress, tokio::time::Instant>,
    stats: NetworkStats,
}

/// What an [`InmemNetwork`] did so far (see [`InmemNetwork::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages (requests or answers) held by [`InmemNetwork::set_hold`].
    pub held: u64,
    /// Requests delivered a second time by [`InmemNetwork::set_duplicate_rate`].
    pub duplicated: u64,
    /// Messages that had to wait for a paused node to resume.
    pub waited_for_pause: u64,
    /// InstallSnapshot requests answered with success.
    pub snapshots_installed: u64,
}

impl NetInner {
    /// With probability `hold.0`, a long hold: log-uniform in `hold.1..=hold.2`.
    fn long_hold(&mut self) -> Option<Duration> {
        let (rate, min, max) = self.hold;
        if rate <= 0.0 || self.rng.next_f64() >= rate {
            return None;
        }
        self.stats.held += 1;
        let (lo, hi) = (min.as_secs_f64().max(1e-6), max.as_secs_f64().max(1e-6));
        let u = self.rng.next_f64();
        Some(Duration::from_secs_f64(lo * (hi / lo).max(1.0).powf(u)))
    }

    /// With probability `duplicate_rate`, the extra delay of a second copy.
    fn duplicate(&mut self) -> Option<Duration> {
        if self.duplicate_rate <= 0.0 || self.rng.next_f64() >= self.duplicate_rate {
            return None;
        }
        self.stats.duplicated += 1;
        let (_, min, max) = self.hold;
        let span = max.max(min).as_secs_f64();
        Some(Duration::from_secs_f64(self.rng.next_f64() * span))
    }

    /// Decides the fate of one message on `from -> to`: `None` if dropped,
    /// else the delay to apply.
    fn route(&mut self, from: &ServerAddress, to: &ServerAddress) -> Option<Duration> {
        if self.cut.contains(&(from.clone(), to.clone())) {
            return None;
        }
        if self.drop_rate > 0.0 && self.rng.next_f64() < self.drop_rate {
            return None;
        }
        let (lo, hi) = self.delay;
        if hi <= lo {
            return Some(lo);
        }
        let span = (hi - lo).as_nanos() as f64;
        Some(lo + Duration::from_nanos((self.rng.next_f64() * span) as u64))
    }
}

/// A simulated network connecting [`InmemTransport`]s. Cheap to clone; all
/// clones are the same network.
#[derive(Clone)]
pub struct InmemNetwork {
    inner: Arc<Mutex<NetInner>>,
    /// Woken when a node resumes.
    resumed: Arc<Notify>,
}

impl Default for InmemNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InmemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("InmemNetwork").field("nodes", &inner.nodes.len()).finish()
    }
}

impl InmemNetwork {
    /// A fault-free network.
    pub fn new() -> Self {
        Self::with_seed(0x5EED)
    }

    /// A network whose random faults (drops, delays) follow `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(NetInner {
                nodes: HashMap::new(),
                cut: HashSet::new(),
                drop_rate: 0.0,
                delay: (Duration::ZERO, Duration::ZERO),
                rng: Rng::new(seed),
                rpc_timeout: Duration::from_secs(5),
                max_message: None,
                hold: (0.0, Duration::ZERO, Duration::ZERO),
                duplicate_rate: 0.0,
                paused: HashSet::new(),
                answers_held: HashMap::new(),
                stats: NetworkStats::default(),
            })),
            resumed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates (or re-creates, after a node restarts) the transport for
    /// `addr`. A previous transport at the same address stops receiving.
    pub fn transport(&self, addr: impl Into<ServerAddress>) -> InmemTransport {
        let addr = addr.into();
        let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
        self.lock().nodes.insert(addr.clone(), tx);
        InmemTransport { net: self.clone(), addr, consumer: Mutex::new(Some(rx)) }
    }

    /// Removes a node from the network: calls to it fail as unreachable.
    pub fn disconnect(&self, addr: &ServerAddress) {
        self.lock().nodes.remove(addr);
    }

    /// Cuts every link to and from `addr`.
    pub fn isolate(&self, addr: &ServerAddress) {
        let mut inner = self.lock();
        let others: Vec<ServerAddress> = inner.nodes.keys().filter(|a| *a != addr).cloned().collect();
        for other in others {
            inner.cut.insert((addr.clone(), other.clone()));
            inner.cut.insert((other, addr.clone()));
        }
    }

    /// Splits the network: nodes in different groups cannot talk. Nodes in
    /// no group are cut off from everyone.
    pub fn partition(&self, groups: &[Vec<ServerAddress>]) {
        let mut inner = self.lock();
        let all: Vec<ServerAddress> = inner.nodes.keys().cloned().collect();
        let group_of = |a: &ServerAddress| groups.iter().position(|g| g.contains(a));
        for a in &all {
            for b in &all {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    inner.cut.insert((a.clone(), b.clone()));
                }
            }
        }
    }

    /// Cuts one direction of a link: messages from `from` to `to` are lost.
    pub fn cut(&self, from: &ServerAddress, to: &ServerAddress) {
        self.lock().cut.insert((from.clone(), to.clone()));
    }

    /// Restores every link (drop rate and delay are left as they are).
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Drops each message (request or response) with probability `rate`.
    pub fn set_drop_rate(&self, rate: f64) {
        self.lock().drop_rate = rate.clamp(0.0, 1.0);
    }

    /// Delays each message by a random duration in `min..=max`.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        self.lock().delay = (min, max.max(min));
    }

    /// Holds each message (request or answer) with probability `rate` for a
    /// long, heavy-tailed time: log-uniform between `min` and `max` (on top
    /// of [`InmemNetwork::set_delay`]), then delivers it. Rate 0 (the
    /// default) turns holds off. A held request is delivered even if the
    /// sender stopped waiting for it; an answer still reaches a sender that
    /// waits (the sender's own timeouts are its business: the network only
    /// bounds the wait for the receiver to answer, see
    /// [`InmemNetwork::set_rpc_timeout`]). Requests on one pipeline stay in
    /// order: a held one holds those behind it, as on one TCP connection.
    pub fn set_hold(&self, rate: f64, min: Duration, max: Duration) {
        self.lock().hold = (rate.clamp(0.0, 1.0), min, max.max(min));
    }

    /// Delivers each request (not snapshot streams) a second time with
    /// probability `rate`, after an extra delay of up to the
    /// [`InmemNetwork::set_hold`] maximum; the copy's answer is discarded.
    pub fn set_duplicate_rate(&self, rate: f64) {
        self.lock().duplicate_rate = rate.clamp(0.0, 1.0);
    }

    /// Pauses `addr`: from now on every message to or from it (requests and
    /// answers, including those already held or in flight) waits, and all of
    /// them are delivered when [`InmemNetwork::resume`] is called. Links that
    /// are cut still drop what is sent over them.
    ///
    /// This is the network half of a paused process (SIGSTOP, a VM pause):
    /// combined with stalling the node's store calls (see
    /// `FaultInjector` in `raft::testing::faulty`), the node can
    /// neither hear nor be heard nor persist anything, and everything queued
    /// arrives at once on resume. What it does not model: the node's own
    /// timers and tasks keep running on the shared clock, so a paused node
    /// may still time out, become a candidate or step down *during* the
    /// pause (in memory only; it cannot persist or send) rather than right
    /// after it, and it still serves local calls such as metrics.
    pub fn pause(&self, addr: &ServerAddress) {
        self.lock().paused.insert(addr.clone());
    }

    /// Resumes a node paused by [`InmemNetwork::pause`]: what waited is
    /// delivered.
    pub fn resume(&self, addr: &ServerAddress) {
        self.lock().paused.remove(addr);
        self.resumed.notify_waiters();
    }

    /// Holds every answer to a request sent by `addr` until `duration` from
    /// now (requests still reach the other nodes, which act on them): a
    /// congested return path. A candidate whose vote answers are held this
    /// way times out and campaigns again before it hears them.
    pub fn hold_answers_to(&self, addr: &ServerAddress, duration: Duration) {
        let until = tokio::time::Instant::now() + duration;
        self.lock().answers_held.insert(addr.clone(), until);
    }

    /// Whether `addr` is paused.
    pub fn is_paused(&self, addr: &ServerAddress) -> bool {
        self.lock().paused.contains(addr)
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetworkStats {
        self.lock().stats
    }

    /// How long a call waits for its answer before failing. Default 5s.
    pub fn set_rpc_timeout(&self, timeout: Duration) {
        self.lock().rpc_timeout = timeout;
    }

    /// Limits the size of requests, like a real transport's message limit:
    /// a request whose estimated encoding ([`encoded_len`]) is larger is
    /// refused with [`TransportError::Rejected`] and never delivered. The
    /// transports report the limit through
    /// [`Transport::max_message_size`], which a node reads when it starts:
    /// set it before creating the nodes. `None` (the default): no limit.
    pub fn set_max_message_size(&self, max: Option<usize>) {
        self.lock().max_message = max;
    }

    /// The message size limit set by [`InmemNetwork::set_max_message_size`].
    pub fn max_message_size(&self) -> Option<usize> {
        self.lock().max_message
    }

    /// Waits until neither `a` nor `b` is paused.
    async fn wait_unpaused(&self, a: &ServerAddress, b: &ServerAddress) {
        let mut counted = false;
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            // Registered before the check, so a resume in between is seen.
            resumed.as_mut().enable();
            {
                let mut inner = self.lock();
                if !inner.paused.contains(a) && !inner.paused.contains(b) {
                    return;
                }
                if !counted {
                    inner.stats.waited_for_pause += 1;
                    counted = true;
                }
            }
            resumed.await;
        }
    }

    /// Hands `request` to the node serving `to` now, once neither end is
    /// paused.
    async fn hand_over(
        &self,
        from: &ServerAddress,
        to: &ServerAddress,
        request: InboundRequest,
    ) -> Result<oneshot::Receiver<Result<RpcResponse, TransportError>>, TransportError> {
        self.wait_unpaused(from, to).await;
        let target = self.lock().nodes.get(to).cloned();
        let target = target.ok_or_else(|| TransportError::Unreachable(to.clone(), "no such node".into()))?;
        let (rpc, rx) = InboundRpc::new(request);
        target.send(rpc).await.map_err(|_| TransportError::Unreachable(to.clone(), "node stopped".into()))?;
        Ok(rx)
    }

    /// Delivers one request from `from` to `to` and returns the receiver of
    /// its answer, or an error if the request was lost.
    async fn deliver(
        &self,
        from: &ServerAddress,
        to: &ServerAddress,
        request: InboundRequest,
    ) -> Result<oneshot::Receiver<Result<RpcResponse, TransportError>>, TransportError> {
        let (route, known, hold, duplicate) = {
            let mut inner = self.lock();
            if let (Some(max), InboundRequest::Rpc(req)) = (inner.max_message, &request) {
                let size = encoded_len(req);
                if size > max {
                    tracing::warn!(%from, %to, size, max, "in-memory network refused an oversized message");
                    return Err(TransportError::Rejected(format!(
                        "message of {size} bytes exceeds the limit of {max} bytes"
                    )));
                }
            }
            let route = inner.route(from, to);
            let known = inner.nodes.contains_key(to);
            let (hold, duplicate) = match route {
                Some(_) => (
                    inner.long_hold(),
                    if matches!(request, InboundRequest::Rpc(_)) { inner.duplicate() } else { None },
                ),
                None => (None, None),
            };
            (route, known, hold, duplicate)
        };
        let delay = route.ok_or_else(|| TransportError::Unreachable(to.clone(), "link down".into()))?;
        if !known {
            return Err(TransportError::Unreachable(to.clone(), "no such node".into()));
        }
        if let (Some(extra), InboundRequest::Rpc(req)) = (duplicate, &request) {
            let copy = InboundRequest::Rpc(req.clone());
            let (net, from, to) = (self.clone(), from.clone(), to.clone());
            crate::telemetry::polls::spawn(crate::telemetry::polls::TaskKind::InmemTransport, async move {
                tokio::time::sleep(delay + extra).await;
                // The copy's answer goes nowhere.
                let _ = net.hand_over(&from, &to, copy).await;
            });
        }
        match hold {
            None => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.hand_over(from, to, request).await
            }
            Some(hold) => {
                // Delivered even if the sender stops waiting for it.
                let (tx, rx) = oneshot::channel();
                let (net, sender, receiver) = (self.clone(), from.clone(), to.clone());
                crate::telemetry::polls::spawn(
                    crate::telemetry::polls::TaskKind::InmemTransport,
                    async move {
                        tokio::time::sleep(delay + hold).await;
                        let _ = tx.send(net.hand_over(&sender, &receiver, request).await);
                    },
                );
                rx.await.map_err(|_| TransportError::Unreachable(to.clone(), "request lost".into()))?
            }
        }
    }

    /// Waits for an answer and routes it back from `to` to `from`.
    async fn answer(
        &self,
        from: &ServerAddress,
        to: &ServerAddress,
        rx: oneshot::Receiver<Result<RpcResponse, TransportError>>,
    ) -> Result<RpcResponse, TransportError> {
        let timeout = self.lock().rpc_timeout;
        let response = match tokio::time::timeout(timeout, rx).await {
            Err(_) => return Err(TransportError::Timeout(to.clone())),
            Ok(Err(_)) => return Err(TransportError::Unreachable(to.clone(), "request dropped".into())),
            Ok(Ok(r)) => r?,
        };
        let (route, hold, held_until) = {
            let mut inner = self.lock();
            let held_until = inner.answers_held.get(from).copied();
            if matches!(&response, RpcResponse::InstallSnapshot(r) if r.success) {
                inner.stats.snapshots_installed += 1;
            }
            let route = inner.route(to, from);
            let hold = if route.is_some() { inner.long_hold() } else { None };
            (route, hold, held_until)
        };
        let delay = route.ok_or_else(|| TransportError::Unreachable(to.clone(), "response lost".into()))?
            + hold.unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(until) = held_until {
            tokio::time::sleep_until(until).await;
        }
        self.wait_unpaused(to, from).await;
        Ok(response)
    }

    async fn call(
        &self,
        from: &ServerAddress,
        to: &ServerAddress,
        request: InboundRequest,
    ) -> Result<RpcResponse, TransportError> {
        let rx = self.deliver(from, to, request).await?;
        self.answer(from, to, rx).await
    }
}

/// Bytes of a protobuf varint holding `v`.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of a length-delimited protobuf field (tag, length, content).
fn field_len(content: usize) -> usize {
    1 + varint_len(content as u64) + content
}

/// The size a request would have encoded as protobuf (the gRPC transport's
/// wire format): what an [`InmemNetwork`] with a message limit compares
/// against it. Exact for AppendEntries (up to a few bytes of tags), a small
/// fixed size for the other RPCs.
pub fn encoded_len(req: &RpcRequest) -> usize {
    let RpcRequest::AppendEntries(req) = req else { return 64 };
    let ints = [req.term, req.prev_log_index, req.prev_log_term, req.leader_commit, req.round];
    let mut len: usize = ints.iter().map(|&v| 1 + varint_len(v)).sum();
    len += field_len(req.leader_id.as_str().len());
    if let Some(id) = &req.cluster_id {
        len += field_len(id.as_str().len());
    }
    for e in &req.entries {
        let entry = 1 + varint_len(e.index) + 1 + varint_len(e.term) + 2 + field_len(e.data.len());
        len += field_len(entry);
    }
    len
}

/// One node's endpoint on an [`InmemNetwork`].
pub struct InmemTransport {
    net: InmemNetwork,
    addr: ServerAddress,
    consumer: Mutex<Option<mpsc::Receiver<InboundRpc>>>,
}

impl std::fmt::Debug for InmemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InmemTransport").field("addr", &self.addr).finish()
    }
}

fn unexpected(what: &str) -> TransportError {
    TransportError::Other(format!("unexpected response type to {what}"))
}

impl InmemTransport {
    /// The network this transport is attached to.
    pub fn network(&self) -> &InmemNetwork {
        &self.net
    }

    async fn rpc(&self, addr: &ServerAddress, req: RpcRequest) -> Result<RpcResponse, TransportError> {
        self.net.call(&self.addr, addr, InboundRequest::Rpc(req)).await
    }
}

#[async_trait]
impl Transport for InmemTransport {
    fn local_addr(&self) -> ServerAddress {
        self.addr.clone()
    }

    fn take_consumer(&self) -> Result<mpsc::Receiver<InboundRpc>, TransportError> {
        self.consumer.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or(TransportError::Closed)
    }

    fn max_message_size(&self) -> Option<usize> {
        self.net.max_message_size()
    }

    async fn append_entries(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: AppendEntriesRequest,
    ) -> Result<AppendEntriesResponse, TransportError> {
        match self.rpc(addr, RpcRequest::AppendEntries(req)).await? {
            RpcResponse::AppendEntries(r) => Ok(r),
            _ => Err(unexpected("AppendEntries")),
        }
    }

    async fn append_entries_pipeline(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
    ) -> Result<AppendPipeline, TransportError> {
        let (req_tx, mut req_rx) = mpsc::channel::<AppendEntriesRequest>(128);
        let (resp_tx, resp_rx) = mpsc::channel(128);
        let (pending_tx, mut pending_rx) = mpsc::channel(128);
        let net = self.net.clone();
        let from = self.addr.clone();
        let to = addr.clone();
        // Requests are delivered strictly in order without waiting for
        // answers; a second task collects the answers in the same order.
        crate::telemetry::polls::spawn(crate::telemetry::polls::TaskKind::InmemTransport, {
            let net = net.clone();
            let (from, to) = (from.clone(), to.clone());
            async move {
                while let Some(req) = req_rx.recv().await {
                    let delivered =
                        net.deliver(&from, &to, InboundRequest::Rpc(RpcRequest::AppendEntries(req))).await;
                    if pending_tx.send(delivered).await.is_err() {
                        break;
                    }
                }
            }
        });
        crate::telemetry::polls::spawn(crate::telemetry::polls::TaskKind::InmemTransport, async move {
            while let Some(delivered) = pending_rx.recv().await {
                let result = match delivered {
                    Err(e) => Err(e),
                    Ok(rx) => match net.answer(&from, &to, rx).await {
                        Ok(RpcResponse::AppendEntries(r)) => Ok(r),
                        Ok(_) => Err(unexpected("AppendEntries")),
                        Err(e) => Err(e),
                    },
                };
                if resp_tx.send(result).await.is_err() {
                    break;
                }
            }
        });
        Ok(AppendPipeline { requests: req_tx, responses: resp_rx })
    }

    async fn request_vote(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: RequestVoteRequest,
    ) -> Result<RequestVoteResponse, TransportError> {
        match self.rpc(addr, RpcRequest::RequestVote(req)).await? {
            RpcResponse::RequestVote(r) => Ok(r),
            _ => Err(unexpected("RequestVote")),
        }
    }

    async fn request_pre_vote(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: RequestPreVoteRequest,
    ) -> Result<RequestPreVoteResponse, TransportError> {
        match self.rpc(addr, RpcRequest::RequestPreVote(req)).await? {
            RpcResponse::RequestPreVote(r) => Ok(r),
            _ => Err(unexpected("RequestPreVote")),
        }
    }

    async fn timeout_now(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: TimeoutNowRequest,
    ) -> Result<TimeoutNowResponse, TransportError> {
        match self.rpc(addr, RpcRequest::TimeoutNow(req)).await? {
            RpcResponse::TimeoutNow(r) => Ok(r),
            _ => Err(unexpected("TimeoutNow")),
        }
    }

    async fn read_index(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: ReadIndexRequest,
    ) -> Result<ReadIndexResponse, TransportError> {
        match self.rpc(addr, RpcRequest::ReadIndex(req)).await? {
            RpcResponse::ReadIndex(r) => Ok(r),
            _ => Err(unexpected("ReadIndex")),
        }
    }

    async fn install_snapshot(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: InstallSnapshotRequest,
        data: SnapshotReader,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        match self.net.call(&self.addr, addr, InboundRequest::InstallSnapshot(req, data)).await? {
            RpcResponse::InstallSnapshot(r) => Ok(r),
            _ => Err(unexpected("InstallSnapshot")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Log, LogType};

    fn append(sizes: &[usize]) -> AppendEntriesRequest {
        AppendEntriesRequest {
            cluster_id: None,
            term: 3,
            leader_id: "a".into(),
            prev_log_index: 10,
            prev_log_term: 2,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| Log::new(11 + i as u64, 3, LogType::Command, vec![1u8; n]))
                .collect(),
            leader_commit: 9,
            round: 1,
        }
    }

    /// Answers every AppendEntries with success, counting deliveries.
    fn responder(t: &InmemTransport) -> Arc<Mutex<usize>> {
        let mut inbound = t.take_consumer().expect("consumer");
        let delivered = Arc::new(Mutex::new(0));
        let count = delivered.clone();
        crate::telemetry::polls::spawn(crate::telemetry::polls::TaskKind::InmemTransport, async move {
            while let Some(rpc) = inbound.recv().await {
                *count.lock().expect("lock") += 1;
                rpc.reply.send(Ok(RpcResponse::AppendEntries(AppendEntriesResponse {
                    term: 3,
                    success: true,
                    last_log_index: 0,
                    conflict_term: 0,
                    conflict_index: 0,
                    round: 1,
                })));
            }
        });
        delivered
    }

    fn ids() -> (ServerId, ServerAddress) {
        (ServerId::from("b"), ServerAddress::from("b"))
    }

    fn delivered(count: &Arc<Mutex<usize>>) -> usize {
        *count.lock().expect("lock")
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_request_arrives_late_even_after_its_sender_gave_up() {
        let net = InmemNetwork::new();
        net.set_hold(1.0, Duration::from_secs(2), Duration::from_secs(2));
        let a = net.transport("a");
        let b = net.transport("b");
        let count = responder(&b);
        let (id, addr) = ids();
        let call =
            tokio::time::timeout(Duration::from_millis(100), a.append_entries(&id, &addr, append(&[])));
        assert!(call.await.is_err(), "the sender gave up");
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(delivered(&count), 0, "still held");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(delivered(&count), 1, "delivered after the hold");
        assert_eq!(net.stats().held, 1);
        // The answer of a held exchange reaches a sender that waits.
        let started = tokio::time::Instant::now();
        a.append_entries(&id, &addr, append(&[])).await.expect("answered");
        assert!(started.elapsed() >= Duration::from_secs(4), "request and answer were both held");
    }

    #[tokio::test(start_paused = true)]
    async fn held_answers_arrive_late_while_requests_go_through() {
        let net = InmemNetwork::new();
        let a = Arc::new(net.transport("a"));
        let b = net.transport("b");
        let count = responder(&b);
        let (id, addr) = ids();
        net.hold_answers_to(&"a".into(), Duration::from_secs(1));
        let call = {
            let a = a.clone();
            tokio::spawn(async move { a.append_entries(&id, &addr, append(&[])).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(delivered(&count), 1, "the request went through");
        assert!(!call.is_finished(), "its answer is held");
        tokio::time::sleep(Duration::from_secs(1)).await;
        call.await.expect("task").expect("answered once the hold ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_duplicated_request_is_delivered_twice() {
        let net = InmemNetwork::new();
        net.set_hold(0.0, Duration::ZERO, Duration::from_millis(500));
        net.set_duplicate_rate(1.0);
        let a = net.transport("a");
        let b = net.transport("b");
        let count = responder(&b);
        let (id, addr) = ids();
        a.append_entries(&id, &addr, append(&[10])).await.expect("answered");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(delivered(&count), 2);
        assert_eq!(net.stats().duplicated, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_node_gets_everything_queued_when_it_resumes() {
        let net = InmemNetwork::new();
        let a = Arc::new(net.transport("a"));
        let b = net.transport("b");
        let count = responder(&b);
        let (id, addr) = ids();
        net.pause(&addr);
        assert!(net.is_paused(&addr));
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let a = a.clone();
                let (id, addr) = (id.clone(), addr.clone());
                tokio::spawn(async move { a.append_entries(&id, &addr, append(&[])).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(delivered(&count), 0, "nothing reaches a paused node");
        net.resume(&addr);
        for call in calls {
            call.await.expect("task").expect("answered after the resume");
        }
        assert_eq!(delivered(&count), 3);
        assert_eq!(net.stats().waited_for_pause, 3);
    }

    #[test]
    fn encoded_len_counts_every_entry_byte_and_its_framing() {
        let empty = encoded_len(&RpcRequest::AppendEntries(append(&[])));
        let one = encoded_len(&RpcRequest::AppendEntries(append(&[1000])));
        let two = encoded_len(&RpcRequest::AppendEntries(append(&[1000, 1000])));
        assert!(empty > 10 && empty < 64, "{empty}");
        assert!(one - empty > 1000 && one - empty <= 1000 + crate::transport::ENTRY_OVERHEAD);
        assert_eq!(two - one, one - empty);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_and_never_delivered() {
        let net = InmemNetwork::new();
        assert_eq!(net.transport("x").max_message_size(), None, "no limit by default");
        net.set_max_message_size(Some(4096));
        let a = net.transport("a");
        let b = net.transport("b");
        assert_eq!(a.max_message_size(), Some(4096));
        let delivered = responder(&b);
        let (id, addr) = (ServerId::from("b"), ServerAddress::from("b"));

        a.append_entries(&id, &addr, append(&[1000, 1000, 1000])).await.expect("under the limit");
        let err = a.append_entries(&id, &addr, append(&[3000, 1100])).await.expect_err("over the limit");
        assert!(matches!(&err, TransportError::Rejected(m) if m.contains("4096")), "{err:?}");
        // Pipelined requests are refused the same way.
        let mut pipe = a.append_entries_pipeline(&id, &addr).await.expect("pipeline");
        pipe.requests.send(append(&[5000])).await.expect("queued");
        let refused = pipe.responses.recv().await.expect("an answer");
        assert!(matches!(refused, Err(TransportError::Rejected(_))), "{refused:?}");
        assert_eq!(*delivered.lock().expect("lock"), 1, "only the request under the limit arrived");
    }
}
