//! The leader's read lease, published for the handle, so that a lease read
//! on the leader ([`Raft::read`](crate::Raft::read) with
//! [`ReadPolicy::Lease`](crate::ReadPolicy::Lease)) is answered by its
//! caller alone: no request to the main task, no channel, no wake-up.
//!
//! The core decides the lease (`core/lease.rs`); the main task mirrors it
//! here after every step of the core, *before* it sends any message that
//! step produced (`Node::process_ready`). It publishes two things:
//! - the instant of the monotonic clock at which the lease runs out (the
//!   instant the core's lease clock would reach the lease's end tick, see
//!   `TickClock::instant_after`), or none while the core would not answer
//!   a read from its lease (not leader, no quorum-confirmed round recent
//!   enough, no commit in this term yet, a transfer started this term,
//!   leases off, or the node stopped);
//! - the leader's commit index, the read point.
//!
//! # Why a read served from here is linearizable
//! It is the core's own argument (`core/lease.rs`): until the published
//! instant no other leader can have been elected, whatever this node
//! learned since, because a quorum's stickiness outlasts it. The two ways
//! around stickiness are closed by publishing first: the TimeoutNow of a
//! leadership transfer or of a leaving leader's hand-off is produced by a
//! core step that also ends the lease, and the main task withdraws the
//! published lease before it routes that step's messages. The read point
//! covers every write acknowledged before the read began: a write is
//! acknowledged after this node applied it, and the commit index that
//! made it applicable was published before the entries were handed to the
//! state machine (the channels between the tasks order the two). Entries
//! of earlier terms are covered because the lease needs a commit in this
//! term, and the caller still waits until its FSM applied the read point
//! (NuRaft #662: a new leader never serves state its FSM has not reached).
//!
//! A reader loads the instant first and the commit index second; the main
//! task stores them in the opposite order, so a reader that sees a lease
//! also sees a commit index at least as new as the one published with it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// The lease as last published by the main task.
#[derive(Debug)]
pub(crate) struct PublishedLease {
    /// Instants are kept as nanoseconds after this one.
    base: Instant,
    /// Nanoseconds after `base` at which the lease runs out; 0: no lease.
    until_nanos: AtomicU64,
    /// The commit index published with it (the read point).
    commit: AtomicU64,
}

impl PublishedLease {
    /// No lease; instants are measured from `base`, which must not be
    /// after any instant later published.
    pub(crate) fn new(base: Instant) -> Self {
        Self { base, until_nanos: AtomicU64::new(0), commit: AtomicU64::new(0) }
    }

    /// (Main task) publishes the lease: it holds until `until` (none: no
    /// lease), and reads are answered at `commit`. Stores only what
    /// changed: readers poll these words.
    pub(crate) fn publish(&self, until: Option<Instant>, commit: u64) {
        if self.commit.load(Ordering::Relaxed) != commit {
            self.commit.store(commit, Ordering::Release);
        }
        // A lease ending at `base` (0) is over for every reader: no lease.
        let nanos = until.map_or(0, |at| self.nanos_of(at));
        if self.until_nanos.load(Ordering::Relaxed) != nanos {
            self.until_nanos.store(nanos, Ordering::Release);
        }
    }

    /// (Main task) withdraws the lease (the node stops).
    pub(crate) fn withdraw(&self) {
        self.until_nanos.store(0, Ordering::Release);
    }

    /// The read point if the lease holds at `now`.
    pub(crate) fn read_point(&self, now: Instant) -> Option<u64> {
        let until = self.until_nanos.load(Ordering::Acquire);
        if until == 0 || self.nanos_of(now) >= until {
            return None;
        }
        Some(self.commit.load(Ordering::Acquire))
    }

    fn nanos_of(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_published_lease_answers_until_its_instant_and_not_at_it() {
        let lease = PublishedLease::new(Instant::now());
        assert_eq!(lease.read_point(Instant::now()), None, "no lease before one is published");
        let until = Instant::now() + Duration::from_millis(40);
        lease.publish(Some(until), 7);
        assert_eq!(lease.read_point(Instant::now()), Some(7));
        tokio::time::advance(Duration::from_millis(39)).await;
        assert_eq!(lease.read_point(Instant::now()), Some(7));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(lease.read_point(Instant::now()), None, "the lease is over at its instant");
    }

    #[tokio::test(start_paused = true)]
    async fn a_withdrawn_or_unpublished_lease_answers_nothing_and_commits_move_the_read_point() {
        let lease = PublishedLease::new(Instant::now());
        let until = Instant::now() + Duration::from_secs(1);
        lease.publish(Some(until), 3);
        lease.publish(Some(until), 9);
        assert_eq!(lease.read_point(Instant::now()), Some(9), "the newest commit index is the read point");
        lease.publish(None, 9);
        assert_eq!(lease.read_point(Instant::now()), None);
        lease.publish(Some(until), 9);
        lease.withdraw();
        assert_eq!(lease.read_point(Instant::now()), None);
        // A lease ending at the base instant is over already.
        let at_base = PublishedLease::new(Instant::now());
        at_base.publish(Some(Instant::now()), 1);
        assert_eq!(at_base.read_point(Instant::now()), None);
    }
}
