//! Linearizable follower reads, on the follower's side.
//!
//! A follower asked for a [`ReadPolicy::Lease`](crate::ReadPolicy::Lease) or
//! [`ReadPolicy::ReadIndex`](crate::ReadPolicy::ReadIndex) read asks the
//! leader for a read index ([`ReadIndexRequest`]), then waits until its own
//! state machine has applied that index and serves the read locally.
//!
//! Concurrent reads share requests like the leader's own reads share
//! rounds: per policy, one request is in flight at a time, and a read that
//! arrives while one is in flight joins the *next* batch, whose request is
//! sent once the one in flight is answered. A batch's request is sent only
//! after every member joined, so the leader's round (or lease check) starts
//! after each of them was called: each gets a linearizable read point.
//!
//! The request goes to the leader this node knows of; if that server
//! answers that it no longer leads and names another leader (or this node
//! learned of another one meanwhile), the request is retried once against
//! it. With no leader known the read is refused with
//! [`Error::NotLeader`](crate::Error::NotLeader).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::message::{ReadIndexRefusal, ReadIndexRequest};
use crate::raft::Shared;
use crate::runtime::reads::{ReadBatch, ReadFailure};
use crate::transport::Transport;
use crate::types::{RaftState, ServerAddress, ServerId};

/// One policy's batches: the batch open to new readers, and whether a
/// request is in flight (its sender then sends the open batch next).
#[derive(Debug, Default)]
struct Slot {
    open: Option<Arc<ReadBatch>>,
    sending: bool,
}

/// The follower-read batches of one node (one slot per policy).
#[derive(Debug, Default)]
pub(crate) struct FollowerReads {
    /// `[ReadIndex, Lease]`.
    slots: [Mutex<Slot>; 2],
}

/// What a request's sender needs.
#[derive(Clone)]
pub(crate) struct FollowerReadContext {
    pub(crate) local_id: ServerId,
    pub(crate) shared: Arc<Shared>,
    /// The node's transport, held weakly: a node that shut down releases
    /// it (its listener closes) even while handles remain.
    pub(crate) transport: Weak<dyn Transport>,
    pub(crate) reads: Arc<FollowerReads>,
    /// Bound of one request (the transport bounds it too).
    pub(crate) timeout: Duration,
}

impl FollowerReadContext {
    /// Joins the open batch for `lease` reads (opening one, and starting
    /// its sender if none is running) and waits for the read index.
    pub(crate) async fn read_index(&self, lease: bool) -> Result<u64, crate::Error> {
        let batch = {
            let mut slot = self.reads.slots[usize::from(lease)].lock().unwrap_or_else(|e| e.into_inner());
            match &slot.open {
                Some(batch) => batch.clone(),
                None => {
                    let batch = Arc::new(ReadBatch::default());
                    slot.open = Some(batch.clone());
                    if !slot.sending {
                        slot.sending = true;
                        // A task of its own: the batch's other members must
                        // get their answer even if this caller gives up.
                        tokio::spawn(self.clone().send_batches(lease));
                    }
                    batch
                }
            }
        };
        batch.outcome().await
    }

    /// Sends the open batch's request, answers the batch, and repeats while
    /// readers opened another batch meanwhile.
    async fn send_batches(self, lease: bool) {
        loop {
            let batch = {
                let mut slot = self.reads.slots[usize::from(lease)].lock().unwrap_or_else(|e| e.into_inner());
                match slot.open.take() {
                    Some(batch) => batch,
                    None => {
                        slot.sending = false;
                        return;
                    }
                }
            };
            let outcome = match tokio::time::timeout(self.timeout, self.ask_leader(lease)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ReadFailure::Timeout),
            };
            if let Err(failure) = &outcome {
                tracing::warn!(
                    ?failure,
                    "follower read failed: the leader gave no read index; retry, or read on the leader"
                );
            }
            batch.resolve(outcome);
        }
    }

    /// The leader this node knows of (`None` if none, or if it is this
    /// node itself: it then reads as the leader).
    fn known_leader(&self) -> Option<(ServerId, ServerAddress)> {
        let (state, leader) = self.shared.get_state();
        if state == RaftState::Leader {
            return None;
        }
        leader.filter(|(id, _)| *id != self.local_id)
    }

    /// Asks the leader for a read index, retrying once against a new
    /// leader if the one asked no longer leads.
    async fn ask_leader(&self, lease: bool) -> Result<u64, ReadFailure> {
        let Some(transport) = self.transport.upgrade() else {
            return Err(ReadFailure::Shutdown);
        };
        let req = ReadIndexRequest {
            requester: self.local_id.clone(),
            lease,
            cluster_id: self.shared.get_cluster_id(),
        };
        ask(&*transport, req, || self.known_leader()).await
    }
}

/// Sends `req` to the leader `known` names; if that server answers that it
/// no longer leads and names another leader (or `known` names another one
/// by then), asks that one, once. With no leader known, refuses with
/// `NotLeader`.
async fn ask(
    transport: &dyn Transport,
    req: ReadIndexRequest,
    known: impl Fn() -> Option<(ServerId, ServerAddress)>,
) -> Result<u64, ReadFailure> {
    let Some(mut leader) = known() else {
        return Err(no_leader());
    };
    let mut retried = false;
    loop {
        let (failure, hint) = match transport.read_index(&leader.0, &leader.1, req.clone()).await {
            Ok(resp) => match resp.result {
                Ok(index) => return Ok(index),
                Err(refusal) => {
                    let hint = match &refusal {
                        ReadIndexRefusal::NotLeader { leader: Some(l) } => Some(l.clone()),
                        _ => None,
                    };
                    (ReadFailure::Remote { refusal, asked: leader.clone() }, hint)
                }
            },
            Err(e) => (ReadFailure::Transport(e), None),
        };
        // Another leader, named by the server asked or learned here
        // meanwhile: ask it, once.
        let next = hint.or_else(&known).filter(|l| l.0 != leader.0 && l.0 != req.requester);
        match next {
            Some(next) if !retried => {
                tracing::debug!(asked = %leader.0, next = %next.0, "the leader changed during a follower read: asking the new one");
                retried = true;
                leader = next;
            }
            _ => return Err(failure),
        }
    }
}

/// The refusal when no leader is known.
fn no_leader() -> ReadFailure {
    ReadFailure::Refused { refusal: crate::core::Refusal::NotLeader(None), leader: None }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use super::*;
    use crate::error::TransportError;
    use crate::message::*;
    use crate::snapshot::SnapshotReader;
    use crate::transport::{AppendPipeline, InboundRpc};

    /// Implements [`Transport`] for `$ty` with `$extra` methods, every
    /// other RPC failing (follower reads never use them).
    macro_rules! fake_transport {
        ($ty:ty, { $($extra:tt)* }) => {
            #[async_trait]
            impl Transport for $ty {
            $($extra)*
            fn local_addr(&self) -> ServerAddress {
                ServerAddress::new("n1")
            }
            fn take_consumer(&self) -> Result<mpsc::Receiver<InboundRpc>, TransportError> {
                Err(TransportError::Closed)
            }
            async fn append_entries(
                &self,
                _: &ServerId,
                _: &ServerAddress,
                _: AppendEntriesRequest,
            ) -> Result<AppendEntriesResponse, TransportError> {
                Err(TransportError::Closed)
            }
            async fn append_entries_pipeline(
                &self,
                _: &ServerId,
                _: &ServerAddress,
            ) -> Result<AppendPipeline, TransportError> {
                Err(TransportError::Closed)
            }
            async fn request_vote(
                &self,
                _: &ServerId,
                _: &ServerAddress,
                _: RequestVoteRequest,
            ) -> Result<RequestVoteResponse, TransportError> {
                Err(TransportError::Closed)
            }
            async fn request_pre_vote(
                &self,
                _: &ServerId,
                _: &ServerAddress,
                _: RequestPreVoteRequest,
            ) -> Result<RequestPreVoteResponse, TransportError> {
                Err(TransportError::Closed)
            }
            async fn timeout_now(
                &self,
                _: &ServerId,
                _: &ServerAddress,
                _: TimeoutNowRequest,
            ) -> Result<TimeoutNowResponse, TransportError> {
                Err(TransportError::Closed)
            }
            async fn install_snapshot(
                &self,
                _: &ServerId,
                _: &ServerAddress,
                _: InstallSnapshotRequest,
                _: SnapshotReader,
            ) -> Result<InstallSnapshotResponse, TransportError> {
                Err(TransportError::Closed)
            }
            }
        };
    }

    /// Answers read-index requests from a script, by target; records who
    /// was asked.
    #[derive(Default)]
    struct Scripted {
        answers: HashMap<&'static str, Result<Result<u64, ReadIndexRefusal>, TransportError>>,
        asked: Mutex<Vec<String>>,
    }

    fake_transport!(Scripted, {
        async fn read_index(
            &self,
            target: &ServerId,
            _: &ServerAddress,
            _: ReadIndexRequest,
        ) -> Result<ReadIndexResponse, TransportError> {
            self.asked.lock().expect("lock").push(target.to_string());
            match self.answers.get(target.as_str()) {
                Some(Ok(result)) => Ok(ReadIndexResponse { term: 2, result: result.clone() }),
                Some(Err(e)) => Err(e.clone()),
                None => {
                    Err(TransportError::Unreachable(ServerAddress::new(target.as_str()), "no route".into()))
                }
            }
        }
    });

    /// A transport written before follower reads existed.
    struct Legacy;

    fake_transport!(Legacy, {});

    fn server(id: &str) -> (ServerId, ServerAddress) {
        (ServerId::new(id), ServerAddress::new(id))
    }

    fn request() -> ReadIndexRequest {
        ReadIndexRequest { requester: ServerId::new("n1"), lease: false, cluster_id: None }
    }

    fn not_leader(hint: &str) -> Result<Result<u64, ReadIndexRefusal>, TransportError> {
        Ok(Err(ReadIndexRefusal::NotLeader { leader: Some(server(hint)) }))
    }

    #[tokio::test]
    async fn a_leader_that_stepped_down_is_followed_to_the_new_one_once() {
        let mut t = Scripted::default();
        t.answers.insert("n2", not_leader("n3"));
        t.answers.insert("n3", Ok(Ok(7)));
        assert_eq!(ask(&t, request(), || Some(server("n2"))).await.ok(), Some(7));
        assert_eq!(*t.asked.lock().expect("lock"), ["n2", "n3"]);

        // Only once: a second redirect fails the read, naming the leader.
        let mut t = Scripted::default();
        t.answers.insert("n2", not_leader("n3"));
        t.answers.insert("n3", not_leader("n4"));
        match ask(&t, request(), || Some(server("n2"))).await.map_err(crate::Error::from) {
            Err(crate::Error::NotLeader { leader: Some((id, _)) }) => assert_eq!(id.as_str(), "n4"),
            other => panic!("expected NotLeader naming n4, got {other:?}"),
        }
        assert_eq!(*t.asked.lock().expect("lock"), ["n2", "n3"]);
    }

    #[tokio::test]
    async fn an_unreachable_leader_is_replaced_by_the_one_learned_meanwhile() {
        let mut t = Scripted::default();
        t.answers.insert("n3", Ok(Ok(9)));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        // n2 first; by the time it failed this node heard of n3.
        let known = || {
            let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            Some(server(if first { "n2" } else { "n3" }))
        };
        assert_eq!(ask(&t, request(), known).await.ok(), Some(9));
        // The same leader again is not retried: the transport error stands.
        let t = Scripted::default();
        let failure = ask(&t, request(), || Some(server("n2"))).await;
        assert!(matches!(failure, Err(ReadFailure::Transport(_))), "{failure:?}");
        assert_eq!(*t.asked.lock().expect("lock"), ["n2"]);
    }

    #[tokio::test]
    async fn no_known_leader_is_not_leader_and_nobody_is_asked() {
        let t = Scripted::default();
        let failure = ask(&t, request(), || None).await.map_err(crate::Error::from);
        assert!(matches!(failure, Err(crate::Error::NotLeader { leader: None })), "{failure:?}");
        assert!(t.asked.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_transport_without_read_index_says_it_does_not_support_follower_reads() {
        let failure = ask(&Legacy, request(), || Some(server("n2"))).await.map_err(crate::Error::from);
        match failure {
            Err(crate::Error::Transport(TransportError::Other(msg))) => {
                assert!(msg.contains("does not support follower reads"), "{msg}")
            }
            other => panic!("expected the unsupported error, got {other:?}"),
        }
    }
}
