//! The core's error types: what can be wrong with the durable state a core
//! is built from, and why a compaction was refused.

use crate::error::StorageError;

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
