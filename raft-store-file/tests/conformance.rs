//! Runs the `raft::testing::conformance` suite against the file stores,
//! with small segments so truncation and compaction cross segment files.

use std::sync::atomic::{AtomicUsize, Ordering};

use raft::testing::conformance;
use raft_store_file::{FileSnapshotStore, FileStore, FileStoreOptions};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir(root: &tempfile::TempDir) -> std::path::PathBuf {
    root.path().join(format!("store-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

#[tokio::test]
async fn file_store_conforms_with_default_options() {
    let root = tempfile::tempdir().unwrap();
    conformance::store_conformance(|| {
        let dir = fresh_dir(&root);
        async move { FileStore::open(dir).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn file_store_conforms_with_tiny_segments_and_no_cache() {
    let root = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions { segment_size: 4096, cache_entries: 0, ..Default::default() };
    conformance::store_conformance(|| {
        let dir = fresh_dir(&root);
        let opts = opts.clone();
        async move { FileStore::open_with(dir, opts).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn file_snapshot_store_conforms() {
    let root = tempfile::tempdir().unwrap();
    conformance::snapshot_store_conformance(|| {
        let dir = fresh_dir(&root);
        async move { FileSnapshotStore::new(dir, 2).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_a_multi_thread_runtime() {
    let root = tempfile::tempdir().unwrap();
    let snaps = tempfile::tempdir().unwrap();
    conformance::run_all(
        || {
            let dir = fresh_dir(&root);
            async move {
                FileStore::open_with(dir, FileStoreOptions { segment_size: 8192, ..Default::default() })
                    .await
                    .unwrap()
            }
        },
        || {
            let dir = fresh_dir(&snaps);
            async move { FileSnapshotStore::new(dir, 3).await.unwrap() }
        },
    )
    .await;
}

#[tokio::test]
async fn file_snapshot_store_reports_damaged_data() {
    let root = tempfile::tempdir().unwrap();
    conformance::snapshot_corruption_conformance(
        || {
            let dir = fresh_dir(&root);
            async move { FileSnapshotStore::new(dir, 2).await.unwrap() }
        },
        |store: &FileSnapshotStore, meta: &raft::SnapshotMeta| {
            let path = store.dir().join(&meta.id).join("data");
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
        },
    )
    .await;
}
