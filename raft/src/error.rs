//! The crate's error types: [`Error`] for every public call, [`StorageError`]
//! for stores and [`TransportError`] for transports.

use crate::types::{ClusterId, ServerAddress, ServerId};

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
    /// Another configuration change has not finished yet; `pending`
    /// describes it (for example "add_voter of n4 at 10.0.0.4:7000,
    /// catching up as a non-voter"). Retry once it is done.
    ///
    /// API change: this variant used to carry no fields; match it with
    /// `Error::ConfigurationChangeInProgress { .. }`.
    #[error("a configuration change is already in progress: {pending}")]
    ConfigurationChangeInProgress {
        /// The change in progress.
        pending: String,
    },
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
    /// The state machine could not do what was asked, and there is no
    /// underlying error value to pass on (for example a write waiter on an
    /// entry that was not a command). An error the user's FSM itself
    /// returned is [`Error::FsmFailed`], which keeps it whole.
    #[error("fsm error: {0}")]
    Fsm(String),
    /// A membership change named a `prev_index` that is no longer the
    /// latest configuration's index: the configuration changed since the
    /// caller read it. Read it again ([`Raft::get_configuration`]) and
    /// decide again.
    ///
    /// [`Raft::get_configuration`]: crate::Raft::get_configuration
    #[error("the configuration changed since the prev_index given; the latest configuration is at index {current}")]
    StalePrevIndex {
        /// The index of the latest configuration.
        current: u64,
    },
    /// The named server is in the configuration but is not a voter, so it
    /// cannot take part as one (for example as the target of a leadership
    /// transfer). A server that is not in the configuration at all is
    /// [`Error::UnknownServer`] instead.
    #[error("server {0} is not a voter")]
    NotAVoter(ServerId),
    /// A server added with [`Raft::add_voter`] did not catch up before the
    /// call's timeout: it was not promoted and **stays a non-voter**. It
    /// can be removed with [`Raft::remove_server`], or `add_voter` retried
    /// once it is reachable.
    ///
    /// [`Raft::add_voter`]: crate::Raft::add_voter
    /// [`Raft::remove_server`]: crate::Raft::remove_server
    #[error(
        "server {id} did not catch up in time (match index {matched}, leader's last index {last_index}): \
         it stays a non-voter; remove it or retry add_voter once it is reachable"
    )]
    CatchUpTimeout {
        /// The server that was being added.
        id: ServerId,
        /// The highest index it had acknowledged.
        matched: u64,
        /// The leader's last log index when the call gave up.
        last_index: u64,
    },
    /// A server being added ([`Raft::add_voter`] or
    /// [`Raft::change_membership`]) answered that it was removed from this
    /// cluster earlier: its data directory records the removal, so it
    /// ignores every request and could never catch up. It was not promoted
    /// and **stays a non-voter**, as after [`Error::CatchUpTimeout`]. Stop
    /// it, wipe its data directory, start it again, then retry.
    ///
    /// [`Raft::add_voter`]: crate::Raft::add_voter
    /// [`Raft::change_membership`]: crate::Raft::change_membership
    #[error(
        "server {id} was removed from this cluster earlier and its data directory still says so: it \
         ignores every request and cannot catch up, so it stays a non-voter; stop it, wipe its data \
         directory, start it again and retry"
    )]
    ServerRemoved {
        /// The server that was being added.
        id: ServerId,
    },
    /// A server with this id is already a member at another address.
    /// Adding it again would hand its place to whatever answers at the new
    /// address; to move a member on purpose, use
    /// [`Raft::update_address`](crate::Raft::update_address).
    #[error(
        "server {id} is already a member at {address}; use update_address to move it to a new address on purpose"
    )]
    ServerExists {
        /// The id asked for.
        id: ServerId,
        /// The address the existing member has.
        address: ServerAddress,
    },
    /// This server was removed from the cluster's configuration (it learned
    /// so from the committed configuration or from the leader). The state
    /// is terminal: the node no longer takes part in the cluster and every
    /// call fails at once with this error. Stop the process; to serve
    /// again, wipe its data directory and join it as a new server.
    #[error(
        "this server was removed from the cluster configuration; stop it, or wipe its data \
         directory and join it again as a new server"
    )]
    Removed,
    /// Two cluster ids disagree: this node belongs to cluster `ours`, and
    /// was given (by its [`Config::cluster_id`](crate::Config::cluster_id),
    /// or by a peer) the id `theirs`. Nodes of different clusters never
    /// talk to each other: check the node's addresses and data directory.
    #[error(
        "cluster mismatch: this node belongs to cluster {ours}, not {theirs}; \
         a data directory keeps the cluster it was bootstrapped or joined in \
         (use a fresh data directory to move a server to another cluster)"
    )]
    ClusterMismatch {
        /// This node's (stored) cluster id.
        ours: ClusterId,
        /// The other id.
        theirs: ClusterId,
    },
    /// The data directory belongs to another node: its stable store records
    /// the id `stored`, but the node was started as `configured`.
    #[error(
        "this data directory belongs to node {stored}, but the node was started as {configured}: \
         start it with id {stored}, or give node {configured} a fresh data directory"
    )]
    NodeIdMismatch {
        /// The id recorded in the stable store.
        stored: ServerId,
        /// The id in [`Config::local_id`](crate::Config::local_id).
        configured: ServerId,
    },
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
    /// The user's FSM returned an error from [`Fsm::snapshot`],
    /// [`FsmSnapshot::persist`] or [`Fsm::restore`]. `source` is that error,
    /// kept whole: [`std::error::Error::source`] returns it, and
    /// `source.downcast_ref::<YourError>()` recovers the FSM's own type.
    ///
    /// A failure of the snapshot store underneath (the sink the FSM writes
    /// to, the reader it restores from) is [`Error::Storage`] instead, even
    /// when the FSM passed it on.
    ///
    /// [`Fsm::snapshot`]: crate::Fsm::snapshot
    /// [`FsmSnapshot::persist`]: crate::FsmSnapshot::persist
    /// [`Fsm::restore`]: crate::Fsm::restore
    #[error("fsm {operation} failed: {source}")]
    FsmFailed {
        /// What the FSM was asked to do.
        operation: FsmOperation,
        /// The error the FSM returned.
        #[source]
        source: BoxError,
    },
    /// A snapshot was asked for before the state machine applied anything:
    /// there is nothing to capture yet. Retry once the node has applied an
    /// entry (a new cluster's leader applies one as soon as it is elected).
    #[error("nothing has been applied yet: nothing to snapshot")]
    NothingToSnapshot,
    /// A joint membership change ([`Raft::change_membership`]) broke a
    /// rule of configuration changes; the [`ConfChangeError`] says which
    /// (no change given, a server named twice, no voter left in the new
    /// configuration, ...). Nothing was changed. The refusals with an
    /// error of their own keep it: a server that is not a member is
    /// [`Error::UnknownServer`], an id that is a member at another address
    /// [`Error::ServerExists`], a change while another is under way
    /// [`Error::ConfigurationChangeInProgress`].
    ///
    /// [`Raft::change_membership`]: crate::Raft::change_membership
    /// [`ConfChangeError`]: crate::ConfChangeError
    #[error("membership change refused: {0}")]
    MembershipChangeRefused(#[source] crate::core::ConfChangeError),
}

/// The [`Fsm`](crate::Fsm) call that failed, in [`Error::FsmFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsmOperation {
    /// [`Fsm::snapshot`](crate::Fsm::snapshot): capturing a point-in-time view.
    Snapshot,
    /// [`FsmSnapshot::persist`](crate::FsmSnapshot::persist): writing a
    /// captured snapshot to the store's sink.
    Persist,
    /// [`Fsm::restore`](crate::Fsm::restore): replacing the state with a
    /// snapshot's.
    Restore,
}

impl std::fmt::Display for FsmOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsmOperation::Snapshot => "snapshot",
            FsmOperation::Persist => "persist",
            FsmOperation::Restore => "restore",
        })
    }
}

impl Error {
    /// An [`Error::FsmFailed`] for `operation`, keeping the FSM's error.
    pub(crate) fn fsm(operation: FsmOperation, source: BoxError) -> Self {
        Error::FsmFailed { operation, source }
    }
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
