//! Raft cluster identity over gRPC with durable stores (issue 13 item 5):
//! three `raft::Raft` nodes on `FileStore`s, with no gRPC-level cluster id
//! configured, agree on the cluster id their bootstrap derived; every
//! request carries it on the wire (the proto's `cluster_id` field), a
//! request of another cluster is refused by the receiving node with an
//! answer naming both ids, a second cluster pointed at one of them cannot
//! move its term, and the id survives a restart from the directories.
//!
//! Real time (gRPC needs real sockets); every wait is bounded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::nodes::*;
use common::*;
use raft::message::{AppendEntriesRequest, RequestVoteRequest};
use raft::observer::{Observation, Observer};
use raft::{ClusterId, Configuration, Server, Transport, TransportError};
use raft_store_file::{FileSnapshotStore, FileStore};
use raft_transport_grpc::{GrpcConfig, GrpcTransport};

fn grpc_config() -> GrpcConfig {
    GrpcConfig {
        rpc_timeout: Duration::from_secs(2),
        backoff_max: Duration::from_millis(100),
        ..GrpcConfig::default()
    }
}

fn vote(term: u64, cluster_id: Option<ClusterId>) -> RequestVoteRequest {
    RequestVoteRequest {
        term,
        candidate_id: "intruder".into(),
        last_log_index: 1_000_000,
        last_log_term: term,
        leadership_transfer: true,
        cluster_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_id_travels_over_grpc_and_another_clusters_requests_are_refused() {
    let mut nodes = new_nodes(3, |_| grpc_config()).await;
    start_cluster(&mut nodes).await;
    let leader = wait_for_leader(&nodes).await;
    apply_one(&nodes, 1).await;
    let id = nodes[leader].raft().cluster_id().expect("a bootstrapped cluster has an id");
    for node in &nodes {
        assert_eq!(node.raft().cluster_id().as_ref(), Some(&id), "{} agrees", node.id);
    }
    let follower = (leader + 1) % 3;
    let target = raft::ServerId::from(nodes[follower].id.as_str());
    let addr = raft::ServerAddress::from(nodes[follower].addr());
    let term = nodes[follower].raft().metrics().borrow().term;

    // An injected request of another cluster is refused by the node, with
    // both ids in the answer; it changes nothing.
    let intruder = bind(test_config()).await;
    let other = ClusterId::from("other-cluster");
    let err =
        bounded("foreign vote", intruder.request_vote(&target, &addr, vote(term + 5, Some(other.clone()))))
            .await
            .expect_err("refused");
    let TransportError::Rejected(msg) = &err else { panic!("expected Rejected, got {err:?}") };
    assert!(msg.contains(id.as_str()) && msg.contains(other.as_str()), "names both ids: {msg}");
    let heartbeat = AppendEntriesRequest {
        term: term + 5,
        leader_id: "intruder".into(),
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 0,
        round: 1,
        cluster_id: Some(other.clone()),
    };
    let err = bounded("foreign heartbeat", intruder.append_entries(&target, &addr, heartbeat))
        .await
        .expect_err("refused");
    assert!(matches!(&err, TransportError::Rejected(m) if m.contains(other.as_str())), "{err:?}");
    assert_eq!(nodes[follower].raft().metrics().borrow().term, term, "nothing changed");

    // A second cluster whose configuration points at the follower: its
    // node is told, and the follower's term does not move.
    let b_dir = tempfile::tempdir().expect("tempdir");
    let b_transport = GrpcTransport::bind("127.0.0.1:0", grpc_config()).await.expect("bind");
    let b_addr = b_transport.socket_addr().to_string();
    let b_store = FileStore::open(b_dir.path().join("log")).await.expect("store");
    let b_snaps = FileSnapshotStore::new(b_dir.path().join("snaps"), 2).await.expect("snaps");
    let b = raft::Raft::new(
        raft_config("b1"),
        ValuesFsm::default(),
        b_store.clone(),
        b_store,
        b_snaps,
        b_transport,
    )
    .await
    .expect("start b1");
    let (tx, mut seen) = tokio::sync::mpsc::channel(16);
    let only = Arc::new(|o: &Observation| matches!(o, Observation::ClusterMismatch { .. }));
    b.register_observer(Observer::new(tx, false, Some(only)));
    let b_conf = Configuration::new(vec![
        Server::voter("b1", b_addr.as_str()),
        Server::voter("x", nodes[follower].addr().as_str()),
    ]);
    b.bootstrap_cluster(b_conf.clone()).await.expect("bootstrap b1");
    let b_id = ClusterId::derive(&b_conf);
    assert_eq!(b.cluster_id().as_ref(), Some(&b_id));
    match bounded("b1 hears of the mismatch", seen.recv()).await {
        Some(Observation::ClusterMismatch { peer, ours, theirs }) => {
            assert_eq!((peer.as_str(), &ours, &theirs), ("x", &b_id, &id));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(nodes[follower].raft().metrics().borrow().term, term, "the follower's term did not move");
    bounded("b1 shutdown", b.shutdown()).await.expect("shutdown");

    // The id is stored: a restarted node has it before any leader contact.
    nodes[follower].stop().await;
    nodes[follower].start().await;
    assert_eq!(nodes[follower].raft().cluster_id().as_ref(), Some(&id), "kept across a restart");
    let leader = wait_for_leader(&nodes).await;
    apply_one(&nodes, 2).await;
    assert_eq!(nodes[leader].raft().cluster_id().as_ref(), Some(&id));
    stop_all(&mut nodes).await;
}
