//! Reopening a store: the same state comes back, compaction and truncation
//! persist, damage to durable history is refused, the directory lock holds.

mod common;

use common::{assert_log, entry, record_len, segments, Rng, HEADER};
use raft::{Log, LogStore, LogType, StableStore, StorageError};
use raft_store_file::{FileStore, FileStoreOptions, InvalidRequest};

fn small() -> FileStoreOptions {
    FileStoreOptions { segment_size: 4096, ..Default::default() }
}

fn batch(rng: &mut Rng, from: u64, to: u64, term: u64) -> Vec<Log> {
    (from..=to).map(|i| entry(rng, i, term)).collect()
}

#[tokio::test]
async fn reopen_yields_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(1);
    let mut want = Vec::new();
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        let mut next = 1;
        for term in 1..=20 {
            let n = rng.range(1, 40);
            let b = batch(&mut rng, next, next + n - 1, term);
            store.store_logs(&b).await.unwrap();
            want.extend(b);
            next += n;
        }
        store.set(b"vote", b"node-3").await.unwrap();
        store.set_u64(b"term", 20).await.unwrap();
        assert_log(&store, &want, "before reopen").await;
    }
    assert!(segments(dir.path()).len() > 3, "the test should span several segments");
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    assert_log(&store, &want, "after reopen").await;
    assert_eq!(store.get(b"vote").await.unwrap().as_deref(), Some(&b"node-3"[..]));
    assert_eq!(store.get_u64(b"term").await.unwrap(), Some(20));
    // Reopening with other options reads the same files.
    drop(store);
    let store = FileStore::open(dir.path()).await.unwrap();
    assert_log(&store, &want, "after reopen with default options").await;
}

#[tokio::test]
async fn compaction_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2);
    let all = batch(&mut rng, 1, 400, 1);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        for chunk in all.chunks(50) {
            store.store_logs(chunk).await.unwrap();
        }
        let before = segments(dir.path()).len();
        store.delete_range(1, 250).await.unwrap();
        assert!(segments(dir.path()).len() < before, "whole segments below the new first index are deleted");
        assert_log(&store, &all[250..], "after compaction").await;
    }
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    // Entries 1..=250 that remain in the kept first segment stay invisible.
    assert_log(&store, &all[250..], "after reopen").await;
    assert!(store.get_log(250).await.unwrap().is_none());
    assert!(matches!(store.get_logs(249..260).await, Err(StorageError::LogNotFound(249))));
    // Compact again, append, reopen.
    store.delete_range(251, 300).await.unwrap();
    let more = batch(&mut rng, 401, 450, 2);
    store.store_logs(&more).await.unwrap();
    drop(store);
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    let mut want = all[300..].to_vec();
    want.extend(more);
    assert_log(&store, &want, "after second compaction and reopen").await;
}

#[tokio::test]
async fn truncation_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    let all = batch(&mut rng, 1, 400, 1);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        store.store_logs(&all).await.unwrap();
        store.delete_range(300, 400).await.unwrap();
        assert_log(&store, &all[..299], "after truncation").await;
    }
    let replacement = batch(&mut rng, 300, 320, 2);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        assert_log(&store, &all[..299], "after reopen").await;
        store.store_logs(&replacement).await.unwrap();
        // Overwriting a suffix via store_logs truncates too.
        let overwrite = batch(&mut rng, 310, 315, 3);
        store.store_logs(&overwrite).await.unwrap();
        let mut want = all[..299].to_vec();
        want.extend_from_slice(&replacement[..10]);
        want.extend(overwrite);
        assert_log(&store, &want, "after overwrite").await;
        drop(store);
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        assert_log(&store, &want, "after overwrite and reopen").await;
    }
}

#[tokio::test]
async fn deleting_everything_persists_and_the_log_can_restart_lower() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(4);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        store.store_logs(&batch(&mut rng, 1, 100, 1)).await.unwrap();
        store.delete_range(1, 50).await.unwrap();
        store.delete_range(51, 100).await.unwrap();
        assert_log(&store, &[], "emptied").await;
    }
    assert!(segments(dir.path()).is_empty());
    let restart = batch(&mut rng, 10, 20, 2);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        assert_log(&store, &[], "emptied, reopened").await;
        // Below the old compaction watermark (51): must not be hidden on reopen.
        store.store_logs(&restart).await.unwrap();
    }
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    assert_log(&store, &restart, "restarted lower, reopened").await;
}

#[tokio::test]
async fn invalid_requests_are_refused_without_failing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let e = |i| Log::new(i, 1, LogType::Command, "x");
    store.store_logs(&[e(1), e(2), e(3), e(4)]).await.unwrap();
    let refused = |r: Result<(), StorageError>| match r {
        Err(StorageError::Other(err)) => err.downcast::<InvalidRequest>().map(|b| *b).ok(),
        _ => None,
    };
    assert_eq!(
        refused(store.store_logs(&[e(6)]).await),
        Some(InvalidRequest::Hole { last: 4, first_new: 6 })
    );
    assert_eq!(
        refused(store.store_logs(&[e(5), e(7)]).await),
        Some(InvalidRequest::NotContiguous { after: 5, got: 7 })
    );
    assert_eq!(
        refused(store.delete_range(2, 3).await),
        Some(InvalidRequest::MiddleDelete { min: 2, max: 3, first: 1, last: 4 })
    );
    store.store_logs(&[e(5)]).await.unwrap();
    assert_eq!(store.last_index().await.unwrap(), 5);
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let clone = store.clone();
    match FileStore::open(dir.path()).await {
        Err(StorageError::Io { op, source }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock);
            assert!(op.contains("LOCK"), "{op}");
            assert!(source.to_string().contains("already in use"), "{source}");
        }
        other => panic!("second open should fail with a lock error, got {other:?}"),
    }
    drop(store);
    // A clone still holds the directory.
    assert!(FileStore::open(dir.path()).await.is_err());
    drop(clone);
    let again = FileStore::open(dir.path()).await.unwrap();
    drop(again);

    // Another process cannot open it either.
    let store = FileStore::open(dir.path()).await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
        .arg(dir.path())
        .arg("1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child should refuse the locked directory");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"), "{out:?}");
    assert!(out.stdout.is_empty(), "the child wrote nothing");
    drop(store);
}

fn flip(path: &std::path::Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn expect_corrupt(r: Result<FileStore, StorageError>, file: &std::path::Path, offset: u64) {
    match r {
        Err(StorageError::Corrupt { path, offset: at, reason }) => {
            assert_eq!(path, file.display().to_string(), "{reason}");
            assert_eq!(at, offset, "{reason}");
        }
        other => panic!("expected Corrupt in {} at {offset}, got {other:?}", file.display()),
    }
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let all = batch(&mut rng, 1, 200, 1);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        for chunk in all.chunks(10) {
            store.store_logs(chunk).await.unwrap();
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    // The third record of the first segment.
    let offset = HEADER + record_len(&all[0]) + record_len(&all[1]);
    flip(&segs[0], offset + 20);
    expect_corrupt(FileStore::open_with(dir.path(), small()).await, &segs[0], offset);
    // Nothing was changed by the refused open.
    flip(&segs[0], offset + 20);
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    assert_log(&store, &all, "after undoing the damage").await;
}

#[tokio::test]
async fn a_missing_or_shortened_sealed_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(6);
    let all = batch(&mut rng, 1, 200, 1);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        store.store_logs(&all).await.unwrap();
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    // Cut the first segment at a record boundary: its records are all valid
    // but the next segment no longer follows on.
    let len = std::fs::metadata(&segs[0]).unwrap().len();
    let saved = std::fs::read(&segs[0]).unwrap();
    let cut = HEADER + record_len(&all[0]);
    std::fs::OpenOptions::new().write(true).open(&segs[0]).unwrap().set_len(cut).unwrap();
    expect_corrupt(FileStore::open_with(dir.path(), small()).await, &segs[1], 0);
    std::fs::write(&segs[0], &saved).unwrap();
    assert_eq!(std::fs::metadata(&segs[0]).unwrap().len(), len);
    // A missing middle segment.
    std::fs::remove_file(&segs[1]).unwrap();
    expect_corrupt(FileStore::open_with(dir.path(), small()).await, &segs[2], 0);
}

#[tokio::test]
async fn a_bad_record_followed_by_a_later_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let opts = FileStoreOptions { segment_size: 1 << 20, ..Default::default() };
    let mut all = Vec::new();
    {
        let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
        for i in 0..5 {
            let b = batch(&mut rng, i * 10 + 1, i * 10 + 10, 1);
            store.store_logs(&b).await.unwrap();
            all.extend(b);
        }
    }
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1);
    // A record of the third batch: batches four and five prove it was durable.
    let offset: u64 = HEADER + all[..24].iter().map(record_len).sum::<u64>();
    for at in [0, 3, 9, 30] {
        // Damage the length field, the checksum, the index, the data.
        flip(&segs[0], offset + at);
        expect_corrupt(FileStore::open_with(dir.path(), opts.clone()).await, &segs[0], offset);
        flip(&segs[0], offset + at);
    }
    // The same damage in the last batch is a torn tail: truncated.
    let offset: u64 = HEADER + all[..45].iter().map(record_len).sum::<u64>();
    flip(&segs[0], offset + 12);
    let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
    assert_log(&store, &all[..45], "torn last batch").await;
    assert_eq!(std::fs::metadata(&segs[0]).unwrap().len(), offset, "the torn tail is cut off");
}

#[tokio::test]
async fn a_corrupt_stable_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).await.unwrap();
        store.set(b"k", b"value").await.unwrap();
    }
    let path = dir.path().join("stable.dat");
    flip(&path, 22);
    assert!(matches!(FileStore::open(dir.path()).await, Err(StorageError::Corrupt { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        FileStore::open_with(dir.path(), FileStoreOptions { segment_size: 16 * 1024, ..Default::default() })
            .await
            .unwrap();
    // Appenders take turns through a shared counter so the log stays
    // contiguous: each writes or enqueues its request (the first poll of
    // store_logs does either) before passing the counter on, then waits for
    // durability, so several requests are queued at once (group commit).
    let next = std::sync::Arc::new(tokio::sync::Mutex::new(1u64));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let mut n = next.lock().await;
                let b: Vec<Log> = (*n..*n + 3)
                    .map(|i| Log::new(i, 1, LogType::Command, i.to_le_bytes().to_vec()))
                    .collect();
                let mut fut = store.store_logs(&b);
                // A caller that finds the log idle writes it in this first
                // poll (it is then done); one that finds it busy queues.
                let done = match futures::poll!(&mut fut) {
                    std::task::Poll::Ready(r) => {
                        r.unwrap();
                        true
                    }
                    std::task::Poll::Pending => false,
                };
                *n += 3;
                drop(n);
                if !done {
                    fut.await.unwrap();
                }
            }
        }));
    }
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let last = store.last_index().await.unwrap();
                if last > 0 {
                    let logs = store.get_logs(1..last + 1).await.unwrap();
                    for (i, log) in logs.iter().enumerate() {
                        assert_eq!(log.data.as_ref(), &(i as u64 + 1).to_le_bytes());
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    reader.await.unwrap();
    assert_eq!(store.last_index().await.unwrap(), 600);
}

/// Extends `path` with `extra` zero bytes, as a preallocated segment has
/// after its last record.
fn zero_extend(path: &std::path::Path, extra: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + extra).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test]
async fn zeros_after_the_last_record_are_the_clean_end_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let mut want = batch(&mut rng, 1, 120, 1);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        for chunk in want.chunks(10) {
            store.store_logs(chunk).await.unwrap();
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() > 2, "the test should span several segments");
    // Sealed segments and the last one alike: zero-filled space never written.
    for seg in &segs {
        zero_extend(seg, 3000);
    }
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        assert_log(&store, &want, "after reopen with zero tails").await;
        // Appending overwrites the zeros of the last segment.
        let more = batch(&mut rng, 121, 160, 2);
        for chunk in more.chunks(7) {
            store.store_logs(chunk).await.unwrap();
        }
        want.extend(more);
        assert_log(&store, &want, "after appending over the zeros").await;
    }
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    assert_log(&store, &want, "after a second reopen").await;
}

#[tokio::test]
async fn a_torn_record_before_zero_filled_space_is_truncated_like_any_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(8);
    let want = batch(&mut rng, 1, 20, 1);
    {
        let store = FileStore::open_with(dir.path(), FileStoreOptions::default()).await.unwrap();
        store.store_logs(&want).await.unwrap();
    }
    let segs = segments(dir.path());
    let last = segs.last().unwrap();
    // Half a record's worth of garbage (a write the crash tore), then zeros.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
        f.write_all(&[0x17u8; 40]).unwrap();
        f.sync_all().unwrap();
    }
    let end_of_records = std::fs::metadata(last).unwrap().len() - 40;
    zero_extend(last, 5000);
    let store = FileStore::open(dir.path()).await.unwrap();
    assert_log(&store, &want, "after recovering the torn tail").await;
    assert_eq!(std::fs::metadata(last).unwrap().len(), end_of_records, "the torn tail is cut off");
}

#[tokio::test]
async fn a_new_log_moves_to_a_preallocated_segment_once_one_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(9);
    let opts = FileStoreOptions { segment_size: 4 << 20, ..Default::default() };
    let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
    let mut want = Vec::new();
    let mut next = 1;
    // Past 64 KiB in the first (plain) segment a preallocated one is
    // prepared in the background; appends move to it once it is ready.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while segments(dir.path()).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no preallocated segment was installed");
        let b: Vec<Log> =
            (next..next + 64).map(|i| Log::new(i, 1, LogType::Command, vec![7u8; 256])).collect();
        store.store_logs(&b).await.unwrap();
        want.extend(b);
        next += 64;
        tokio::task::yield_now().await;
    }
    let segs = segments(dir.path());
    assert_eq!(std::fs::metadata(&segs[1]).unwrap().len(), 4 << 20, "the second segment is preallocated");
    let more: Vec<Log> = (next..next + 10).map(|i| entry(&mut rng, i, 2)).collect();
    store.store_logs(&more).await.unwrap();
    want.extend(more);
    assert_eq!(std::fs::metadata(&segs[1]).unwrap().len(), 4 << 20, "appending does not grow it");
    assert_log(&store, &want, "after moving to the preallocated segment").await;
    drop(store);
    let store = FileStore::open_with(dir.path(), opts).await.unwrap();
    assert_log(&store, &want, "after reopen").await;
}

#[tokio::test]
async fn preallocated_segments_start_small_and_double_up_to_the_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions { segment_size: 16 << 20, ..Default::default() };
    let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
    const MIB: u64 = 1 << 20;
    // Sizes of the preallocated segments, oldest first (a plain segment,
    // created when no prepared one was ready yet, is as long as its
    // records and never a whole number of MiB here).
    let preallocated = |dir: &std::path::Path| -> Vec<u64> {
        segments(dir)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .filter(|len| len % MIB == 0)
            .map(|len| len / MIB)
            .collect()
    };
    let mut want = Vec::new();
    let mut next = 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while preallocated(dir.path()).len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "preallocated segments so far (MiB): {:?}",
            preallocated(dir.path())
        );
        // 64 entries of 4000 bytes: never a whole number of MiB per segment.
        let b: Vec<Log> =
            (next..next + 64).map(|i| Log::new(i, 1, LogType::Command, vec![3u8; 4000])).collect();
        store.store_logs(&b).await.unwrap();
        want.extend(b);
        next += 64;
        tokio::task::yield_now().await;
    }
    assert_eq!(
        preallocated(dir.path()),
        vec![4, 8, 16, 16],
        "a new log's first preallocated segment is 4 MiB, each next one twice the one before, at most the segment size"
    );
    assert_log(&store, &want, "across segments of growing size").await;
    drop(store);
    let store = FileStore::open_with(dir.path(), opts).await.unwrap();
    assert_log(&store, &want, "after reopen").await;
}
