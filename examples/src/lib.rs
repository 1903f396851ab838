//! Shared pieces of the example programs: a replicated key-value state
//! machine ([`kv::KvFsm`]) and its command encoding.
//!
//! # Layout
//! - [`kv`]: the key-value FSM, its commands and snapshots.

pub mod kv;
