//! [`InvalidRequest`]: calls the log refuses because they would break its
//! contract (not because the disk failed). They leave the store usable and
//! reach the caller as [`StorageError::Other`].

use raft::StorageError;

/// A `store_logs` or `delete_range` call that would break the log's
/// invariants. Returned inside [`StorageError::Other`]; downcast to match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// Log indexes start at 1.
    #[error("log entries must have an index of at least 1")]
    ZeroIndex,
    /// The entries of one call are not consecutive.
    #[error("store_logs given non-contiguous entries: {got} after {after}")]
    NotContiguous {
        /// The index before the gap.
        after: u64,
        /// The index that followed it.
        got: u64,
    },
    /// The entries would leave a hole after the current last entry.
    #[error("store_logs would leave a hole: last index {last}, new first {first_new}")]
    Hole {
        /// The log's last index.
        last: u64,
        /// The first index given.
        first_new: u64,
    },
    /// An entry is larger than a record can hold (1 GiB).
    #[error("log entry {index} has {len} bytes of data, more than a record holds")]
    TooLarge {
        /// The entry's index.
        index: u64,
        /// Its data length.
        len: usize,
    },
    /// `delete_range` asked to remove the middle of the log.
    #[error("delete_range({min}, {max}) would leave a hole in {first}..={last}")]
    MiddleDelete {
        /// Requested lower bound.
        min: u64,
        /// Requested upper bound.
        max: u64,
        /// The log's first index.
        first: u64,
        /// The log's last index.
        last: u64,
    },
}

impl From<InvalidRequest> for StorageError {
    fn from(e: InvalidRequest) -> Self {
        StorageError::Other(Box::new(e))
    }
}
