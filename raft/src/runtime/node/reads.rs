//! Reads in the main task: a batch of the handle's reads (a [`ReadTicket`])
//! or a follower's read-index request starts one read in the core
//! (ReadIndex, or a lease read that the core answers at once while its
//! lease holds) and is answered with the read index once the core confirms
//! it, or with the refusal that ended it. Reads started in the same loop
//! turn share the core's next quorum round.

use super::*;
use crate::core::ReadState;
use crate::message::{ReadIndexRequest, ReadIndexResponse};
use crate::runtime::reads::{bump, remote_refusal};

/// Who waits for a read's answer.
enum ReadWaiter {
    /// A batch of this node's own reads.
    Batch(ReadTicket),
    /// A follower's read-index request.
    Remote(RpcReply),
}

/// The main task's reads under way.
pub(super) struct Reads {
    /// Reads whose answer is owed, by read id.
    tickets: HashMap<u64, ReadWaiter>,
    /// The id the next read gets (ids start at 1).
    next_id: u64,
    /// Lease reads started since the core's answers were last collected:
    /// those answered in that same collection were served from the lease
    /// (no quorum round can complete in between).
    fresh_lease: Vec<u64>,
}

impl Default for Reads {
    fn default() -> Self {
        Self { tickets: HashMap::new(), next_id: 1, fresh_lease: Vec::new() }
    }
}

impl Reads {
    /// Whether any read is waiting for its answer.
    pub(super) fn in_flight(&self) -> bool {
        !self.tickets.is_empty()
    }

    /// Answers every read under way with `failure`.
    pub(super) fn fail_all(&mut self, failure: &ReadFailure) {
        for (_, waiter) in std::mem::take(&mut self.tickets) {
            answer(waiter, Err(failure.clone()), 0);
        }
    }
}

/// Sends a read's outcome to whoever waits for it; `term` is the
/// responder's term (for a follower's request).
fn answer(waiter: ReadWaiter, outcome: Result<u64, ReadFailure>, term: u64) {
    match waiter {
        ReadWaiter::Batch(ticket) => ticket.resolve(outcome),
        ReadWaiter::Remote(reply) => {
            let result = outcome.map_err(|f| remote_refusal(&f));
            reply.send(Ok(RpcResponse::ReadIndex(ReadIndexResponse { term, result })));
        }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Starts a ReadIndex round for a batch of reads.
    pub(super) fn start_read(&mut self, ticket: ReadTicket) {
        // No reader may join once the round can start.
        self.shared.reads.close(&ticket);
        self.begin_read(ReadWaiter::Batch(ticket), false);
    }

    /// Starts a lease read for a batch of reads: answered at once while the
    /// lease holds, else through a quorum round.
    pub(super) fn start_lease_read(&mut self, ticket: ReadTicket) {
        self.shared.lease_reads.close(&ticket);
        self.begin_read(ReadWaiter::Batch(ticket), true);
    }

    /// A follower asks for a read index (linearizable follower reads): the
    /// same machinery as this node's own reads.
    pub(super) fn on_read_index_request(&mut self, req: ReadIndexRequest, reply: RpcReply) {
        tracing::trace!(requester = %req.requester, lease = req.lease, "read index asked by a follower");
        self.begin_read(ReadWaiter::Remote(reply), req.lease);
    }

    fn begin_read(&mut self, waiter: ReadWaiter, lease: bool) {
        let id = self.reads.next_id;
        self.reads.next_id += 1;
        let started = if lease {
            // The lease is counted in ticks: deliver every tick that is due
            // first, so a loop that fell behind the clock never serves a
            // read from a lease that has in fact run out.
            self.deliver_due_ticks();
            self.core.lease_read(id)
        } else {
            self.core.read_index(id)
        };
        match started {
            Ok(()) => {
                if lease {
                    self.reads.fresh_lease.push(id);
                }
                self.reads.tickets.insert(id, waiter);
            }
            Err(r) => {
                let failure = self.read_failure(r);
                answer(waiter, Err(failure), self.core.term());
            }
        }
    }

    /// Answers the rounds the core confirmed (`done`) or refused (`failed`).
    pub(super) fn reads_done(&mut self, done: Vec<ReadState>, failed: Vec<(u64, Refusal)>) {
        let term = self.core.term();
        let fresh = std::mem::take(&mut self.reads.fresh_lease);
        for r in done {
            if fresh.contains(&r.id) {
                bump(&self.shared.read_counts.lease_served);
            }
            if let Some(waiter) = self.reads.tickets.remove(&r.id) {
                if matches!(waiter, ReadWaiter::Remote(_)) {
                    bump(&self.shared.read_counts.read_index_requests_answered);
                }
                answer(waiter, Ok(r.index), term);
            }
        }
        for id in fresh {
            if self.reads.tickets.contains_key(&id) {
                bump(&self.shared.read_counts.lease_fallbacks);
            }
        }
        for (id, why) in failed {
            if let Some(waiter) = self.reads.tickets.remove(&id) {
                let failure = self.read_failure(why);
                answer(waiter, Err(failure), term);
            }
        }
    }

    /// Mirrors the core's lease for the handle's lease reads (see
    /// `runtime::lease`): when it runs out, as an instant of the clock the
    /// ticks come from, and the commit index to read at. No lease while the
    /// core would answer no read from it, or after a fatal error.
    pub(super) fn publish_lease(&self) {
        let until = match self.core.lease_remaining_ticks() {
            Some(ticks) if ticks > 0 && self.fatal.is_none() => Some(self.clock.instant_after(ticks)),
            _ => None,
        };
        self.shared.lease.publish(until, self.core.commit_index());
    }

    /// Lease reads started in a loop turn that produced no work for the
    /// core were not served from the lease.
    pub(super) fn settle_lease_reads(&mut self) {
        for id in std::mem::take(&mut self.reads.fresh_lease) {
            if self.reads.tickets.contains_key(&id) {
                bump(&self.shared.read_counts.lease_fallbacks);
            }
        }
    }

    /// A refusal, to hand to every read of a batch.
    pub(super) fn read_failure(&self, refusal: Refusal) -> ReadFailure {
        let leader = self.refusal_leader(&refusal);
        ReadFailure::Refused { refusal, leader }
    }
}
