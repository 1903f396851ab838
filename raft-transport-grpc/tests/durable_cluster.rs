//! Three real `raft::Raft` nodes over gRPC on loopback with durable stores
//! (`FileStore` + `FileSnapshotStore` in temporary directories):
//!
//! - they elect a leader, replicate 10,000 writes, answer the admin
//!   service's `Snapshot`, `Barrier` and `VerifyLeader`, keep going when the
//!   leader stops, and the old leader, restarted from its directories on
//!   the same port, catches up to the same state;
//! - a follower that was down while the leader compacted its log past it
//!   catches up through an InstallSnapshot streamed over gRPC.
//!
//! Real time (gRPC needs real sockets); every wait is bounded.

mod common;

use std::time::Duration;

use common::nodes::*;
use common::*;
use raft::RaftState;
use raft_transport_grpc::admin::{self, pb as admin_pb};
use raft_transport_grpc::GrpcConfig;

fn grpc_config() -> GrpcConfig {
    GrpcConfig {
        cluster_id: Some("durable-cluster-test".into()),
        rpc_timeout: Duration::from_secs(2),
        snapshot_timeout: Duration::from_secs(10),
        backoff_max: Duration::from_millis(100),
        ..GrpcConfig::default()
    }
}

/// Asserts every running node applied exactly `values` (in log order).
fn assert_same_state(nodes: &[GrpcNode], values: &[u64]) {
    for node in nodes.iter().filter(|n| n.raft.is_some()) {
        assert!(node.fsm.values() == values, "{} has a different state", node.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_cluster_replicates_and_a_restarted_leader_catches_up() {
    let mut nodes = new_nodes(3, |_| grpc_config()).await;
    start_cluster(&mut nodes).await;
    wait_for_leader(&nodes).await;

    const N: u64 = 10_000;
    bounded("10k writes", write(&nodes, 0..N)).await;
    let (leader, synced) = sync_all(&nodes).await;
    let state = nodes[leader].fsm.values();
    assert_eq!(distinct(state.clone()), (0..N).collect::<Vec<_>>(), "every write applied");
    assert_same_state(&nodes, &state);

    // Admin: verify leadership, a barrier, and a user snapshot on the leader.
    let mut client = admin::connect(&nodes[leader].addr(), &grpc_config()).await.expect("connect");
    client.verify_leader(admin_pb::VerifyLeaderRequest {}).await.expect("leader verifies");
    let barrier =
        client.barrier(admin_pb::BarrierRequest { timeout_ms: 5_000 }).await.expect("barrier").into_inner();
    assert!(barrier.index > synced, "barrier {} after {synced}", barrier.index);
    let snap = client.snapshot(admin_pb::SnapshotRequest {}).await.expect("snapshot").into_inner();
    assert!(snap.index >= barrier.index, "snapshot {} covers the barrier {}", snap.index, barrier.index);
    assert_eq!(snap.term, nodes[leader].raft().metrics().borrow().term);
    assert_eq!(snap.size, snapshot_size(state.len()));
    let stored = nodes[leader].snapshots().await;
    let meta = stored.iter().find(|m| m.id == snap.id).expect("snapshot is in the leader's store");
    assert_eq!((meta.index, meta.term, meta.size), (snap.index, snap.term, snap.size));
    // A follower refuses VerifyLeader and Barrier, naming the leader, but
    // snapshots itself on request.
    let follower = (leader + 1) % 3;
    let mut follower_client = admin::connect(&nodes[follower].addr(), &grpc_config()).await.expect("connect");
    let err = follower_client
        .verify_leader(admin_pb::VerifyLeaderRequest {})
        .await
        .expect_err("a follower is not the leader");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.metadata().get(admin::LEADER_ID_METADATA_KEY).and_then(|v| v.to_str().ok()),
        Some(nodes[leader].id.as_str())
    );
    let err = follower_client
        .barrier(admin_pb::BarrierRequest { timeout_ms: 1_000 })
        .await
        .expect_err("a follower cannot commit a barrier");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let follower_snap =
        follower_client.snapshot(admin_pb::SnapshotRequest {}).await.expect("follower snapshot").into_inner();
    assert!(follower_snap.index >= synced);
    assert_eq!(follower_snap.size, snapshot_size(state.len()));

    // Stop the leader; the other two elect a new one and keep going.
    let old = leader;
    nodes[old].stop().await;
    let leader = wait_for_leader(&nodes).await;
    assert_ne!(leader, old);
    bounded("writes after failover", write(&nodes, N..N + 100)).await;
    sync_all(&nodes).await;

    // Restart the old leader from its directories on the same port: it
    // restores its snapshot, replays its log and catches up.
    let port = nodes[old].socket;
    nodes[old].start().await;
    assert_eq!(nodes[old].socket, port, "same port");
    let (leader, _) = sync_all(&nodes).await;
    let state = nodes[leader].fsm.values();
    assert_eq!(distinct(state.clone()), (0..N + 100).collect::<Vec<_>>());
    assert_same_state(&nodes, &state);
    assert_ne!(nodes[old].raft().state(), RaftState::Shutdown);

    // And it takes part in new writes.
    bounded("writes after the restart", write(&nodes, N + 100..N + 200)).await;
    let (leader, _) = sync_all(&nodes).await;
    assert_same_state(&nodes, &nodes[leader].fsm.values());
    assert_eq!(distinct(nodes[old].fsm.values()), (0..N + 200).collect::<Vec<_>>());
    stop_all(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_catches_up_through_install_snapshot_over_grpc() {
    // Small chunks so the snapshot takes several messages.
    let mut nodes = new_nodes(3, |_| GrpcConfig { snapshot_chunk_size: 4096, ..grpc_config() }).await;
    for node in &mut nodes {
        node.config.snapshot_threshold = 200;
        node.config.trailing_logs = 20;
        node.config.snapshot_interval = Duration::from_millis(50);
    }
    start_cluster(&mut nodes).await;
    wait_for_leader(&nodes).await;
    bounded("first writes", write(&nodes, 0..100)).await;
    let (leader, _) = sync_all(&nodes).await;

    // Stop a follower. When it comes back it never snapshots by itself, so
    // any snapshot in its store afterwards was installed by the leader.
    let lagging = (leader + 1) % 3;
    let lagging_last = nodes[lagging].raft().last_index();
    let had_snapshot = nodes[lagging].snapshots().await.first().map_or(0, |m| m.index);
    nodes[lagging].stop().await;
    nodes[lagging].config.snapshot_threshold = 1_000_000;
    nodes[lagging].config.snapshot_interval = Duration::from_secs(3600);

    const N: u64 = 3_000;
    bounded("writes while the follower is down", write(&nodes, 100..N)).await;
    let (leader, _) = sync_all(&nodes).await;
    // A snapshot covering every write (the automatic ones trail behind),
    // then wait until the leader compacted its log past everything the
    // lagging follower has: replication alone can no longer catch it up.
    let leader_snapshot = bounded("user snapshot", nodes[leader].raft().snapshot()).await.expect("snapshot");
    assert_eq!(leader_snapshot.meta().size, snapshot_size(nodes[leader].fsm.len()));
    assert!(leader_snapshot.meta().size > 4096 * 3, "the snapshot spans several chunks");
    let deadline = tokio::time::Instant::now() + STEP;
    while nodes[leader].first_index().await <= lagging_last + 1 {
        assert!(tokio::time::Instant::now() < deadline, "the leader never compacted past the follower");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    nodes[lagging].start().await;
    let (leader, _) = sync_all(&nodes).await;

    let installed = nodes[lagging].snapshots().await;
    let newest = installed.first().expect("the follower's store holds the installed snapshot");
    assert!(newest.index > had_snapshot && newest.index > lagging_last, "{newest:?}");
    assert!(newest.index >= leader_snapshot.meta().index, "{newest:?}");
    assert_eq!(newest.size, leader_snapshot.meta().size);
    // The installed snapshot is one the leader took: same index, term and
    // size (ids are local to each store).
    let leader_snapshots = nodes[leader].snapshots().await;
    assert!(
        leader_snapshots
            .iter()
            .any(|m| (m.index, m.term, m.size) == (newest.index, newest.term, newest.size)),
        "{newest:?} not among the leader's {leader_snapshots:?}"
    );
    // Its log now starts at the snapshot (metrics are published on ticks).
    let mut metrics = nodes[lagging].raft().metrics();
    bounded(
        "the follower's log starts at the snapshot",
        metrics.wait_for(|m| m.snapshot_index >= newest.index),
    )
    .await
    .expect("metrics");

    let state = nodes[leader].fsm.values();
    assert_eq!(distinct(state.clone()), (0..N).collect::<Vec<_>>());
    assert_same_state(&nodes, &state);
    stop_all(&mut nodes).await;
}
