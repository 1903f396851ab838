//! Inbound RPCs in the main task: each request the transport delivers is
//! checked ([`Node::admit`]), stepped into the core under an RPC id, and
//! answered when the core's answer carrying that id comes out of `Ready`.

use super::*;

/// The main task's inbound RPCs and the answers owed to them.
pub(super) struct Rpcs {
    /// RPCs the transport received (`None` once it closed the channel).
    pub(super) inbound: Option<mpsc::Receiver<InboundRpc>>,
    /// Where to send the answer of each request stepped into the core, by
    /// RPC id.
    pub(super) pending: HashMap<u64, RpcReply>,
    /// The id the next request gets (ids start at 1: 0 marks a message
    /// that answers none).
    next_id: u64,
}

impl Rpcs {
    pub(super) fn new(inbound: Option<mpsc::Receiver<InboundRpc>>) -> Self {
        Self { inbound, pending: HashMap::new(), next_id: 1 }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Handles one inbound RPC.
    pub(super) fn on_rpc(&mut self, rpc: InboundRpc) {
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
                self.shared.observers.notify(observation);
                (r.candidate_id.clone(), Body::RequestVote(r))
            }
            RpcRequest::RequestPreVote(r) => (r.candidate_id.clone(), Body::RequestPreVote(r)),
            RpcRequest::TimeoutNow(r) => (r.leader_id.clone(), Body::TimeoutNow(r)),
            RpcRequest::ReadIndex(r) => {
                if &r.requester == self.id() || r.requester.as_str().is_empty() {
                    let why = format!("invalid requester id {:?}", r.requester);
                    reply.send(Err(TransportError::Rejected(why)));
                } else {
                    self.on_read_index_request(r, reply);
                }
                return;
            }
        };
        if &from == self.id() || from.as_str().is_empty() {
            reply.send(Err(TransportError::Rejected(format!("invalid sender id {from:?}"))));
            return;
        }
        let rpc_id = self.rpcs.next_id;
        self.rpcs.next_id += 1;
        self.rpcs.pending.insert(rpc_id, reply);
        let to = self.id().clone();
        // The core answers it, or lists it in `Ready::declined`.
        self.core.step(Message { from, to, rpc_id, body });
    }

    /// Refuses the requests the core declined to answer.
    /// A removed node says so, in words its sender recognises (a leader
    /// adding it back then tells its caller what to do).
    pub(super) fn declined(&mut self, rpc_ids: Vec<u64>) {
        for rpc_id in rpc_ids {
            if let Some(reply) = self.rpcs.pending.remove(&rpc_id) {
                let why = if self.core.is_removed() {
                    crate::runtime::identity::removed_message(self.id())
                } else {
                    "request ignored by the receiver".into()
                };
                reply.send(Err(TransportError::Rejected(why)));
            }
        }
    }

    /// Sends the core's answer to the inbound RPC it names.
    pub(super) fn answer(&mut self, msg: Message) {
        let Some(reply) = self.rpcs.pending.remove(&msg.rpc_id) else { return };
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
    }
}
