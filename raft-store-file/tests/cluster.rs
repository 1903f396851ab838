//! Three real `raft::Raft` nodes on `FileStore` and `FileSnapshotStore`
//! (temporary directories) talking over the in-memory network: they take
//! writes (with automatic snapshots and log compaction along the way), all
//! three stop, reopen from their directories with fresh FSMs, rebuild the
//! same state, elect a leader and accept new writes.
//!
//! Real time, because the stores do real file I/O on their own threads;
//! every wait is bounded by a deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Bytes, Config, Configuration, Fsm, FsmSnapshot, Log, LogStore, Raft, RaftState,
    Server, ServerAddress, ServerId, SnapshotReader, SnapshotStore, SnapshotWriter,
};
use raft_store_file::{FileSnapshotStore, FileStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound of any single wait in this file.
const LIMIT: Duration = Duration::from_secs(20);

/// What a node's FSM applied: `(index, command)` in order, shared with the
/// test.
type Applied = Arc<Mutex<Vec<(u64, Bytes)>>>;

/// Records every command it applies; snapshots are the whole record.
#[derive(Clone, Default)]
struct RecordingFsm {
    applied: Applied,
}

impl RecordingFsm {
    fn record(&self) -> Vec<(u64, Bytes)> {
        self.applied.lock().expect("lock").clone()
    }
}

struct RecordSnapshot(Vec<(u64, Bytes)>);

#[async_trait]
impl FsmSnapshot for RecordSnapshot {
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
impl Fsm for RecordingFsm {
    type Response = u64;

    async fn apply(&mut self, log: &Log) -> u64 {
        let mut applied = self.applied.lock().expect("lock");
        applied.push((log.index, log.data.clone()));
        applied.len() as u64
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(RecordSnapshot(self.record())))
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

/// A node's directories (kept across restarts) and, while it runs, its
/// handle and FSM.
struct Node {
    id: String,
    logs_dir: tempfile::TempDir,
    snaps_dir: tempfile::TempDir,
    raft: Option<Raft<RecordingFsm>>,
    fsm: RecordingFsm,
}

impl Node {
    fn raft(&self) -> &Raft<RecordingFsm> {
        self.raft.as_ref().expect("node is running")
    }
}

fn config(id: &str) -> Config {
    Config {
        local_id: ServerId::from(id),
        heartbeat_timeout: Duration::from_millis(300),
        election_timeout: Duration::from_millis(300),
        leader_lease_timeout: Duration::from_millis(300),
        commit_timeout: Duration::from_millis(5),
        // Snapshot and compact often, so the restart also has to combine a
        // snapshot with the log tail after it.
        snapshot_threshold: 300,
        trailing_logs: 50,
        snapshot_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

/// Opens `dir`'s `FileStore`, retrying while the previous incarnation's
/// last clone is still being dropped (the directory lock is held until then).
async fn open_store(dir: &std::path::Path) -> FileStore {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match FileStore::open(dir).await {
            Ok(store) => return store,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "cannot reopen {}: {err}", dir.display());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Starts (or restarts) `node` from its directories with a fresh FSM.
async fn start(net: &InmemNetwork, node: &mut Node) {
    let store = open_store(node.logs_dir.path()).await;
    let snaps = FileSnapshotStore::new(node.snaps_dir.path(), 2).await.expect("open snapshot store");
    let fsm = RecordingFsm::default();
    let raft = Raft::new(
        config(&node.id),
        fsm.clone(),
        store.clone(),
        store,
        snaps,
        net.transport(node.id.as_str()),
    )
    .await
    .expect("start node");
    node.fsm = fsm;
    node.raft = Some(raft);
}

async fn stop(net: &InmemNetwork, node: &mut Node) {
    if let Some(raft) = node.raft.take() {
        tokio::time::timeout(LIMIT, raft.shutdown()).await.expect("shutdown in time").expect("shutdown");
    }
    net.disconnect(&ServerAddress::from(node.id.as_str()));
}

/// Bootstraps `raft` as one member of `configuration`. A member started
/// and bootstrapped earlier may already have asked this one for its vote
/// (under load an election timeout can pass while this node opens its
/// stores): the request gives it a term, so bootstrap refuses with
/// `CantBootstrap`, and the node joins through the configuration the
/// leader replicates instead.
async fn bootstrap_member(raft: &Raft<RecordingFsm>, configuration: Configuration) {
    match raft.bootstrap_cluster(configuration).await {
        Ok(()) => {}
        Err(raft::Error::CantBootstrap) if raft.metrics().borrow().term > 0 => {}
        Err(e) => panic!("bootstrap: {e}"),
    }
}

/// Waits until exactly one node leads and every node names it; returns its
/// position.
async fn wait_for_leader(nodes: &[Node]) -> usize {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let leaders: Vec<usize> =
            (0..nodes.len()).filter(|&i| nodes[i].raft().state() == RaftState::Leader).collect();
        if let [leader] = leaders[..] {
            let id = nodes[leader].id.as_str();
            if nodes.iter().all(|n| n.raft().leader().is_some_and(|(l, _)| l.as_str() == id)) {
                return leader;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreed leader within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies `cmd` through whichever node leads, retrying while there is no
/// leader or leadership moves mid-call. A retry after `LeadershipLost` or
/// `Timeout` may apply the command twice (its first outcome is unknown),
/// so the test compares [`distinct`] commands.
async fn apply_one(nodes: &[Node], cmd: String) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(node) = nodes.iter().find(|n| n.raft().state() == RaftState::Leader) {
            match node.raft().apply(cmd.clone(), Duration::from_secs(5)).await {
                Ok(_) => return,
                Err(
                    raft::Error::NotLeader { .. }
                    | raft::Error::LeadershipLost
                    | raft::Error::LeadershipTransferInProgress
                    | raft::Error::Timeout
                    | raft::Error::EnqueueTimeout,
                ) => {}
                Err(err) => panic!("{cmd} failed: {err}"),
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{cmd}: no leader took it within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies the commands `{tag}-0` .. `{tag}-{count - 1}`, 32 in flight.
async fn write(nodes: &[Node], tag: &str, count: usize) {
    futures::stream::iter(0..count)
        .map(|i| apply_one(nodes, format!("{tag}-{i}")))
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// Commits a barrier on the current leader (retrying if leadership moves)
/// and waits until every node applied it.
async fn sync_all(nodes: &[Node]) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let index = loop {
        let leader = wait_for_leader(nodes).await;
        match nodes[leader].raft().barrier(Duration::from_secs(5)).await {
            Ok(index) => break index,
            Err(err) => assert!(tokio::time::Instant::now() < deadline, "no barrier within {LIMIT:?}: {err}"),
        }
    };
    for node in nodes {
        tokio::time::timeout(LIMIT, node.raft().wait_applied(index))
            .await
            .unwrap_or_else(|_| panic!("{} did not apply {index}", node.id))
            .expect("wait_applied");
    }
}

/// The distinct commands of a record, sorted.
fn distinct(record: &[(u64, Bytes)]) -> Vec<Bytes> {
    let mut cmds: Vec<Bytes> = record.iter().map(|(_, data)| data.clone()).collect();
    cmds.sort();
    cmds.dedup();
    cmds
}

/// The commands `write(.., tag, count)` produces, sorted like [`distinct`].
fn expected(tags: &[(&str, usize)]) -> Vec<Bytes> {
    let mut cmds: Vec<Bytes> =
        tags.iter().flat_map(|(tag, n)| (0..*n).map(move |i| Bytes::from(format!("{tag}-{i}")))).collect();
    cmds.sort();
    cmds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_file_store_nodes_stop_reopen_and_keep_their_state() {
    let net = InmemNetwork::new();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| Node {
            id: format!("n{i}"),
            logs_dir: tempfile::tempdir().expect("tempdir"),
            snaps_dir: tempfile::tempdir().expect("tempdir"),
            raft: None,
            fsm: RecordingFsm::default(),
        })
        .collect();
    let configuration =
        Configuration::new(nodes.iter().map(|n| Server::voter(n.id.as_str(), n.id.as_str())).collect());
    for node in &mut nodes {
        start(&net, node).await;
        bootstrap_member(node.raft(), configuration.clone()).await;
    }

    // Writes, enough for several automatic snapshots and compactions.
    const FIRST: usize = 2_000;
    wait_for_leader(&nodes).await;
    write(&nodes, "a", FIRST).await;
    sync_all(&nodes).await;
    let before = nodes[0].fsm.record();
    assert_eq!(distinct(&before), expected(&[("a", FIRST)]));
    for node in &nodes {
        assert_eq!(node.fsm.record(), before, "{} applied the same commands", node.id);
    }
    // Every node snapshots and compacts on its own (the snapshot task
    // checks every 50 ms or so).
    for node in &nodes {
        let mut metrics = node.raft().metrics();
        tokio::time::timeout(LIMIT, metrics.wait_for(|m| m.snapshot_index > 0))
            .await
            .unwrap_or_else(|_| panic!("{} never snapshotted", node.id))
            .expect("metrics");
    }

    // Stop every node; nothing survives but the directories.
    for node in &mut nodes {
        stop(&net, node).await;
    }
    // The directories hold snapshots and a compacted log.
    for node in &nodes {
        let snaps = FileSnapshotStore::new(node.snaps_dir.path(), 2).await.expect("snapshot store");
        assert!(!snaps.list().await.expect("list").is_empty(), "{} kept its snapshot", node.id);
        let store = open_store(node.logs_dir.path()).await;
        assert!(store.first_index().await.expect("first index") > 1, "{}'s log was compacted", node.id);
        assert!(store.last_index().await.expect("last index") as usize > FIRST, "{} kept its log", node.id);
    }

    // Reopen all three with fresh FSMs: they elect a leader and rebuild the
    // same state from snapshot plus log.
    for node in &mut nodes {
        start(&net, node).await;
    }
    wait_for_leader(&nodes).await;
    sync_all(&nodes).await;
    for node in &nodes {
        assert_eq!(node.fsm.record(), before, "{} rebuilt the same state after reopening", node.id);
    }

    // The reopened cluster accepts new writes, on every node.
    write(&nodes, "b", 500).await;
    sync_all(&nodes).await;
    let after = nodes[0].fsm.record();
    assert_eq!(distinct(&after), expected(&[("a", FIRST), ("b", 500)]));
    assert_eq!(after[..before.len()], before[..], "history unchanged");
    for node in &nodes {
        assert_eq!(node.fsm.record(), after, "{} applied the new writes", node.id);
    }
    for node in &mut nodes {
        stop(&net, node).await;
    }
}
