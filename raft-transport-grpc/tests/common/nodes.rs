//! Real `raft::Raft` nodes over gRPC on loopback with durable stores
//! (`FileStore` + `FileSnapshotStore` in temporary directories) that can be
//! stopped and restarted from their directories on the same port, and a
//! recording FSM whose state is easy to compare between nodes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use raft::{
    async_trait, BoxError, Config, Configuration, Fsm, FsmSnapshot, Log, LogStore, Raft, RaftState, Server,
    ServerId, SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter,
};
use raft_store_file::{FileSnapshotStore, FileStore};
use raft_transport_grpc::{GrpcConfig, GrpcTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::STEP;

/// Polls `check` every 10 ms until it returns `Some`, failing the test
/// after [`STEP`].
pub async fn poll<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll_within(what, STEP, check).await
}

/// Like [`poll`], failing the test after `bound`.
pub async fn poll_within<T>(what: &str, bound: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(out) = check() {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records every `u64` command in order; the snapshot is the whole record
/// (8 bytes per command, so it is big enough to take several chunks).
#[derive(Clone, Default)]
pub struct ValuesFsm {
    values: Arc<Mutex<Vec<u64>>>,
}

impl ValuesFsm {
    /// Everything applied so far, in log order.
    pub fn values(&self) -> Vec<u64> {
        self.values.lock().expect("lock").clone()
    }

    /// How many commands were applied.
    pub fn len(&self) -> usize {
        self.values.lock().expect("lock").len()
    }
}

struct ValuesSnapshot(Vec<u64>);

#[async_trait]
impl FsmSnapshot for ValuesSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        sink.write_u64(self.0.len() as u64).await?;
        let bytes: Vec<u8> = self.0.iter().flat_map(|v| v.to_le_bytes()).collect();
        sink.write_all(&bytes).await?;
        Ok(())
    }
}

#[async_trait]
impl Fsm for ValuesFsm {
    type Response = u64;

    async fn apply(&mut self, log: &Log) -> u64 {
        let value = <[u8; 8]>::try_from(&log.data[..]).map(u64::from_le_bytes).unwrap_or(u64::MAX);
        let mut values = self.values.lock().expect("lock");
        values.push(value);
        values.len() as u64
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(ValuesSnapshot(self.values())))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        let n = snapshot.read_u64().await?;
        let mut bytes = vec![0u8; usize::try_from(n)? * 8];
        snapshot.read_exact(&mut bytes).await?;
        let values = bytes
            .chunks_exact(8)
            .map(|c| <[u8; 8]>::try_from(c).map(u64::from_le_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        *self.values.lock().expect("lock") = values;
        Ok(())
    }
}

/// Size in bytes of a [`ValuesFsm`] snapshot holding `n` values.
pub fn snapshot_size(n: usize) -> u64 {
    8 + 8 * n as u64
}

/// Raft timeouts for real time on a loaded loopback. The tests go on
/// talking to the leader they found (admin calls, snapshots, refusals that
/// name it), so a spurious election is a failure: 300 ms saw one on a
/// loaded 2-core machine (message_limits); a second is far above any
/// stall seen there.
pub fn raft_config(id: &str) -> Config {
    Config {
        local_id: ServerId::from(id),
        heartbeat_timeout: Duration::from_secs(1),
        election_timeout: Duration::from_secs(1),
        leader_lease_timeout: Duration::from_secs(1),
        commit_timeout: Duration::from_millis(5),
        ..Config::default()
    }
}

/// One node: its directories, port and settings survive restarts.
pub struct GrpcNode {
    /// Server id ("n1", ...).
    pub id: String,
    /// The loopback socket it serves on (fixed after the first start).
    pub socket: SocketAddr,
    /// Transport settings.
    pub grpc: GrpcConfig,
    /// Raft settings for the next start.
    pub config: Config,
    /// Log + stable store directory.
    pub logs_dir: tempfile::TempDir,
    /// Snapshot store directory.
    pub snaps_dir: tempfile::TempDir,
    /// The running node.
    pub raft: Option<Raft<ValuesFsm>>,
    /// The current incarnation's FSM.
    pub fsm: ValuesFsm,
    /// A clone of the running node's log store, for inspection (dropped on
    /// stop so the directory can be reopened).
    pub store: Option<FileStore>,
    /// The snapshot store (safe to share: it holds no lock).
    pub snaps: Option<FileSnapshotStore>,
}

impl GrpcNode {
    /// The running node's handle.
    pub fn raft(&self) -> &Raft<ValuesFsm> {
        self.raft.as_ref().unwrap_or_else(|| panic!("{} is not running", self.id))
    }

    /// The address peers reach it at.
    pub fn addr(&self) -> String {
        self.socket.to_string()
    }

    /// Binds the transport (on `socket`, retrying while the previous
    /// incarnation's listener is still closing), opens the stores and
    /// starts the node with a fresh FSM; attaches it to the admin service.
    pub async fn start(&mut self) {
        let deadline = Instant::now() + STEP;
        let transport = loop {
            match GrpcTransport::bind(self.socket, self.grpc.clone()).await {
                Ok(t) => break t,
                Err(err) => {
                    assert!(Instant::now() < deadline, "{}: cannot rebind {}: {err}", self.id, self.socket);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        self.socket = transport.socket_addr();
        let slot = transport.admin();
        let store = FileStore::open(self.logs_dir.path()).await.expect("open log store");
        let snaps = FileSnapshotStore::new(self.snaps_dir.path(), 2).await.expect("open snapshot store");
        let fsm = ValuesFsm::default();
        let raft = Raft::new(
            self.config.clone(),
            fsm.clone(),
            store.clone(),
            store.clone(),
            snaps.clone(),
            transport,
        )
        .await
        .expect("start node");
        slot.attach(raft.clone());
        self.raft = Some(raft);
        self.fsm = fsm;
        self.store = Some(store);
        self.snaps = Some(snaps);
    }

    /// Shuts the node down; its directories stay.
    pub async fn stop(&mut self) {
        if let Some(raft) = self.raft.take() {
            super::bounded("shutdown", raft.shutdown()).await.expect("shutdown");
        }
        self.store = None;
    }

    /// First index of the running node's log.
    pub async fn first_index(&self) -> u64 {
        self.store.as_ref().expect("running").first_index().await.expect("first index")
    }

    /// The snapshots in the node's store, newest first.
    pub async fn snapshots(&self) -> Vec<SnapshotMeta> {
        let snaps = match &self.snaps {
            Some(s) => s.clone(),
            None => FileSnapshotStore::new(self.snaps_dir.path(), 2).await.expect("snapshot store"),
        };
        snaps.list().await.expect("list snapshots")
    }
}

/// Creates `n` nodes on ephemeral loopback ports (not started).
pub async fn new_nodes(n: usize, grpc: impl Fn(&str) -> GrpcConfig) -> Vec<GrpcNode> {
    // Reserve the ports by binding once (`start` binds them again). Every
    // probe stays bound until all are chosen: a port released at once can
    // be handed out again to the next probe, giving two nodes one address.
    let mut probes = Vec::new();
    for _ in 1..=n {
        probes.push(super::bind(super::test_config()).await);
    }
    let sockets: Vec<_> = probes.iter().map(|p| p.socket_addr()).collect();
    for probe in probes {
        super::bounded("release probe port", probe.shutdown()).await;
    }
    let mut nodes = Vec::new();
    for (i, socket) in (1..=n).zip(sockets) {
        let id = format!("n{i}");
        nodes.push(GrpcNode {
            grpc: grpc(&id),
            config: raft_config(&id),
            id,
            socket,
            logs_dir: tempfile::tempdir().expect("tempdir"),
            snaps_dir: tempfile::tempdir().expect("tempdir"),
            raft: None,
            fsm: ValuesFsm::default(),
            store: None,
            snaps: None,
        });
    }
    nodes
}

/// Starts every node and bootstraps them as one cluster of voters.
pub async fn start_cluster(nodes: &mut [GrpcNode]) {
    let configuration =
        Configuration::new(nodes.iter().map(|n| Server::voter(n.id.as_str(), n.addr())).collect());
    for node in nodes.iter_mut() {
        node.start().await;
        bootstrap_member(node.raft(), configuration.clone()).await;
    }
}

/// Bootstraps `raft` as one member of `configuration`. A member
/// bootstrapped earlier may already have asked this one for its vote (under
/// load an election timeout can pass while this node starts): the vote
/// request gives it a term, so bootstrap refuses with `CantBootstrap`, as
/// HashiCorp's does, and the node joins through the configuration the
/// leader replicates.
pub async fn bootstrap_member<F: raft::Fsm>(raft: &raft::Raft<F>, configuration: raft::Configuration) {
    match raft.bootstrap_cluster(configuration).await {
        Ok(()) => {}
        Err(raft::Error::CantBootstrap) if raft.metrics().borrow().term > 0 => {}
        Err(e) => panic!("bootstrap: {e}"),
    }
}

/// Waits until exactly one running node leads and every running node
/// names it; returns its position in `nodes`.
pub async fn wait_for_leader(nodes: &[GrpcNode]) -> usize {
    poll("agreed leader", || {
        let running: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].raft.is_some()).collect();
        let leaders: Vec<usize> =
            running.iter().copied().filter(|&i| nodes[i].raft().state() == RaftState::Leader).collect();
        let [leader] = leaders[..] else { return None };
        let id = nodes[leader].id.as_str();
        running
            .iter()
            .all(|&i| nodes[i].raft().leader().is_some_and(|(l, _)| l.as_str() == id))
            .then_some(leader)
    })
    .await
}

/// Applies `value` through whichever running node leads, retrying (within
/// [`STEP`]) when there is no leader or leadership moves mid-call. A retry
/// after `LeadershipLost` or `Timeout` may apply the value twice (its first
/// outcome is unknown), so tests compare [`distinct`] values. Returns the
/// index it was committed at.
pub async fn apply_one(nodes: &[GrpcNode], value: u64) -> u64 {
    apply_command(nodes, value.to_le_bytes().to_vec(), &format!("write {value}")).await
}

/// Applies the command `cmd` through whichever running node leads, retrying
/// as [`apply_one`] does; `what` names it in a failure.
pub async fn apply_command(nodes: &[GrpcNode], cmd: Vec<u8>, what: &str) -> u64 {
    apply_command_within(nodes, cmd, what, Duration::from_secs(5), STEP).await
}

/// Like [`apply_command`], with each attempt given `per_call` and all of
/// them `bound` (for commands whose replication takes long on a loaded
/// machine, such as ones of many MiB: an attempt cut off too early is
/// retried and appends the command again, which only adds work).
pub async fn apply_command_within(
    nodes: &[GrpcNode],
    cmd: Vec<u8>,
    what: &str,
    per_call: Duration,
    bound: Duration,
) -> u64 {
    let deadline = Instant::now() + bound;
    loop {
        let leader = nodes.iter().find(|n| n.raft.as_ref().is_some_and(|r| r.state() == RaftState::Leader));
        if let Some(node) = leader {
            match node.raft().apply(cmd.clone(), per_call).await {
                Ok(applied) => return applied.index,
                Err(
                    raft::Error::NotLeader { .. }
                    | raft::Error::LeadershipLost
                    | raft::Error::LeadershipTransferInProgress
                    | raft::Error::Timeout
                    | raft::Error::EnqueueTimeout,
                ) => {}
                Err(err) => panic!("{what} failed: {err}"),
            }
        }
        assert!(Instant::now() < deadline, "{what}: no leader took it within {bound:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies the commands `values` through the leader, 128 in flight (see
/// [`apply_one`]); returns the highest index written.
pub async fn write(nodes: &[GrpcNode], values: std::ops::Range<u64>) -> u64 {
    futures::stream::iter(values)
        .map(|v| apply_one(nodes, v))
        .buffer_unordered(128)
        .fold(0, |last, index| async move { last.max(index) })
        .await
}

/// The distinct values of a state, sorted.
pub fn distinct(mut values: Vec<u64>) -> Vec<u64> {
    values.sort_unstable();
    values.dedup();
    values
}

/// Commits a barrier on the current leader (retrying within [`STEP`] if
/// leadership moves) and waits until every running node has applied it;
/// returns the leader's position and the barrier's index.
pub async fn sync_all(nodes: &[GrpcNode]) -> (usize, u64) {
    let deadline = Instant::now() + STEP;
    let (leader, index) = loop {
        let leader = wait_for_leader(nodes).await;
        match nodes[leader].raft().barrier(Duration::from_secs(5)).await {
            Ok(index) => break (leader, index),
            Err(err) => assert!(Instant::now() < deadline, "no barrier within {STEP:?}: {err}"),
        }
    };
    for node in nodes.iter().filter(|n| n.raft.is_some()) {
        super::bounded(&format!("{} applies {index}", node.id), node.raft().wait_applied(index))
            .await
            .expect("wait_applied");
    }
    (leader, index)
}

/// Stops every running node.
pub async fn stop_all(nodes: &mut [GrpcNode]) {
    for node in nodes.iter_mut() {
        node.stop().await;
    }
}
