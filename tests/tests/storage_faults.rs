//! A leader whose log store stops completing writes steps down instead of
//! hanging the cluster, and the others carry on.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{async_trait, Configuration, Log, LogStore, Raft, RaftState, Server, StableStore, StorageError};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::{test_config, RecordingFsm};
use tokio::sync::Notify;

/// An in-memory store whose appends can be made to hang until released.
#[derive(Clone)]
struct HangingStore {
    inner: InmemStore,
    hang: Arc<AtomicBool>,
    release: Arc<Notify>,
}

impl HangingStore {
    fn new() -> Self {
        Self { inner: InmemStore::new(), hang: Arc::default(), release: Arc::new(Notify::new()) }
    }
}

#[async_trait]
impl LogStore for HangingStore {
    async fn first_index(&self) -> Result<u64, StorageError> {
        self.inner.first_index().await
    }
    async fn last_index(&self) -> Result<u64, StorageError> {
        self.inner.last_index().await
    }
    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        self.inner.get_log(index).await
    }
    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        self.inner.get_logs(range).await
    }
    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        while self.hang.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        self.inner.store_logs(logs).await
    }
    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        self.inner.delete_range(min, max).await
    }
}

#[async_trait]
impl StableStore for HangingStore {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.inner.set(key, value).await
    }
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key).await
    }
}

const T: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn a_leader_with_a_hung_log_store_steps_down_and_the_cluster_moves_on() {
    let net = InmemNetwork::new();
    let ids = ["n1", "n2", "n3"];
    let members = Configuration::new(ids.iter().map(|id| Server::voter(*id, *id)).collect());
    let mut nodes = Vec::new();
    for id in ids {
        let store = HangingStore::new();
        let raft = Raft::new(
            test_config(id),
            RecordingFsm::default(),
            store.clone(),
            store.clone(),
            InmemSnapshotStore::new(),
            net.transport(id),
        )
        .await
        .expect("start");
        raft.bootstrap_cluster(members.clone()).await.expect("bootstrap");
        nodes.push((raft, store));
    }
    let leader_of = |nodes: &[(Raft<RecordingFsm>, HangingStore)]| {
        nodes.iter().position(|(r, _)| r.state() == RaftState::Leader)
    };
    let deadline = tokio::time::Instant::now() + T;
    let old = loop {
        if let Some(i) = leader_of(&nodes) {
            break i;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    nodes[old].0.apply("before", T).await.expect("apply");
    nodes[old].1.hang.store(true, Ordering::SeqCst);
    // The write cannot complete on the stuck leader...
    let stuck = nodes[old].0.apply("stuck", Duration::from_secs(2)).await;
    assert!(stuck.is_err(), "a write on the stuck leader cannot be acknowledged: {stuck:?}");
    // ...which steps down, and another node takes over.
    let deadline = tokio::time::Instant::now() + T;
    let new = loop {
        if let Some(i) = leader_of(&nodes).filter(|i| *i != old) {
            break i;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader after the store hung");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_ne!(nodes[old].0.state(), RaftState::Leader);
    nodes[new].0.apply("after", T).await.expect("the cluster carries on");
    nodes[old].1.hang.store(false, Ordering::SeqCst);
    nodes[old].1.release.notify_waiters();
    for (raft, _) in &nodes {
        raft.shutdown().await.expect("shutdown");
    }
}
