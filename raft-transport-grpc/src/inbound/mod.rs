//! The server side: [`RaftRpcService`] implements the generated gRPC trait by
//! validating each request, handing it to the node as an
//! [`InboundRpc`] on the consumer channel, and awaiting the node's
//! [`RpcReply`](raft::transport::RpcReply).
//!
//! - [`pipeline`]: the AppendEntries bidi stream.
//! - [`snapshot`]: the InstallSnapshot client stream turned into a
//!   [`SnapshotReader`](raft::SnapshotReader).

mod pipeline;
mod snapshot;

use raft::message::{RpcRequest, RpcResponse};
use raft::transport::{InboundRequest, InboundRpc};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::error::error_to_status;
use crate::pb;
use crate::validate::{self, Invalid};

/// Handles the RPCs of one node.
#[derive(Clone, Debug)]
pub(crate) struct RaftRpcService {
    consumer: mpsc::Sender<InboundRpc>,
    shutdown: watch::Receiver<bool>,
    pipeline_depth: usize,
}

impl RaftRpcService {
    /// A service delivering to `consumer` until `shutdown` turns true.
    pub(crate) fn new(
        consumer: mpsc::Sender<InboundRpc>,
        shutdown: watch::Receiver<bool>,
        pipeline_depth: usize,
    ) -> Self {
        Self { consumer, shutdown, pipeline_depth }
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Queues a validated request for the node and waits for its answer.
    async fn dispatch(&self, request: InboundRequest) -> Result<RpcResponse, Status> {
        let rx = enqueue(&self.consumer, &self.shutdown, request).await?;
        await_reply(rx).await
    }
}

/// Hands a request to the node; returns the receiver of its answer.
async fn enqueue(
    consumer: &mpsc::Sender<InboundRpc>,
    shutdown: &watch::Receiver<bool>,
    request: InboundRequest,
) -> Result<tokio::sync::oneshot::Receiver<Result<RpcResponse, raft::TransportError>>, Status> {
    if *shutdown.borrow() {
        return Err(Status::unavailable("the transport is shut down"));
    }
    let (rpc, rx) = InboundRpc::new(request);
    consumer.send(rpc).await.map_err(|_| Status::unavailable("the node no longer accepts rpcs"))?;
    Ok(rx)
}

/// Waits for the node's answer to one request.
async fn await_reply(
    rx: tokio::sync::oneshot::Receiver<Result<RpcResponse, raft::TransportError>>,
) -> Result<RpcResponse, Status> {
    match rx.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) => Err(error_to_status(&err)),
        Err(_) => Err(Status::unavailable("the node dropped the request unanswered")),
    }
}

/// Logs and converts a validation failure.
fn refuse(rpc: &'static str, err: Invalid) -> Status {
    tracing::warn!(rpc, reason = %err, "refusing malformed request");
    Status::invalid_argument(format!("malformed {rpc}: {err}"))
}

/// The node answered with a response of the wrong kind: a bug in the node,
/// reported to the caller instead of panicking.
fn mismatched(rpc: &'static str, got: &RpcResponse) -> Status {
    tracing::error!(rpc, ?got, "node answered with a response of the wrong kind");
    Status::internal(format!("node answered {rpc} with a response of the wrong kind"))
}

#[tonic::async_trait]
impl pb::raft_service_server::RaftService for RaftRpcService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let req = validate::append_request(request.into_inner()).map_err(|e| refuse("AppendEntries", e))?;
        match self.dispatch(InboundRequest::Rpc(RpcRequest::AppendEntries(req))).await? {
            RpcResponse::AppendEntries(r) => Ok(Response::new(convert::append_response_to_pb(&r))),
            other => Err(mismatched("AppendEntries", &other)),
        }
    }

    type AppendEntriesPipelineStream = ReceiverStream<Result<pb::AppendEntriesResponse, Status>>;

    async fn append_entries_pipeline(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendEntriesPipelineStream>, Status> {
        if self.is_shut_down() {
            return Err(Status::unavailable("the transport is shut down"));
        }
        let stream = pipeline::serve(
            request.into_inner(),
            self.consumer.clone(),
            self.shutdown.clone(),
            self.pipeline_depth,
        );
        Ok(Response::new(stream))
    }

    async fn request_vote(
        &self,
        request: Request<pb::RequestVoteRequest>,
    ) -> Result<Response<pb::RequestVoteResponse>, Status> {
        let req = validate::vote_request(request.into_inner()).map_err(|e| refuse("RequestVote", e))?;
        match self.dispatch(InboundRequest::Rpc(RpcRequest::RequestVote(req))).await? {
            RpcResponse::RequestVote(r) => Ok(Response::new(convert::vote_response_to_pb(&r))),
            other => Err(mismatched("RequestVote", &other)),
        }
    }

    async fn request_pre_vote(
        &self,
        request: Request<pb::RequestPreVoteRequest>,
    ) -> Result<Response<pb::RequestPreVoteResponse>, Status> {
        let req =
            validate::pre_vote_request(request.into_inner()).map_err(|e| refuse("RequestPreVote", e))?;
        match self.dispatch(InboundRequest::Rpc(RpcRequest::RequestPreVote(req))).await? {
            RpcResponse::RequestPreVote(r) => Ok(Response::new(convert::pre_vote_response_to_pb(&r))),
            other => Err(mismatched("RequestPreVote", &other)),
        }
    }

    async fn timeout_now(
        &self,
        request: Request<pb::TimeoutNowRequest>,
    ) -> Result<Response<pb::TimeoutNowResponse>, Status> {
        let req = validate::timeout_now_request(request.into_inner()).map_err(|e| refuse("TimeoutNow", e))?;
        match self.dispatch(InboundRequest::Rpc(RpcRequest::TimeoutNow(req))).await? {
            RpcResponse::TimeoutNow(r) => Ok(Response::new(convert::timeout_now_response_to_pb(&r))),
            other => Err(mismatched("TimeoutNow", &other)),
        }
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let req = validate::read_index_request(request.into_inner()).map_err(|e| refuse("ReadIndex", e))?;
        match self.dispatch(InboundRequest::Rpc(RpcRequest::ReadIndex(req))).await? {
            RpcResponse::ReadIndex(r) => Ok(Response::new(convert::read_index_response_to_pb(&r))),
            other => Err(mismatched("ReadIndex", &other)),
        }
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::InstallSnapshotChunk>>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let header = snapshot::read_header(&mut stream).await?;
        let (reader, data_error) = snapshot::reader(stream, header.meta.size);
        let result = self.dispatch(InboundRequest::InstallSnapshot(header, reader)).await;
        // A malformed data stream outranks whatever the node made of it.
        if let Some(err) = data_error.take() {
            return Err(refuse("InstallSnapshot", err));
        }
        match result? {
            RpcResponse::InstallSnapshot(r) => Ok(Response::new(convert::snapshot_response_to_pb(&r))),
            other => Err(mismatched("InstallSnapshot", &other)),
        }
    }
}
