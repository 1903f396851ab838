//! Mutual TLS with certificates generated at test time: peers with
//! certificates from the cluster CA talk; a caller with a certificate from
//! another CA, or with none, is refused and never reaches the node. And the
//! cluster id keeps two clusters on one network apart.

mod common;

use common::*;
use raft::{ServerId, Transport, TransportError};
use raft_transport_grpc::{GrpcConfig, GrpcError, GrpcTransport, PemIdentity, TlsConfig};

fn tls_config(tls: TlsConfig) -> GrpcConfig {
    GrpcConfig { tls: Some(tls), ..test_config() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_cluster_peers_and_refuses_strangers() {
    let ca = TestCa::new("cluster-ca");
    let other_ca = TestCa::new("rogue-ca");
    let server = bind(tls_config(TlsConfig::mutual(ca.cert_pem(), ca.issue("node-a")))).await;
    let mut seen = spawn_responder(&server);
    let target = ServerId::from("node-a");
    let addr = server.local_addr();

    // A peer with a certificate from the cluster CA.
    let peer = bind(tls_config(TlsConfig::mutual(ca.cert_pem(), ca.issue("node-b")))).await;
    let req = append_request(0, 2, 1);
    let resp =
        bounded("mtls append", peer.append_entries(&target, &addr, req.clone())).await.expect("mtls append");
    assert_eq!(resp, append_answer(&req));
    match next_seen(&mut seen).await {
        Seen::Rpc(raft::message::RpcRequest::AppendEntries(got)) => assert_eq!(got, req),
        other => panic!("unexpected {other:?}"),
    }

    // A caller that trusts the server but presents a certificate from
    // another CA: the handshake fails.
    let mut rogue_tls = TlsConfig::mutual(ca.cert_pem(), ca.issue("unused"));
    rogue_tls.client_identity = Some(other_ca.issue("rogue"));
    let rogue = bind(tls_config(rogue_tls)).await;
    let result = bounded("rogue append", rogue.append_entries(&target, &addr, append_request(0, 1, 2))).await;
    assert!(
        matches!(result, Err(TransportError::Unreachable(..) | TransportError::Other(_))),
        "rogue client was not refused: {result:?}"
    );

    // A caller with no client certificate at all.
    let anonymous = bind(tls_config(TlsConfig::server_only(ca.cert_pem(), ca.issue("anon")))).await;
    let result =
        bounded("anonymous append", anonymous.append_entries(&target, &addr, append_request(0, 1, 3))).await;
    assert!(result.is_err(), "client without certificate was not refused: {result:?}");

    // A plaintext caller.
    let plain = bind(test_config()).await;
    let result =
        bounded("plaintext append", plain.append_entries(&target, &addr, append_request(0, 1, 4))).await;
    assert!(result.is_err(), "plaintext client was not refused: {result:?}");

    // None of them reached the node, and the good peer still gets through.
    let req = append_request(2, 1, 5);
    bounded("mtls append again", peer.append_entries(&target, &addr, req.clone()))
        .await
        .expect("append again");
    match next_seen(&mut seen).await {
        Seen::Rpc(raft::message::RpcRequest::AppendEntries(got)) => assert_eq!(got, req),
        other => panic!("a refused caller reached the node: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_server_from_another_ca() {
    let ca = TestCa::new("cluster-ca");
    let other_ca = TestCa::new("rogue-ca");
    let impostor =
        bind(tls_config(TlsConfig::server_only(other_ca.cert_pem(), other_ca.issue("impostor")))).await;
    let mut seen = spawn_responder(&impostor);
    let client = bind(tls_config(TlsConfig::mutual(ca.cert_pem(), ca.issue("node-b")))).await;
    let result = bounded(
        "append to impostor",
        client.append_entries(&ServerId::from("x"), &impostor.local_addr(), append_request(0, 1, 1)),
    )
    .await;
    assert!(result.is_err(), "client accepted a server certificate from another CA");
    assert_nothing_seen(&mut seen);
}

#[tokio::test]
async fn bad_tls_material_fails_at_bind() {
    let ca = TestCa::new("cluster-ca");
    let broken = PemIdentity::new("not a certificate", "not a key");
    let result =
        GrpcTransport::bind("127.0.0.1:0", tls_config(TlsConfig::mutual(ca.cert_pem(), broken))).await;
    assert!(matches!(result, Err(GrpcError::Tls(_))), "got {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_cluster_ids_cannot_talk() {
    let alpha = |_| GrpcConfig { cluster_id: Some("alpha".into()), ..test_config() };
    let server = bind(alpha(())).await;
    let mut seen = spawn_responder(&server);
    let target = ServerId::from("server");
    let addr = server.local_addr();

    let beta = bind(GrpcConfig { cluster_id: Some("beta".into()), ..test_config() }).await;
    let result = bounded("beta append", beta.append_entries(&target, &addr, append_request(0, 1, 1))).await;
    match result {
        Err(TransportError::Rejected(msg)) => assert!(msg.contains("PermissionDenied"), "{msg}"),
        other => panic!("cross-cluster call was not refused: {other:?}"),
    }
    let mut pipeline = bounded("beta pipeline", beta.append_entries_pipeline(&target, &addr)).await;
    if let Ok(p) = &mut pipeline {
        // Refusal may also arrive as the first pipeline item.
        p.requests.send(append_request(0, 1, 2)).await.expect("queue");
        let item = bounded("beta pipeline response", p.responses.recv()).await;
        assert!(matches!(item, Some(Err(TransportError::Rejected(_)))), "got {item:?}");
    }
    let vote = raft::message::RequestVoteRequest {
        term: 2,
        candidate_id: "b".into(),
        last_log_index: 0,
        last_log_term: 0,
        leadership_transfer: false,
        cluster_id: None,
    };
    assert!(bounded("beta vote", beta.request_vote(&target, &addr, vote.clone())).await.is_err());

    let none = bind(test_config()).await;
    let result = bounded("no-id append", none.append_entries(&target, &addr, append_request(0, 1, 3))).await;
    assert!(
        matches!(result, Err(TransportError::Rejected(_))),
        "caller without id was not refused: {result:?}"
    );

    // Nothing reached the node; a member of the same cluster gets through.
    let same = bind(alpha(())).await;
    let req = append_request(0, 1, 4);
    bounded("alpha append", same.append_entries(&target, &addr, req.clone())).await.expect("same cluster");
    match next_seen(&mut seen).await {
        Seen::Rpc(raft::message::RpcRequest::AppendEntries(got)) => assert_eq!(got, req),
        other => panic!("a refused caller reached the node: {other:?}"),
    }
    bounded("alpha vote", same.request_vote(&target, &addr, vote)).await.expect("same cluster vote");
}
