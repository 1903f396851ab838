//! Helpers for testing Raft users' code and this crate (feature `testing`).
//!
//! - [`conformance`]: a suite any [`LogStore`](crate::LogStore),
//!   [`StableStore`](crate::StableStore) or [`SnapshotStore`](crate::SnapshotStore)
//!   implementation can run with one call.
//! - [`linearizability`]: a checker for client histories against a
//!   key-value model.
//! - [`kv`]: that key-value model, the one definition of put, delete,
//!   compare-and-swap and get that the checker, the simulation and the
//!   tests share.
//! - [`faulty`]: a store wrapper that injects storage faults (I/O errors,
//!   a full disk, stalls, latency) switched at run time.

pub mod conformance;
pub mod faulty;
pub mod kv;
pub mod linearizability;
pub mod sim;
