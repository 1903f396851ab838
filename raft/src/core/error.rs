//! The core's error types: why a request was refused, what can be wrong
//! with the durable state a core is built from, and why a compaction was
//! refused.

use crate::error::StorageError;
use crate::types::ServerId;

/// Why a proposal or read was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not the leader; the known leader, if any.
    #[error("not the leader")]
    NotLeader(Option<ServerId>),
    /// A leadership transfer is in progress.
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    /// Leadership was lost before the operation completed.
    #[error("leadership was lost")]
    LeadershipLost,
    /// A configuration change is still uncommitted.
    #[error("a configuration change is still uncommitted")]
    ConfigurationChangeInProgress,
    /// The request does not fit the current state.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The request named a server that is not in the configuration.
    #[error("server {0} is not in the configuration")]
    UnknownServer(ServerId),
    /// The request named a server that is in the configuration but is not
    /// a voter (e.g. as a leadership transfer target).
    #[error("server {0} is not a voter")]
    NotAVoter(ServerId),
    /// This node was removed from the configuration (terminal).
    #[error("this server was removed from the cluster")]
    Removed,
    /// (Leader) accepting the proposal would exceed
    /// `CoreConfig::max_uncommitted_bytes`: retry once commits make room.
    #[error("{uncommitted} bytes are uncommitted (limit {limit}): wait for commits")]
    UncommittedLimit {
        /// Bytes of uncommitted entries now.
        uncommitted: usize,
        /// The limit.
        limit: usize,
    },
}

/// A request that does not fit the current state ([`Refusal::Invalid`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A configuration entry given to [`Core::propose`].
    #[error("use propose_configuration for configuration changes")]
    ConfigurationViaPropose,
    /// Bootstrapping a node that already has a term, log or snapshot.
    #[error("node already has state")]
    AlreadyHasState,
    /// The proposed configuration is invalid (as
    /// [`Configuration::validate`] explains).
    #[error("{0}")]
    Configuration(String),
    /// The configuration could not be encoded.
    #[error("{0}")]
    Unencodable(String),
    /// A leadership transfer to this node itself.
    #[error("cannot transfer leadership to self")]
    TransferToSelf,
    /// A leadership transfer with no target given and no other voter.
    #[error("no other voter to transfer to")]
    NoVoterToTransferTo,
    /// A restored snapshot must end past the last log entry.
    #[error("restore index {index} must be past the last log index {last_index}")]
    RestoreNotPastLog {
        /// The restore index asked for.
        index: u64,
        /// The last log index.
        last_index: u64,
    },
}

/// The durable state given to [`Core::new`](super::Core::new) is
/// inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum InconsistentState {
    /// The log entries after the snapshot are not contiguous.
    #[error("log has a gap: expected index {expected}, found {found}")]
    LogGap {
        /// The index that should have come next.
        expected: u64,
        /// The index found instead.
        found: u64,
    },
    /// A log entry has a lower term than the one before it.
    #[error("log term decreases at index {index}")]
    TermDecreases {
        /// The entry whose term is lower than its predecessor's.
        index: u64,
    },
    /// A configuration entry after the snapshot cannot be decoded.
    #[error("configuration entry {index} is undecodable: {source}")]
    UndecodableConfiguration {
        /// The entry's index.
        index: u64,
        /// Why decoding failed.
        #[source]
        source: StorageError,
    },
    /// A configuration entry passed in
    /// [`InitialState::configurations`](super::InitialState) is not in the
    /// log it describes (no entry of that index and term), or the list is
    /// not ascending.
    #[error("configuration entry {index} does not match the log (wrong index or term, or out of order)")]
    ConfigurationNotInLog {
        /// The entry's index.
        index: u64,
    },
}

/// Why [`Core::compact`](super::Core::compact) refused to forget entries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// Only committed entries already handed out for applying can be
    /// compacted.
    #[error("cannot compact to {index}: only {applied} is applied")]
    NotApplied {
        /// The requested compaction point.
        index: u64,
        /// The highest index handed out for applying.
        applied: u64,
    },
    /// The entry to compact to is not in the in-memory log.
    #[error("entry {index} is not in the log")]
    NotInLog {
        /// The requested compaction point.
        index: u64,
    },
}
