//! Helpers shared by the workspace-level integration tests: a recording
//! test FSM and a cluster of real [`Raft`] nodes on an [`InmemNetwork`] with
//! in-memory stores that survive a node's restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft::testing::faulty::{FaultInjector, FaultyStore};
use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Config, Configuration, Fsm, FsmSnapshot, Log, Raft, RaftState, Server, ServerId,
    SnapshotReader, SnapshotWriter,
};
use raft_examples::kv::{KvFsm, KvResponse};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod sim_client;

/// Runs `run` (one simulation seed) on a fresh current-thread runtime with
/// a paused clock, under a real-time watchdog.
///
/// A busy loop between nodes (messages answered at once, for ever) keeps
/// the runtime from ever idling, so the paused clock never advances and no
/// virtual-time bound fires. The watchdog thread catches that: after
/// `limit` of real time it cuts every link of `net` (again each second, in
/// case the run heals it), which lets virtual time move and the pending
/// wait fail; the failure then says the watchdog fired. A run that
/// succeeds but took longer than `limit` fails too.
pub fn run_paused_with_watchdog<T>(
    seed: u64,
    net: &InmemNetwork,
    limit: Duration,
    run: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    use std::sync::mpsc::RecvTimeoutError;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let net = net.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut fired = None;
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_secs(1)) {
                if started.elapsed() > limit {
                    net.partition(&[]);
                    fired.get_or_insert(started.elapsed());
                }
            }
            fired
        })
    };
    let result = rt.block_on(run);
    drop(done);
    let fired = watchdog.join().map_err(|_| "watchdog panicked".to_string())?;
    match (result, fired) {
        (Err(e), Some(after)) => Err(format!(
            "{e}\n  WATCHDOG: virtual time stopped advancing (nodes kept exchanging messages without ever \
             waiting: a busy loop); the network was cut after {after:?} of real time"
        )),
        (Ok(_), Some(after)) => Err(format!(
            "seed {seed}: the run took over {after:?} of real time, so the watchdog cut the network"
        )),
        (result, None) => result,
    }
}

/// What a [`RecordingFsm`] has applied, in order: (index, command).
pub type AppliedLog = Arc<Mutex<Vec<(u64, Bytes)>>>;

/// A state machine that records every command it applies and answers with
/// the number of commands applied so far.
#[derive(Clone, Default)]
pub struct RecordingFsm {
    /// Shared record of applied commands.
    pub applied: AppliedLog,
}

struct RecordingSnapshot(Vec<(u64, Bytes)>);

#[async_trait]
impl FsmSnapshot for RecordingSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        for (index, data) in &self.0 {
            sink.write_u64(*index).await?;
            sink.write_u32(data.len() as u32).await?;
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
        Ok(Box::new(RecordingSnapshot(self.applied.lock().expect("lock").clone())))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        let mut entries = Vec::new();
        loop {
            let index = match snapshot.read_u64().await {
                Ok(i) => i,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            };
            let len = snapshot.read_u32().await? as usize;
            let mut data = vec![0; len];
            snapshot.read_exact(&mut data).await?;
            entries.push((index, Bytes::from(data)));
        }
        *self.applied.lock().expect("lock") = entries;
        Ok(())
    }
}

/// A state machine a [`TestCluster`] can run: it can be created fresh for
/// each node incarnation and exposes what it applied.
pub trait TestFsm: Fsm + Default {
    /// The shared record of applied commands.
    fn applied_log(&self) -> AppliedLog;
}

impl TestFsm for RecordingFsm {
    fn applied_log(&self) -> AppliedLog {
        self.applied.clone()
    }
}

/// The example key-value FSM plus a record of applied commands, for the
/// linearizability-checked simulations.
#[derive(Clone, Default)]
pub struct KvTestFsm {
    /// The key-value store.
    pub kv: KvFsm,
    /// Shared record of applied commands.
    pub applied: AppliedLog,
}

#[async_trait]
impl Fsm for KvTestFsm {
    type Response = KvResponse;

    async fn apply(&mut self, log: &Log) -> KvResponse {
        self.applied.lock().expect("lock").push((log.index, log.data.clone()));
        self.kv.apply(log).await
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        self.kv.snapshot().await
    }

    async fn restore(&mut self, snapshot: SnapshotReader) -> Result<(), BoxError> {
        self.applied.lock().expect("lock").clear();
        self.kv.restore(snapshot).await
    }
}

impl TestFsm for KvTestFsm {
    fn applied_log(&self) -> AppliedLog {
        self.applied.clone()
    }
}

/// A config with short timeouts, suitable for tests under a paused clock.
pub fn test_config(id: &str) -> Config {
    Config {
        local_id: ServerId::from(id),
        heartbeat_timeout: Duration::from_millis(50),
        election_timeout: Duration::from_millis(50),
        leader_lease_timeout: Duration::from_millis(50),
        commit_timeout: Duration::from_millis(5),
        ..Config::default()
    }
}

/// One node of a [`TestCluster`], with the stores it restarts from.
pub struct TestNode<F: TestFsm = RecordingFsm> {
    /// The running node, if started.
    pub raft: Option<Raft<F>>,
    /// The current incarnation's FSM (a clone sharing its state).
    pub fsm: F,
    /// Log and stable store (survives restarts).
    pub store: InmemStore,
    /// Snapshot store (survives restarts).
    pub snaps: InmemSnapshotStore,
    /// What the current incarnation's FSM applied.
    pub applied: AppliedLog,
    /// Storage faults of the node's log and stable store (kept across
    /// restarts; none set unless a test sets them).
    pub faults: FaultInjector,
}

/// A cluster of real nodes on an in-memory network.
pub struct TestCluster<F: TestFsm = RecordingFsm> {
    /// The network, for fault injection.
    pub net: InmemNetwork,
    /// Adjusts each node's [`test_config`] before it starts.
    pub configure: fn(&mut Config),
    /// Nodes by id ("n1", "n2", ...); the address equals the id.
    pub nodes: BTreeMap<String, TestNode<F>>,
}

impl TestCluster<RecordingFsm> {
    /// Starts `n` nodes and bootstraps them with all `n` as voters.
    pub async fn new(n: usize) -> Self {
        Self::with_network(n, InmemNetwork::new()).await
    }
}

impl<F: TestFsm + Clone> TestCluster<F> {
    /// Starts `n` nodes on `net` and bootstraps them with all `n` as voters.
    pub async fn with_network(n: usize, net: InmemNetwork) -> Self {
        Self::with_config(n, net, |_| {}).await
    }

    /// Like [`TestCluster::with_network`], adjusting every node's config.
    pub async fn with_config(n: usize, net: InmemNetwork, configure: fn(&mut Config)) -> Self {
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let configuration =
            Configuration::new(ids.iter().map(|id| Server::voter(id.as_str(), id.as_str())).collect());
        let mut cluster = Self { net, configure, nodes: BTreeMap::new() };
        for id in &ids {
            cluster.add_node(id).await;
            cluster.raft(id).bootstrap_cluster(configuration.clone()).await.expect("bootstrap");
        }
        cluster
    }

    /// Starts a new node `id` with empty stores and no configuration: it
    /// joins when a leader adds it.
    pub async fn add_node(&mut self, id: &str) {
        let node = TestNode {
            raft: None,
            fsm: F::default(),
            store: InmemStore::new(),
            snaps: InmemSnapshotStore::new(),
            applied: AppliedLog::default(),
            faults: FaultInjector::new(),
        };
        self.nodes.insert(id.to_string(), node);
        self.start(id).await;
    }

    /// Starts (or restarts) node `id` from its stores with a fresh FSM.
    pub async fn start(&mut self, id: &str) {
        let transport = self.net.transport(id);
        let node = self.nodes.get_mut(id).expect("known node");
        let fsm = F::default();
        node.applied = fsm.applied_log();
        node.fsm = fsm.clone();
        let mut config = test_config(id);
        (self.configure)(&mut config);
        let store = FaultyStore::with_injector(node.store.clone(), node.faults.clone());
        let raft = Raft::new(config, fsm, store.clone(), store, node.snaps.clone(), transport)
            .await
            .expect("start node");
        node.raft = Some(raft);
    }

    /// Stops node `id` (its stores are kept).
    pub async fn stop(&mut self, id: &str) {
        let node = self.nodes.get_mut(id).expect("known node");
        if let Some(raft) = node.raft.take() {
            raft.shutdown().await.expect("shutdown");
        }
        self.net.disconnect(&id.into());
    }

    /// The running node `id`.
    pub fn raft(&self, id: &str) -> &Raft<F> {
        self.nodes[id].raft.as_ref().expect("node is running")
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| n.raft.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// Running nodes that currently consider themselves leader.
    pub fn leaders(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.as_ref().is_some_and(|r| r.state() == RaftState::Leader))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Waits (bounded, in virtual time) until exactly one running node among
    /// `among` leads and all of them agree on it; returns its id.
    pub async fn wait_for_leader_among(&self, among: &[String], timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let leaders: Vec<String> = self.leaders().into_iter().filter(|l| among.contains(l)).collect();
            if leaders.len() == 1 {
                let leader = &leaders[0];
                let agreed = among.iter().all(|id| {
                    self.nodes[id]
                        .raft
                        .as_ref()
                        .and_then(|r| r.leader())
                        .is_some_and(|(l, _)| l.as_str() == leader)
                });
                if agreed {
                    return leader.clone();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no agreed leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for a leader that every running node agrees on.
    pub async fn wait_for_leader(&self) -> String {
        let running = self.running();
        self.wait_for_leader_among(&running, Duration::from_secs(10)).await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: &str, index: u64, timeout: Duration) {
        tokio::time::timeout(timeout, self.raft(id).wait_applied(index))
            .await
            .unwrap_or_else(|_| panic!("{id} did not apply {index} within {timeout:?}"))
            .expect("wait_applied");
    }

    /// The commands node `id` applied, in order.
    pub fn applied(&self, id: &str) -> Vec<(u64, Bytes)> {
        self.nodes[id].applied.lock().expect("lock").clone()
    }

    /// Stops every node.
    pub async fn shutdown(&mut self) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            self.stop(&id).await;
        }
    }
}

/// Lifecycle helpers: nodes that lose their disks, and clusters bootstrapped
/// on one server only.
impl<F: TestFsm + Clone> TestCluster<F> {
    /// Starts `n` empty nodes and bootstraps only `n1` with a configuration
    /// naming all `n` as voters (HashiCorp's "bootstrap one server" way);
    /// the others learn the configuration from the leader.
    pub async fn bootstrap_on_one(n: usize, net: InmemNetwork) -> Self {
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let configuration =
            Configuration::new(ids.iter().map(|id| Server::voter(id.as_str(), id.as_str())).collect());
        let mut cluster = Self { net, configure: |_| {}, nodes: BTreeMap::new() };
        for id in &ids {
            cluster.add_node(id).await;
        }
        cluster.raft("n1").bootstrap_cluster(configuration).await.expect("bootstrap n1");
        cluster
    }

    /// Stops node `id`, replaces its log, stable and snapshot stores with
    /// empty ones (a replaced disk), and starts it again under the same id.
    pub async fn restart_wiped(&mut self, id: &str) {
        self.stop(id).await;
        let node = self.nodes.get_mut(id).expect("known node");
        node.store = InmemStore::new();
        node.snaps = InmemSnapshotStore::new();
        self.start(id).await;
    }
}

/// Lifecycle helpers: odd ways to create a cluster and disk faults on a
/// stopped node's stores (used by the lifecycle simulation).
impl<F: TestFsm + Clone> TestCluster<F> {
    /// Starts `n` nodes ("n1".."nN") but bootstraps only "n1", with all `n`
    /// as voters; the others start empty and must learn the configuration
    /// from the leader the bootstrapped node becomes.
    pub async fn with_one_bootstrap(n: usize, net: InmemNetwork, configure: fn(&mut Config)) -> Self {
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let configuration =
            Configuration::new(ids.iter().map(|id| Server::voter(id.as_str(), id.as_str())).collect());
        let mut cluster = Self { net, configure, nodes: BTreeMap::new() };
        for id in &ids {
            cluster.add_node(id).await;
        }
        cluster.raft(&ids[0]).bootstrap_cluster(configuration).await.expect("bootstrap");
        cluster
    }

    /// Starts the nodes `running` (each at the address equal to its id) on
    /// `net` and bootstraps each with `configuration`, which may also name
    /// servers that are not started, at any address (even one another
    /// cluster's node serves).
    pub async fn with_configuration(
        net: InmemNetwork,
        configure: fn(&mut Config),
        running: &[&str],
        configuration: Configuration,
    ) -> Self {
        let mut cluster = Self { net, configure, nodes: BTreeMap::new() };
        for id in running {
            cluster.add_node(id).await;
            cluster.raft(id).bootstrap_cluster(configuration.clone()).await.expect("bootstrap");
        }
        cluster
    }

    /// Registers node `id` with empty stores without starting it; start it
    /// later with [`TestCluster::start`].
    pub fn insert_stopped_node(&mut self, id: &str) {
        let node = TestNode {
            raft: None,
            fsm: F::default(),
            store: InmemStore::new(),
            snaps: InmemSnapshotStore::new(),
            applied: AppliedLog::default(),
            faults: FaultInjector::new(),
        };
        self.nodes.insert(id.to_string(), node);
    }

    /// Like [`TestCluster::start`], but returns the error `Raft::new` gives
    /// (the node then stays stopped and its address unserved).
    pub async fn try_start(&mut self, id: &str) -> raft::Result<()> {
        let transport = self.net.transport(id);
        let node = self.nodes.get_mut(id).expect("known node");
        let fsm = F::default();
        let mut config = test_config(id);
        (self.configure)(&mut config);
        let store = FaultyStore::with_injector(node.store.clone(), node.faults.clone());
        match Raft::new(config, fsm.clone(), store.clone(), store, node.snaps.clone(), transport).await {
            Ok(raft) => {
                node.applied = fsm.applied_log();
                node.fsm = fsm;
                node.raft = Some(raft);
                Ok(())
            }
            Err(e) => {
                self.net.disconnect(&id.into());
                Err(e)
            }
        }
    }

    /// Replaces the stores of the stopped node `id` by empty ones, as if its
    /// disk had been replaced: log, term, vote and snapshots are gone.
    pub fn wipe_stores(&mut self, id: &str) {
        let node = self.nodes.get_mut(id).expect("known node");
        assert!(node.raft.is_none(), "wipe_stores: {id} is running");
        node.store = InmemStore::new();
        node.snaps = InmemSnapshotStore::new();
    }

    /// Deletes up to `count` entries from the end of the stopped node `id`'s
    /// log, as a torn write would, never reaching into what its newest
    /// snapshot covers. Returns the deleted range, or `None` when nothing
    /// could be cut.
    pub async fn cut_log_tail(&mut self, id: &str, count: u64) -> Option<(u64, u64)> {
        use raft::{LogStore, SnapshotStore};
        let node = self.nodes.get_mut(id).expect("known node");
        assert!(node.raft.is_none(), "cut_log_tail: {id} is running");
        let last = node.store.last_index().await.expect("last index");
        let first = node.store.first_index().await.expect("first index");
        let snapshot = node.snaps.list().await.expect("list").iter().map(|m| m.index).max().unwrap_or(0);
        let from = last.saturating_sub(count.max(1) - 1).max(first).max(snapshot + 1);
        if last == 0 || from > last {
            return None;
        }
        node.store.delete_range(from, last).await.expect("delete_range");
        Some((from, last))
    }

    /// Gives the stopped node `id` a fresh, empty stable store (no term, no
    /// vote) while keeping its log: the log entries move to a new store.
    pub async fn lose_stable_store(&mut self, id: &str) {
        use raft::LogStore;
        let node = self.nodes.get_mut(id).expect("known node");
        assert!(node.raft.is_none(), "lose_stable_store: {id} is running");
        let fresh = InmemStore::new();
        let (first, last) = (
            node.store.first_index().await.expect("first index"),
            node.store.last_index().await.expect("last"),
        );
        if last > 0 {
            let logs = node.store.get_logs(first..last + 1).await.expect("get_logs");
            fresh.store_logs(&logs).await.expect("store_logs");
        }
        node.store = fresh;
    }
}
