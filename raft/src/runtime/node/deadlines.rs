//! Callers' deadlines for the main task: a write whose deadline passes
//! before its entry is committed is answered [`Error::Timeout`] here.
//!
//! One timer serves every pending write (the main loop re-arms it only when
//! the earliest deadline moves). The alternative, a timer per
//! [`Raft::apply`](crate::Raft::apply) call, registers and removes an entry
//! in the runtime's shared timer wheel on every write, under a lock the
//! clients contend for: about a tenth of the CPU of a write-heavy load.

use super::clients::Proposed;
use super::*;

impl<R: Send + 'static> Node<R> {
    /// Makes sure the timer fires by `at`.
    pub(super) fn track_deadline(&mut self, at: tokio::time::Instant) {
        if self.clients.next_deadline.is_none_or(|next| at < next) {
            self.clients.next_deadline = Some(at);
        }
    }

    /// Answers [`Error::Timeout`] to the writes in `batch` whose caller has
    /// already given up (they waited in the queue too long), so they are
    /// not proposed.
    pub(super) fn drop_expired(&mut self, batch: &mut Vec<Proposed<R>>) {
        if batch.iter().all(|p| p.deadline.is_none()) {
            return;
        }
        let now = tokio::time::Instant::now();
        let expired = |p: &Proposed<R>| p.deadline.is_some_and(|d| d <= now);
        if !batch.iter().any(expired) {
            return;
        }
        let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().partition(expired);
        *batch = live;
        for p in expired {
            p.waiter.fail(Error::Timeout);
        }
    }

    /// The timer fired: answers [`Error::Timeout`] to every pending write
    /// past its deadline (its entry stays in the log and may still be
    /// committed and applied), ends the promotions past theirs, and
    /// re-arms for the earliest one left.
    pub(super) fn expire_waiters(&mut self) {
        self.advance_promotions();
        let now = tokio::time::Instant::now();
        let mut expired = Vec::new();
        let mut next: Option<tokio::time::Instant> = None;
        for (index, p) in &self.clients.waiters {
            match p.deadline {
                Some(at) if at <= now => expired.push(*index),
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        if let Some(at) = self.next_promotion_deadline() {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(at) = self.expire_held(now) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        self.clients.next_deadline = next;
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "writes timed out before commit");
        }
        for index in expired {
            if let Some(p) = self.clients.waiters.remove(&index) {
                p.waiter.fail(Error::Timeout);
            }
        }
    }
}
