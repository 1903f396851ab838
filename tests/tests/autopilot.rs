//! Autopilot through the public API on the in-memory network, under
//! tokio's paused clock: health in the metrics and stats, `add_voter`
//! promoting only after the stabilization time (restarted by a lapse of
//! health, bounded by the call's timeout), and dead-server cleanup that
//! removes a crashed voter of five but never drops the voters below
//! `min_quorum`.

use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{AutopilotConfig, Config, Configuration, Error, Metrics, ServerId, Suffrage};
use raft_tests::TestCluster;
use tokio::time::Instant;

const T: Duration = Duration::from_secs(10);
/// The test clusters' tick: a tenth of their 50 ms heartbeat timeout.
const TICK: Duration = Duration::from_millis(5);
const STABILIZATION: Duration = Duration::from_secs(2);
const DEAD_AFTER: Duration = Duration::from_secs(1);

fn stabilizing(c: &mut Config) {
    c.autopilot =
        Some(AutopilotConfig { server_stabilization_time: STABILIZATION, ..AutopilotConfig::default() });
}

fn cleaning(c: &mut Config) {
    c.autopilot = Some(AutopilotConfig {
        cleanup_dead_servers: true,
        dead_server_after: DEAD_AFTER,
        min_quorum: 3,
        ..AutopilotConfig::default()
    });
}

fn suffrage(c: &Configuration, id: &str) -> Option<Suffrage> {
    c.server(&ServerId::from(id)).map(|s| s.suffrage)
}

fn metrics(c: &TestCluster, id: &str) -> Metrics {
    c.raft(id).metrics().borrow().clone()
}

/// Polls `cond` every tick of virtual time until it holds; returns when
/// it first did. Panics after `T`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + T;
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(TICK).await;
    }
}

async fn configuration(c: &TestCluster, leader: &str) -> Configuration {
    c.raft(leader).get_configuration().await.expect("configuration").0
}

#[tokio::test(start_paused = true)]
async fn the_leader_publishes_each_followers_health_lag_and_the_clusters_tolerance() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("x", T).await.expect("apply");
    let followers: Vec<String> = c.running().into_iter().filter(|id| *id != leader).collect();
    wait_until("every follower is healthy", || {
        let m = metrics(&c, &leader);
        followers.iter().all(|f| m.peers.get(&ServerId::from(f.as_str())).is_some_and(|p| p.healthy))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = metrics(&c, &leader);
    for f in &followers {
        let p = &m.peers[&ServerId::from(f.as_str())];
        assert!(p.healthy && p.lag == 0, "{f}: {p:?}");
        assert!(p.healthy_for >= Duration::from_millis(500) - TICK, "{f} healthy without a break: {p:?}");
    }
    let stats = c.raft(&leader).stats();
    assert_eq!(stats.get("autopilot_healthy").map(String::as_str), Some("true"), "{stats:?}");
    assert_eq!(stats.get("autopilot_failure_tolerance").map(String::as_str), Some("1"));
    assert_eq!(stats.get(&format!("peer.{}.healthy", followers[0])).map(String::as_str), Some("true"));
    assert_eq!(stats.get(&format!("peer.{}.lag", followers[0])).map(String::as_str), Some("0"));

    // A follower that stops answering turns unhealthy within the default
    // last-contact threshold (200 ms) plus a tick or two.
    c.net.isolate(&followers[0].as_str().into());
    let cut_at = Instant::now();
    let unhealthy_at = wait_until("the cut-off follower is unhealthy", || {
        !metrics(&c, &leader).peers[&ServerId::from(followers[0].as_str())].healthy
    })
    .await;
    let after = unhealthy_at - cut_at;
    assert!(
        after > Duration::from_millis(190) && after <= Duration::from_millis(220),
        "unhealthy after {after:?}"
    );
    let p = &metrics(&c, &leader).peers[&ServerId::from(followers[0].as_str())];
    assert_eq!(p.healthy_for, Duration::ZERO);
    let stats = c.raft(&leader).stats();
    assert_eq!(stats.get("autopilot_healthy").map(String::as_str), Some("false"));
    assert_eq!(stats.get("autopilot_failure_tolerance").map(String::as_str), Some("0"));
    c.shutdown().await;
}

/// Starts a three-voter cluster with `configure`, adds node n4 and calls
/// `add_voter` for it with `timeout` in a task. Returns the cluster, the
/// leader, the call, and when n4 first showed healthy on the leader.
async fn adding_n4(
    configure: fn(&mut Config),
    timeout: Duration,
) -> (TestCluster, String, tokio::task::JoinHandle<raft::Result<u64>>, Instant) {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), configure).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("x", T).await.expect("apply");
    c.add_node("n4").await;
    let raft = c.raft(&leader).clone();
    let add = tokio::spawn(async move { raft.add_voter("n4".into(), "n4".into(), 0, timeout).await });
    let healthy_at = wait_until("n4 is healthy", || {
        metrics(&c, &leader).peers.get(&ServerId::from("n4")).is_some_and(|p| p.healthy)
    })
    .await;
    (c, leader, add, healthy_at)
}

#[tokio::test(start_paused = true)]
async fn add_voter_with_autopilot_promotes_only_after_the_stabilization_time() {
    let (mut c, leader, add, healthy_at) = adding_n4(stabilizing, T).await;
    // Caught up long ago (catch-up alone promotes within a few ticks), but
    // not yet healthy for the stabilization time: still a non-voter.
    tokio::time::sleep_until(healthy_at + STABILIZATION - 4 * TICK).await;
    assert_eq!(suffrage(&configuration(&c, &leader).await, "n4"), Some(Suffrage::Nonvoter));
    assert!(!add.is_finished(), "add_voter still waiting");
    let index = add.await.expect("task").expect("promoted");
    let promoted_after = healthy_at.elapsed();
    assert!(
        promoted_after >= STABILIZATION - 2 * TICK
            && promoted_after <= STABILIZATION + Duration::from_millis(100),
        "promoted {promoted_after:?} after first healthy"
    );
    let (conf, at) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!((suffrage(&conf, "n4"), at), (Some(Suffrage::Voter), index));
    let p = metrics(&c, &leader).peers[&ServerId::from("n4")].clone();
    assert!(p.healthy && p.healthy_for >= STABILIZATION - TICK, "{p:?}");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_lapse_of_health_restarts_the_stabilization_clock() {
    let (mut c, leader, add, healthy_at) = adding_n4(stabilizing, T).await;
    // Halfway through, n4 stops answering for longer than the last-contact
    // threshold, then comes back.
    tokio::time::sleep_until(healthy_at + STABILIZATION / 2).await;
    c.net.isolate(&"n4".into());
    wait_until("n4 is unhealthy", || !metrics(&c, &leader).peers[&ServerId::from("n4")].healthy).await;
    c.net.heal();
    let healthy_again =
        wait_until("n4 is healthy again", || metrics(&c, &leader).peers[&ServerId::from("n4")].healthy).await;
    // The first stretch of health no longer counts.
    tokio::time::sleep_until(healthy_at + STABILIZATION + Duration::from_millis(100)).await;
    assert_eq!(suffrage(&configuration(&c, &leader).await, "n4"), Some(Suffrage::Nonvoter));
    add.await.expect("task").expect("promoted");
    let after = healthy_again.elapsed();
    assert!(after >= STABILIZATION - 2 * TICK, "promoted {after:?} after it was healthy again");
    assert_eq!(suffrage(&configuration(&c, &leader).await, "n4"), Some(Suffrage::Voter));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn add_voter_times_out_while_stabilizing_and_the_server_stays_a_nonvoter() {
    let (mut c, leader, add, _) = adding_n4(stabilizing, STABILIZATION / 2).await;
    let answer = add.await.expect("task");
    assert!(matches!(&answer, Err(Error::CatchUpTimeout { id, .. }) if id.as_str() == "n4"), "{answer:?}");
    assert_eq!(suffrage(&configuration(&c, &leader).await, "n4"), Some(Suffrage::Nonvoter));
    // Later changes are not blocked.
    c.raft(&leader).remove_server("n4".into(), 0, T).await.expect("remove n4");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_crashed_voter_of_five_is_removed_after_dead_server_after() {
    let mut c = TestCluster::with_config(5, InmemNetwork::new(), cleaning).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("x", T).await.expect("apply");
    let victim = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    c.stop(&victim).await;
    let stopped_at = Instant::now();
    // Not dead yet shortly before the bound.
    tokio::time::sleep_until(stopped_at + DEAD_AFTER - 4 * TICK).await;
    assert_eq!(suffrage(&configuration(&c, &leader).await, &victim), Some(Suffrage::Voter));
    let removed_at = wait_until("the dead voter is removed", || {
        metrics(&c, &leader).configuration.server(&ServerId::from(victim.as_str())).is_none()
    })
    .await;
    let after = removed_at - stopped_at;
    assert!(after <= DEAD_AFTER + Duration::from_millis(100), "removed {after:?} after it stopped");
    let conf = configuration(&c, &leader).await;
    assert_eq!(conf.voters().count(), 4, "{conf:?}");
    assert_eq!(c.leaders(), vec![leader.clone()], "the leader carried on");
    c.raft(&leader).apply("after", T).await.expect("the four voters commit");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn three_voters_with_min_quorum_three_never_lose_a_dead_voter_but_a_dead_nonvoter_goes() {
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), cleaning).await;
    let leader = c.wait_for_leader().await;
    c.add_node("n4").await;
    c.raft(&leader).add_nonvoter("n4".into(), "n4".into(), 0, T).await.expect("add non-voter");
    let victim = c.running().into_iter().find(|id| *id != leader && id != "n4").expect("a follower");
    c.stop(&victim).await;
    c.stop("n4").await;
    wait_until("the dead non-voter is removed", || {
        metrics(&c, &leader).configuration.server(&ServerId::from("n4")).is_none()
    })
    .await;
    tokio::time::sleep(10 * DEAD_AFTER).await;
    let conf = configuration(&c, &leader).await;
    assert_eq!(conf.voters().count(), 3, "min_quorum 3 keeps the dead voter: {conf:?}");
    assert_eq!(suffrage(&conf, &victim), Some(Suffrage::Voter));
    assert!(!metrics(&c, &leader).peers[&ServerId::from(victim.as_str())].healthy);
    c.raft(&leader).apply("still", T).await.expect("two of three commit");
    c.shutdown().await;
}

fn watching_only(c: &mut Config) {
    c.autopilot = Some(AutopilotConfig { dead_server_after: DEAD_AFTER, ..AutopilotConfig::default() });
}

#[tokio::test(start_paused = true)]
async fn cleanup_is_opt_in_a_dead_voter_stays_without_it() {
    let mut c = TestCluster::with_config(5, InmemNetwork::new(), watching_only).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("x", T).await.expect("apply");
    let victim = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    c.stop(&victim).await;
    tokio::time::sleep(5 * DEAD_AFTER).await;
    let conf = configuration(&c, &leader).await;
    assert_eq!(suffrage(&conf, &victim), Some(Suffrage::Voter), "{conf:?}");
    assert!(!metrics(&c, &leader).peers[&ServerId::from(victim.as_str())].healthy);
    c.shutdown().await;
}
