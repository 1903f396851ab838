//! The admin gRPC service (`proto/admin.proto`): read a node's
//! configuration, status and statistics, change membership and transfer
//! leadership over the network.
//!
//! Every [`GrpcTransport`](crate::GrpcTransport) serves it on its own port,
//! behind the same TLS and cluster id check as the raft RPCs (unless
//! [`GrpcConfig::admin_service`](crate::GrpcConfig::admin_service) is off).
//! Because [`raft::Raft::new`] takes the transport, the node is attached
//! afterwards through the transport's [`AdminSlot`]:
//!
//! ```no_run
//! # async fn run<F: raft::Fsm>(make: impl FnOnce(raft_transport_grpc::GrpcTransport) -> raft::Raft<F>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use raft_transport_grpc::{admin, GrpcConfig, GrpcTransport};
//!
//! let transport = GrpcTransport::bind("127.0.0.1:7000", GrpcConfig::default()).await?;
//! let slot = transport.admin();
//! let raft = make(transport); // raft::Raft::new(config, fsm, logs, stable, snaps, transport)
//! slot.attach(raft);
//!
//! // Elsewhere, e.g. in an admin CLI:
//! let mut client = admin::connect("127.0.0.1:7000", &GrpcConfig::default()).await?;
//! let status = client.status(admin::pb::StatusRequest {}).await?.into_inner();
//! tracing::info!(state = %status.state, leader = %status.leader_id, "node status");
//! # Ok(()) }
//! ```
//!
//! Exposed: `GetConfiguration`, `AddVoter`, `AddNonvoter`, `DemoteVoter`,
//! `RemoveServer`, `ChangeMembership` (several changes at once through a
//! joint configuration, see [`raft::Raft::change_membership`]),
//! `LeadershipTransfer` (to any or a named server), `Stats`,
//! `Status` (role, leader, applied and last index), `Snapshot` (takes a
//! snapshot now through [`raft::Raft::snapshot`] and answers its id, index,
//! term, size and configuration index; any node, leader or not), `Barrier`
//! (commits a barrier on the leader and answers its index once applied) and
//! `VerifyLeader` (confirms leadership with a quorum).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_transport_grpc::{admin, GrpcConfig};
//!
//! let mut client = admin::connect("127.0.0.1:7000", &GrpcConfig::default()).await?;
//! let snap = client.snapshot(admin::pb::SnapshotRequest {}).await?.into_inner();
//! tracing::info!(id = %snap.id, index = snap.index, term = snap.term, size = snap.size, "snapshot taken");
//! client.verify_leader(admin::pb::VerifyLeaderRequest {}).await?;
//! let barrier = client.barrier(admin::pb::BarrierRequest { timeout_ms: 5_000 }).await?.into_inner();
//! tracing::info!(index = barrier.index, "everything up to here is applied on the leader");
//! # Ok(()) }
//! ```
//!
//! A joint change (here: n4 and n5 replace n2 and n3 in one step), sent to
//! the leader; it answers once the new configuration is committed:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_transport_grpc::admin::pb::{ChangeMembershipRequest, MemberChange, MemberChangeKind};
//! use raft_transport_grpc::{admin, GrpcConfig};
//!
//! let change = |kind: MemberChangeKind, id: &str, address: &str| MemberChange {
//!     kind: kind as i32,
//!     id: id.into(),
//!     address: address.into(),
//! };
//! let changes = vec![
//!     change(MemberChangeKind::AddVoter, "n4", "10.0.0.4:7000"),
//!     change(MemberChangeKind::AddVoter, "n5", "10.0.0.5:7000"),
//!     change(MemberChangeKind::Remove, "n2", ""),
//!     change(MemberChangeKind::Remove, "n3", ""),
//! ];
//! let mut client = admin::connect("127.0.0.1:7000", &GrpcConfig::default()).await?;
//! let request = ChangeMembershipRequest { changes, prev_index: 0, timeout_ms: 30_000 };
//! let index = client.change_membership(request).await?.into_inner().index;
//! tracing::info!(index, "n4 and n5 replaced n2 and n3");
//! # Ok(()) }
//! ```
//!
//! For operators (`raftctl members`, `raftctl snapshot save|restore`):
//! `Members` answers the configuration with, on the leader, each member's
//! match index, lag behind the leader's last index, last contact and
//! whether it is catching up (a non-leader names the leader instead);
//! `DownloadSnapshot` streams the node's latest snapshot (a metadata
//! message, then data chunks), taking one first if anything was applied
//! since; `RestoreSnapshot` uploads one (a header, then data chunks) into
//! [`raft::Raft::restore`] on the leader.
//!
//! - [`backend`]: [`AdminBackend`], what the service needs from a node, and
//!   [`AdminSlot`], where a transport finds it.
//! - `service` (private): the gRPC handlers and the error mapping.
//! - `members` (private): the `Members` answer from a node's metrics.
//! - `streams` (private): the snapshot download and restore streams.
//! - [`client`]: [`connect`] for tools.

pub mod backend;
pub mod client;
mod members;
mod service;
mod streams;

pub use backend::{AdminBackend, AdminSlot, NodeStatus};
pub use client::{connect, error_chain, AdminClient};
pub(crate) use service::admin_routes;
pub use service::{LEADER_ADDRESS_METADATA_KEY, LEADER_ID_METADATA_KEY};

/// The messages and tonic client/server generated from `proto/admin.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("raft.admin.v1");
}
