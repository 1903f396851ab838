//! Shared pieces of the example programs: a replicated key-value state
//! machine ([`kv::KvFsm`]) and its command encoding, and the key-value
//! service behind the `kv` binary ([`service`]).
//!
//! # Layout
//! - [`backup`]: the snapshot backup file of `raftctl snapshot save|restore`.
//! - [`kv`]: the key-value FSM, its commands, node directory and snapshots.
//! - [`service`]: a `kv serve` node: file stores, gRPC transport with the
//!   admin service, and the HTTP/JSON API that forwards to the leader.

pub mod backup;
pub mod kv;
pub mod service;
