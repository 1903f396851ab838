//! The [`Transport`] trait every network layer implements, the inbound RPC
//! envelope it hands to the node, and the in-memory implementation
//! ([`inmem`]) used in tests and simulations.

pub mod inmem;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::error::TransportError;
use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    ReadIndexRequest, ReadIndexResponse, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, RpcRequest, RpcResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use crate::snapshot::SnapshotReader;
use crate::types::{ServerAddress, ServerId};

/// Moves RPCs between nodes.
///
/// Outbound calls are methods; inbound requests arrive on the channel
/// returned by [`Transport::take_consumer`], each with an [`RpcReply`] to
/// answer through.
///
/// # To be correct
/// - Never deliver a request or response that was corrupted in transit:
///   validate and reject it with an error instead.
/// - A pipeline delivers requests in the order they were queued and returns
///   responses in the same order.
/// - Calls must not hang forever: apply a timeout and return
///   [`TransportError::Timeout`].
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The address other nodes reach this one at.
    fn local_addr(&self) -> ServerAddress;

    /// Hands out the stream of inbound RPCs. The runtime calls this once;
    /// later calls return [`TransportError::Closed`].
    fn take_consumer(&self) -> Result<mpsc::Receiver<InboundRpc>, TransportError>;

    /// Sends one AppendEntries and waits for its response.
    async fn append_entries(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: AppendEntriesRequest,
    ) -> Result<AppendEntriesResponse, TransportError>;

    /// Opens an ordered pipeline of AppendEntries to one peer, so several
    /// requests can be in flight at once.
    async fn append_entries_pipeline(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
    ) -> Result<AppendPipeline, TransportError>;

    /// Sends a RequestVote.
    async fn request_vote(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: RequestVoteRequest,
    ) -> Result<RequestVoteResponse, TransportError>;

    /// Sends a pre-vote request.
    async fn request_pre_vote(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: RequestPreVoteRequest,
    ) -> Result<RequestPreVoteResponse, TransportError>;

    /// Tells a peer to start an election immediately (leadership transfer).
    async fn timeout_now(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: TimeoutNowRequest,
    ) -> Result<TimeoutNowResponse, TransportError>;

    /// Streams a snapshot to a peer. `data` is read incrementally; a
    /// transport must not buffer the whole snapshot in memory.
    async fn install_snapshot(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: InstallSnapshotRequest,
        data: SnapshotReader,
    ) -> Result<InstallSnapshotResponse, TransportError>;

    /// Asks the leader for a read index (linearizable follower reads, see
    /// [`Raft::read`](crate::Raft::read)).
    ///
    /// The default implementation refuses with
    /// [`TransportError::Other`] saying the transport does not support
    /// follower reads, so transports written before this RPC existed still
    /// compile; reads on followers through such a transport fail with that
    /// error (reads on the leader are unaffected).
    async fn read_index(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: ReadIndexRequest,
    ) -> Result<ReadIndexResponse, TransportError> {
        let _ = (addr, req);
        Err(TransportError::Other(format!(
            "this transport does not support follower reads (no read_index RPC to {target}): \
             read on the leader or implement Transport::read_index"
        )))
    }

    /// The largest message, in encoded bytes, this transport sends or
    /// accepts; `None` (the default) means no limit.
    ///
    /// The node reads it once, when it starts, and from it derives two
    /// limits (see [`max_entries_bytes`] and [`max_command_size`]):
    /// AppendEntries are cut so their entries fit in one message, and
    /// [`Raft::apply`](crate::Raft::apply) refuses at once, with
    /// [`Error::CommandTooLarge`](crate::Error::CommandTooLarge), a command
    /// that could never fit in one. A transport with a limit must report it
    /// here: otherwise a batch or a command over the limit is refused by the
    /// transport on every attempt and replication stalls.
    fn max_message_size(&self) -> Option<usize> {
        None
    }
}

/// Bytes one entry adds to an AppendEntries message on top of its data: an
/// upper bound for a protobuf-like encoding of its index, term, type and
/// length prefixes (each varint at most 10 bytes).
pub const ENTRY_OVERHEAD: usize = 64;

/// Bytes of a message kept free for everything but its entries (the fixed
/// fields of an AppendEntries and the transport's framing), in addition to
/// the leader id's length and the cluster id (at most
/// [`MAX_CLUSTER_ID_LEN`] bytes) every request carries.
pub const MESSAGE_OVERHEAD: usize = 1024;

/// The longest cluster id a request can carry, in bytes.
pub const MAX_CLUSTER_ID_LEN: usize = crate::types::MAX_CLUSTER_ID_LEN;

/// How many bytes of entries (each counted as its data plus
/// [`ENTRY_OVERHEAD`]) fit in one AppendEntries from `leader` under a
/// transport limit of `max_message` bytes.
pub fn max_entries_bytes(max_message: usize, leader: &ServerId) -> usize {
    max_message.saturating_sub(MESSAGE_OVERHEAD + MAX_CLUSTER_ID_LEN + leader.as_str().len())
}

/// The largest command (data bytes) that fits in one AppendEntries from
/// `leader` under a transport limit of `max_message` bytes: commands larger
/// than this can never be replicated.
pub fn max_command_size(max_message: usize, leader: &ServerId) -> usize {
    max_entries_bytes(max_message, leader).saturating_sub(ENTRY_OVERHEAD)
}

/// Both ends of an ordered AppendEntries pipeline to one peer: queue requests
/// on `requests`, read their responses, in the same order, from `responses`.
/// Dropping `requests` closes the pipeline.
#[derive(Debug)]
pub struct AppendPipeline {
    /// Where to queue requests.
    pub requests: mpsc::Sender<AppendEntriesRequest>,
    /// Responses, one per request, in request order.
    pub responses: mpsc::Receiver<Result<AppendEntriesResponse, TransportError>>,
}

/// An inbound request as delivered by a transport.
#[derive(Debug)]
pub enum InboundRequest {
    /// A plain RPC.
    Rpc(RpcRequest),
    /// A snapshot header plus the stream of its bytes.
    InstallSnapshot(InstallSnapshotRequest, SnapshotReader),
}

/// One inbound RPC and the channel to answer it on.
#[derive(Debug)]
pub struct InboundRpc {
    /// The request.
    pub request: InboundRequest,
    /// Where the answer goes.
    pub reply: RpcReply,
}

/// The answer slot of an [`InboundRpc`]. Dropping it unanswered makes the
/// caller's RPC fail.
#[derive(Debug)]
pub struct RpcReply(oneshot::Sender<Result<RpcResponse, TransportError>>);

impl RpcReply {
    /// Creates a reply slot and the receiver its answer arrives on.
    pub fn channel() -> (Self, oneshot::Receiver<Result<RpcResponse, TransportError>>) {
        let (tx, rx) = oneshot::channel();
        (Self(tx), rx)
    }

    /// Sends the answer; returns false if the caller has gone away.
    pub fn send(self, response: Result<RpcResponse, TransportError>) -> bool {
        self.0.send(response).is_ok()
    }
}

impl InboundRpc {
    /// Wraps a request; returns the envelope and the receiver of its answer.
    pub fn new(request: InboundRequest) -> (Self, oneshot::Receiver<Result<RpcResponse, TransportError>>) {
        let (reply, rx) = RpcReply::channel();
        (Self { request, reply }, rx)
    }
}
