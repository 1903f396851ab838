//! Membership changes, leadership transfer, observers, config reload and
//! manual recovery, through the public API on the in-memory network.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft::observer::{Observation, Observer};
use raft::{Configuration, Error, RaftState, ReloadableConfig, Server, ServerId, Suffrage};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(10);

fn voters(c: &Configuration) -> Vec<String> {
    c.servers.iter().filter(|s| s.suffrage == Suffrage::Voter).map(|s| s.id.to_string()).collect()
}

/// Writes continuously through `leader` until stopped; counts successes and
/// failures.
fn spawn_writer(
    c: &TestCluster<RecordingFsm>,
    leader: &str,
) -> (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let raft = c.raft(leader).clone();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let handle = tokio::spawn({
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                match raft.apply(format!("load-{i}"), T).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(_) => failed.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    (stop, ok, failed, handle)
}

#[tokio::test(start_paused = true)]
async fn grow_from_one_to_five_voters_under_steady_writes_without_a_failed_write() {
    let mut c = TestCluster::new(1).await;
    let leader = c.wait_for_leader().await;
    let (tx, mut changes) = tokio::sync::mpsc::channel(1024);
    let peer_changes = Arc::new(|o: &Observation| matches!(o, Observation::PeerChanged(_)));
    c.raft(&leader).register_observer(Observer::new(tx, true, Some(peer_changes)));
    let (stop, ok, failed, writer) = spawn_writer(&c, &leader);
    for i in 2..=5 {
        let id = format!("n{i}");
        c.add_node(&id).await;
        let before = ok.load(Ordering::SeqCst);
        c.raft(&leader)
            .add_voter(ServerId::from(id.as_str()), id.as_str().into(), 0, T)
            .await
            .expect("add voter");
        let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
        assert!(voters(&conf).contains(&id), "{id} is a voter");
        // Writes kept committing while the new server caught up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(ok.load(Ordering::SeqCst) > before);
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no write failed while the cluster grew");
    assert_eq!(c.leaders(), vec![leader.clone()], "growing did not cost the leader its leadership");
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    for id in c.running() {
        c.wait_applied(&id, last, T).await;
        assert_eq!(c.applied(&id), c.applied(&leader), "{id} has the same state");
    }
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(voters(&conf).len(), 5);
    // Each new server was first added as a non-voter, then promoted.
    let mut stages = Vec::new();
    while let Ok(Observation::PeerChanged(s)) = changes.try_recv() {
        stages.push((s.id.to_string(), s.suffrage));
    }
    for i in 2..=5 {
        let id = format!("n{i}");
        let seen: Vec<Suffrage> = stages.iter().filter(|(s, _)| *s == id).map(|(_, v)| *v).collect();
        assert_eq!(seen, vec![Suffrage::Nonvoter, Suffrage::Voter], "{id}: {stages:?}");
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn removing_the_leader_makes_it_step_down_and_the_rest_carry_on() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("before", T).await.expect("apply");
    c.raft(&leader).remove_server(ServerId::from(leader.as_str()), 0, T).await.expect("remove self");
    let others: Vec<String> = c.running().into_iter().filter(|id| *id != leader).collect();
    let new = c.wait_for_leader_among(&others, T).await;
    assert_ne!(new, leader);
    assert_ne!(c.raft(&leader).state(), RaftState::Leader, "removed leader stepped down");
    let (conf, _) = c.raft(&new).get_configuration().await.expect("configuration");
    assert!(conf.server(&ServerId::from(leader.as_str())).is_none());
    c.raft(&new).apply("after", T).await.expect("cluster of two still commits");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_node_is_replaced() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let failed = c.running().into_iter().find(|id| *id != leader).expect("follower");
    c.stop(&failed).await;
    c.raft(&leader).remove_server(ServerId::from(failed.as_str()), 0, T).await.expect("remove failed node");
    c.add_node("n4").await;
    c.raft(&leader).add_voter("n4".into(), "n4".into(), 0, T).await.expect("add replacement");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    let mut v = voters(&conf);
    v.sort();
    let mut expected: Vec<String> = c.running();
    expected.sort();
    assert_eq!(v, expected);
    let last = c.raft(&leader).apply("x", T).await.expect("apply").index;
    c.wait_applied("n4", last, T).await;
    // The joined node learns the leader's address once it has the
    // configuration, even though it heard from the leader before.
    let deadline = tokio::time::Instant::now() + T;
    while c.raft("n4").leader().map(|(id, _)| id.to_string()) != Some(leader.clone()) {
        assert!(tokio::time::Instant::now() < deadline, "n4 never reported the leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_new_node = c.raft("n4").apply("y", T).await;
    assert!(
        matches!(&on_new_node, Err(Error::NotLeader { leader: Some((id, _)) }) if id.as_str() == leader),
        "got {on_new_node:?}"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn demote_then_remove_and_prev_index_guards_concurrent_changes() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let other = c.running().into_iter().find(|id| *id != leader).expect("follower");
    let (_, index) = c.raft(&leader).get_configuration().await.expect("configuration");
    let demoted =
        c.raft(&leader).demote_voter(ServerId::from(other.as_str()), index, T).await.expect("demote");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(conf.server(&ServerId::from(other.as_str())).map(|s| s.suffrage), Some(Suffrage::Nonvoter));
    // A change based on the old configuration index is refused.
    let stale = c.raft(&leader).remove_server(ServerId::from(other.as_str()), index, T).await;
    assert!(matches!(stale, Err(Error::StalePrevIndex { current }) if current == demoted), "got {stale:?}");
    c.raft(&leader).remove_server(ServerId::from(other.as_str()), demoted, T).await.expect("remove");
    let unknown = c.raft(&leader).remove_server("nobody".into(), 0, T).await;
    assert!(matches!(unknown, Err(Error::UnknownServer(_))));
    let follower =
        c.running().into_iter().find(|id| *id != leader && *id != other).expect("a member follower");
    let on_follower = c.raft(&follower).add_voter("n9".into(), "n9".into(), 0, T).await;
    assert!(matches!(on_follower, Err(Error::NotLeader { .. })), "got {on_follower:?}");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leadership_moves_to_a_named_server() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let target = c.running().into_iter().find(|id| *id != leader).expect("follower");
    c.raft(&leader).apply("x", T).await.expect("apply");
    c.raft(&leader)
        .leadership_transfer_to_server(ServerId::from(target.as_str()), target.as_str().into())
        .await
        .expect("transfer");
    assert_eq!(c.wait_for_leader().await, target);
    // And to whoever is most up to date.
    c.raft(&target).leadership_transfer().await.expect("transfer");
    let third = c.wait_for_leader().await;
    assert_ne!(third, target);
    let unknown = c.raft(&third).leadership_transfer_to_server("nobody".into(), "nobody".into()).await;
    assert!(matches!(unknown, Err(Error::UnknownServer(_))));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leadership_transfer_to_an_unreachable_server_fails_clearly() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let target = c.running().into_iter().find(|id| *id != leader).expect("follower");
    c.net.isolate(&target.as_str().into());
    let result = c
        .raft(&leader)
        .leadership_transfer_to_server(ServerId::from(target.as_str()), target.as_str().into())
        .await;
    assert!(matches!(result, Err(Error::LeadershipTransferFailed(_))), "got {result:?}");
    assert_eq!(c.raft(&leader).state(), RaftState::Leader, "the old leader keeps leading");
    c.raft(&leader).apply("after", T).await.expect("writes accepted again");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_node_that_keeps_running_cannot_bump_the_term() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let removed = c.running().into_iter().find(|id| *id != leader).expect("follower");
    c.raft(&leader).remove_server(ServerId::from(removed.as_str()), 0, T).await.expect("remove");
    let term = c.raft(&leader).metrics().borrow().term;
    // Many election timeouts pass with the removed node still running.
    for _ in 0..10 {
        c.raft(&leader).apply("tick", T).await.expect("apply");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.raft(&leader).metrics().borrow().term, term, "cluster term undisturbed");
    assert_eq!(c.raft(&leader).state(), RaftState::Leader);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn recover_cluster_brings_back_a_cluster_that_lost_two_of_three_nodes() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    for i in 0..20 {
        c.raft(&leader).apply(format!("w{i}"), T).await.expect("apply");
    }
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    c.wait_applied("n1", last, T).await;
    let expected = c.applied(&leader);
    c.shutdown().await;
    // n2 and n3 are gone for good; only n1's disks survive.
    let survivor = c.nodes.remove("n1").expect("n1");
    let config = raft_tests::test_config("n1");
    let only_n1 = Configuration::new(vec![Server::voter("n1", "n1")]);
    raft::recover_cluster(
        &config,
        RecordingFsm::default(),
        &survivor.store,
        &survivor.store,
        &survivor.snaps,
        only_n1,
    )
    .await
    .expect("recover");
    c.nodes.insert("n1".into(), survivor);
    c.start("n1").await;
    assert_eq!(c.wait_for_leader().await, "n1");
    let next = c.raft("n1").apply("after-recovery", T).await.expect("apply").index;
    c.wait_applied("n1", next, T).await;
    let mut applied = c.applied("n1");
    assert_eq!(applied.pop().map(|(_, d)| d), Some(bytes::Bytes::from("after-recovery")));
    assert_eq!(applied, expected, "every write of the lost cluster survived");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn observers_see_leader_state_and_peer_changes() {
    let mut c = TestCluster::new(3).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let observer = Observer::new(tx, true, None);
    let id = c.raft("n1").register_observer(observer.clone());
    c.raft("n2").register_observer(observer.clone());
    c.raft("n3").register_observer(observer);
    let leader = c.wait_for_leader().await;
    c.add_node("n4").await;
    c.raft(&leader).add_nonvoter("n4".into(), "n4".into(), 0, T).await.expect("add nonvoter");
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    c.wait_applied("n1", last, T).await;
    let mut seen = Vec::new();
    while let Ok(o) = rx.try_recv() {
        seen.push(o);
    }
    assert!(seen.iter().any(|o| matches!(o, Observation::LeaderChanged(Some(_)))), "{seen:?}");
    assert!(seen.iter().any(|o| matches!(o, Observation::StateChanged(RaftState::Leader))), "{seen:?}");
    assert!(seen.iter().any(|o| matches!(o, Observation::RequestVote { .. })), "{seen:?}");
    assert!(
        seen.iter().any(|o| matches!(o, Observation::PeerChanged(s) if s.id.as_str() == "n4")),
        "{seen:?}"
    );
    assert!(c.raft("n1").deregister_observer(id));
    assert!(!c.raft("n1").deregister_observer(id));

    // A filtered, non-blocking observer on the leader sees failed heartbeats.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let only_failures = Arc::new(|o: &Observation| matches!(o, Observation::FailedHeartbeat { .. }));
    c.raft(&leader).register_observer(Observer::new(tx, false, Some(only_failures)));
    let victim = c.running().into_iter().find(|id| *id != leader && id != "n4").expect("follower");
    c.stop(&victim).await;
    let got = tokio::time::timeout(T, rx.recv()).await.expect("failed heartbeat observed");
    assert!(matches!(got, Some(Observation::FailedHeartbeat { ref peer, .. }) if peer.as_str() == victim));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reload_config_changes_timeouts_and_rejects_invalid_settings() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let mut rc = raft.reloadable_config();
    rc.snapshot_threshold = 10;
    rc.heartbeat_timeout = Duration::from_millis(80);
    rc.election_timeout = Duration::from_millis(80);
    raft.reload_config(rc.clone()).expect("reload");
    assert_eq!(raft.reloadable_config(), rc);
    let bad = ReloadableConfig { election_timeout: Duration::from_millis(1), ..rc.clone() };
    assert!(matches!(raft.reload_config(bad), Err(Error::InvalidConfig(_))));
    assert_eq!(raft.reloadable_config(), rc, "a rejected reload changes nothing");
    // The new snapshot threshold takes effect: a snapshot appears.
    for i in 0..30 {
        raft.apply(format!("x{i}"), T).await.expect("apply");
    }
    let mut metrics = raft.metrics();
    tokio::time::timeout(
        Duration::from_secs(300),
        metrics.wait_for(|m| {
            m.last_snapshot_index > 0 && m.peers.len() == 2 && m.peers.values().all(|p| p.match_index > 0)
        }),
    )
    .await
    .expect("a snapshot under the reloaded threshold and per-peer progress in metrics")
    .expect("metrics");
    c.shutdown().await;
}
