//! Simulated per-node storage. What the driver writes to the log is queued;
//! it becomes durable only when its simulated fsync completes, in submission
//! order. A crash discards every write whose sync has not completed,
//! together with the messages that were waiting for it.
//!
//! Snapshots live in a separate store: a snapshot is durable once its own
//! simulated write completes (the driver then records it here with
//! [`Storage::store_snapshot`]); only the newest one matters. Deleting log
//! entries a snapshot covers is an ordinary queued log write
//! ([`Compaction`]), so a crash can leave a durable snapshot next to a log
//! that still holds the entries it replaced. [`Storage::recover`] is the
//! restart rule: the newest snapshot, plus the durable log after it only if
//! that log continues the snapshot.
//!
//! The durable log itself, and what a write does to it, are the core
//! harness's [`MemLog`] and [`DurableWrite`], shared with the core's
//! scenario tests.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use super::kv::KvState;
pub(crate) use crate::core::harness::Compaction;
use crate::core::harness::{DurableWrite, MemLog};
use crate::types::Log;

/// A snapshot of a node's state machine.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Last log index covered.
    pub(crate) index: u64,
    /// Term of that entry.
    pub(crate) term: u64,
    /// The state after applying the log up to `index` (including the
    /// configuration as of `index`).
    pub(crate) state: KvState,
}

/// One queued write: the durable part of a `Ready` and when its simulated
/// fsync completes.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    /// What is written.
    pub(crate) write: DurableWrite,
    /// Simulated time at which the sync completes.
    pub(crate) done_at: u64,
}

impl PendingWrite {
    /// A write whose completion time is not set yet.
    pub(crate) fn of(write: DurableWrite) -> Self {
        Self { write, done_at: 0 }
    }
}

/// What a node restarts from.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) snapshot: Option<Rc<Snapshot>>,
    /// Durable log entries after the snapshot.
    pub(crate) entries: Vec<Log>,
}

/// A node's disk: the durable log (a [`MemLog`], which `Storage`
/// dereferences to), the newest durable snapshot, and writes still being
/// synced.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    /// Durable term, vote and log.
    pub(crate) disk: MemLog,
    /// The newest durable snapshot.
    pub(crate) snapshot: Option<Rc<Snapshot>>,
    /// Writes submitted but not yet synced, oldest first.
    pub(crate) pending: VecDeque<PendingWrite>,
}

impl Deref for Storage {
    type Target = MemLog;

    fn deref(&self) -> &MemLog {
        &self.disk
    }
}

impl DerefMut for Storage {
    fn deref_mut(&mut self) -> &mut MemLog {
        &mut self.disk
    }
}

impl Storage {
    /// Index and term of the newest durable snapshot ((0, 0) if none).
    pub(crate) fn snapshot_point(&self) -> (u64, u64) {
        self.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term))
    }

    /// Whether the log continues the newest snapshot, so that a restart may
    /// use the entries after it.
    fn log_continues_snapshot(&self) -> bool {
        let (index, term) = self.snapshot_point();
        match self.log_term(index) {
            Some(t) => t == term,
            // The log ends before the snapshot: nothing after it to use.
            None => self.last_index() < index,
        }
    }

    /// The term a restart would see at `index`: entries the newest
    /// snapshot covers count as present with the term `committed` records
    /// for them (term of index `i` at `committed[i - 1]`).
    pub(crate) fn term_at(&self, index: u64, committed: &[u64]) -> Option<u64> {
        let (snap_index, snap_term) = self.snapshot_point();
        if index == 0 {
            Some(0)
        } else if index == snap_index {
            Some(snap_term)
        } else if index < snap_index {
            committed.get(index as usize - 1).copied()
        } else if self.log_continues_snapshot() {
            self.log_term(index)
        } else {
            None
        }
    }

    /// Records a snapshot that is now durable; only the newest is kept.
    pub(crate) fn store_snapshot(&mut self, snapshot: Rc<Snapshot>) {
        if self.snapshot.as_ref().is_none_or(|s| s.index < snapshot.index) {
            self.snapshot = Some(snapshot);
        }
    }

    /// The restart rule: the newest snapshot plus the durable log after it.
    /// A log that does not continue the snapshot (a crash interrupted the
    /// deletion of the log after a snapshot install: it conflicts with the
    /// snapshot or ends before it) is deleted first, as a driver must do
    /// before it appends after the snapshot. A gap between the snapshot and
    /// the log is an error.
    pub(crate) fn recover(&mut self) -> Result<Recovered, String> {
        let (index, term) = self.snapshot_point();
        if self.log_start > index && !self.log.is_empty() {
            return Err(format!(
                "the durable log starts after {} but the newest snapshot ends at {index}",
                self.log_start
            ));
        }
        if !self.log_continues_snapshot() || self.last_index() < index {
            self.log.clear();
            self.log_start = index;
            self.log_start_term = term;
        }
        let entries = self.log.iter().filter(|e| e.index > index).cloned().collect();
        Ok(Recovered { snapshot: self.snapshot.clone(), entries })
    }

    /// When a write submitted now, taking `delay`, completes: never before
    /// the writes ahead of it (syncs complete in order).
    pub(crate) fn completion_time(&self, now: u64, delay: u64) -> u64 {
        let after = self.pending.back().map_or(0, |w| w.done_at);
        (now + delay).max(after)
    }

    /// Makes the oldest pending write durable and returns it. Errors describe
    /// writes that would corrupt the log (a hole, a decreasing term or vote
    /// change within a term).
    pub(crate) fn complete_oldest(&mut self) -> Option<Result<DurableWrite, String>> {
        let pending = self.pending.pop_front()?;
        Some(self.disk.write(&pending.write).map(|()| pending.write))
    }

    /// Loses everything not yet durable. Returns how many writes were lost.
    pub(crate) fn crash(&mut self) -> usize {
        let lost = self.pending.len();
        self.pending.clear();
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogType;

    fn write(entries: Vec<Log>, truncate_from: Option<u64>, done_at: u64) -> PendingWrite {
        PendingWrite { write: DurableWrite { truncate_from, entries, ..DurableWrite::default() }, done_at }
    }

    fn e(i: u64, t: u64) -> Log {
        Log::new(i, t, LogType::Command, "")
    }

    fn snapshot(index: u64, term: u64) -> Rc<Snapshot> {
        Rc::new(Snapshot { index, term, state: KvState::default() })
    }

    #[test]
    fn writes_become_durable_in_order_and_crash_loses_the_rest() {
        let mut s = Storage::default();
        s.pending.push_back(write(vec![e(1, 1), e(2, 1)], None, 5));
        assert_eq!(s.completion_time(0, 2), 5, "cannot overtake the earlier sync");
        s.pending.push_back(write(vec![e(2, 2)], Some(2), 7));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        assert_eq!(s.last_index(), 2);
        assert_eq!(s.crash(), 1);
        assert_eq!(s.term_at(2, &[]), Some(1), "the unsynced overwrite was lost");
    }

    #[test]
    fn holes_are_reported() {
        let mut s = Storage::default();
        s.pending.push_back(write(vec![e(3, 1)], None, 1));
        assert!(s.complete_oldest().is_some_and(|r| r.is_err()));
    }

    #[test]
    fn compaction_keeps_the_log_contiguous() {
        let mut s = Storage::default();
        s.pending.push_back(write(vec![e(1, 1), e(2, 1), e(3, 2), e(4, 2)], None, 1));
        let mut w = write(vec![e(5, 3)], None, 2);
        w.write.compact = Some(Compaction { through: 2, term: 1, discard_all: false });
        s.pending.push_back(w);
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        assert_eq!((s.log_start, s.last_index(), s.log_term(2), s.log_term(1)), (2, 5, Some(1), None));
        s.store_snapshot(snapshot(3, 2));
        let r = s.recover().expect("consistent");
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(s.term_at(1, &[1, 1, 2]), Some(1), "covered by the snapshot");
    }

    #[test]
    fn a_log_that_conflicts_with_the_snapshot_is_ignored_on_restart() {
        let mut s = Storage::default();
        s.pending.push_back(write(vec![e(1, 1), e(2, 1), e(3, 1)], None, 1));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        // The snapshot is durable; the deletion of the conflicting log is not.
        s.store_snapshot(snapshot(2, 2));
        assert_eq!(s.term_at(3, &[1, 2]), None);
        let r = s.recover().expect("consistent");
        assert!(r.entries.is_empty());
        assert_eq!((s.log_start, s.last_index()), (2, 2), "the conflicting log was deleted");
        s.pending.push_back(write(vec![e(3, 2)], None, 2));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        assert_eq!(s.recover().expect("consistent").entries, vec![e(3, 2)]);
    }

    #[test]
    fn a_log_that_ends_before_the_snapshot_is_deleted_on_restart() {
        let mut s = Storage::default();
        s.pending.push_back(write(vec![e(1, 1)], None, 1));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        s.store_snapshot(snapshot(5, 2));
        assert!(s.recover().expect("consistent").entries.is_empty());
        s.pending.push_back(write(vec![e(6, 2)], None, 2));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()), "no hole after the snapshot");
    }
}
