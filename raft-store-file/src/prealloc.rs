//! Segment files zero-filled ahead of the writer.
//!
//! Appending to a file makes every `fdatasync` also commit the file's new
//! size (on ext4, a journal write besides the data). Overwriting space that
//! is already allocated, written (zeros) and durable does not change the
//! size, and the sync writes only the data: about 1.5x the syncs per second
//! on the disk this was measured on (`wal_bench`). `fallocate` is not
//! enough: its unwritten extents are converted on first write, which is a
//! metadata change again.
//!
//! Zero-filling a segment takes a while (64 MiB), so a background thread
//! prepares the *next* segment once the active one is half full; the
//! writer takes it at rollover if it is ready and creates a plain segment
//! otherwise. A plain segment (a new log's first) is sealed early, as soon
//! as a prepared one is ready. A prepared file lives under a temporary name until the writer
//! installs it ([`crate::segment::install`]), so a crash leaves only debris
//! that the next open removes. Recovery reads the zeros after the last
//! record of a segment as its clean end ([`crate::segment::scan`]).
//!
//! A failed preparation (typically a full disk) removes its partial file,
//! is logged as an error and counted in [`PreallocStatus`] (readable from
//! [`crate::FileStore`]), and is retried after a back-off; meanwhile the
//! writer keeps appending to the active segment rather than rolling over
//! into a plain one (see `Wal::append`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::StorageError;

use crate::fsutil::TMP_SUFFIX;

/// Zeros written (and synced) per step while filling. Syncing each step
/// keeps little dirty data around: a journal commit of the active segment
/// (ext4's ordered mode flushes all dirty data with it) or the disk's queue
/// then never holds the writer's own syncs back for long.
const CHUNK: usize = 256 << 10;

/// A zero-filled, durable file of a segment's size, not yet a segment.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Its temporary path.
    pub(crate) path: PathBuf,
    /// Open for reading and writing.
    pub(crate) file: File,
    /// Its size in bytes (the segment's capacity).
    pub(crate) size: u64,
}

/// First wait before retrying a failed preparation; doubles per failure.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait before retrying a failed preparation.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How segment preparation fares, shared with the store's handle.
#[derive(Debug, Default)]
pub(crate) struct PreallocStatus {
    /// Preparations that failed since the log was opened.
    failures: AtomicU64,
    /// Whether the latest preparation failed (cleared by the next success).
    failing: AtomicBool,
}

impl PreallocStatus {
    /// Preparations that failed since the log was opened.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// Whether the latest preparation failed.
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

/// A preparation under way.
struct Job {
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<Result<Option<Prepared>, StorageError>>,
}

/// Prepares one segment file at a time in a background thread.
pub(crate) struct Preparer {
    dir: PathBuf,
    job: Option<Job>,
    next: u64,
    /// A finished, successful preparation not yet taken.
    ready: Option<Prepared>,
    /// After a failure: no new preparation before this instant.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    backoff: Duration,
    status: Arc<PreallocStatus>,
}

impl Preparer {
    /// A preparer of files in `dir`; it starts nothing yet.
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            job: None,
            next: 0,
            ready: None,
            retry_at: None,
            backoff: RETRY_FIRST,
            status: Arc::default(),
        }
    }

    /// The shared status (failure count and flag).
    pub(crate) fn status(&self) -> Arc<PreallocStatus> {
        self.status.clone()
    }

    /// Whether the latest preparation failed: the writer then keeps
    /// appending to its active segment instead of rolling over.
    pub(crate) fn failing(&self) -> bool {
        self.status.failing()
    }

    /// Collects a finished preparation: keeps its file, or records its
    /// failure (logged, counted, retried after a back-off).
    fn poll(&mut self) {
        if !self.job.as_ref().is_some_and(|j| j.handle.is_finished()) {
            return;
        }
        let Some(job) = self.job.take() else { return };
        let failed = match job.handle.join() {
            Ok(Ok(Some(prepared))) => {
                self.ready = Some(prepared);
                self.status.failing.store(false, Ordering::Relaxed);
                self.retry_at = None;
                self.backoff = RETRY_FIRST;
                return;
            }
            Ok(Ok(None)) => return,
            // Counted and logged by the thread itself.
            Ok(Err(_)) => false,
            Err(_) => true,
        };
        if failed {
            // Flagged before counted: whoever sees the count sees the flag.
            self.status.failing.store(true, Ordering::Release);
            self.status.failures.fetch_add(1, Ordering::Release);
            tracing::error!(dir = %self.dir.display(), "the segment preallocation thread panicked; retrying later");
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    /// Starts preparing a `size`-byte file unless one is being prepared or
    /// is ready, or a failed preparation's back-off has not passed.
    pub(crate) fn ensure_started(&mut self, size: u64) {
        self.poll();
        if self.job.is_some() || self.ready.is_some() {
            return;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let path = self.dir.join(format!("next-segment-{}{TMP_SUFFIX}", self.next));
        self.next += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let status = self.status.clone();
        let dir = self.dir.clone();
        let retry_in = self.backoff;
        let spawned = std::thread::Builder::new().name("raft-wal-prealloc".into()).spawn(move || {
            let result = prepare(&path, size, &stop);
            // Reported at once, not when the writer next looks.
            if let Err(e) = &result {
                // Flagged before counted: whoever sees the count sees the flag.
                status.failing.store(true, Ordering::Release);
                let failures = status.failures.fetch_add(1, Ordering::Release) + 1;
                tracing::error!(
                    dir = %dir.display(), error = %e, failures, ?retry_in,
                    "preparing the next log segment failed (is the disk full?); the log keeps writing \
                     into its active segment and retries later. Free disk space: once the log cannot \
                     grow, writes fail and the node stops"
                );
            }
            result
        });
        match spawned {
            Ok(handle) => self.job = Some(Job { cancel, handle }),
            Err(e) => tracing::warn!(error = %e, "cannot start the segment preallocation thread"),
        }
    }

    /// Whether a prepared file is ready to be taken. A failed preparation
    /// is not ready.
    pub(crate) fn is_ready(&mut self) -> bool {
        self.poll();
        self.ready.is_some()
    }

    /// The prepared file, if a preparation has finished successfully (never
    /// waits). After a failure there is none: the writer then keeps its
    /// active segment, or creates a plain one if it must.
    pub(crate) fn take_ready(&mut self) -> Option<Prepared> {
        self.poll();
        self.ready.take()
    }
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer").field("dir", &self.dir).field("preparing", &self.job.is_some()).finish()
    }
}

impl Drop for Preparer {
    /// Stops a preparation under way and removes its file, so nothing
    /// writes in the directory once the log is closed.
    fn drop(&mut self) {
        let mut unused = self.ready.take();
        if let Some(job) = self.job.take() {
            job.cancel.store(true, Ordering::Relaxed);
            if let Ok(Ok(Some(prepared))) = job.handle.join() {
                unused = Some(prepared);
            }
        }
        if let Some(prepared) = unused {
            drop(prepared.file);
            if let Err(e) = std::fs::remove_file(&prepared.path) {
                tracing::debug!(path = %prepared.path.display(), error = %e, "cannot remove an unused prepared segment");
            }
        }
    }
}

/// Writes `size` zero bytes to a new file at `path` and makes them durable.
/// Returns `None` (and removes the file) if cancelled. On failure the
/// partial file is removed: a full disk is not filled further by it.
fn prepare(path: &Path, size: u64, cancel: &AtomicBool) -> Result<Option<Prepared>, StorageError> {
    let result = fill(path, size, cancel);
    if result.is_err() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(path = %path.display(), error = %e,
                "cannot remove a failed segment preparation; remove the file by hand"),
        }
    }
    result
}

fn fill(path: &Path, size: u64, cancel: &AtomicBool) -> Result<Option<Prepared>, StorageError> {
    let io = |op: &str, e| StorageError::io(format!("{op} {}", path.display()), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io("create", e))?;
    let zeros = vec![0u8; CHUNK];
    let mut written = 0u64;
    while written < size {
        if cancel.load(Ordering::Relaxed) {
            drop(file);
            std::fs::remove_file(path).map_err(|e| io("remove", e))?;
            return Ok(None);
        }
        let n = (size - written).min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n]).map_err(|e| io("zero-fill", e))?;
        file.sync_data().map_err(|e| io("fdatasync", e))?;
        written += n as u64;
    }
    file.sync_all().map_err(|e| io("fsync", e))?;
    tracing::debug!(path = %path.display(), size, "prepared a zero-filled log segment");
    Ok(Some(Prepared { path: path.to_owned(), file, size }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_file_is_zero_filled_to_the_size_and_dropping_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Preparer::new(dir.path());
        p.ensure_started(10_000);
        let prepared = loop {
            if let Some(prepared) = p.take_ready() {
                break prepared;
            }
            std::thread::yield_now();
        };
        let bytes = std::fs::read(&prepared.path).expect("read");
        assert_eq!(bytes.len(), 10_000);
        assert_eq!(prepared.size, 10_000);
        assert!(bytes.iter().all(|&b| b == 0));
        assert!(
            prepared.path.to_string_lossy().ends_with(TMP_SUFFIX),
            "debris of a crash is removed on open"
        );
        // A preparation still running when the preparer is dropped leaves nothing.
        p.ensure_started(10_000);
        drop(p);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                *n != prepared.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
            })
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
