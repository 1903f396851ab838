//! Writes waiting for room under the leader's uncommitted-bytes limit
//! ([`Config::max_uncommitted_bytes`](crate::Config::max_uncommitted_bytes)).
//!
//! When the core refuses a proposal with [`Refusal::UncommittedLimit`], the
//! writes are held here, in order, instead of failing: later writes queue
//! behind them, so the log keeps the order the callers submitted them in.
//! They are proposed again when the commit index advances (commits free
//! room) or the role changes (a node that no longer leads refuses them with
//! the usual error), as many at a time as fit. A write still held at its
//! deadline is answered [`Error::EnqueueTimeout`]: it never entered the log.
//! Nothing polls: a retry happens only after an event moved the commit
//! index or the role.

use super::clients::Proposed;
use super::*;

/// The writes waiting for room.
pub(super) struct Room<R> {
    /// Writes refused for lack of room, oldest first.
    pub(super) held: VecDeque<Proposed<R>>,
    /// Their payload bytes.
    pub(super) held_bytes: u64,
    /// Commit index, term and role when the core last refused: nothing is
    /// retried until one of them changes.
    refused_at: Option<(u64, u64, RaftState)>,
    /// How many held writes timed out before room was made.
    pub(super) timed_out: u64,
}

impl<R> Default for Room<R> {
    fn default() -> Self {
        Self { held: VecDeque::new(), held_bytes: 0, refused_at: None, timed_out: 0 }
    }
}

impl<R> Room<R> {
    fn push(&mut self, p: Proposed<R>) {
        self.held_bytes += p.data.len() as u64;
        self.held.push_back(p);
    }

    fn pop(&mut self) -> Option<Proposed<R>> {
        let p = self.held.pop_front()?;
        self.held_bytes = self.held_bytes.saturating_sub(p.data.len() as u64);
        Some(p)
    }

    /// Puts a batch taken with `pop` back in front, in its order.
    fn put_back(&mut self, batch: Vec<Proposed<R>>) {
        for p in batch.into_iter().rev() {
            self.held_bytes += p.data.len() as u64;
            self.held.push_front(p);
        }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Whether writes are waiting for room: new writes queue behind them.
    pub(super) fn writes_held(&self) -> bool {
        !self.room.held.is_empty()
    }

    /// Holds a refused batch (after what is already held) and remembers
    /// when, so it is retried only after the commit index or role moved.
    pub(super) fn hold(&mut self, batch: Vec<Proposed<R>>, uncommitted: usize, limit: usize) {
        if self.room.held.is_empty() {
            tracing::debug!(
                uncommitted,
                limit,
                writes = batch.len(),
                "uncommitted-bytes limit reached; writes wait for commits to make room"
            );
        }
        self.hold_behind(batch);
        self.room.refused_at = Some(self.room_mark());
    }

    /// Queues a batch behind the writes already held (order is kept even
    /// when the core would have room for it).
    pub(super) fn hold_behind(&mut self, batch: Vec<Proposed<R>>) {
        for p in batch {
            if let Some(at) = p.deadline {
                self.track_deadline(at);
            }
            self.room.push(p);
        }
    }

    /// Something other than a commit may have made room (the limit was
    /// reloaded): the next retry tries.
    pub(super) fn room_may_have_grown(&mut self) {
        self.room.refused_at = None;
    }

    /// Proposes what fits of the writes just held, at once.
    pub(super) fn retry_held_now(&mut self) {
        self.room.refused_at = None;
        self.retry_held();
    }

    /// What a retry waits to change.
    fn room_mark(&self) -> (u64, u64, RaftState) {
        (self.core.commit_index(), self.core.term(), self.core.state())
    }

    /// Proposes held writes, oldest first, as many as the core accepts, if
    /// the commit index or role changed since the last refusal.
    pub(super) fn retry_held(&mut self) {
        if self.room.held.is_empty() || self.room.refused_at == Some(self.room_mark()) {
            return;
        }
        self.room.refused_at = None;
        let mut take = self.room.held.len().min(super::clients::MAX_PROPOSAL_BATCH);
        while !self.room.held.is_empty() && take > 0 {
            let n = take.min(self.room.held.len());
            let mut batch: Vec<Proposed<R>> = (0..n).filter_map(|_| self.room.pop()).collect();
            self.fail_held_expired(&mut batch);
            if batch.is_empty() {
                continue;
            }
            match self.propose_now(batch) {
                Ok(()) => {}
                Err((batch, ..)) if batch.len() > 1 => {
                    // Part of it may fit: put it back and try half.
                    self.room.put_back(batch);
                    take = n / 2;
                }
                Err((batch, _, _)) => {
                    self.room.put_back(batch);
                    self.room.refused_at = Some(self.room_mark());
                    return;
                }
            }
        }
        if !self.room.held.is_empty() {
            self.room.refused_at = Some(self.room_mark());
        }
    }

    /// Answers [`Error::EnqueueTimeout`] to held writes in `batch` whose
    /// deadline passed.
    fn fail_held_expired(&mut self, batch: &mut Vec<Proposed<R>>) {
        let now = tokio::time::Instant::now();
        let expired = |p: &Proposed<R>| p.deadline.is_some_and(|d| d <= now);
        if !batch.iter().any(expired) {
            return;
        }
        let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().partition(expired);
        *batch = live;
        self.room.timed_out += expired.len() as u64;
        for p in expired {
            p.waiter.fail(Error::EnqueueTimeout);
        }
    }

    /// The deadline timer fired: answers [`Error::EnqueueTimeout`] to held
    /// writes past their deadline and returns the earliest deadline left.
    pub(super) fn expire_held(&mut self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        if self.room.held.is_empty() {
            return None;
        }
        let mut next: Option<tokio::time::Instant> = None;
        let mut live = VecDeque::with_capacity(self.room.held.len());
        let mut expired = 0u64;
        for p in std::mem::take(&mut self.room.held) {
            match p.deadline {
                Some(at) if at <= now => {
                    self.room.held_bytes = self.room.held_bytes.saturating_sub(p.data.len() as u64);
                    expired += 1;
                    p.waiter.fail(Error::EnqueueTimeout);
                }
                Some(at) => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    live.push_back(p);
                }
                None => live.push_back(p),
            }
        }
        self.room.held = live;
        if expired > 0 {
            self.room.timed_out += expired;
            tracing::warn!(
                count = expired,
                "writes timed out waiting for room under max_uncommitted_bytes (EnqueueTimeout): \
                 followers are not acknowledging; check their health or raise the limit"
            );
        }
        next
    }

    /// Fails every held write with `err` (shutdown, storage failure).
    pub(super) fn fail_held(&mut self, err: impl Fn() -> Error) {
        while let Some(p) = self.room.pop() {
            p.waiter.fail(err());
        }
    }
}
