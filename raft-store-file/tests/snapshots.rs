//! FileSnapshotStore: corruption is detected on read, crashed snapshots
//! are cleaned up, `retain` is honoured, snapshots survive a reopen.

use std::io::ErrorKind;
use std::path::Path;

use raft::{Configuration, Server, SnapshotMeta, SnapshotStore, StorageError};
use raft_store_file::FileSnapshotStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

async fn write(store: &FileSnapshotStore, index: u64, term: u64, bytes: &[u8]) -> SnapshotMeta {
    let conf = Configuration::new(vec![Server::voter("a", "a:1"), Server::nonvoter("b", "b:1")]);
    let mut sink = store.create(index, term, &conf, 1).await.unwrap();
    for chunk in bytes.chunks(100_000) {
        sink.write_all(chunk).await.unwrap();
    }
    sink.finalize().await.unwrap()
}

async fn read(store: &FileSnapshotStore, id: &str) -> std::io::Result<Vec<u8>> {
    let (_, mut reader) = store.open(id).await.unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await?;
    Ok(out)
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x08;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn corrupt_data_is_detected_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    let bytes = data(1_000_000, 1);
    let meta = write(&store, 10, 1, &bytes).await;
    assert_eq!(read(&store, &meta.id).await.unwrap(), bytes);

    // Damage appearing after `open` handed out a reader is caught when the
    // reader reaches the end.
    let (_, mut reader) = store.open(&meta.id).await.unwrap();
    flip(&dir.path().join(&meta.id).join("data"), 777_777);
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");

    // A data file of the wrong length is refused at open.
    let path = dir.path().join(&meta.id).join("data");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(500).unwrap();
    assert!(matches!(store.open(&meta.id).await, Err(StorageError::Corrupt { .. })));
}

/// Issue 14 item 3: one flipped byte in a snapshot's data is refused at
/// `open` with `StorageError::Corrupt`, before any byte reaches a reader
/// that might never read to the end (an FSM reading a length-prefixed body).
#[tokio::test]
async fn one_flipped_data_byte_is_refused_at_open_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    let bytes = data(300_000, 3);
    let meta = write(&store, 10, 1, &bytes).await;
    flip(&dir.path().join(&meta.id).join("data"), 12);
    match store.open(&meta.id).await {
        Err(StorageError::Corrupt { path, reason, .. }) => {
            assert!(path.contains(&meta.id), "{path}");
            assert!(reason.contains("checksum"), "{reason}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged snapshot was opened"),
    }
    // Still listed (its metadata is intact): the runtime falls back from it.
    assert_eq!(store.list().await.unwrap(), vec![meta]);
}

#[tokio::test]
async fn a_half_written_snapshot_is_never_listed_and_is_cleaned_up_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    let kept = write(&store, 5, 1, b"complete").await;
    // A crash while writing: the sink is never finalized or cancelled, and
    // never dropped (so nothing cleans up behind it).
    let mut sink = store.create(9, 1, &Configuration::default(), 1).await.unwrap();
    sink.write_all(b"partial").await.unwrap();
    sink.flush().await.unwrap();
    let tmp = dir.path().join(format!("{}.tmp", sink.id()));
    std::mem::forget(sink);
    assert!(tmp.is_dir());
    assert_eq!(store.list().await.unwrap(), vec![kept.clone()]);
    drop(store);

    let store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    assert!(!tmp.exists(), "the partial snapshot is removed on open");
    assert_eq!(store.list().await.unwrap(), vec![kept.clone()]);
    assert_eq!(read(&store, &kept.id).await.unwrap(), b"complete");
}

#[tokio::test]
async fn retain_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    let mut metas = Vec::new();
    for i in 1..=4u64 {
        metas.push(write(&store, i * 10, i, &data(1000, i as u8)).await);
    }
    let listed: Vec<String> = store.list().await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(listed, vec![metas[3].id.clone(), metas[2].id.clone()]);
    for old in &metas[..2] {
        assert!(!dir.path().join(&old.id).exists(), "old snapshot {} was not removed", old.id);
        assert!(matches!(store.open(&old.id).await, Err(StorageError::SnapshotNotFound(_))));
    }
    assert_eq!(read(&store, &metas[3].id).await.unwrap(), data(1000, 4));
}

#[tokio::test]
async fn snapshots_survive_a_reopen_and_unreadable_metadata_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let store = FileSnapshotStore::new(dir.path(), 3).await.unwrap();
        (write(&store, 10, 1, b"first").await, write(&store, 20, 2, b"second").await)
    };
    let store = FileSnapshotStore::new(dir.path(), 3).await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec![b.clone(), a.clone()]);
    let (meta, _) = store.open(&a.id).await.unwrap();
    assert_eq!(meta, a);
    assert_eq!(meta.configuration.servers.len(), 2);

    flip(&dir.path().join(&b.id).join("meta"), 3);
    assert_eq!(store.list().await.unwrap(), vec![a.clone()], "b's metadata is unreadable");
    assert!(matches!(store.open(&b.id).await, Err(StorageError::Corrupt { .. })));
    // Ids that are not snapshot names never touch other files.
    assert!(matches!(store.open("../x").await, Err(StorageError::SnapshotNotFound(_))));
}

#[tokio::test]
async fn cancelled_and_dropped_sinks_are_never_listed_and_leave_nothing_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    let mut sink = store.create(1, 1, &Configuration::default(), 0).await.unwrap();
    sink.write_all(b"abandoned").await.unwrap();
    let mut cancelled = store.create(2, 1, &Configuration::default(), 0).await.unwrap();
    cancelled.write_all(b"cancelled").await.unwrap();
    cancelled.cancel().await.unwrap();
    drop(sink);
    assert!(store.list().await.unwrap().is_empty());
    // Only tmp directories could be left, and a reopen clears them.
    drop(store);
    let _store = FileSnapshotStore::new(dir.path(), 2).await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
