//! The admin gRPC handlers: validate the request, call the attached
//! [`AdminBackend`], and map [`raft::Error`] to a status a tool can act on.

use std::time::Duration;

use raft::{ConfChange, Configuration, RaftState, ServerAddress, ServerId, Suffrage};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::backend::{AdminBackend, AdminSlot};
use super::pb;
use super::pb::raft_admin_server::{RaftAdmin, RaftAdminServer};
use crate::cluster_id::ClusterIdCheck;
use crate::config::GrpcConfig;

/// Timeout of a membership change or barrier whose request says 0.
const DEFAULT_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Metadata key naming the leader on a not-leader error.
pub const LEADER_ID_METADATA_KEY: &str = "x-raft-leader-id";
/// Metadata key giving the leader's address on a not-leader error.
pub const LEADER_ADDRESS_METADATA_KEY: &str = "x-raft-leader-address";

/// The admin service over `slot`, behind the cluster id check of `config`.
pub(crate) fn admin_routes(
    slot: AdminSlot,
    config: &GrpcConfig,
) -> InterceptedService<RaftAdminServer<AdminService>, ClusterIdCheck> {
    InterceptedService::new(
        RaftAdminServer::new(AdminService { slot }),
        ClusterIdCheck::new(config.cluster_id.as_deref()),
    )
}

/// Serves admin calls from whatever node is attached to the slot.
#[derive(Debug)]
pub(crate) struct AdminService {
    slot: AdminSlot,
}

impl AdminService {
    fn backend(&self) -> Result<std::sync::Arc<dyn AdminBackend>, Status> {
        self.slot.get().ok_or_else(|| Status::unavailable("no raft node is attached to this transport"))
    }
}

pub(crate) fn to_status(err: raft::Error) -> Status {
    let msg = err.to_string();
    match err {
        raft::Error::NotLeader { leader } => {
            let mut status = Status::failed_precondition(msg);
            if let Some((id, addr)) = leader {
                let md = status.metadata_mut();
                if let Ok(v) = id.as_str().parse::<AsciiMetadataValue>() {
                    md.insert(LEADER_ID_METADATA_KEY, v);
                }
                if let Ok(v) = addr.as_str().parse::<AsciiMetadataValue>() {
                    md.insert(LEADER_ADDRESS_METADATA_KEY, v);
                }
            }
            status
        }
        raft::Error::Timeout | raft::Error::EnqueueTimeout => Status::deadline_exceeded(msg),
        raft::Error::Shutdown => Status::unavailable(msg),
        raft::Error::LeadershipLost
        | raft::Error::LeadershipTransferInProgress
        | raft::Error::ConfigurationChangeInProgress { .. }
        | raft::Error::StalePrevIndex { .. } => Status::aborted(msg),
        raft::Error::UnknownServer(_) => Status::not_found(msg),
        raft::Error::InvalidConfig(_) => Status::invalid_argument(msg),
        raft::Error::NotAVoter(_) => Status::failed_precondition(msg),
        raft::Error::ServerExists { .. } => Status::already_exists(msg),
        raft::Error::CatchUpTimeout { .. } => Status::deadline_exceeded(msg),
        raft::Error::ServerRemoved { .. } => Status::failed_precondition(msg),
        raft::Error::CantBootstrap => Status::failed_precondition(msg),
        // Nothing applied yet: a state the caller can wait out, not a
        // malformed request.
        raft::Error::NothingToSnapshot => Status::failed_precondition(msg),
        raft::Error::MembershipChangeRefused(_) => Status::invalid_argument(msg),
        // A restored snapshot that does not match its size or fails
        // verification.
        raft::Error::Storage(raft::StorageError::Corrupt { .. }) => Status::data_loss(msg),
        other => {
            tracing::warn!(error = %other, "admin operation failed");
            Status::internal(other.to_string())
        }
    }
}

/// Converts and checks the changes of a `ChangeMembership` request: at
/// least one, each with a known kind and an id, an address for adds and
/// none for the other kinds. The configuration rules themselves (unknown
/// server, a server named twice, no voter left, ...) are the node's.
pub(crate) fn changes_from_pb(changes: Vec<pb::MemberChange>) -> Result<Vec<ConfChange>, Status> {
    if changes.is_empty() {
        tracing::warn!("refusing a membership change request with no changes");
        return Err(Status::invalid_argument("changes: at least one change is required"));
    }
    changes
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let bad = |what: String| {
                tracing::warn!(change = i, reason = %what, "refusing a malformed membership change request");
                Status::invalid_argument(format!("changes[{i}]: {what}"))
            };
            if c.id.is_empty() {
                return Err(bad("id is required".into()));
            }
            let kind = pb::MemberChangeKind::try_from(c.kind)
                .map_err(|_| bad(format!("unknown change kind {}", c.kind)))?;
            let id = ServerId::new(c.id);
            let is_add = matches!(kind, pb::MemberChangeKind::AddVoter | pb::MemberChangeKind::AddNonvoter);
            if is_add && c.address.is_empty() {
                return Err(bad(format!("an address is required to add {id}")));
            }
            if !is_add && !c.address.is_empty() {
                return Err(bad(format!("an address is only given to add a server, not for {id}")));
            }
            let address = ServerAddress::new(c.address);
            Ok(match kind {
                pb::MemberChangeKind::AddVoter => ConfChange::AddVoter(id, address),
                pb::MemberChangeKind::AddNonvoter => ConfChange::AddNonvoter(id, address),
                pb::MemberChangeKind::Remove => ConfChange::Remove(id),
                pb::MemberChangeKind::Promote => ConfChange::Promote(id),
                pb::MemberChangeKind::Demote => ConfChange::Demote(id),
                pb::MemberChangeKind::Unspecified => return Err(bad("the change kind is required".into())),
            })
        })
        .collect()
}

fn require(field: &str, value: String) -> Result<String, Status> {
    if value.is_empty() {
        tracing::warn!(field, "refusing admin request with a missing field");
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(value)
}

pub(crate) fn timeout(ms: u64) -> Duration {
    if ms == 0 {
        DEFAULT_CHANGE_TIMEOUT
    } else {
        Duration::from_millis(ms)
    }
}

pub(crate) fn members(configuration: &Configuration) -> Vec<pb::Member> {
    configuration
        .servers
        .iter()
        .map(|s| pb::Member {
            id: s.id.to_string(),
            address: s.address.to_string(),
            suffrage: match s.suffrage {
                Suffrage::Voter => pb::MemberSuffrage::Voter as i32,
                Suffrage::Nonvoter => pb::MemberSuffrage::Nonvoter as i32,
                Suffrage::IncomingVoter => pb::MemberSuffrage::IncomingVoter as i32,
                Suffrage::DemotingVoter => pb::MemberSuffrage::DemotingVoter as i32,
                Suffrage::LeavingVoter => pb::MemberSuffrage::LeavingVoter as i32,
            },
        })
        .collect()
}

fn state_name(state: RaftState) -> String {
    state.to_string()
}

#[tonic::async_trait]
impl RaftAdmin for AdminService {
    type DownloadSnapshotStream = super::streams::SnapshotStream;

    async fn members(
        &self,
        _request: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        let backend = self.backend()?;
        if let Some(metrics) = backend.metrics() {
            return Ok(Response::new(super::members::from_metrics(&metrics)));
        }
        // A backend without metrics: the configuration, no progress.
        let (configuration, index) = backend.get_configuration().await.map_err(to_status)?;
        let status = backend.status();
        let mut response = super::members::skeleton(&configuration, index, status.leader.as_ref());
        response.last_index = status.last_index;
        Ok(Response::new(response))
    }

    async fn download_snapshot(
        &self,
        _request: Request<pb::DownloadSnapshotRequest>,
    ) -> Result<Response<Self::DownloadSnapshotStream>, Status> {
        let (meta, reader) = self.backend()?.latest_snapshot().await.map_err(to_status)?;
        tracing::info!(
            id = %meta.id, index = meta.index, term = meta.term, size = meta.size,
            "streaming a snapshot through the admin service"
        );
        Ok(Response::new(super::streams::download_stream(meta, reader)))
    }

    async fn restore_snapshot(
        &self,
        request: Request<tonic::Streaming<pb::RestoreSnapshotChunk>>,
    ) -> Result<Response<pb::RestoreSnapshotResponse>, Status> {
        let backend = self.backend()?;
        let response = super::streams::restore_upload(backend, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn get_configuration(
        &self,
        _request: Request<pb::GetConfigurationRequest>,
    ) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        let (configuration, index) = self.backend()?.get_configuration().await.map_err(to_status)?;
        Ok(Response::new(pb::GetConfigurationResponse { members: members(&configuration), index }))
    }

    async fn add_voter(
        &self,
        request: Request<pb::AddServerRequest>,
    ) -> Result<Response<pb::ConfigurationChangeResponse>, Status> {
        let r = request.into_inner();
        let (id, addr) =
            (ServerId::new(require("id", r.id)?), ServerAddress::new(require("address", r.address)?));
        let index = self
            .backend()?
            .add_voter(id, addr, r.prev_index, timeout(r.timeout_ms))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ConfigurationChangeResponse { index }))
    }

    async fn add_nonvoter(
        &self,
        request: Request<pb::AddServerRequest>,
    ) -> Result<Response<pb::ConfigurationChangeResponse>, Status> {
        let r = request.into_inner();
        let (id, addr) =
            (ServerId::new(require("id", r.id)?), ServerAddress::new(require("address", r.address)?));
        let index = self
            .backend()?
            .add_nonvoter(id, addr, r.prev_index, timeout(r.timeout_ms))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ConfigurationChangeResponse { index }))
    }

    async fn demote_voter(
        &self,
        request: Request<pb::ServerChangeRequest>,
    ) -> Result<Response<pb::ConfigurationChangeResponse>, Status> {
        let r = request.into_inner();
        let id = ServerId::new(require("id", r.id)?);
        let index =
            self.backend()?.demote_voter(id, r.prev_index, timeout(r.timeout_ms)).await.map_err(to_status)?;
        Ok(Response::new(pb::ConfigurationChangeResponse { index }))
    }

    async fn remove_server(
        &self,
        request: Request<pb::ServerChangeRequest>,
    ) -> Result<Response<pb::ConfigurationChangeResponse>, Status> {
        let r = request.into_inner();
        let id = ServerId::new(require("id", r.id)?);
        let index = self
            .backend()?
            .remove_server(id, r.prev_index, timeout(r.timeout_ms))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ConfigurationChangeResponse { index }))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::ConfigurationChangeResponse>, Status> {
        let r = request.into_inner();
        let changes = changes_from_pb(r.changes)?;
        tracing::info!(
            ?changes,
            prev_index = r.prev_index,
            "joint membership change through the admin service"
        );
        let index = self
            .backend()?
            .change_membership(changes, r.prev_index, timeout(r.timeout_ms))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ConfigurationChangeResponse { index }))
    }

    async fn leadership_transfer(
        &self,
        request: Request<pb::LeadershipTransferRequest>,
    ) -> Result<Response<pb::LeadershipTransferResponse>, Status> {
        let r = request.into_inner();
        let target = if r.target_id.is_empty() {
            None
        } else {
            Some((ServerId::new(r.target_id), ServerAddress::new(r.target_address)))
        };
        self.backend()?.leadership_transfer(target).await.map_err(to_status)?;
        Ok(Response::new(pb::LeadershipTransferResponse {}))
    }

    async fn stats(
        &self,
        _request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let stats = self.backend()?.stats();
        Ok(Response::new(pb::StatsResponse { stats: stats.into_iter().collect() }))
    }

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let backend = self.backend()?;
        let meta = backend.snapshot().await.map_err(to_status)?;
        tracing::info!(
            index = meta.index,
            term = meta.term,
            size = meta.size,
            id = %meta.id,
            "snapshot taken through the admin service"
        );
        // `snapshot` answers once the log is compacted: this is its start.
        let first_index = backend.status().first_index;
        Ok(Response::new(pb::SnapshotResponse {
            id: meta.id,
            index: meta.index,
            term: meta.term,
            size: meta.size,
            configuration_index: meta.configuration_index,
            first_index,
        }))
    }

    async fn barrier(
        &self,
        request: Request<pb::BarrierRequest>,
    ) -> Result<Response<pb::BarrierResponse>, Status> {
        let r = request.into_inner();
        let index = self.backend()?.barrier(timeout(r.timeout_ms)).await.map_err(to_status)?;
        Ok(Response::new(pb::BarrierResponse { index }))
    }

    async fn verify_leader(
        &self,
        _request: Request<pb::VerifyLeaderRequest>,
    ) -> Result<Response<pb::VerifyLeaderResponse>, Status> {
        self.backend()?.verify_leader().await.map_err(to_status)?;
        Ok(Response::new(pb::VerifyLeaderResponse {}))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.backend()?.status();
        let (leader_id, leader_address) =
            status.leader.map(|(id, addr)| (id.to_string(), addr.to_string())).unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            state: state_name(status.state),
            leader_id,
            leader_address,
            applied_index: status.applied_index,
            last_index: status.last_index,
            first_index: status.first_index,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: pb::MemberChangeKind, id: &str, address: &str) -> pb::MemberChange {
        pb::MemberChange { kind: kind as i32, id: id.into(), address: address.into() }
    }

    #[test]
    fn every_kind_converts() {
        use pb::MemberChangeKind as K;
        let got = changes_from_pb(vec![
            change(K::AddVoter, "n4", "10.0.0.4:7000"),
            change(K::AddNonvoter, "n5", "10.0.0.5:7000"),
            change(K::Remove, "n1", ""),
            change(K::Promote, "n6", ""),
            change(K::Demote, "n2", ""),
        ])
        .expect("valid");
        assert_eq!(
            got,
            vec![
                ConfChange::AddVoter("n4".into(), "10.0.0.4:7000".into()),
                ConfChange::AddNonvoter("n5".into(), "10.0.0.5:7000".into()),
                ConfChange::Remove("n1".into()),
                ConfChange::Promote("n6".into()),
                ConfChange::Demote("n2".into()),
            ]
        );
    }

    #[test]
    fn malformed_changes_are_invalid_arguments_naming_the_change() {
        use pb::MemberChangeKind as K;
        let cases: Vec<(Vec<pb::MemberChange>, &str)> = vec![
            (vec![], "at least one change"),
            (vec![change(K::Remove, "", "")], "changes[0]: id is required"),
            (
                vec![change(K::Remove, "n1", ""), change(K::AddVoter, "n4", "")],
                "changes[1]: an address is required",
            ),
            (vec![change(K::Demote, "n1", "somewhere")], "only given to add"),
            (vec![change(K::Unspecified, "n1", "")], "kind is required"),
            (
                vec![pb::MemberChange { kind: 42, id: "n1".into(), address: String::new() }],
                "unknown change kind 42",
            ),
        ];
        for (changes, expected) in cases {
            let status = changes_from_pb(changes.clone()).expect_err("malformed");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{changes:?}");
            assert!(status.message().contains(expected), "{changes:?}: {}", status.message());
        }
    }

    #[test]
    fn refused_joint_changes_map_to_statuses() {
        let refused = raft::Error::MembershipChangeRefused(raft::ConfChangeError::NoChanges);
        assert_eq!(to_status(refused).code(), tonic::Code::InvalidArgument);
        assert_eq!(to_status(raft::Error::UnknownServer("n9".into())).code(), tonic::Code::NotFound);
    }
}
