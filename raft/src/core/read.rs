//! Linearizable reads without writing to the log (ReadIndex, Raft thesis
//! §6.4), with the rules that Jepsen-found stale-read bugs taught:
//!
//! - a read is served only after the leader has committed an entry of its
//!   own term (until then its commit index may be stale);
//! - leadership is confirmed by a quorum round that *starts after* the read
//!   arrived: each batch of reads gets a fresh round number, and only
//!   responses echoing that round (or a later one) count;
//! - a confirmed read index is only safe once `applied >= index` (the driver
//!   waits for that);
//! - reads are refused during a leadership transfer;
//! - a retried read is a new read with a new round: confirmations are never
//!   reused.

use std::collections::VecDeque;

use super::{Core, ReadState, Refusal, Role};

/// A read waiting for confirmation.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    id: u64,
    /// Assigned when the read's round starts (the commit index then).
    index: u64,
    /// 0 until a round is started for it.
    round: u64,
}

/// The leader's queue of reads, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    pending: VecDeque<PendingRead>,
}

impl Core {
    /// Requests a linearizable read point. The answer arrives later in
    /// [`Ready::reads`](super::Ready::reads) (or `failed_reads`) under `id`.
    pub fn read_index(&mut self, id: u64) -> Result<(), Refusal> {
        let Role::Leader(leader) = &mut self.role else {
            return Err(self.not_leader_refusal());
        };
        if leader.transfer.is_some() {
            return Err(Refusal::TransferInProgress);
        }
        leader.reads.pending.push_back(PendingRead { id, index: 0, round: 0 });
        Ok(())
    }

    /// Requests a read point under [`ReadPolicy::Lease`](crate::ReadPolicy::Lease):
    /// answered at once (in [`Ready::reads`](super::Ready::reads), at the
    /// commit index) while this leader's lease holds, otherwise through a
    /// quorum round exactly as [`Core::read_index`] (same refusals).
    ///
    /// The lease holds only if all of these hold (see the `lease` module):
    /// this node leads; `check_quorum` is on and
    /// [`CoreConfig::read_lease_ticks`](super::CoreConfig::read_lease_ticks)
    /// is not 0; it has committed an entry of its own term; no leadership
    /// transfer is running or was started in this term (TimeoutNow lets its
    /// target skip the voters' stickiness); and a quorum acknowledged a
    /// heartbeat round sent less than `read_lease_ticks` of this leader's
    /// ticks ago. Safe under these assumptions: clock *rates* differ by
    /// less than the drift bound the lease was derived from
    /// ([`crate::Config::max_clock_drift`]), every node's clock is monotonic
    /// and sees every pause (the driver delivers all elapsed ticks before
    /// asking), followers refuse votes for `follower_timeout_ticks` after
    /// hearing from a leader (check-quorum stickiness) and after a restart.
    /// As for any read point, the driver answers only once its state
    /// machine applied `index`.
    pub fn lease_read(&mut self, id: u64) -> Result<(), Refusal> {
        if self.read_under_lease(id) {
            return Ok(());
        }
        self.read_index(id)
    }

    /// Whether reads are waiting for a round to start.
    pub(crate) fn reads_unflushed(&self) -> bool {
        match &self.role {
            // One confirmation round at a time: reads that arrive while a
            // round is in flight wait for the next one, which starts as soon
            // as that round is confirmed. Under load one heartbeat round then
            // serves every read queued during the previous round instead of
            // a round (a heartbeat to every peer) per batch. A round whose
            // heartbeats are lost is still confirmed by the periodic
            // heartbeats and appends, which carry the latest round.
            Role::Leader(l) => {
                self.commit >= l.term_start && l.reads.pending.front().is_some_and(|r| r.round == 0)
            }
            _ => false,
        }
    }

    /// Starts one quorum round for every read that has none yet, once the
    /// leader has committed an entry of its term.
    pub(crate) fn flush_reads(&mut self) {
        if !self.reads_unflushed() {
            return;
        }
        let commit = self.commit;
        let alone = self.membership.quorum().is_sole_voter(&self.id);
        let Role::Leader(leader) = &mut self.role else { return };
        // The round started next, after the reads arrived, confirms them.
        let round = leader.round + 1;
        for r in leader.reads.pending.iter_mut().filter(|r| r.round == 0) {
            r.round = round;
            r.index = commit;
        }
        if leader.peers.is_empty() || alone {
            self.start_read_round();
        } else {
            // Starts round `round` and sends it to every follower.
            self.broadcast_heartbeat();
        }
        self.advance_reads();
    }

    /// Releases reads whose round a quorum has acknowledged.
    /// Extends the lease first (see `lease`): both count the same echoes.
    pub(crate) fn advance_reads(&mut self) {
        self.advance_lease();
        // Runs on every append response: return before any work when no
        // read waits for confirmation.
        let Role::Leader(leader) = &self.role else { return };
        if leader.reads.pending.front().is_none_or(|r| r.round == 0) {
            return;
        }
        // Borrowed from `membership` while `role` is borrowed mutably.
        let quorum = self.membership.quorum();
        let Role::Leader(leader) = &mut self.role else { return };
        while let Some(front) = leader.reads.pending.front().copied() {
            if front.round == 0 {
                break;
            }
            // The leader acknowledges its own round (if it counts at all).
            let confirmed = quorum.is_reached(|id| {
                *id == self.id || leader.peers.get(id).is_some_and(|p| p.acked_round >= front.round)
            });
            if !confirmed {
                break;
            }
            leader.reads.pending.pop_front();
            self.ready.reads.push(ReadState { id: front.id, index: front.index });
        }
    }

    /// Fails every pending read (on losing leadership or starting a transfer).
    pub(crate) fn fail_pending_reads(&mut self, why: Refusal) {
        if let Role::Leader(leader) = &mut self.role {
            for r in leader.reads.pending.drain(..) {
                self.ready.failed_reads.push((r.id, why.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
