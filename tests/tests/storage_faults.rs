//! Storage faults injected with [`raft::testing::faulty`] (issue 14, item
//! 7): a node whose log or stable store fails (EIO after a write, ENOSPC) or
//! stalls stops or steps down cleanly, the others carry on, and nothing a
//! client was told is committed is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft::testing::faulty::{Fault, StoreOp};
use raft::transport::inmem::InmemNetwork;
use raft::{Config, Error, RaftState, StorageError};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(10);

fn no_auto_snapshots(config: &mut Config) {
    config.snapshot_interval = Duration::from_secs(3600);
    config.snapshot_threshold = 1_000_000;
    config.snapshot_log_limit = 0;
    config.trailing_logs = 10;
}

/// Polls `cond` in virtual time until it holds, at most `T`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes acknowledged to clients.
type Acked = Arc<Mutex<Vec<Bytes>>>;

/// Clients writing to `id` until a write fails (or `per_client` succeeded:
/// `usize::MAX` for no limit);
/// every acknowledged write is recorded.
fn spawn_writers(
    c: &TestCluster<RecordingFsm>,
    id: &str,
    clients: usize,
    per_client: usize,
    acked: &Acked,
) -> Vec<tokio::task::JoinHandle<Option<Error>>> {
    (0..clients)
        .map(|client| {
            let raft = c.raft(id).clone();
            let acked = acked.clone();
            let tag = format!("{id}-{client}");
            tokio::spawn(async move {
                for i in 0..per_client {
                    let cmd = Bytes::from(format!("{tag}-{i}"));
                    match raft.apply(cmd.clone(), Duration::from_secs(2)).await {
                        Ok(_) => acked.lock().expect("lock").push(cmd),
                        Err(e) => return Some(e),
                    }
                    // Paced in virtual time, so the clock (and the test's
                    // bounded waits) can move while they run.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                None
            })
        })
        .collect()
}

/// Every acknowledged write is applied on each of `ids` once they have
/// applied everything the leader committed.
async fn assert_nothing_acknowledged_lost(c: &TestCluster<RecordingFsm>, ids: &[String], acked: &Acked) {
    let leader = c.wait_for_leader_among(ids, T).await;
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty(), "some writes were acknowledged");
    for id in ids {
        c.wait_applied(id, last, T).await;
        let applied: std::collections::HashSet<Bytes> = c.applied(id).into_iter().map(|(_, d)| d).collect();
        let lost: Vec<&Bytes> = acked.iter().filter(|cmd| !applied.contains(*cmd)).collect();
        assert!(lost.is_empty(), "{id} lost acknowledged writes: {lost:?}");
    }
    let reference = c.applied(&leader);
    for id in ids {
        assert_eq!(c.applied(id), reference, "{id} applied the same log as the leader");
    }
}

/// A follower whose log store fails (an fsync error after the write; a full
/// disk; a failing compaction) stops with the error in its metrics, the
/// leader keeps committing, and once the fault is gone and the node
/// restarted it catches up without anything acknowledged missing.
#[tokio::test(start_paused = true)]
async fn a_follower_whose_log_store_fails_stops_cleanly_and_the_cluster_keeps_committing() {
    for (op, fault, expected) in [
        (StoreOp::StoreLogs, Fault::NoSpace, "os error 28"),
        (StoreOp::StoreLogs, Fault::FsyncFailure, "os error 5"),
        (StoreOp::DeleteRange, Fault::FsyncFailure, "os error 5"),
    ] {
        let case = format!("{op} {fault:?}");
        let mut c = TestCluster::with_config(3, InmemNetwork::new(), no_auto_snapshots).await;
        let leader = c.wait_for_leader().await;
        let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
        let acked = Acked::default();
        for w in spawn_writers(&c, &leader, 4, 25, &acked) {
            assert!(w.await.expect("writer").is_none(), "{case}: writes before the fault succeed");
        }
        c.nodes[&follower].faults.inject(op, fault);
        if op == StoreOp::DeleteRange {
            // A snapshot compacts the log: the deletion fails, and so does
            // the request, rather than reporting a compaction.
            let last = c.raft(&leader).barrier(T).await.expect("barrier");
            c.wait_applied(&follower, last, T).await;
            let refused = c.raft(&follower).snapshot().await;
            assert!(matches!(refused, Err(Error::Storage(StorageError::Failed(_)))), "{case}: {refused:?}");
        }
        // The writes go on; the follower stops at its first failed write.
        for w in spawn_writers(&c, &leader, 4, 25, &acked) {
            assert!(w.await.expect("writer").is_none(), "{case}: the leader keeps committing");
        }
        let raft = c.raft(&follower).clone();
        until("the follower stops", || raft.state() == RaftState::Shutdown).await;
        assert!(c.nodes[&follower].faults.injected() > 0, "{case}: the fault was hit");
        let m = raft.metrics().borrow().clone();
        assert_eq!(m.state, RaftState::Shutdown);
        let why = m.fatal_error.expect("the metrics say why the node stopped");
        assert!(why.contains(expected) && why.contains(&op.to_string()), "{case}: {why}");
        assert_eq!(raft.stats()["fatal_error"], why);
        let refused = raft.apply("late", T).await;
        assert!(refused.is_err(), "{case}: a stopped node takes no writes");
        let others: Vec<String> = c.running().into_iter().filter(|id| *id != follower).collect();
        assert_nothing_acknowledged_lost(&c, &others, &acked).await;

        // Fault gone, node restarted: it catches up and agrees.
        c.stop(&follower).await;
        c.nodes[&follower].faults.clear_all();
        c.start(&follower).await;
        let all = c.running();
        assert_nothing_acknowledged_lost(&c, &all, &acked).await;
        c.shutdown().await;
    }
}

/// A leader whose log store fails stops; a new leader takes over and every
/// write the old one acknowledged survives, on the others and on the old
/// leader once it is back.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_log_store_fails_stops_and_a_new_leader_takes_over() {
    for fault in [Fault::FsyncFailure, Fault::NoSpace] {
        let mut c = TestCluster::with_config(3, InmemNetwork::new(), no_auto_snapshots).await;
        let old = c.wait_for_leader().await;
        let acked = Acked::default();
        let writers = spawn_writers(&c, &old, 8, usize::MAX, &acked);
        until("writes are acknowledged", || acked.lock().expect("lock").len() >= 50).await;
        c.nodes[&old].faults.inject(StoreOp::StoreLogs, fault);
        for w in writers {
            let err = w.await.expect("writer");
            assert!(err.is_some(), "{fault:?}: writes to the failed leader stop succeeding");
        }
        let raft = c.raft(&old).clone();
        until("the old leader stops", || raft.state() == RaftState::Shutdown).await;
        let why = raft.metrics().borrow().fatal_error.clone().expect("why it stopped");
        assert!(why.contains("store_logs"), "{fault:?}: {why}");
        let others: Vec<String> = c.running().into_iter().filter(|id| *id != old).collect();
        let new = c.wait_for_leader_among(&others, T).await;
        assert_ne!(new, old);
        c.raft(&new).apply("after", T).await.expect("the new leader commits");
        assert_nothing_acknowledged_lost(&c, &others, &acked).await;

        c.stop(&old).await;
        c.nodes[&old].faults.clear_all();
        c.start(&old).await;
        let all = c.running();
        assert_nothing_acknowledged_lost(&c, &all, &acked).await;
        c.shutdown().await;
    }
}

/// A leader whose stable store fails cannot record a new term: a follower
/// whose `set` fails stops when it would vote or campaign, and the cluster
/// carries on.
#[tokio::test(start_paused = true)]
async fn a_node_whose_stable_store_fails_stops_when_it_must_record_a_term() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), no_auto_snapshots).await;
    let old = c.wait_for_leader().await;
    let acked = Acked::default();
    for w in spawn_writers(&c, &old, 2, 20, &acked) {
        assert!(w.await.expect("writer").is_none());
    }
    let target = c.running().into_iter().find(|id| *id != old).expect("a follower");
    c.nodes[&target].faults.inject(StoreOp::Set, Fault::NoSpace);
    // Handing leadership to it makes it campaign: a new term to record.
    let _ = c.raft(&old).leadership_transfer_to_server(target.as_str().into(), target.as_str().into()).await;
    let raft = c.raft(&target).clone();
    until("the node stops", || raft.state() == RaftState::Shutdown).await;
    let why = raft.metrics().borrow().fatal_error.clone().expect("why it stopped");
    assert!(why.contains("set") && why.contains("os error 28"), "{why}");
    let others: Vec<String> = c.running().into_iter().filter(|id| *id != target).collect();
    let leader = c.wait_for_leader_among(&others, T).await;
    c.raft(&leader).apply("after", T).await.expect("the cluster carries on");
    assert_nothing_acknowledged_lost(&c, &others, &acked).await;
    c.shutdown().await;
}

/// A leader whose log store stops completing writes steps down instead of
/// hanging the cluster, another node takes over, and once the store is
/// released the old leader catches up as a follower.
#[tokio::test(start_paused = true)]
async fn a_leader_with_a_stalled_log_store_steps_down_and_the_cluster_moves_on() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), no_auto_snapshots).await;
    let old = c.wait_for_leader().await;
    let acked = Acked::default();
    let writers = spawn_writers(&c, &old, 8, usize::MAX, &acked);
    until("writes are acknowledged", || acked.lock().expect("lock").len() >= 50).await;
    let faults = c.nodes[&old].faults.clone();
    faults.inject(StoreOp::StoreLogs, Fault::Stall);
    until("a write is stalled", || faults.stalled() > 0).await;
    for w in writers {
        assert!(w.await.expect("writer").is_some(), "writes on the stalled leader cannot all succeed");
    }
    let others: Vec<String> = c.running().into_iter().filter(|id| *id != old).collect();
    let new = c.wait_for_leader_among(&others, T).await;
    assert_ne!(c.raft(&old).state(), RaftState::Leader, "the stalled leader stepped down");
    c.raft(&new).apply("after", T).await.expect("the cluster carries on");
    assert_nothing_acknowledged_lost(&c, &others, &acked).await;
    faults.release();
    let all = c.running();
    assert_nothing_acknowledged_lost(&c, &all, &acked).await;
    c.shutdown().await;
}
