//! In-memory stores for the `raft` crate: [`InmemStore`] (a [`LogStore`] and
//! [`StableStore`]) and [`InmemSnapshotStore`]. Nothing survives the process,
//! so use them for tests and for nodes whose durability comes from elsewhere.
//! Both are cheap to [`Clone`]; clones share the same data, which is how a
//! test "restarts" a node with the state it had.
//!
//! # Layout
//! - `log`: [`InmemStore`].
//! - `snapshot`: [`InmemSnapshotStore`].

mod log;
mod snapshot;

pub use log::InmemStore;
pub use snapshot::InmemSnapshotStore;

#[doc(no_inline)]
pub use raft::{LogStore, SnapshotStore, StableStore};
