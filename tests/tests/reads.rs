//! Reads through the public API (issue 19): every [`ReadPolicy`] on the
//! leader, linearizable follower reads, the refusal when no leader is
//! known, leases (served without a quorum round while they hold, never
//! without check-quorum), and a new leader that answers no read before its
//! state machine applied the first entry of its term (NuRaft #662). Paused
//! clock throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Config, Configuration, Error, Fsm, FsmSnapshot, Log, LogStore, Raft, RaftState,
    ReadMetrics, ReadPolicy, Server, ServerId, SnapshotReader, SnapshotWriter,
};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::{test_config, TestCluster};
use tokio::sync::Notify;

const LIMIT: Duration = Duration::from_secs(10);

/// Waits (bounded, in virtual time) until `node`'s published read counters
/// satisfy `done`; returns them.
async fn wait_reads<F: Fsm>(node: &Raft<F>, done: impl Fn(&ReadMetrics) -> bool) -> ReadMetrics {
    let mut metrics = node.metrics();
    tokio::time::timeout(LIMIT, async {
        loop {
            let reads = metrics.borrow_and_update().reads.clone();
            if done(&reads) {
                return reads;
            }
            metrics.changed().await.expect("metrics watch closed");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read counters never got there: {:?}", node.metrics().borrow().reads))
}

fn followers(c: &TestCluster, leader: &str) -> Vec<String> {
    c.running().into_iter().filter(|id| id != leader).collect()
}

#[tokio::test(start_paused = true)]
async fn every_policy_reads_through_the_public_api_on_the_leader() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let written = raft.apply(&b"x"[..], LIMIT).await.expect("write");
    for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
        let index = tokio::time::timeout(LIMIT, raft.read(policy)).await.expect("bounded").expect("read");
        assert!(index >= written.index, "{policy}: read point {index} before the write {}", written.index);
        assert!(raft.applied_index() >= index, "{policy}: returned before the FSM applied the read point");
    }
    let stale = raft.read(ReadPolicy::Stale).await.expect("stale read");
    assert_eq!(stale, raft.applied_index());
    // The old entry points keep working.
    assert!(raft.read_index().await.expect("read_index") >= written.index);
    raft.linearizable_read().await.expect("linearizable_read");
    raft.verify_leader().await.expect("verify_leader");
    let reads = wait_reads(&raft, |r| r.read_index >= 4).await;
    assert_eq!((reads.stale, reads.lease), (1, 1), "{reads:?}");
    assert_eq!(reads.lease_served + reads.lease_fallbacks, 1, "one lease read, served or not: {reads:?}");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_follower_read_sees_a_write_acknowledged_just_before_on_the_leader() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = followers(&c, &leader)[0].clone();
    for (i, policy) in
        [ReadPolicy::ReadIndex, ReadPolicy::Lease, ReadPolicy::ReadIndex].into_iter().enumerate()
    {
        let cmd = Bytes::from(format!("w{i}"));
        let written = c.raft(&leader).apply(cmd.clone(), LIMIT).await.expect("write");
        // Right after the leader acknowledged it: the follower has not
        // necessarily heard of the commit yet, its read must wait for it.
        let index = tokio::time::timeout(LIMIT, c.raft(&follower).read(policy))
            .await
            .expect("bounded")
            .expect("read");
        assert!(index >= written.index, "{policy}: read point {index} before the acknowledged write");
        assert!(
            c.applied(&follower).iter().any(|(at, data)| *at == written.index && *data == cmd),
            "{policy}: the follower read missed the write acknowledged just before it"
        );
    }
    let reads = wait_reads(c.raft(&follower), |r| r.follower_reads >= 3).await;
    assert_eq!(reads.follower_read_failures, 0);
    wait_reads(c.raft(&leader), |r| r.read_index_requests_answered >= 3).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_follower_reads_share_requests_and_all_see_the_write() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = followers(&c, &leader)[0].clone();
    let written = c.raft(&leader).apply(&b"shared"[..], LIMIT).await.expect("write");
    let reads: Vec<_> = (0..50)
        .map(|_| {
            let raft = c.raft(&follower).clone();
            tokio::spawn(async move { raft.read(ReadPolicy::ReadIndex).await })
        })
        .collect();
    for read in reads {
        let index = read.await.expect("task").expect("follower read");
        assert!(index >= written.index);
    }
    let answered = wait_reads(c.raft(&leader), |r| r.read_index_requests_answered >= 1).await;
    assert!(
        answered.read_index_requests_answered < 50,
        "50 concurrent follower reads were not batched: {answered:?}"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_follower_read_is_refused_with_not_leader_only_when_no_leader_is_known() {
    let mut c = TestCluster::new(3).await;
    c.wait_for_leader().await;
    // n4 was never added to the cluster: it knows no leader.
    c.add_node("n4").await;
    for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
        match c.raft("n4").read(policy).await {
            Err(Error::NotLeader { leader: None }) => {}
            other => panic!("{policy}: expected NotLeader without a leader, got {other:?}"),
        }
    }
    // A stale read needs no leader.
    assert_eq!(c.raft("n4").read(ReadPolicy::Stale).await.expect("stale"), 0);
    wait_reads(c.raft("n4"), |r| r.follower_read_failures == 2 && r.stale == 1).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn lease_reads_are_served_without_a_quorum_round_while_the_lease_holds() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    raft.apply(&b"x"[..], LIMIT).await.expect("write");
    // Let a heartbeat round be acknowledged so the lease holds.
    raft.read(ReadPolicy::ReadIndex).await.expect("read");
    let before = wait_reads(&raft, |_| true).await;
    for _ in 0..20 {
        raft.read(ReadPolicy::Lease).await.expect("lease read");
    }
    let after = wait_reads(&raft, |r| r.lease_served + r.lease_fallbacks >= before.lease_served + 20).await;
    assert!(
        after.lease_served - before.lease_served >= 19,
        "lease reads took quorum rounds while the lease held: {after:?}"
    );
    let mut metrics = raft.metrics();
    let held = tokio::time::timeout(
        LIMIT,
        metrics.wait_for(|m| m.lease_remaining.is_some_and(|d| d > Duration::ZERO)),
    )
    .await
    // At once: a borrow of the watch kept across awaits would block its sender.
    .is_ok_and(|r| r.is_ok());
    assert!(held, "the leader's metrics never showed the lease it holds");
    let follower = followers(&c, &leader)[0].clone();
    assert_eq!(c.raft(&follower).metrics().borrow().lease_remaining, None, "a follower holds no lease");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_check_quorum_no_lease_is_used() {
    let mut c: TestCluster =
        TestCluster::with_config(3, InmemNetwork::new(), |c| c.check_quorum = false).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let written = raft.apply(&b"x"[..], LIMIT).await.expect("write");
    for _ in 0..10 {
        let index = raft.read(ReadPolicy::Lease).await.expect("lease read falls back to a round");
        assert!(index >= written.index);
    }
    let reads = wait_reads(&raft, |r| r.lease_fallbacks >= 10).await;
    assert_eq!(reads.lease_served, 0, "a lease was used without check-quorum: {reads:?}");
    let remaining = raft.metrics().borrow().lease_remaining;
    assert_eq!(remaining, Some(Duration::ZERO), "the leader reports no lease without check-quorum");
    c.shutdown().await;
}

/// An FSM whose applies can be held back: while `held` is set, `apply`
/// waits for `release`.
#[derive(Clone, Default)]
struct GatedFsm {
    held: Arc<AtomicBool>,
    release: Arc<Notify>,
    applied: Arc<std::sync::Mutex<Vec<u64>>>,
}

struct NoSnapshot;

#[async_trait]
impl FsmSnapshot for NoSnapshot {
    async fn persist(self: Box<Self>, _sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        Ok(())
    }
}

#[async_trait]
impl Fsm for GatedFsm {
    type Response = ();

    async fn apply(&mut self, log: &Log) {
        while self.held.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        self.applied.lock().expect("lock").push(log.index);
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(NoSnapshot))
    }

    async fn restore(&mut self, _snapshot: SnapshotReader) -> Result<(), BoxError> {
        Ok(())
    }
}

struct GatedNode {
    id: String,
    raft: Raft<GatedFsm>,
    fsm: GatedFsm,
    store: InmemStore,
}

async fn gated_cluster(configure: fn(&mut Config)) -> Vec<GatedNode> {
    let net = InmemNetwork::new();
    let ids = ["n1", "n2", "n3"];
    let configuration = Configuration::new(ids.iter().map(|id| Server::voter(*id, *id)).collect());
    let mut nodes = Vec::new();
    for id in ids {
        let fsm = GatedFsm::default();
        let store = InmemStore::new();
        let mut config = test_config(id);
        configure(&mut config);
        let raft = Raft::new(
            config,
            fsm.clone(),
            store.clone(),
            store.clone(),
            InmemSnapshotStore::new(),
            net.transport(id),
        )
        .await
        .expect("start");
        raft.bootstrap_cluster(configuration.clone()).await.expect("bootstrap");
        nodes.push(GatedNode { id: id.to_string(), raft, fsm, store });
    }
    nodes
}

async fn gated_leader(nodes: &[GatedNode]) -> usize {
    tokio::time::timeout(LIMIT, async {
        loop {
            let leaders: Vec<usize> =
                (0..nodes.len()).filter(|&i| nodes[i].raft.state() == RaftState::Leader).collect();
            if let [l] = leaders[..] {
                if nodes.iter().all(|n| n.raft.leader().is_some_and(|(id, _)| id.as_str() == nodes[l].id)) {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a leader")
}

/// NuRaft #662: a new leader whose state machine is behind serves no read
/// (Lease, ReadIndex, or a follower's read through it) until its FSM has
/// applied the first entry of its term; the read point is at least that
/// entry.
#[tokio::test(start_paused = true)]
async fn s6_4_a_new_leader_serves_no_read_before_its_fsm_applied_its_first_entry_of_the_term() {
    let nodes = gated_cluster(|_| {}).await;
    let old = gated_leader(&nodes).await;
    nodes[old].raft.apply(&b"before"[..], LIMIT).await.expect("write");
    let next = (old + 1) % 3;
    let other = (old + 2) % 3;
    // The next leader's FSM stops applying; its log keeps up.
    nodes[next].fsm.held.store(true, Ordering::SeqCst);
    let held_write = nodes[old].raft.apply(&b"held"[..], LIMIT).await.expect("write");
    let next_id = ServerId::from(nodes[next].id.as_str());
    let next_addr = nodes[next].id.as_str().into();
    nodes[old].raft.leadership_transfer_to_server(next_id, next_addr).await.expect("transfer");
    assert_eq!(gated_leader(&nodes).await, next);
    let term = nodes[next].raft.metrics().borrow().term;
    // The first entry of the new term.
    let mut term_start = held_write.index + 1;
    while nodes[next].store.get_log(term_start).await.expect("log").is_none_or(|l| l.term != term) {
        term_start += 1;
        assert!(term_start < held_write.index + 100, "no entry of term {term}");
    }
    let mut reads = Vec::new();
    for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
        let raft = nodes[next].raft.clone();
        reads.push((policy, tokio::spawn(async move { raft.read(policy).await })));
    }
    // Long enough for any number of quorum rounds and lease checks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(nodes[next].raft.applied_index() < term_start, "the FSM was held back");
    for (policy, read) in &reads {
        assert!(!read.is_finished(), "{policy}: the new leader answered a read before its FSM caught up");
    }
    // A follower read through the new leader is served at the follower once
    // the follower's FSM applied the new term's first entry.
    let index = nodes[other].raft.read(ReadPolicy::ReadIndex).await.expect("follower read");
    assert!(
        index >= term_start,
        "follower read point {index} before the new term's first entry {term_start}"
    );
    assert!(nodes[other].raft.applied_index() >= term_start);
    nodes[next].fsm.held.store(false, Ordering::SeqCst);
    nodes[next].fsm.release.notify_waiters();
    for (policy, read) in reads {
        let index = read.await.expect("task").expect("read");
        assert!(
            index >= term_start,
            "{policy}: read point {index} before the term's first entry {term_start}"
        );
        assert!(nodes[next].raft.applied_index() >= index, "{policy}: returned before the FSM applied it");
    }
    for n in &nodes {
        n.raft.shutdown().await.expect("shutdown");
    }
}

/// A follower serves a read only once its own state machine applied the
/// read point it got from the leader, however late that is.
#[tokio::test(start_paused = true)]
async fn a_follower_read_waits_until_its_own_fsm_applied_the_read_point() {
    let nodes = gated_cluster(|_| {}).await;
    let leader = gated_leader(&nodes).await;
    let follower = (leader + 1) % 3;
    nodes[follower].fsm.held.store(true, Ordering::SeqCst);
    let written = nodes[leader].raft.apply(&b"w"[..], LIMIT).await.expect("write");
    let mut reads = Vec::new();
    for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
        let raft = nodes[follower].raft.clone();
        reads.push((policy, tokio::spawn(async move { raft.read(policy).await })));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (policy, read) in &reads {
        assert!(!read.is_finished(), "{policy}: a follower read was served before its FSM applied the write");
    }
    nodes[follower].fsm.held.store(false, Ordering::SeqCst);
    nodes[follower].fsm.release.notify_waiters();
    for (policy, read) in reads {
        let index = read.await.expect("task").expect("follower read");
        assert!(index >= written.index, "{policy}");
        assert!(nodes[follower].fsm.applied.lock().expect("lock").contains(&written.index), "{policy}");
    }
    for n in &nodes {
        n.raft.shutdown().await.expect("shutdown");
    }
}

/// The lease is counted in ticks derived from the monotonic clock: when the
/// node's loop wakes long after the lease ran out (a stall, here one jump
/// of the clock with the leader cut off), a lease read first delivers every
/// tick due, finds the lease expired and does not answer from it.
#[tokio::test(start_paused = true)]
async fn a_lease_read_after_a_stall_longer_than_the_lease_is_not_served_from_it() {
    let net = InmemNetwork::new();
    let mut c: TestCluster = TestCluster::with_config(3, net.clone(), |_| {}).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    raft.apply(&b"x"[..], LIMIT).await.expect("write");
    raft.read(ReadPolicy::Lease).await.expect("lease read");
    raft.read(ReadPolicy::Lease).await.expect("lease read");
    let before = wait_reads(&raft, |r| r.lease_served >= 1).await;
    // Cut the leader off and jump the clock past the lease in one step: the
    // loop's tick timer fires once, but many ticks are due.
    c.net.isolate(&leader.as_str().into());
    tokio::time::advance(Duration::from_millis(45)).await;
    let read = tokio::time::timeout(Duration::from_millis(30), raft.read(ReadPolicy::Lease)).await;
    assert!(!matches!(read, Ok(Ok(_))), "a lease read was answered after the lease ran out: {read:?}");
    let after = raft.metrics().borrow().reads.clone();
    assert_eq!(after.lease_served, before.lease_served, "served from an expired lease: {after:?}");
    c.net.heal();
    c.shutdown().await;
}

/// While the lease holds, a lease read on the leader is answered by its
/// caller alone: the first poll of `read` returns, with no turn of the
/// node's task in between (a read through the task would be pending).
#[tokio::test(start_paused = true)]
async fn a_lease_read_on_the_leader_is_answered_by_its_caller_without_the_nodes_task() {
    use futures::FutureExt;
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let written = raft.apply(&b"x"[..], LIMIT).await.expect("write");
    // A confirmed round after the first commit of the term: the lease holds.
    raft.read(ReadPolicy::ReadIndex).await.expect("read");
    let mut metrics = raft.metrics();
    tokio::time::timeout(LIMIT, metrics.wait_for(|m| m.lease_remaining.is_some_and(|d| d > Duration::ZERO)))
        .await
        .expect("the leader's lease never held")
        .expect("metrics watch closed");
    let before = raft.metrics().borrow().reads.lease_served;
    for _ in 0..10 {
        let index = raft
            .read(ReadPolicy::Lease)
            .now_or_never()
            .expect("a lease read waited for the node's task while the lease held")
            .expect("lease read");
        assert!(index >= written.index, "read point {index} before the write {}", written.index);
        assert!(raft.applied_index() >= index);
    }
    let after = wait_reads(&raft, |r| r.lease_served >= before + 10).await;
    assert_eq!(after.lease_fallbacks, 0, "{after:?}");
    c.shutdown().await;
}

/// A leader that handed leadership over gives its lease up before the
/// TimeoutNow leaves (its target's election skips the voters'
/// stickiness): a lease read on it afterwards sees a write the new leader
/// acknowledged, never the old leader's commit index.
#[tokio::test(start_paused = true)]
async fn after_a_leadership_transfer_the_old_leader_serves_no_read_from_its_lease() {
    let mut c = TestCluster::new(3).await;
    let old = c.wait_for_leader().await;
    let raft = c.raft(&old).clone();
    raft.apply(&b"x"[..], LIMIT).await.expect("write");
    raft.read(ReadPolicy::ReadIndex).await.expect("read");
    let mut metrics = raft.metrics();
    tokio::time::timeout(LIMIT, metrics.wait_for(|m| m.lease_remaining.is_some_and(|d| d > Duration::ZERO)))
        .await
        .expect("the leader's lease never held")
        .expect("metrics watch closed");
    tokio::time::timeout(LIMIT, raft.leadership_transfer()).await.expect("bounded").expect("transfer");
    let others = followers(&c, &old);
    let new = c.wait_for_leader_among(&others, LIMIT).await;
    let written = c.raft(&new).apply(&b"after"[..], LIMIT).await.expect("write on the new leader");
    let index = tokio::time::timeout(LIMIT, raft.read(ReadPolicy::Lease))
        .await
        .expect("bounded")
        .expect("lease read on the old leader");
    assert!(
        index >= written.index,
        "the old leader answered at {index}, before the new leader's acknowledged write {}",
        written.index
    );
    assert!(c.applied(&old).iter().any(|(at, data)| *at == written.index && data.as_ref() == b"after"));
    c.shutdown().await;
}

/// A stopped leader answers no lease read, though its lease had time left.
#[tokio::test(start_paused = true)]
async fn a_leader_that_shut_down_serves_no_read_from_its_lease() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    raft.apply(&b"x"[..], LIMIT).await.expect("write");
    raft.read(ReadPolicy::ReadIndex).await.expect("read");
    let mut metrics = raft.metrics();
    tokio::time::timeout(LIMIT, metrics.wait_for(|m| m.lease_remaining.is_some_and(|d| d > Duration::ZERO)))
        .await
        .expect("the leader's lease never held")
        .expect("metrics watch closed");
    drop(metrics);
    raft.shutdown().await.expect("shutdown");
    match raft.read(ReadPolicy::Lease).await {
        Err(Error::Shutdown) => {}
        other => panic!("a shut-down leader answered a lease read: {other:?}"),
    }
    c.shutdown().await;
}
