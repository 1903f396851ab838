//! The in-memory index of the log shared by the writer thread and readers:
//! which segment and offset holds each entry with its term and type (see
//! the `entries` module: no payloads), the visible index range, a cache of
//! the newest entries bounded in count and bytes, and the store's fail-stop
//! flag.
//!
//! Locking: the writer appends bytes past a segment's published `end`
//! without holding the lock and publishes them (write lock) only after they
//! are fsync'd, so readers (read lock, held across their `pread`) only ever
//! see durable entries. Truncation and compaction change files under the
//! write lock.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use raft::{Log, LogEntryMeta, StorageError};

use crate::entries::EntryIndex;
use crate::record;

/// One segment as the index sees it.
#[derive(Debug)]
pub(crate) struct SegmentRef {
    /// Index of the segment's first record (from its header).
    pub first_index: u64,
    /// Where the file lives.
    pub path: PathBuf,
    /// Read-write handle, used with positional I/O only.
    pub file: Arc<File>,
    /// Invariant: entry `first_index + i` is at position `i`; offsets
    /// ascending.
    pub entries: EntryIndex,
    /// Byte offset past the last published record; the file is never
    /// shorter than this.
    pub end: u64,
}

impl SegmentRef {
    /// One past the index of the last record in the segment.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }

    /// Byte range of the records for indexes `from..to` (both inside the segment).
    fn byte_range(&self, from: u64, to: u64) -> Range<u64> {
        let start = self.entries.offset((from - self.first_index) as usize);
        let to = (to - self.first_index) as usize;
        let end = if to < self.entries.len() { self.entries.offset(to) } else { self.end };
        start..end
    }
}

/// The index proper.
#[derive(Debug)]
pub(crate) struct LogView {
    /// Invariant: sorted by `first_index`, contiguous (each starts where the
    /// previous ends), and empty exactly when the log is empty.
    pub segments: Vec<SegmentRef>,
    /// First visible index (the watermark may hide older records of the
    /// first segment); 0 when empty.
    pub first: u64,
    /// Last index; 0 when empty.
    pub last: u64,
    /// Invariant: the newest entries, contiguous, ending at `last`; at most
    /// `cache_cap` of them and `cache_max_bytes` of payload.
    cache: VecDeque<Log>,
    cache_cap: usize,
    cache_max_bytes: usize,
    /// Payload bytes in `cache`.
    cache_bytes: usize,
}

impl LogView {
    /// An index over `segments` showing `first..=last`.
    /// The cache keeps up to `cache_cap` of the newest entries and
    /// `cache_max_bytes` of their payloads.
    pub fn new(
        segments: Vec<SegmentRef>,
        first: u64,
        last: u64,
        cache_cap: usize,
        cache_max_bytes: usize,
    ) -> Self {
        Self { segments, first, last, cache: VecDeque::new(), cache_cap, cache_max_bytes, cache_bytes: 0 }
    }

    /// Payload bytes held by the cache of newest entries.
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Heap bytes held by the index of entries (every segment's
    /// [`EntryIndex`]), not counting the cache.
    pub fn index_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.entries.heap_bytes()).sum::<usize>()
            + self.segments.capacity() * std::mem::size_of::<SegmentRef>()
    }

    fn cache_pop_front(&mut self) {
        if let Some(log) = self.cache.pop_front() {
            self.cache_bytes -= log.data.len();
        }
    }

    fn cache_pop_back(&mut self) {
        if let Some(log) = self.cache.pop_back() {
            self.cache_bytes -= log.data.len();
        }
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether `index` is in the log.
    pub fn contains(&self, index: u64) -> bool {
        !self.is_empty() && index >= self.first && index <= self.last
    }

    fn cache_first(&self) -> Option<u64> {
        self.cache.front().map(|l| l.index)
    }

    /// The cached entry at `index`, if it is cached.
    pub fn cached(&self, index: u64) -> Option<Log> {
        let first = self.cache_first()?;
        if index < first {
            return None;
        }
        self.cache.get((index - first) as usize).cloned()
    }

    /// The cached entries for `range`, if all of them are cached.
    pub fn cached_range(&self, range: &Range<u64>) -> Option<Vec<Log>> {
        let first = self.cache_first()?;
        if range.start < first || range.end > self.last + 1 {
            return None;
        }
        let from = (range.start - first) as usize;
        let to = (range.end - first) as usize;
        Some(self.cache.range(from..to).cloned().collect())
    }

    /// Records newly durable entries (contiguous with `last`).
    pub fn push(&mut self, logs: &[Log]) {
        let (Some(head), Some(tail)) = (logs.first(), logs.last()) else { return };
        if self.first == 0 {
            self.first = head.index;
        }
        self.last = tail.index;
        if self.cache_cap == 0 || self.cache_max_bytes == 0 {
            return;
        }
        // Only the newest entries that fit both bounds can stay: skip the rest.
        let mut skip = logs.len().saturating_sub(self.cache_cap);
        let mut bytes = 0usize;
        for (i, log) in logs.iter().enumerate().skip(skip).rev() {
            bytes = bytes.saturating_add(log.data.len());
            if bytes > self.cache_max_bytes {
                skip = i + 1;
                break;
            }
        }
        if skip > 0 {
            // Entries before the newly cached ones would break contiguity.
            self.cache.clear();
            self.cache_bytes = 0;
        }
        for log in &logs[skip..] {
            self.cache_bytes += log.data.len();
            self.cache.push_back(log.clone());
        }
        while self.cache.len() > self.cache_cap || self.cache_bytes > self.cache_max_bytes {
            self.cache_pop_front();
        }
    }

    /// Forgets entries from `from` on (suffix truncation).
    pub fn truncate_from(&mut self, from: u64) {
        self.last = from.saturating_sub(1);
        while self.cache.back().is_some_and(|l| l.index >= from) {
            self.cache_pop_back();
        }
        if self.segments.is_empty() {
            self.first = 0;
            self.last = 0;
        }
    }

    /// Forgets entries before `first` (compaction).
    pub fn compact_to(&mut self, first: u64) {
        self.first = first;
        while self.cache.front().is_some_and(|l| l.index < first) {
            self.cache_pop_front();
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.segments.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.first = 0;
        self.last = 0;
    }

    /// Position of the segment holding `index` (which must be at least the
    /// first segment's first index).
    pub fn segment_of(&self, index: u64) -> usize {
        self.segments.partition_point(|s| s.first_index <= index).saturating_sub(1)
    }

    /// The metadata of the entries in `range` (inside `first..=last`), from
    /// the index alone: no I/O.
    pub fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut next = range.start;
        while next < range.end {
            let seg = &self.segments[self.segment_of(next)];
            let to = range.end.min(seg.end_index());
            if to <= next || next < seg.first_index {
                return Err(StorageError::LogNotFound(next));
            }
            let base = seg.first_index;
            seg.entries.meta(base, seg.end, (next - base) as usize..(to - base) as usize, &mut out);
            next = to;
        }
        Ok(out)
    }

    /// Reads `range` (inside `first..=last`) from disk: one positional read
    /// per segment, then decoding in order. Blocking.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut next = range.start;
        while next < range.end {
            let seg = &self.segments[self.segment_of(next)];
            let to = range.end.min(seg.end_index());
            if to <= next {
                return Err(StorageError::LogNotFound(next));
            }
            let bytes = seg.byte_range(next, to);
            let mut buf = vec![0u8; (bytes.end - bytes.start) as usize];
            seg.file
                .read_exact_at(&mut buf, bytes.start)
                .map_err(|e| StorageError::io(format!("read {}", seg.path.display()), e))?;
            let buf = Bytes::from(buf);
            let mut pos = 0usize;
            for expect in next..to {
                let (log, len) = record::decode(&buf.slice(pos..)).map_err(|e| StorageError::Corrupt {
                    path: seg.path.display().to_string(),
                    offset: bytes.start + pos as u64,
                    reason: e.to_string(),
                })?;
                if log.index != expect {
                    return Err(StorageError::Corrupt {
                        path: seg.path.display().to_string(),
                        offset: bytes.start + pos as u64,
                        reason: format!("found entry {} where {expect} belongs", log.index),
                    });
                }
                out.push(log);
                pos += len;
            }
            next = to;
        }
        Ok(out)
    }
}

/// What the writer thread and the readers share.
#[derive(Debug)]
pub(crate) struct Shared {
    view: RwLock<LogView>,
    failed: OnceLock<String>,
}

impl Shared {
    /// Shares `view`.
    pub fn new(view: LogView) -> Self {
        Self { view: RwLock::new(view), failed: OnceLock::new() }
    }

    /// `Err(Failed)` once the store has failed.
    pub fn check(&self) -> Result<(), StorageError> {
        match self.failed.get() {
            Some(why) => Err(StorageError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store failed (fail-stop); the first reason sticks.
    pub fn fail(&self, why: String) {
        if self.failed.set(why.clone()).is_ok() {
            tracing::error!(reason = %why, "file store failed; refusing every further call");
        }
    }

    /// Read access to the index (after the fail-stop check).
    pub fn read(&self) -> Result<RwLockReadGuard<'_, LogView>, StorageError> {
        self.check()?;
        self.view.read().map_err(|_| StorageError::Failed("log index lock poisoned".into()))
    }

    /// Write access to the index (after the fail-stop check).
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, LogView>, StorageError> {
        self.check()?;
        self.view.write().map_err(|_| StorageError::Failed("log index lock poisoned".into()))
    }
}
