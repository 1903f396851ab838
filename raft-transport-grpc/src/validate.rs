//! Decoding of inbound requests into `raft` types, refusing anything
//! malformed: missing sub-messages, empty ids, unspecified or unknown enum
//! values, a zero term, and entries that are not contiguous from
//! `prev_log_index + 1` or whose terms go backwards. A request that fails
//! here is answered with `INVALID_ARGUMENT` and never reaches the node.

use raft::message::{
    AppendEntriesRequest, InstallSnapshotRequest, ReadIndexRefusal, ReadIndexRequest, ReadIndexResponse,
    RequestPreVoteRequest, RequestVoteRequest, TimeoutNowRequest,
};
use raft::{Configuration, Log, LogType, Server, ServerAddress, ServerId, SnapshotMeta, Suffrage};

use crate::pb;

/// Why an inbound message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Invalid(pub(crate) String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(msg.into()))
}

fn require_term(term: u64) -> Result<u64, Invalid> {
    if term == 0 {
        return invalid("term must be at least 1");
    }
    Ok(term)
}

fn require_id(field: &str, id: String) -> Result<ServerId, Invalid> {
    if id.is_empty() {
        return invalid(format!("{field} is missing"));
    }
    Ok(ServerId::new(id))
}

fn log_type_from_pb(value: i32) -> Result<LogType, Invalid> {
    match pb::LogType::try_from(value) {
        Ok(pb::LogType::Command) => Ok(LogType::Command),
        Ok(pb::LogType::Noop) => Ok(LogType::Noop),
        Ok(pb::LogType::Barrier) => Ok(LogType::Barrier),
        Ok(pb::LogType::Configuration) => Ok(LogType::Configuration),
        Ok(pb::LogType::Unspecified) | Err(_) => invalid(format!("invalid log type {value}")),
    }
}

fn suffrage_from_pb(value: i32) -> Result<Suffrage, Invalid> {
    match pb::Suffrage::try_from(value) {
        Ok(pb::Suffrage::Voter) => Ok(Suffrage::Voter),
        Ok(pb::Suffrage::Nonvoter) => Ok(Suffrage::Nonvoter),
        Ok(pb::Suffrage::IncomingVoter) => Ok(Suffrage::IncomingVoter),
        Ok(pb::Suffrage::DemotingVoter) => Ok(Suffrage::DemotingVoter),
        Ok(pb::Suffrage::LeavingVoter) => Ok(Suffrage::LeavingVoter),
        Ok(pb::Suffrage::Unspecified) | Err(_) => invalid(format!("invalid suffrage {value}")),
    }
}

/// Decodes and checks an AppendEntries request.
pub(crate) fn append_request(r: pb::AppendEntriesRequest) -> Result<AppendEntriesRequest, Invalid> {
    let term = require_term(r.term)?;
    let leader_id = require_id("leader_id", r.leader_id)?;
    let mut entries = Vec::with_capacity(r.entries.len());
    let mut expected_index = r.prev_log_index;
    let mut last_term = r.prev_log_term;
    for entry in r.entries {
        expected_index = match expected_index.checked_add(1) {
            Some(i) => i,
            None => return invalid("entry index overflows"),
        };
        if entry.index != expected_index {
            return invalid(format!(
                "entries not contiguous: expected index {expected_index}, got {}",
                entry.index
            ));
        }
        if entry.term < last_term {
            return invalid(format!(
                "entry {} has term {} below the preceding {last_term}",
                entry.index, entry.term
            ));
        }
        if entry.term > term {
            return invalid(format!(
                "entry {} has term {} above the leader's {term}",
                entry.index, entry.term
            ));
        }
        last_term = entry.term;
        entries.push(Log::new(entry.index, entry.term, log_type_from_pb(entry.log_type)?, entry.data));
    }
    Ok(AppendEntriesRequest {
        term,
        leader_id,
        prev_log_index: r.prev_log_index,
        prev_log_term: r.prev_log_term,
        entries,
        leader_commit: r.leader_commit,
        round: r.round,
        cluster_id: cluster_id(r.cluster_id)?,
    })
}

/// Decodes and checks a RequestVote request.
pub(crate) fn vote_request(r: pb::RequestVoteRequest) -> Result<RequestVoteRequest, Invalid> {
    Ok(RequestVoteRequest {
        term: require_term(r.term)?,
        candidate_id: require_id("candidate_id", r.candidate_id)?,
        last_log_index: r.last_log_index,
        last_log_term: r.last_log_term,
        leadership_transfer: r.leadership_transfer,
        cluster_id: cluster_id(r.cluster_id)?,
    })
}

/// Decodes and checks a pre-vote request.
pub(crate) fn pre_vote_request(r: pb::RequestPreVoteRequest) -> Result<RequestPreVoteRequest, Invalid> {
    Ok(RequestPreVoteRequest {
        term: require_term(r.term)?,
        candidate_id: require_id("candidate_id", r.candidate_id)?,
        last_log_index: r.last_log_index,
        last_log_term: r.last_log_term,
        cluster_id: cluster_id(r.cluster_id)?,
    })
}

/// Decodes and checks a TimeoutNow request.
pub(crate) fn timeout_now_request(r: pb::TimeoutNowRequest) -> Result<TimeoutNowRequest, Invalid> {
    Ok(TimeoutNowRequest {
        term: require_term(r.term)?,
        leader_id: require_id("leader_id", r.leader_id)?,
        cluster_id: cluster_id(r.cluster_id)?,
    })
}

/// Decodes and checks a read-index request.
pub(crate) fn read_index_request(r: pb::ReadIndexRequest) -> Result<ReadIndexRequest, Invalid> {
    Ok(ReadIndexRequest {
        requester: require_id("requester", r.requester)?,
        lease: r.lease,
        cluster_id: cluster_id(r.cluster_id)?,
    })
}

/// Decodes and checks a read-index response (the one response with a
/// required part: its result).
pub(crate) fn read_index_response(r: pb::ReadIndexResponse) -> Result<ReadIndexResponse, Invalid> {
    use pb::read_index_response::Result as R;
    use pb::ReadIndexRefusalReason as Reason;
    let result = match r.result {
        None => return invalid("result is missing"),
        Some(R::Index(index)) => Ok(index),
        Some(R::Refused(refused)) => Err(match Reason::try_from(refused.reason) {
            Ok(Reason::NotLeader) => {
                let leader = match (refused.leader_id.is_empty(), refused.leader_address.is_empty()) {
                    (true, true) => None,
                    (false, false) => {
                        Some((ServerId::new(refused.leader_id), ServerAddress::new(refused.leader_address)))
                    }
                    _ => return invalid("leader_id and leader_address must be both set or both empty"),
                };
                ReadIndexRefusal::NotLeader { leader }
            }
            Ok(Reason::TransferInProgress) => ReadIndexRefusal::TransferInProgress,
            Ok(Reason::LeadershipLost) => ReadIndexRefusal::LeadershipLost,
            Ok(Reason::ShuttingDown) => ReadIndexRefusal::ShuttingDown,
            Ok(Reason::Unspecified) | Err(_) => {
                return invalid(format!("unknown refusal reason {}", refused.reason))
            }
        }),
    };
    Ok(ReadIndexResponse { term: r.term, result })
}

/// Decodes a request's cluster id: empty is none, anything else must be a
/// valid [`ClusterId`](raft::ClusterId).
fn cluster_id(id: String) -> Result<Option<raft::ClusterId>, Invalid> {
    if id.is_empty() {
        return Ok(None);
    }
    match id.parse::<raft::ClusterId>() {
        Ok(id) => Ok(Some(id)),
        Err(why) => invalid(format!("cluster_id: {why}")),
    }
}

fn configuration(c: Option<pb::Configuration>) -> Result<Configuration, Invalid> {
    let Some(c) = c else {
        return invalid("snapshot configuration is missing");
    };
    let servers = c
        .servers
        .into_iter()
        .map(|s| {
            if s.address.is_empty() {
                return invalid("server address is missing");
            }
            Ok(Server {
                suffrage: suffrage_from_pb(s.suffrage)?,
                id: require_id("server id", s.id)?,
                address: ServerAddress::new(s.address),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Configuration { servers })
}

fn snapshot_meta(m: Option<pb::SnapshotMeta>) -> Result<SnapshotMeta, Invalid> {
    let Some(m) = m else {
        return invalid("snapshot meta is missing");
    };
    if m.id.is_empty() {
        return invalid("snapshot id is missing");
    }
    if m.configuration_index > m.index {
        return invalid("snapshot configuration_index is beyond its index");
    }
    Ok(SnapshotMeta {
        id: m.id,
        index: m.index,
        term: m.term,
        configuration: configuration(m.configuration)?,
        configuration_index: m.configuration_index,
        size: m.size,
    })
}

/// Decodes and checks the header of an InstallSnapshot stream.
pub(crate) fn snapshot_header(h: pb::InstallSnapshotHeader) -> Result<InstallSnapshotRequest, Invalid> {
    Ok(InstallSnapshotRequest {
        term: require_term(h.term)?,
        leader_id: require_id("leader_id", h.leader_id)?,
        meta: snapshot_meta(h.meta)?,
        cluster_id: cluster_id(h.cluster_id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> pb::LogEntry {
        pb::LogEntry {
            index,
            term,
            log_type: pb::LogType::Command as i32,
            data: bytes::Bytes::from_static(b"x"),
        }
    }

    fn request(entries: Vec<pb::LogEntry>) -> pb::AppendEntriesRequest {
        pb::AppendEntriesRequest {
            term: 3,
            leader_id: "n1".into(),
            prev_log_index: 10,
            prev_log_term: 2,
            entries,
            leader_commit: 9,
            round: 1,
            cluster_id: String::new(),
        }
    }

    #[test]
    fn contiguous_entries_are_accepted() {
        let r = append_request(request(vec![entry(11, 2), entry(12, 3)])).expect("valid");
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[1].index, 12);
    }

    #[test]
    fn gaps_and_bad_terms_are_refused() {
        assert!(append_request(request(vec![entry(11, 2), entry(13, 3)])).is_err());
        assert!(append_request(request(vec![entry(12, 2)])).is_err());
        assert!(append_request(request(vec![entry(11, 3), entry(12, 2)])).is_err());
        assert!(append_request(request(vec![entry(11, 1)])).is_err());
        assert!(append_request(request(vec![entry(11, 4)])).is_err());
    }

    #[test]
    fn missing_fields_and_bad_enums_are_refused() {
        let mut r = request(vec![]);
        r.leader_id.clear();
        assert!(append_request(r).is_err());
        let mut r = request(vec![entry(11, 2)]);
        r.entries[0].log_type = 0;
        assert!(append_request(r).is_err());
        let mut r = request(vec![entry(11, 2)]);
        r.entries[0].log_type = 99;
        assert!(append_request(r).is_err());
        let mut r = request(vec![]);
        r.term = 0;
        assert!(append_request(r).is_err());
        let header = pb::InstallSnapshotHeader {
            term: 1,
            leader_id: "n1".into(),
            meta: None,
            cluster_id: String::new(),
        };
        assert!(snapshot_header(header).is_err());
    }

    #[test]
    fn read_index_responses_without_a_result_or_with_half_a_leader_are_refused() {
        use pb::read_index_response::Result as R;
        let missing = pb::ReadIndexResponse { term: 3, result: None };
        assert!(read_index_response(missing).is_err());
        let refusal = |reason: i32, id: &str, addr: &str| pb::ReadIndexResponse {
            term: 3,
            result: Some(R::Refused(pb::ReadIndexRefusal {
                reason,
                leader_id: id.into(),
                leader_address: addr.into(),
            })),
        };
        let not_leader = pb::ReadIndexRefusalReason::NotLeader as i32;
        assert!(read_index_response(refusal(not_leader, "n2", "")).is_err());
        assert!(read_index_response(refusal(0, "", "")).is_err());
        assert!(read_index_response(refusal(99, "", "")).is_err());
        let named = read_index_response(refusal(not_leader, "n2", "a2")).expect("valid");
        let leader = Some((ServerId::new("n2"), ServerAddress::new("a2")));
        assert_eq!(named.result, Err(ReadIndexRefusal::NotLeader { leader }));
        let index = pb::ReadIndexResponse { term: 4, result: Some(R::Index(0)) };
        assert_eq!(read_index_response(index).expect("valid").result, Ok(0));
    }
}
