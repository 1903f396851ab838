//! Durable file-backed stores for the `raft` crate (segmented write-ahead log,
//! stable store, snapshot store). Under construction: see the crate README.
