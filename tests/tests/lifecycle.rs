//! Node lifecycle through the public API: a follower that lost its disk (or
//! the tail of its log) comes back under its old id and catches up, and a
//! cluster bootstrapped on one server only elects a leader.

use std::time::Duration;

use bytes::Bytes;
use raft::observer::{Observation, Observer};
use raft::transport::inmem::InmemNetwork;
use raft::{LogStore, RaftState, ServerId};
use raft_tests::{RecordingFsm, TestCluster};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

/// Real (wall-clock) time a catch-up may take. The tests run under tokio's
/// paused clock, which only advances when every task is idle: a leader that
/// re-probes a stranded follower in a tight loop (the bug these tests catch)
/// keeps it from advancing, so the virtual-time bound alone would never
/// fire and the test would hang instead of failing.
const REAL_LIMIT: Duration = Duration::from_secs(60);

/// Runs `fut`, failing with `what` if it has not finished within
/// [`REAL_LIMIT`] of wall-clock time.
async fn within_real_time<O>(what: &str, fut: impl std::future::Future<Output = O>) -> O {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(REAL_LIMIT);
        let _ = tx.send(());
    });
    tokio::select! {
        out = fut => out,
        _ = rx => panic!("{what}: not done within {REAL_LIMIT:?} of real time"),
    }
}

/// Registers an observer on `id` that receives only follower log resets.
fn watch_log_resets(c: &TestCluster, id: &str) -> mpsc::Receiver<Observation> {
    let (tx, rx) = mpsc::channel(64);
    let filter = |o: &Observation| matches!(o, Observation::FollowerLogReset { .. });
    c.raft(id).register_observer(Observer::new(tx, true, Some(std::sync::Arc::new(filter))));
    rx
}

/// Writes `count` commands on `leader` and waits until every running node
/// applied them; returns the last index.
async fn write_and_settle(c: &TestCluster, leader: &str, prefix: &str, count: usize) -> u64 {
    for i in 0..count {
        c.raft(leader).apply(format!("{prefix}{i}"), T).await.expect("apply");
    }
    let last = c.raft(leader).barrier(T).await.expect("barrier");
    for id in c.running() {
        c.wait_applied(&id, last, T).await;
    }
    last
}

/// Issue 13 item 1: a follower whose disk was replaced restarts empty under
/// its old id. The leader must believe its rejection although it is below
/// the index the follower once acknowledged, say so (observer event, per-peer
/// counter), and re-replicate everything to it.
#[tokio::test(start_paused = true)]
async fn a_follower_restarted_with_an_empty_disk_catches_up_and_the_leader_reports_it() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    let acked = write_and_settle(&c, &leader, "a", 40).await;
    let mut resets = watch_log_resets(&c, &leader);

    c.restart_wiped(&follower).await;
    assert_eq!(c.raft(&follower).last_index(), 0, "the disk is empty");
    for i in 0..10 {
        c.raft(&leader).apply(format!("b{i}"), T).await.expect("apply after the wipe");
    }
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    within_real_time("the wiped follower catches up", c.wait_applied(&follower, last, T)).await;
    let applied: Vec<Bytes> = c.applied(&follower).into_iter().map(|(_, d)| d).collect();
    let expected: Vec<Bytes> = c.applied(&leader).into_iter().map(|(_, d)| d).collect();
    assert_eq!(applied, expected, "the wiped follower re-applied the whole history");
    assert_eq!(c.raft(&follower).state(), RaftState::Follower);

    let event = tokio::time::timeout(T, resets.recv()).await.expect("a log reset is observed").expect("open");
    match event {
        Observation::FollowerLogReset { peer, matched, last_log_index } => {
            assert_eq!(peer, ServerId::from(follower.as_str()));
            assert!(matched >= acked, "the reset names the old match index ({matched} < {acked})");
            assert_eq!(last_log_index, 0, "the follower's log was empty");
        }
        other => panic!("unexpected observation {other:?}"),
    }
    // Per-peer figures are published at tick resolution: the follower's
    // last acknowledgement may not be in the metrics yet when it applied.
    let follower_id = ServerId::from(follower.as_str());
    let mut metrics = c.raft(&leader).metrics();
    let published = tokio::time::timeout(
        T,
        metrics.wait_for(|m| {
            m.peers.get(&follower_id).is_some_and(|p| p.log_resets >= 1 && p.match_index >= last)
        }),
    )
    .await
    .map(|r| r.is_ok());
    let m = metrics.borrow().clone();
    let peer = &m.peers[&follower_id];
    assert_eq!(published, Ok(true), "leader metrics never showed the reset and the match: {peer:?}");
    assert!(peer.log_resets >= 1, "the per-peer counter counts the reset: {peer:?}");
    assert!(peer.match_index >= last, "and the follower is matched again: {peer:?}");
    c.shutdown().await;
}

/// Issue 13 item 1, torn tail: the follower's last records were cut off
/// (as the file store does with a damaged final record). Its hard state is
/// intact; it must still catch up.
#[tokio::test(start_paused = true)]
async fn a_follower_that_lost_the_tail_of_its_log_catches_up() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    write_and_settle(&c, &leader, "a", 30).await;
    let mut resets = watch_log_resets(&c, &leader);

    c.stop(&follower).await;
    let store = c.nodes[&follower].store.clone();
    let tail = store.last_index().await.expect("last index");
    store.delete_range(tail - 2, tail).await.expect("cut the tail");
    c.start(&follower).await;
    assert_eq!(c.raft(&follower).last_index(), tail - 3);

    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    within_real_time("the follower catches up", c.wait_applied(&follower, last, T)).await;
    let applied: Vec<Bytes> = c.applied(&follower).into_iter().map(|(_, d)| d).collect();
    let expected: Vec<Bytes> = c.applied(&leader).into_iter().map(|(_, d)| d).collect();
    assert_eq!(applied, expected);
    match tokio::time::timeout(T, resets.recv()).await.expect("a log reset is observed") {
        Some(Observation::FollowerLogReset { peer, matched, last_log_index }) => {
            assert_eq!(peer, ServerId::from(follower.as_str()));
            assert!(matched >= tail, "old match {matched} covered the lost tail (last {tail})");
            assert_eq!(last_log_index, tail - 3);
        }
        other => panic!("unexpected observation {other:?}"),
    }
    c.shutdown().await;
}

/// Issue 13 item 8: `bootstrap_cluster([n1, n2, n3])` called on n1 only, the
/// others started empty (HashiCorp supports this). A leader is elected and a
/// write commits and is applied on all three.
#[tokio::test(start_paused = true)]
async fn bootstrapping_one_server_with_all_voters_elects_a_leader() {
    let mut c: TestCluster<RecordingFsm> = TestCluster::bootstrap_on_one(3, InmemNetwork::new()).await;
    assert_eq!(c.raft("n2").last_index(), 0, "n2 starts empty");
    let leader = c.wait_for_leader().await;
    let applied = c.raft(&leader).apply("hello", T).await.expect("a write commits");
    for id in ["n1", "n2", "n3"] {
        c.wait_applied(id, applied.index, T).await;
        let data: Vec<Bytes> = c.applied(id).into_iter().map(|(_, d)| d).collect();
        assert_eq!(data, vec![Bytes::from("hello")], "{id}");
        let (conf, _) = c.raft(id).get_configuration().await.expect("configuration");
        assert_eq!(conf.voters().count(), 3, "{id} learned the configuration");
    }
    c.shutdown().await;
}
