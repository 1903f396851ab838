//! Durable, crash-safe file-backed stores for the `raft` crate:
//! [`FileStore`] (a [`LogStore`] and [`StableStore`]) and
//! [`FileSnapshotStore`] (a [`SnapshotStore`]). Unix only (positional I/O
//! and directory fsync).
//!
//! ```no_run
//! # async fn run() -> Result<(), raft::StorageError> {
//! let logs = raft_store_file::FileStore::open("/var/lib/node/raft").await?;
//! let snaps = raft_store_file::FileSnapshotStore::new("/var/lib/node/snapshots", 2).await?;
//! # let _ = (logs, snaps); Ok(()) }
//! ```
//!
//! # Layout
//! - `store`: [`FileStore`], the public handle; the read path.
//! - `committer`: who writes: the caller itself when the log is idle,
//!   else the writer thread (queue, group commit).
//! - `writer`: applying a batch of changes; group commit and fail-stop.
//! - `wal`: opening/recovery, appending, truncation and compaction of the segment files.
//! - `segment`: a segment's name and header; scanning one on open;
//!   installing a preallocated file as a segment.
//! - `prealloc`: zero-filling the next segment in a background thread.
//! - `record`: framing and checksum of one log entry.
//! - `view`: the in-memory index (entry to segment and offset), the cache of recent entries.
//! - `entries`: one segment's payload-free index of entries (offset, type, term runs).
//! - `watermark`: the durable first index after head compaction.
//! - `stable`: the key-value file behind [`StableStore`].
//! - `snapshot`: [`FileSnapshotStore`].
//! - `fsutil`: directory fsync, atomic file replacement, the directory lock.
//! - `options`: [`FileStoreOptions`]. `error`: [`InvalidRequest`].
//!
//! # The log directory
//! ```text
//! LOCK                       advisory lock held while a FileStore is open
//! 00000000000000000001.wal   segments, named by their first index
//! 00000000000000052123.wal
//! log.meta                   first index after head compaction (absent until the first compaction)
//! stable.dat                 the stable store
//! *.tmp                      files being created (and the next segment being
//!                            zero-filled); removed on open
//! ```
//! A segment is a 32-byte header (magic, format version, first index,
//! CRC32C) followed by records; a record is `len u32 | crc32c u32 | index
//! u64 | term u64 | group u64 | type u8 | data`, the CRC covering the length
//! and everything after it. `group` is the first index of the fdatasync the
//! record was written under. Segments after a new log's first are
//! preallocated: zero-filled and synced in the background before the writer
//! starts them, so an append overwrites durable space and its `fdatasync`
//! has no file size to commit (about 1.5x the syncs per second on ext4 here);
//! the zeros after the last record are the segment's clean end. The first
//! preallocated segment is 4 MiB and each next one twice the one before, up
//! to [`FileStoreOptions::segment_size`]. The crate README has the details.
//!
//! # Guarantees
//! - `store_logs` returns after one `fdatasync` per segment it wrote to
//!   (usually one). Calls queued while the log is being written are
//!   grouped into one sync (group commit). Entries are readable only once
//!   durable. Changes are applied in the order the calls were first polled.
//! - `delete_range` from the tail shrinks the segment holding the new end
//!   and deletes later segments (newest first); from the head it records
//!   the new first index in `log.meta` and deletes whole segments below it
//!   (oldest first). A crash part way leaves a valid contiguous log.
//! - On open, a torn or corrupt tail of the *last* segment is truncated to
//!   the last valid record. Zeros from the last record to the end of a
//!   segment (preallocated space never written; no record has length 0)
//!   are its clean end, in any segment. Damage anywhere else (a sealed segment, a
//!   missing segment, or a bad record followed by a valid record of a later
//!   fdatasync) is refused with [`StorageError::Corrupt`] naming the file
//!   and offset. Limitation: bit rot in the very last sync group, after it
//!   was acknowledged, looks like a torn write and is truncated.
//! - Any I/O error while writing fails the store: that call returns the
//!   error, every later call [`StorageError::Failed`]. Nothing is retried.
//! - Every new file and rename is followed by an fsync of the directory.
//! - The stable store keeps its map in memory and rewrites `stable.dat`
//!   atomically on every `set` (temporary file, fsync, rename, directory
//!   fsync): after a crash a key holds its old or its new value.
//! - [`LogStore::entry_meta`] is answered from the in-memory index, without
//!   reading any payload or touching the disk.
//! - Writes go to a dedicated writer thread, which group-commits the calls
//!   queued meanwhile. With [`FileStoreOptions::caller_writes`] on, on
//!   tokio's multi-thread runtime, a `store_logs` or
//!   `delete_range` that finds the log idle writes and syncs it on the
//!   calling thread, inside `tokio::task::block_in_place` (the worker's
//!   other tasks move to another thread meanwhile; after a sync quicker
//!   than 50 µs, without it), and is done by its first poll: no hand-off to
//!   a thread and back. Calls that find the log busy, and every call on the
//!   current-thread runtime or outside tokio, go to the writer thread
//!   ([`FileStore::write_counts`] counts both ways; the option is off by
//!   default, see its docs for why). Other I/O (reads, stable
//!   store, snapshots) runs on tokio's blocking pool.
//!
//! # Memory
//! The index of entries holds **no payloads**. Per entry it holds one `u64`
//! (8 bytes): the record's offset in its segment, with the entry's type in
//! the top 2 bits. Terms are held as runs, 16 bytes per change of term
//! within a segment (a segment written in one term costs 16 bytes for all
//! its entries). A payload's length comes from the distance between two
//! records. Per segment file add about 100 bytes (its path, file handle,
//! first index and end) plus spare vector capacity of the segment being
//! written (sealed segments are shrunk to fit). So 1,000,000 entries cost
//! about 8 MB whatever their size; [`FileStore::index_bytes`] reports the
//! figure.
//!
//! Besides the index, the store caches the newest entries *with* their
//! payloads, bounded by both [`FileStoreOptions::cache_entries`] (default
//! 1024) and [`FileStoreOptions::cache_bytes`] (default 4 MiB); the cache
//! starts empty on open. [`FileStore::cached_bytes`] reports it. The
//! stable store keeps its (small) map in memory.
//!
//! Opening the store reads each segment file once, a megabyte at a time
//! (more only for a larger record, or to judge a damaged tail), to check
//! every record and build the index.

mod committer;
mod entries;
mod error;
mod fsutil;
mod options;
mod prealloc;
mod record;
mod segment;
mod snapshot;
mod stable;
mod store;
mod view;
mod wal;
mod watermark;
mod writer;

pub use error::InvalidRequest;
pub use options::FileStoreOptions;
pub use snapshot::FileSnapshotStore;
pub use store::{FileStore, WriteCounts};

#[doc(no_inline)]
pub use raft::{LogStore, SnapshotStore, StableStore, StorageError};
