//! [`LogCache`]: wraps any [`LogStore`] with a ring buffer of the most
//! recently stored entries, so reads of the log tail (a follower catching up,
//! a restart) are served from memory.
//!
//! # Role since the core keeps a log window
//! The protocol core keeps the payloads of recent entries itself, in a
//! window bounded in bytes ([`Config::max_log_window_bytes`]), and reads
//! older entries back from the log store off its main task. That window
//! *is* the cache of recent entries a node uses by default; `LogCache` is
//! not part of it and no node wraps its store in one unless asked.
//!
//! `LogCache` is kept as an optional wrapper for a slow log store (one
//! whose reads go over the network, say), so the reads the node makes
//! outside its window (a lagging follower's catch-up, applying after a
//! restart) hit memory when they fall on the newest `capacity` entries.
//! It is bounded in entries, not bytes: size `capacity` with the entries'
//! size in mind. [`LogStore::entry_meta`] is passed through (answered from
//! the cache when it holds the whole range).
//!
//! [`Config::max_log_window_bytes`]: crate::Config::max_log_window_bytes

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::StorageError;
use crate::storage::LogStore;
use crate::types::{Log, LogEntryMeta};

/// A write-through cache of the newest `capacity` entries of a log store.
///
/// Writes go to the inner store first and are cached only once it
/// succeeded, so the cache never holds an entry the store does not.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use raft::{Log, LogCache, LogStore, LogType};
/// # #[derive(Default)] struct Mem(std::sync::Mutex<Vec<Log>>);
/// # #[raft::async_trait] impl LogStore for Mem {
/// #   async fn first_index(&self) -> Result<u64, raft::StorageError> { Ok(self.0.lock().unwrap().first().map_or(0, |l| l.index)) }
/// #   async fn last_index(&self) -> Result<u64, raft::StorageError> { Ok(self.0.lock().unwrap().last().map_or(0, |l| l.index)) }
/// #   async fn get_log(&self, i: u64) -> Result<Option<Log>, raft::StorageError> { Ok(self.0.lock().unwrap().iter().find(|l| l.index == i).cloned()) }
/// #   async fn get_logs(&self, r: std::ops::Range<u64>) -> Result<Vec<Log>, raft::StorageError> { Ok(self.0.lock().unwrap().iter().filter(|l| r.contains(&l.index)).cloned().collect()) }
/// #   async fn store_logs(&self, logs: &[Log]) -> Result<(), raft::StorageError> { self.0.lock().unwrap().extend_from_slice(logs); Ok(()) }
/// #   async fn delete_range(&self, a: u64, b: u64) -> Result<(), raft::StorageError> { self.0.lock().unwrap().retain(|l| l.index < a || l.index > b); Ok(()) } }
/// let cached = LogCache::new(Mem::default(), 1024);
/// cached.store_logs(&[Log::new(1, 1, LogType::Command, "x")]).await.unwrap();
/// assert_eq!(cached.get_log(1).await.unwrap().map(|l| l.index), Some(1));
/// # });
/// ```
pub struct LogCache<S: LogStore> {
    inner: S,
    capacity: usize,
    /// Invariant: contiguous ascending indexes, each also in `inner`.
    cache: Mutex<VecDeque<Log>>,
}

impl<S: LogStore> std::fmt::Debug for LogCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCache").field("capacity", &self.capacity).finish()
    }
}

impl<S: LogStore> LogCache<S> {
    /// Wraps `inner`, keeping up to `capacity` recent entries (at least 1).
    pub fn new(inner: S, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { inner, capacity, cache: Mutex::new(VecDeque::with_capacity(capacity.min(4096))) }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, VecDeque<Log>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, index: u64) -> Option<Log> {
        let cache = self.cache();
        let first = cache.front()?.index;
        if index < first {
            return None;
        }
        cache.get((index - first) as usize).cloned()
    }
}

#[async_trait]
impl<S: LogStore> LogStore for LogCache<S> {
    async fn first_index(&self) -> Result<u64, StorageError> {
        self.inner.first_index().await
    }

    async fn last_index(&self) -> Result<u64, StorageError> {
        if let Some(last) = self.cache().back() {
            return Ok(last.index);
        }
        self.inner.last_index().await
    }

    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        if let Some(log) = self.cached(index) {
            return Ok(Some(log));
        }
        self.inner.get_log(index).await
    }

    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        {
            let cache = self.cache();
            if let (Some(first), Some(last)) = (cache.front(), cache.back()) {
                if range.start >= first.index && range.end <= last.index + 1 {
                    let lo = (range.start - first.index) as usize;
                    let hi = (range.end.max(range.start) - first.index) as usize;
                    return Ok(cache.range(lo..hi).cloned().collect());
                }
            }
        }
        self.inner.get_logs(range).await
    }

    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        {
            let cache = self.cache();
            if let (Some(first), Some(last)) = (cache.front(), cache.back()) {
                if range.start >= first.index && range.end <= last.index + 1 {
                    let lo = (range.start - first.index) as usize;
                    let hi = (range.end.max(range.start) - first.index) as usize;
                    return Ok(cache.range(lo..hi).map(LogEntryMeta::of).collect());
                }
            }
        }
        self.inner.entry_meta(range).await
    }

    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        self.inner.store_logs(logs).await?;
        let mut cache = self.cache();
        if let Some(first) = logs.first() {
            // Overwriting a suffix drops the cached entries it replaces; a
            // batch that does not continue the cache starts it afresh.
            while cache.back().is_some_and(|l| l.index >= first.index) {
                cache.pop_back();
            }
            if cache.back().is_some_and(|l| l.index + 1 != first.index) {
                cache.clear();
            }
        }
        let skip = logs.len().saturating_sub(self.capacity);
        cache.extend(logs[skip..].iter().cloned());
        while cache.len() > self.capacity {
            cache.pop_front();
        }
        Ok(())
    }

    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        // Invalidate first: a failed delete must not leave stale entries
        // visible through the cache.
        {
            let mut cache = self.cache();
            cache.retain(|l| l.index < min || l.index > max);
            let contiguous = cache.iter().zip(cache.iter().skip(1)).all(|(a, b)| b.index == a.index + 1);
            if !contiguous {
                cache.clear();
            }
        }
        self.inner.delete_range(min, max).await
    }
}
