//! A server removed from the configuration learns it and moves to the
//! terminal `Removed` state (issue 13 item 7), through the public API on the
//! in-memory network: requests fail at once with `Error::Removed`,
//! observers hear of it, and the rest of the cluster keeps writing.

use std::time::Duration;

use raft::observer::{Observation, Observer};
use raft::{Error, RaftState, ServerId};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(10);

/// Waits (bounded, virtual time) until node `id` reports `Removed`.
async fn wait_removed(c: &TestCluster<RecordingFsm>, id: &str) {
    let mut metrics = c.raft(id).metrics();
    tokio::time::timeout(T, metrics.wait_for(|m| m.state == RaftState::Removed))
        .await
        .unwrap_or_else(|_| panic!("{id} was not told it was removed within {T:?}"))
        .expect("metrics");
    assert_eq!(c.raft(id).state(), RaftState::Removed);
}

/// Every request on a removed node fails at once with `Error::Removed`.
async fn assert_refuses_at_once(c: &TestCluster<RecordingFsm>, id: &str) {
    let raft = c.raft(id);
    let start = tokio::time::Instant::now();
    let apply = raft.apply("x", T).await;
    assert!(matches!(apply, Err(Error::Removed)), "apply: {apply:?}");
    let read = raft.read_index().await;
    assert!(matches!(read, Err(Error::Removed)), "read: {read:?}");
    let barrier = raft.barrier(T).await;
    assert!(matches!(barrier, Err(Error::Removed)), "barrier: {barrier:?}");
    let change = raft.add_voter("n9".into(), "n9".into(), 0, T).await;
    assert!(matches!(change, Err(Error::Removed)), "add_voter: {change:?}");
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once, without waiting");
}

#[tokio::test(start_paused = true)]
async fn a_removed_follower_becomes_removed_and_refuses_requests_at_once() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    let (tx, mut seen) = tokio::sync::mpsc::channel(64);
    let states = std::sync::Arc::new(|o: &Observation| matches!(o, Observation::StateChanged(_)));
    c.raft(&follower).register_observer(Observer::new(tx, true, Some(states)));
    c.raft(&leader).apply("before", T).await.expect("apply");
    c.raft(&leader).remove_server(ServerId::from(follower.as_str()), 0, T).await.expect("remove");
    wait_removed(&c, &follower).await;
    assert_refuses_at_once(&c, &follower).await;
    let mut observed = Vec::new();
    while let Ok(o) = seen.try_recv() {
        observed.push(o);
    }
    assert!(
        observed.iter().any(|o| matches!(o, Observation::StateChanged(RaftState::Removed))),
        "observers were told: {observed:?}"
    );
    // It stays removed and quiet; the rest keep their leader and write.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.raft(&follower).state(), RaftState::Removed);
    assert_eq!(c.leaders(), vec![leader.clone()], "the removed server disturbed nobody");
    c.raft(&leader).apply("after", T).await.expect("the rest keep writing");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_leader_becomes_removed_and_the_rest_elect_a_new_leader() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("before", T).await.expect("apply");
    c.raft(&leader).remove_server(ServerId::from(leader.as_str()), 0, T).await.expect("remove self");
    wait_removed(&c, &leader).await;
    assert_refuses_at_once(&c, &leader).await;
    let others: Vec<String> = c.running().into_iter().filter(|id| *id != leader).collect();
    let new = c.wait_for_leader_among(&others, T).await;
    for i in 0..10 {
        c.raft(&new).apply(format!("after-{i}"), T).await.expect("the rest keep writing");
    }
    assert_eq!(c.raft(&leader).state(), RaftState::Removed, "stays removed");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_server_partitioned_during_its_removal_is_told_by_the_leader_once_healed() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    c.raft(&leader).apply("before", T).await.expect("apply");
    c.net.isolate(&follower.as_str().into());
    c.raft(&leader).remove_server(ServerId::from(follower.as_str()), 0, T).await.expect("remove");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(c.raft(&follower).state(), RaftState::Removed, "cut off, it cannot know yet");
    c.net.heal();
    wait_removed(&c, &follower).await;
    assert_refuses_at_once(&c, &follower).await;
    assert_eq!(c.leaders(), vec![leader.clone()], "the leader was not disturbed");
    c.raft(&leader).apply("after", T).await.expect("the rest keep writing");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_server_restarted_on_its_data_comes_back_removed() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    c.raft(&leader).remove_server(ServerId::from(follower.as_str()), 0, T).await.expect("remove");
    wait_removed(&c, &follower).await;
    c.stop(&follower).await;
    c.start(&follower).await;
    // Cut off, so only its own data can tell it (no leader can).
    c.net.isolate(&follower.as_str().into());
    wait_removed(&c, &follower).await;
    assert_refuses_at_once(&c, &follower).await;
    c.shutdown().await;
}

/// A removed server added back under the same id without wiping its data
/// still knows it was removed and ignores every request: `add_voter` and
/// `change_membership` end at once with `Error::ServerRemoved` (saying what
/// to do) instead of waiting for a catch-up that cannot happen; once its
/// data is wiped, adding it again works.
#[tokio::test(start_paused = true)]
async fn a_removed_server_added_back_with_its_old_data_is_refused_at_once_with_what_to_do() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let gone = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    let gone_id = ServerId::from(gone.as_str());
    c.raft(&leader).apply("before", T).await.expect("apply");
    c.raft(&leader).remove_server(gone_id.clone(), 0, T).await.expect("remove");
    wait_removed(&c, &gone).await;

    let start = tokio::time::Instant::now();
    let added = c.raft(&leader).add_voter(gone_id.clone(), gone.as_str().into(), 0, T).await;
    match added {
        Err(Error::ServerRemoved { id }) => assert_eq!(id, gone_id),
        other => panic!("add_voter of a server that kept its removed state: {other:?}"),
    }
    assert!(start.elapsed() < T / 4, "refused once it answered, not at the timeout: {:?}", start.elapsed());
    let text = Error::ServerRemoved { id: gone_id.clone() }.to_string();
    assert!(text.contains("wipe its data directory"), "{text}");

    let change = raft::ConfChange::AddVoter(gone_id.clone(), gone.as_str().into());
    let start = tokio::time::Instant::now();
    match c.raft(&leader).change_membership([change], 0, T).await {
        Err(Error::ServerRemoved { id }) => assert_eq!(id, gone_id),
        other => panic!("change_membership adding a server that kept its removed state: {other:?}"),
    }
    assert!(start.elapsed() < T / 4, "refused once it answered: {:?}", start.elapsed());
    c.raft(&leader).apply("meanwhile", T).await.expect("the cluster keeps writing");

    // Wiped, it catches up as a new server and becomes a voter.
    c.restart_wiped(&gone).await;
    c.raft(&leader)
        .add_voter(gone_id.clone(), gone.as_str().into(), 0, T)
        .await
        .expect("added after the wipe");
    assert_eq!(c.raft(&gone).state(), RaftState::Follower);
    c.shutdown().await;
}
