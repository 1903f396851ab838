//! Simulated per-node storage. What the driver writes is queued; it becomes
//! durable only when its simulated fsync completes, in submission order. A
//! crash discards every write whose sync has not completed, together with
//! the messages that were waiting for it.

use std::collections::VecDeque;

use crate::core::Message;
use crate::types::{HardState, Log};

/// One queued write: the durable part of a `Ready`.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    pub(crate) hard_state: Option<HardState>,
    pub(crate) truncate_from: Option<u64>,
    pub(crate) entries: Vec<Log>,
    /// Sent once the write is durable.
    pub(crate) persisted_messages: Vec<Message>,
    /// Simulated time at which the sync completes.
    pub(crate) done_at: u64,
}

/// A node's disk: durable state plus writes still being synced.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    /// Durable term and vote.
    pub(crate) hard: HardState,
    /// Durable log, contiguous from index 1.
    pub(crate) log: Vec<Log>,
    /// Writes submitted but not yet synced, oldest first.
    pub(crate) pending: VecDeque<PendingWrite>,
}

impl Storage {
    /// Term of the durable entry at `index` (0 for index 0).
    pub(crate) fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.log.get(index as usize - 1).map(|e| e.term)
    }

    /// Last durable index.
    pub(crate) fn last_index(&self) -> u64 {
        self.log.len() as u64
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
    pub(crate) fn complete_oldest(&mut self) -> Option<Result<PendingWrite, String>> {
        let write = self.pending.pop_front()?;
        Some(self.make_durable(&write).map(|()| write))
    }

    fn make_durable(&mut self, write: &PendingWrite) -> Result<(), String> {
        if let Some(hs) = &write.hard_state {
            if hs.term < self.hard.term {
                return Err(format!("durable term goes back from {} to {}", self.hard.term, hs.term));
            }
            if hs.term == self.hard.term && self.hard.vote.is_some() && hs.vote != self.hard.vote {
                return Err(format!(
                    "durable vote in term {} changes from {:?} to {:?}",
                    hs.term, self.hard.vote, hs.vote
                ));
            }
            self.hard = hs.clone();
        }
        if let Some(from) = write.truncate_from {
            let keep = from.saturating_sub(1) as usize;
            self.log.truncate(keep.min(self.log.len()));
        }
        for e in &write.entries {
            let expected = self.last_index() + 1;
            if e.index != expected {
                return Err(format!("write leaves a hole: expected index {expected}, got {}", e.index));
            }
            if e.term < self.log.last().map_or(0, |l| l.term) {
                return Err(format!("durable log term decreases at index {}", e.index));
            }
            self.log.push(e.clone());
        }
        Ok(())
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
        PendingWrite { hard_state: None, truncate_from, entries, persisted_messages: Vec::new(), done_at }
    }

    #[test]
    fn writes_become_durable_in_order_and_crash_loses_the_rest() {
        let mut s = Storage::default();
        let e = |i, t| Log::new(i, t, LogType::Command, "");
        s.pending.push_back(write(vec![e(1, 1), e(2, 1)], None, 5));
        assert_eq!(s.completion_time(0, 2), 5, "cannot overtake the earlier sync");
        s.pending.push_back(write(vec![e(2, 2)], Some(2), 7));
        assert!(s.complete_oldest().is_some_and(|r| r.is_ok()));
        assert_eq!(s.last_index(), 2);
        assert_eq!(s.crash(), 1);
        assert_eq!(s.term_at(2), Some(1), "the unsynced overwrite was lost");
    }

    #[test]
    fn holes_are_reported() {
        let mut s = Storage::default();
        s.pending.push_back(write(vec![Log::new(3, 1, LogType::Command, "")], None, 1));
        assert!(s.complete_oldest().is_some_and(|r| r.is_err()));
    }
}
