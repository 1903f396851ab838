//! Unit tests of the write path: callers writing the log themselves, the
//! writer thread, and how the two share the log's files (order, group
//! commit, fail-stop).

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use raft::{Log, LogStore, LogType, StorageError};

use super::{FileStore, WriteCounts};
use crate::options::FileStoreOptions;
use crate::writer::Request;

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Log> {
    range.map(|i| Log::new(i, 1, LogType::Command, i.to_le_bytes().to_vec())).collect()
}

async fn open(dir: &std::path::Path, caller_writes: bool) -> FileStore {
    FileStore::open_with(dir, FileStoreOptions { caller_writes, ..Default::default() }).await.expect("open")
}

/// Bounds a wait that must end (a lost wake-up would hang the test).
async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("a queued change was never answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_a_multi_thread_runtime_writes_and_syncs_the_log_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    for i in 1..=5 {
        store.store_logs(&entries(i..=i)).await.expect("append");
    }
    store.delete_range(5, 5).await.expect("truncate");
    let counts = store.write_counts();
    assert_eq!(counts.by_caller, 6, "{counts:?}");
    assert_eq!(counts.handed_off, 0, "{counts:?}");
    assert_eq!(store.get_logs(1..5).await.expect("read"), entries(1..=4));
    drop(store);
    let store = open(dir.path(), true).await;
    assert_eq!(store.get_logs(1..5).await.expect("read after reopen"), entries(1..=4));
    assert_eq!(store.last_index().await.expect("last"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_sync_lets_the_next_caller_write_without_block_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    let committer = store.inner.committer.clone();
    // A slow sync before: the caller hands its worker's tasks to another
    // thread while it syncs.
    committer.set_last_write(Duration::from_millis(5));
    let one = entries(1..=1);
    let mut fut = std::pin::pin!(store.store_logs(&one));
    // The write is done by the first poll (on this thread), not later.
    assert!(matches!(futures::poll!(&mut fut), Poll::Ready(Ok(()))));
    assert_eq!(store.write_counts(), WriteCounts { by_caller: 1, by_caller_quick: 0, handed_off: 0 });
    // A quick one: no hand-off of the worker at all.
    committer.set_last_write(Duration::from_micros(1));
    store.store_logs(&entries(2..=2)).await.expect("append");
    assert_eq!(store.write_counts(), WriteCounts { by_caller: 2, by_caller_quick: 1, handed_off: 0 });
    assert_eq!(store.get_logs(1..3).await.expect("read"), entries(1..=2));
    // A change that touches no file (a delete past the end) is quick but
    // says nothing about the disk: after a slow sync, the next append
    // still hands the worker's tasks off while it syncs.
    committer.set_last_write(Duration::from_millis(5));
    store.delete_range(10, 20).await.expect("delete of nothing");
    store.store_logs(&entries(3..=3)).await.expect("append");
    assert_eq!(store.write_counts(), WriteCounts { by_caller: 4, by_caller_quick: 1, handed_off: 0 });
}

#[tokio::test]
async fn the_current_thread_runtime_hands_every_write_to_the_writer_thread() {
    // `block_in_place` panics on this runtime: the store must not call it.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    store.store_logs(&entries(1..=3)).await.expect("append");
    store.store_logs(&entries(4..=4)).await.expect("append");
    store.delete_range(4, 4).await.expect("truncate");
    assert_eq!(store.write_counts(), WriteCounts { by_caller: 0, by_caller_quick: 0, handed_off: 3 });
    assert_eq!(store.get_logs(1..4).await.expect("read"), entries(1..=3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_caller_writes_off_every_write_goes_to_the_writer_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), false).await;
    store.store_logs(&entries(1..=2)).await.expect("append");
    store.store_logs(&entries(3..=3)).await.expect("append");
    assert_eq!(store.write_counts(), WriteCounts { by_caller: 0, by_caller_quick: 0, handed_off: 2 });
    assert_eq!(store.get_logs(1..4).await.expect("read"), entries(1..=3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_queued_while_the_log_is_busy_is_never_overtaken_by_a_later_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    let committer = store.inner.committer.clone();
    // Another writer holds the files: the first change queues.
    let held = committer.hold().expect("the files are free");
    let (first, later) = (entries(1..=3), entries(4..=6));
    {
        let mut queued = std::pin::pin!(store.store_logs(&first));
        assert!(futures::poll!(&mut queued).is_pending());
        assert_eq!(committer.queued(), 1);
        // The files come back; the writer thread may or may not have taken
        // the queue yet when the next caller arrives. Either way the caller
        // must not write before the queued change: it would start the empty
        // log at 4, and the queued 1..=3 would then replace it.
        drop(held);
        let second = store.store_logs(&later);
        let (a, b) = bounded(async { tokio::join!(queued, second) }).await;
        a.expect("queued append");
        b.expect("later append");
    }
    assert_eq!(store.get_logs(1..7).await.expect("read"), entries(1..=6));
    drop(store);
    let store = open(dir.path(), true).await;
    assert_eq!(store.get_logs(1..7).await.expect("read after reopen"), entries(1..=6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_queued_while_a_caller_writes_are_group_committed_by_the_writer_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    let committer = store.inner.committer.clone();
    let held = committer.hold().expect("the files are free");
    let stores: Vec<FileStore> = (0..4).map(|_| store.clone()).collect();
    let mut waiters = Vec::new();
    for (k, s) in stores.iter().enumerate() {
        let k = k as u64;
        let mut fut = Box::pin(async move { s.store_logs(&entries(2 * k + 1..=2 * k + 2)).await });
        assert!(futures::poll!(&mut fut).is_pending(), "queued while the files are held");
        waiters.push(fut);
    }
    assert_eq!(committer.queued(), 4);
    // Handing the files back wakes the writer thread, which writes the four
    // queued appends in order.
    drop(held);
    for w in waiters {
        bounded(w).await.expect("queued append");
    }
    assert_eq!(store.get_logs(1..9).await.expect("read"), entries(1..=8));
    assert_eq!(store.write_counts().handed_off, 4);
    // One sync group: every record carries the group's first index.
    let seg = store.inner.shared.read().expect("view").segments[0].path.clone();
    drop(store);
    let bytes = std::fs::read(seg).expect("segment");
    let mut at = crate::segment::HEADER_LEN;
    for _ in 0..8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let group = u64::from_le_bytes(bytes[at + 24..at + 32].try_into().expect("8 bytes"));
        assert_eq!(group, 1, "record at {at} was synced apart from the others");
        at += 8 + len;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_while_the_caller_syncs_fails_the_store_for_every_waiter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    store.store_logs(&entries(1..=1)).await.expect("append");
    // Break the active segment: writes to a read-only handle fail (EBADF).
    {
        let mut v = store.inner.shared.write().expect("view");
        let seg = v.segments.last_mut().expect("a segment");
        seg.file = Arc::new(std::fs::File::open(&seg.path).expect("open read-only"));
    }
    let committer = store.inner.committer.clone();
    // A caller holds the files and is about to write; two more changes
    // arrive meanwhile and queue.
    let mut held = committer.hold().expect("the files are free");
    let (s1, s2) = (store.clone(), store.clone());
    let mut w1 = Box::pin(async move { s1.store_logs(&entries(3..=3)).await });
    let mut w2 = Box::pin(async move { s2.delete_range(1, 1).await });
    assert!(futures::poll!(&mut w1).is_pending());
    assert!(futures::poll!(&mut w2).is_pending());
    let (reply, rx) = tokio::sync::oneshot::channel();
    held.process(vec![Request::Append { logs: entries(2..=2), reply }]);
    drop(held);
    // The caller gets the I/O error itself...
    match rx.await.expect("answered") {
        Err(StorageError::Io { .. }) => {}
        other => panic!("the caller should see the I/O error, got {other:?}"),
    }
    // ...every waiter, and every later call, gets Failed.
    for res in [bounded(w1).await, bounded(w2).await] {
        assert!(matches!(res, Err(StorageError::Failed(_))), "a waiter got {res:?}");
    }
    let later = store.store_logs(&entries(2..=2)).await;
    assert!(matches!(later, Err(StorageError::Failed(_))), "later: {later:?}");
    assert!(matches!(store.last_index().await, Err(StorageError::Failed(_))));
    // Nothing after entry 1 was acknowledged, and entry 1 survives.
    drop(store);
    let store = open(dir.path(), true).await;
    assert_eq!(store.get_logs(1..2).await.expect("read after reopen"), entries(1..=1));
    assert_eq!(store.last_index().await.expect("last"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_on_the_callers_own_path_fails_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true).await;
    store.store_logs(&entries(1..=1)).await.expect("append");
    {
        let mut v = store.inner.shared.write().expect("view");
        let seg = v.segments.last_mut().expect("a segment");
        seg.file = Arc::new(std::fs::File::open(&seg.path).expect("open read-only"));
    }
    let res = store.store_logs(&entries(2..=2)).await;
    assert!(matches!(res, Err(StorageError::Io { .. })), "{res:?}");
    assert_eq!(store.write_counts().by_caller, 2);
    let later = store.store_logs(&entries(2..=2)).await;
    assert!(matches!(later, Err(StorageError::Failed(_))), "later: {later:?}");
}

#[tokio::test]
async fn a_panic_of_the_writer_thread_fails_the_store_and_strands_no_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One request per batch: the second queued change is still queued
    // when the thread panics on the first.
    let opts = FileStoreOptions { max_group_requests: 1, ..Default::default() };
    let store = FileStore::open_with(dir.path(), opts).await.expect("open");
    store.store_logs(&entries(1..=1)).await.expect("append");
    let committer = store.inner.committer.clone();
    // The writer thread answers before it hands the files back: wait (bounded)
    // until they are free.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let held = loop {
        if let Some(held) = committer.hold() {
            break held;
        }
        assert!(std::time::Instant::now() < deadline, "the writer thread never handed the files back");
        tokio::task::yield_now().await;
    };
    let (s1, s2) = (store.clone(), store.clone());
    let mut w1 = Box::pin(async move { s1.store_logs(&entries(2..=2)).await });
    let mut w2 = Box::pin(async move { s2.store_logs(&entries(3..=3)).await });
    assert!(futures::poll!(&mut w1).is_pending());
    assert!(futures::poll!(&mut w2).is_pending());
    committer.panic_next.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(held);
    // The thread panics on the first; neither caller waits for ever.
    for res in [bounded(w1).await, bounded(w2).await] {
        assert!(matches!(res, Err(StorageError::Failed(_))), "a waiter got {res:?}");
    }
    // Later changes are refused rather than queued for a thread that is gone.
    let later = bounded(store.store_logs(&entries(2..=2))).await;
    assert!(matches!(later, Err(StorageError::Failed(_))), "{later:?}");
}
