//! Issue 21: on tokio's multi-thread runtime a `store_logs` that finds the
//! log idle writes and syncs it on the calling thread; changes arriving
//! meanwhile queue for the writer thread. Through the public API: many
//! concurrent callers, every acknowledged entry durable and in order, both
//! write paths used, and the same outcome with `caller_writes` off.

use std::sync::Arc;
use std::task::Poll;

use raft::{Log, LogStore, LogType};
use raft_store_file::{FileStore, FileStoreOptions};

fn entry(index: u64, term: u64) -> Log {
    Log::new(index, term, LogType::Command, format!("{index}/{term}").into_bytes())
}

/// `tasks` tasks append batches of 1-4 entries in turns (a shared counter
/// keeps the log contiguous), each truncating the last entry of its batch
/// and rewriting it in a new term every fifth round; returns the log they
/// should have produced.
async fn run_callers(store: &FileStore, tasks: usize, rounds: u64) -> Vec<Log> {
    let next = Arc::new(tokio::sync::Mutex::new(1u64));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            for round in 0..rounds {
                let len = 1 + (round + t as u64) % 4;
                // Hold the turn until the change is submitted (the first
                // poll of `store_logs` writes it or queues it), so the
                // indexes stay contiguous; wait for durability after
                // passing the turn on, so other tasks queue behind a caller
                // that is syncing.
                let mut turn = next.lock().await;
                let from = *turn;
                let last = from + len - 1;
                let batch: Vec<Log> = (from..=last).map(|i| entry(i, 1)).collect();
                if round % 5 == 4 {
                    store.store_logs(&batch).await.expect("append");
                    store.delete_range(last, last).await.expect("truncate the tail");
                    store.store_logs(&[entry(last, 2)]).await.expect("rewrite the tail");
                    *turn = last + 1;
                    continue;
                }
                let mut fut = std::pin::pin!(store.store_logs(&batch));
                let done = match futures::poll!(&mut fut) {
                    Poll::Ready(res) => {
                        res.expect("append");
                        true
                    }
                    Poll::Pending => false,
                };
                *turn = last + 1;
                drop(turn);
                if !done {
                    fut.await.expect("append");
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Two more tasks keep asking for a delete far past the end (which
    // changes nothing) without taking turns: they arrive while appenders
    // are syncing, and queue behind them or write first.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut idle = Vec::new();
    for _ in 0..2 {
        let (store, stop) = (store.clone(), stop.clone());
        idle.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.delete_range(u64::MAX - 1, u64::MAX).await.expect("a delete past the end");
                tokio::task::yield_now().await;
            }
        }));
    }
    for h in handles {
        h.await.expect("caller task");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in idle {
        h.await.expect("idle deleter");
    }
    let end = *next.lock().await;
    store.get_logs(1..end).await.expect("read back")
}

async fn check(caller_writes: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FileStoreOptions { segment_size: 8 * 1024, caller_writes, ..Default::default() };
    let store = FileStore::open_with(dir.path(), opts.clone()).await.expect("open");
    let written = run_callers(&store, 6, 25).await;
    // Contiguous, each entry as last written (term 2 where rewritten).
    for (i, log) in written.iter().enumerate() {
        assert_eq!(log.index, i as u64 + 1);
        assert!(log == &entry(log.index, 1) || log == &entry(log.index, 2), "entry {} is {log:?}", log.index);
    }
    assert!(written.iter().any(|l| l.term == 2), "some tails were rewritten");
    let counts = store.write_counts();
    if caller_writes {
        assert!(counts.by_caller > 0, "no caller wrote the log itself: {counts:?}");
    } else {
        assert_eq!(counts.by_caller, 0, "{counts:?}");
        assert!(counts.handed_off > 0, "{counts:?}");
    }
    drop(store);
    // Everything acknowledged is durable, in order.
    let store = FileStore::open_with(dir.path(), opts).await.expect("reopen");
    let last = written.len() as u64;
    assert_eq!(store.last_index().await.expect("last"), last);
    assert_eq!(store.get_logs(1..last + 1).await.expect("read after reopen"), written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_writing_themselves_leave_every_entry_durable_and_in_order() {
    check(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_caller_writes_off_the_writer_thread_does_every_write() {
    check(false).await;
}

#[test]
fn a_current_thread_runtime_still_writes_through_the_writer_thread() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).await.expect("open");
        let written = run_callers(&store, 3, 10).await;
        assert_eq!(store.write_counts().by_caller, 0);
        assert!(store.write_counts().handed_off >= 30, "{:?}", store.write_counts());
        drop(store);
        let store = FileStore::open(dir.path()).await.expect("reopen");
        let last = written.len() as u64;
        assert_eq!(store.get_logs(1..last + 1).await.expect("read after reopen"), written);
    });
}
