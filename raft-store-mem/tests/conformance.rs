//! Runs the `raft::testing::conformance` suite against the in-memory stores.

use raft::testing::conformance;
use raft_store_mem::{InmemSnapshotStore, InmemStore};

#[tokio::test]
async fn inmem_store_conforms() {
    conformance::store_conformance(|| async { InmemStore::new() }).await;
}

#[tokio::test]
async fn inmem_snapshot_store_conforms() {
    conformance::snapshot_store_conformance(|| async { InmemSnapshotStore::new() }).await;
}

#[tokio::test]
async fn run_all_conforms() {
    conformance::run_all(|| async { InmemStore::new() }, || async { InmemSnapshotStore::with_retain(3) })
        .await;
}

#[tokio::test]
async fn log_cache_over_inmem_store_conforms() {
    // A tiny capacity exercises eviction and partial hits.
    conformance::log_store_conformance(|| async { raft::LogCache::new(InmemStore::new(), 3) }).await;
    conformance::log_store_conformance(|| async { raft::LogCache::new(InmemStore::new(), 10_000) }).await;
}
