//! [`RaftLog`]: the core's view of the replicated log.
//!
//! The core knows the shape of the whole log after the last compaction
//! point (each entry's term, kept as runs of equal terms, and each entry's
//! size, kept as a running total so the bytes of any range cost O(1)), but
//! holds entry payloads only for a bounded *window* at the log's end: every
//! entry not yet durable, plus the newest durable entries up to a byte
//! budget ([`CoreConfig::max_window_bytes`](super::CoreConfig)). Older
//! payloads stay in the log store; the core asks its driver to read them
//! ([`Ready::fetches`](super::Ready), [`Ready::apply_from_store`](super::Ready)).
//!
//! Sizes are counted as [`entry_bytes`]: an entry's data plus
//! [`ENTRY_OVERHEAD`] for its fields, the same unit as the AppendEntries
//! byte budget. Metadata costs 8 bytes per entry (the running total) plus 16
//! bytes per run of equal terms.
//!
//! Entries up to `snapshot_index` have been compacted; only their last
//! index and term are remembered.

use std::collections::VecDeque;

use super::error::InconsistentState;
use crate::transport::ENTRY_OVERHEAD;
use crate::types::{Log, LogEntryMeta};

/// What an entry counts for against an AppendEntries byte budget: its data
/// plus [`ENTRY_OVERHEAD`] for the fields and framing around it (no
/// encoding needed).
pub(crate) fn entry_bytes(e: &Log) -> usize {
    e.data.len().saturating_add(ENTRY_OVERHEAD)
}

/// [`entry_bytes`] of an entry known by its metadata.
fn meta_bytes(m: &LogEntryMeta) -> u64 {
    m.size.saturating_add(ENTRY_OVERHEAD as u64)
}

/// The log: metadata for every entry after the compaction point, payloads
/// for the window at its end.
///
/// Invariants: `cum.len()` entries follow `snapshot_index`; `runs` is
/// ascending by first index and strictly ascending by term, its first run
/// starts at `snapshot_index + 1` and it is empty exactly when the log is;
/// `window` holds contiguous entries ending at `last_index()`.
#[derive(Debug, Default)]
pub(crate) struct RaftLog {
    snapshot_index: u64,
    snapshot_term: u64,
    /// Runs of equal terms: (first index, term).
    runs: VecDeque<(u64, u64)>,
    /// Running total of entry bytes: `cum[i]` covers the entries up to
    /// `snapshot_index + 1 + i` (counted from an arbitrary origin).
    cum: VecDeque<u64>,
    /// The running total at `snapshot_index`.
    base: u64,
    /// The payloads held: the newest entries, ending at `last_index()`.
    window: VecDeque<Log>,
}

impl RaftLog {
    /// A log whose compacted prefix ends at `snapshot_index` (of
    /// `snapshot_term`), followed by `entries`, all held in the window.
    /// Entries that do not follow on contiguously are rejected with a
    /// description of the gap.
    #[cfg(test)]
    pub(crate) fn new(
        snapshot_index: u64,
        snapshot_term: u64,
        entries: Vec<Log>,
    ) -> Result<Self, InconsistentState> {
        Self::with_meta(snapshot_index, snapshot_term, &[], entries)
    }

    /// A log whose compacted prefix ends at `snapshot_index`, followed by
    /// entries known only by their metadata (`meta`, payloads in the
    /// store), then by `entries` (payloads held). Both must be contiguous,
    /// `entries` continuing `meta`, with terms never decreasing; anything
    /// else is rejected. Items at or below `snapshot_index` are skipped.
    pub(crate) fn with_meta(
        snapshot_index: u64,
        snapshot_term: u64,
        meta: &[LogEntryMeta],
        entries: Vec<Log>,
    ) -> Result<Self, InconsistentState> {
        let mut log = Self {
            snapshot_index,
            snapshot_term,
            runs: VecDeque::new(),
            cum: VecDeque::with_capacity(meta.len() + entries.len()),
            base: 0,
            window: VecDeque::with_capacity(entries.len()),
        };
        for m in meta {
            if m.index <= snapshot_index {
                continue;
            }
            log.check_next(m.index, m.term)?;
            log.push_meta(m.index, m.term, meta_bytes(m));
        }
        for e in entries {
            if e.index <= snapshot_index {
                continue;
            }
            log.check_next(e.index, e.term)?;
            log.push_meta(e.index, e.term, entry_bytes(&e) as u64);
            log.window.push_back(e);
        }
        Ok(log)
    }

    /// Whether an entry (`index`, `term`) may follow the log as it is.
    fn check_next(&self, index: u64, term: u64) -> Result<(), InconsistentState> {
        if index != self.last_index() + 1 {
            return Err(InconsistentState::LogGap { expected: self.last_index() + 1, found: index });
        }
        if term < self.last_term() {
            return Err(InconsistentState::TermDecreases { index });
        }
        Ok(())
    }

    /// Records the metadata of the entry after the last one. The window is
    /// the caller's business.
    fn push_meta(&mut self, index: u64, term: u64, bytes: u64) {
        if self.runs.back().is_none_or(|&(_, t)| t != term) {
            self.runs.push_back((index, term));
        }
        let total = self.cum.back().copied().unwrap_or(self.base).saturating_add(bytes);
        self.cum.push_back(total);
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snapshot_index + self.cum.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.runs.back().map_or(self.snapshot_term, |&(_, t)| t)
    }

    /// First index whose payload is held (`last_index() + 1` if none is).
    pub(crate) fn window_start(&self) -> u64 {
        self.last_index() + 1 - self.window.len() as u64
    }

    /// The running total of entry bytes through `index` (clamped to the
    /// log).
    fn cum_at(&self, index: u64) -> u64 {
        if index <= self.snapshot_index {
            return self.base;
        }
        let i = (index.min(self.last_index()) - self.snapshot_index - 1) as usize;
        self.cum.get(i).copied().unwrap_or(self.base)
    }

    /// Entry bytes of the entries in `lo..=hi`, clamped to the log.
    pub(crate) fn bytes(&self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(self.snapshot_index + 1);
        let hi = hi.min(self.last_index());
        if lo > hi {
            return 0;
        }
        self.cum_at(hi) - self.cum_at(lo - 1)
    }

    /// Entry bytes of the payloads held in the window.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.bytes(self.window_start(), self.last_index())
    }

    /// Drops payloads from the window's front while they are durable
    /// (index <= `persisted`) and the durable part of the window holds more
    /// than `max_bytes`. Entries not yet durable are never dropped.
    pub(crate) fn evict(&mut self, persisted: u64, max_bytes: usize) {
        let max = max_bytes as u64;
        while let Some(front) = self.window.front().map(|e| e.index) {
            if front > persisted || self.bytes(front, persisted) <= max {
                break;
            }
            self.window.pop_front();
        }
    }

    /// The last index of a read starting at `lo`: as far as `cap`, at most
    /// `max` entries and `max_bytes` entry bytes by the metadata, but
    /// always `lo` itself. `lo` must be in the log.
    pub(crate) fn read_end(&self, lo: u64, cap: u64, max: usize, max_bytes: usize) -> u64 {
        let cap = cap.min(self.last_index()).min(lo.saturating_add(max.max(1) as u64 - 1));
        if cap <= lo {
            return lo;
        }
        let start = self.cum_at(lo - 1);
        let budget = max_bytes as u64;
        // Binary search for the last hi in lo..=cap with bytes(lo, hi) <= budget.
        let (mut good, mut bad) = (lo, cap + 1);
        if self.cum_at(lo) - start > budget {
            return lo;
        }
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if self.cum_at(mid) - start <= budget {
                good = mid;
            } else {
                bad = mid;
            }
        }
        good
    }

    /// `lo..=hi` cut into consecutive reads, each ending where
    /// [`RaftLog::read_end`] ends it.
    pub(crate) fn read_ranges(&self, lo: u64, hi: u64, max: usize, max_bytes: usize) -> Vec<(u64, u64)> {
        let mut ranges = Vec::new();
        let mut next = lo.max(1);
        while next <= hi {
            let end = self.read_end(next, hi, max, max_bytes).clamp(next, hi);
            ranges.push((next, end));
            next = end + 1;
        }
        ranges
    }

    /// The term of the entry at `index`, if known (index 0 has term 0).
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index() {
            return None;
        }
        self.run_at(index).map(|r| self.runs[r].1)
    }

    /// Position in `runs` of the run containing `index` (in the log).
    fn run_at(&self, index: u64) -> Option<usize> {
        self.runs.partition_point(|&(start, _)| start <= index).checked_sub(1)
    }

    /// The entry at `index`, if its payload is held.
    pub(crate) fn entry(&self, index: u64) -> Option<&Log> {
        if index < self.window_start() {
            return None;
        }
        self.window.get((index - self.window_start()) as usize)
    }

    /// Clones of the held entries in `lo..=hi` (clamped to the window), at
    /// most `max` of them.
    pub(crate) fn slice(&self, lo: u64, hi: u64, max: usize) -> Vec<Log> {
        let start_index = self.window_start();
        let lo = lo.max(start_index);
        let hi = hi.min(self.last_index());
        if lo > hi {
            return Vec::new();
        }
        let start = (lo - start_index) as usize;
        let count = ((hi - lo + 1) as usize).min(max);
        self.window.range(start..start + count).cloned().collect()
    }

    /// Clones of the held entries in `lo..=hi` (clamped to the window): at
    /// most `max` of them, and no more than fit in `max_bytes` counting each
    /// as [`entry_bytes`], except that the first entry is always included
    /// (an entry larger than the budget goes alone), so every call that has
    /// something to send makes progress.
    pub(crate) fn slice_bytes(&self, lo: u64, hi: u64, max: usize, max_bytes: usize) -> Vec<Log> {
        let start_index = self.window_start();
        let lo = lo.max(start_index);
        let hi = hi.min(self.last_index());
        if lo > hi || max == 0 {
            return Vec::new();
        }
        // The same cut as a read of the store would make (one rule for both).
        let end = self.read_end(lo, hi, max, max_bytes);
        self.window.range((lo - start_index) as usize..=(end - start_index) as usize).cloned().collect()
    }

    /// Appends entries that continue the log (their payloads join the
    /// window).
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = Log>) {
        for e in entries {
            debug_assert_eq!(e.index, self.last_index() + 1, "append must be contiguous");
            self.push_meta(e.index, e.term, entry_bytes(&e) as u64);
            self.window.push_back(e);
        }
    }

    /// Removes every entry with index >= `index`.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        let index = index.max(self.snapshot_index + 1);
        if index > self.last_index() {
            return;
        }
        let window_start = self.window_start();
        if index <= window_start {
            self.window.clear();
        } else {
            self.window.truncate((index - window_start) as usize);
        }
        self.cum.truncate((index - self.snapshot_index - 1) as usize);
        while self.runs.back().is_some_and(|&(start, _)| start >= index) {
            self.runs.pop_back();
        }
    }

    /// Forgets entries up to and including `index`, remembering its term.
    /// If `index` is past the end, the log becomes empty after it.
    ///
    /// The entries are dropped in place: the buffers keep their capacity,
    /// so the log does not regrow (reallocate, copy and fault in fresh
    /// pages) after every compaction.
    pub(crate) fn compact_to(&mut self, index: u64, term: u64) {
        if index <= self.snapshot_index {
            return;
        }
        if index >= self.last_index() {
            self.base = self.cum_at(self.last_index());
            self.cum.clear();
            self.runs.clear();
            self.window.clear();
        } else {
            self.base = self.cum_at(index);
            self.cum.drain(..(index - self.snapshot_index) as usize);
            while self.runs.get(1).is_some_and(|&(start, _)| start <= index + 1) {
                self.runs.pop_front();
            }
            if let Some(first) = self.runs.front_mut() {
                first.0 = first.0.max(index + 1);
            }
            while self.window.front().is_some_and(|e| e.index <= index) {
                self.window.pop_front();
            }
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// The last index holding `term`, if any entry has it.
    pub(crate) fn last_index_of_term(&self, term: u64) -> Option<u64> {
        if term == 0 {
            return None;
        }
        let r = self.runs.partition_point(|&(_, t)| t < term);
        if self.runs.get(r).is_some_and(|&(_, t)| t == term) {
            return Some(self.runs.get(r + 1).map_or(self.last_index(), |&(start, _)| start - 1));
        }
        if self.runs.front().is_some_and(|&(_, t)| t < term) {
            // Entries of lower terms follow the snapshot: the term is absent.
            return None;
        }
        (self.snapshot_term == term).then_some(self.snapshot_index)
    }

    /// The first index of the run of `term` that contains `index`.
    pub(crate) fn first_index_of_term_at(&self, index: u64) -> u64 {
        if index <= self.snapshot_index || index > self.last_index() {
            return index;
        }
        self.run_at(index).map_or(index, |r| self.runs[r].0)
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

    fn meta(index: u64, term: u64, size: u64) -> LogEntryMeta {
        LogEntryMeta { index, term, log_type: LogType::Command, size }
    }

    /// A log of `terms` whose entries carry 100 bytes each, with payloads
    /// held from `held_from` on.
    fn windowed(terms: &[u64], held_from: u64) -> RaftLog {
        let (meta_part, held): (Vec<_>, Vec<_>) =
            terms.iter().enumerate().map(|(i, &t)| (i as u64 + 1, t)).partition(|&(i, _)| i < held_from);
        let meta_part: Vec<_> = meta_part.into_iter().map(|(i, t)| meta(i, t, 100)).collect();
        let held = held.into_iter().map(|(i, t)| Log::new(i, t, LogType::Command, vec![0u8; 100])).collect();
        RaftLog::with_meta(0, 0, &meta_part, held).expect("valid log")
    }

    #[test]
    fn metadata_answers_for_entries_outside_the_window() {
        let l = windowed(&[1, 1, 2, 2, 2, 3, 5, 5], 7);
        assert_eq!((l.window_start(), l.last_index(), l.last_term()), (7, 8, 5));
        assert!(l.entry(6).is_none(), "payload not held");
        assert_eq!(l.entry(7).map(|e| e.index), Some(7));
        assert_eq!(
            (l.term(1), l.term(3), l.term(5), l.term(6), l.term(9)),
            (Some(1), Some(2), Some(2), Some(3), None)
        );
        assert_eq!(l.last_index_of_term(2), Some(5));
        assert_eq!(l.last_index_of_term(1), Some(2));
        assert_eq!(l.last_index_of_term(4), None);
        assert_eq!(l.last_index_of_term(5), Some(8));
        assert_eq!(l.first_index_of_term_at(5), 3);
        assert_eq!(l.first_index_of_term_at(6), 6);
        assert_eq!(l.first_index_of_term_at(8), 7);
        assert!(l.is_up_to_date(8, 5) && !l.is_up_to_date(20, 4));
        let each = (100 + ENTRY_OVERHEAD) as u64;
        assert_eq!(l.bytes(2, 4), 3 * each);
        assert_eq!(l.held_bytes(), 2 * each);
        assert!(l.slice(1, 8, 10).iter().all(|e| e.index >= 7), "slices come from the window only");
    }

    #[test]
    fn metadata_survives_truncation_and_compaction() {
        let mut l = windowed(&[1, 1, 2, 2, 2, 3, 5, 5], 7);
        l.truncate_from(5);
        assert_eq!((l.last_index(), l.last_term(), l.window_start()), (4, 2, 5), "window emptied");
        assert_eq!(l.term(5), None);
        l.append(vec![Log::new(5, 6, LogType::Command, vec![1u8; 10])]);
        assert_eq!((l.term(5), l.last_term(), l.window_start()), (Some(6), 6, 5));
        assert_eq!(l.last_index_of_term(2), Some(4));
        l.compact_to(3, 2);
        assert_eq!((l.term(3), l.term(4), l.term(2)), (Some(2), Some(2), None));
        assert_eq!(l.first_index_of_term_at(4), 4, "a run starts after the compaction point");
        assert_eq!(l.last_index_of_term(1), None);
        assert_eq!(l.last_index_of_term(2), Some(4));
        assert_eq!(l.bytes(1, 5), (100 + ENTRY_OVERHEAD + 10 + ENTRY_OVERHEAD) as u64);
        l.compact_to(9, 7);
        assert_eq!((l.last_index(), l.last_term(), l.window_start(), l.held_bytes()), (9, 7, 10, 0));
        l.append(vec![Log::new(10, 7, LogType::Command, "x")]);
        assert_eq!((l.term(10), l.bytes(10, 10)), (Some(7), 1 + ENTRY_OVERHEAD as u64));
    }

    #[test]
    fn eviction_keeps_unpersisted_entries_and_the_newest_within_budget() {
        let mut l = sized(&[100; 10]);
        let each = 100 + ENTRY_OVERHEAD;
        l.evict(6, 2 * each);
        assert_eq!(l.window_start(), 5, "entries 5 and 6 fill the budget; 7.. are not durable");
        assert_eq!(l.held_bytes(), 6 * each as u64);
        l.evict(6, 2 * each - 1);
        assert_eq!(l.window_start(), 6);
        l.evict(3, 0);
        assert_eq!(l.window_start(), 6, "nothing durable to drop before the window");
        l.evict(10, 0);
        assert_eq!((l.window_start(), l.held_bytes()), (11, 0));
        assert_eq!(l.term(4), Some(1), "metadata stays");
    }

    #[test]
    fn read_ranges_cut_by_each_entrys_size_not_by_the_previous_ones() {
        // Tiny entries, then large ones: every read stays within the budget
        // (the large ones one by one), and the ranges cover the span in order.
        let mut sizes = vec![1; 10];
        sizes.extend([4000; 6]);
        let l = sized(&sizes);
        let budget = 2 * (4000 + ENTRY_OVERHEAD);
        let ranges = l.read_ranges(1, 16, 64, budget);
        assert_eq!(ranges, vec![(1, 11), (12, 13), (14, 15), (16, 16)]);
        for (lo, hi) in &ranges {
            assert!(l.bytes(*lo, *hi) as usize <= budget || lo == hi, "{lo}..={hi} over the budget");
        }
        assert_eq!(
            l.read_ranges(3, 12, 4, budget),
            vec![(3, 6), (7, 10), (11, 12)],
            "at most 4 entries a read"
        );
        assert_eq!(l.read_ranges(5, 4, 4, budget), Vec::new(), "an empty span needs no read");
    }

    #[test]
    fn read_end_fits_count_and_byte_limits() {
        let l = sized(&[100, 100, 5000, 100, 100, 100]);
        let each = 100 + ENTRY_OVERHEAD;
        assert_eq!(l.read_end(1, 6, 64, 2 * each), 2);
        assert_eq!(l.read_end(1, 6, 64, 2 * each - 1), 1);
        assert_eq!(l.read_end(3, 6, 64, 10), 3, "one entry over the budget still goes");
        assert_eq!(l.read_end(4, 6, 64, usize::MAX), 6);
        assert_eq!(l.read_end(4, 5, 64, usize::MAX), 5, "capped");
        assert_eq!(l.read_end(4, 6, 2, usize::MAX), 5, "count limit");
    }

    #[test]
    fn inconsistent_metadata_is_rejected() {
        let gap = RaftLog::with_meta(0, 0, &[meta(1, 1, 0)], vec![Log::new(3, 1, LogType::Command, "")]);
        assert!(matches!(gap, Err(InconsistentState::LogGap { expected: 2, found: 3 })));
        let down = RaftLog::with_meta(0, 0, &[meta(1, 2, 0)], vec![Log::new(2, 1, LogType::Command, "")]);
        assert!(matches!(down, Err(InconsistentState::TermDecreases { index: 2 })));
        let meta_gap = RaftLog::with_meta(5, 1, &[meta(7, 1, 0)], Vec::new());
        assert!(matches!(meta_gap, Err(InconsistentState::LogGap { expected: 6, found: 7 })));
    }
}
