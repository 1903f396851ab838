//! A 100 MB state machine snapshot streams to a lagging follower through
//! file snapshot stores without either side holding it in memory: the test
//! records every chunk written into the follower's snapshot sink and read by
//! its state machine, and checks none comes close to the snapshot's size.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Config, Configuration, Fsm, FsmSnapshot, Log, Raft, RaftState, Server,
    SnapshotMeta, SnapshotReader, SnapshotSink, SnapshotStore, SnapshotWriter, StorageError,
};
use raft_store_file::{FileSnapshotStore, FileStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

const SNAPSHOT_BYTES: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Largest chunk seen and total bytes, shared by a node's wrappers.
#[derive(Default)]
struct ChunkStats {
    max_write: AtomicU64,
    max_read: AtomicU64,
    written: AtomicU64,
    read: AtomicU64,
}

/// A state machine whose snapshot is `SNAPSHOT_BYTES` of data derived from
/// the number of commands applied, generated and checked chunk by chunk.
struct BigFsm {
    applied: u64,
    stats: Arc<ChunkStats>,
}

fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = seed.wrapping_mul(31).wrapping_add(offset + i as u64);
        *b = (x ^ (x >> 7)) as u8;
    }
}

struct BigSnapshot(u64);

#[async_trait]
impl FsmSnapshot for BigSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        sink.write_u64(self.0).await?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0;
        while offset < SNAPSHOT_BYTES {
            let n = (SNAPSHOT_BYTES - offset).min(CHUNK as u64) as usize;
            pattern(self.0, offset, &mut buf[..n]);
            sink.write_all(&buf[..n]).await?;
            offset += n as u64;
        }
        Ok(())
    }
}

#[async_trait]
impl Fsm for BigFsm {
    type Response = u64;

    async fn apply(&mut self, _log: &Log) -> u64 {
        self.applied += 1;
        self.applied
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(BigSnapshot(self.applied)))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        let applied = snapshot.read_u64().await?;
        let mut buf = vec![0u8; CHUNK];
        let mut expected = vec![0u8; CHUNK];
        let mut offset = 0;
        loop {
            let n = snapshot.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            self.stats.max_read.fetch_max(n as u64, Ordering::Relaxed);
            self.stats.read.fetch_add(n as u64, Ordering::Relaxed);
            pattern(applied, offset, &mut expected[..n]);
            if buf[..n] != expected[..n] {
                return Err(format!("snapshot data differs at offset {offset}").into());
            }
            offset += n as u64;
        }
        if offset != SNAPSHOT_BYTES {
            return Err(format!("snapshot has {offset} bytes, expected {SNAPSHOT_BYTES}").into());
        }
        self.applied = applied;
        Ok(())
    }
}

/// Wraps a snapshot store to record the size of every chunk written.
#[derive(Clone)]
struct Measured {
    inner: FileSnapshotStore,
    stats: Arc<ChunkStats>,
}

struct MeasuredSink {
    inner: Box<dyn SnapshotSink>,
    stats: Arc<ChunkStats>,
}

impl AsyncWrite for MeasuredSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.stats.max_write.fetch_max(buf.len() as u64, Ordering::Relaxed);
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            this.stats.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl SnapshotSink for MeasuredSink {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn finalize(self: Box<Self>) -> Result<SnapshotMeta, StorageError> {
        self.inner.finalize().await
    }
    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        self.inner.cancel().await
    }
}

/// Counts bytes flowing through a reader (the leader's side of the stream).
struct CountingReader {
    inner: SnapshotReader,
    stats: Arc<ChunkStats>,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.stats.max_read.fetch_max(n, Ordering::Relaxed);
        res
    }
}

#[async_trait]
impl SnapshotStore for Measured {
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        let inner = self.inner.create(index, term, configuration, configuration_index).await?;
        Ok(Box::new(MeasuredSink { inner, stats: self.stats.clone() }))
    }
    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        self.inner.list().await
    }
    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        let (meta, reader) = self.inner.open(id).await?;
        Ok((meta, SnapshotReader::new(CountingReader { inner: reader, stats: self.stats.clone() })))
    }
}

struct Node {
    dir: tempfile::TempDir,
    raft: Option<Raft<BigFsm>>,
    stats: Arc<ChunkStats>,
}

fn config(id: &str) -> Config {
    Config {
        local_id: id.into(),
        heartbeat_timeout: Duration::from_millis(300),
        election_timeout: Duration::from_millis(300),
        leader_lease_timeout: Duration::from_millis(300),
        trailing_logs: 0,
        ..Config::default()
    }
}

async fn start(net: &InmemNetwork, id: &str, node: &mut Node) {
    let store = FileStore::open(node.dir.path().join("log")).await.expect("file store");
    let snaps = FileSnapshotStore::new(node.dir.path().join("snapshots"), 2).await.expect("snapshot store");
    let snaps = Measured { inner: snaps, stats: node.stats.clone() };
    let fsm = BigFsm { applied: 0, stats: node.stats.clone() };
    let raft =
        Raft::new(config(id), fsm, store.clone(), store, snaps, net.transport(id)).await.expect("start");
    node.raft = Some(raft);
}

/// Waits until exactly one running node leads and every running node names
/// it (a node that merely says it leads may be a deposed leader that has
/// not heard of the new term yet); returns its position.
async fn leader(nodes: &[Node]) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let running: Vec<&Raft<BigFsm>> = nodes.iter().filter_map(|n| n.raft.as_ref()).collect();
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].raft.as_ref().is_some_and(|r| r.state() == RaftState::Leader))
            .collect();
        if let [l] = leaders[..] {
            let id = nodes[l].raft.as_ref().map(|r| r.metrics().borrow().id.clone());
            if running.iter().all(|r| r.leader().map(|(leader, _)| leader) == id) {
                return l;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreed leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bootstraps `raft` as one member of `members`. A member bootstrapped
/// earlier may already have asked this one for its vote (under load an
/// election timeout can pass while this node opens its file stores): the
/// request gives it a term, so bootstrap refuses with `CantBootstrap`, and
/// the node joins through the configuration the leader replicates.
async fn bootstrap_member(raft: &Raft<BigFsm>, members: Configuration) {
    match raft.bootstrap_cluster(members).await {
        Ok(()) => {}
        Err(raft::Error::CantBootstrap) if raft.metrics().borrow().term > 0 => {}
        Err(e) => panic!("bootstrap: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100mb_snapshot_streams_to_a_follower_in_small_chunks() {
    let net = InmemNetwork::new();
    let ids = ["n1", "n2", "n3"];
    let members = Configuration::new(ids.iter().map(|id| Server::voter(*id, *id)).collect());
    let mut nodes: Vec<Node> = Vec::new();
    for id in ids {
        let mut node = Node {
            dir: tempfile::tempdir().expect("tempdir"),
            raft: None,
            stats: Arc::new(ChunkStats::default()),
        };
        start(&net, id, &mut node).await;
        bootstrap_member(node.raft.as_ref().expect("started"), members.clone()).await;
        nodes.push(node);
    }
    let l = leader(&nodes).await;
    let f = (l + 1) % 3;
    if let Some(r) = nodes[f].raft.take() {
        r.shutdown().await.expect("shutdown");
    }
    net.disconnect(&ids[f].into());
    let raft = nodes[l].raft.clone().expect("leader running");
    for i in 0..50 {
        raft.apply(format!("w{i}"), Duration::from_secs(10)).await.expect("apply");
    }
    let snap = raft.snapshot().await.expect("snapshot");
    assert!(snap.meta().size > SNAPSHOT_BYTES, "the snapshot is over 100 MB");
    // With trailing_logs = 0 the leader compacts everything behind it.
    let mut metrics = raft.metrics();
    tokio::time::timeout(
        Duration::from_secs(20),
        metrics.wait_for(|m| m.snapshot_index >= snap.meta().index),
    )
    .await
    .expect("compacted")
    .expect("metrics");

    start(&net, ids[f], &mut nodes[f]).await;
    let last = raft.barrier(Duration::from_secs(60)).await.expect("barrier");
    let follower = nodes[f].raft.clone().expect("follower running");
    tokio::time::timeout(Duration::from_secs(120), follower.wait_applied(last))
        .await
        .expect("follower caught up in time")
        .expect("follower caught up");

    let stats = &nodes[f].stats;
    let written = stats.written.load(Ordering::Relaxed);
    let max_write = stats.max_write.load(Ordering::Relaxed);
    let max_read = stats.max_read.load(Ordering::Relaxed);
    assert!(written > SNAPSHOT_BYTES, "the follower received the whole snapshot ({written} bytes)");
    assert_eq!(stats.read.load(Ordering::Relaxed), SNAPSHOT_BYTES, "and restored it");
    assert!(max_write <= 1 << 20, "largest chunk written by the follower: {max_write} bytes");
    assert!(max_read <= 1 << 20, "largest chunk read by the follower: {max_read} bytes");
    let leader_max_read = nodes[l].stats.max_read.load(Ordering::Relaxed);
    assert!(leader_max_read <= 1 << 20, "largest chunk the leader read: {leader_max_read} bytes");
    for node in &nodes {
        if let Some(r) = &node.raft {
            r.shutdown().await.expect("shutdown");
        }
    }
}
