//! Three real `raft::Raft` nodes over gRPC with mutual TLS (certificates
//! generated with rcgen at test time): they elect a leader, replicate and
//! answer the admin service; a peer whose certificate comes from another CA
//! is refused on every RPC (votes, pre-votes, appends, snapshots, admin)
//! and cannot disturb the cluster.

mod common;

use std::time::Duration;

use common::nodes::*;
use common::*;
use raft::message::{
    AppendEntriesRequest, InstallSnapshotRequest, RequestPreVoteRequest, RequestVoteRequest,
};
use raft::{
    Configuration, RaftState, Server, ServerAddress, ServerId, SnapshotMeta, SnapshotReader, Transport,
};
use raft_transport_grpc::admin::{self, pb as admin_pb};
use raft_transport_grpc::{GrpcConfig, TlsConfig};

fn grpc_config(tls: TlsConfig) -> GrpcConfig {
    GrpcConfig {
        cluster_id: Some("tls-cluster-test".into()),
        rpc_timeout: Duration::from_secs(2),
        backoff_max: Duration::from_millis(100),
        tls: Some(tls),
        ..GrpcConfig::default()
    }
}

/// A term far above anything the cluster reaches by itself.
const ROGUE_TERM: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_works_and_refuses_a_peer_from_another_ca() {
    let ca = TestCa::new("cluster-ca");
    let rogue_ca = TestCa::new("rogue-ca");
    let mut nodes = new_nodes(3, |id| grpc_config(TlsConfig::mutual(ca.cert_pem(), ca.issue(id)))).await;
    start_cluster(&mut nodes).await;
    wait_for_leader(&nodes).await;
    bounded("writes over mTLS", write(&nodes, 0..500)).await;
    let (leader, _) = sync_all(&nodes).await;
    let state = nodes[leader].fsm.values();
    assert_eq!(distinct(state.clone()), (0..500).collect::<Vec<_>>());
    for node in &nodes {
        assert!(node.fsm.values() == state, "{} has the leader's state", node.id);
    }

    // The admin service over mTLS, with a certificate from the cluster CA.
    let tool = grpc_config(TlsConfig::mutual(ca.cert_pem(), ca.issue("admin-tool")));
    let mut client = admin::connect(&nodes[leader].addr(), &tool).await.expect("admin connect");
    let status = client.status(admin_pb::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(status.state, RaftState::Leader.to_string());

    // A peer that trusts the cluster CA (so it would accept the servers)
    // but presents a certificate from another CA, claiming a member's id.
    let mut rogue_tls = TlsConfig::mutual(ca.cert_pem(), ca.issue("unused"));
    rogue_tls.client_identity = Some(rogue_ca.issue("n1"));
    let rogue = bind(grpc_config(rogue_tls.clone())).await;
    for node in &nodes {
        let (id, addr) = (ServerId::from(node.id.as_str()), ServerAddress::from(node.addr().as_str()));
        let vote = RequestVoteRequest {
            term: ROGUE_TERM,
            candidate_id: "n1".into(),
            last_log_index: u64::MAX / 2,
            last_log_term: ROGUE_TERM,
            leadership_transfer: true,
            cluster_id: None,
        };
        let result = bounded("rogue vote", rogue.request_vote(&id, &addr, vote)).await;
        assert!(result.is_err(), "{}: rogue vote answered: {result:?}", node.id);
        let pre_vote = RequestPreVoteRequest {
            term: ROGUE_TERM,
            candidate_id: "n1".into(),
            last_log_index: u64::MAX / 2,
            last_log_term: ROGUE_TERM,
            cluster_id: None,
        };
        let result = bounded("rogue pre-vote", rogue.request_pre_vote(&id, &addr, pre_vote)).await;
        assert!(result.is_err(), "{}: rogue pre-vote answered: {result:?}", node.id);
        let append = AppendEntriesRequest {
            term: ROGUE_TERM,
            leader_id: "n1".into(),
            prev_log_index: 0,
            prev_log_term: 0,
            entries: Vec::new(),
            leader_commit: 0,
            round: 1,
            cluster_id: None,
        };
        let result = bounded("rogue heartbeat", rogue.append_entries(&id, &addr, append)).await;
        assert!(result.is_err(), "{}: rogue heartbeat answered: {result:?}", node.id);
        let data = b"not a snapshot".to_vec();
        let snapshot = InstallSnapshotRequest {
            term: ROGUE_TERM,
            leader_id: "n1".into(),
            meta: SnapshotMeta {
                id: "rogue".into(),
                index: u64::MAX / 2,
                term: ROGUE_TERM,
                configuration: Configuration::new(vec![Server::voter("n1", "127.0.0.1:1")]),
                configuration_index: 1,
                size: data.len() as u64,
            },
            cluster_id: None,
        };
        let reader = SnapshotReader::new(std::io::Cursor::new(data));
        let result = bounded("rogue snapshot", rogue.install_snapshot(&id, &addr, snapshot, reader)).await;
        assert!(result.is_err(), "{}: rogue snapshot answered: {result:?}", node.id);
    }
    // Nor does its admin client get anywhere (refused at the handshake or
    // on the first call: TLS 1.3 checks the client certificate after the
    // client considers the handshake done).
    let refused = match admin::connect(&nodes[leader].addr(), &grpc_config(rogue_tls)).await {
        Err(_) => true,
        Ok(mut rogue_admin) => rogue_admin.status(admin_pb::StatusRequest {}).await.is_err(),
    };
    assert!(refused, "the rogue admin client was served");

    // Nothing reached the nodes: no term jump, and the cluster keeps
    // working.
    for node in &nodes {
        let term = node.raft().metrics().borrow().term;
        assert!(term < ROGUE_TERM, "{} adopted the rogue term", node.id);
    }
    bounded("writes after the rogue", write(&nodes, 500..600)).await;
    let (leader_after, _) = sync_all(&nodes).await;
    let state = nodes[leader_after].fsm.values();
    assert_eq!(distinct(state.clone()), (0..600).collect::<Vec<_>>());
    for node in &nodes {
        assert!(node.fsm.values() == state, "{} has the leader's state", node.id);
    }
    stop_all(&mut nodes).await;
}
