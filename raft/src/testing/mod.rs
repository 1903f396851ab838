//! Helpers for testing Raft users' code and this crate (feature `testing`).
//!
//! - [`conformance`]: a suite any [`LogStore`](crate::LogStore),
//!   [`StableStore`](crate::StableStore) or [`SnapshotStore`](crate::SnapshotStore)
//!   implementation can run with one call.
//! - [`linearizability`]: a checker for client histories against a
//!   key-value model.
//! - [`faulty`]: a store wrapper that injects storage faults (I/O errors,
//!   a full disk, stalls, latency) switched at run time.

pub mod conformance;
pub mod faulty;
pub mod linearizability;
pub mod sim;
