//! Integration tests of real `Raft` nodes on the in-memory network, under
//! tokio's paused clock: elections, replication order, failover without
//! losing acknowledged writes, restart and catch-up, and NotLeader errors.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use raft::message::AppendEntriesRequest;
use raft::transport::inmem::InmemNetwork;
use raft::{Error, RaftState, ServerId, Transport, TransportError};
use raft_tests::TestCluster;

const T: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn one_three_and_five_nodes_elect_exactly_one_leader() {
    for n in [1, 3, 5] {
        let mut c = TestCluster::new(n).await;
        let leader = c.wait_for_leader().await;
        // Leadership is stable over many heartbeat intervals.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(c.leaders(), vec![leader.clone()], "{n} nodes");
        let terms: BTreeSet<u64> = c.running().iter().map(|id| c.raft(id).metrics().borrow().term).collect();
        assert_eq!(terms.len(), 1, "all nodes on one term");
        c.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_concurrent_applies_are_applied_in_the_same_order_everywhere() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let mut tasks = Vec::new();
    for client in 0..50 {
        let raft = raft.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..200 {
                let applied = raft.apply(format!("c{client}-{i}"), T).await.expect("apply");
                assert!(applied.index > last, "a client's writes commit in order");
                last = applied.index;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let last = raft.barrier(T).await.expect("barrier");
    for id in c.running() {
        c.wait_applied(&id, last, T).await;
    }
    let reference = c.applied(&leader);
    assert_eq!(reference.len(), 10_000);
    let distinct: BTreeSet<&Bytes> = reference.iter().map(|(_, d)| d).collect();
    assert_eq!(distinct.len(), 10_000, "every write applied exactly once");
    for id in c.running() {
        assert_eq!(c.applied(&id), reference, "{id} applied the same sequence");
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut c = TestCluster::new(3).await;
    let old = c.wait_for_leader().await;
    let mut acked = Vec::new();
    for i in 0..100 {
        let cmd = Bytes::from(format!("w{i}"));
        c.raft(&old).apply(cmd.clone(), T).await.expect("apply");
        acked.push(cmd);
    }
    c.stop(&old).await;
    let new = c.wait_for_leader().await;
    assert_ne!(new, old);
    for i in 100..150 {
        let cmd = Bytes::from(format!("w{i}"));
        c.raft(&new).apply(cmd.clone(), T).await.expect("apply on new leader");
        acked.push(cmd);
    }
    let last = c.raft(&new).barrier(T).await.expect("barrier");
    for id in c.running() {
        c.wait_applied(&id, last, T).await;
        let applied: Vec<Bytes> = c.applied(&id).into_iter().map(|(_, d)| d).collect();
        assert_eq!(applied, acked, "{id} has every acknowledged write, in order");
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn isolating_the_leader_elects_a_new_one_and_the_old_one_rejoins() {
    let mut c = TestCluster::new(5).await;
    let old = c.wait_for_leader().await;
    c.raft(&old).apply("before", T).await.expect("apply");
    c.net.isolate(&old.as_str().into());
    let others: Vec<String> = c.running().into_iter().filter(|id| *id != old).collect();
    let new = c.wait_for_leader_among(&others, T).await;
    assert_ne!(new, old);
    // The isolated leader steps down by itself (check-quorum).
    let deadline = tokio::time::Instant::now() + T;
    while c.raft(&old).state() == RaftState::Leader {
        assert!(tokio::time::Instant::now() < deadline, "old leader never stepped down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its pending write cannot commit; a write on the new leader can.
    let doomed = c.raft(&old).apply("doomed", Duration::from_millis(300)).await;
    assert!(doomed.is_err());
    let idx = c.raft(&new).apply("after", T).await.expect("apply").index;
    c.net.heal();
    c.wait_applied(&old, idx, T).await;
    let applied: Vec<Bytes> = c.applied(&old).into_iter().map(|(_, d)| d).collect();
    assert_eq!(applied, vec![Bytes::from("before"), Bytes::from("after")]);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_follower_rebuilds_from_its_stores_and_catches_up() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    for i in 0..50 {
        c.raft(&leader).apply(format!("a{i}"), T).await.expect("apply");
    }
    let term_before = c.raft(&follower).metrics().borrow().term;
    c.stop(&follower).await;
    for i in 0..50 {
        c.raft(&leader).apply(format!("b{i}"), T).await.expect("apply while follower is down");
    }
    c.start(&follower).await;
    let m = c.raft(&follower).metrics().borrow().clone();
    assert!(m.term >= term_before, "term restored from the stable store");
    assert!(m.last_log_index >= 50, "log restored from the log store");
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    c.wait_applied(&follower, last, T).await;
    assert_eq!(c.applied(&follower), c.applied(&leader));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn apply_on_a_follower_returns_not_leader_naming_the_leader() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    match c.raft(&follower).apply("x", T).await {
        Err(Error::NotLeader { leader: Some((id, addr)) }) => {
            assert_eq!(id, ServerId::from(leader.as_str()));
            assert_eq!(addr.as_str(), leader);
        }
        other => panic!("expected NotLeader naming {leader}, got {other:?}"),
    }
    assert!(matches!(c.raft(&follower).read_index().await, Err(Error::NotLeader { .. })));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn linearizable_reads_see_every_acknowledged_write() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    for i in 0..20 {
        let applied = raft.apply(format!("v{i}"), T).await.expect("apply");
        let read_at = raft.read_index().await.expect("read index");
        assert!(read_at >= applied.index, "read point covers the acknowledged write");
        raft.linearizable_read().await.expect("read");
        assert!(raft.applied_index() >= applied.index);
    }
    raft.verify_leader().await.expect("still leader");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bootstrap_twice_is_refused_and_operations_after_shutdown_fail() {
    let mut c = TestCluster::new(1).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let (conf, _) = raft.get_configuration().await.expect("configuration");
    assert!(matches!(raft.bootstrap_cluster(conf).await, Err(Error::CantBootstrap)));
    c.stop(&leader).await;
    assert_eq!(raft.state(), RaftState::Shutdown);
    assert!(matches!(raft.apply("x", T).await, Err(Error::Shutdown)));
    raft.shutdown().await.expect("shutdown is idempotent");
}

#[tokio::test(start_paused = true)]
async fn invalid_config_is_rejected_with_a_clear_error() {
    let net = raft::transport::inmem::InmemNetwork::new();
    let store = raft_store_mem::InmemStore::new();
    let mut config = raft_tests::test_config("x");
    config.max_append_entries = 0;
    let result = raft::Raft::new(
        config,
        raft_tests::RecordingFsm::default(),
        store.clone(),
        store,
        raft::DiscardSnapshotStore,
        net.transport("x"),
    )
    .await;
    match result {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("max_append_entries")),
        other => panic!("expected InvalidConfig, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(start_paused = true)]
async fn followers_learn_the_commit_index_within_commit_timeout_in_an_idle_cluster() {
    let net = raft::transport::inmem::InmemNetwork::new();
    let mut c = TestCluster::<raft_tests::RecordingFsm>::with_config(3, net, |config| {
        // Heartbeats only every 100ms; commit flush after 5ms.
        config.heartbeat_timeout = Duration::from_secs(1);
        config.election_timeout = Duration::from_secs(1);
        config.leader_lease_timeout = Duration::from_millis(500);
        config.commit_timeout = Duration::from_millis(5);
    })
    .await;
    let leader = c.wait_for_leader().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let index = c.raft(&leader).apply("x", T).await.expect("apply").index;
    let start = tokio::time::Instant::now();
    for id in c.running() {
        c.wait_applied(&id, index, T).await;
    }
    assert!(start.elapsed() < Duration::from_millis(50), "followers applied after {:?}", start.elapsed());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_write_that_cannot_commit_times_out_at_its_deadline_and_may_still_commit_later() {
    // Slow timeouts: the isolated leader keeps leading long after the
    // writes' deadlines pass.
    let mut c: TestCluster =
        TestCluster::with_config(3, raft::transport::inmem::InmemNetwork::new(), |cfg| {
            cfg.heartbeat_timeout = Duration::from_secs(1);
            cfg.election_timeout = Duration::from_secs(1);
            cfg.leader_lease_timeout = Duration::from_secs(1);
        })
        .await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("before", T).await.expect("apply");
    for follower in c.running().into_iter().filter(|id| *id != leader) {
        c.net.isolate(&follower.as_str().into());
    }
    let start = tokio::time::Instant::now();
    let late = c.raft(&leader).apply("late", Duration::from_millis(100)).await;
    let waited = start.elapsed();
    assert!(matches!(late, Err(Error::Timeout)), "got {late:?}");
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(150),
        "answered after {waited:?}, deadline 100ms"
    );
    let barrier = c.raft(&leader).barrier(Duration::from_millis(20)).await;
    assert!(matches!(barrier, Err(Error::Timeout)), "got {barrier:?}");
    assert_eq!(c.raft(&leader).state(), RaftState::Leader, "still leading: the writes stay in its log");
    // The timed-out write's outcome was unknown; here it commits once the
    // followers are back.
    c.net.heal();
    let last = c.raft(&leader).barrier(T).await.expect("barrier after the heal");
    c.wait_applied(&leader, last, T).await;
    let applied: Vec<Bytes> = c.applied(&leader).into_iter().map(|(_, d)| d).collect();
    assert_eq!(applied, vec![Bytes::from("before"), Bytes::from("late")]);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_reads_sharing_a_round_each_see_every_write_acknowledged_before_them() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    // The highest index acknowledged to a writer so far.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (raft, acked) = (raft.clone(), acked.clone());
        tasks.spawn(async move {
            for i in 0..50 {
                let applied = raft.apply(format!("w{w}-{i}"), T).await.expect("apply");
                acked.fetch_max(applied.index, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    for _ in 0..64 {
        let (raft, acked) = (raft.clone(), acked.clone());
        tasks.spawn(async move {
            for _ in 0..50 {
                let floor = acked.load(std::sync::atomic::Ordering::SeqCst);
                let index = raft.read_index().await.expect("read index");
                assert!(
                    index >= floor,
                    "read point {index} misses write {floor} acknowledged before the read"
                );
                raft.linearizable_read().await.expect("read");
                assert!(raft.applied_index() >= floor);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reads_waiting_for_a_round_that_cannot_complete_fail_with_shutdown_when_the_node_stops() {
    // Slow timeouts: the isolated leader keeps leading while the reads wait.
    let mut c: TestCluster =
        TestCluster::with_config(3, raft::transport::inmem::InmemNetwork::new(), |cfg| {
            cfg.heartbeat_timeout = Duration::from_secs(1);
            cfg.election_timeout = Duration::from_secs(1);
            cfg.leader_lease_timeout = Duration::from_secs(1);
        })
        .await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    raft.apply("committed in this term", T).await.expect("apply");
    for follower in c.running().into_iter().filter(|id| *id != leader) {
        c.net.isolate(&follower.as_str().into());
    }
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let raft = raft.clone();
        reads.spawn(async move { raft.read_index().await });
    }
    // Let every read reach the node; none can be confirmed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(reads.try_join_next().is_none(), "no read may be answered without a quorum");
    c.stop(&leader).await;
    while let Some(outcome) = reads.join_next().await {
        let outcome = outcome.expect("read task");
        assert!(matches!(outcome, Err(Error::Shutdown)), "got {outcome:?}");
    }
    assert!(matches!(raft.read_index().await, Err(Error::Shutdown)));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_request_queue_delays_writes_and_reads_without_losing_any() {
    let mut c: TestCluster =
        TestCluster::with_config(3, raft::transport::inmem::InmemNetwork::new(), |cfg| {
            cfg.max_queued_requests = 2;
        })
        .await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    raft.apply("first", T).await.expect("apply");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let raft = raft.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                raft.apply(format!("w{i}"), T).await.map(|a| a.index)
            } else {
                raft.read_index().await
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        let index = done.expect("task").expect("every write and read succeeds behind a full queue");
        assert!(index >= 1);
    }
    let last = raft.barrier(T).await.expect("barrier");
    c.wait_applied(&leader, last, T).await;
    assert_eq!(c.applied(&leader).len(), 51, "the first write and the 50 concurrent ones, once each");
    c.shutdown().await;
}

/// A request the receiving core declines (an AppendEntries from a second
/// leader of its own term) is answered with `Rejected` at once, not left
/// waiting for the sender's timeout, and changes nothing.
#[tokio::test(start_paused = true)]
async fn a_request_the_receiver_declines_is_rejected_at_once() {
    let net = InmemNetwork::new();
    let mut c: TestCluster = TestCluster::with_network(3, net.clone()).await;
    let leader = c.wait_for_leader().await;
    let term = c.raft(&leader).metrics().borrow().term;
    let cluster_id = c.raft(&leader).cluster_id();
    let heartbeat = AppendEntriesRequest {
        term,
        leader_id: "intruder".into(),
        round: 1,
        cluster_id,
        ..Default::default()
    };
    let intruder = net.transport("intruder");
    let started = tokio::time::Instant::now();
    let err = intruder
        .append_entries(&leader.as_str().into(), &leader.as_str().into(), heartbeat)
        .await
        .expect_err("a second leader's AppendEntries is declined");
    assert!(
        matches!(err, TransportError::Rejected(ref m) if m == "request ignored by the receiver"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "answered at once, after {:?}",
        started.elapsed()
    );
    assert_eq!(c.raft(&leader).metrics().borrow().term, term);
    assert_eq!(c.wait_for_leader().await, leader, "the leader kept leading");
    c.shutdown().await;
}
