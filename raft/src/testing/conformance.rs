//! Store conformance suite: checks that a [`LogStore`], [`StableStore`] or
//! [`SnapshotStore`] keeps the contract the runtime relies on.
//!
//! Each function takes a factory producing a fresh, empty store (it is
//! called once per scenario) and panics with a message naming the scenario
//! and the broken expectation, like any test assertion. Call them from a
//! `#[tokio::test]`:
//!
//! ```text
//! #[tokio::test]
//! async fn my_store_conforms() {
//!     raft::testing::conformance::run_all(|| async { MyStore::new() }, || async { MySnapshots::new() }).await;
//! }
//! ```
//!
//! Snapshot scenarios assume the store keeps at least two snapshots.

use std::future::Future;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::StorageError;
use crate::snapshot::SnapshotStore;
use crate::storage::{LogStore, StableStore};
use crate::types::{Configuration, Log, LogEntryMeta, LogType, Server, SnapshotMeta};

/// Runs [`log_store_conformance`] and [`stable_store_conformance`] on a
/// store implementing both traits.
pub async fn store_conformance<S, F, Fut>(mut make: F)
where
    S: LogStore + StableStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    log_store_conformance(&mut make).await;
    stable_store_conformance(&mut make).await;
}

/// Runs every scenario: [`store_conformance`] with `make_store` and
/// [`snapshot_store_conformance`] with `make_snapshots`.
pub async fn run_all<S, FS, FutS, P, FP, FutP>(make_store: FS, make_snapshots: FP)
where
    S: LogStore + StableStore,
    FS: FnMut() -> FutS,
    FutS: Future<Output = S>,
    P: SnapshotStore,
    FP: FnMut() -> FutP,
    FutP: Future<Output = P>,
{
    store_conformance(make_store).await;
    snapshot_store_conformance(make_snapshots).await;
}

/// A deterministic entry: the type and data vary with the index, some data
/// is empty.
fn entry(index: u64, term: u64) -> Log {
    let log_type = match index % 7 {
        0 => LogType::Noop,
        3 => LogType::Configuration,
        5 => LogType::Barrier,
        _ => LogType::Command,
    };
    let data = if index.is_multiple_of(11) {
        Bytes::new()
    } else {
        Bytes::from(format!("entry {index} of term {term}"))
    };
    Log::new(index, term, log_type, data)
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Log> {
    range.map(|i| entry(i, term)).collect()
}

/// What a failing call looked like, for messages.
fn describe<T: std::fmt::Debug>(r: &Result<T, StorageError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    }
}

async fn must<T, Fut: Future<Output = Result<T, StorageError>>>(case: &str, what: &str, fut: Fut) -> T {
    match fut.await {
        Ok(v) => v,
        Err(e) => panic!("conformance [{case}]: {what} failed: {e}"),
    }
}

async fn expect_bounds<S: LogStore>(case: &str, store: &S, first: u64, last: u64) {
    let f = must(case, "first_index", store.first_index()).await;
    let l = must(case, "last_index", store.last_index()).await;
    assert_eq!((f, l), (first, last), "conformance [{case}]: (first_index, last_index)");
}

/// Checks that exactly `want` is stored: each entry by `get_log`, all of
/// them by one `get_logs`, and the indexes just outside are absent.
async fn expect_log<S: LogStore>(case: &str, store: &S, want: &[Log]) {
    let (Some(head), Some(tail)) = (want.first(), want.last()) else {
        expect_bounds(case, store, 0, 0).await;
        return;
    };
    expect_bounds(case, store, head.index, tail.index).await;
    for log in want {
        let got = must(case, "get_log", store.get_log(log.index)).await;
        assert_eq!(got.as_ref(), Some(log), "conformance [{case}]: get_log({})", log.index);
    }
    let got = must(case, "get_logs", store.get_logs(head.index..tail.index + 1)).await;
    assert_eq!(got, want, "conformance [{case}]: get_logs({}..{})", head.index, tail.index + 1);
    expect_meta(case, store, want).await;
    for index in [head.index - 1, tail.index + 1] {
        let got = must(case, "get_log", store.get_log(index)).await;
        assert!(got.is_none(), "conformance [{case}]: get_log({index}) outside the log returned {got:?}");
    }
}

/// Checks `entry_meta` against the entries `want` (contiguous, stored):
/// over the whole range, over each entry alone, and over a middle part.
async fn expect_meta<S: LogStore>(case: &str, store: &S, want: &[Log]) {
    let (Some(head), Some(tail)) = (want.first(), want.last()) else { return };
    let metas: Vec<LogEntryMeta> = want.iter().map(LogEntryMeta::of).collect();
    let got = must(case, "entry_meta", store.entry_meta(head.index..tail.index + 1)).await;
    assert_eq!(got, metas, "conformance [{case}]: entry_meta({}..{})", head.index, tail.index + 1);
    if want.len() <= 64 {
        for meta in &metas {
            let got = must(case, "entry_meta", store.entry_meta(meta.index..meta.index + 1)).await;
            assert_eq!(
                got,
                vec![*meta],
                "conformance [{case}]: entry_meta({}..{})",
                meta.index,
                meta.index + 1
            );
        }
    }
    if want.len() >= 3 {
        let (lo, hi) = (head.index + 1, tail.index);
        let got = must(case, "entry_meta", store.entry_meta(lo..hi)).await;
        assert_eq!(got, metas[1..want.len() - 1], "conformance [{case}]: entry_meta({lo}..{hi})");
    }
    let got = must(case, "entry_meta of an empty range", store.entry_meta(tail.index..tail.index)).await;
    assert!(got.is_empty(), "conformance [{case}]: entry_meta of an empty range returned {got:?}");
}

async fn expect_not_found<S: LogStore>(case: &str, store: &S, range: std::ops::Range<u64>, missing: u64) {
    let r = store.get_logs(range.clone()).await;
    assert!(
        matches!(r, Err(StorageError::LogNotFound(i)) if i == missing),
        "conformance [{case}]: get_logs({range:?}) should be Err(LogNotFound({missing})), got {}",
        describe(&r)
    );
    let r = store.entry_meta(range.clone()).await;
    assert!(
        matches!(r, Err(StorageError::LogNotFound(i)) if i == missing),
        "conformance [{case}]: entry_meta({range:?}) should be Err(LogNotFound({missing})), got {}",
        describe(&r)
    );
}

/// The [`LogStore`] scenarios. `make` must produce a fresh, empty store
/// each time it is called.
pub async fn log_store_conformance<S, F, Fut>(mut make: F)
where
    S: LogStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    // An empty store.
    {
        let case = "empty store";
        let s = make().await;
        expect_bounds(case, &s, 0, 0).await;
        for index in [0, 1, 2] {
            let got = must(case, "get_log", s.get_log(index)).await;
            assert!(got.is_none(), "conformance [{case}]: get_log({index}) returned {got:?}");
        }
        expect_not_found(case, &s, 1..2, 1).await;
        let got = must(case, "get_logs of an empty range", s.get_logs(5..5)).await;
        assert!(got.is_empty(), "conformance [{case}]: get_logs(5..5) returned {got:?}");
        let got = must(case, "entry_meta of an empty range", s.entry_meta(5..5)).await;
        assert!(got.is_empty(), "conformance [{case}]: entry_meta(5..5) returned {got:?}");
        must(case, "store_logs(&[])", s.store_logs(&[])).await;
        expect_bounds(case, &s, 0, 0).await;
        must(case, "delete_range on an empty store", s.delete_range(1, 10)).await;
        expect_bounds(case, &s, 0, 0).await;
    }

    // One entry, then a batch, then more batches.
    {
        let case = "store single entries and batches";
        let s = make().await;
        let one = entries(1..=1, 1);
        must(case, "store_logs([1])", s.store_logs(&one)).await;
        expect_log(case, &s, &one).await;
        let mut all = one;
        for (range, term) in [(2..=10, 1), (11..=11, 2), (12..=40, 3)] {
            let batch = entries(range, term);
            must(case, "store_logs", s.store_logs(&batch)).await;
            all.extend(batch);
            expect_log(case, &s, &all).await;
        }
        let got = must(case, "get_logs(5..9)", s.get_logs(5..9)).await;
        assert_eq!(got, all[4..8].to_vec(), "conformance [{case}]: get_logs(5..9)");
    }

    // get_logs with missing indexes.
    {
        let case = "get_logs reports the first missing index";
        let s = make().await;
        must(case, "store_logs", s.store_logs(&entries(1..=10, 1))).await;
        expect_not_found(case, &s, 5..12, 11).await;
        expect_not_found(case, &s, 11..12, 11).await;
        expect_not_found(case, &s, 0..3, 0).await;
        expect_not_found(case, &s, 20..30, 20).await;
        expect_not_found(case, &s, 1..u64::MAX, 11).await;
        must(case, "delete_range(1, 4)", s.delete_range(1, 4)).await;
        expect_not_found(case, &s, 1..6, 1).await;
        expect_not_found(case, &s, 4..6, 4).await;
    }

    // A log that does not start at 1 (after a snapshot was installed).
    {
        let case = "log starting after a snapshot";
        let s = make().await;
        let batch = entries(50..=60, 4);
        must(case, "store_logs(50..=60)", s.store_logs(&batch)).await;
        expect_log(case, &s, &batch).await;
        expect_not_found(case, &s, 49..51, 49).await;
    }

    // Compaction: delete a prefix.
    {
        let case = "delete a prefix";
        let s = make().await;
        let all = entries(1..=20, 1);
        must(case, "store_logs", s.store_logs(&all)).await;
        must(case, "delete_range(1, 4)", s.delete_range(1, 4)).await;
        expect_log(case, &s, &all[4..]).await;
        must(case, "delete_range(5, 12)", s.delete_range(5, 12)).await;
        expect_log(case, &s, &all[12..]).await;
        // A range reaching below the first index is still a prefix.
        must(case, "delete_range(0, 14)", s.delete_range(0, 14)).await;
        expect_log(case, &s, &all[14..]).await;
        let more = entries(21..=25, 2);
        must(case, "store_logs after compaction", s.store_logs(&more)).await;
        let mut want = all[14..].to_vec();
        want.extend(more);
        expect_log(case, &s, &want).await;
    }

    // Conflict truncation: delete a suffix, then append after it.
    {
        let case = "delete a suffix and append";
        let s = make().await;
        let all = entries(1..=20, 1);
        must(case, "store_logs", s.store_logs(&all)).await;
        must(case, "delete_range(15, 20)", s.delete_range(15, 20)).await;
        expect_log(case, &s, &all[..14]).await;
        // A range reaching past the last index is still a suffix.
        must(case, "delete_range(11, 100)", s.delete_range(11, 100)).await;
        expect_log(case, &s, &all[..10]).await;
        let replacement = entries(11..=16, 2);
        must(case, "store_logs after truncation", s.store_logs(&replacement)).await;
        let mut want = all[..10].to_vec();
        want.extend(replacement);
        expect_log(case, &s, &want).await;
    }

    // Prefix and suffix deletion on the same log.
    {
        let case = "delete a prefix then a suffix";
        let s = make().await;
        let all = entries(1..=30, 1);
        must(case, "store_logs", s.store_logs(&all)).await;
        must(case, "delete_range(1, 9)", s.delete_range(1, 9)).await;
        must(case, "delete_range(26, 30)", s.delete_range(26, 30)).await;
        expect_log(case, &s, &all[9..25]).await;
        let more = entries(26..=28, 3);
        must(case, "store_logs", s.store_logs(&more)).await;
        let mut want = all[9..25].to_vec();
        want.extend(more);
        expect_log(case, &s, &want).await;
    }

    // store_logs over an existing suffix replaces it.
    {
        let case = "overwrite a suffix";
        let s = make().await;
        let all = entries(1..=10, 1);
        must(case, "store_logs", s.store_logs(&all)).await;
        let replacement = entries(6..=8, 2);
        must(case, "store_logs over 6..=8", s.store_logs(&replacement)).await;
        let mut want = all[..5].to_vec();
        want.extend(replacement);
        expect_log(case, &s, &want).await;
    }

    // Deleting everything, then starting again elsewhere.
    {
        let case = "delete everything";
        let s = make().await;
        must(case, "store_logs", s.store_logs(&entries(1..=10, 1))).await;
        must(case, "delete_range(1, 10)", s.delete_range(1, 10)).await;
        expect_log(case, &s, &[]).await;
        let restart = entries(101..=105, 5);
        must(case, "store_logs after deleting everything", s.store_logs(&restart)).await;
        expect_log(case, &s, &restart).await;
        must(case, "delete_range(0, u64::MAX)", s.delete_range(0, u64::MAX)).await;
        expect_log(case, &s, &[]).await;
        let again = entries(1..=3, 6);
        must(case, "store_logs from 1 again", s.store_logs(&again)).await;
        expect_log(case, &s, &again).await;
    }

    // Larger entries and many of them.
    {
        let case = "large entries";
        let s = make().await;
        let big: Vec<Log> = (1..=3u64)
            .map(|i| Log::new(i, 1, LogType::Command, vec![i as u8; 256 * 1024 + i as usize]))
            .collect();
        must(case, "store_logs of large entries", s.store_logs(&big)).await;
        let many: Vec<Log> = (4..=2003).map(|i| entry(i, 2)).collect();
        must(case, "store_logs of 2000 entries", s.store_logs(&many)).await;
        let mut want = big;
        want.extend(many);
        expect_log(case, &s, &want).await;
    }

    // Byte limits: a store must keep whatever one message can carry (the
    // gRPC transport's default limit is 64 MiB, and an entry up to just
    // under it can be committed), byte for byte, and batches whose total is
    // many MiB.
    {
        let case = "byte limit: entries of several MiB and a large batch";
        let s = make().await;
        let big = Log::new(1, 1, LogType::Command, large_data(8 * 1024 * 1024 + 3, 1));
        must(case, "store_logs of an 8 MiB entry", s.store_logs(std::slice::from_ref(&big))).await;
        expect_log(case, &s, std::slice::from_ref(&big)).await;
        let batch: Vec<Log> = (2..=25u64)
            .map(|i| Log::new(i, 2, LogType::Command, large_data(512 * 1024 + i as usize, i as u8)))
            .collect();
        must(case, "store_logs of a 12 MiB batch", s.store_logs(&batch)).await;
        let tail = Log::new(26, 2, LogType::Command, large_data(3 * 1024 * 1024, 26));
        must(case, "store_logs of a 3 MiB entry after the batch", s.store_logs(std::slice::from_ref(&tail)))
            .await;
        let mut want = vec![big];
        want.extend(batch);
        want.push(tail);
        expect_log(case, &s, &want).await;
        // Compaction and truncation around large entries keep the rest intact.
        must(case, "delete_range(1, 1)", s.delete_range(1, 1)).await;
        must(case, "delete_range(26, 26)", s.delete_range(26, 26)).await;
        expect_log(case, &s, &want[1..25]).await;
    }
}

/// `len` bytes of a pattern that differs at every position and with `seed`,
/// so a truncated, shifted or mixed-up entry is noticed.
fn large_data(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed).collect::<Vec<u8>>().into()
}

/// The [`StableStore`] scenarios. `make` must produce a fresh, empty store
/// each time it is called.
pub async fn stable_store_conformance<S, F, Fut>(mut make: F)
where
    S: StableStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let case = "stable store";
    let s = make().await;
    assert_eq!(
        must(case, "get of a missing key", s.get(b"missing")).await,
        None,
        "conformance [{case}]: get"
    );
    assert_eq!(
        must(case, "get_u64 of a missing key", s.get_u64(b"missing")).await,
        None,
        "conformance [{case}]"
    );

    must(case, "set", s.set(b"vote", b"node-1")).await;
    assert_eq!(
        must(case, "get", s.get(b"vote")).await.as_deref(),
        Some(&b"node-1"[..]),
        "conformance [{case}]"
    );
    must(case, "overwrite", s.set(b"vote", b"node-22")).await;
    assert_eq!(
        must(case, "get after overwrite", s.get(b"vote")).await.as_deref(),
        Some(&b"node-22"[..]),
        "conformance [{case}]: overwrite"
    );
    must(case, "set an empty value", s.set(b"empty", b"")).await;
    assert_eq!(
        must(case, "get an empty value", s.get(b"empty")).await.as_deref(),
        Some(&b""[..]),
        "conformance [{case}]: an empty value is not a missing one"
    );
    let binary_key = [0u8, 255, 1, 254];
    let big_value: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    must(case, "set a binary key", s.set(&binary_key, &big_value)).await;
    assert_eq!(
        must(case, "get a binary key", s.get(&binary_key)).await,
        Some(big_value),
        "conformance [{case}]: binary key, 64 KiB value"
    );

    must(case, "set_u64", s.set_u64(b"term", 7)).await;
    assert_eq!(must(case, "get_u64", s.get_u64(b"term")).await, Some(7), "conformance [{case}]: u64");
    must(case, "set_u64 overwrite", s.set_u64(b"term", u64::MAX)).await;
    assert_eq!(
        must(case, "get_u64 after overwrite", s.get_u64(b"term")).await,
        Some(u64::MAX),
        "conformance [{case}]: u64 overwrite"
    );
    let r = s.get_u64(b"vote").await;
    assert!(r.is_err(), "conformance [{case}]: get_u64 of a 7-byte value should fail, got {}", describe(&r));
    assert_eq!(
        must(case, "get of an untouched key", s.get(b"vote")).await.as_deref(),
        Some(&b"node-22"[..]),
        "conformance [{case}]: keys are independent"
    );
}

fn snapshot_data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn write_snapshot<S: SnapshotStore>(
    case: &str,
    store: &S,
    index: u64,
    term: u64,
    configuration: &Configuration,
    data: &[u8],
) -> SnapshotMeta {
    let mut sink = must(case, "create", store.create(index, term, configuration, index / 2)).await;
    let id = sink.id().to_owned();
    for chunk in data.chunks(7919) {
        if let Err(e) = sink.write_all(chunk).await {
            panic!("conformance [{case}]: writing to the sink failed: {e}");
        }
    }
    let meta = must(case, "finalize", sink.finalize()).await;
    assert_eq!(meta.id, id, "conformance [{case}]: finalize returned another id than the sink had");
    assert_eq!(
        (meta.index, meta.term, &meta.configuration, meta.configuration_index, meta.size),
        (index, term, configuration, index / 2, data.len() as u64),
        "conformance [{case}]: metadata returned by finalize"
    );
    meta
}

async fn read_snapshot<S: SnapshotStore>(case: &str, store: &S, meta: &SnapshotMeta) -> Vec<u8> {
    let (got, mut reader) = must(case, "open", store.open(&meta.id)).await;
    assert_eq!(&got, meta, "conformance [{case}]: metadata returned by open");
    let mut data = Vec::new();
    if let Err(e) = reader.read_to_end(&mut data).await {
        panic!("conformance [{case}]: reading snapshot {} failed: {e}", meta.id);
    }
    data
}

async fn list_ids<S: SnapshotStore>(case: &str, store: &S) -> Vec<String> {
    must(case, "list", store.list()).await.into_iter().map(|m| m.id).collect()
}

/// The [`SnapshotStore`] scenarios. `make` must produce a fresh, empty
/// store keeping at least two snapshots each time it is called.
pub async fn snapshot_store_conformance<S, F, Fut>(mut make: F)
where
    S: SnapshotStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let configuration = Configuration::new(vec![
        Server::voter("a", "10.0.0.1:7000"),
        Server::voter("b", "10.0.0.2:7000"),
        Server::nonvoter("c", "10.0.0.3:7000"),
    ]);

    {
        let case = "snapshot round trip";
        let s = make().await;
        assert!(list_ids(case, &s).await.is_empty(), "conformance [{case}]: a new store lists snapshots");
        let r = s.open("no-such-snapshot").await;
        assert!(
            matches!(r, Err(StorageError::SnapshotNotFound(_))),
            "conformance [{case}]: open of an unknown id should be Err(SnapshotNotFound), got {}",
            describe(&r)
        );
        let data = snapshot_data(300_000, 1);
        let meta = write_snapshot(case, &s, 100, 3, &configuration, &data).await;
        let listed = must(case, "list", s.list()).await;
        assert_eq!(listed, vec![meta.clone()], "conformance [{case}]: list after one snapshot");
        let back = read_snapshot(case, &s, &meta).await;
        assert!(back == data, "conformance [{case}]: snapshot data read back differs from what was written");
        // Reading twice works.
        let again = read_snapshot(case, &s, &meta).await;
        assert!(again == data, "conformance [{case}]: second read differs");
    }

    {
        let case = "empty snapshot";
        let s = make().await;
        let meta = write_snapshot(case, &s, 5, 1, &Configuration::default(), &[]).await;
        assert!(
            read_snapshot(case, &s, &meta).await.is_empty(),
            "conformance [{case}]: data of an empty snapshot"
        );
    }

    {
        let case = "list newest first";
        let s = make().await;
        let old = write_snapshot(case, &s, 10, 1, &configuration, &snapshot_data(1000, 2)).await;
        let new = write_snapshot(case, &s, 20, 2, &configuration, &snapshot_data(2000, 3)).await;
        let ids = list_ids(case, &s).await;
        assert_eq!(ids, vec![new.id.clone(), old.id.clone()], "conformance [{case}]: list order");
        assert!(
            read_snapshot(case, &s, &new).await == snapshot_data(2000, 3),
            "conformance [{case}]: newest data"
        );

        // Finalized in the opposite order of their indexes: still newest first.
        let case = "list orders by index, not by finalize order";
        let s = make().await;
        let mut low = must(case, "create", s.create(30, 4, &configuration, 1)).await;
        let mut high = must(case, "create", s.create(40, 4, &configuration, 1)).await;
        if let Err(e) = high.write_all(b"high").await {
            panic!("conformance [{case}]: write failed: {e}");
        }
        if let Err(e) = low.write_all(b"low").await {
            panic!("conformance [{case}]: write failed: {e}");
        }
        let high = must(case, "finalize", high.finalize()).await;
        let low = must(case, "finalize", low.finalize()).await;
        assert_eq!(list_ids(case, &s).await, vec![high.id, low.id], "conformance [{case}]: list order");
    }

    {
        let case = "unfinished and cancelled snapshots are not listed";
        let s = make().await;
        let kept = write_snapshot(case, &s, 10, 1, &configuration, b"kept").await;
        let mut pending = must(case, "create", s.create(20, 1, &configuration, 1)).await;
        if let Err(e) = pending.write_all(b"half").await {
            panic!("conformance [{case}]: write failed: {e}");
        }
        assert_eq!(
            list_ids(case, &s).await,
            vec![kept.id.clone()],
            "conformance [{case}]: an unfinished snapshot"
        );
        let pending_id = pending.id().to_owned();
        must(case, "cancel", pending.cancel()).await;
        assert_eq!(list_ids(case, &s).await, vec![kept.id.clone()], "conformance [{case}]: after cancel");
        assert!(
            s.open(&pending_id).await.is_err(),
            "conformance [{case}]: a cancelled snapshot can be opened"
        );
        assert!(read_snapshot(case, &s, &kept).await == b"kept", "conformance [{case}]: the kept snapshot");
    }
}

/// The damaged-snapshot scenario: a store must report damage to its stored
/// data, never hand out wrong bytes as good ones. `make` produces a fresh,
/// empty store keeping at least two snapshots; `corrupt` damages the stored
/// data of the given snapshot in place (flip one byte of it, as a disk
/// would); only the store's own test knows where its bytes live.
///
/// The store passes if `open` fails with [`StorageError::Corrupt`]
/// (preferred: the FSM never sees damaged bytes) or if its reader fails
/// with an I/O error of kind [`std::io::ErrorKind::InvalidData`] by the end
/// of the data (the runtime reads every snapshot to its end and fails the
/// restore). An intact older snapshot must stay readable.
///
/// ```text
/// conformance::snapshot_corruption_conformance(
///     || async { MySnapshots::new() },
///     |store: &MySnapshots, meta: &SnapshotMeta| store.flip_a_byte_of(&meta.id),
/// ).await;
/// ```
pub async fn snapshot_corruption_conformance<S, F, Fut, C>(mut make: F, mut corrupt: C)
where
    S: SnapshotStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
    C: FnMut(&S, &SnapshotMeta),
{
    let configuration = Configuration::new(vec![Server::voter("a", "10.0.0.1:7000")]);
    for (case, len) in [("damaged snapshot, small", 100usize), ("damaged snapshot, large", 300_000)] {
        let s = make().await;
        let older = write_snapshot(case, &s, 10, 1, &configuration, &snapshot_data(len, 4)).await;
        let data = snapshot_data(len, 5);
        let newest = write_snapshot(case, &s, 20, 1, &configuration, &data).await;
        corrupt(&s, &newest);
        match s.open(&newest.id).await {
            Err(StorageError::Corrupt { .. }) => {}
            Err(other) => panic!(
                "conformance [{case}]: open of a damaged snapshot should be Err(Corrupt), got Err({other})"
            ),
            Ok((_, mut reader)) => {
                // Allowed only if the reader reports the damage by its end.
                let mut back = Vec::new();
                match reader.read_to_end(&mut back).await {
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
                    Err(e) => panic!(
                        "conformance [{case}]: reading a damaged snapshot should fail with InvalidData, got {e}"
                    ),
                    Ok(_) if back == data => panic!(
                        "conformance [{case}]: the corrupt callback did not change the snapshot's stored data"
                    ),
                    Ok(_) => panic!(
                        "conformance [{case}]: a damaged snapshot was read back as good data: the store must \
                         verify it (open -> Err(Corrupt), or the reader fails with InvalidData at the end)"
                    ),
                }
            }
        }
        assert!(
            read_snapshot(case, &s, &older).await == snapshot_data(len, 4),
            "conformance [{case}]: the intact older snapshot"
        );
    }
}
