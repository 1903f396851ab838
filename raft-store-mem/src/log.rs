//! [`InmemStore`]: the log (a `VecDeque` indexed by offset from its first
//! index) and the stable store (a `HashMap`) behind a mutex.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use raft::{async_trait, Log, LogEntryMeta, LogStore, StableStore, StorageError};

#[derive(Default)]
struct Inner {
    /// Index of `logs[0]` (meaningless while `logs` is empty).
    ///
    /// Invariant: `logs[i].index == first + i`, so the stored indexes are
    /// one contiguous range and lookups are offset arithmetic.
    first: u64,
    logs: VecDeque<Log>,
    kv: HashMap<Vec<u8>, Vec<u8>>,
}

impl Inner {
    fn first_index(&self) -> u64 {
        if self.logs.is_empty() {
            0
        } else {
            self.first
        }
    }

    fn last_index(&self) -> u64 {
        if self.logs.is_empty() {
            0
        } else {
            self.first + self.logs.len() as u64 - 1
        }
    }

    /// Positions in `logs` of the non-empty `range`, or `LogNotFound`
    /// naming its first index that is not stored.
    fn positions(&self, range: &Range<u64>) -> Result<(usize, usize), StorageError> {
        // Check the bounds first: the range may be far larger than the log
        // (allocating or iterating it would exhaust memory or time).
        if self.logs.is_empty() || range.start < self.first || range.start > self.last_index() {
            return Err(StorageError::LogNotFound(range.start));
        }
        let last = self.last_index();
        if range.end > last + 1 {
            return Err(StorageError::LogNotFound(last + 1));
        }
        Ok(((range.start - self.first) as usize, (range.end - self.first) as usize))
    }

    fn get(&self, index: u64) -> Option<&Log> {
        if self.logs.is_empty() || index < self.first {
            return None;
        }
        self.logs.get((index - self.first) as usize)
    }
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
        // A panic while holding the lock cannot leave the log half-updated
        // (updates only truncate and clone `Bytes` handles, which cannot
        // panic), so poisoning is ignored.
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
        Ok(self.lock().first_index())
    }

    async fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.lock().last_index())
    }

    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        Ok(self.lock().get(index).cloned())
    }

    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        let (lo, hi) = inner.positions(&range)?;
        Ok(inner.logs.range(lo..hi).cloned().collect())
    }

    /// Answered from the stored entries without copying their payloads.
    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        let (lo, hi) = inner.positions(&range)?;
        Ok(inner.logs.range(lo..hi).map(LogEntryMeta::of).collect())
    }

    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let Some(new_first) = logs.first().map(|l| l.index) else { return Ok(()) };
        let last = inner.last_index();
        if !inner.logs.is_empty() && new_first > last + 1 {
            return Err(StorageError::Other(
                format!("store_logs would leave a hole: last index {last}, new first {new_first}").into(),
            ));
        }
        for pair in logs.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(StorageError::Other("store_logs given non-contiguous entries".into()));
            }
        }
        // Storing over an existing suffix replaces it.
        if inner.logs.is_empty() || new_first <= inner.first {
            inner.logs.clear();
            inner.first = new_first;
        } else {
            let keep = (new_first - inner.first) as usize;
            inner.logs.truncate(keep);
        }
        inner.logs.extend(logs.iter().cloned());
        Ok(())
    }

    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if min > max || inner.logs.is_empty() {
            return Ok(());
        }
        let first = inner.first;
        let last = inner.last_index();
        if min > first && max < last {
            return Err(StorageError::Other(
                format!("delete_range({min}, {max}) would leave a hole in {first}..={last}").into(),
            ));
        }
        if max < first || min > last {
            return Ok(());
        }
        if min <= first {
            // A prefix (possibly everything), dropped in place: the
            // buffer keeps its capacity and need not regrow.
            let n = (max.min(last) - first + 1) as usize;
            inner.logs.drain(..n);
            inner.first = max.min(last) + 1;
        } else {
            // A suffix from `min`.
            inner.logs.truncate((min - first) as usize);
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
