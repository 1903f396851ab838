//! Decoding of inbound requests into `raft` types, refusing anything
//! malformed: missing sub-messages, empty ids, unspecified or unknown enum
//! values, a zero term, and entries that are not contiguous from
//! `prev_log_index + 1` or whose terms go backwards. A request that fails
//! here is answered with `INVALID_ARGUMENT` and never reaches the node.

use raft::message::{
    AppendEntriesRequest, InstallSnapshotRequest, RequestPreVoteRequest, RequestVoteRequest,
    TimeoutNowRequest,
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
}
