//! Malformed requests sent straight at the wire protocol (the generated
//! client with invalid fields, and raw bytes that are not protobuf at all)
//! are refused with an error, never reach the node, and the server keeps
//! serving well-formed requests afterwards.

mod common;

use bytes::{Buf, BufMut, Bytes};
use common::*;
use raft::message::RpcRequest;
use raft::{ServerId, Transport};
use raft_transport_grpc::cluster_id::CLUSTER_ID_METADATA_KEY;
use raft_transport_grpc::pb;
use raft_transport_grpc::pb::install_snapshot_chunk::Payload;
use raft_transport_grpc::pb::raft_service_client::RaftServiceClient;
use raft_transport_grpc::GrpcConfig;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

fn valid_append() -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        term: 3,
        leader_id: "leader-1".into(),
        prev_log_index: 10,
        prev_log_term: 2,
        entries: vec![pb::LogEntry {
            index: 11,
            term: 3,
            log_type: pb::LogType::Command as i32,
            data: Bytes::from_static(b"ok"),
        }],
        leader_commit: 10,
        round: 77,
        cluster_id: String::new(),
    }
}

async fn raw_client(addr: &str) -> RaftServiceClient<Channel> {
    let channel = bounded("connect", Channel::from_shared(format!("http://{addr}")).expect("uri").connect())
        .await
        .expect("connect");
    RaftServiceClient::new(channel).max_encoding_message_size(usize::MAX)
}

/// Sends a valid AppendEntries and checks it is the next thing the node sees,
/// proving the server still serves and nothing malformed was delivered.
async fn assert_still_serving(client: &mut RaftServiceClient<Channel>, seen: &mut Seen2) {
    let resp = bounded("valid append", client.append_entries(valid_append())).await.expect("valid append");
    assert_eq!(resp.get_ref().round, 77);
    match next_seen(seen).await {
        Seen::Rpc(RpcRequest::AppendEntries(got)) => assert_eq!(got.round, 77),
        other => panic!("the node saw {other:?} before the valid request"),
    }
}

type Seen2 = tokio::sync::mpsc::UnboundedReceiver<Seen>;

fn assert_code(result: Result<impl std::fmt::Debug, Status>, codes: &[Code], what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(status) => {
            assert!(codes.contains(&status.code()), "{what}: got {status:?}, wanted one of {codes:?}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fields_are_refused_and_never_delivered() {
    let server = bind(test_config()).await;
    let mut seen = spawn_responder(&server);
    let mut client = raw_client(server.local_addr().as_str()).await;
    let invalid = [Code::InvalidArgument];

    let mut r = valid_append();
    r.leader_id.clear();
    assert_code(client.append_entries(r).await, &invalid, "missing leader id");

    let mut r = valid_append();
    r.entries[0].log_type = 42;
    assert_code(client.append_entries(r).await, &invalid, "unknown log type");

    let mut r = valid_append();
    r.entries[0].log_type = 0;
    assert_code(client.append_entries(r).await, &invalid, "unspecified log type");

    let mut r = valid_append();
    r.entries.push(pb::LogEntry { index: 13, term: 3, log_type: 1, data: Bytes::new() });
    assert_code(client.append_entries(r).await, &invalid, "gap in entries");

    let mut r = valid_append();
    r.term = 0;
    assert_code(client.append_entries(r).await, &invalid, "zero term");

    let vote = pb::RequestVoteRequest { term: 4, candidate_id: String::new(), ..Default::default() };
    assert_code(client.request_vote(vote).await, &invalid, "vote without candidate");
    let pre = pb::RequestPreVoteRequest { term: 0, candidate_id: "c".into(), ..Default::default() };
    assert_code(client.request_pre_vote(pre).await, &invalid, "pre-vote with zero term");
    let tn = pb::TimeoutNowRequest { term: 2, leader_id: String::new(), cluster_id: String::new() };
    assert_code(client.timeout_now(tn).await, &invalid, "timeout-now without leader");
    let ri = pb::ReadIndexRequest { requester: String::new(), lease: true, cluster_id: String::new() };
    assert_code(client.read_index(ri).await, &invalid, "read-index without requester");
    let ri = pb::ReadIndexRequest { requester: "f".into(), lease: false, cluster_id: "bad\nid".into() };
    assert_code(client.read_index(ri).await, &invalid, "read-index with a bad cluster id");
    let mut r = valid_append();
    r.cluster_id = "bad\nid".into();
    assert_code(client.append_entries(r).await, &invalid, "cluster id with a control character");
    let vote = pb::RequestVoteRequest {
        term: 4,
        candidate_id: "c".into(),
        cluster_id: "x".repeat(257),
        ..Default::default()
    };
    assert_code(client.request_vote(vote).await, &invalid, "over-long cluster id");

    // A pipeline whose third request is malformed answers the first two,
    // then ends with INVALID_ARGUMENT.
    let mut bad = valid_append();
    bad.entries[0].index = 99;
    let msgs = vec![valid_append(), valid_append(), bad, valid_append()];
    let mut responses = bounded("open pipeline", client.append_entries_pipeline(futures::stream::iter(msgs)))
        .await
        .expect("open")
        .into_inner();
    for _ in 0..2 {
        let resp = bounded("pipelined", responses.message()).await.expect("ok").expect("a response");
        assert_eq!(resp.round, 77);
    }
    assert_code(
        bounded("pipelined error", responses.message()).await,
        &invalid,
        "malformed pipelined request",
    );
    for _ in 0..2 {
        match next_seen(&mut seen).await {
            Seen::Rpc(RpcRequest::AppendEntries(got)) => assert_eq!(got.round, 77),
            other => panic!("unexpected {other:?}"),
        }
    }

    assert_still_serving(&mut client, &mut seen).await;
}

fn chunk(payload: Payload) -> pb::InstallSnapshotChunk {
    pb::InstallSnapshotChunk { payload: Some(payload) }
}

fn header(meta: Option<pb::SnapshotMeta>) -> pb::InstallSnapshotChunk {
    chunk(Payload::Header(pb::InstallSnapshotHeader {
        term: 4,
        leader_id: "leader-1".into(),
        meta,
        cluster_id: String::new(),
    }))
}

fn meta(size: u64) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        id: "s1".into(),
        index: 10,
        term: 2,
        configuration: Some(pb::Configuration {
            servers: vec![pb::Server {
                suffrage: pb::Suffrage::Voter as i32,
                id: "a".into(),
                address: "x:1".into(),
            }],
        }),
        configuration_index: 5,
        size,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_snapshot_streams_are_refused() {
    let server = bind(test_config()).await;
    let mut seen = spawn_responder(&server);
    let mut client = raw_client(server.local_addr().as_str()).await;
    let invalid = [Code::InvalidArgument];
    let data = |n: usize| chunk(Payload::Data(Bytes::from(vec![7u8; n])));

    // Data before the header.
    let r = client.install_snapshot(futures::stream::iter(vec![data(4), header(Some(meta(4)))])).await;
    assert_code(r, &invalid, "data first");
    // Header without metadata.
    let r = client.install_snapshot(futures::stream::iter(vec![header(None), data(4)])).await;
    assert_code(r, &invalid, "missing meta");
    // A server with an invalid suffrage.
    let mut m = meta(4);
    m.configuration.as_mut().expect("config").servers[0].suffrage = 9;
    let r = client.install_snapshot(futures::stream::iter(vec![header(Some(m)), data(4)])).await;
    assert_code(r, &invalid, "bad suffrage");
    // An empty stream.
    let r = client.install_snapshot(futures::stream::iter(Vec::new())).await;
    assert_code(r, &invalid, "empty stream");
    // None of those reached the node: the header is checked first.
    assert_nothing_seen(&mut seen);

    // More data than declared: the node's reader fails, the caller is refused.
    let r =
        client.install_snapshot(futures::stream::iter(vec![header(Some(meta(4))), data(3), data(3)])).await;
    assert_code(r, &invalid, "oversized data");
    match next_seen(&mut seen).await {
        Seen::BrokenSnapshot(_, err) => assert!(err.contains("exceeds"), "{err}"),
        other => panic!("unexpected {other:?}"),
    }
    // A second header in the data.
    let r = client
        .install_snapshot(futures::stream::iter(vec![header(Some(meta(4))), header(Some(meta(4)))]))
        .await;
    assert_code(r, &invalid, "second header");
    match next_seen(&mut seen).await {
        Seen::BrokenSnapshot(..) => {}
        other => panic!("unexpected {other:?}"),
    }

    // A well-formed one still works.
    let r = client.install_snapshot(futures::stream::iter(vec![header(Some(meta(4))), data(4)])).await;
    assert!(r.expect("valid snapshot").into_inner().success);
    match next_seen(&mut seen).await {
        Seen::Snapshot(h, data) => {
            assert_eq!(h.meta.id, "s1");
            assert_eq!(data, vec![7u8; 4]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_still_serving(&mut client, &mut seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let config = GrpcConfig { max_message_size: 64 * 1024, snapshot_chunk_size: 16 * 1024, ..test_config() };
    let server = bind(config.clone()).await;
    let mut seen = spawn_responder(&server);
    let mut client = raw_client(server.local_addr().as_str()).await;

    let mut r = valid_append();
    r.entries[0].data = Bytes::from(vec![1u8; 200 * 1024]);
    assert_code(
        client.append_entries(r).await,
        &[Code::OutOfRange, Code::ResourceExhausted],
        "oversized append",
    );
    assert_still_serving(&mut client, &mut seen).await;

    // The transport's own client refuses to send an oversized message.
    let sender = bind(config).await;
    let mut big = append_request(0, 1, 5);
    big.entries[0].data = Bytes::from(vec![2u8; 200 * 1024]);
    let result = bounded(
        "oversized via transport",
        sender.append_entries(&ServerId::from("s"), &server.local_addr(), big),
    )
    .await;
    assert!(result.is_err(), "oversized send succeeded");
    assert_still_serving(&mut client, &mut seen).await;
}

/// A codec that sends arbitrary bytes as the message body.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_refused_and_the_server_keeps_serving() {
    let config = GrpcConfig { cluster_id: Some("garbage-test".into()), ..test_config() };
    let server = bind(config).await;
    let mut seen = spawn_responder(&server);
    let addr = server.local_addr();
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel.clone());

    let garbage: [&[u8]; 3] = [
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x12, 0x80, 0x80, 0x80, 0x80, 0x10, b'x'], // length far beyond the message
        &[0x0a, 0x03, 0xc3, 0x28, 0xa0],             // field 1 with a bad wire type / invalid utf-8 string
    ];
    for path in ["/raft.v1.RaftService/AppendEntries", "/raft.v1.RaftService/RequestVote"] {
        for body in garbage {
            bounded("ready", grpc.ready()).await.expect("ready");
            let mut req = tonic::Request::new(Bytes::copy_from_slice(body));
            req.metadata_mut().insert(CLUSTER_ID_METADATA_KEY, "garbage-test".parse().expect("metadata"));
            let result = bounded("garbage", grpc.unary(req, PathAndQuery::from_static(path), RawCodec)).await;
            assert!(result.is_err(), "garbage {body:?} to {path} was accepted: {result:?}");
        }
    }
    // A method that does not exist.
    bounded("ready", grpc.ready()).await.expect("ready");
    let req = tonic::Request::new(Bytes::new());
    let result = grpc.unary(req, PathAndQuery::from_static("/raft.v1.RaftService/Nope"), RawCodec).await;
    assert_code(result, &[Code::Unimplemented, Code::PermissionDenied], "unknown method");

    let mut client = RaftServiceClient::with_interceptor(channel, |mut req: tonic::Request<()>| {
        req.metadata_mut().insert(CLUSTER_ID_METADATA_KEY, "garbage-test".parse().expect("metadata"));
        Ok(req)
    });
    let resp = bounded("valid append", client.append_entries(valid_append())).await.expect("valid append");
    assert_eq!(resp.get_ref().round, 77);
    match next_seen(&mut seen).await {
        Seen::Rpc(RpcRequest::AppendEntries(got)) => assert_eq!(got.round, 77),
        other => panic!("the node saw {other:?} before the valid request"),
    }
}
