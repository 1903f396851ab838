//! Issue 14 item 3: a damaged snapshot is never trusted, on any path.
//!
//! Nodes run on `FileStore` + `FileSnapshotStore` (temporary directories)
//! with an FSM that reads a count-prefixed body and so never reaches the end
//! of the snapshot data (where a store's streaming checksum would speak up).
//! - startup: a damaged newest snapshot falls back to an older one (or the
//!   log) when the log bridges to it, and the node refuses to start when it
//!   does not;
//! - InstallSnapshot: a received snapshot damaged at rest on the follower is
//!   not installed; the leader retries and the follower ends up right;
//! - `Raft::restore`: damaged data fails the call with `Corrupt` and leaves
//!   the state as it was.
//!
//! Real time (the stores do real file I/O on their own threads); every wait
//! is bounded.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Bytes, Config, Configuration, Error, Fsm, FsmSnapshot, Log, LogStore, Raft,
    RaftState, Server, ServerAddress, ServerId, SnapshotMeta, SnapshotReader, SnapshotSink, SnapshotStore,
    SnapshotWriter, StorageError,
};
use raft_store_file::{FileSnapshotStore, FileStore};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

type Record = Arc<Mutex<Vec<(u64, Bytes)>>>;

/// Records the commands it applies. Its snapshot is a count followed by
/// that many length-prefixed records: `restore` reads exactly that and
/// never reaches the end of the data.
#[derive(Clone, Default)]
struct CountPrefixedFsm {
    applied: Record,
}

impl CountPrefixedFsm {
    fn record(&self) -> Vec<(u64, Bytes)> {
        self.applied.lock().expect("lock").clone()
    }
}

struct Snap(Vec<(u64, Bytes)>);

#[async_trait]
impl FsmSnapshot for Snap {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        sink.write_u64(self.0.len() as u64).await?;
        for (index, data) in &self.0 {
            sink.write_u64(*index).await?;
            sink.write_u32(u32::try_from(data.len())?).await?;
            sink.write_all(data).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Fsm for CountPrefixedFsm {
    type Response = ();

    async fn apply(&mut self, log: &Log) {
        self.applied.lock().expect("lock").push((log.index, log.data.clone()));
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(Snap(self.record())))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        let n = snapshot.read_u64().await?;
        let mut restored = Vec::new();
        for _ in 0..n {
            let index = snapshot.read_u64().await?;
            let len = snapshot.read_u32().await? as usize;
            let mut data = vec![0; len];
            snapshot.read_exact(&mut data).await?;
            restored.push((index, Bytes::from(data)));
        }
        *self.applied.lock().expect("lock") = restored;
        Ok(())
    }
}

/// A `FileSnapshotStore` that damages (flips one byte of) the stored data
/// of the next `armed` snapshots right after they are finalized: a disk
/// corrupting data at rest.
#[derive(Clone)]
struct DamagingStore {
    inner: FileSnapshotStore,
    armed: Arc<AtomicUsize>,
    damaged: Arc<AtomicUsize>,
    /// When non-zero, the `open` calls to let through before every later
    /// one fails as corrupt (1: the first read-back passes, the FSM's
    /// restore then finds the data damaged).
    opens_before_failure: Arc<AtomicUsize>,
}

impl DamagingStore {
    async fn new(dir: &Path) -> Self {
        Self {
            inner: FileSnapshotStore::new(dir, 2).await.expect("snapshot store"),
            armed: Arc::default(),
            damaged: Arc::default(),
            opens_before_failure: Arc::default(),
        }
    }
}

struct DamagingSink {
    inner: Box<dyn SnapshotSink>,
    dir: PathBuf,
    armed: Arc<AtomicUsize>,
    damaged: Arc<AtomicUsize>,
}

impl AsyncWrite for DamagingSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl SnapshotSink for DamagingSink {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn finalize(self: Box<Self>) -> Result<SnapshotMeta, StorageError> {
        let meta = self.inner.finalize().await?;
        let armed = self.armed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if armed.is_ok() {
            flip_value_byte(&self.dir.join(&meta.id).join("data"));
            self.damaged.fetch_add(1, Ordering::SeqCst);
        }
        Ok(meta)
    }
    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        self.inner.cancel().await
    }
}

#[async_trait]
impl SnapshotStore for DamagingStore {
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        let inner = self.inner.create(index, term, configuration, configuration_index).await?;
        Ok(Box::new(DamagingSink {
            inner,
            dir: self.inner.dir().to_owned(),
            armed: self.armed.clone(),
            damaged: self.damaged.clone(),
        }))
    }
    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        self.inner.list().await
    }
    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        let left = self
            .opens_before_failure
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n > 1).then(|| n - 1));
        if left == Err(1) {
            return Err(StorageError::Corrupt {
                path: id.to_owned(),
                offset: 0,
                reason: "damaged between read-back and restore (injected)".into(),
            });
        }
        self.inner.open(id).await
    }
    async fn delete(&self, id: &str) -> Result<bool, StorageError> {
        self.inner.delete(id).await
    }
}

/// Flips a byte of the last command's payload in a snapshot data file: the
/// FSM still parses it, into one wrong value.
fn flip_value_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read snapshot data");
    let at = bytes.len() - 1;
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).expect("write snapshot data");
}

struct Node {
    id: &'static str,
    logs: tempfile::TempDir,
    snaps: tempfile::TempDir,
    fsm: CountPrefixedFsm,
    store: Option<FileStore>,
    raft: Option<Raft<CountPrefixedFsm>>,
}

impl Node {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            logs: tempfile::tempdir().expect("tempdir"),
            snaps: tempfile::tempdir().expect("tempdir"),
            fsm: CountPrefixedFsm::default(),
            store: None,
            raft: None,
        }
    }

    fn raft(&self) -> &Raft<CountPrefixedFsm> {
        self.raft.as_ref().expect("running")
    }

    /// Starts from the node's directories with a fresh FSM.
    async fn try_start(
        &mut self,
        net: &InmemNetwork,
        trailing_logs: u64,
        snaps: impl SnapshotStore,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + LIMIT;
        let store = loop {
            // Retry while the previous incarnation still holds the lock.
            match FileStore::open(self.logs.path()).await {
                Ok(s) => break s,
                Err(e) => assert!(tokio::time::Instant::now() < deadline, "reopen: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let config = Config {
            local_id: ServerId::from(self.id),
            heartbeat_timeout: Duration::from_millis(200),
            election_timeout: Duration::from_millis(200),
            leader_lease_timeout: Duration::from_millis(200),
            commit_timeout: Duration::from_millis(5),
            // Snapshots only when the test asks.
            snapshot_threshold: u64::MAX / 4,
            snapshot_interval: Duration::from_secs(3600),
            trailing_logs,
            ..Config::default()
        };
        self.fsm = CountPrefixedFsm::default();
        let raft =
            Raft::new(config, self.fsm.clone(), store.clone(), store.clone(), snaps, net.transport(self.id))
                .await?;
        self.store = Some(store);
        self.raft = Some(raft);
        Ok(())
    }

    async fn stop(&mut self, net: &InmemNetwork) {
        if let Some(raft) = self.raft.take() {
            tokio::time::timeout(LIMIT, raft.shutdown()).await.expect("shutdown in time").expect("shutdown");
        }
        self.store = None;
        net.disconnect(&ServerAddress::from(self.id));
    }

    async fn wait_leader(&self) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while self.raft().state() != RaftState::Leader {
            assert!(tokio::time::Instant::now() < deadline, "{} never led", self.id);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn write(&self, tag: &str, n: usize) {
        for i in 0..n {
            self.raft().apply(format!("{tag}-{i}"), LIMIT).await.expect("apply");
        }
    }
}

/// Starts a single-voter cluster on `node`.
async fn single(net: &InmemNetwork, node: &mut Node, trailing_logs: u64) {
    let snaps = FileSnapshotStore::new(node.snaps.path(), 2).await.expect("snapshot store");
    node.try_start(net, trailing_logs, snaps).await.expect("start");
    let conf = Configuration::new(vec![Server::voter(node.id, node.id)]);
    node.raft().bootstrap_cluster(conf).await.expect("bootstrap");
    node.wait_leader().await;
}

/// Waits until the node's log store no longer holds entry 1 (compacted; an
/// entirely compacted log is empty, first index 0).
async fn wait_compacted(node: &Node) {
    let store = node.store.as_ref().expect("store");
    let deadline = tokio::time::Instant::now() + LIMIT;
    while store.first_index().await.expect("first_index") == 1 {
        assert!(tokio::time::Instant::now() < deadline, "log never compacted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_newest_snapshot_falls_back_to_an_older_one_and_the_log() {
    let net = InmemNetwork::new();
    let mut node = Node::new("a");
    // The log keeps everything: it bridges from any snapshot to the newest.
    single(&net, &mut node, 100_000).await;
    node.write("x", 20).await;
    let older = node.raft().snapshot().await.expect("snapshot");
    node.write("y", 20).await;
    let newest = node.raft().snapshot().await.expect("snapshot");
    assert!(newest.meta().index > older.meta().index);
    node.write("z", 5).await;
    let before = node.fsm.record();
    node.stop(&net).await;

    flip_value_byte(&node.snaps.path().join(&newest.meta().id).join("data"));
    let snaps = FileSnapshotStore::new(node.snaps.path(), 2).await.expect("snapshot store");
    node.try_start(&net, 100_000, snaps).await.expect("restart");
    node.wait_leader().await;
    let last = node.raft().barrier(LIMIT).await.expect("barrier");
    tokio::time::timeout(LIMIT, node.raft().wait_applied(last)).await.expect("applied").expect("applied");
    assert_eq!(node.fsm.record(), before, "the state before the restart, not one wrong value");
    node.stop(&net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_only_snapshot_falls_back_to_the_whole_log() {
    let net = InmemNetwork::new();
    let mut node = Node::new("a");
    single(&net, &mut node, 100_000).await;
    node.write("x", 30).await;
    let snap = node.raft().snapshot().await.expect("snapshot");
    node.write("y", 3).await;
    let before = node.fsm.record();
    node.stop(&net).await;

    flip_value_byte(&node.snaps.path().join(&snap.meta().id).join("data"));
    let snaps = FileSnapshotStore::new(node.snaps.path(), 2).await.expect("snapshot store");
    node.try_start(&net, 100_000, snaps).await.expect("restart");
    node.wait_leader().await;
    let last = node.raft().barrier(LIMIT).await.expect("barrier");
    tokio::time::timeout(LIMIT, node.raft().wait_applied(last)).await.expect("applied").expect("applied");
    assert_eq!(node.fsm.record(), before, "rebuilt from the log");
    node.stop(&net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_newest_snapshot_without_a_bridging_log_refuses_to_start() {
    let net = InmemNetwork::new();
    let mut node = Node::new("a");
    // No trailing entries: each snapshot compacts the log right behind it,
    // so the older snapshot plus the log cannot reach the newest one.
    single(&net, &mut node, 0).await;
    node.write("x", 20).await;
    node.raft().snapshot().await.expect("snapshot");
    wait_compacted(&node).await;
    node.write("y", 20).await;
    let newest = node.raft().snapshot().await.expect("snapshot");
    let store = node.store.clone().expect("store");
    let deadline = tokio::time::Instant::now() + LIMIT;
    while (1..=newest.meta().index).contains(&store.first_index().await.expect("first")) {
        assert!(tokio::time::Instant::now() < deadline, "log never compacted behind the newest snapshot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(store);
    node.stop(&net).await;

    flip_value_byte(&node.snaps.path().join(&newest.meta().id).join("data"));
    let snaps = FileSnapshotStore::new(node.snaps.path(), 2).await.expect("snapshot store");
    match node.try_start(&net, 0, snaps).await {
        Err(Error::Storage(StorageError::Corrupt { reason, .. })) => {
            assert!(reason.contains(&newest.meta().id), "{reason}");
            assert!(reason.contains("refusing to start"), "{reason}");
        }
        Err(other) => panic!("expected a Corrupt refusal, got {other}"),
        Ok(()) => {
            let got = node.fsm.record();
            node.stop(&net).await;
            panic!("started with a damaged snapshot and no way to rebuild it; state: {} entries", got.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_snapshot_damaged_at_rest_is_not_installed_and_the_leader_retries() {
    let net = InmemNetwork::new();
    let mut leader = Node::new("a");
    single(&net, &mut leader, 0).await;
    leader.write("x", 40).await;
    leader.raft().snapshot().await.expect("snapshot");
    wait_compacted(&leader).await;
    let expected = leader.fsm.record();

    // The follower's disk damages the first snapshot it stores.
    let mut follower = Node::new("b");
    let snaps = DamagingStore::new(follower.snaps.path()).await;
    snaps.armed.store(1, Ordering::SeqCst);
    let damaged = snaps.damaged.clone();
    let follower_snaps = snaps.inner.clone();
    follower.try_start(&net, 0, snaps).await.expect("start follower");
    leader
        .raft()
        .add_voter(ServerId::from("b"), ServerAddress::from("b"), 0, LIMIT)
        .await
        .expect("add_voter");
    let last = leader.raft().barrier(LIMIT).await.expect("barrier");
    tokio::time::timeout(LIMIT, follower.raft().wait_applied(last)).await.expect("applied").expect("applied");
    assert_eq!(damaged.load(Ordering::SeqCst), 1, "the first received snapshot was damaged on disk");
    assert_eq!(follower.fsm.record(), expected, "the follower installed only the intact retry");
    // The refused copy was deleted: every listed snapshot opens.
    let listed = follower_snaps.list().await.expect("list");
    assert!(!listed.is_empty());
    for meta in listed {
        follower_snaps.open(&meta.id).await.expect("only intact snapshots stay listed");
    }
    follower.stop(&net).await;
    leader.stop(&net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_restore_of_damaged_data_fails_as_corrupt_and_keeps_the_state() {
    let net = InmemNetwork::new();
    let mut node = Node::new("a");
    let snaps = DamagingStore::new(node.snaps.path()).await;
    let armed = snaps.armed.clone();
    node.try_start(&net, 100_000, snaps).await.expect("start");
    node.raft()
        .bootstrap_cluster(Configuration::new(vec![Server::voter("a", "a")]))
        .await
        .expect("bootstrap");
    node.wait_leader().await;
    node.write("backup", 10).await;
    let backup = node.raft().snapshot().await.expect("snapshot");
    node.write("later", 10).await;
    let before = node.fsm.record();

    // The local copy the restore stores is damaged on disk.
    armed.store(1, Ordering::SeqCst);
    let (meta, reader) = backup.open().await.expect("open backup");
    match node.raft().restore(meta, reader, LIMIT).await {
        Err(Error::Storage(StorageError::Corrupt { .. })) => {}
        other => panic!("expected Err(Storage(Corrupt)), got {other:?}"),
    }
    assert_eq!(node.fsm.record(), before, "the state is unchanged");
    // The node still takes writes.
    node.write("after", 1).await;
    node.stop(&net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_fails_after_the_read_back_stops_the_node_and_says_why() {
    let net = InmemNetwork::new();
    let mut node = Node::new("a");
    let snaps = DamagingStore::new(node.snaps.path()).await;
    let opens = snaps.opens_before_failure.clone();
    node.try_start(&net, 100_000, snaps).await.expect("start");
    node.raft()
        .bootstrap_cluster(Configuration::new(vec![Server::voter("a", "a")]))
        .await
        .expect("bootstrap");
    node.wait_leader().await;
    node.write("backup", 10).await;
    let backup = node.raft().snapshot().await.expect("snapshot");
    node.write("later", 10).await;

    // The stored copy reads back intact, then the FSM's restore finds
    // it damaged: the state machine can no longer be trusted.
    // Opens let through: the backup itself, then the read-back of its
    // stored copy; the FSM's restore is the next.
    opens.store(3, Ordering::SeqCst);
    let (meta, reader) = backup.open().await.expect("open backup");
    let result = node.raft().restore(meta, reader, LIMIT).await;
    assert!(result.is_err(), "a restore whose FSM restore failed must not succeed: {result:?}");
    // The node publishes its final metrics, with the reason, before its
    // state turns to Shutdown: whoever sees the state finds the reason.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while node.raft().state() != RaftState::Shutdown {
        assert!(tokio::time::Instant::now() < deadline, "the node kept running on an untrusted FSM");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let why = node.raft().metrics().borrow().fatal_error.clone();
    assert!(
        why.as_deref().is_some_and(|w| w.contains("restoring the state machine")),
        "metrics must say why the node stopped: {why:?}"
    );
    node.stop(&net).await;
}

/// `recover_cluster` (the peers.json case) restores like a start does: a
/// damaged newest snapshot falls back to an older one and the log, and the
/// recovered node comes back with every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_with_a_damaged_newest_snapshot_falls_back_to_an_older_one_and_the_log() {
    let net = InmemNetwork::new();
    let mut node = Node::new("a");
    single(&net, &mut node, 100_000).await;
    node.write("x", 20).await;
    node.raft().snapshot().await.expect("snapshot");
    node.write("y", 20).await;
    let newest = node.raft().snapshot().await.expect("snapshot");
    node.write("z", 5).await;
    let before = node.fsm.record();
    node.stop(&net).await;
    flip_value_byte(&node.snaps.path().join(&newest.meta().id).join("data"));

    let store = FileStore::open(node.logs.path()).await.expect("open the log");
    let snaps = FileSnapshotStore::new(node.snaps.path(), 2).await.expect("snapshot store");
    let config = Config { local_id: ServerId::from(node.id), ..Config::default() };
    let only_a = Configuration::new(vec![Server::voter(node.id, node.id)]);
    raft::recover_cluster(&config, CountPrefixedFsm::default(), &store, &store, &snaps, only_a)
        .await
        .expect("recovery falls back past the damaged snapshot");
    drop(store);

    let snaps = FileSnapshotStore::new(node.snaps.path(), 2).await.expect("snapshot store");
    node.try_start(&net, 100_000, snaps).await.expect("restart");
    node.wait_leader().await;
    let last = node.raft().barrier(LIMIT).await.expect("barrier");
    tokio::time::timeout(LIMIT, node.raft().wait_applied(last)).await.expect("applied").expect("applied");
    assert_eq!(node.fsm.record(), before, "every write, none wrong");
    node.stop(&net).await;
}
