//! The log and stable storage traits a node persists through.

use std::ops::Range;

use async_trait::async_trait;

use crate::error::StorageError;
use crate::types::{Log, LogEntryMeta};

/// Durable storage for the replicated log.
///
/// Called concurrently from several tasks (hence `&self`): implementations
/// use interior mutability.
///
/// Writes (`store_logs`, `delete_range`) are polled by the node's main
/// task itself, in its own loop, one call at a time: while a call is
/// pending the node goes on with heartbeats, votes and client batching;
/// while a call blocks the thread, the node does nothing else. Wait for
/// the disk off the calling thread (a thread of the store's own, or
/// `tokio::task::spawn_blocking`), as `raft-store-file` does by default
/// (its `FileStoreOptions::caller_writes` option syncs on the calling
/// thread instead, which holds the node for each whole sync: measured
/// slower with many clients).
///
/// # To be correct
/// - `store_logs` must be durable when it returns `Ok` (fsync'd, or
///   equivalent): the node acknowledges entries to the leader right after.
/// - The stored indexes are always one contiguous range: never leave a hole.
///   `store_logs` receives entries that start at most one past the current
///   last index: contiguous with it, or starting at or below it, in which
///   case they **overwrite that suffix** (every stored entry from the first
///   given index on is replaced, and entries past the last given one are
///   dropped). The conformance suite checks this ("overwrite a suffix").
/// - `delete_range` removes either a prefix (compaction) or a suffix (conflict
///   truncation), never the middle.
/// - Never return corrupt data: detect it (checksums) and return
///   [`StorageError::Corrupt`].
/// - `entry_meta` agrees with `get_logs` (same entries, same errors); a
///   node reads it for its whole log at every start, so a store holding
///   many entries should answer it from an index, without reading payloads
///   (the conformance suite checks the agreement).
/// - After an error from a write, refuse further writes (fail-stop) rather
///   than pretend the write happened.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Index of the first stored entry, or 0 if the store is empty.
    async fn first_index(&self) -> Result<u64, StorageError>;

    /// Index of the last stored entry, or 0 if the store is empty.
    async fn last_index(&self) -> Result<u64, StorageError>;

    /// The entry at `index`, or `None` if it is not stored.
    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError>;

    /// The entries with indexes in `range`, in order. Returns
    /// [`StorageError::LogNotFound`] naming the first missing index if any
    /// index in the range is not stored.
    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError>;

    /// The index, term, type and payload size of the entries with indexes
    /// in `range`, in order, without their payloads: what a node reads at
    /// start to learn its log's shape without loading the log into memory.
    /// Same errors as [`get_logs`](Self::get_logs).
    ///
    /// The default reads the entries with `get_logs`, a bounded batch at a
    /// time, and keeps only their metadata: correct for any store, but it
    /// reads every payload. A store that keeps an index of its entries
    /// should answer from that index instead.
    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        const BATCH: u64 = 1024;
        let mut out = Vec::with_capacity(range.end.saturating_sub(range.start).min(1 << 20) as usize);
        let mut lo = range.start;
        while lo < range.end {
            let hi = range.end.min(lo.saturating_add(BATCH));
            out.extend(self.get_logs(lo..hi).await?.iter().map(LogEntryMeta::of));
            lo = hi;
        }
        Ok(out)
    }

    /// Stores entries (contiguous, ascending) durably. Entries starting at
    /// or below the last stored index replace the stored suffix from their
    /// first index on (see the trait's rules).
    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError>;

    /// Deletes the entries with indexes in `min..=max` durably.
    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError>;
}

/// Durable key-value storage for small values (term, vote, metadata).
///
/// # To be correct
/// Every `set` must be durable and atomic when it returns: after a crash a
/// key holds either its old or its new value, never a torn mix.
#[async_trait]
pub trait StableStore: Send + Sync + 'static {
    /// Sets `key` to `value` durably.
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// The value of `key`, or `None` if it was never set.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Sets `key` to a u64 durably.
    async fn set_u64(&self, key: &[u8], value: u64) -> Result<(), StorageError> {
        self.set(key, &value.to_be_bytes()).await
    }

    /// The u64 value of `key`, or `None` if it was never set.
    async fn get_u64(&self, key: &[u8]) -> Result<Option<u64>, StorageError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    StorageError::Codec(format!(
                        "value of key {:?} is not 8 bytes",
                        String::from_utf8_lossy(key)
                    ))
                })?;
                Ok(Some(u64::from_be_bytes(arr)))
            }
        }
    }
}
