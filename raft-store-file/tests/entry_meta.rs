//! `LogStore::entry_meta` on the file store: answered from the in-memory
//! index (no payload read), right across segments, after truncation,
//! compaction and reopen; the index's memory does not depend on payload
//! size; the cache of recent entries is bounded in bytes.

mod common;

use common::{segments, HEADER};
use raft::{Log, LogEntryMeta, LogStore, LogType, StorageError};
use raft_store_file::{FileStore, FileStoreOptions};

fn small() -> FileStoreOptions {
    FileStoreOptions { segment_size: 4096, ..Default::default() }
}

/// Entry `index` of `term`: the type and size vary with the index.
fn entry(index: u64, term: u64) -> Log {
    let log_type = match index % 9 {
        0 => LogType::Configuration,
        4 => LogType::Noop,
        7 => LogType::Barrier,
        _ => LogType::Command,
    };
    let len = ((index * 37) % 300) as usize;
    Log::new(index, term, log_type, vec![(index % 251) as u8; len])
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Log> {
    range.map(|i| entry(i, term)).collect()
}

fn metas(logs: &[Log]) -> Vec<LogEntryMeta> {
    logs.iter().map(LogEntryMeta::of).collect()
}

/// Asserts that the store's metadata for its whole log, and for a few
/// sub-ranges, is that of `want`.
async fn assert_meta(store: &FileStore, want: &[Log], context: &str) {
    let (Some(head), Some(tail)) = (want.first(), want.last()) else {
        assert_eq!(store.last_index().await.unwrap(), 0, "{context}: empty");
        return;
    };
    let got = store.entry_meta(head.index..tail.index + 1).await.unwrap();
    assert_eq!(got, metas(want), "{context}: whole log");
    for (lo, hi) in [(0, 1), (want.len() / 3, want.len() / 2 + 1), (want.len() - 1, want.len())] {
        let range = want[lo].index..want[hi - 1].index + 1;
        let got = store.entry_meta(range.clone()).await.unwrap();
        assert_eq!(got, metas(&want[lo..hi]), "{context}: entry_meta({range:?})");
    }
    assert!(matches!(
        store.entry_meta(head.index - 1..tail.index).await,
        Err(StorageError::LogNotFound(i)) if i == head.index - 1
    ));
    assert!(matches!(
        store.entry_meta(head.index..tail.index + 2).await,
        Err(StorageError::LogNotFound(i)) if i == tail.index + 1
    ));
}

#[tokio::test]
async fn entry_meta_across_segments_truncation_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        for (range, term) in [(1..=100, 1), (101..=150, 2), (151..=300, 3)] {
            let batch = entries(range, term);
            for chunk in batch.chunks(7) {
                store.store_logs(chunk).await.unwrap();
            }
            want.extend(batch);
        }
        assert!(segments(dir.path()).len() > 5, "the log should span many segments");
        assert_meta(&store, &want, "after appends").await;

        // Conflict truncation, then an overwrite of a suffix in a new term.
        store.delete_range(281, 300).await.unwrap();
        want.truncate(280);
        assert_meta(&store, &want, "after truncation").await;
        let replacement = entries(201..=260, 4);
        store.store_logs(&replacement).await.unwrap();
        want.truncate(200);
        want.extend(replacement);
        assert_meta(&store, &want, "after overwriting a suffix").await;

        // Compaction (the first segment keeps hidden records below the new first index).
        store.delete_range(1, 77).await.unwrap();
        want.drain(..77);
        assert_meta(&store, &want, "after compaction").await;
    }
    let store = FileStore::open_with(dir.path(), small()).await.unwrap();
    assert_meta(&store, &want, "after reopen").await;
    let more = entries(261..=280, 5);
    store.store_logs(&more).await.unwrap();
    want.extend(more);
    assert_meta(&store, &want, "after appending to the reopened log").await;
    drop(store);
    let store = FileStore::open(dir.path()).await.unwrap();
    assert_meta(&store, &want, "after reopen with default options").await;
}

#[tokio::test]
async fn truncating_before_a_change_of_term_inside_a_segment_forgets_the_later_terms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let mut want = entries(1..=10, 1);
    want.extend(entries(11..=20, 2));
    want.extend(entries(21..=30, 3));
    store.store_logs(&want).await.unwrap();
    assert_eq!(segments(dir.path()).len(), 1, "one segment holds every term");
    store.delete_range(15, 30).await.unwrap();
    want.truncate(14);
    assert_meta(&store, &want, "after truncating terms 2 and 3").await;
    let replacement = entries(15..=25, 4);
    store.store_logs(&replacement).await.unwrap();
    want.extend(replacement);
    assert_meta(&store, &want, "after appending term 4 where term 3 was").await;
    let overwrite = entries(12..=22, 5);
    store.store_logs(&overwrite).await.unwrap();
    want.truncate(11);
    want.extend(overwrite);
    assert_meta(&store, &want, "after overwriting across terms 2 and 4").await;
}

#[tokio::test]
async fn entry_meta_of_a_long_log_matches() {
    // Long enough for the store to answer off the async workers.
    let dir = tempfile::tempdir().unwrap();
    let store =
        FileStore::open_with(dir.path(), FileStoreOptions { segment_size: 256 << 10, ..Default::default() })
            .await
            .unwrap();
    let mut want = Vec::new();
    for term in 1..=5 {
        let batch = entries(want.len() as u64 + 1..=want.len() as u64 + 2000, term);
        store.store_logs(&batch).await.unwrap();
        want.extend(batch);
    }
    assert_meta(&store, &want, "10,000 entries").await;
}

#[tokio::test]
async fn entry_meta_reads_no_payload_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let want = entries(1..=40, 3);
    let store =
        FileStore::open_with(dir.path(), FileStoreOptions { cache_entries: 0, ..small() }).await.unwrap();
    store.store_logs(&want).await.unwrap();
    // Overwrite every record's bytes on disk behind the store's back: a
    // read of any payload now fails its checksum.
    for seg in segments(dir.path()) {
        let len = std::fs::metadata(&seg).unwrap().len();
        let garbage = vec![0x5a; (len - HEADER) as usize];
        std::os::unix::fs::FileExt::write_all_at(
            &std::fs::File::options().write(true).open(&seg).unwrap(),
            &garbage,
            HEADER,
        )
        .unwrap();
    }
    assert!(
        matches!(store.get_logs(1..41).await, Err(StorageError::Corrupt { .. })),
        "the files are garbage now"
    );
    let got = store.entry_meta(1..41).await.unwrap();
    assert_eq!(got, metas(&want), "metadata comes from memory");
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_metadata_follows() {
    let dir = tempfile::tempdir().unwrap();
    let want = entries(1..=20, 1);
    {
        let store = FileStore::open(dir.path()).await.unwrap();
        store.store_logs(&want[..15]).await.unwrap();
        store.store_logs(&want[15..]).await.unwrap();
    }
    let segs = segments(dir.path());
    let last = segs.last().unwrap();
    // Tear the last record in half.
    let len = std::fs::metadata(last).unwrap().len();
    let torn = len - (8 + 25 + want[19].data.len() as u64) / 2;
    std::fs::File::options().write(true).open(last).unwrap().set_len(torn).unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    assert_meta(&store, &want[..19], "after cutting the torn record").await;
}

#[tokio::test]
async fn a_damaged_term_in_a_sealed_segment_is_refused_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let all = entries(1..=200, 1);
    {
        let store = FileStore::open_with(dir.path(), small()).await.unwrap();
        for chunk in all.chunks(10) {
            store.store_logs(chunk).await.unwrap();
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    // The term field of the second record of the first segment.
    let offset = HEADER + 8 + 25 + all[0].data.len() as u64;
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[(offset + 8 + 8) as usize] ^= 0x01;
    std::fs::write(&segs[0], bytes).unwrap();
    match FileStore::open_with(dir.path(), small()).await {
        Err(StorageError::Corrupt { path, offset: at, reason }) => {
            assert_eq!(path, segs[0].display().to_string(), "{reason}");
            assert_eq!(at, offset, "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn the_index_does_not_grow_with_payload_size() {
    async fn index_bytes(payload: usize) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let opts = FileStoreOptions { segment_size: 1 << 30, ..Default::default() };
        {
            let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
            for term in 1..=4u64 {
                let batch: Vec<Log> = (1..=500)
                    .map(|i| Log::new((term - 1) * 500 + i, term, LogType::Command, vec![7u8; payload]))
                    .collect();
                store.store_logs(&batch).await.unwrap();
            }
        }
        let store = FileStore::open_with(dir.path(), opts).await.unwrap();
        assert_eq!(store.cached_bytes().unwrap(), 0, "the cache starts empty");
        store.index_bytes().unwrap()
    }
    let tiny = index_bytes(10).await;
    let large = index_bytes(4096).await;
    // The larger payloads fill a few more segments (preallocated segments
    // start at 4 MiB), each costing a little of its own; per entry the
    // cost is the same.
    assert!(
        large.abs_diff(tiny) <= 512,
        "index bytes with 10-byte ({tiny}) and 4 KiB ({large}) payloads differ by more than a few segments' worth"
    );
    // 8 bytes per entry (the vector may hold up to twice its length) plus
    // a little per segment and term.
    assert!(large <= 2 * 8 * 2000 + 1024, "2000 entries cost {large} bytes");
}

#[tokio::test]
async fn the_cache_of_recent_entries_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions { cache_entries: 1000, cache_bytes: 64 << 10, ..Default::default() };
    let store = FileStore::open_with(dir.path(), opts).await.unwrap();
    let all: Vec<Log> = (1..=100).map(|i| Log::new(i, 1, LogType::Command, vec![i as u8; 4096])).collect();
    for chunk in all.chunks(3) {
        store.store_logs(chunk).await.unwrap();
        assert!(store.cached_bytes().unwrap() <= 64 << 10);
    }
    assert_eq!(store.cached_bytes().unwrap(), 16 * 4096, "the newest 16 entries fit");
    // One batch larger than the cache keeps only its newest entries.
    let big: Vec<Log> = (101..=130).map(|i| Log::new(i, 1, LogType::Command, vec![i as u8; 8192])).collect();
    store.store_logs(&big).await.unwrap();
    assert_eq!(store.cached_bytes().unwrap(), 8 * 8192);
    let mut want = all;
    want.extend(big);
    assert_eq!(store.get_logs(1..131).await.unwrap(), want);
    assert_eq!(store.get_logs(120..131).await.unwrap(), want[119..].to_vec());
    assert_eq!(store.get_log(125).await.unwrap().as_ref(), Some(&want[124]));
    // Truncation and compaction keep the count right.
    store.delete_range(128, 130).await.unwrap();
    assert_eq!(store.cached_bytes().unwrap(), 5 * 8192);
    store.delete_range(1, 124).await.unwrap();
    assert_eq!(store.cached_bytes().unwrap(), 3 * 8192);
    assert_eq!(store.get_logs(125..128).await.unwrap(), want[124..127].to_vec());
}
