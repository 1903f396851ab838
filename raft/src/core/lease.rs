//! Leader leases for reads (Raft thesis §6.4.1): a leader answers
//! [`Core::lease_read`] at once, without a quorum round, while a quorum has
//! recently confirmed it and no other leader can have been elected since.
//!
//! # How the lease is earned
//! The leader counts its own ticks (`Lease::clock`, from the moment it took
//! office). Every heartbeat broadcast starts a new read round
//! ([`Core::start_read_round`]) and the tick it was *sent* at is remembered.
//! Every AppendEntries, heartbeat or not, carries the latest round, and a
//! follower echoes it in its answer; once a quorum of voters (the leader
//! counting itself; joint configurations need a quorum of each half) has
//! echoed round `r` or a later one, the lease runs until
//! `sent_tick(r) + read_lease_ticks`. An answer counts only for the round it
//! echoes (and earlier ones): a delayed answer to an old round extends the
//! lease from the old round's send tick, never from a newer round's (the
//! etcd-io/raft #397 shape).
//!
//! # Why no other leader can exist meanwhile
//! With check-quorum, a follower that heard from a leader refuses votes and
//! pre-votes for `follower_timeout_ticks` of its own clock (leader
//! stickiness), and a node that (re)starts does the same, as if it had just
//! heard from a leader (its memory of the last leader is gone). A new leader
//! needs votes from a quorum, which shares a voter with the quorum that
//! confirmed round `r`; that voter received round `r` after it was sent, so
//! it votes no earlier than `follower_timeout_ticks` of its clock after the
//! send. With clock rates within `1 ± eps` of each other, a lease of `L`
//! leader ticks ends (in real time, counting a tick of rounding on each
//! side) before the shared voter can vote as long as
//! `(L + 1) / (1 - eps) <= (follower_timeout_ticks - 1) / (1 + eps)`.
//! The runtime derives `read_lease_ticks` from
//! [`crate::Config::max_clock_drift`] (the follower timeout less the drift
//! bound and two ticks of rounding), the simulation checks the bound with
//! clocks drifting within it (`testing::sim`, module `clocks`), and the
//! core never uses a lease longer than `follower_timeout_ticks - 2`.
//!
//! # The assumptions, all required
//! - bounded clock drift (above) and a monotonic clock that sees every
//!   pause of the process: the driver must deliver every elapsed tick
//!   before it asks for a lease read;
//! - check-quorum on (it turns on the followers' stickiness); with it off,
//!   [`Core::lease_read`] always takes a ReadIndex round;
//! - restart stickiness (in `election`): a restarted voter waits out a
//!   follower timeout before it votes for anyone but itself;
//! - no lease after a leadership transfer started in the term: TimeoutNow
//!   lets its target's election skip the voters' stickiness, so once this
//!   leader started a transfer it never serves a lease read again in this
//!   term (the only other TimeoutNow, the hand-off of a leader that left
//!   the configuration in `joint`, is followed at once by stepping down);
//! - no lease before the leader committed an entry of its own term: until
//!   then its commit index may miss entries committed by its predecessor.
//!
//! The lease lives in the leader's state: stepping down drops it.
//!
//! # What we took from LeaseGuard (Davis et al., arXiv 2512.15659)
//! - *The log is the lease*: no extra messages and no extra heartbeats. The
//!   round rides on every AppendEntries, so under write load the
//!   acknowledgements of replication itself keep the lease alive even when
//!   heartbeats are lost.
//! - The lease is anchored at *send* time (LeaseGuard: the entry's creation
//!   time), never at the time the acknowledgement arrived.
//! - Deferred commit after failover: LeaseGuard's new leader may not commit
//!   until its predecessor's lease expired. Here that is implied by
//!   stickiness: a new leader cannot even be elected, let alone commit,
//!   before the shared voter waited out its follower timeout, which outlasts
//!   the old lease.
//!
//! Not taken: serving reads during the new leader's "limbo" period
//! (LeaseGuard's inherited lease reads, for keys the uncommitted tail does
//! not touch). It needs synchronized clocks (a new leader judges the old
//! lease from a timestamp written by another node) and per-key knowledge of
//! the state machine, which the core does not have; here a new leader
//! answers lease reads only after the first commit of its term. Also not
//! taken: LeaseGuard's decoupling of leases from elections; our
//! check-quorum stickiness already exists and only needs bounded clock
//! *rates*, not synchronized clocks.

use std::collections::VecDeque;

use super::{Core, ReadState, Role};

/// A leader's lease bookkeeping (one per term: it lives in `LeaderState`).
#[derive(Debug, Default)]
pub(crate) struct Lease {
    /// Ticks this leader has counted since it took office.
    clock: u64,
    /// Rounds sent and not yet confirmed by a quorum, oldest first, as
    /// (round, tick sent). At most one entry per tick (the lowest round
    /// sent in it: any quorum acknowledging a later round of the same tick
    /// has acknowledged that one too), and none whose lease would already
    /// be over, so it never holds more than `read_lease_ticks + 1` entries.
    unconfirmed: VecDeque<(u64, u64)>,
    /// The lease holds while `clock < until`.
    until: u64,
    /// A leadership transfer was started in this term: the lease is gone
    /// and no later round earns it back.
    given_up: bool,
}

impl Core {
    /// The lease length in effect: `read_lease_ticks`, 0 without
    /// check-quorum, and never more than `follower_timeout_ticks - 2` (the
    /// followers' stickiness, less a tick of rounding on each side).
    fn lease_ticks(&self) -> u64 {
        if !self.cfg.check_quorum {
            return 0;
        }
        self.cfg.read_lease_ticks.min(self.cfg.follower_timeout_ticks.saturating_sub(2))
    }

    /// Advances this node's clocks by one tick: the leader's lease clock,
    /// and the ticks since it last heard from a leader.
    pub(crate) fn tick_clocks(&mut self) {
        self.since_leader = self.since_leader.saturating_add(1);
        if let Role::Leader(leader) = &mut self.role {
            leader.lease.clock += 1;
        }
    }

    /// Records that a leader of the current term was heard from (its
    /// AppendEntries or snapshot was accepted).
    pub(crate) fn heard_from_leader(&mut self) {
        self.since_leader = 0;
    }

    /// Whether this node refuses votes and pre-votes (except for a
    /// leadership transfer) because it heard from a leader, or (re)started,
    /// less than `follower_timeout_ticks` ago. Only with check-quorum.
    pub(crate) fn lease_stickiness(&self) -> bool {
        self.cfg.check_quorum && self.since_leader < self.cfg.follower_timeout_ticks
    }

    /// (Leader) starts a new read round and returns its number; remembers
    /// the tick it is sent at, for the lease.
    pub(crate) fn start_read_round(&mut self) -> u64 {
        let lease_ticks = self.lease_ticks();
        let Role::Leader(leader) = &mut self.role else { return 0 };
        leader.round += 1;
        let lease = &mut leader.lease;
        if lease_ticks > 0 && !lease.given_up {
            let clock = lease.clock;
            // Rounds whose lease would already be over are of no use.
            while lease.unconfirmed.front().is_some_and(|&(_, sent)| sent + lease_ticks <= clock) {
                lease.unconfirmed.pop_front();
            }
            if lease.unconfirmed.back().is_none_or(|&(_, sent)| sent < clock) {
                lease.unconfirmed.push_back((leader.round, clock));
            }
        }
        leader.round
    }

    /// (Leader) extends the lease from the newest round a quorum has
    /// acknowledged (the leader counts itself for every round it sent).
    pub(crate) fn advance_lease(&mut self) {
        let Role::Leader(leader) = &self.role else { return };
        let Some(&(oldest, _)) = leader.lease.unconfirmed.front() else { return };
        // Cheap filter (this runs on every append response): nothing can
        // be confirmed while no follower echoed the oldest waiting round,
        // unless this leader decides alone.
        let quorum = self.membership.quorum();
        if !quorum.is_sole_voter(&self.id) && leader.peers.values().all(|p| p.acked_round < oldest) {
            return;
        }
        let acked = quorum.committed_index(|id| {
            if *id == self.id {
                Some(leader.round)
            } else {
                leader.peers.get(id).map(|p| p.acked_round)
            }
        });
        let lease_ticks = self.lease_ticks();
        let Role::Leader(leader) = &mut self.role else { return };
        let lease = &mut leader.lease;
        while let Some(&(round, sent)) = lease.unconfirmed.front() {
            if round > acked {
                break;
            }
            lease.unconfirmed.pop_front();
            lease.until = lease.until.max(sent + lease_ticks);
        }
    }

    /// (Leader) gives the lease up for the rest of the term: a leadership
    /// transfer started (the TimeoutNow it ends with lets its target's
    /// election skip the voters' stickiness).
    pub(crate) fn give_up_lease(&mut self) {
        if let Role::Leader(leader) = &mut self.role {
            if !leader.lease.given_up {
                tracing::debug!(id = %self.id, term = self.hard.term, "leadership hand-off: no lease reads for the rest of this term");
            }
            leader.lease = Lease { given_up: true, clock: leader.lease.clock, ..Lease::default() };
        }
    }

    /// Whether a lease read may be answered now: this node leads, leases
    /// are on, it committed an entry of its term, and a quorum confirmed a
    /// round sent less than the lease ago (and, since no transfer started
    /// in this term, see [`Core::give_up_lease`]).
    pub(crate) fn lease_holds(&self) -> bool {
        let Role::Leader(leader) = &self.role else { return false };
        self.lease_ticks() > 0 && self.commit >= leader.term_start && leader.lease.clock < leader.lease.until
    }

    /// Ticks this leader's read lease still holds for: `None` when not
    /// leader, `Some(0)` when lease reads would take a ReadIndex round now
    /// (no quorum confirmed a recent round, no commit in this term yet, a
    /// transfer started in this term, or leases off). For metrics.
    pub fn lease_remaining_ticks(&self) -> Option<u64> {
        let Role::Leader(leader) = &self.role else { return None };
        Some(if self.lease_holds() { leader.lease.until - leader.lease.clock } else { 0 })
    }

    /// Answers read `id` at the commit index if the lease holds; returns
    /// whether it did.
    pub(crate) fn read_under_lease(&mut self, id: u64) -> bool {
        if !self.lease_holds() {
            return false;
        }
        self.ready.reads.push(ReadState { id, index: self.commit });
        true
    }
}

#[cfg(test)]
mod tests;
