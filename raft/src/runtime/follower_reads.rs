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
        let Some(mut leader) = self.known_leader() else {
            return Err(no_leader());
        };
        let mut retried = false;
        loop {
            let req = ReadIndexRequest {
                requester: self.local_id.clone(),
                lease,
                cluster_id: self.shared.get_cluster_id(),
            };
            let Some(transport) = self.transport.upgrade() else {
                return Err(ReadFailure::Shutdown);
            };
            let failure = match transport.read_index(&leader.0, &leader.1, req).await {
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
            let next = failure.1.or_else(|| self.known_leader()).filter(|l| l.0 != leader.0);
            match next {
                Some(next) if !retried && next.0 != self.local_id => {
                    tracing::debug!(asked = %leader.0, next = %next.0, "the leader changed during a follower read: asking the new one");
                    retried = true;
                    leader = next;
                }
                _ => return Err(failure.0),
            }
        }
    }
}

/// The refusal when no leader is known.
fn no_leader() -> ReadFailure {
    ReadFailure::Refused { refusal: crate::core::Refusal::NotLeader(None), leader: None }
}
