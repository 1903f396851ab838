//! A gRPC transport for the `raft` crate, built on tonic and prost, with TLS
//! and mutual TLS through rustls.
//!
//! [`GrpcTransport::bind`] starts a node's server and returns a
//! [`raft::Transport`] to hand to the node:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use raft::Transport;
//! use raft_transport_grpc::{GrpcConfig, GrpcTransport};
//!
//! let config = GrpcConfig { cluster_id: Some("orders".into()), ..GrpcConfig::default() };
//! let transport = GrpcTransport::bind("0.0.0.0:7000", config).await?;
//! assert_eq!(transport.socket_addr().port(), 7000);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`GrpcConfig`], [`TlsConfig`], [`PemIdentity`].
//! - [`error`]: [`GrpcError`] and the gRPC status ↔ [`raft::TransportError`] mappings.
//! - [`transport`]: [`GrpcTransport`], the [`raft::Transport`] implementation.
//! - `server` (private): binding, TLS, size limits and shutdown of the tonic server.
//! - `inbound` (private): the gRPC handlers that validate requests and hand
//!   them to the node; the server side of pipelines and snapshot streams.
//! - `outbound` (private): the client side of pipelines and snapshot streams.
//! - `pool` (private): one pair of lazily connected channels per peer.
//! - `backoff` (private): reconnect back-off with jitter.
//! - `convert` / `validate` (private): raft types ↔ protobuf; inbound checks.
//! - [`admin`]: the admin gRPC service (membership, leadership transfer,
//!   status, stats, snapshot, barrier, verify leader) and a client for tools.
//! - [`cluster_id`]: stamping and checking the shared cluster id.
//! - [`pb`]: the generated protobuf messages, client and server
//!   (`proto/raft.proto`).
//!
//! # Behaviour
//! - **Two connections per peer.** Heartbeats (AppendEntries without
//!   entries), votes, pre-votes, TimeoutNow and ReadIndex use a *control* connection;
//!   AppendEntries with entries, pipelines and snapshots use a *bulk*
//!   connection. A multi-megabyte batch or a snapshot stream therefore never
//!   delays a heartbeat in HTTP/2 flow control or the TCP send buffer.
//! - **Lazy connections, back-off.** Channels connect on first use. After a
//!   connection failure or timeout a peer is backed off: calls fail fast with
//!   [`TransportError::Unreachable`](raft::TransportError::Unreachable) for
//!   `backoff_initial`, doubling per consecutive failure up to `backoff_max`,
//!   randomized to 50–100 % of that. A connection failure also discards the
//!   peer's channels so the next attempt dials afresh.
//! - **Deadlines.** Unary calls time out after `rpc_timeout`
//!   ([`TransportError::Timeout`](raft::TransportError::Timeout)), and the
//!   deadline travels to the server as `grpc-timeout`. A pipeline times out
//!   when its oldest outstanding request has waited `rpc_timeout`; a snapshot
//!   stream when it made no progress for `snapshot_timeout`.
//! - **Pipelines** run over one bidirectional stream; the server hands each
//!   request to the node as it arrives and answers strictly in order.
//! - **Snapshots** are client-streamed: a header message, then data chunks of
//!   `snapshot_chunk_size` bytes. The receiver sees a
//!   [`SnapshotReader`](raft::SnapshotReader) fed by the stream itself.
//!   `meta.size` must equal the number of data bytes: more is refused as it
//!   arrives, fewer makes the reader fail with `UnexpectedEof`.
//! - **Validation.** Malformed requests (missing ids or sub-messages,
//!   unspecified or unknown enum values, zero terms, non-contiguous entries or
//!   entry terms out of order) are answered with `INVALID_ARGUMENT`, logged at
//!   `warn`, and never reach the node. Messages over `max_message_size` are
//!   refused by the codec with `OUT_OF_RANGE`; the node knows the limit
//!   ([`raft::Transport::max_message_size`]), cuts AppendEntries to fit, and
//!   refuses a command that cannot fit in one message with
//!   [`raft::Error::CommandTooLarge`] (with the default 64 MiB limit, up to
//!   64 MiB minus about 1.1 KiB is carried). A malformed *data* stream of a
//!   snapshot is detected while the node reads it: the reader fails and the
//!   caller gets `INVALID_ARGUMENT`.
//! - **Cluster id.** With `cluster_id` set, every RPC carries it as
//!   `x-raft-cluster-id` metadata and servers refuse mismatches with
//!   `PERMISSION_DENIED`.
//! - **TLS.** With [`TlsConfig`] the server presents its certificate; with
//!   `require_client_cert` it refuses callers without a certificate signed
//!   by the configured CA (the handshake fails).

pub mod admin;
pub mod cluster_id;
pub mod config;
pub mod error;
pub mod transport;

mod backoff;
mod convert;
mod inbound;
mod outbound;
mod pool;
mod server;
mod validate;

/// The protobuf messages and tonic client/server generated from
/// `proto/raft.proto`. Public so tools (and tests) can speak the wire
/// protocol directly.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("raft.v1");
}

pub use config::{GrpcConfig, PemIdentity, TlsConfig};
pub use error::GrpcError;
pub use transport::{GrpcTransport, ListenAddr};
