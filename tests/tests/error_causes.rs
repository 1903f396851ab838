//! Errors keep their causes, through the public API: an error the user's
//! FSM returns reaches the caller of [`Raft::snapshot`] whole (as
//! [`Error::FsmFailed`], its own type recoverable by downcasting the
//! `source()` chain); a failure of the snapshot store under the FSM is a
//! storage error, not an FSM error; a snapshot before anything was applied
//! is [`Error::NothingToSnapshot`].
//!
//! One node on an in-memory network under tokio's paused clock; every wait
//! is bounded.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Configuration, Error, Fsm, FsmOperation, FsmSnapshot, Log, Raft, RaftState,
    Server, SnapshotMeta, SnapshotReader, SnapshotSink, SnapshotStore, SnapshotWriter, StorageError,
};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::test_config;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The FSM's own error type.
#[derive(Debug)]
struct FsmBroke(&'static str);

impl fmt::Display for FsmBroke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the fsm broke during {}", self.0)
    }
}

impl std::error::Error for FsmBroke {}

/// The snapshot store's own error, inside the I/O error its sink returns.
#[derive(Debug)]
struct DiskBroke;

impl fmt::Display for DiskBroke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the disk broke")
    }
}

impl std::error::Error for DiskBroke {}

/// What fails, switched by the test.
#[derive(Default)]
struct Switches {
    fsm_snapshot: AtomicBool,
    fsm_persist: AtomicBool,
    sink_write: AtomicBool,
}

/// Counts the commands it applies; fails where the switches say.
#[derive(Clone)]
struct SwitchedFsm {
    switches: Arc<Switches>,
    count: Arc<AtomicU64>,
}

struct CountSnapshot {
    count: u64,
    switches: Arc<Switches>,
}

#[async_trait]
impl FsmSnapshot for CountSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        if self.switches.fsm_persist.load(Ordering::SeqCst) {
            return Err(Box::new(FsmBroke("persist")));
        }
        // A sink failure is passed on as it is, as `?` does.
        sink.write_u64(self.count).await?;
        Ok(())
    }
}

#[async_trait]
impl Fsm for SwitchedFsm {
    type Response = u64;

    async fn apply(&mut self, _log: &Log) -> u64 {
        self.count.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        if self.switches.fsm_snapshot.load(Ordering::SeqCst) {
            return Err(Box::new(FsmBroke("snapshot")));
        }
        Ok(Box::new(CountSnapshot {
            count: self.count.load(Ordering::SeqCst),
            switches: self.switches.clone(),
        }))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        self.count.store(snapshot.read_u64().await?, Ordering::SeqCst);
        Ok(())
    }
}

/// An in-memory snapshot store whose new sinks are [`BrokenSink`]s while
/// `sink_write` is on.
#[derive(Clone)]
struct SwitchedStore {
    inner: InmemSnapshotStore,
    switches: Arc<Switches>,
}

/// A sink on a disk that broke: every write fails with the store's own
/// error inside the I/O error.
struct BrokenSink;

impl AsyncWrite for BrokenSink {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, _buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::other(DiskBroke)))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl SnapshotSink for BrokenSink {
    fn id(&self) -> &str {
        "broken"
    }
    async fn finalize(self: Box<Self>) -> Result<SnapshotMeta, StorageError> {
        Err(StorageError::Failed("the disk broke".into()))
    }
    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for SwitchedStore {
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        if self.switches.sink_write.load(Ordering::SeqCst) {
            return Ok(Box::new(BrokenSink));
        }
        self.inner.create(index, term, configuration, configuration_index).await
    }
    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        self.inner.list().await
    }
    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        self.inner.open(id).await
    }
}

/// Starts node n1 with the switched FSM and store; bootstrapped (and
/// waited for as leader, with one command applied) if `bootstrap`.
async fn node(bootstrap: bool) -> (Raft<SwitchedFsm>, Arc<Switches>) {
    let switches = Arc::new(Switches::default());
    let fsm = SwitchedFsm { switches: switches.clone(), count: Arc::default() };
    let snaps = SwitchedStore { inner: InmemSnapshotStore::new(), switches: switches.clone() };
    let store = InmemStore::new();
    let net = InmemNetwork::new();
    let raft = Raft::new(test_config("n1"), fsm, store.clone(), store, snaps, net.transport("n1"))
        .await
        .expect("start n1");
    if bootstrap {
        raft.bootstrap_cluster(Configuration::new(vec![Server::voter("n1", "n1")])).await.expect("bootstrap");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while raft.state() != RaftState::Leader {
            assert!(tokio::time::Instant::now() < deadline, "n1 did not become leader");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let applied = raft.apply("x", Duration::from_secs(5)).await.expect("apply");
        assert_eq!(applied.response, 1);
    }
    (raft, switches)
}

/// The first error of type `T` in `err`'s `source()` chain, looking inside
/// I/O errors too (an `io::Error` hands out its inner error through
/// `get_ref`, not `source`).
fn cause<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(found) = cause::<T>(inner) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}

#[tokio::test(start_paused = true)]
async fn an_fsm_snapshot_error_reaches_the_caller_whole() {
    let (raft, switches) = node(true).await;
    switches.fsm_snapshot.store(true, Ordering::SeqCst);
    let err = raft.snapshot().await.expect_err("the fsm's snapshot fails");
    assert!(matches!(err, Error::FsmFailed { operation: FsmOperation::Snapshot, .. }), "{err:?}");
    let source = err.source().expect("the fsm's error is the source");
    assert_eq!(source.downcast_ref::<FsmBroke>().map(|b| b.0), Some("snapshot"), "{err:?}");
    assert!(err.to_string().contains("the fsm broke during snapshot"), "{err}");
    // With the FSM healthy again, the same call succeeds.
    switches.fsm_snapshot.store(false, Ordering::SeqCst);
    raft.snapshot().await.expect("snapshot");
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn an_fsm_persist_error_reaches_the_caller_whole() {
    let (raft, switches) = node(true).await;
    switches.fsm_persist.store(true, Ordering::SeqCst);
    let err = raft.snapshot().await.expect_err("persisting fails");
    assert!(matches!(err, Error::FsmFailed { operation: FsmOperation::Persist, .. }), "{err:?}");
    assert_eq!(cause::<FsmBroke>(&err).map(|b| b.0), Some("persist"), "{err:?}");
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_store_failure_under_the_fsm_is_a_storage_error() {
    let (raft, switches) = node(true).await;
    switches.sink_write.store(true, Ordering::SeqCst);
    let err = raft.snapshot().await.expect_err("the sink fails");
    assert!(
        matches!(err, Error::Storage(StorageError::Io { .. })),
        "a storage error, not an fsm error: {err:?}"
    );
    assert!(cause::<DiskBroke>(&err).is_some(), "the store's own error is kept: {err:?}");
    assert!(cause::<FsmBroke>(&err).is_none(), "{err:?}");
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_before_anything_was_applied_is_nothing_to_snapshot() {
    let (raft, _switches) = node(false).await;
    let err = raft.snapshot().await.expect_err("nothing to snapshot");
    assert!(matches!(err, Error::NothingToSnapshot), "{err:?}");
    raft.shutdown().await.expect("shutdown");
}
