//! Log compaction follows what the log store actually holds (issue 14,
//! items 5 and 6): a node restarted between snapshots still compacts the
//! entries below the snapshot it restored, and the metrics tell the newest
//! snapshot apart from the compaction point.

use std::time::Duration;

use raft::testing::faulty::{Fault, StoreOp};
use raft::transport::inmem::InmemNetwork;
use raft::{Config, LogStore};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(30);
const TRAILING: u64 = 150;

/// Snapshots only when asked; `TRAILING` entries kept behind each.
fn manual_snapshots(config: &mut Config) {
    config.snapshot_interval = Duration::from_secs(3600);
    config.snapshot_threshold = 1_000_000;
    config.snapshot_log_limit = 0;
    config.trailing_logs = TRAILING;
}

async fn write(c: &TestCluster<RecordingFsm>, n: usize, tag: &str) -> u64 {
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader);
    for i in 0..n {
        raft.apply(format!("{tag}-{i}"), T).await.expect("apply");
    }
    raft.barrier(T).await.expect("barrier")
}

async fn store_first(c: &TestCluster<RecordingFsm>, id: &str) -> u64 {
    c.nodes[id].store.first_index().await.expect("first_index")
}

/// A node restarted more often than `trailing_logs` writes used to keep its
/// whole log forever: after each restart the restored snapshot was taken as
/// the compaction point, and the next snapshot never got `trailing_logs`
/// past it. Now every snapshot deletes from the store's real first index.
#[tokio::test(start_paused = true)]
async fn a_node_restarted_between_snapshots_still_compacts_its_log() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), manual_snapshots).await;
    let leader = c.wait_for_leader().await;
    let node = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    let mut last_snapshot = 0;
    for cycle in 0..6 {
        // Fewer writes per cycle than `trailing_logs`.
        let last = write(&c, 100, &format!("c{cycle}")).await;
        c.wait_applied(&node, last, T).await;
        let snap = c.raft(&node).snapshot().await.expect("snapshot");
        last_snapshot = snap.meta().index;
        assert!(last_snapshot >= last);
        // `snapshot` returns once the log is compacted behind it.
        let expected_first = last_snapshot.saturating_sub(TRAILING) + 1;
        assert_eq!(store_first(&c, &node).await, expected_first, "cycle {cycle}: store compacted");
        assert_eq!(c.raft(&node).first_index(), expected_first, "cycle {cycle}: Raft::first_index");
        c.stop(&node).await;
        c.start(&node).await;
        assert_eq!(c.raft(&node).first_index(), expected_first, "cycle {cycle}: read back at start");
    }
    let first = store_first(&c, &node).await;
    assert!(first > 400, "the log advanced past the restored snapshots: starts at {first}");
    assert_eq!(first, last_snapshot - TRAILING + 1);
    assert!(c.nodes[&node].store.get_log(1).await.expect("get").is_none(), "old entries are gone");
    let held = c.nodes[&node].store.last_index().await.expect("last") + 1 - first;
    assert!(held <= TRAILING + 10, "the store holds {held} entries, not the whole log");
    // The restarted node is still whole: it applies what the cluster writes.
    let last = write(&c, 10, "after").await;
    c.wait_applied(&node, last, T).await;
    assert_eq!(c.applied(&node), c.applied(&leader));
    c.shutdown().await;
}

/// `stats()["last_snapshot_index"]` is the newest snapshot (HashiCorp's
/// meaning); the compaction point has its own names.
#[tokio::test(start_paused = true)]
async fn metrics_tell_the_newest_snapshot_from_the_compaction_point() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), manual_snapshots).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    let fresh = c.raft(&leader).metrics().borrow().clone();
    assert_eq!((fresh.first_index, fresh.log_compacted_through, fresh.last_snapshot_index), (1, 0, 0));
    assert_eq!(c.raft(&leader).first_index(), 1);

    write(&c, 300, "a").await;
    // A slow disk: `snapshot` still answers only once the deletion is done.
    c.nodes[&leader].faults.inject(StoreOp::DeleteRange, Fault::Latency(Duration::from_millis(500)));
    let snap = c.raft(&leader).snapshot().await.expect("snapshot");
    c.nodes[&leader].faults.clear_all();
    let (index, term) = (snap.meta().index, snap.meta().term);
    let raft = c.raft(&leader);
    let stats = raft.stats();
    assert_eq!(stats["last_snapshot_index"], index.to_string(), "{stats:?}");
    assert_eq!(stats["last_snapshot_term"], term.to_string());
    let first = store_first(&c, &leader).await;
    assert_eq!(first, index - TRAILING + 1, "trailing_logs entries kept behind the snapshot");
    let m = raft.metrics().borrow().clone();
    assert_eq!((m.last_snapshot_index, m.last_snapshot_term), (index, term));
    assert_eq!(m.log_compacted_through, first - 1);
    assert_eq!(m.snapshot_index, first - 1, "the old field keeps meaning the compaction point");
    assert_eq!(m.first_index, first);
    assert_eq!(raft.first_index(), first);
    assert_eq!(stats["first_index"], first.to_string());
    assert_eq!(stats["log_compacted_through"], (first - 1).to_string());

    // A restart reads both back: the snapshot it restored, the store's start.
    c.stop(&leader).await;
    c.start(&leader).await;
    let m = c.raft(&leader).metrics().borrow().clone();
    assert_eq!((m.last_snapshot_index, m.first_index), (index, first));
    assert_eq!(c.raft(&leader).stats()["last_snapshot_index"], index.to_string());

    // A follower that installs a snapshot reports it, and its log starts
    // after it.
    c.stop(&follower).await;
    write(&c, 400, "b").await;
    let leader = c.wait_for_leader().await;
    let snap = c.raft(&leader).snapshot().await.expect("snapshot");
    c.start(&follower).await;
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    c.wait_applied(&follower, last, T).await;
    let mut metrics = c.raft(&follower).metrics();
    // The snapshot is noted when installed and the log's new start once the
    // store deleted the old log: wait for both to be published.
    let m = tokio::time::timeout(
        T,
        metrics.wait_for(|m| m.last_snapshot_index >= snap.meta().index && m.first_index > snap.meta().index),
    )
    .await
    .expect("the follower reports the installed snapshot and the log behind it compacted")
    .expect("metrics")
    .clone();
    assert_eq!(m.last_snapshot_index, snap.meta().index);
    assert_eq!(m.first_index, snap.meta().index + 1, "the installed snapshot replaced the log");
    assert_eq!(c.raft(&follower).first_index(), store_first(&c, &follower).await);
    c.shutdown().await;
}
