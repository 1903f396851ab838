//! Memory that does not grow with the log (issue 17), through the public
//! API: the leader keeps only a window of entry payloads and reads older
//! entries back from the log store for a follower far behind; the
//! uncommitted-bytes limit makes writes wait (in order) instead of growing
//! memory; the bytes the core holds stay within the window; and the
//! commit index recorded in the stable store lets a restarted node apply
//! its known-committed entries without a leader.

use std::time::Duration;

use raft::testing::faulty::{Fault, StoreOp};
use raft::transport::inmem::InmemNetwork;
use raft::{Config, Error, Metrics, RaftState};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(30);
/// The log window of these tests: a few entries' worth.
const WINDOW: usize = 4 * 1024;
/// Payload of each write: the window holds about four.
const PAYLOAD: usize = 1000;

/// A small log window, snapshots only when asked.
fn small_window(config: &mut Config) {
    config.max_log_window_bytes = WINDOW;
    config.snapshot_interval = Duration::from_secs(3600);
    config.snapshot_threshold = 1_000_000;
    config.snapshot_log_limit = 0;
}

fn payload(tag: &str, i: usize) -> Vec<u8> {
    let mut data = format!("{tag}-{i}-").into_bytes();
    data.resize(PAYLOAD, b'x');
    data
}

/// The tag of a [`payload`] ("held-3-"), for readable comparisons.
fn tag(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == b'x').unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// Writes `n` commands on the leader, one after the other; returns the
/// index of a barrier after them.
async fn write(c: &TestCluster<RecordingFsm>, n: usize, tag: &str) -> u64 {
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader);
    for i in 0..n {
        raft.apply(payload(tag, i), T).await.expect("apply");
    }
    raft.barrier(T).await.expect("barrier")
}

/// Waits (bounded) until node `id`'s metrics satisfy `pred`.
async fn wait_metrics(c: &TestCluster<RecordingFsm>, id: &str, what: &str, pred: impl Fn(&Metrics) -> bool) {
    let mut rx = c.raft(id).metrics();
    let waited = tokio::time::timeout(T, rx.wait_for(|m| pred(m))).await.map(|r| r.is_ok());
    if waited != Ok(true) {
        panic!("{id}: {what} within {T:?}; metrics: {:?}", *rx.borrow());
    }
}

fn metrics(c: &TestCluster<RecordingFsm>, id: &str) -> Metrics {
    c.raft(id).metrics().borrow().clone()
}

fn follower_of(c: &TestCluster<RecordingFsm>, leader: &str) -> String {
    c.running().into_iter().find(|id| id != leader).expect("a follower")
}

/// A follower that missed many times the window's worth of entries (§5.3
/// log replication) gets them read back from the leader's log store, and
/// ends with the same log applied as the leader.
#[tokio::test(start_paused = true)]
async fn s5_3_a_follower_far_behind_catches_up_from_the_log_store() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), small_window).await;
    let leader = c.wait_for_leader().await;
    let lagging = follower_of(&c, &leader);
    write(&c, 3, "before").await;
    c.stop(&lagging).await;
    // 60 KB written: fifteen windows.
    let last = write(&c, 60, "missed").await;
    c.start(&lagging).await;
    c.wait_applied(&lagging, last, T).await;
    assert_eq!(c.applied(&lagging), c.applied(&leader), "the follower applied the leader's log");
    // Counters are published at tick resolution: wait for the whole
    // catch-up's figures, not just the first fetch's.
    wait_metrics(&c, &leader, "reads from the log store counted", |m| {
        m.log_fetches > 0 && m.log_fetched_bytes >= (50 * PAYLOAD) as u64
    })
    .await;
    let m = metrics(&c, &leader);
    assert_eq!(m.log_fetch_failures, 0);
    assert!(m.log_fetched_bytes >= (50 * PAYLOAD) as u64, "most entries came from the store: {m:?}");
    // The cluster keeps working and stays consistent.
    let last = write(&c, 5, "after").await;
    for id in c.running() {
        c.wait_applied(&id, last, T).await;
        assert_eq!(c.applied(&id), c.applied(&leader), "{id} consistent");
    }
    c.shutdown().await;
}

/// A read of the log store that fails for a lagging follower is logged
/// and counted, never silent, and retried: the follower catches up once
/// the store answers again.
#[tokio::test(start_paused = true)]
async fn a_failed_read_for_a_follower_is_counted_and_retried() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), small_window).await;
    let leader = c.wait_for_leader().await;
    let lagging = follower_of(&c, &leader);
    c.stop(&lagging).await;
    let last = write(&c, 30, "missed").await;
    c.nodes[&leader].faults.inject(StoreOp::GetLogs, Fault::NoSpace);
    c.start(&lagging).await;
    wait_metrics(&c, &leader, "a failed read counted", |m| m.log_fetch_failures > 0).await;
    assert!(c.raft(&lagging).applied_index() < last, "the follower could not catch up yet");
    c.nodes[&leader].faults.clear_all();
    c.wait_applied(&lagging, last, T).await;
    assert_eq!(c.applied(&lagging), c.applied(&leader));
    // The retried read's success is published at the next tick, which may
    // come after the follower applied what it brought.
    wait_metrics(&c, &leader, "the retried read counted", |m| m.log_fetches > 0).await;
    c.shutdown().await;
}

/// A read for a follower that the store never answers counts as failed
/// after a bound, and is retried: the follower is not left waiting for the
/// rest of the term with nothing in the logs or metrics.
#[tokio::test(start_paused = true)]
async fn a_read_for_a_follower_that_never_returns_fails_after_a_bound_and_is_retried() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), small_window).await;
    let leader = c.wait_for_leader().await;
    let lagging = follower_of(&c, &leader);
    c.stop(&lagging).await;
    let last = write(&c, 30, "missed").await;
    c.nodes[&leader].faults.inject(StoreOp::GetLogs, Fault::Stall);
    c.start(&lagging).await;
    wait_metrics(&c, &leader, "a hung read counted as failed", |m| m.log_fetch_failures > 0).await;
    assert!(c.raft(&lagging).applied_index() < last, "the follower could not catch up yet");
    c.nodes[&leader].faults.clear_all();
    c.wait_applied(&lagging, last, T).await;
    assert_eq!(c.applied(&lagging), c.applied(&leader));
    c.shutdown().await;
}

/// Writing many times the window keeps the payload bytes each node's core
/// holds within the window (plus what is not yet persisted, which a
/// quiesced cluster has none of).
#[tokio::test(start_paused = true)]
async fn the_bytes_held_in_memory_stay_within_the_window() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), small_window).await;
    let leader = c.wait_for_leader().await;
    let mut peak = 0;
    for round in 0..10 {
        // 20 KB a round: five windows.
        let last = write(&c, 20, &format!("r{round}")).await;
        for id in c.running() {
            c.wait_applied(&id, last, T).await;
            wait_metrics(&c, &id, "metrics published", |m| m.commit_index >= last).await;
            let held = metrics(&c, &id).log_window_bytes;
            assert!(held <= WINDOW as u64, "round {round}: {id} holds {held} bytes (window {WINDOW})");
            peak = peak.max(held);
        }
    }
    assert!(peak > 0, "the metric reports the window's bytes");
    // Under load too: 64 writes in flight at a time, with every published
    // figure checked. Unpersisted entries are uncommitted, so the window
    // plus the uncommitted bytes bounds what the leader holds.
    let mut rx = c.raft(&leader).metrics();
    let worst = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let watcher = tokio::spawn({
        let worst = worst.clone();
        async move {
            while rx.changed().await.is_ok() {
                let m = rx.borrow_and_update().clone();
                let beyond = m.log_window_bytes as i64 - m.uncommitted_bytes as i64;
                worst.fetch_max(beyond, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let raft = c.raft(&leader).clone();
    let mut writes: tokio::task::JoinSet<raft::Result<raft::Applied<u64>>> = tokio::task::JoinSet::new();
    for i in 0..400 {
        if writes.len() >= 64 {
            writes.join_next().await.expect("a write").expect("task").expect("apply");
        }
        let raft = raft.clone();
        writes.spawn(async move { raft.apply(payload("load", i), T).await });
    }
    while let Some(done) = writes.join_next().await {
        done.expect("task").expect("apply");
    }
    let last = raft.barrier(T).await.expect("barrier");
    // 600 KB written in all, yet every node applied everything.
    for id in c.running() {
        c.wait_applied(&id, last, T).await;
        assert_eq!(c.applied(&id), c.applied(&leader));
    }
    watcher.abort();
    c.shutdown().await;
    let worst = worst.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        worst <= WINDOW as i64,
        "the leader held {worst} bytes beyond its uncommitted ones (window {WINDOW})"
    );
}

/// Limit on uncommitted bytes of these tests.
const UNCOMMITTED: usize = 4 * 1024;

fn uncommitted_limit(config: &mut Config) {
    small_window(config);
    config.max_uncommitted_bytes = UNCOMMITTED;
    // The leader keeps leading while its followers are down.
    config.check_quorum = false;
}

/// With its followers down the leader cannot commit: writes beyond
/// `max_uncommitted_bytes` wait instead of growing memory or failing, in
/// the order they were submitted; one that outlives its timeout fails with
/// `EnqueueTimeout`; the rest complete once the followers are back.
#[tokio::test(start_paused = true)]
async fn writes_beyond_the_uncommitted_limit_wait_for_commits() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), uncommitted_limit).await;
    let leader = c.wait_for_leader().await;
    write(&c, 2, "warm").await;
    let followers: Vec<String> = c.running().into_iter().filter(|id| *id != leader).collect();
    for f in &followers {
        c.stop(f).await;
    }
    let raft = c.raft(&leader).clone();
    let mut calls = Vec::new();
    for i in 0..12 {
        let raft = raft.clone();
        calls.push(tokio::spawn(async move { raft.apply(payload("held", i), T).await }));
        tokio::task::yield_now().await;
    }
    wait_metrics(&c, &leader, "writes waiting for room", |m| m.writes_waiting_for_room > 0).await;
    let m = metrics(&c, &leader);
    assert_eq!(m.state, RaftState::Leader);
    let uncommitted_entries = m.last_log_index - m.commit_index;
    assert!(
        uncommitted_entries as usize * PAYLOAD <= UNCOMMITTED + PAYLOAD,
        "{uncommitted_entries} entries of {PAYLOAD} bytes uncommitted (limit {UNCOMMITTED})"
    );
    assert!(m.bytes_waiting_for_room >= PAYLOAD as u64);
    assert!(calls.iter().all(|h| !h.is_finished()), "no write failed or finished");

    // A write that cannot get room before its deadline fails with
    // EnqueueTimeout: it never entered the log.
    let last_before = c.raft(&leader).last_index();
    let late = tokio::time::timeout(T, raft.apply(payload("late", 0), Duration::from_millis(300)))
        .await
        .expect("answered at its deadline");
    assert!(matches!(late, Err(Error::EnqueueTimeout)), "got {late:?}");
    assert_eq!(c.raft(&leader).last_index(), last_before, "the timed-out write is not in the log");
    wait_metrics(&c, &leader, "the timeout counted", |m| m.writes_timed_out_waiting_for_room >= 1).await;

    // One follower back makes a quorum with the leader (both back at once
    // could elect one of them, whose shorter log would replace the waiting
    // writes' entries: correct, but not what this test looks at).
    c.start(&followers[0]).await;
    for (i, call) in calls.into_iter().enumerate() {
        let applied = tokio::time::timeout(T, call).await.expect("in time").expect("task");
        assert!(applied.is_ok(), "write {i}: {applied:?}");
    }
    // Submission order is log order.
    let held: Vec<String> = c
        .applied(&leader)
        .into_iter()
        .map(|(_, d)| tag(&d))
        .filter(|d| d.starts_with("held-") || d.starts_with("late-"))
        .collect();
    let expected: Vec<String> = (0..12).map(|i| tag(&payload("held", i))).collect();
    assert_eq!(held, expected, "held writes entered the log in submission order, the late one never");
    wait_metrics(&c, &leader, "nothing left waiting", |m| m.writes_waiting_for_room == 0).await;
    c.shutdown().await;
}

/// A single-node cluster restarted on the same stores has its state
/// machine back right after start (HashiCorp #549/#613): it applies the
/// entries its recorded commit index covers before any election or write.
#[tokio::test(start_paused = true)]
async fn a_restarted_single_node_applies_its_committed_log_at_start() {
    let mut c = TestCluster::with_config(1, InmemNetwork::new(), small_window).await;
    let last = write(&c, 20, "w").await;
    let before = c.applied("n1");
    c.stop("n1").await;
    c.start("n1").await;
    let raft = c.raft("n1");
    // Well before an election timeout (50 ms) could make it leader again.
    tokio::time::timeout(Duration::from_millis(10), raft.wait_applied(last))
        .await
        .expect("applied at start, without an election")
        .expect("wait_applied");
    assert_ne!(raft.state(), RaftState::Leader, "no election was needed");
    assert_eq!(c.applied("n1"), before, "the state machine is back as it was");
    c.shutdown().await;
}

/// A node of a 3-node cluster restarted while the other two are down
/// applies the entries it knew were committed, without a leader.
#[tokio::test(start_paused = true)]
async fn a_restarted_node_alone_applies_what_it_knew_was_committed() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), small_window).await;
    let leader = c.wait_for_leader().await;
    let node = follower_of(&c, &leader);
    let last = write(&c, 20, "w").await;
    c.wait_applied(&node, last, T).await;
    wait_metrics(&c, &node, "the follower knows the commit index", |m| m.commit_index >= last).await;
    let before = c.applied(&node);
    for id in c.running() {
        c.stop(&id).await;
    }
    c.start(&node).await;
    c.wait_applied(&node, last, Duration::from_secs(1)).await;
    assert_eq!(c.applied(&node), before);
    assert!(c.leaders().is_empty(), "no leader was involved");
    c.shutdown().await;
}

/// A committed entry the state machine needs but the log store cannot
/// read stops the node, and says so: nothing is skipped silently.
#[tokio::test(start_paused = true)]
async fn a_failed_read_of_committed_entries_stops_the_node_and_says_why() {
    let mut c = TestCluster::with_config(1, InmemNetwork::new(), small_window).await;
    write(&c, 20, "w").await;
    c.stop("n1").await;
    // Startup reads only the window; the entries before it are read by the
    // state machine's task once the node runs, and that read fails.
    c.start("n1").await;
    c.nodes["n1"].faults.inject(StoreOp::GetLogs, Fault::NoSpace);
    wait_metrics(&c, "n1", "the node reports the failure", |m| m.fatal_error.is_some()).await;
    let m = metrics(&c, "n1");
    assert_eq!(m.state, RaftState::Shutdown);
    let why = m.fatal_error.unwrap_or_default();
    assert!(why.contains("committed entries"), "{why}");
    assert!(c.applied("n1").is_empty(), "nothing applied past the unreadable entries");
    let err = c.raft("n1").apply(payload("after", 0), T).await;
    assert!(err.is_err(), "a stopped node takes no writes: {err:?}");
}

/// The budgets are reloadable: raising `max_uncommitted_bytes` on a
/// running leader lets the writes waiting for room into the log at once.
#[tokio::test(start_paused = true)]
async fn raising_the_uncommitted_limit_by_reload_lets_waiting_writes_in() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), uncommitted_limit).await;
    let leader = c.wait_for_leader().await;
    write(&c, 2, "warm").await;
    let followers: Vec<String> = c.running().into_iter().filter(|id| *id != leader).collect();
    for f in &followers {
        c.stop(f).await;
    }
    let raft = c.raft(&leader).clone();
    let mut calls = Vec::new();
    for i in 0..8 {
        let raft = raft.clone();
        calls.push(tokio::spawn(async move { raft.apply(payload("held", i), T).await }));
        tokio::task::yield_now().await;
    }
    wait_metrics(&c, &leader, "writes waiting for room", |m| m.writes_waiting_for_room > 0).await;
    let before = raft.last_index();
    let rc = raft::ReloadableConfig { max_uncommitted_bytes: 64 * 1024, ..raft.reloadable_config() };
    raft.reload_config(rc).expect("reload");
    // Queued right behind the reload, before the node handles either (the
    // write is polled once, which queues it, without yielding): it still
    // goes after the waiting ones.
    let after = raft.apply(payload("after", 0), T);
    tokio::pin!(after);
    tokio::select! {
        biased;
        early = &mut after => panic!("answered before the node ran: {early:?}"),
        () = std::future::ready(()) => {}
    }
    assert_eq!(raft.reloadable_config().max_uncommitted_bytes, 64 * 1024);
    wait_metrics(&c, &leader, "no write left waiting", |m| m.writes_waiting_for_room == 0).await;
    assert!(raft.last_index() > before, "the waiting writes entered the log");
    c.start(&followers[0]).await;
    for call in calls {
        let applied = tokio::time::timeout(T, call).await.expect("in time").expect("task");
        assert!(applied.is_ok(), "{applied:?}");
    }
    let applied = tokio::time::timeout(T, after).await.expect("in time");
    assert!(applied.is_ok(), "{applied:?}");
    let order: Vec<String> = c
        .applied(&leader)
        .into_iter()
        .map(|(_, d)| tag(&d))
        .filter(|d| d.starts_with("held-") || d.starts_with("after-"))
        .collect();
    let expected: Vec<String> =
        (0..8).map(|i| tag(&payload("held", i))).chain([tag(&payload("after", 0))]).collect();
    assert_eq!(order, expected, "a later write never overtakes the waiting ones");
    c.shutdown().await;
}

/// Shrinking `max_log_window_bytes` on a running node by reload frees the
/// payloads beyond the new budget (the metrics show it).
#[tokio::test(start_paused = true)]
async fn shrinking_the_window_by_reload_frees_memory() {
    let mut c = TestCluster::with_config(1, InmemNetwork::new(), |config| {
        config.snapshot_interval = Duration::from_secs(3600);
        config.snapshot_threshold = 1_000_000;
        config.snapshot_log_limit = 0;
    })
    .await;
    let last = write(&c, 20, "w").await;
    wait_metrics(&c, "n1", "the default window holds the writes", |m| {
        m.applied_index >= last && m.log_window_bytes >= (20 * PAYLOAD) as u64
    })
    .await;
    let raft = c.raft("n1");
    let rc = raft::ReloadableConfig { max_log_window_bytes: WINDOW, ..raft.reloadable_config() };
    raft.reload_config(rc).expect("reload");
    wait_metrics(&c, "n1", "the window shrunk", |m| m.log_window_bytes <= WINDOW as u64).await;
    // Writes go on as before.
    let last = write(&c, 3, "after").await;
    c.wait_applied("n1", last, T).await;
    c.shutdown().await;
}

/// The ranges read by `get_logs`, with the payload bytes of each answer.
type ReadLog = std::sync::Arc<std::sync::Mutex<Vec<(std::ops::Range<u64>, usize)>>>;

/// A log store that records the payload bytes of every `get_logs` answer.
#[derive(Clone)]
struct ReadSizes {
    inner: raft_store_mem::InmemStore,
    reads: ReadLog,
}

#[raft::async_trait]
impl raft::LogStore for ReadSizes {
    async fn first_index(&self) -> Result<u64, raft::StorageError> {
        self.inner.first_index().await
    }
    async fn last_index(&self) -> Result<u64, raft::StorageError> {
        self.inner.last_index().await
    }
    async fn get_log(&self, index: u64) -> Result<Option<raft::Log>, raft::StorageError> {
        self.inner.get_log(index).await
    }
    async fn get_logs(&self, range: std::ops::Range<u64>) -> Result<Vec<raft::Log>, raft::StorageError> {
        let logs = self.inner.get_logs(range.clone()).await?;
        let bytes = logs.iter().map(|l| l.data.len()).sum();
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).push((range, bytes));
        Ok(logs)
    }
    async fn entry_meta(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<raft::LogEntryMeta>, raft::StorageError> {
        self.inner.entry_meta(range).await
    }
    async fn store_logs(&self, logs: &[raft::Log]) -> Result<(), raft::StorageError> {
        self.inner.store_logs(logs).await
    }
    async fn delete_range(&self, min: u64, max: u64) -> Result<(), raft::StorageError> {
        self.inner.delete_range(min, max).await
    }
}

/// Committed entries applied from the store are read in pieces bounded by
/// their own sizes: many tiny entries followed by large ones never make
/// one read of many large entries (a read sized from the tiny ones would
/// take 4,096 entries at once, here 40 MiB).
#[tokio::test(start_paused = true)]
async fn committed_entries_applied_from_the_store_are_read_in_pieces_bounded_by_their_sizes() {
    use raft::{Configuration, Raft, Server};
    const LARGE: usize = 1 << 20;
    let store = ReadSizes { inner: raft_store_mem::InmemStore::new(), reads: Default::default() };
    let snaps = raft_store_mem::InmemSnapshotStore::new();
    let net = InmemNetwork::new();
    let mut config = raft_tests::test_config("n1");
    small_window(&mut config);
    let start = |config: Config| {
        Raft::new(
            config,
            RecordingFsm::default(),
            store.clone(),
            store.inner.clone(),
            snaps.clone(),
            net.transport("n1"),
        )
    };
    let raft = start(config.clone()).await.expect("start");
    raft.bootstrap_cluster(Configuration::new(vec![Server::voter("n1", "n1")])).await.expect("bootstrap");
    let mut metrics = raft.metrics();
    tokio::time::timeout(T, metrics.wait_for(|m| m.state == RaftState::Leader))
        .await
        .expect("leads")
        .expect("metrics watch closed");
    drop(metrics);
    let mut last = 0;
    for i in 0..3000 {
        last = raft.apply(vec![i as u8], T).await.expect("tiny write").index;
    }
    for _ in 0..40 {
        last = raft.apply(vec![7u8; LARGE], T).await.expect("large write").index;
    }
    raft.shutdown().await.expect("shutdown");
    store.reads.lock().unwrap_or_else(|e| e.into_inner()).clear();
    // Restarted, the node applies what it knew was committed, from the store.
    let raft = start(config).await.expect("restart");
    tokio::time::timeout(T, raft.wait_applied(last)).await.expect("applied at start").expect("wait_applied");
    let reads = store.reads.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(reads.iter().any(|(r, _)| r.start == 1), "the entries were applied from the store: {reads:?}");
    let biggest = reads.iter().map(|(_, bytes)| *bytes).max().unwrap_or(0);
    assert!(biggest <= (4 << 20) + LARGE, "a read of {biggest} bytes: {reads:?}");
    raft.shutdown().await.expect("shutdown");
}
