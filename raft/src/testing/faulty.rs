//! [`FaultyStore`]: a [`LogStore`] and [`StableStore`] wrapper that injects
//! storage faults, switched on and off at run time through a
//! [`FaultInjector`] handle, to test how a node behaves when its disk fails:
//!
//! - [`Fault::FsyncFailure`]: the operation reaches the inner store, then
//!   fails with an I/O error (EIO), as a write whose fsync failed: the data
//!   may or may not be durable.
//! - [`Fault::NoSpace`]: the operation fails before touching the inner store
//!   with ENOSPC (`io::ErrorKind::StorageFull`), as on a full disk.
//! - [`Fault::Stall`]: the operation does not complete until
//!   [`FaultInjector::release`] (a hung disk).
//! - [`Fault::Latency`]: the operation completes after a delay (a slow disk;
//!   under a paused tokio clock the delay is virtual).
//!
//! Faults are set per operation ([`StoreOp`]) and stay until cleared.
//! [`FaultInjector::abandon_held`] models a crash with writes in flight:
//! every operation a stall or latency holds fails at once without reaching
//! the inner store. [`FaultInjector::truncations`] counts log suffixes
//! deleted through the store (conflict truncations).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use raft::testing::faulty::{Fault, FaultyStore, StoreOp};
//! use raft::{Log, LogStore, LogType};
//! # #[derive(Default)] struct Mem(std::sync::Mutex<Vec<Log>>);
//! # #[raft::async_trait] impl LogStore for Mem {
//! #   async fn first_index(&self) -> Result<u64, raft::StorageError> { Ok(self.0.lock().unwrap().first().map_or(0, |l| l.index)) }
//! #   async fn last_index(&self) -> Result<u64, raft::StorageError> { Ok(self.0.lock().unwrap().last().map_or(0, |l| l.index)) }
//! #   async fn get_log(&self, i: u64) -> Result<Option<Log>, raft::StorageError> { Ok(self.0.lock().unwrap().iter().find(|l| l.index == i).cloned()) }
//! #   async fn get_logs(&self, _: std::ops::Range<u64>) -> Result<Vec<Log>, raft::StorageError> { Ok(vec![]) }
//! #   async fn store_logs(&self, logs: &[Log]) -> Result<(), raft::StorageError> { self.0.lock().unwrap().extend_from_slice(logs); Ok(()) }
//! #   async fn delete_range(&self, _: u64, _: u64) -> Result<(), raft::StorageError> { Ok(()) } }
//! let store = FaultyStore::new(Mem::default());
//! let faults = store.injector();
//! faults.inject(StoreOp::StoreLogs, Fault::NoSpace);
//! let entry = Log::new(1, 1, LogType::Command, "x");
//! let err = store.store_logs(&[entry.clone()]).await.unwrap_err();
//! assert!(raft::testing::faulty::is_no_space(&err));
//! faults.clear_all();
//! store.store_logs(&[entry]).await.unwrap();
//! # });
//! ```

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::error::StorageError;
use crate::storage::{LogStore, StableStore};
use crate::types::{Log, LogEntryMeta};

/// A store operation a fault can be attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// [`LogStore::first_index`].
    FirstIndex,
    /// [`LogStore::last_index`].
    LastIndex,
    /// [`LogStore::get_log`].
    GetLog,
    /// [`LogStore::get_logs`] and [`LogStore::entry_meta`].
    GetLogs,
    /// [`LogStore::store_logs`].
    StoreLogs,
    /// [`LogStore::delete_range`].
    DeleteRange,
    /// [`StableStore::set`] (and `set_u64`).
    Set,
    /// [`StableStore::get`] (and `get_u64`).
    Get,
}

impl StoreOp {
    /// The operations that write: `store_logs`, `delete_range` and `set`.
    pub const WRITES: [StoreOp; 3] = [StoreOp::StoreLogs, StoreOp::DeleteRange, StoreOp::Set];

    /// Every operation.
    pub const ALL: [StoreOp; 8] = [
        StoreOp::FirstIndex,
        StoreOp::LastIndex,
        StoreOp::GetLog,
        StoreOp::GetLogs,
        StoreOp::StoreLogs,
        StoreOp::DeleteRange,
        StoreOp::Set,
        StoreOp::Get,
    ];

    fn name(self) -> &'static str {
        match self {
            StoreOp::FirstIndex => "first_index",
            StoreOp::LastIndex => "last_index",
            StoreOp::GetLog => "get_log",
            StoreOp::GetLogs => "get_logs",
            StoreOp::StoreLogs => "store_logs",
            StoreOp::DeleteRange => "delete_range",
            StoreOp::Set => "set",
            StoreOp::Get => "get",
        }
    }
}

impl std::fmt::Display for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to an operation a fault is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation runs on the inner store, then fails with
    /// [`StorageError::Io`] (EIO), like a write whose fsync failed.
    FsyncFailure,
    /// The operation fails with [`StorageError::Io`] carrying ENOSPC
    /// (`io::ErrorKind::StorageFull`) without touching the inner store.
    NoSpace,
    /// The operation waits until [`FaultInjector::release`] (or the fault is
    /// cleared), then runs.
    Stall,
    /// The operation waits this long (tokio time), then runs.
    Latency(Duration),
}

/// The switchboard of a [`FaultyStore`]: cheap to clone, shared with the
/// store, usable while the node runs.
#[derive(Clone, Default)]
pub struct FaultInjector {
    inner: Arc<InjectorState>,
}

#[derive(Default)]
struct InjectorState {
    faults: Mutex<HashMap<StoreOp, Fault>>,
    /// Operations currently held by a [`Fault::Stall`].
    stalled: AtomicUsize,
    /// Faults triggered so far.
    injected: AtomicU64,
    /// Bumped by [`FaultInjector::abandon_held`]: held operations started
    /// under an older value fail.
    abandoned: AtomicU64,
    /// Suffix deletions seen by `delete_range`.
    truncations: AtomicU64,
    release: Notify,
}

impl std::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultInjector")
            .field("faults", &*self.faults())
            .field("stalled", &self.stalled())
            .field("injected", &self.injected())
            .finish()
    }
}

impl FaultInjector {
    /// An injector with no faults set.
    pub fn new() -> Self {
        Self::default()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, HashMap<StoreOp, Fault>> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, every `op` meets `fault` (replacing an earlier one).
    /// Replacing a [`Fault::Stall`] lets the stalled operations go on.
    pub fn inject(&self, op: StoreOp, fault: Fault) {
        let previous = self.faults().insert(op, fault);
        tracing::warn!(op = %op, ?fault, "storage fault injected");
        if previous == Some(Fault::Stall) {
            self.inner.release.notify_waiters();
        }
    }

    /// Sets `fault` on every write operation ([`StoreOp::WRITES`]).
    pub fn inject_writes(&self, fault: Fault) {
        for op in StoreOp::WRITES {
            self.inject(op, fault);
        }
    }

    /// The fault set on `op`, if any.
    pub fn fault(&self, op: StoreOp) -> Option<Fault> {
        self.faults().get(&op).copied()
    }

    /// Removes the fault on `op` (stalled operations on it go on).
    pub fn clear(&self, op: StoreOp) {
        self.faults().remove(&op);
        self.inner.release.notify_waiters();
    }

    /// Removes every fault; stalled operations go on.
    pub fn clear_all(&self) {
        self.faults().clear();
        self.inner.release.notify_waiters();
    }

    /// Removes every [`Fault::Stall`] and lets the stalled operations run.
    pub fn release(&self) {
        self.faults().retain(|_, f| *f != Fault::Stall);
        self.inner.release.notify_waiters();
    }

    /// Sets `fault` on every operation ([`StoreOp::ALL`]), reads included.
    pub fn inject_all(&self, fault: Fault) {
        for op in StoreOp::ALL {
            self.inject(op, fault);
        }
    }

    /// Fails every operation a [`Fault::Stall`] or [`Fault::Latency`] holds
    /// right now with an I/O error, without running it on the inner store:
    /// what a crash does to writes that had not reached the disk. The
    /// faults themselves stay set (clear them before restarting the node).
    pub fn abandon_held(&self) {
        self.inner.abandoned.fetch_add(1, Ordering::AcqRel);
        tracing::warn!("injected fault: held operations abandoned (crash)");
        self.inner.release.notify_waiters();
    }

    /// How many times `delete_range` removed a suffix of the log (a range
    /// starting after the store's first index: a conflict truncation, as
    /// opposed to compacting a prefix).
    pub fn truncations(&self) -> u64 {
        self.inner.truncations.load(Ordering::Acquire)
    }

    /// How many operations a [`Fault::Stall`] holds right now.
    pub fn stalled(&self) -> usize {
        self.inner.stalled.load(Ordering::Acquire)
    }

    /// How many operations met a fault so far (each stall, error and delay
    /// counts once).
    pub fn injected(&self) -> u64 {
        self.inner.injected.load(Ordering::Acquire)
    }

    /// Applies the fault set on `op` before it runs. Returns the fault to
    /// apply after it ran ([`Fault::FsyncFailure`]), or the error to return
    /// instead of running it.
    async fn before(&self, op: StoreOp) -> Result<Option<Fault>, StorageError> {
        let Some(fault) = self.fault(op) else { return Ok(None) };
        self.inner.injected.fetch_add(1, Ordering::AcqRel);
        match fault {
            Fault::FsyncFailure => Ok(Some(fault)),
            Fault::NoSpace => {
                tracing::warn!(op = %op, "injected fault: no space left on device");
                Err(StorageError::io(format!("{op} (injected fault)"), no_space_error()))
            }
            Fault::Stall => {
                tracing::warn!(op = %op, "injected fault: operation stalled until released");
                let epoch = self.inner.abandoned.load(Ordering::Acquire);
                if self.wait_released(op, epoch).await {
                    return Err(abandoned(op));
                }
                Ok(None)
            }
            Fault::Latency(delay) => {
                let epoch = self.inner.abandoned.load(Ordering::Acquire);
                tokio::select! {
                    () = tokio::time::sleep(delay) => Ok(None),
                    () = self.wait_abandoned(epoch) => Err(abandoned(op)),
                }
            }
        }
    }

    /// Waits until [`FaultInjector::abandon_held`] is called after `epoch`.
    async fn wait_abandoned(&self, epoch: u64) {
        loop {
            let woken = self.inner.release.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.inner.abandoned.load(Ordering::Acquire) != epoch {
                return;
            }
            woken.await;
        }
    }

    /// Waits until `op` no longer has a [`Fault::Stall`]; returns true if it
    /// was abandoned instead ([`FaultInjector::abandon_held`] after `epoch`).
    async fn wait_released(&self, op: StoreOp, epoch: u64) -> bool {
        struct Held<'a>(&'a AtomicUsize);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.inner.stalled.fetch_add(1, Ordering::AcqRel);
        let _held = Held(&self.inner.stalled);
        loop {
            let released = self.inner.release.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is seen.
            released.as_mut().enable();
            if self.inner.abandoned.load(Ordering::Acquire) != epoch {
                return true;
            }
            if self.fault(op) != Some(Fault::Stall) {
                return false;
            }
            released.await;
        }
    }

    /// Runs `op` through the faults set on it.
    async fn run<T, Fut>(&self, op: StoreOp, inner: Fut) -> Result<T, StorageError>
    where
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        let after = self.before(op).await?;
        let value = inner.await?;
        if after == Some(Fault::FsyncFailure) {
            tracing::warn!(op = %op, "injected fault: fsync failed");
            return Err(StorageError::io(format!("fsync after {op} (injected fault)"), io_error()));
        }
        Ok(value)
    }
}

/// The error of an operation abandoned by [`FaultInjector::abandon_held`].
fn abandoned(op: StoreOp) -> StorageError {
    tracing::warn!(op = %op, "injected fault: held operation abandoned");
    StorageError::io(format!("{op} abandoned by a crash (injected fault)"), io_error())
}

/// ENOSPC, as the OS reports a full disk.
fn no_space_error() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(28)
    }
    #[cfg(not(unix))]
    {
        io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
    }
}

/// EIO, as the OS reports a failed fsync.
fn io_error() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(5)
    }
    #[cfg(not(unix))]
    {
        io::Error::other("input/output error")
    }
}

/// Whether `err` is (or wraps) an out-of-space error.
pub fn is_no_space(err: &StorageError) -> bool {
    matches!(err, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

/// A [`LogStore`] and [`StableStore`] that passes every call to `S` through
/// the faults of its [`FaultInjector`]. Cloning it clones `S` and shares the
/// injector.
#[derive(Clone, Debug, Default)]
pub struct FaultyStore<S> {
    inner: S,
    faults: FaultInjector,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner` with a new injector and no faults set.
    pub fn new(inner: S) -> Self {
        Self::with_injector(inner, FaultInjector::new())
    }

    /// Wraps `inner`, taking faults from `faults` (e.g. one shared across a
    /// node's restarts).
    pub fn with_injector(inner: S, faults: FaultInjector) -> Self {
        Self { inner, faults }
    }

    /// The injector that switches this store's faults.
    pub fn injector(&self) -> FaultInjector {
        self.faults.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

#[async_trait]
impl<S: LogStore> LogStore for FaultyStore<S> {
    async fn first_index(&self) -> Result<u64, StorageError> {
        self.faults.run(StoreOp::FirstIndex, self.inner.first_index()).await
    }

    async fn last_index(&self) -> Result<u64, StorageError> {
        self.faults.run(StoreOp::LastIndex, self.inner.last_index()).await
    }

    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        self.faults.run(StoreOp::GetLog, self.inner.get_log(index)).await
    }

    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        self.faults.run(StoreOp::GetLogs, self.inner.get_logs(range)).await
    }

    /// A read of the log like `get_logs`: meets the faults set on
    /// [`StoreOp::GetLogs`].
    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        self.faults.run(StoreOp::GetLogs, self.inner.entry_meta(range)).await
    }

    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        self.faults.run(StoreOp::StoreLogs, self.inner.store_logs(logs)).await
    }

    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        let first = self.inner.first_index().await?;
        self.faults.run(StoreOp::DeleteRange, self.inner.delete_range(min, max)).await?;
        if first > 0 && min > first {
            self.faults.inner.truncations.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

#[async_trait]
impl<S: StableStore> StableStore for FaultyStore<S> {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.faults.run(StoreOp::Set, self.inner.set(key, value)).await
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.faults.run(StoreOp::Get, self.inner.get(key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogType;

    /// A minimal in-memory store: enough to see what reached it.
    #[derive(Clone, Default)]
    struct Mem {
        logs: Arc<Mutex<Vec<Log>>>,
        kv: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
        /// Calls to its own `entry_meta`.
        meta_calls: Arc<AtomicU64>,
    }

    #[async_trait]
    impl LogStore for Mem {
        async fn first_index(&self) -> Result<u64, StorageError> {
            Ok(self.logs.lock().unwrap().first().map_or(0, |l| l.index))
        }
        async fn last_index(&self) -> Result<u64, StorageError> {
            Ok(self.logs.lock().unwrap().last().map_or(0, |l| l.index))
        }
        async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
            Ok(self.logs.lock().unwrap().iter().find(|l| l.index == index).cloned())
        }
        async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
            Ok(self.logs.lock().unwrap().iter().filter(|l| range.contains(&l.index)).cloned().collect())
        }
        async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
            self.meta_calls.fetch_add(1, Ordering::AcqRel);
            Ok(self
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| range.contains(&l.index))
                .map(LogEntryMeta::of)
                .collect())
        }
        async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
            self.logs.lock().unwrap().extend_from_slice(logs);
            Ok(())
        }
        async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
            self.logs.lock().unwrap().retain(|l| l.index < min || l.index > max);
            Ok(())
        }
    }

    #[async_trait]
    impl StableStore for Mem {
        async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
            self.kv.lock().unwrap().insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.kv.lock().unwrap().get(key).cloned())
        }
    }

    fn entry(index: u64) -> Log {
        Log::new(index, 1, LogType::Command, "x")
    }

    #[tokio::test]
    async fn no_space_fails_before_the_write_with_enospc() {
        let store = FaultyStore::new(Mem::default());
        store.injector().inject(StoreOp::StoreLogs, Fault::NoSpace);
        let err = store.store_logs(&[entry(1)]).await.expect_err("injected");
        assert!(is_no_space(&err), "{err}");
        assert!(matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(28)));
        assert_eq!(store.inner().last_index().await.unwrap(), 0, "nothing written");
        assert_eq!(store.injector().injected(), 1);
        // Other operations are untouched.
        store.set(b"k", b"v").await.expect("set");
    }

    #[tokio::test]
    async fn an_fsync_failure_reports_an_io_error_after_the_write() {
        let store = FaultyStore::new(Mem::default());
        store.injector().inject_writes(Fault::FsyncFailure);
        let err = store.set(b"k", b"v").await.expect_err("injected");
        assert!(matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(5)), "{err}");
        assert!(!is_no_space(&err));
        assert_eq!(
            store.inner().get(b"k").await.unwrap(),
            Some(b"v".to_vec()),
            "the write reached the store"
        );
        assert!(store.delete_range(1, 1).await.is_err());
        store.injector().clear(StoreOp::Set);
        store.set(b"k", b"w").await.expect("cleared");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_completes_only_when_released() {
        let store = FaultyStore::new(Mem::default());
        let faults = store.injector();
        faults.inject(StoreOp::StoreLogs, Fault::Stall);
        let writer = {
            let store = store.clone();
            tokio::spawn(async move { store.store_logs(&[entry(1)]).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while faults.stalled() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the write stalls");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!writer.is_finished(), "still stalled a minute of virtual time later");
        assert_eq!(store.inner().last_index().await.unwrap(), 0);
        faults.release();
        writer.await.expect("task").expect("released write succeeds");
        assert_eq!(faults.stalled(), 0);
        assert_eq!(store.inner().last_index().await.unwrap(), 1);
        assert_eq!(faults.fault(StoreOp::StoreLogs), None, "release removes the stall");
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_operations_fail_without_reaching_the_store() {
        let store = FaultyStore::new(Mem::default());
        let faults = store.injector();
        faults.inject(StoreOp::StoreLogs, Fault::Stall);
        faults.inject(StoreOp::Set, Fault::Latency(Duration::from_secs(3600)));
        let stalled = {
            let store = store.clone();
            tokio::spawn(async move { store.store_logs(&[entry(1)]).await })
        };
        let slow = {
            let store = store.clone();
            tokio::spawn(async move { store.set(b"k", b"v").await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(faults.stalled(), 1);
        faults.abandon_held();
        assert!(stalled.await.expect("task").is_err(), "a stalled write fails");
        assert!(slow.await.expect("task").is_err(), "a delayed write fails");
        assert_eq!(store.inner().last_index().await.unwrap(), 0, "nothing written");
        assert_eq!(store.inner().get(b"k").await.unwrap(), None, "nothing written");
        // The faults stay; once cleared, writes go through.
        assert_eq!(faults.fault(StoreOp::StoreLogs), Some(Fault::Stall));
        faults.clear_all();
        store.store_logs(&[entry(1)]).await.expect("store");
    }

    #[tokio::test]
    async fn entry_meta_reaches_the_inner_store_through_the_get_logs_faults() {
        let store = FaultyStore::new(Mem::default());
        store.store_logs(&(1..=5).map(entry).collect::<Vec<_>>()).await.expect("store");
        let got = store.entry_meta(2..4).await.expect("entry_meta");
        assert_eq!(got, vec![LogEntryMeta::of(&entry(2)), LogEntryMeta::of(&entry(3))]);
        assert_eq!(store.inner().meta_calls.load(Ordering::Acquire), 1, "the inner store's own entry_meta");
        store.injector().inject(StoreOp::GetLogs, Fault::NoSpace);
        let err = store.entry_meta(1..6).await.expect_err("injected");
        assert!(is_no_space(&err), "{err}");
        assert_eq!(store.inner().meta_calls.load(Ordering::Acquire), 1, "failed before reaching the store");
        store.injector().inject(StoreOp::GetLogs, Fault::FsyncFailure);
        assert!(store.entry_meta(1..6).await.is_err());
        store.injector().clear_all();
        assert_eq!(store.entry_meta(1..6).await.expect("cleared").len(), 5);
    }

    #[tokio::test]
    async fn only_suffix_deletions_count_as_truncations() {
        let store = FaultyStore::new(Mem::default());
        store.store_logs(&(1..=10).map(entry).collect::<Vec<_>>()).await.expect("store");
        store.delete_range(1, 3).await.expect("compact");
        assert_eq!(store.injector().truncations(), 0, "a prefix is compaction");
        store.delete_range(8, 10).await.expect("truncate");
        assert_eq!(store.injector().truncations(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_the_operation() {
        let store = FaultyStore::new(Mem::default());
        store.injector().inject(StoreOp::StoreLogs, Fault::Latency(Duration::from_millis(250)));
        let start = tokio::time::Instant::now();
        store.store_logs(&[entry(1)]).await.expect("store");
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert_eq!(store.inner().last_index().await.unwrap(), 1);
    }
}
