//! Helpers shared by the integration tests: binding transports on loopback,
//! a scripted responder that answers inbound RPCs from the consumer and
//! records what it saw, request builders, and test certificates generated
//! with rcgen at run time; [`nodes`]: real raft nodes with durable stores.

#![allow(dead_code)]

pub mod nodes;

use std::time::Duration;

use bytes::Bytes;
use raft::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    ReadIndexRefusal, ReadIndexResponse, RequestPreVoteResponse, RequestVoteResponse, RpcRequest,
    RpcResponse, TimeoutNowResponse,
};
use raft::transport::{InboundRequest, InboundRpc};
use raft::{Configuration, Log, LogType, Server, SnapshotMeta, Transport};
use raft_transport_grpc::{GrpcConfig, GrpcTransport, PemIdentity};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Upper bound for any single step of a test; nothing should come close.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`STEP`].
pub async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

/// A config with short timeouts suitable for loopback tests.
pub fn test_config() -> GrpcConfig {
    GrpcConfig {
        connect_timeout: Duration::from_secs(2),
        rpc_timeout: Duration::from_secs(5),
        snapshot_timeout: Duration::from_secs(10),
        ..GrpcConfig::default()
    }
}

/// Binds a transport on an ephemeral loopback port.
pub async fn bind(config: GrpcConfig) -> GrpcTransport {
    bounded("bind", GrpcTransport::bind("127.0.0.1:0", config)).await.expect("bind transport")
}

/// What the responder saw.
#[derive(Debug)]
pub enum Seen {
    /// A plain RPC.
    Rpc(RpcRequest),
    /// A snapshot header and all of its data.
    Snapshot(InstallSnapshotRequest, Vec<u8>),
    /// A snapshot whose data stream failed while being read.
    BrokenSnapshot(InstallSnapshotRequest, String),
}

/// The deterministic answer to an AppendEntries: every field derived from
/// the request so a test can check both directions.
pub fn append_answer(req: &AppendEntriesRequest) -> AppendEntriesResponse {
    AppendEntriesResponse {
        term: req.term + 1,
        success: req.leader_commit.is_multiple_of(2),
        last_log_index: req.prev_log_index + req.entries.len() as u64,
        conflict_term: req.prev_log_term + 7,
        conflict_index: req.leader_commit + 11,
        round: req.round,
    }
}

/// Answers one request the way [`spawn_responder`] does.
pub fn answer(req: &RpcRequest) -> RpcResponse {
    match req {
        RpcRequest::AppendEntries(r) => RpcResponse::AppendEntries(append_answer(r)),
        RpcRequest::RequestVote(r) => RpcResponse::RequestVote(RequestVoteResponse {
            term: r.term + 2,
            granted: r.leadership_transfer,
            removed: !r.leadership_transfer,
            removal_index: r.last_log_index + 6,
            removal_term: r.last_log_term + 7,
        }),
        RpcRequest::RequestPreVote(r) => RpcResponse::RequestPreVote(RequestPreVoteResponse {
            term: r.term + 3,
            granted: r.last_log_index > 5,
            removed: r.last_log_index <= 5,
            removal_index: r.last_log_index + 8,
            removal_term: r.last_log_term + 9,
        }),
        RpcRequest::TimeoutNow(r) => RpcResponse::TimeoutNow(TimeoutNowResponse { term: r.term + 4 }),
        // A lease read gets an index, a ReadIndex read a refusal naming a
        // leader: both derived from the requester.
        RpcRequest::ReadIndex(r) => RpcResponse::ReadIndex(ReadIndexResponse {
            term: 40 + r.requester.as_str().len() as u64,
            result: if r.lease {
                Ok(1000 + r.requester.as_str().len() as u64)
            } else {
                Err(ReadIndexRefusal::NotLeader {
                    leader: Some((
                        format!("{}-leader", r.requester).into(),
                        format!("addr-{}", r.requester).into(),
                    )),
                })
            },
        }),
    }
}

/// Takes the transport's consumer and answers every inbound RPC with
/// [`answer`] (snapshots: read fully, then success iff the data length
/// matches `meta.size`), reporting each on the returned channel.
pub fn spawn_responder(transport: &GrpcTransport) -> mpsc::UnboundedReceiver<Seen> {
    let mut inbound = transport.take_consumer().expect("consumer");
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(InboundRpc { request, reply }) = inbound.recv().await {
            match request {
                InboundRequest::Rpc(req) => {
                    let resp = answer(&req);
                    let _ = seen_tx.send(Seen::Rpc(req));
                    reply.send(Ok(resp));
                }
                InboundRequest::InstallSnapshot(header, mut data) => {
                    let seen_tx = seen_tx.clone();
                    // Snapshots are read on their own task so a slow one
                    // does not hold up other RPCs.
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        match data.read_to_end(&mut buf).await {
                            Ok(_) => {
                                let success = buf.len() as u64 == header.meta.size;
                                let term = header.term + 5;
                                let _ = seen_tx.send(Seen::Snapshot(header, buf));
                                reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse {
                                    term,
                                    success,
                                })));
                            }
                            Err(err) => {
                                let _ = seen_tx.send(Seen::BrokenSnapshot(header, err.to_string()));
                                reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse {
                                    term: 0,
                                    success: false,
                                })));
                            }
                        }
                    });
                }
            }
        }
    });
    seen_rx
}

/// An AppendEntries carrying `n` command entries after `prev`.
pub fn append_request(prev: u64, n: u64, round: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term: 9,
        leader_id: "leader-1".into(),
        prev_log_index: prev,
        prev_log_term: 8,
        entries: (1..=n)
            .map(|i| {
                let kind = match i % 4 {
                    0 => LogType::Command,
                    1 => LogType::Noop,
                    2 => LogType::Barrier,
                    _ => LogType::Configuration,
                };
                Log::new(prev + i, 9, kind, Bytes::from(format!("payload-{}", prev + i)))
            })
            .collect(),
        leader_commit: prev,
        round,
        cluster_id: None,
    }
}

/// Snapshot metadata with a two-member configuration.
pub fn snapshot_meta(size: u64) -> SnapshotMeta {
    SnapshotMeta {
        id: "snap-42".into(),
        index: 420,
        term: 7,
        configuration: Configuration::new(vec![
            Server::voter("a", "10.0.0.1:1"),
            Server::nonvoter("b", "10.0.0.2:2"),
        ]),
        configuration_index: 400,
        size,
    }
}

/// `len` bytes of a recognisable, position-dependent pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1]).collect()
}

/// A CA and the means to issue certificates from it.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A fresh self-signed CA.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("ca key");
        Self { issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign ca") }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }

    /// A certificate for a node on loopback, usable as server and client.
    pub fn issue(&self, name: &str) -> PemIdentity {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign node cert");
        PemIdentity::new(cert.pem(), key.serialize_pem())
    }
}

/// Asserts that nothing (more) was delivered to the node.
pub fn assert_nothing_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) {
    if let Ok(item) = seen.try_recv() {
        panic!("the node received a request it should not have: {item:?}");
    }
}

/// Receives the next delivered request.
pub async fn next_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    bounded("next delivered request", seen.recv()).await.expect("responder alive")
}
