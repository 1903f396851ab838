//! [`EntryIndex`]: what the store keeps in memory about each entry of one
//! segment, without its payload: where its record starts, its type, and its
//! term.
//!
//! Per entry: one `u64` (8 bytes) packing the record's byte offset in the
//! segment (low 62 bits) with the entry's type (top 2 bits). Terms are kept
//! as runs: 16 bytes (first position, term) per change of term within the
//! segment, so a segment whose entries share one term costs 16 bytes for all
//! of them. A payload's length is the distance to the next record's offset
//! (or to the segment's end) minus the record's fixed overhead, so it costs
//! nothing. Nothing here grows with payload size.

use std::ops::Range;

use raft::{LogEntryMeta, LogType, StorageError};

use crate::record::{FRAME_HEADER, PAYLOAD_FIXED};

/// Bits of a slot holding the record's offset.
const OFFSET_BITS: u32 = 62;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

fn type_code(t: LogType) -> u64 {
    match t {
        LogType::Command => 0,
        LogType::Noop => 1,
        LogType::Barrier => 2,
        LogType::Configuration => 3,
    }
}

fn code_type(code: u64) -> LogType {
    match code & 3 {
        0 => LogType::Command,
        1 => LogType::Noop,
        2 => LogType::Barrier,
        _ => LogType::Configuration,
    }
}

/// The payload-free index of the records of one segment, by position
/// (entry `first_index + i` of the segment is at position `i`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EntryIndex {
    /// Position `i`: the record's byte offset in the low 62 bits, the
    /// entry's type in the top 2. Invariant: offsets ascending.
    slots: Vec<u64>,
    /// Term runs: `(first position of the run, term)`. Invariant: positions
    /// strictly ascending, the first is 0 whenever `slots` is not empty,
    /// every position is below `slots.len()`, and neighbouring runs have
    /// different terms.
    runs: Vec<(u64, u64)>,
}

impl EntryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries it indexes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it indexes no entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds the next entry: its record starts at `offset`.
    pub fn push(&mut self, offset: u64, term: u64, log_type: LogType) -> Result<(), StorageError> {
        if offset > OFFSET_MASK {
            return Err(StorageError::Codec(format!(
                "record offset {offset} does not fit the log index (at most {OFFSET_MASK})"
            )));
        }
        let pos = self.slots.len() as u64;
        self.slots.push(offset | (type_code(log_type) << OFFSET_BITS));
        if self.runs.last().is_none_or(|&(_, t)| t != term) {
            self.runs.push((pos, term));
        }
        Ok(())
    }

    /// Appends every entry of `other` after the entries of `self`.
    pub fn append(&mut self, other: &EntryIndex) {
        let base = self.slots.len() as u64;
        self.slots.extend_from_slice(&other.slots);
        for &(pos, term) in &other.runs {
            if self.runs.last().is_none_or(|&(_, t)| t != term) {
                self.runs.push((base + pos, term));
            }
        }
    }

    /// Byte offset of the record at position `i` (`i < len()`).
    pub fn offset(&self, i: usize) -> u64 {
        self.slots[i] & OFFSET_MASK
    }

    /// Keeps only the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        self.slots.truncate(n);
        while self.runs.last().is_some_and(|&(pos, _)| pos >= n as u64) {
            self.runs.pop();
        }
    }

    /// Releases spare capacity (for a segment that no longer grows).
    pub fn shrink_to_fit(&mut self) {
        self.slots.shrink_to_fit();
        self.runs.shrink_to_fit();
    }

    /// Heap bytes held (capacity, not length): what the index costs.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
            + self.runs.capacity() * std::mem::size_of::<(u64, u64)>()
    }

    /// Appends to `out` the metadata of the entries at positions `range`
    /// (inside `0..len()`), the segment's first entry having index
    /// `first_index` and its last record ending at byte `end`.
    pub fn meta(&self, first_index: u64, end: u64, range: Range<usize>, out: &mut Vec<LogEntryMeta>) {
        if range.start >= range.end {
            return;
        }
        // The run holding `range.start`, then walk forward.
        let mut run = self.runs.partition_point(|&(pos, _)| pos <= range.start as u64).saturating_sub(1);
        for i in range {
            while self.runs.get(run + 1).is_some_and(|&(pos, _)| pos <= i as u64) {
                run += 1;
            }
            let term = self.runs.get(run).map_or(0, |&(_, t)| t);
            let slot = self.slots[i];
            let start = slot & OFFSET_MASK;
            let next = self.slots.get(i + 1).map_or(end, |s| s & OFFSET_MASK);
            let size = next.saturating_sub(start).saturating_sub((FRAME_HEADER + PAYLOAD_FIXED) as u64);
            out.push(LogEntryMeta {
                index: first_index + i as u64,
                term,
                log_type: code_type(slot >> OFFSET_BITS),
                size,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVERHEAD: u64 = (FRAME_HEADER + PAYLOAD_FIXED) as u64;

    /// An index of entries with the given (term, type, payload size), laid
    /// out from byte 32 like a segment; returns it and the end offset.
    fn build(entries: &[(u64, LogType, u64)]) -> (EntryIndex, u64) {
        let mut idx = EntryIndex::new();
        let mut at = 32;
        for &(term, t, size) in entries {
            idx.push(at, term, t).unwrap();
            at += OVERHEAD + size;
        }
        (idx, at)
    }

    fn all(idx: &EntryIndex, first: u64, end: u64) -> Vec<LogEntryMeta> {
        let mut out = Vec::new();
        idx.meta(first, end, 0..idx.len(), &mut out);
        out
    }

    #[test]
    fn meta_gives_term_type_and_payload_size() {
        use LogType::*;
        let spec =
            [(1, Configuration, 40), (1, Command, 0), (2, Noop, 0), (2, Barrier, 5), (5, Command, 1 << 20)];
        let (idx, end) = build(&spec);
        let got = all(&idx, 10, end);
        let want: Vec<LogEntryMeta> = spec
            .iter()
            .enumerate()
            .map(|(i, &(term, log_type, size))| LogEntryMeta { index: 10 + i as u64, term, log_type, size })
            .collect();
        assert_eq!(got, want);
        // A sub-range starting inside a later run.
        let mut part = Vec::new();
        idx.meta(10, end, 3..5, &mut part);
        assert_eq!(part, want[3..5]);
        assert_eq!(idx.runs.len(), 3, "one run per change of term");
    }

    #[test]
    fn truncate_and_append_keep_terms_right() {
        use LogType::*;
        let (mut idx, _) = build(&[(1, Command, 1), (1, Command, 1), (2, Command, 1), (3, Command, 1)]);
        idx.truncate(2);
        assert_eq!(idx.runs, vec![(0, 1)]);
        let end = idx.offset(1) + OVERHEAD + 1;
        let mut more = EntryIndex::new();
        more.push(end, 1, Noop).unwrap();
        more.push(end + OVERHEAD, 4, Command).unwrap();
        idx.append(&more);
        let got: Vec<u64> = all(&idx, 1, end + 2 * OVERHEAD + 7).iter().map(|m| m.term).collect();
        assert_eq!(got, vec![1, 1, 1, 4]);
        assert_eq!(idx.runs, vec![(0, 1), (3, 4)], "the appended run of term 1 merges");
        idx.truncate(0);
        assert!(idx.is_empty() && idx.runs.is_empty());
    }

    #[test]
    fn the_index_does_not_grow_with_payload_size() {
        let small: Vec<_> = (0..10_000).map(|i| (1 + i / 1000, LogType::Command, 10)).collect();
        let large: Vec<_> = (0..10_000).map(|i| (1 + i / 1000, LogType::Command, 1 << 20)).collect();
        let (mut a, _) = build(&small);
        let (mut b, end) = build(&large);
        a.shrink_to_fit();
        b.shrink_to_fit();
        assert_eq!(a.heap_bytes(), b.heap_bytes());
        assert_eq!(a.heap_bytes(), 10_000 * 8 + 10 * 16, "8 bytes per entry, 16 per term run");
        assert_eq!(all(&b, 1, end)[9_999].size, 1 << 20);
    }

    #[test]
    fn an_offset_too_large_is_refused() {
        let mut idx = EntryIndex::new();
        assert!(idx.push(1 << 62, 1, LogType::Command).is_err());
        assert!(idx.is_empty());
    }
}
