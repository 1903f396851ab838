//! Three real `raft::Raft` nodes talking gRPC over loopback (with a cluster
//! id and in-memory stores): they elect a leader, replicate 10,000 writes
//! to every node, answer the admin service, and elect a new leader that
//! keeps accepting writes after the old one is stopped.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use raft::{
    async_trait, BoxError, Config, Configuration, Fsm, FsmSnapshot, Log, Metrics, Raft, RaftState, Server,
    ServerId, SnapshotReader, SnapshotWriter, Transport,
};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_transport_grpc::admin::{self, pb as admin_pb, LEADER_ID_METADATA_KEY};
use raft_transport_grpc::{GrpcConfig, GrpcTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const LIMIT: Duration = Duration::from_secs(120);

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// Sums the `u64` commands it applies; the sum and count are shared so the
/// test can compare nodes.
#[derive(Clone, Default)]
struct SumFsm {
    sum: Arc<AtomicU64>,
    count: Arc<AtomicU64>,
}

struct SumSnapshot(u64, u64);

#[async_trait]
impl FsmSnapshot for SumSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        sink.write_u64(self.0).await?;
        sink.write_u64(self.1).await?;
        Ok(())
    }
}

#[async_trait]
impl Fsm for SumFsm {
    type Response = u64;

    async fn apply(&mut self, log: &Log) -> u64 {
        let value = <[u8; 8]>::try_from(&log.data[..]).map(u64::from_le_bytes).unwrap_or(0);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.sum.fetch_add(value, Ordering::SeqCst) + value
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(SumSnapshot(self.sum.load(Ordering::SeqCst), self.count.load(Ordering::SeqCst))))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        self.sum.store(snapshot.read_u64().await?, Ordering::SeqCst);
        self.count.store(snapshot.read_u64().await?, Ordering::SeqCst);
        Ok(())
    }
}

struct Node {
    id: String,
    addr: String,
    raft: Raft<SumFsm>,
    fsm: SumFsm,
}

fn grpc_config() -> GrpcConfig {
    GrpcConfig {
        cluster_id: Some("grpc-cluster-test".into()),
        rpc_timeout: Duration::from_secs(2),
        backoff_max: Duration::from_millis(100),
        ..GrpcConfig::default()
    }
}

fn raft_config(id: &str) -> Config {
    Config {
        local_id: ServerId::from(id),
        // Long enough that a loaded machine does not elect anew while the
        // test talks to the leader it found (see common::nodes::raft_config).
        heartbeat_timeout: Duration::from_secs(1),
        election_timeout: Duration::from_secs(1),
        leader_lease_timeout: Duration::from_secs(1),
        commit_timeout: Duration::from_millis(5),
        // Below the 10k writes, so a snapshot compacts part of the log.
        trailing_logs: 1000,
        ..Config::default()
    }
}

async fn start_cluster() -> Vec<Node> {
    let mut transports = Vec::new();
    for i in 1..=3 {
        let t = GrpcTransport::bind("127.0.0.1:0", grpc_config()).await.expect("bind");
        transports.push((format!("n{i}"), t));
    }
    let configuration = Configuration::new(
        transports.iter().map(|(id, t)| Server::voter(id.as_str(), t.local_addr())).collect(),
    );
    let mut nodes = Vec::new();
    for (id, transport) in transports {
        let addr = transport.local_addr().to_string();
        let slot = transport.admin();
        let fsm = SumFsm::default();
        let store = InmemStore::new();
        let raft = Raft::new(
            raft_config(&id),
            fsm.clone(),
            store.clone(),
            store,
            InmemSnapshotStore::new(),
            transport,
        )
        .await
        .expect("start node");
        slot.attach(raft.clone());
        common::nodes::bootstrap_member(&raft, configuration.clone()).await;
        nodes.push(Node { id, addr, raft, fsm });
    }
    nodes
}

/// Waits, driven by metrics changes, until one of `nodes` leads and all of
/// them name it; returns its position.
async fn wait_for_leader(nodes: &[&Node]) -> usize {
    let mut watches: Vec<watch::Receiver<Metrics>> = nodes.iter().map(|n| n.raft.metrics()).collect();
    loop {
        let leaders: Vec<usize> =
            (0..nodes.len()).filter(|&i| nodes[i].raft.state() == RaftState::Leader).collect();
        if let [leader] = leaders[..] {
            let id = &nodes[leader].id;
            if nodes.iter().all(|n| n.raft.leader().is_some_and(|(l, _)| l.as_str() == id)) {
                return leader;
            }
        }
        let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let (res, _, _) = futures::future::select_all(changes).await;
        res.expect("metrics watch closed");
    }
}

/// Waits until `node` has applied `index`.
async fn wait_applied(node: &Node, index: u64) {
    let mut metrics = node.raft.metrics();
    while node.raft.applied_index() < index {
        metrics.changed().await.expect("metrics watch closed");
    }
}

async fn write_many(raft: &Raft<SumFsm>, values: std::ops::Range<u64>) -> u64 {
    let results: Vec<_> = futures::stream::iter(values)
        .map(|v| {
            let raft = raft.clone();
            async move { raft.apply(v.to_le_bytes().to_vec(), Duration::from_secs(30)).await }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    let mut last = 0;
    for r in results {
        last = last.max(r.expect("write committed").index);
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_grpc_replicate_and_survive_the_leader_stopping() {
    let nodes = start_cluster().await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = bounded("first election", wait_for_leader(&all)).await;

    const N: u64 = 10_000;
    let last = bounded("10k writes", write_many(&nodes[leader].raft, 0..N)).await;
    for node in &nodes {
        bounded("replication", wait_applied(node, last)).await;
        assert_eq!(
            node.fsm.count.load(Ordering::SeqCst),
            N,
            "{} applied a different number of writes",
            node.id
        );
        assert_eq!(node.fsm.sum.load(Ordering::SeqCst), N * (N - 1) / 2, "{} diverged", node.id);
    }

    // The admin service answers on every node's raft port.
    let mut client = admin::connect(&nodes[leader].addr, &grpc_config()).await.expect("admin connect");
    let status = client.status(admin_pb::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(status.state, "Leader");
    assert_eq!(status.leader_id, nodes[leader].id);
    assert!(status.applied_index >= last);
    let conf =
        client.get_configuration(admin_pb::GetConfigurationRequest {}).await.expect("config").into_inner();
    let mut ids: Vec<_> = conf.members.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    let stats = client.stats(admin_pb::StatsRequest {}).await.expect("stats").into_inner().stats;
    assert_eq!(stats.get("state").map(String::as_str), Some("Leader"));
    // A snapshot through the admin service reports where the log starts once
    // compacted behind it (`trailing_logs` entries are kept), as the node does.
    let snap = client.snapshot(admin_pb::SnapshotRequest {}).await.expect("snapshot").into_inner();
    assert!(snap.index >= last);
    assert!(snap.first_index > 1, "the log was compacted: {snap:?}");
    let trailing = raft_config("n1").trailing_logs;
    assert_eq!(snap.first_index, snap.index.saturating_sub(trailing) + 1, "{snap:?}");
    assert_eq!(snap.first_index, nodes[leader].raft.first_index());
    let status = client.status(admin_pb::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(status.first_index, snap.first_index);
    let stats = client.stats(admin_pb::StatsRequest {}).await.expect("stats").into_inner().stats;
    assert_eq!(stats.get("last_snapshot_index"), Some(&snap.index.to_string()));
    let follower = (leader + 1) % 3;
    let mut follower_client = admin::connect(&nodes[follower].addr, &grpc_config()).await.expect("connect");
    let err = follower_client
        .remove_server(admin_pb::ServerChangeRequest { id: "n9".into(), prev_index: 0, timeout_ms: 1000 })
        .await
        .expect_err("a follower cannot change membership");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.metadata().get(LEADER_ID_METADATA_KEY).and_then(|v| v.to_str().ok()),
        Some(nodes[leader].id.as_str())
    );
    // Joint changes: a follower names the leader; malformed requests and
    // refused changes are explained, and change nothing.
    let remove = |id: &str| admin_pb::MemberChange {
        kind: admin_pb::MemberChangeKind::Remove as i32,
        id: id.into(),
        address: String::new(),
    };
    let joint = |changes: Vec<admin_pb::MemberChange>| admin_pb::ChangeMembershipRequest {
        changes,
        prev_index: 0,
        timeout_ms: 1000,
    };
    let err = follower_client.change_membership(joint(vec![remove("n9")])).await.expect_err("follower");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.metadata().get(LEADER_ID_METADATA_KEY).and_then(|v| v.to_str().ok()),
        Some(nodes[leader].id.as_str())
    );
    let err = client.change_membership(joint(vec![])).await.expect_err("no change");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let bad = admin_pb::MemberChange { kind: 99, id: "n2".into(), address: String::new() };
    let err = client.change_membership(joint(vec![bad])).await.expect_err("unknown kind");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("changes[0]"), "{err:?}");
    let err = client.change_membership(joint(vec![remove("n9")])).await.expect_err("unknown server");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let all = vec![remove("n1"), remove("n2"), remove("n3")];
    let err = client.change_membership(joint(all)).await.expect_err("no voter left");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let conf =
        client.get_configuration(admin_pb::GetConfigurationRequest {}).await.expect("config").into_inner();
    assert_eq!(conf.members.len(), 3, "nothing changed");
    // Another cluster's admin client is refused.
    let stranger = GrpcConfig { cluster_id: Some("other".into()), ..grpc_config() };
    let mut stranger = admin::connect(&nodes[leader].addr, &stranger).await.expect("connect");
    let err = stranger.status(admin_pb::StatusRequest {}).await.expect_err("cross-cluster admin call");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Stop the leader; the other two elect a new one and keep going.
    bounded("leader shutdown", nodes[leader].raft.shutdown()).await.expect("shutdown");
    let rest: Vec<&Node> = nodes.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, n)| n).collect();
    let new_leader = bounded("second election", wait_for_leader(&rest)).await;
    let last = bounded("writes after failover", write_many(&rest[new_leader].raft, N..N + 100)).await;
    for node in &rest {
        bounded("replication after failover", wait_applied(node, last)).await;
        assert_eq!(node.fsm.count.load(Ordering::SeqCst), N + 100);
        assert_eq!(node.fsm.sum.load(Ordering::SeqCst), (N + 100) * (N + 99) / 2);
    }
    for node in &rest {
        bounded("shutdown", node.raft.shutdown()).await.expect("shutdown");
    }
}

/// Linearizable follower reads over gRPC: a follower asks the leader for a
/// read index through the ReadIndex RPC and serves the read once its own
/// state machine applied it, so it sees every write acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_serve_linearizable_reads_over_grpc() {
    let nodes = start_cluster().await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = bounded("first election", wait_for_leader(&all)).await;
    let follower = &nodes[(leader + 1) % 3];
    let mut expected = 0;
    for v in 1..=20u64 {
        let written =
            bounded("write", nodes[leader].raft.apply(v.to_le_bytes().to_vec(), Duration::from_secs(30)))
                .await
                .expect("write committed");
        expected += v;
        let policy = if v % 2 == 0 { raft::ReadPolicy::Lease } else { raft::ReadPolicy::ReadIndex };
        let index = bounded("follower read", follower.raft.read(policy)).await.expect("follower read");
        assert!(index >= written.index, "read point {index} before the acknowledged write {}", written.index);
        assert_eq!(
            follower.fsm.sum.load(Ordering::SeqCst),
            expected,
            "the follower read missed a write acknowledged before it"
        );
    }
    let mut metrics = follower.raft.metrics();
    bounded("follower read metrics", async {
        while metrics.borrow_and_update().reads.follower_reads < 20 {
            metrics.changed().await.expect("metrics watch closed");
        }
    })
    .await;
    let mut leader_metrics = nodes[leader].raft.metrics();
    bounded("leader read metrics", async {
        while leader_metrics.borrow_and_update().reads.read_index_requests_answered < 20 {
            leader_metrics.changed().await.expect("metrics watch closed");
        }
    })
    .await;
    for node in &nodes {
        node.raft.shutdown().await.expect("shutdown");
    }
}
