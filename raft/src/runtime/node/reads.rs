//! ReadIndex reads in the main task: a batch of reads (a [`ReadTicket`])
//! starts one ReadIndex round in the core and is answered with the read
//! index once the core confirms it, or with the refusal that ended it.

use super::*;
use crate::core::ReadState;

/// The main task's ReadIndex rounds under way.
pub(super) struct Reads {
    /// Read batches whose round is under way, by read id.
    tickets: HashMap<u64, ReadTicket>,
    /// The id the next round gets (ids start at 1).
    next_id: u64,
}

impl Default for Reads {
    fn default() -> Self {
        Self { tickets: HashMap::new(), next_id: 1 }
    }
}

impl Reads {
    /// Answers every read under way with `failure`.
    pub(super) fn fail_all(&mut self, failure: &ReadFailure) {
        for (_, ticket) in std::mem::take(&mut self.tickets) {
            ticket.resolve(Err(failure.clone()));
        }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Starts a ReadIndex round for a batch of reads.
    pub(super) fn start_read(&mut self, ticket: ReadTicket) {
        // No reader may join once the round can start.
        self.shared.reads.close(&ticket);
        let id = self.reads.next_id;
        self.reads.next_id += 1;
        match self.core.read_index(id) {
            Ok(()) => {
                self.reads.tickets.insert(id, ticket);
            }
            Err(r) => ticket.resolve(Err(self.read_failure(r))),
        }
    }

    /// Answers the rounds the core confirmed (`done`) or refused (`failed`).
    pub(super) fn reads_done(&mut self, done: Vec<ReadState>, failed: Vec<(u64, Refusal)>) {
        for r in done {
            if let Some(ticket) = self.reads.tickets.remove(&r.id) {
                ticket.resolve(Ok(r.index));
            }
        }
        for (id, why) in failed {
            if let Some(ticket) = self.reads.tickets.remove(&id) {
                ticket.resolve(Err(self.read_failure(why)));
            }
        }
    }

    /// A refusal, to hand to every read of a batch.
    pub(super) fn read_failure(&self, refusal: Refusal) -> ReadFailure {
        let leader = self.refusal_leader(&refusal);
        ReadFailure::Refused { refusal, leader }
    }
}
