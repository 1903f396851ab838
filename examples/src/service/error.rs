//! [`NodeError`]: why a node could not start, join or stop.

use raft_transport_grpc::GrpcError;

/// A failure starting, joining or stopping a [`KvNode`](super::KvNode).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Opening the log, stable or snapshot store failed.
    #[error("storage: {0}")]
    Storage(#[from] raft::StorageError),
    /// The raft node refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The gRPC transport could not be set up.
    #[error("grpc transport: {0}")]
    Grpc(#[from] GrpcError),
    /// The TLS directory is incomplete or unreadable.
    #[error("tls: {0}")]
    Tls(String),
    /// Joining the cluster through `--join` failed.
    #[error("joining the cluster failed: {0}")]
    Join(String),
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    Options(String),
}

impl NodeError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}
