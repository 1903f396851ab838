//! [`InmemStore`]: the log and stable store kept in a `BTreeMap` behind a mutex.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use raft::{async_trait, Log, LogStore, StableStore, StorageError};

#[derive(Default)]
struct Inner {
    /// Invariant: keys form one contiguous range.
    logs: BTreeMap<u64, Log>,
    kv: HashMap<Vec<u8>, Vec<u8>>,
}

/// An in-memory [`LogStore`] and [`StableStore`].
///
/// ```
/// # tokio_test_shim::block_on(async {
/// use raft::{Log, LogStore, LogType};
/// let store = raft_store_mem::InmemStore::new();
/// store.store_logs(&[Log::new(1, 1, LogType::Command, "x")]).await.unwrap();
/// assert_eq!(store.last_index().await.unwrap(), 1);
/// # });
/// # mod tokio_test_shim { pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #   tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) } }
/// ```
#[derive(Clone, Default)]
pub struct InmemStore {
    inner: Arc<Mutex<Inner>>,
}

impl InmemStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // (every update is a single map operation), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for InmemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("InmemStore").field("entries", &inner.logs.len()).finish()
    }
}

#[async_trait]
impl LogStore for InmemStore {
    async fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.lock().logs.keys().next().copied().unwrap_or(0))
    }

    async fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.lock().logs.keys().next_back().copied().unwrap_or(0))
    }

    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        Ok(self.lock().logs.get(&index).cloned())
    }

    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        // Check the bounds first: the range may be far larger than the log
        // (allocating or iterating it would exhaust memory or time).
        let first = inner.logs.keys().next().copied();
        let last = inner.logs.keys().next_back().copied();
        match (first, last) {
            (Some(first), Some(last)) if range.start >= first && range.start <= last => {
                if range.end > last + 1 {
                    return Err(StorageError::LogNotFound(last + 1));
                }
            }
            _ => return Err(StorageError::LogNotFound(range.start)),
        }
        // The keys are contiguous (the struct's invariant), so every index is present.
        Ok(inner.logs.range(range).map(|(_, log)| log.clone()).collect())
    }

    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if let (Some(first), Some(&last)) = (logs.first(), inner.logs.keys().next_back()) {
            if first.index > last + 1 {
                return Err(StorageError::Other(
                    format!("store_logs would leave a hole: last index {last}, new first {}", first.index)
                        .into(),
                ));
            }
        }
        for pair in logs.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(StorageError::Other("store_logs given non-contiguous entries".into()));
            }
        }
        if let Some(first) = logs.first() {
            // Storing over an existing suffix replaces it.
            let _ = inner.logs.split_off(&first.index);
        }
        for log in logs {
            inner.logs.insert(log.index, log.clone());
        }
        Ok(())
    }

    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if min > max {
            return Ok(());
        }
        let first = inner.logs.keys().next().copied().unwrap_or(0);
        let last = inner.logs.keys().next_back().copied().unwrap_or(0);
        if min > first && max < last {
            return Err(StorageError::Other(
                format!("delete_range({min}, {max}) would leave a hole in {first}..={last}").into(),
            ));
        }
        let keys: Vec<u64> = inner.logs.range(min..=max).map(|(k, _)| *k).collect();
        for k in keys {
            inner.logs.remove(&k);
        }
        Ok(())
    }
}

#[async_trait]
impl StableStore for InmemStore {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.lock().kv.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().kv.get(key).cloned())
    }
}
