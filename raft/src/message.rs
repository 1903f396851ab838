//! The RPCs nodes exchange. Transports carry these; the protocol core
//! consumes and produces them. Every request and response names the sender's
//! term so a stale node learns it is behind.

use serde::{Deserialize, Serialize};

use crate::types::{ClusterId, Log, ServerAddress, ServerId, SnapshotMeta};

/// Replicates entries and serves as the leader's heartbeat (Raft Figure 2).
/// The default is an empty heartbeat of term 0 from an empty id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntriesRequest {
    /// Leader's term.
    pub term: u64,
    /// The leader, so followers can redirect clients.
    pub leader_id: ServerId,
    /// Index of the entry immediately preceding `entries`.
    pub prev_log_index: u64,
    /// Term of that entry.
    pub prev_log_term: u64,
    /// Entries to store, contiguous from `prev_log_index + 1`; empty for a heartbeat.
    pub entries: Vec<Log>,
    /// Leader's commit index.
    pub leader_commit: u64,
    /// Leader-chosen round number, echoed unchanged in the response. The
    /// leader uses it to confirm it still leads before serving a read.
    pub round: u64,
    /// The sender's cluster, stamped by the runtime when it sends (the core
    /// leaves it `None`). A receiver of another cluster refuses the request.
    /// `None` from nodes that have no cluster id yet (or predate it).
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

/// A follower's answer to [`AppendEntriesRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntriesResponse {
    /// Responder's current term.
    pub term: u64,
    /// Whether the entries matched and are now durable on the responder.
    pub success: bool,
    /// On success, the index of the last entry the request covered (now
    /// durable). On failure, the responder's last log index.
    pub last_log_index: u64,
    /// On failure, the term of the responder's conflicting entry at
    /// `prev_log_index` (0 if the responder's log is too short).
    pub conflict_term: u64,
    /// On failure, the first index the leader should retry from: the first
    /// index of `conflict_term` in the responder's log, or its last index + 1.
    pub conflict_index: u64,
    /// The request's `round`, echoed.
    pub round: u64,
}

/// Asks for a vote in an election (Raft Figure 2, §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVoteRequest {
    /// Candidate's term.
    pub term: u64,
    /// The candidate.
    pub candidate_id: ServerId,
    /// Index of the candidate's last log entry.
    pub last_log_index: u64,
    /// Term of the candidate's last log entry.
    pub last_log_term: u64,
    /// Set when the election was started by a leadership transfer, so voters
    /// grant it even though they still hear from the old leader.
    pub leadership_transfer: bool,
    /// The sender's cluster, stamped by the runtime when it sends (the core
    /// leaves it `None`). A receiver of another cluster refuses the request.
    /// `None` from nodes that have no cluster id yet (or predate it).
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

/// A voter's answer to [`RequestVoteRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVoteResponse {
    /// Voter's current term.
    pub term: u64,
    /// Whether the vote was granted (and durably recorded).
    pub granted: bool,
    /// Set by a leader, or a follower hearing from a live leader, whose
    /// latest and committed configurations both exclude the candidate: the
    /// candidate was removed from the cluster (removal rule 3).
    #[serde(default)]
    pub removed: bool,
    /// With `removed`: the index of an entry committed in the answering
    /// server's log under a configuration that excludes the candidate (its
    /// commit index; 0 otherwise). The candidate checks it against its own
    /// log before trusting the answer (removal rule 3).
    #[serde(default)]
    pub removal_index: u64,
    /// With `removed`: the term of the entry at `removal_index`.
    #[serde(default)]
    pub removal_term: u64,
}

/// A pre-vote (Raft thesis §9.6): "would you vote for me in `term`?". Changes
/// no state on the receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPreVoteRequest {
    /// The term the candidate would use (its current term + 1).
    pub term: u64,
    /// The would-be candidate.
    pub candidate_id: ServerId,
    /// Index of its last log entry.
    pub last_log_index: u64,
    /// Term of its last log entry.
    pub last_log_term: u64,
    /// The sender's cluster, stamped by the runtime when it sends (the core
    /// leaves it `None`). A receiver of another cluster refuses the request.
    /// `None` from nodes that have no cluster id yet (or predate it).
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

/// Answer to [`RequestPreVoteRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPreVoteResponse {
    /// If granted, the term granted (the request's `term`); if refused, the
    /// responder's current term.
    pub term: u64,
    /// Whether the responder would vote for the candidate.
    pub granted: bool,
    /// Set by a leader, or a follower hearing from a live leader, whose
    /// latest and committed configurations both exclude the candidate: the
    /// candidate was removed from the cluster (removal rule 3).
    #[serde(default)]
    pub removed: bool,
    /// With `removed`: the index of an entry committed in the answering
    /// server's log under a configuration that excludes the candidate (its
    /// commit index; 0 otherwise). The candidate checks it against its own
    /// log before trusting the answer (removal rule 3).
    #[serde(default)]
    pub removal_index: u64,
    /// With `removed`: the term of the entry at `removal_index`.
    #[serde(default)]
    pub removal_term: u64,
}

/// Tells the target of a leadership transfer to start an election now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNowRequest {
    /// Leader's term.
    pub term: u64,
    /// The leader handing over.
    pub leader_id: ServerId,
    /// The sender's cluster, stamped by the runtime when it sends (the core
    /// leaves it `None`). A receiver of another cluster refuses the request.
    /// `None` from nodes that have no cluster id yet (or predate it).
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

/// Answer to [`TimeoutNowRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNowResponse {
    /// Responder's current term.
    pub term: u64,
}

/// Header of a streamed snapshot; the data follows as a byte stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshotRequest {
    /// Leader's term.
    pub term: u64,
    /// The leader.
    pub leader_id: ServerId,
    /// What the snapshot contains.
    pub meta: SnapshotMeta,
    /// The sender's cluster, stamped by the runtime when it sends (the core
    /// leaves it `None`). A receiver of another cluster refuses the request.
    /// `None` from nodes that have no cluster id yet (or predate it).
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

/// Answer to [`InstallSnapshotRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshotResponse {
    /// Responder's current term.
    pub term: u64,
    /// Whether the snapshot was installed.
    pub success: bool,
}

/// A follower asks the leader for a read index (linearizable follower
/// reads): the leader confirms its leadership as for its own reads (a
/// quorum round shared with concurrent reads, or its lease when `lease` is
/// set and the lease holds) and answers its commit index; the follower then
/// serves the read once its own state machine has applied that index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndexRequest {
    /// The follower asking.
    pub requester: ServerId,
    /// The leader may answer from its lease
    /// ([`ReadPolicy::Lease`](crate::ReadPolicy::Lease)) instead of a
    /// quorum round.
    pub lease: bool,
    /// The sender's cluster, stamped by the runtime when it sends. A
    /// receiver of another cluster refuses the request.
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

/// Why a leader did not answer a [`ReadIndexRequest`] with a read index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadIndexRefusal {
    /// The receiver is not the leader; `leader` is the one it knows of
    /// (id and address), if any.
    NotLeader {
        /// The leader the receiver knows of.
        leader: Option<(ServerId, ServerAddress)>,
    },
    /// A leadership transfer is under way: retry once it is over.
    TransferInProgress,
    /// The receiver lost its leadership before the read was confirmed.
    LeadershipLost,
    /// The receiver is shutting down (or stopped after a storage failure).
    ShuttingDown,
}

/// The leader's answer to [`ReadIndexRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndexResponse {
    /// Responder's current term.
    pub term: u64,
    /// The read index (a linearizable read point once applied), or why the
    /// responder refused.
    pub result: Result<u64, ReadIndexRefusal>,
}

/// Any request, as delivered by a transport to the receiving node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcRequest {
    /// See [`AppendEntriesRequest`].
    AppendEntries(AppendEntriesRequest),
    /// See [`RequestVoteRequest`].
    RequestVote(RequestVoteRequest),
    /// See [`RequestPreVoteRequest`].
    RequestPreVote(RequestPreVoteRequest),
    /// See [`TimeoutNowRequest`].
    TimeoutNow(TimeoutNowRequest),
    /// See [`ReadIndexRequest`].
    ReadIndex(ReadIndexRequest),
}

/// Any response, matching [`RpcRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcResponse {
    /// See [`AppendEntriesResponse`].
    AppendEntries(AppendEntriesResponse),
    /// See [`RequestVoteResponse`].
    RequestVote(RequestVoteResponse),
    /// See [`RequestPreVoteResponse`].
    RequestPreVote(RequestPreVoteResponse),
    /// See [`TimeoutNowResponse`].
    TimeoutNow(TimeoutNowResponse),
    /// See [`InstallSnapshotResponse`].
    InstallSnapshot(InstallSnapshotResponse),
    /// See [`ReadIndexResponse`].
    ReadIndex(ReadIndexResponse),
}
