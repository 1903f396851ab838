//! Server side of the AppendEntries pipeline. A reader task validates each
//! request and hands it to the node as soon as it arrives (so the node can
//! work on several at once); a responder task awaits the answers in arrival
//! order and streams them back, so the n-th response always answers the
//! n-th request. The first malformed request ends the stream with
//! `INVALID_ARGUMENT` after the answers to the requests before it.

use futures::StreamExt;
use raft::message::{RpcRequest, RpcResponse};
use raft::transport::{InboundRequest, InboundRpc};
use raft::TransportError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::convert;
use crate::pb;
use crate::validate;

/// One queued answer, in request order.
enum Pending {
    /// The node has the request; its answer arrives here.
    Waiting(oneshot::Receiver<Result<RpcResponse, TransportError>>),
    /// The stream must end with this error.
    Failed(Status),
}

/// Starts serving one pipeline; returns the response stream.
pub(super) fn serve(
    requests: Streaming<pb::AppendEntriesRequest>,
    consumer: mpsc::Sender<InboundRpc>,
    shutdown: watch::Receiver<bool>,
    depth: usize,
) -> ReceiverStream<Result<pb::AppendEntriesResponse, Status>> {
    let (pending_tx, pending_rx) = mpsc::channel(depth);
    let (out_tx, out_rx) = mpsc::channel(depth);
    tokio::spawn(read_requests(requests, consumer, shutdown, pending_tx));
    tokio::spawn(send_responses(pending_rx, out_tx));
    ReceiverStream::new(out_rx)
}

async fn read_requests(
    mut requests: Streaming<pb::AppendEntriesRequest>,
    consumer: mpsc::Sender<InboundRpc>,
    mut shutdown: watch::Receiver<bool>,
    pending: mpsc::Sender<Pending>,
) {
    loop {
        let next = tokio::select! {
            next = requests.next() => next,
            _ = shut_down(&mut shutdown) => {
                let _ = pending.send(Pending::Failed(Status::unavailable("the transport is shut down"))).await;
                return;
            }
            // The responder is gone: the caller hung up.
            _ = pending.closed() => return,
        };
        let item = match next {
            None => return,
            Some(Err(status)) => {
                tracing::debug!(%status, "append pipeline closed by the caller");
                return;
            }
            Some(Ok(msg)) => match validate::append_request(msg) {
                Err(err) => Pending::Failed(super::refuse("AppendEntriesPipeline", err)),
                Ok(req) => match super::enqueue(
                    &consumer,
                    &shutdown,
                    InboundRequest::Rpc(RpcRequest::AppendEntries(req)),
                )
                .await
                {
                    Ok(rx) => Pending::Waiting(rx),
                    Err(status) => Pending::Failed(status),
                },
            },
        };
        let last = matches!(item, Pending::Failed(_));
        if pending.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Resolves once the transport is shutting down.
async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means shutdown.
    let _ = shutdown.wait_for(|down| *down).await;
}

async fn send_responses(
    mut pending: mpsc::Receiver<Pending>,
    out: mpsc::Sender<Result<pb::AppendEntriesResponse, Status>>,
) {
    while let Some(item) = pending.recv().await {
        let result = match item {
            Pending::Failed(status) => Err(status),
            Pending::Waiting(rx) => match super::await_reply(rx).await {
                Ok(RpcResponse::AppendEntries(r)) => Ok(convert::append_response_to_pb(&r)),
                Ok(other) => Err(super::mismatched("AppendEntriesPipeline", &other)),
                Err(status) => Err(status),
            },
        };
        let last = result.is_err();
        if out.send(result).await.is_err() || last {
            return;
        }
    }
}
