//! The replicated key-value service behind `kv serve` and `kv demo`: one
//! node is a [`raft::Raft`] over a [`KvFsm`](crate::kv::KvFsm), durable
//! file stores, the gRPC transport (with the admin service on the raft
//! port) and an HTTP/JSON API.
//!
//! # Layout
//! - [`node`]: [`KvNode`] (start, join, shutdown) and [`NodeOptions`].
//! - [`api`]: the HTTP routes, forwarding to the leader, error mapping.
//! - [`client`]: a small HTTP client, used to forward requests to the
//!   leader, to join a cluster and by the demo.
//! - [`server`]: the HTTP server loop (connection timeouts, graceful stop).
//! - [`tls`]: loading a `--tls-dir` (ca.pem, node.pem, node-key.pem).
//! - [`https`]: the HTTP API over TLS with that directory, and the client
//!   certificate identity that authenticates cluster requests.
//! - [`error`]: [`NodeError`], why a node could not start, join or stop.
//! - [`metrics`]: [`MetricsServer`], the raft series for Prometheus
//!   (`kv serve --metrics-addr`).
//! - [`shedding`]: requests answered `503 overloaded` are counted
//!   (`kv_requests_shed_total`) and logged at warn level, rate-limited.
//!
//! # How a follower finds the leader's API
//! The raft configuration holds transport addresses only. Each node's HTTP
//! API address is kept in a replicated directory inside the FSM
//! ([`KvFsm::nodes`](crate::kv::KvFsm::nodes)), written with
//! [`KvCommand::RegisterNode`](crate::kv::KvCommand::RegisterNode): the join
//! handler registers a joining node before adding it as a voter, and every
//! node checks in the background that its own entry is current (this covers
//! the bootstrap node and a node restarted on a new API address). A request
//! that needs the leader (writes and cluster changes) and reaches a
//! follower is proxied to the API address the directory gives for the
//! leader raft names. Reads are not: every consistency level is served by
//! the node asked (`lease` and `linearizable` reads on a follower are
//! linearizable follower reads, see [`api`]).
//!
//! The directory holds bare `host:port` addresses, without a scheme: a
//! node started with `--tls-dir` speaks HTTPS to every address (and
//! serves HTTPS, see [`https`]), one without it plain HTTP, so a cluster
//! runs with TLS on every node or on none.

pub mod api;
pub mod client;
pub mod error;
pub mod https;
pub mod metrics;
pub mod node;
pub mod server;
pub mod shedding;
pub mod tls;

pub use error::NodeError;
pub use https::{ClientIdentity, HttpsConfig};
pub use metrics::MetricsServer;
pub use node::{KvNode, NodeExit, NodeOptions};
