//! [`GrpcError`], the error of setting up a transport, and the mappings
//! between gRPC statuses and [`TransportError`] in both directions.

use raft::{ServerAddress, TransportError};
use tonic::{Code, Status};

/// Why a [`GrpcTransport`](crate::GrpcTransport) could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The configuration is unusable; the message says why.
    #[error("invalid grpc transport configuration: {0}")]
    InvalidConfig(String),
    /// The listen address could not be parsed or resolved.
    #[error("invalid listen address {0}")]
    InvalidAddress(String),
    /// Binding the listen socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address that was being bound.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TLS settings were rejected (bad PEM, unusable key, ...).
    #[error("tls configuration error: {0}")]
    Tls(String),
    /// Connecting to a server failed (admin client).
    #[error("cannot connect to {0}")]
    Connect(String),
}

impl From<GrpcError> for TransportError {
    fn from(err: GrpcError) -> Self {
        TransportError::Other(err.to_string())
    }
}

/// Maps the status a peer (or the local tonic client) returned to the
/// transport error a caller can act on.
pub(crate) fn status_to_error(addr: &ServerAddress, status: &Status) -> TransportError {
    match status.code() {
        Code::DeadlineExceeded => TransportError::Timeout(addr.clone()),
        // tonic's client enforces the `grpc-timeout` it sends and reports
        // its expiry as a cancellation.
        Code::Cancelled if status.message().contains("Timeout expired") => {
            TransportError::Timeout(addr.clone())
        }
        Code::Unavailable => TransportError::Unreachable(addr.clone(), status.message().to_owned()),
        Code::InvalidArgument
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition => {
            TransportError::Rejected(format!("{:?}: {}", status.code(), status.message()))
        }
        // Connection-level failures (refused, reset, TLS handshake) surface
        // from tonic as `Unknown` with a transport source error.
        Code::Unknown if is_connection_failure(status) => {
            TransportError::Unreachable(addr.clone(), status.message().to_owned())
        }
        code => TransportError::Other(format!("{code:?} from {addr}: {}", status.message())),
    }
}

/// Whether the status says the peer could not be reached at all, which is
/// what drives the reconnect back-off.
pub(crate) fn is_connection_failure(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown => {
            let msg = status.message();
            msg.contains("transport error")
                || msg.contains("connect")
                || msg.contains("Service was not ready")
        }
        _ => false,
    }
}

/// Maps the node's failure to answer an inbound RPC to the status the
/// caller receives.
pub(crate) fn error_to_status(err: &TransportError) -> Status {
    match err {
        TransportError::Rejected(msg) => Status::invalid_argument(msg.clone()),
        TransportError::Closed => Status::unavailable("the node is shutting down"),
        TransportError::Timeout(_) => Status::deadline_exceeded(err.to_string()),
        TransportError::Unreachable(..) => Status::unavailable(err.to_string()),
        TransportError::Other(msg) => Status::internal(msg.clone()),
    }
}
