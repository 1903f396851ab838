//! Client side of the AppendEntries pipeline: opens the bidi stream on the
//! peer's bulk connection and runs a task that forwards queued requests and
//! relays responses in order.
//!
//! At most `pipeline_depth` requests are in flight; the oldest must be
//! answered within `rpc_timeout` or the pipeline reports
//! [`TransportError::Timeout`] and closes. Any error is delivered once on
//! `responses`, after which the channel ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use raft::message::{AppendEntriesRequest, AppendEntriesResponse};
use raft::transport::AppendPipeline;
use raft::{ServerAddress, TransportError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::convert;
use crate::pb;
use crate::pool::{Pool, RaftClient};

type ResponseTx = mpsc::Sender<Result<AppendEntriesResponse, TransportError>>;

/// Opens a pipeline to `addr` over `client`.
pub(crate) async fn open(
    mut client: RaftClient,
    pool: Arc<Pool>,
    addr: ServerAddress,
    depth: usize,
    rpc_timeout: Duration,
) -> Result<AppendPipeline, TransportError> {
    let (wire_tx, wire_rx) = mpsc::channel::<pb::AppendEntriesRequest>(depth);
    let opening = client.append_entries_pipeline(ReceiverStream::new(wire_rx));
    let inbound = match tokio::time::timeout(rpc_timeout, opening).await {
        Err(_) => {
            pool.failed(&addr, false);
            return Err(TransportError::Timeout(addr));
        }
        Ok(Err(status)) => return Err(pool.on_status(&addr, &status)),
        Ok(Ok(response)) => response.into_inner(),
    };
    pool.succeeded(&addr);
    let (req_tx, req_rx) = mpsc::channel(depth);
    let (resp_tx, resp_rx) = mpsc::channel(depth);
    let relay = Relay { addr, pool, depth, rpc_timeout, in_flight: VecDeque::new() };
    tokio::spawn(relay.run(req_rx, wire_tx, inbound, resp_tx));
    Ok(AppendPipeline { requests: req_tx, responses: resp_rx })
}

struct Relay {
    addr: ServerAddress,
    pool: Arc<Pool>,
    depth: usize,
    rpc_timeout: Duration,
    /// Send times of the requests awaiting a response, oldest first.
    in_flight: VecDeque<Instant>,
}

impl Relay {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<AppendEntriesRequest>,
        wire: mpsc::Sender<pb::AppendEntriesRequest>,
        mut inbound: Streaming<pb::AppendEntriesResponse>,
        responses: ResponseTx,
    ) {
        // `None` once the caller dropped its sender: the request stream is
        // then closed and we only drain the outstanding responses.
        let mut wire = Some(wire);
        loop {
            if wire.is_none() && self.in_flight.is_empty() {
                return;
            }
            let deadline = self.in_flight.front().map(|sent| *sent + self.rpc_timeout);
            let may_send = wire.is_some() && self.in_flight.len() < self.depth;
            tokio::select! {
                biased;
                next = inbound.next() => {
                    if !self.on_response(next, &responses).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    tracing::warn!(peer = %self.addr, "pipelined AppendEntries timed out");
                    self.pool.failed(&self.addr, false);
                    let _ = responses.send(Err(TransportError::Timeout(self.addr.clone()))).await;
                    return;
                }
                req = requests.recv(), if may_send => match req {
                    None => wire = None,
                    Some(req) => {
                        let sent = match &wire {
                            Some(w) => w.send(convert::append_request_to_pb(&req)).await.is_ok(),
                            None => false,
                        };
                        if !sent {
                            let err = TransportError::Unreachable(self.addr.clone(), "pipeline stream closed".into());
                            let _ = responses.send(Err(err)).await;
                            return;
                        }
                        self.in_flight.push_back(Instant::now());
                    }
                },
                _ = responses.closed() => return,
            }
        }
    }

    /// Relays one item of the response stream; false ends the pipeline.
    async fn on_response(
        &mut self,
        next: Option<Result<pb::AppendEntriesResponse, tonic::Status>>,
        responses: &ResponseTx,
    ) -> bool {
        let result = match next {
            Some(Ok(resp)) => {
                if self.in_flight.pop_front().is_none() {
                    Err(TransportError::Other(format!("{} sent an unsolicited pipeline response", self.addr)))
                } else {
                    self.pool.succeeded(&self.addr);
                    Ok(convert::append_response_from_pb(resp))
                }
            }
            Some(Err(status)) => Err(self.pool.on_status(&self.addr, &status)),
            None if self.in_flight.is_empty() => return false,
            None => Err(TransportError::Unreachable(self.addr.clone(), "peer closed the pipeline".into())),
        };
        let keep_going = result.is_ok();
        responses.send(result).await.is_ok() && keep_going
    }
}
