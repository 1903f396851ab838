//! [`FileStore`]: the public log and stable store handle. Reads are served
//! from the in-memory index (and its cache of recent entries) with
//! positional reads on the blocking pool; writes are done by the caller
//! when the log's files are free, else by the writer thread
//! ([`crate::committer`]).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use raft::{async_trait, Log, LogEntryMeta, LogStore, StableStore, StorageError};
use tokio::sync::oneshot;

use crate::committer::Committer;
use crate::options::FileStoreOptions;
use crate::stable::StableFile;
use crate::view::Shared;
use crate::wal::Wal;
use crate::writer::{self, Request};

#[cfg(test)]
mod tests;

/// How a [`FileStore`]'s changes were written; see
/// [`FileStore::write_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Changes written and synced by the calling thread itself (no hand-off).
    pub by_caller: u64,
    /// Of `by_caller`, those written without `tokio::task::block_in_place`
    /// because the sync before was very quick.
    pub by_caller_quick: u64,
    /// Changes queued for the writer thread (the log was busy, the runtime
    /// is tokio's current-thread one, or `caller_writes` is off).
    pub handed_off: u64,
}

/// A durable [`LogStore`] and [`StableStore`] in one directory.
///
/// Cheap to [`Clone`]; clones share the same open files. The directory is
/// locked (`<dir>/LOCK`) while any clone is alive: a second
/// [`FileStore::open`] of the same directory, in this process or another,
/// fails until the last clone is dropped. Dropping the last clone waits for
/// the writer thread to finish the requests queued for it.
///
/// See the crate docs for the on-disk format and the guarantees.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use raft::{Log, LogStore, LogType, StableStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = raft_store_file::FileStore::open(dir.path()).await.unwrap();
/// store.store_logs(&[Log::new(1, 1, LogType::Command, "x")]).await.unwrap();
/// store.set_u64(b"term", 1).await.unwrap();
/// drop(store);
/// let store = raft_store_file::FileStore::open(dir.path()).await.unwrap();
/// assert_eq!(store.last_index().await.unwrap(), 1);
/// assert_eq!(store.get_u64(b"term").await.unwrap(), Some(1));
/// # });
/// ```
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    shared: Arc<Shared>,
    stable: Arc<StableFile>,
    /// How preparing the next log segment fares.
    prealloc: Arc<crate::prealloc::PreallocStatus>,
    /// The log's files and the queue of changes for the writer thread.
    committer: Arc<Committer>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer thread stops once the queue is empty, dropping the
        // log's files: joining it releases the directory lock before `drop`
        // returns, so the directory can be reopened right away.
        self.committer.close();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "log writer thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.inner.dir).finish()
    }
}

/// `Ok` if the non-empty `range` lies inside the log `first..=last`, else
/// `LogNotFound` naming the first missing index.
fn check_range(first: u64, last: u64, range: &Range<u64>) -> Result<(), StorageError> {
    if first == 0 || range.start < first || range.start > last {
        return Err(StorageError::LogNotFound(range.start));
    }
    if range.end > last + 1 {
        return Err(StorageError::LogNotFound(last + 1));
    }
    Ok(())
}

/// Ranges of `entry_meta` longer than this are answered on the blocking
/// pool rather than on an async worker.
const META_INLINE_MAX: u64 = 4096;

fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Failed(format!("blocking file task failed: {e}"))
}

impl FileStore {
    /// Opens (creating it if needed) the store in `dir` with default options.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(dir, FileStoreOptions::default()).await
    }

    /// Opens (creating it if needed) the store in `dir`, recovering from any
    /// earlier crash: a torn tail of the last segment is truncated; damage
    /// anywhere else is refused with [`StorageError::Corrupt`].
    pub async fn open_with(dir: impl AsRef<Path>, opts: FileStoreOptions) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_owned();
        let opts = opts.normalized();
        let max_group = opts.max_group_requests;
        let caller_writes = opts.caller_writes;
        let open_dir = dir.clone();
        let (wal, shared, stable) = tokio::task::spawn_blocking(move || {
            let (wal, shared) = Wal::open(&open_dir, opts)?;
            let stable = StableFile::open(&open_dir)?;
            Ok::<_, StorageError>((wal, shared, stable))
        })
        .await
        .map_err(join_error)??;
        let prealloc = wal.prealloc_status();
        let (committer, handle) = Committer::start(wal, max_group, caller_writes)
            .map_err(|e| StorageError::io("spawn the log writer thread", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                shared,
                stable: Arc::new(stable),
                prealloc,
                committer,
                writer: Some(handle),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// How many times zero-filling the next log segment ahead of need has
    /// failed since the store was opened (typically: the disk is full).
    /// Each failure is also logged as an error. The log keeps writing into
    /// its active segment meanwhile; a rising count means the disk is
    /// about to stop the node: free space.
    pub fn segment_preparation_failures(&self) -> u64 {
        self.inner.prealloc.failures()
    }

    /// Whether the latest attempt to prepare the next log segment failed
    /// (cleared once one succeeds). See
    /// [`segment_preparation_failures`](Self::segment_preparation_failures).
    pub fn segment_preparation_failing(&self) -> bool {
        self.inner.prealloc.failing()
    }

    /// How the log's changes (`store_logs` and `delete_range` calls) were
    /// written since the store was opened: by their caller, or handed to
    /// the writer thread (see [`FileStoreOptions::caller_writes`]). A
    /// hand-off costs a thread wake-up there and a task wake-up back.
    pub fn write_counts(&self) -> WriteCounts {
        let (by_caller, by_caller_quick, handed_off) = self.inner.committer.counts();
        WriteCounts { by_caller, by_caller_quick, handed_off }
    }

    /// Bytes of memory the store's index of entries holds: 8 per entry plus
    /// 16 per change of term within a segment, plus a fixed amount per
    /// segment file (see the crate docs). It does not depend on the
    /// entries' payload sizes.
    pub fn index_bytes(&self) -> Result<usize, StorageError> {
        Ok(self.inner.shared.read()?.index_bytes())
    }

    /// Payload bytes held by the cache of the newest entries (at most
    /// [`FileStoreOptions::cache_bytes`]).
    pub fn cached_bytes(&self) -> Result<usize, StorageError> {
        Ok(self.inner.shared.read()?.cache_bytes())
    }

    async fn request(&self, make: impl FnOnce(writer::Reply) -> Request) -> Result<(), StorageError> {
        self.inner.shared.check()?;
        let (reply, rx) = oneshot::channel();
        // Written right here when the files are free (the reply is then
        // already sent and `rx` ready), else queued for the writer thread.
        self.inner.committer.submit(make(reply))?;
        match rx.await {
            Ok(res) => res,
            Err(_) => {
                let why = "log writer thread stopped before answering".to_owned();
                self.inner.shared.fail(why.clone());
                Err(StorageError::Failed(why))
            }
        }
    }
}

#[async_trait]
impl LogStore for FileStore {
    async fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.inner.shared.read()?.first)
    }

    async fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.inner.shared.read()?.last)
    }

    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        {
            let v = self.inner.shared.read()?;
            if !v.contains(index) {
                return Ok(None);
            }
            if let Some(log) = v.cached(index) {
                return Ok(Some(log));
            }
        }
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || {
            let v = shared.read()?;
            if !v.contains(index) {
                return Ok(None);
            }
            Ok(v.read_range(index..index + 1)?.pop())
        })
        .await
        .map_err(join_error)?
    }

    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        if range.start >= range.end {
            self.inner.shared.check()?;
            return Ok(Vec::new());
        }
        {
            let v = self.inner.shared.read()?;
            check_range(v.first, v.last, &range)?;
            if let Some(logs) = v.cached_range(&range) {
                return Ok(logs);
            }
        }
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || {
            let v = shared.read()?;
            check_range(v.first, v.last, &range)?;
            v.read_range(range)
        })
        .await
        .map_err(join_error)?
    }

    /// Answered from the in-memory index (no payload is read, no I/O).
    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        if range.start >= range.end {
            self.inner.shared.check()?;
            return Ok(Vec::new());
        }
        if range.end - range.start <= META_INLINE_MAX {
            let v = self.inner.shared.read()?;
            check_range(v.first, v.last, &range)?;
            return v.entry_meta(range);
        }
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || {
            let v = shared.read()?;
            check_range(v.first, v.last, &range)?;
            v.entry_meta(range)
        })
        .await
        .map_err(join_error)?
    }

    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        if logs.is_empty() {
            return self.inner.shared.check();
        }
        let logs = logs.to_vec();
        self.request(|reply| Request::Append { logs, reply }).await
    }

    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        self.request(|reply| Request::Delete { min, max, reply }).await
    }
}

#[async_trait]
impl StableStore for FileStore {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.inner.shared.check()?;
        let stable = self.inner.stable.clone();
        let shared = self.inner.shared.clone();
        let (key, value) = (key.to_vec(), value.to_vec());
        tokio::task::spawn_blocking(move || {
            shared.check()?;
            let res = stable.set(&key, &value);
            if let Err(e) = &res {
                shared.fail(format!("stable store write failed: {e}"));
            }
            res
        })
        .await
        .map_err(join_error)?
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.shared.check()?;
        self.inner.stable.get(key)
    }
}
