//! Tests of `autopilot.rs`: server health, stabilization before promotion
//! and dead-server cleanup (Consul's autopilot rules; the promotion path is
//! the thesis' §4.2.1 catch-up), as pure rules and on the scenario driver.

use super::*;
use crate::core::scenario::*;
use crate::core::{Core, CoreConfig};
use crate::types::Server;

fn bounds() -> AutopilotTicks {
    AutopilotTicks {
        contact_ticks: 2,
        max_trailing_logs: 10,
        stabilization_ticks: 5,
        dead_ticks: 20,
        min_quorum: 3,
    }
}

fn peer(id: &str, matched: u64, ticks_since_contact: u64) -> PeerProgress {
    PeerProgress { id: id.into(), matched, next: matched + 1, ticks_since_contact }
}

fn voters(n: usize) -> Configuration {
    Configuration::new((1..=n).map(|i| Server::voter(format!("n{i}"), format!("n{i}"))).collect())
}

/// Observes `peers` `times` times in term 1 with last index 100.
fn observe(t: &mut HealthTracker, peers: &[PeerProgress], times: usize) {
    for _ in 0..times {
        t.observe(1, 100, peers, &bounds());
    }
}

#[test]
fn healthy_means_recent_contact_and_a_short_lag() {
    let b = bounds();
    assert!(is_healthy(&peer("n2", 100, 0), 100, &b));
    assert!(is_healthy(&peer("n2", 90, 2), 100, &b), "both bounds are inclusive");
    assert!(!is_healthy(&peer("n2", 100, 3), 100, &b), "answered too long ago");
    assert!(!is_healthy(&peer("n2", 89, 0), 100, &b), "too far behind");
    // A server that never acknowledged anything is not healthy, however
    // short the log (thesis §4.2.1's match index 0).
    assert!(!is_healthy(&peer("n2", 0, 0), 5, &b));
}

#[test]
fn healthy_time_counts_from_the_first_healthy_observation() {
    let mut t = HealthTracker::default();
    observe(&mut t, &[peer("n2", 100, 0)], 1);
    let h = t.health(&"n2".into()).expect("observed");
    assert_eq!((h.healthy, h.healthy_ticks, h.lag), (true, 0, 0));
    observe(&mut t, &[peer("n2", 95, 1)], 3);
    let h = t.health(&"n2".into()).expect("observed");
    assert_eq!((h.healthy, h.healthy_ticks, h.lag, h.silent_ticks), (true, 3, 5, 1));
    assert_eq!(t.health(&"n3".into()), None, "never observed");
}

#[test]
fn becoming_unhealthy_restarts_the_stabilization_clock() {
    let b = bounds();
    let mut t = HealthTracker::default();
    observe(&mut t, &[peer("n4", 100, 0)], 5);
    assert_eq!(
        stability(t.health(&"n4".into()), &b),
        Stability::Unstable { healthy: true, healthy_ticks: 4, needed: 5 }
    );
    // One observation out of contact: the count starts over.
    observe(&mut t, &[peer("n4", 100, 3)], 1);
    assert_eq!(
        stability(t.health(&"n4".into()), &b),
        Stability::Unstable { healthy: false, healthy_ticks: 0, needed: 5 }
    );
    observe(&mut t, &[peer("n4", 100, 0)], 5);
    assert!(matches!(stability(t.health(&"n4".into()), &b), Stability::Unstable { healthy_ticks: 4, .. }));
    observe(&mut t, &[peer("n4", 100, 0)], 1);
    assert_eq!(stability(t.health(&"n4".into()), &b), Stability::Stable);
    // Falling behind is unhealthy too.
    observe(&mut t, &[peer("n4", 50, 0)], 1);
    assert!(matches!(stability(t.health(&"n4".into()), &b), Stability::Unstable { healthy: false, .. }));
    assert!(matches!(stability(None, &b), Stability::Unstable { healthy: false, healthy_ticks: 0, .. }));
}

#[test]
fn a_new_term_starts_over_and_departed_servers_are_forgotten() {
    let mut t = HealthTracker::default();
    observe(&mut t, &[peer("n2", 100, 0), peer("n3", 100, 0)], 4);
    assert_eq!(t.health(&"n2".into()).map(|h| h.healthy_ticks), Some(3));
    t.observe(1, 100, &[peer("n2", 100, 0)], &bounds());
    assert_eq!(t.health(&"n3".into()), None, "n3 left the leader's progress");
    t.observe(2, 100, &[peer("n2", 100, 0)], &bounds());
    assert_eq!(t.health(&"n2".into()).map(|h| h.healthy_ticks), Some(0), "a new leadership starts over");
    t.clear();
    assert_eq!(t.health(&"n2".into()), None);
}

/// A tracker that saw `dead` silent for `silent` ticks and everyone else
/// healthy (the leader "n1" is not in its peers).
fn tracker_with(all: &[&str], dead: &[&str], silent: u64) -> HealthTracker {
    let peers: Vec<PeerProgress> = all
        .iter()
        .filter(|id| **id != "n1")
        .map(|id| if dead.contains(id) { peer(id, 50, silent) } else { peer(id, 100, 0) })
        .collect();
    let mut t = HealthTracker::default();
    observe(&mut t, &peers, 1);
    t
}

#[test]
fn a_dead_voter_is_removed_when_enough_healthy_voters_remain() {
    let b = bounds();
    let config = voters(5);
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &["n5"], 20);
    assert_eq!(
        dead_server(&config, &"n1".into(), &t, &b, &[]),
        Some(Cleanup::Remove { id: "n5".into(), voter: true, silent_ticks: 20 })
    );
    // Silent for less than the dead-server bound: not dead yet.
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &["n5"], 19);
    assert_eq!(dead_server(&config, &"n1".into(), &t, &b, &[]), None);
    // Everyone answering: nothing to do.
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &[], 0);
    assert_eq!(dead_server(&config, &"n1".into(), &t, &b, &[]), None);
}

#[test]
fn cleanup_never_drops_the_voters_below_min_quorum() {
    let b = bounds();
    let t = tracker_with(&["n1", "n2", "n3"], &["n3"], 100);
    assert_eq!(
        dead_server(&voters(3), &"n1".into(), &t, &b, &[]),
        Some(Cleanup::Held {
            id: "n3".into(),
            silent_ticks: 100,
            reason: HeldReason::BelowMinQuorum { remaining: 2, min_quorum: 3 }
        })
    );
    // With min_quorum 2 the same cluster may shrink to two voters.
    let b2 = AutopilotTicks { min_quorum: 2, ..b };
    assert!(matches!(dead_server(&voters(3), &"n1".into(), &t, &b2, &[]), Some(Cleanup::Remove { .. })));
}

#[test]
fn cleanup_never_leaves_a_configuration_without_a_healthy_majority() {
    let b = AutopilotTicks { min_quorum: 1, ..bounds() };
    // 5 voters, 3 dead: removing one leaves 4 voters of which 2 are healthy.
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &["n3", "n4", "n5"], 30);
    assert_eq!(
        dead_server(&voters(5), &"n1".into(), &t, &b, &[]),
        Some(Cleanup::Held {
            id: "n3".into(),
            silent_ticks: 30,
            reason: HeldReason::NoHealthyQuorum { healthy: 2, remaining: 4 }
        })
    );
    // 5 voters, 2 dead: 4 left, 3 healthy (the leader counted): removed.
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &["n4", "n5"], 30);
    assert!(matches!(dead_server(&voters(5), &"n1".into(), &t, &b, &[]), Some(Cleanup::Remove { .. })));
}

#[test]
fn cleanup_prefers_dead_nonvoters_and_never_removes_the_leader_or_a_server_being_promoted() {
    let b = bounds();
    let mut config = voters(3);
    config.servers.push(Server::nonvoter("n4", "n4"));
    config.servers.push(Server::nonvoter("n5", "n5"));
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &["n3", "n4", "n5"], 40);
    assert_eq!(
        dead_server(&config, &"n1".into(), &t, &b, &[]),
        Some(Cleanup::Remove { id: "n4".into(), voter: false, silent_ticks: 40 }),
        "a dead non-voter goes first (lowest id among equals)"
    );
    assert_eq!(
        dead_server(&config, &"n1".into(), &t, &b, &["n4".into()]),
        Some(Cleanup::Remove { id: "n5".into(), voter: false, silent_ticks: 40 }),
        "a server being promoted is left to its promotion"
    );
    // The leader itself is never a candidate, even when it is not tracked.
    let t = tracker_with(&["n2", "n3"], &[], 0);
    assert_eq!(dead_server(&voters(3), &"n1".into(), &t, &b, &[]), None);
}

#[test]
fn cleanup_leaves_joint_configurations_alone() {
    let mut config = voters(5);
    config.servers[4].suffrage = Suffrage::LeavingVoter;
    let t = tracker_with(&["n1", "n2", "n3", "n4", "n5"], &["n4"], 100);
    assert_eq!(
        dead_server(&config, &"n1".into(), &t, &AutopilotTicks { min_quorum: 1, ..bounds() }, &[]),
        None
    );
}

/// One tick of every node, the messages it causes, then one observation
/// of the leader `n1`.
fn tick_and_observe(c: &mut Cluster, t: &mut HealthTracker, b: &AutopilotTicks) {
    for core in c.cores() {
        core.tick();
    }
    c.settle();
    let leader: &mut Core = c.node("n1");
    t.observe(leader.term(), leader.last_index(), &leader.peer_progress(), b);
}

// On real replication: a crashed voter of five turns unhealthy at once,
// counts as dead after the bound, and is the one cleanup picks; the
// healthy ones stay healthy throughout.
#[test]
fn a_crashed_voter_of_five_becomes_dead_on_the_leaders_progress() {
    let b = AutopilotTicks {
        contact_ticks: 2,
        max_trailing_logs: 250,
        stabilization_ticks: 5,
        dead_ticks: 8,
        min_quorum: 3,
    };
    let mut c = Cluster::new(5, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let mut t = HealthTracker::default();
    for _ in 0..3 {
        tick_and_observe(&mut c, &mut t, &b);
    }
    for id in ["n2", "n3", "n4", "n5"] {
        assert!(t.health(&id.into()).is_some_and(|h| h.healthy), "{id} answers");
    }
    c.isolate("n5");
    for _ in 0..3 {
        tick_and_observe(&mut c, &mut t, &b);
    }
    assert!(t.health(&"n5".into()).is_some_and(|h| !h.healthy), "silent for more than the contact bound");
    assert_eq!(dead_server(c.node("n1").configuration().0, &"n1".into(), &t, &b, &[]), None, "not dead yet");
    for _ in 0..5 {
        tick_and_observe(&mut c, &mut t, &b);
    }
    let config = c.node("n1").configuration().0.clone();
    assert_eq!(
        dead_server(&config, &"n1".into(), &t, &b, &[]),
        Some(Cleanup::Remove { id: "n5".into(), voter: true, silent_ticks: 8 })
    );
    assert!(t.health(&"n2".into()).is_some_and(|h| h.healthy && h.healthy_ticks == 10));
}
