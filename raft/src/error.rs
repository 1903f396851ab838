//! The crate's error types: [`Error`] for every public call, [`StorageError`]
//! for stores and [`TransportError`] for transports.

use crate::types::{ServerAddress, ServerId};

/// A boxed error from user code (FSM, custom stores and transports).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias using [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a caller of [`Raft`](crate::Raft) can see.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not the leader. `leader` names the leader it knows of, if
    /// any: retry there.
    #[error("not the leader (leader: {})", fmt_leader(.leader))]
    NotLeader {
        /// The current leader as far as this node knows.
        leader: Option<(ServerId, ServerAddress)>,
    },
    /// Leadership was lost before the operation finished. The outcome of a
    /// write that fails this way is **unknown**: it may or may not have been
    /// committed, and a new leader may still apply it.
    #[error("leadership lost while the operation was in flight; its outcome is unknown")]
    LeadershipLost,
    /// A leadership transfer is under way; writes and reads are refused until
    /// it finishes.
    #[error("leadership transfer in progress")]
    LeadershipTransferInProgress,
    /// A leadership transfer did not complete: the target did not take over
    /// within an election timeout. The old leader keeps leading.
    #[error("leadership transfer failed: {0}")]
    LeadershipTransferFailed(String),
    /// The node has shut down.
    #[error("raft is shut down")]
    Shutdown,
    /// The request could not be queued within its timeout.
    #[error("timed out enqueueing the operation")]
    EnqueueTimeout,
    /// The operation did not finish within its timeout. Like
    /// [`Error::LeadershipLost`], the outcome of a timed-out write is unknown.
    #[error("operation timed out")]
    Timeout,
    /// Bootstrap refused because the node already has state.
    #[error("cannot bootstrap: the node already has state")]
    CantBootstrap,
    /// Another configuration change has not committed yet.
    #[error("a configuration change is already in progress")]
    ConfigurationChangeInProgress,
    /// The named server is not part of the configuration.
    #[error("unknown server {0}")]
    UnknownServer(ServerId),
    /// A log, stable or snapshot store failed.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// The transport failed.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// The configuration given is invalid; the message says why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The user's FSM returned an error.
    #[error("fsm error: {0}")]
    Fsm(String),
    /// The command is larger than one message of the transport can carry, so
    /// it could never be replicated; it was refused before being queued and
    /// has no effect. Split it, or raise the transport's message limit.
    #[error(
        "command of {size} bytes is larger than the {max} bytes one message can carry; \
         split it or raise the transport's message size limit"
    )]
    CommandTooLarge {
        /// The command's size in bytes.
        size: usize,
        /// The largest command accepted, in bytes.
        max: usize,
    },
}

fn fmt_leader(leader: &Option<(ServerId, ServerAddress)>) -> String {
    match leader {
        Some((id, addr)) => format!("{id} at {addr}"),
        None => "unknown".to_owned(),
    }
}

/// A failure of a [`LogStore`](crate::LogStore), [`StableStore`](crate::StableStore)
/// or [`SnapshotStore`](crate::SnapshotStore).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("i/o error during {op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Stored data failed validation.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file (or logical location) holding the bad data.
        path: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A requested log entry is not in the store.
    #[error("log entry {0} not found")]
    LogNotFound(u64),
    /// A requested snapshot is not in the store.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    /// The store has failed earlier and refuses further use (fail-stop).
    #[error("store has failed and is closed: {0}")]
    Failed(String),
    /// Encoding or decoding a value failed.
    #[error("codec error: {0}")]
    Codec(String),
    /// Any other failure of a custom store.
    #[error(transparent)]
    Other(BoxError),
}

impl StorageError {
    /// Wraps an I/O error with the operation that failed.
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { op: op.into(), source }
    }
}

/// A failure of a [`Transport`](crate::Transport).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached.
    #[error("peer {0} unreachable: {1}")]
    Unreachable(ServerAddress, String),
    /// The call did not complete in time.
    #[error("rpc to {0} timed out")]
    Timeout(ServerAddress),
    /// The peer rejected the request as malformed or unauthorized.
    #[error("rpc rejected: {0}")]
    Rejected(String),
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
    /// Any other transport failure.
    #[error("{0}")]
    Other(String),
}
