//! [`RaftLog`]: the core's in-memory view of the replicated log.
//!
//! The core keeps the entries after the last compaction point in memory (they
//! are `Bytes`, so clones are reference counts), which lets it build
//! AppendEntries without touching storage. Entries up to `snapshot_index`
//! have been compacted; only their last index and term are remembered.

use std::collections::VecDeque;

use super::error::InconsistentState;
use crate::transport::ENTRY_OVERHEAD;
use crate::types::Log;

/// What an entry counts for against an AppendEntries byte budget: its data
/// plus [`ENTRY_OVERHEAD`] for the fields and framing around it (no
/// encoding needed).
pub(crate) fn entry_bytes(e: &Log) -> usize {
    e.data.len().saturating_add(ENTRY_OVERHEAD)
}

/// The in-memory log.
///
/// Invariant: `entries[i].index == snapshot_index + 1 + i`, and terms never
/// decrease along the log.
#[derive(Debug, Default)]
pub(crate) struct RaftLog {
    snapshot_index: u64,
    snapshot_term: u64,
    entries: VecDeque<Log>,
}

impl RaftLog {
    /// A log whose compacted prefix ends at `snapshot_index` (of
    /// `snapshot_term`), followed by `entries`. Entries that do not follow on
    /// contiguously are rejected with a description of the gap.
    pub(crate) fn new(
        snapshot_index: u64,
        snapshot_term: u64,
        entries: Vec<Log>,
    ) -> Result<Self, InconsistentState> {
        let mut log = Self { snapshot_index, snapshot_term, entries: VecDeque::with_capacity(entries.len()) };
        for e in entries {
            if e.index <= snapshot_index {
                continue;
            }
            if e.index != log.last_index() + 1 {
                return Err(InconsistentState::LogGap { expected: log.last_index() + 1, found: e.index });
            }
            if e.term < log.last_term() {
                return Err(InconsistentState::TermDecreases { index: e.index });
            }
            log.entries.push_back(e);
        }
        Ok(log)
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term of the entry at `index`, if known (index 0 has term 0).
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&Log> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// Clones of the entries in `lo..=hi` (clamped to what is present),
    /// at most `max` of them.
    pub(crate) fn slice(&self, lo: u64, hi: u64, max: usize) -> Vec<Log> {
        let lo = lo.max(self.snapshot_index + 1);
        let hi = hi.min(self.last_index());
        if lo > hi {
            return Vec::new();
        }
        let start = (lo - self.snapshot_index - 1) as usize;
        let count = ((hi - lo + 1) as usize).min(max);
        self.entries.range(start..start + count).cloned().collect()
    }

    /// Clones of the entries in `lo..=hi` (clamped to what is present): at
    /// most `max` of them, and no more than fit in `max_bytes` counting each
    /// as [`entry_bytes`], except that the first entry is always included
    /// (an entry larger than the budget goes alone), so every call that has
    /// something to send makes progress.
    pub(crate) fn slice_bytes(&self, lo: u64, hi: u64, max: usize, max_bytes: usize) -> Vec<Log> {
        let lo = lo.max(self.snapshot_index + 1);
        let hi = hi.min(self.last_index());
        if lo > hi || max == 0 {
            return Vec::new();
        }
        let start = (lo - self.snapshot_index - 1) as usize;
        let count = ((hi - lo + 1) as usize).min(max);
        let mut out = Vec::with_capacity(count.min(64));
        let mut used = 0usize;
        for e in self.entries.range(start..start + count) {
            let size = entry_bytes(e);
            if !out.is_empty() && used.saturating_add(size) > max_bytes {
                break;
            }
            used = used.saturating_add(size);
            out.push(e.clone());
        }
        out
    }

    /// Appends entries that continue the log.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = Log>) {
        for e in entries {
            debug_assert_eq!(e.index, self.last_index() + 1, "append must be contiguous");
            self.entries.push_back(e);
        }
    }

    /// Removes every entry with index >= `index`.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        if index <= self.snapshot_index {
            self.entries.clear();
            return;
        }
        let keep = (index - self.snapshot_index - 1) as usize;
        self.entries.truncate(keep);
    }

    /// Forgets entries up to and including `index`, remembering its term.
    /// If `index` is past the end, the log becomes empty after it.
    ///
    /// The entries are dropped in place: the buffer keeps its capacity, so
    /// the log does not regrow (reallocate, copy and fault in fresh pages)
    /// after every compaction.
    pub(crate) fn compact_to(&mut self, index: u64, term: u64) {
        if index <= self.snapshot_index {
            return;
        }
        if index >= self.last_index() {
            self.entries.clear();
        } else {
            let drop = (index - self.snapshot_index) as usize;
            self.entries.drain(..drop);
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// The last index holding `term`, if any entry has it.
    pub(crate) fn last_index_of_term(&self, term: u64) -> Option<u64> {
        if term == 0 {
            return None;
        }
        for e in self.entries.iter().rev() {
            if e.term == term {
                return Some(e.index);
            }
            if e.term < term {
                return None;
            }
        }
        (self.snapshot_term == term).then_some(self.snapshot_index)
    }

    /// The first index of the run of `term` that contains `index`.
    pub(crate) fn first_index_of_term_at(&self, index: u64) -> u64 {
        let Some(term) = self.term(index) else { return index };
        let mut i = index;
        while i > self.snapshot_index + 1 {
            match self.term(i - 1) {
                Some(t) if t == term => i -= 1,
                _ => break,
            }
        }
        i
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as
    /// up to date as this one (Raft §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogType;

    fn log(terms: &[u64]) -> RaftLog {
        let entries =
            terms.iter().enumerate().map(|(i, &t)| Log::new(i as u64 + 1, t, LogType::Command, "")).collect();
        RaftLog::new(0, 0, entries).expect("valid log")
    }

    #[test]
    fn indexes_and_terms() {
        let l = log(&[1, 1, 2, 3, 3]);
        assert_eq!(l.last_index(), 5);
        assert_eq!(l.last_term(), 3);
        assert_eq!(l.term(0), Some(0));
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(6), None);
        assert_eq!(l.last_index_of_term(1), Some(2));
        assert_eq!(l.last_index_of_term(4), None);
        assert_eq!(l.first_index_of_term_at(5), 4);
        assert_eq!(l.first_index_of_term_at(2), 1);
    }

    #[test]
    fn truncate_and_compact() {
        let mut l = log(&[1, 1, 2, 3, 3]);
        l.truncate_from(4);
        assert_eq!(l.last_index(), 3);
        l.compact_to(2, 1);
        assert_eq!(l.term(2), Some(1));
        assert!(l.entry(2).is_none());
        assert_eq!(l.slice(1, 10, 10).len(), 1);
        l.compact_to(10, 4);
        assert_eq!((l.last_index(), l.last_term()), (10, 4));
    }

    fn sized(sizes: &[usize]) -> RaftLog {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Log::new(i as u64 + 1, 1, LogType::Command, vec![i as u8; n]))
            .collect();
        RaftLog::new(0, 0, entries).expect("valid log")
    }

    fn indexes(entries: &[Log]) -> Vec<u64> {
        entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn byte_slice_respects_the_budget() {
        let l = sized(&[100, 100, 100, 100, 100]);
        let each = 100 + ENTRY_OVERHEAD;
        // Exactly three fit; one byte less and only two do.
        assert_eq!(indexes(&l.slice_bytes(1, 5, 64, 3 * each)), vec![1, 2, 3]);
        assert_eq!(indexes(&l.slice_bytes(1, 5, 64, 3 * each - 1)), vec![1, 2]);
        // The count limit still applies, and so does the range.
        assert_eq!(indexes(&l.slice_bytes(1, 5, 2, usize::MAX)), vec![1, 2]);
        assert_eq!(indexes(&l.slice_bytes(2, 4, 64, usize::MAX)), vec![2, 3, 4]);
        // A budget that fits everything returns everything.
        assert_eq!(l.slice_bytes(1, 5, 64, 5 * each).len(), 5);
        // The data comes back intact.
        assert_eq!(l.slice_bytes(3, 3, 64, usize::MAX)[0].data, vec![2u8; 100]);
    }

    #[test]
    fn byte_slice_always_takes_one_entry() {
        let l = sized(&[10, 5000, 10]);
        // An entry alone above the budget still goes, alone.
        assert_eq!(indexes(&l.slice_bytes(2, 3, 64, 100)), vec![2]);
        assert_eq!(indexes(&l.slice_bytes(1, 3, 64, 0)), vec![1]);
        // A small entry followed by one that does not fit: only the first.
        assert_eq!(indexes(&l.slice_bytes(1, 3, 64, 1000)), vec![1]);
        // Nothing to send: nothing.
        assert!(l.slice_bytes(4, 3, 64, 100).is_empty());
    }

    #[test]
    fn rejects_gaps() {
        let entries = vec![Log::new(1, 1, LogType::Command, ""), Log::new(3, 1, LogType::Command, "")];
        assert!(matches!(
            RaftLog::new(0, 0, entries),
            Err(InconsistentState::LogGap { expected: 2, found: 3 })
        ));
    }

    #[test]
    fn up_to_date_check() {
        let l = log(&[1, 2]);
        assert!(l.is_up_to_date(2, 2));
        assert!(l.is_up_to_date(1, 3));
        assert!(!l.is_up_to_date(5, 1));
        assert!(!l.is_up_to_date(1, 2));
    }
}
