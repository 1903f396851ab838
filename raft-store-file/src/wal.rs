//! [`Wal`]: the writer's side of the log. Opening (recovery), appending a
//! sync group, suffix truncation, head compaction. Every method is blocking
//! and runs on the writer thread (or, for `open`, the blocking pool).
//!
//! Crash-safety rules kept here:
//! - A sync group is written with one positional write per segment and made
//!   durable with one fdatasync per segment touched; a segment is sealed
//!   (fsync'd) before the next one is created, so only the last segment can
//!   have an unsynced tail.
//! - Suffix truncation deletes later segments newest first, then shrinks
//!   the segment holding the new end: a crash part way leaves a shorter
//!   prefix, never a hole.
//! - Head compaction records the new first index in the watermark file
//!   *before* deleting whole segments below it, oldest first.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::{Log, StorageError};

use crate::entries::EntryIndex;
use crate::fsutil::{self, DirLock};
use crate::options::FileStoreOptions;
use crate::prealloc::Preparer;
use crate::record;
use crate::segment;
use crate::view::{LogView, SegmentRef, Shared};
use crate::watermark;

/// The log's files, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    opts: FileStoreOptions,
    shared: Arc<Shared>,
    /// The durable watermark (0 if never written).
    watermark: u64,
    /// Zero-fills the next segment ahead of need.
    preparer: Preparer,
    /// Whether the active (last) segment was preallocated: appending to it
    /// does not grow the file.
    active_prealloc: bool,
    /// Size of the latest preallocated segment taken (0: none yet since
    /// the log was opened, unless the active segment is one). While the
    /// active segment is preallocated, this is its size.
    last_prepared: u64,
    /// Held for as long as the log is open (declared last: dropped after
    /// the preparer has stopped writing in the directory).
    _lock: DirLock,
}

/// Bytes being appended to one segment.
struct Pending {
    /// A segment created by this append, published with it.
    created: Option<SegmentRef>,
    file: Arc<fs::File>,
    path: PathBuf,
    /// File offset where `buf` goes.
    base: u64,
    buf: Vec<u8>,
    /// The records in `buf`, offsets relative to the file.
    entries: EntryIndex,
    /// Whether the segment already holds records (it is then never left
    /// for a new one before at least one record of this group is in it,
    /// unless full).
    has_records: bool,
}

impl Pending {
    fn write_and_sync(&self) -> Result<(), StorageError> {
        let io = |op: &str, e| StorageError::io(format!("{op} {}", self.path.display()), e);
        self.file.write_all_at(&self.buf, self.base).map_err(|e| io("write", e))?;
        self.file.sync_data().map_err(|e| io("fdatasync", e))
    }
}

/// Bytes in a plain (not preallocated) active segment from which a
/// preallocated successor is prepared. Low, because the first one is small
/// ([`FIRST_PREALLOCATED_SIZE`]): a 1-client durable bench spent its first
/// seconds appending to the plain segment when this was 1 MiB (about 20%
/// fewer writes/s in a 4-second run).
const PLAIN_SEGMENT_PREPARE_AT: u64 = 64 << 10;

/// Size of a log's first preallocated segment: each next one is twice the
/// one before, up to `segment_size`.
/// A new log thus zero-fills in proportion to what it holds instead of a
/// whole `segment_size` at once, and the first preallocated segment is
/// ready within milliseconds, before the zero-filling of a large one
/// would compete with the log's own syncs for the disk.
const FIRST_PREALLOCATED_SIZE: u64 = 4 << 20;

fn io_err(op: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::io(format!("{op} {}", path.display()), e)
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, recovering from a crash:
    /// removes temporary files, truncates a torn tail of the last segment,
    /// refuses damage anywhere else, applies the watermark.
    pub fn open(dir: &Path, opts: FileStoreOptions) -> Result<(Self, Arc<Shared>), StorageError> {
        fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
        let lock = DirLock::acquire(dir)?;
        if fsutil::remove_tmp_entries(dir)? > 0 {
            fsutil::sync_dir(dir)?;
        }
        let watermark = watermark::read(dir)?;

        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
            let entry = entry.map_err(|e| io_err("list", dir, e))?;
            if let Some(first) = segment::parse_name(&entry.file_name().to_string_lossy()) {
                names.push((first, entry.path()));
            }
        }
        names.sort();

        let mut segments: Vec<SegmentRef> = Vec::with_capacity(names.len());
        let count = names.len();
        // One buffer for every segment, which is read a piece at a time:
        // opening uses about a megabyte whatever the segments' size.
        let mut buf = Vec::new();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("open", &path, e))?;
            let scan = segment::scan_file(&path, &file, first, &mut buf)?;
            if let Some(prev) = segments.last() {
                if prev.end_index() != first {
                    return Err(StorageError::Corrupt {
                        path: path.display().to_string(),
                        offset: 0,
                        reason: format!(
                            "segment starts at index {first} but the previous one ends before {}: \
                             entries are missing",
                            prev.end_index()
                        ),
                    });
                }
            }
            if let Some((offset, reason)) = &scan.torn {
                if !is_last {
                    return Err(StorageError::Corrupt {
                        path: path.display().to_string(),
                        offset: *offset,
                        reason: format!("damaged record in a sealed segment: {reason}"),
                    });
                }
                tracing::warn!(
                    path = %path.display(), offset, %reason,
                    "truncating the torn tail of the last log segment (written but never acknowledged)"
                );
                file.set_len(*offset).map_err(|e| io_err("truncate", &path, e))?;
                file.sync_all().map_err(|e| io_err("fsync", &path, e))?;
            }
            let mut entries = scan.entries;
            if !is_last {
                entries.shrink_to_fit();
            }
            segments.push(SegmentRef {
                first_index: scan.first_index,
                path,
                file: Arc::new(file),
                entries,
                end: scan.end,
            });
        }

        drop(buf);
        // Drop segments wholly below the watermark (a compaction that crashed
        // after recording the watermark), and everything if nothing is visible.
        let mut removed = false;
        while segments.first().is_some_and(|s| s.end_index() <= watermark) {
            let seg = segments.remove(0);
            fs::remove_file(&seg.path).map_err(|e| io_err("remove", &seg.path, e))?;
            removed = true;
        }
        let (mut first, mut last) = (0, 0);
        if let (Some(head), Some(tail)) = (segments.first(), segments.last()) {
            first = head.first_index.max(watermark);
            last = tail.end_index().saturating_sub(1);
        }
        if first == 0 || last < first {
            for seg in segments.drain(..).rev() {
                fs::remove_file(&seg.path).map_err(|e| io_err("remove", &seg.path, e))?;
                removed = true;
            }
            first = 0;
            last = 0;
        }
        if removed {
            fsutil::sync_dir(dir)?;
        }
        // Zeros after the last record of the active segment: it was
        // preallocated.
        let active_len = match segments.last() {
            Some(seg) => {
                Some((seg.file.metadata().map_err(|e| io_err("stat", &seg.path, e))?.len(), seg.end))
            }
            None => None,
        };
        let active_prealloc = active_len.is_some_and(|(len, end)| len > end);
        let last_prepared = match active_len {
            Some((len, _)) if active_prealloc => len,
            _ => 0,
        };
        tracing::info!(dir = %dir.display(), first, last, segments = segments.len(), "opened log");
        let shared =
            Arc::new(Shared::new(LogView::new(segments, first, last, opts.cache_entries, opts.cache_bytes)));
        let preparer = Preparer::new(dir);
        let wal = Self {
            dir: dir.to_owned(),
            opts,
            shared: shared.clone(),
            watermark,
            preparer,
            active_prealloc,
            last_prepared,
            _lock: lock,
        };
        Ok((wal, shared))
    }

    /// How preparing the next segment fares (failures, for the store's
    /// handle to report).
    pub(crate) fn prealloc_status(&self) -> Arc<crate::prealloc::PreallocStatus> {
        self.preparer.status()
    }

    /// The shared index.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// `(first, last)` index, both 0 when empty.
    pub fn bounds(&self) -> Result<(u64, u64), StorageError> {
        let v = self.shared.read()?;
        Ok((v.first, v.last))
    }

    /// Starts the segment for entries from `first_index`: the prepared,
    /// zero-filled file if one is ready, else a plain new file.
    fn new_segment(&mut self, first_index: u64) -> Result<Pending, StorageError> {
        let (path, file) = match self.preparer.take_ready() {
            Some(prepared) => {
                self.active_prealloc = true;
                self.last_prepared = prepared.size;
                segment::install(&self.dir, first_index, prepared)?
            }
            None => {
                self.active_prealloc = false;
                segment::create(&self.dir, first_index)?
            }
        };
        let file = Arc::new(file);
        let base = segment::HEADER_LEN as u64;
        Ok(Pending {
            created: Some(SegmentRef {
                first_index,
                path: path.clone(),
                file: file.clone(),
                entries: EntryIndex::new(),
                end: base,
            }),
            file,
            path,
            base,
            buf: Vec::new(),
            entries: EntryIndex::new(),
            has_records: false,
        })
    }

    /// Appends `entries` (contiguous, starting right after the last entry,
    /// or anywhere if the log is empty) as one sync group, durably, then
    /// makes them visible.
    pub fn append(&mut self, entries: &[Log]) -> Result<(), StorageError> {
        let Some(head) = entries.first() else { return Ok(()) };
        let group = head.index;
        let active = {
            let v = self.shared.read()?;
            v.segments.last().map(|s| Pending {
                created: None,
                file: s.file.clone(),
                path: s.path.clone(),
                base: s.end,
                buf: Vec::new(),
                entries: EntryIndex::new(),
                has_records: !s.entries.is_empty(),
            })
        };
        let mut cur = match active {
            // A plain segment holding records is sealed early for a ready
            // preallocated one: syncs get cheaper from this append on.
            Some(p) if !self.active_prealloc && p.has_records && self.preparer.is_ready() => {
                self.new_segment(group)?
            }
            Some(p) => p,
            None => {
                if self.watermark > group {
                    // The log is empty and restarts below the old watermark.
                    watermark::write(&self.dir, group)?;
                    self.watermark = group;
                }
                self.new_segment(group)?
            }
        };
        let mut limit = self.rollover_limit();
        let mut done = Vec::new();
        for log in entries {
            let len = record::encoded_len(log) as u64;
            let full = cur.base + cur.buf.len() as u64 + len > limit;
            if full && (cur.has_records || !cur.entries.is_empty()) {
                cur.write_and_sync()?;
                done.push(cur);
                cur = self.new_segment(log.index)?;
                limit = self.rollover_limit();
            }
            cur.entries.push(cur.base + cur.buf.len() as u64, log.term, log.log_type)?;
            record::encode(log, group, &mut cur.buf)?;
        }
        cur.write_and_sync()?;
        done.push(cur);

        let mut v = self.shared.write()?;
        for p in done {
            if let Some(seg) = p.created {
                // The segment before a new one is sealed: it no longer grows.
                if let Some(prev) = v.segments.last_mut() {
                    prev.entries.shrink_to_fit();
                }
                v.segments.push(seg);
            }
            if let Some(seg) = v.segments.last_mut() {
                seg.entries.append(&p.entries);
                seg.end = p.base + p.buf.len() as u64;
            }
        }
        v.push(entries);
        // Have the next segment zero-filled in time: once the active one
        // is half full, or, for a plain one (a new log's first segment),
        // once it holds a little data (a log that stays tiny never pays for
        // a preallocated segment; one that grows soon gets a small one).
        let end = v.segments.last().map_or(0, |s| s.end);
        drop(v);
        let due = if self.active_prealloc {
            end > self.active_capacity() / 2
        } else {
            end >= (self.opts.segment_size / 2).min(PLAIN_SEGMENT_PREPARE_AT)
        };
        if due {
            self.preparer.ensure_started(self.next_prepared_size());
        }
        Ok(())
    }

    /// Where the active segment is full. While preparing the next segment
    /// fails (a full disk), the active segment takes up to twice its
    /// capacity rather than roll over into a new file that needs fresh
    /// space at once.
    fn rollover_limit(&mut self) -> u64 {
        if self.preparer.failing() && !self.preparer.is_ready() {
            self.active_capacity().saturating_mul(2)
        } else {
            self.active_capacity()
        }
    }

    /// The size the active segment is filled up to before the next one
    /// starts: its file's size if it was preallocated, else `segment_size`.
    fn active_capacity(&self) -> u64 {
        if self.active_prealloc {
            self.last_prepared
        } else {
            self.opts.segment_size
        }
    }

    /// The size of the next segment to zero-fill: twice the latest
    /// preallocated one's, from [`FIRST_PREALLOCATED_SIZE`], at most
    /// `segment_size`.
    fn next_prepared_size(&self) -> u64 {
        let grown = match self.last_prepared {
            0 => FIRST_PREALLOCATED_SIZE,
            last => last.saturating_mul(2),
        };
        grown.min(self.opts.segment_size)
    }

    /// Deletes every entry from `from` on; `first < from <= last`.
    pub fn truncate_from(&mut self, from: u64) -> Result<(), StorageError> {
        let mut v = self.shared.write()?;
        let k = v.segment_of(from);
        let mut removed = false;
        while v.segments.len() > k + 1 {
            if let Some(seg) = v.segments.pop() {
                fs::remove_file(&seg.path).map_err(|e| io_err("remove", &seg.path, e))?;
                removed = true;
            }
        }
        if v.segments[k].first_index == from {
            if let Some(seg) = v.segments.pop() {
                fs::remove_file(&seg.path).map_err(|e| io_err("remove", &seg.path, e))?;
                removed = true;
            }
        }
        if removed {
            fsutil::sync_dir(&self.dir)?;
        }
        if let Some(seg) = v.segments.last_mut() {
            if seg.end_index() > from {
                let keep = (from - seg.first_index) as usize;
                let offset = seg.entries.offset(keep);
                seg.file.set_len(offset).map_err(|e| io_err("truncate", &seg.path, e))?;
                seg.file.sync_all().map_err(|e| io_err("fsync", &seg.path, e))?;
                seg.entries.truncate(keep);
                seg.end = offset;
            }
        }
        v.truncate_from(from);
        tracing::debug!(from, "truncated log suffix");
        Ok(())
    }

    /// Makes `first` the first index; `first < first <= last`.
    pub fn compact_to(&mut self, first: u64) -> Result<(), StorageError> {
        watermark::write(&self.dir, first)?;
        self.watermark = first;
        let mut v = self.shared.write()?;
        let mut removed = false;
        while v.segments.len() > 1 && v.segments[1].first_index <= first {
            let seg = v.segments.remove(0);
            fs::remove_file(&seg.path).map_err(|e| io_err("remove", &seg.path, e))?;
            removed = true;
        }
        if removed {
            fsutil::sync_dir(&self.dir)?;
        }
        v.compact_to(first);
        tracing::debug!(first, "compacted log head");
        Ok(())
    }

    /// Deletes every entry and segment.
    pub fn clear(&mut self) -> Result<(), StorageError> {
        let mut v = self.shared.write()?;
        while let Some(seg) = v.segments.pop() {
            fs::remove_file(&seg.path).map_err(|e| io_err("remove", &seg.path, e))?;
        }
        fsutil::sync_dir(&self.dir)?;
        v.clear();
        tracing::debug!("deleted the whole log");
        Ok(())
    }
}
