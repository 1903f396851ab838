//! Cluster and node identity (issue 13, items 5 and 6), through the public
//! API: RPCs of another cluster are refused by the runtime (so on every
//! transport), joiners adopt the cluster id and keep it, and a data
//! directory of another node, or a log whose stable store was lost, refuses
//! to start.

use std::sync::Arc;
use std::time::Duration;

use raft::message::{AppendEntriesRequest, RequestVoteRequest};
use raft::observer::{Observation, Observer};
use raft::transport::inmem::InmemNetwork;
use raft::{
    ClusterId, Config, Configuration, Error, LogStore, Raft, RaftState, Server, StableStore, StorageError,
    Transport, TransportError,
};
use raft_store_file::{FileSnapshotStore, FileStore};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::{test_config, RecordingFsm, TestCluster, TestFsm};

const T: Duration = Duration::from_secs(10);

/// Registers an observer that only hears about cluster mismatches.
fn mismatches(raft: &Raft<RecordingFsm>) -> tokio::sync::mpsc::Receiver<Observation> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let filter = Arc::new(|o: &Observation| matches!(o, Observation::ClusterMismatch { .. }));
    raft.register_observer(Observer::new(tx, false, Some(filter)));
    rx
}

async fn next_mismatch(rx: &mut tokio::sync::mpsc::Receiver<Observation>) -> (String, ClusterId, ClusterId) {
    match tokio::time::timeout(T, rx.recv()).await {
        Ok(Some(Observation::ClusterMismatch { peer, ours, theirs })) => (peer.to_string(), ours, theirs),
        other => panic!("expected a cluster mismatch observation, got {other:?}"),
    }
}

fn terms(c: &TestCluster, ids: &[&str]) -> Vec<u64> {
    ids.iter().map(|id| c.raft(id).metrics().borrow().term).collect()
}

/// Item 5: a second cluster whose configuration lists a node of the first
/// (a wrong address, a copied configuration) cannot disturb it. The victim
/// refuses every request of the other cluster, its term does not move, and
/// both sides report the mismatch naming both ids.
#[tokio::test(start_paused = true)]
async fn a_cluster_pointed_at_another_clusters_node_cannot_disturb_it() {
    let net = InmemNetwork::new();
    let mut a: TestCluster = TestCluster::with_network(3, net.clone()).await;
    let a_leader = a.wait_for_leader().await;
    a.raft(&a_leader).apply("a-1", T).await.expect("write to A");
    let a_id = a.raft("n1").cluster_id().expect("A has a cluster id");
    for id in ["n2", "n3"] {
        assert_eq!(a.raft(id).cluster_id().as_ref(), Some(&a_id), "{id} agrees on A's id");
    }
    let mut victim_saw = mismatches(a.raft("n1"));
    let before = terms(&a, &["n1", "n2", "n3"]);

    // Cluster B: b1 and b2, plus a third voter "x" whose address is A's n1.
    let b_conf = Configuration::new(vec![
        Server::voter("b1", "b1"),
        Server::voter("b2", "b2"),
        Server::voter("x", "n1"),
    ]);
    let mut b = Vec::new();
    for id in ["b1", "b2"] {
        let store = InmemStore::new();
        let raft = Raft::new(
            test_config(id),
            RecordingFsm::default(),
            store.clone(),
            store,
            InmemSnapshotStore::new(),
            net.transport(id),
        )
        .await
        .expect("start B node");
        raft.bootstrap_cluster(b_conf.clone()).await.expect("bootstrap B");
        b.push(raft);
    }
    let b_id = b[0].cluster_id().expect("B has a cluster id");
    assert_ne!(a_id, b_id, "different members, different clusters");
    let mut b_saw: Vec<_> = b.iter().map(mismatches).collect();

    // B elects a leader among b1 and b2 and keeps trying to reach "x".
    let deadline = tokio::time::Instant::now() + T;
    let b_leader = loop {
        if let Some(l) = b.iter().position(|r| r.state() == RaftState::Leader) {
            break l;
        }
        assert!(tokio::time::Instant::now() < deadline, "B elected no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The victim refused B, naming B's node and both ids.
    let (sender, ours, theirs) = next_mismatch(&mut victim_saw).await;
    assert!(sender.starts_with('b'), "the victim names B's node, got {sender}");
    assert_eq!((ours, theirs), (a_id.clone(), b_id.clone()));
    // B's leader was told it talks to another cluster.
    let (peer, ours, theirs) = next_mismatch(&mut b_saw[b_leader]).await;
    assert_eq!(peer, "x");
    assert_eq!((ours, theirs), (b_id.clone(), a_id.clone()));

    // Let B hammer A for a while (many election timeouts), then check A.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(terms(&a, &["n1", "n2", "n3"]), before, "A's terms did not move");
    assert_eq!(a.wait_for_leader().await, a_leader, "A's leader kept leading");
    let applied = a.raft(&a_leader).apply("a-2", T).await.expect("A still takes writes");
    a.wait_applied("n1", applied.index, T).await;
    let conf = a.raft("n1").get_configuration().await.expect("configuration").0;
    assert!(
        conf.servers.iter().all(|s| s.id.as_str().starts_with('n')),
        "A's membership is untouched: {conf:?}"
    );
    for raft in b {
        raft.shutdown().await.expect("shutdown B");
    }
    a.shutdown().await;
}

/// Item 5: a request injected with another cluster's id is refused by the
/// receiving runtime with an answer naming both ids, and changes nothing;
/// the same request with the right id (or none, as from a node that
/// predates cluster ids) is handled.
#[tokio::test(start_paused = true)]
async fn a_message_from_another_cluster_is_refused() {
    let net = InmemNetwork::new();
    let mut c: TestCluster = TestCluster::with_network(3, net.clone()).await;
    let leader = c.wait_for_leader().await;
    let follower = if leader == "n1" { "n2" } else { "n1" };
    let ours = c.raft(follower).cluster_id().expect("cluster id");
    let term = c.raft(follower).metrics().borrow().term;
    let intruder = net.transport("intruder");
    let other = ClusterId::from("some-other-cluster");
    let vote = |cluster_id: Option<ClusterId>| RequestVoteRequest {
        term: term + 10,
        candidate_id: "intruder".into(),
        last_log_index: 1_000,
        last_log_term: term + 9,
        leadership_transfer: true,
        cluster_id,
    };
    let err = intruder
        .request_vote(&follower.into(), &follower.into(), vote(Some(other.clone())))
        .await
        .expect_err("a vote request of another cluster is refused");
    let TransportError::Rejected(msg) = &err else { panic!("expected Rejected, got {err:?}") };
    assert!(msg.contains(ours.as_str()) && msg.contains(other.as_str()), "names both ids: {msg}");
    let heartbeat = AppendEntriesRequest {
        term: term + 10,
        leader_id: "intruder".into(),
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 0,
        round: 1,
        cluster_id: Some(other.clone()),
    };
    let err = intruder
        .append_entries(&follower.into(), &follower.into(), heartbeat.clone())
        .await
        .expect_err("an AppendEntries of another cluster is refused");
    assert!(matches!(err, TransportError::Rejected(ref m) if m.contains(other.as_str())), "{err:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.raft(follower).metrics().borrow().term, term, "the refused requests changed nothing");
    assert_eq!(c.wait_for_leader().await, leader);

    // The same vote with this cluster's id reaches the node's protocol,
    // and so does one carrying no id. The protocol answers it: the
    // intruder is no member of the follower's committed configuration, so
    // it is told it was removed, with proof, and the follower keeps its
    // term (removal rule 3).
    let resp = intruder
        .request_vote(&follower.into(), &follower.into(), vote(Some(ours.clone())))
        .await
        .expect("a request of this cluster is handled");
    assert!(resp.removed && !resp.granted, "{resp:?}");
    assert_eq!(resp.term, term, "a non-member's vote request does not raise a follower's term");
    let resp = intruder.request_vote(&follower.into(), &follower.into(), vote(None)).await;
    assert!(resp.is_ok(), "a request without an id is handled: {resp:?}");
    c.shutdown().await;
}

/// Item 5: a server added to the cluster adopts its id from the leader,
/// records it, and keeps it across a restart; started again with another
/// explicit id, it refuses to start.
#[tokio::test(start_paused = true)]
async fn a_joiner_adopts_the_cluster_id_and_keeps_it_across_restarts() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let id = c.raft(&leader).cluster_id().expect("cluster id");
    c.add_node("n4").await;
    assert_eq!(c.raft("n4").cluster_id(), None, "a new, empty node has no cluster id yet");
    let index = c.raft(&leader).add_voter("n4".into(), "n4".into(), 0, T).await.expect("add n4");
    c.wait_applied("n4", index, T).await;
    for n in ["n1", "n2", "n3", "n4"] {
        assert_eq!(c.raft(n).cluster_id().as_ref(), Some(&id), "{n}");
    }
    c.stop("n4").await;
    c.start("n4").await;
    assert_eq!(c.raft("n4").cluster_id().as_ref(), Some(&id), "the adopted id survived the restart");
    let m = c.raft("n4").metrics().borrow().clone();
    assert_eq!(m.cluster_id.as_ref(), Some(&id), "metrics show it");
    assert_eq!(m.to_stats().get("cluster_id").map(String::as_str), Some(id.as_str()));
    c.stop("n4").await;

    // The stored id wins over, and refuses, a contradicting explicit one.
    let node = &c.nodes["n4"];
    let config = Config { cluster_id: Some(ClusterId::from("another")), ..test_config("n4") };
    let err = Raft::new(
        config,
        RecordingFsm::default(),
        node.store.clone(),
        node.store.clone(),
        node.snaps.clone(),
        c.net.transport("n4"),
    )
    .await
    .expect_err("another explicit cluster id is refused");
    assert!(
        matches!(&err, Error::ClusterMismatch { ours, theirs } if *ours == id && theirs.as_str() == "another"),
        "{err}"
    );
    c.shutdown().await;
}

/// Item 5: an explicit id is used as is, and a node configured with another
/// explicit id cannot join.
#[tokio::test(start_paused = true)]
async fn an_explicit_cluster_id_is_used_and_a_node_of_another_id_cannot_join() {
    fn named(c: &mut Config) {
        c.cluster_id = Some(ClusterId::from("payments"));
    }
    let mut c: TestCluster = TestCluster::with_config(3, InmemNetwork::new(), named).await;
    let leader = c.wait_for_leader().await;
    assert_eq!(c.raft(&leader).cluster_id(), Some(ClusterId::from("payments")));
    c.configure = |c| c.cluster_id = Some(ClusterId::from("billing"));
    c.add_node("n4").await;
    let mut saw = mismatches(c.raft(&leader));
    // The configuration change itself commits on the cluster's voters, but
    // n4 refuses every entry the leader sends it. (Whether the leader then
    // promotes a server that never answered is issue 13 item 2.)
    let _ = c.raft(&leader).add_nonvoter("n4".into(), "n4".into(), 0, Duration::from_secs(2)).await;
    let (peer, ours, theirs) = next_mismatch(&mut saw).await;
    assert_eq!((peer.as_str(), ours.as_str(), theirs.as_str()), ("n4", "payments", "billing"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.raft("n4").metrics().borrow().last_log_index, 0, "n4 took nothing from the leader");
    assert_eq!(c.raft("n4").cluster_id(), Some(ClusterId::from("billing")), "n4 kept its own id");
    c.shutdown().await;
}

fn file_config(id: &str) -> Config {
    test_config(id)
}

async fn start_file_node(
    dir: &std::path::Path,
    config: Config,
    net: &InmemNetwork,
) -> Result<Raft<RecordingFsm>, Error> {
    let store = FileStore::open(dir.join("log")).await.expect("open store");
    let snaps = FileSnapshotStore::new(dir.join("snapshots"), 2).await.expect("open snapshots");
    let id = config.local_id.clone();
    Raft::new(config, RecordingFsm::default(), store.clone(), store, snaps, net.transport(id.as_str())).await
}

/// A one-node cluster on file stores with a few writes, stopped.
async fn file_node_with_data(dir: &std::path::Path) {
    let net = InmemNetwork::new();
    let raft = start_file_node(dir, file_config("n1"), &net).await.expect("start");
    raft.bootstrap_cluster(Configuration::new(vec![Server::voter("n1", "n1")])).await.expect("bootstrap");
    let deadline = tokio::time::Instant::now() + T;
    while raft.state() != RaftState::Leader {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..5 {
        raft.apply(format!("w{i}"), T).await.expect("write");
    }
    raft.shutdown().await.expect("shutdown");
}

/// Item 6: a data directory started under another node id is refused with
/// an error naming both ids and the way out; under its own id it starts.
/// (Real time: the file store does its I/O on blocking threads.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_started_as_another_node_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    file_node_with_data(dir.path()).await;
    let net = InmemNetwork::new();
    let err = start_file_node(dir.path(), file_config("n7"), &net).await.expect_err("wrong id refused");
    assert!(
        matches!(&err, Error::NodeIdMismatch { stored, configured } if stored.as_str() == "n1" && configured.as_str() == "n7"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("belongs to node n1") && msg.contains("start it with id n1"), "{msg}");
    let raft = start_file_node(dir.path(), file_config("n1"), &net).await.expect("the right id starts");
    assert!(raft.cluster_id().is_some(), "the bootstrap's cluster id was kept");
    raft.shutdown().await.expect("shutdown");
}

/// Item 6: a node whose stable store was lost (its file deleted) but whose
/// log is intact refuses to start instead of running at term 0 with its
/// vote forgotten, and says how to recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stable_store_under_a_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    file_node_with_data(dir.path()).await;
    std::fs::remove_file(dir.path().join("log").join("stable.dat")).expect("delete the stable store");
    let net = InmemNetwork::new();
    let err = start_file_node(dir.path(), file_config("n1"), &net).await.expect_err("refused");
    let Error::Storage(StorageError::Corrupt { path, reason, .. }) = &err else { panic!("got {err}") };
    assert_eq!(path, "stable store");
    assert!(reason.contains("vote") && reason.contains("backup") && reason.contains("rejoin"), "{reason}");
}

/// Item 6 on memory stores: the same log with a fresh stable store is
/// refused; bootstrap and recovery record the node id so a later start
/// under another id is refused too.
#[tokio::test(start_paused = true)]
async fn identity_checks_on_memory_stores_and_offline_bootstrap() {
    let net = InmemNetwork::new();
    let logs = InmemStore::new();
    let stable = InmemStore::new();
    let snaps = InmemSnapshotStore::new();
    let conf = Configuration::new(vec![Server::voter("n1", "n1"), Server::voter("n2", "n2")]);
    raft::bootstrap_cluster(&test_config("n1"), &logs, &stable, &snaps, conf.clone())
        .await
        .expect("bootstrap");
    assert!(stable.get(b"raft/node_id").await.expect("get").is_some(), "bootstrap records the node id");
    let err = Raft::new(
        test_config("n2"),
        RecordingFsm::default(),
        logs.clone(),
        stable.clone(),
        snaps.clone(),
        net.transport("n2"),
    )
    .await
    .expect_err("another node id is refused");
    assert!(matches!(err, Error::NodeIdMismatch { .. }), "{err}");
    let err = Raft::new(
        test_config("n1"),
        RecordingFsm::default(),
        logs.clone(),
        InmemStore::new(),
        snaps.clone(),
        net.transport("n1"),
    )
    .await
    .expect_err("a log without its stable store is refused");
    assert!(matches!(err, Error::Storage(StorageError::Corrupt { .. })), "{err}");
    assert!(logs.last_index().await.expect("last") > 0);
    let raft =
        Raft::new(test_config("n1"), RecordingFsm::default(), logs, stable, snaps, net.transport("n1"))
            .await
            .expect("its own stores start");
    assert_eq!(raft.cluster_id(), Some(ClusterId::derive(&conf)), "offline bootstrap derives the id");
    raft.shutdown().await.expect("shutdown");
}

/// A stable store whose write of the cluster id waits for a gate.
#[derive(Clone)]
struct GatedStable {
    inner: InmemStore,
    open: tokio::sync::watch::Receiver<bool>,
}

#[raft::async_trait]
impl StableStore for GatedStable {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        if key == b"raft/cluster_id" {
            let mut open = self.open.clone();
            let _ = open.wait_for(|o| *o).await;
        }
        self.inner.set(key, value).await
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key).await
    }
}

/// Item 5: a new node adopts the id of the first leader that contacts it
/// durably *before* it answers that leader: while the write of the id is
/// held back, the leader gets no answer; once it is stored, it does.
#[tokio::test(start_paused = true)]
async fn a_joiner_answers_the_leader_only_after_the_adopted_id_is_durable() {
    let net = InmemNetwork::new();
    let (gate, open) = tokio::sync::watch::channel(false);
    let stable = GatedStable { inner: InmemStore::new(), open };
    let logs = InmemStore::new();
    let raft = Raft::new(
        test_config("j"),
        RecordingFsm::default(),
        logs,
        stable.clone(),
        InmemSnapshotStore::new(),
        net.transport("j"),
    )
    .await
    .expect("start");
    assert_eq!(raft.cluster_id(), None);
    let leader = net.transport("leader");
    let heartbeat = AppendEntriesRequest {
        term: 3,
        leader_id: "leader".into(),
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 0,
        round: 1,
        cluster_id: Some(ClusterId::from("c1")),
    };
    let call = tokio::spawn(async move { leader.append_entries(&"j".into(), &"j".into(), heartbeat).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the leader was answered before the adopted id was durable");
    assert_eq!(raft.cluster_id(), None, "not adopted before it is durable");
    gate.send_replace(true);
    let resp = tokio::time::timeout(T, call).await.expect("answered").expect("join").expect("accepted");
    assert!(resp.success, "{resp:?}");
    assert_eq!(raft.cluster_id(), Some(ClusterId::from("c1")));
    assert_eq!(stable.inner.get(b"raft/cluster_id").await.expect("get"), Some(b"c1".to_vec()));
    raft.shutdown().await.expect("shutdown");
}

/// Item 5, upgrade path: nodes whose stores predate cluster ids (a term
/// and a log, no stored ids) start; the leader derives the id from its
/// committed configuration, the followers adopt it, and all keep it.
#[tokio::test(start_paused = true)]
async fn nodes_whose_stores_predate_cluster_ids_get_one_from_their_leader() {
    let conf = Configuration::new(["n1", "n2", "n3"].iter().map(|id| Server::voter(*id, *id)).collect());
    let mut c: TestCluster =
        TestCluster { net: InmemNetwork::new(), configure: |_| {}, nodes: Default::default() };
    for id in ["n1", "n2", "n3"] {
        // What bootstrap_cluster wrote before ids were recorded.
        let store = InmemStore::new();
        let hard_state = raft::HardState { term: 1, vote: None };
        store.set(b"raft/hard_state", &raft::codec::encode(&hard_state).expect("encode")).await.expect("set");
        let entry =
            raft::Log::new(1, 1, raft::LogType::Configuration, raft::codec::encode(&conf).expect("encode"));
        store.store_logs(&[entry]).await.expect("store");
        let fsm = RecordingFsm::default();
        let node = raft_tests::TestNode {
            raft: None,
            applied: fsm.applied_log(),
            fsm,
            store,
            snaps: InmemSnapshotStore::new(),
            faults: raft::testing::faulty::FaultInjector::new(),
        };
        c.nodes.insert(id.to_string(), node);
        c.start(id).await;
    }
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("after upgrade", T).await.expect("write");
    let expected = ClusterId::derive(&conf);
    let deadline = tokio::time::Instant::now() + T;
    while ["n1", "n2", "n3"].iter().any(|id| c.raft(id).cluster_id().as_ref() != Some(&expected)) {
        assert!(tokio::time::Instant::now() < deadline, "the cluster did not converge on one id");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let follower = if leader == "n1" { "n2" } else { "n1" };
    c.stop(follower).await;
    c.start(follower).await;
    assert_eq!(c.raft(follower).cluster_id(), Some(expected), "the assigned id was stored");
    c.shutdown().await;
}

/// Item 6: `recover_cluster` checks and records the node id like a start
/// does: on stores of another node it refuses, and on stores written
/// before ids were recorded it records the node id and a cluster id.
#[tokio::test(start_paused = true)]
async fn recover_cluster_checks_and_records_identity() {
    let net = InmemNetwork::new();
    let conf = Configuration::new(vec![Server::voter("n1", "n1")]);
    // A one-node store as bootstrap wrote it before ids were recorded.
    let store = InmemStore::new();
    let snaps = InmemSnapshotStore::new();
    let hard_state = raft::HardState { term: 1, vote: None };
    store.set(b"raft/hard_state", &raft::codec::encode(&hard_state).expect("encode")).await.expect("set");
    let entry =
        raft::Log::new(1, 1, raft::LogType::Configuration, raft::codec::encode(&conf).expect("encode"));
    store.store_logs(&[entry]).await.expect("store");
    let recover = |id: &'static str| {
        let (store, snaps, conf) = (store.clone(), snaps.clone(), conf.clone());
        async move {
            raft::recover_cluster(&test_config(id), RecordingFsm::default(), &store, &store, &snaps, conf)
                .await
        }
    };
    recover("n1").await.expect("recover n1");
    assert_eq!(store.get(b"raft/node_id").await.expect("get"), Some(b"n1".to_vec()));
    let err = recover("n9").await.expect_err("stores of n1 recovered as n9");
    assert!(matches!(&err, Error::NodeIdMismatch { stored, .. } if stored.as_str() == "n1"), "{err}");
    let raft = Raft::new(
        test_config("n1"),
        RecordingFsm::default(),
        store.clone(),
        store,
        snaps,
        net.transport("n1"),
    )
    .await
    .expect("start after recovery");
    assert_eq!(raft.cluster_id(), Some(ClusterId::derive(&conf)), "recovery assigned the derived id");
    raft.shutdown().await.expect("shutdown");
}
