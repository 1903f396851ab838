//! Infallible conversions between `raft` types and the protobuf messages:
//! every outbound request and response, and inbound responses (which carry
//! only scalars, so any value is representable). Inbound *requests* are
//! checked in [`crate::validate`] instead.

use raft::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    ReadIndexRefusal, ReadIndexRequest, ReadIndexResponse, RequestPreVoteRequest, RequestPreVoteResponse,
    RequestVoteRequest, RequestVoteResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use raft::{Configuration, Log, LogType, SnapshotMeta, Suffrage};

use crate::pb;

/// Encodes a request's cluster id (the empty string stands for none).
pub(crate) fn cluster_id_to_pb(id: &Option<raft::ClusterId>) -> String {
    id.as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default()
}

/// Encodes a log type.
pub(crate) fn log_type_to_pb(t: LogType) -> pb::LogType {
    match t {
        LogType::Command => pb::LogType::Command,
        LogType::Noop => pb::LogType::Noop,
        LogType::Barrier => pb::LogType::Barrier,
        LogType::Configuration => pb::LogType::Configuration,
    }
}

/// Encodes a suffrage.
pub(crate) fn suffrage_to_pb(s: Suffrage) -> pb::Suffrage {
    match s {
        Suffrage::Voter => pb::Suffrage::Voter,
        Suffrage::Nonvoter => pb::Suffrage::Nonvoter,
        Suffrage::IncomingVoter => pb::Suffrage::IncomingVoter,
        Suffrage::DemotingVoter => pb::Suffrage::DemotingVoter,
        Suffrage::LeavingVoter => pb::Suffrage::LeavingVoter,
    }
}

/// Encodes a log entry. The payload is a `Bytes` clone: no copy.
pub(crate) fn log_to_pb(log: &Log) -> pb::LogEntry {
    pb::LogEntry {
        index: log.index,
        term: log.term,
        log_type: log_type_to_pb(log.log_type) as i32,
        data: log.data.clone(),
    }
}

/// Encodes a configuration.
pub(crate) fn configuration_to_pb(c: &Configuration) -> pb::Configuration {
    pb::Configuration {
        servers: c
            .servers
            .iter()
            .map(|s| pb::Server {
                suffrage: suffrage_to_pb(s.suffrage) as i32,
                id: s.id.as_str().to_owned(),
                address: s.address.as_str().to_owned(),
            })
            .collect(),
    }
}

/// Encodes snapshot metadata.
pub(crate) fn snapshot_meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        id: m.id.clone(),
        index: m.index,
        term: m.term,
        configuration: Some(configuration_to_pb(&m.configuration)),
        configuration_index: m.configuration_index,
        size: m.size,
    }
}

/// Encodes an AppendEntries request.
pub(crate) fn append_request_to_pb(r: &AppendEntriesRequest) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        term: r.term,
        leader_id: r.leader_id.as_str().to_owned(),
        prev_log_index: r.prev_log_index,
        prev_log_term: r.prev_log_term,
        entries: r.entries.iter().map(log_to_pb).collect(),
        leader_commit: r.leader_commit,
        round: r.round,
        cluster_id: cluster_id_to_pb(&r.cluster_id),
    }
}

/// Encodes an AppendEntries response.
pub(crate) fn append_response_to_pb(r: &AppendEntriesResponse) -> pb::AppendEntriesResponse {
    pb::AppendEntriesResponse {
        term: r.term,
        success: r.success,
        last_log_index: r.last_log_index,
        conflict_term: r.conflict_term,
        conflict_index: r.conflict_index,
        round: r.round,
    }
}

/// Decodes an AppendEntries response.
pub(crate) fn append_response_from_pb(r: pb::AppendEntriesResponse) -> AppendEntriesResponse {
    AppendEntriesResponse {
        term: r.term,
        success: r.success,
        last_log_index: r.last_log_index,
        conflict_term: r.conflict_term,
        conflict_index: r.conflict_index,
        round: r.round,
    }
}

/// Encodes a RequestVote request.
pub(crate) fn vote_request_to_pb(r: &RequestVoteRequest) -> pb::RequestVoteRequest {
    pb::RequestVoteRequest {
        term: r.term,
        candidate_id: r.candidate_id.as_str().to_owned(),
        last_log_index: r.last_log_index,
        last_log_term: r.last_log_term,
        leadership_transfer: r.leadership_transfer,
        cluster_id: cluster_id_to_pb(&r.cluster_id),
    }
}

/// Encodes a RequestVote response.
pub(crate) fn vote_response_to_pb(r: &RequestVoteResponse) -> pb::RequestVoteResponse {
    pb::RequestVoteResponse {
        term: r.term,
        granted: r.granted,
        removed: r.removed,
        removal_index: r.removal_index,
        removal_term: r.removal_term,
    }
}

/// Decodes a RequestVote response.
pub(crate) fn vote_response_from_pb(r: pb::RequestVoteResponse) -> RequestVoteResponse {
    RequestVoteResponse {
        term: r.term,
        granted: r.granted,
        removed: r.removed,
        removal_index: r.removal_index,
        removal_term: r.removal_term,
    }
}

/// Encodes a pre-vote request.
pub(crate) fn pre_vote_request_to_pb(r: &RequestPreVoteRequest) -> pb::RequestPreVoteRequest {
    pb::RequestPreVoteRequest {
        term: r.term,
        candidate_id: r.candidate_id.as_str().to_owned(),
        last_log_index: r.last_log_index,
        last_log_term: r.last_log_term,
        cluster_id: cluster_id_to_pb(&r.cluster_id),
    }
}

/// Encodes a pre-vote response.
pub(crate) fn pre_vote_response_to_pb(r: &RequestPreVoteResponse) -> pb::RequestPreVoteResponse {
    pb::RequestPreVoteResponse {
        term: r.term,
        granted: r.granted,
        removed: r.removed,
        removal_index: r.removal_index,
        removal_term: r.removal_term,
    }
}

/// Decodes a pre-vote response.
pub(crate) fn pre_vote_response_from_pb(r: pb::RequestPreVoteResponse) -> RequestPreVoteResponse {
    RequestPreVoteResponse {
        term: r.term,
        granted: r.granted,
        removed: r.removed,
        removal_index: r.removal_index,
        removal_term: r.removal_term,
    }
}

/// Encodes a TimeoutNow request.
pub(crate) fn timeout_now_request_to_pb(r: &TimeoutNowRequest) -> pb::TimeoutNowRequest {
    pb::TimeoutNowRequest {
        term: r.term,
        leader_id: r.leader_id.as_str().to_owned(),
        cluster_id: cluster_id_to_pb(&r.cluster_id),
    }
}

/// Encodes a TimeoutNow response.
pub(crate) fn timeout_now_response_to_pb(r: &TimeoutNowResponse) -> pb::TimeoutNowResponse {
    pb::TimeoutNowResponse { term: r.term }
}

/// Decodes a TimeoutNow response.
pub(crate) fn timeout_now_response_from_pb(r: pb::TimeoutNowResponse) -> TimeoutNowResponse {
    TimeoutNowResponse { term: r.term }
}

/// Encodes a read-index request.
pub(crate) fn read_index_request_to_pb(r: &ReadIndexRequest) -> pb::ReadIndexRequest {
    pb::ReadIndexRequest {
        requester: r.requester.as_str().to_owned(),
        lease: r.lease,
        cluster_id: cluster_id_to_pb(&r.cluster_id),
    }
}

/// Encodes a read-index response.
pub(crate) fn read_index_response_to_pb(r: &ReadIndexResponse) -> pb::ReadIndexResponse {
    use pb::read_index_response::Result as R;
    use pb::ReadIndexRefusalReason as Reason;
    let refused = |reason: Reason, leader: &Option<(raft::ServerId, raft::ServerAddress)>| {
        let (leader_id, leader_address) = match leader {
            Some((id, addr)) => (id.as_str().to_owned(), addr.as_str().to_owned()),
            None => (String::new(), String::new()),
        };
        R::Refused(pb::ReadIndexRefusal { reason: reason as i32, leader_id, leader_address })
    };
    let result = match &r.result {
        Ok(index) => R::Index(*index),
        Err(ReadIndexRefusal::NotLeader { leader }) => refused(Reason::NotLeader, leader),
        Err(ReadIndexRefusal::TransferInProgress) => refused(Reason::TransferInProgress, &None),
        Err(ReadIndexRefusal::LeadershipLost) => refused(Reason::LeadershipLost, &None),
        Err(ReadIndexRefusal::ShuttingDown) => refused(Reason::ShuttingDown, &None),
    };
    pb::ReadIndexResponse { term: r.term, result: Some(result) }
}

/// Encodes the header message of an InstallSnapshot stream.
pub(crate) fn snapshot_header_to_pb(r: &InstallSnapshotRequest) -> pb::InstallSnapshotChunk {
    pb::InstallSnapshotChunk {
        payload: Some(pb::install_snapshot_chunk::Payload::Header(pb::InstallSnapshotHeader {
            term: r.term,
            leader_id: r.leader_id.as_str().to_owned(),
            meta: Some(snapshot_meta_to_pb(&r.meta)),
            cluster_id: cluster_id_to_pb(&r.cluster_id),
        })),
    }
}

/// Encodes an InstallSnapshot response.
pub(crate) fn snapshot_response_to_pb(r: &InstallSnapshotResponse) -> pb::InstallSnapshotResponse {
    pb::InstallSnapshotResponse { term: r.term, success: r.success }
}

/// Decodes an InstallSnapshot response.
pub(crate) fn snapshot_response_from_pb(r: pb::InstallSnapshotResponse) -> InstallSnapshotResponse {
    InstallSnapshotResponse { term: r.term, success: r.success }
}

#[cfg(test)]
mod size_tests {
    use bytes::Bytes;
    use prost::Message;
    use raft::transport::{inmem, ENTRY_OVERHEAD, MAX_CLUSTER_ID_LEN, MESSAGE_OVERHEAD};

    use super::*;

    fn request(leader: &str, big: u64, sizes: &[usize]) -> AppendEntriesRequest {
        AppendEntriesRequest {
            // The longest id a request can carry.
            cluster_id: Some(raft::types::ClusterId::from("c".repeat(MAX_CLUSTER_ID_LEN))),
            term: big,
            leader_id: leader.into(),
            prev_log_index: big,
            prev_log_term: big,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    Log::new(
                        big.saturating_sub(1000) + i as u64,
                        big,
                        LogType::Configuration,
                        Bytes::from(vec![7u8; n]),
                    )
                })
                .collect(),
            leader_commit: big,
            round: big,
        }
    }

    /// The node budgets an AppendEntries as `MESSAGE_OVERHEAD` plus the
    /// longest cluster id plus the leader id plus, per entry, its data and `ENTRY_OVERHEAD`: that must
    /// never be less than the real protobuf encoding, even with the largest
    /// varints, or a batch the node thinks fits is refused by the codec.
    #[test]
    fn the_node_budget_bounds_the_protobuf_encoding() {
        for big in [1, 300, u64::MAX - 1] {
            for sizes in [&[][..], &[0], &[1, 127, 128, 16_383, 16_384], &[3 * 1024 * 1024], &[10; 500]] {
                for leader in ["a", "a-rather-long-server-name-used-as-a-leader-id"] {
                    let req = request(leader, big, sizes);
                    let encoded = append_request_to_pb(&req).encoded_len();
                    let budget = MESSAGE_OVERHEAD
                        + MAX_CLUSTER_ID_LEN
                        + leader.len()
                        + sizes.iter().map(|n| n + ENTRY_OVERHEAD).sum::<usize>();
                    assert!(
                        encoded <= budget,
                        "{encoded} bytes encoded, {budget} budgeted ({big}, {sizes:?})"
                    );
                    // The in-memory network's estimate is close to the real size.
                    let estimate = inmem::encoded_len(&raft::message::RpcRequest::AppendEntries(req));
                    let slack = 4 * sizes.len() + 16;
                    assert!(
                        estimate.abs_diff(encoded) <= slack,
                        "in-memory estimate {estimate} vs protobuf {encoded} ({big}, {sizes:?})"
                    );
                }
            }
        }
    }
}
