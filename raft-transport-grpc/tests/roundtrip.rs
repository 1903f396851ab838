//! Every RPC crosses two real transports on loopback and arrives with every
//! field intact, in both directions: unary calls, an ordered pipeline of
//! many AppendEntries, and a multi-megabyte snapshot streamed in chunks.

mod common;

use common::*;
use raft::message::{
    InstallSnapshotRequest, ReadIndexRequest, RequestPreVoteRequest, RequestVoteRequest, RpcRequest,
    RpcResponse, TimeoutNowRequest,
};
use raft::{ServerId, SnapshotReader, Transport};
use raft_transport_grpc::GrpcConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_rpcs_round_trip_every_field() {
    let server = bind(test_config()).await;
    let client = bind(test_config()).await;
    let mut seen = spawn_responder(&server);
    let target = ServerId::from("server");
    let addr = server.local_addr();
    assert_ne!(server.socket_addr().port(), 0, "port 0 must resolve to the bound port");
    assert_eq!(addr.as_str(), server.socket_addr().to_string());

    // AppendEntries with entries of every log type, and a heartbeat.
    // (The second one carries a cluster id, which must arrive unchanged.)
    let mut stamped = append_request(5, 0, 18);
    stamped.cluster_id = Some("roundtrip-cluster".into());
    for req in [append_request(100, 6, 17), stamped] {
        let resp =
            bounded("append", client.append_entries(&target, &addr, req.clone())).await.expect("append");
        assert_eq!(resp, append_answer(&req));
        match next_seen(&mut seen).await {
            Seen::Rpc(RpcRequest::AppendEntries(got)) => assert_eq!(got, req),
            other => panic!("unexpected {other:?}"),
        }
    }

    let vote = RequestVoteRequest {
        term: 12,
        candidate_id: "cand".into(),
        last_log_index: 99,
        last_log_term: 11,
        leadership_transfer: true,
        cluster_id: Some("roundtrip-cluster".into()),
    };
    let resp = bounded("vote", client.request_vote(&target, &addr, vote.clone())).await.expect("vote");
    match answer(&RpcRequest::RequestVote(vote.clone())) {
        RpcResponse::RequestVote(want) => assert_eq!(resp, want),
        other => panic!("unexpected {other:?}"),
    }
    match next_seen(&mut seen).await {
        Seen::Rpc(RpcRequest::RequestVote(got)) => assert_eq!(got, vote),
        other => panic!("unexpected {other:?}"),
    }

    let pre = RequestPreVoteRequest {
        term: 13,
        candidate_id: "pre".into(),
        last_log_index: 6,
        last_log_term: 4,
        cluster_id: Some("roundtrip-cluster".into()),
    };
    let resp =
        bounded("pre-vote", client.request_pre_vote(&target, &addr, pre.clone())).await.expect("pre-vote");
    assert_eq!(resp.term, 16);
    assert!(resp.granted);
    match next_seen(&mut seen).await {
        Seen::Rpc(RpcRequest::RequestPreVote(got)) => assert_eq!(got, pre),
        other => panic!("unexpected {other:?}"),
    }

    let tn = TimeoutNowRequest {
        term: 21,
        leader_id: "old-leader".into(),
        cluster_id: Some("roundtrip-cluster".into()),
    };
    let resp =
        bounded("timeout-now", client.timeout_now(&target, &addr, tn.clone())).await.expect("timeout-now");
    assert_eq!(resp.term, 25);
    match next_seen(&mut seen).await {
        Seen::Rpc(RpcRequest::TimeoutNow(got)) => assert_eq!(got, tn),
        other => panic!("unexpected {other:?}"),
    }

    // ReadIndex (follower reads): an index, and a refusal naming a leader.
    for lease in [true, false] {
        let ri = ReadIndexRequest {
            requester: "follower-7".into(),
            lease,
            cluster_id: Some("roundtrip-cluster".into()),
        };
        let resp =
            bounded("read-index", client.read_index(&target, &addr, ri.clone())).await.expect("read-index");
        match answer(&RpcRequest::ReadIndex(ri.clone())) {
            RpcResponse::ReadIndex(want) => assert_eq!(resp, want),
            other => panic!("unexpected {other:?}"),
        }
        match next_seen(&mut seen).await {
            Seen::Rpc(RpcRequest::ReadIndex(got)) => assert_eq!(got, ri),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_preserves_order_of_many_requests() {
    let config = GrpcConfig { pipeline_depth: 32, ..test_config() };
    let server = bind(config.clone()).await;
    let client = bind(config).await;
    let mut seen = spawn_responder(&server);
    let target = ServerId::from("server");
    let addr = server.local_addr();

    let mut pipeline =
        bounded("open pipeline", client.append_entries_pipeline(&target, &addr)).await.expect("pipeline");
    const N: u64 = 2_000;
    let requests: Vec<_> = (0..N).map(|i| append_request(i * 3, 3, i)).collect();
    let sender = pipeline.requests.clone();
    let to_send = requests.clone();
    // Queue from another task while this one drains responses, so far more
    // than `pipeline_depth` requests pass through.
    let feeder = tokio::spawn(async move {
        for req in to_send {
            sender.send(req).await.expect("queue request");
        }
    });
    for (i, req) in requests.iter().enumerate() {
        let resp = bounded("pipelined response", pipeline.responses.recv())
            .await
            .expect("response channel open")
            .unwrap_or_else(|e| panic!("response {i} failed: {e}"));
        assert_eq!(resp, append_answer(req), "response {i} out of order or altered");
    }
    bounded("feeder", feeder).await.expect("feeder");
    for (i, req) in requests.iter().enumerate() {
        match next_seen(&mut seen).await {
            Seen::Rpc(RpcRequest::AppendEntries(got)) => {
                assert_eq!(&got, req, "request {i} delivered out of order")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Dropping the sender closes the pipeline cleanly: no error, no extra item.
    drop(pipeline.requests);
    assert!(bounded("pipeline close", pipeline.responses.recv()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_snapshot_streams_in_chunks() {
    let config = GrpcConfig {
        snapshot_chunk_size: 64 * 1024,
        // Smaller than the snapshot: only chunking can get it through.
        max_message_size: 256 * 1024,
        ..test_config()
    };
    let server = bind(config.clone()).await;
    let client = bind(config).await;
    let mut seen = spawn_responder(&server);
    let data = pattern(6 * 1024 * 1024 + 123);
    let req = InstallSnapshotRequest {
        term: 30,
        leader_id: "leader-1".into(),
        meta: snapshot_meta(data.len() as u64),
        cluster_id: Some("roundtrip-cluster".into()),
    };

    let resp = bounded(
        "install snapshot",
        client.install_snapshot(
            &ServerId::from("server"),
            &server.local_addr(),
            req.clone(),
            SnapshotReader::from_bytes(data.clone()),
        ),
    )
    .await
    .expect("install snapshot");
    assert_eq!(resp.term, 35);
    assert!(resp.success);
    match next_seen(&mut seen).await {
        Seen::Snapshot(header, got) => {
            assert_eq!(header, req);
            assert_eq!(got.len(), data.len());
            assert!(got == data, "snapshot bytes differ");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reader_shorter_than_meta_size_fails() {
    let server = bind(test_config()).await;
    let client = bind(test_config()).await;
    let mut seen = spawn_responder(&server);
    let req = InstallSnapshotRequest {
        term: 30,
        leader_id: "leader-1".into(),
        meta: snapshot_meta(1000),
        cluster_id: Some("roundtrip-cluster".into()),
    };
    let result = bounded(
        "install truncated snapshot",
        client.install_snapshot(
            &ServerId::from("server"),
            &server.local_addr(),
            req,
            SnapshotReader::from_bytes(vec![1u8; 600]),
        ),
    )
    .await;
    assert!(matches!(result, Err(raft::TransportError::Rejected(_))), "got {result:?}");
    match next_seen(&mut seen).await {
        Seen::BrokenSnapshot(_, err) => assert!(err.contains("short"), "{err}"),
        other => panic!("unexpected {other:?}"),
    }
}
