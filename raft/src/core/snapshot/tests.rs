//! Scenario tests of `snapshot.rs`: Snapshots (§7): asking for one, installing one, and what comes after. Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;

#[test]
fn s7_leader_asks_for_a_snapshot_when_a_follower_needs_compacted_entries() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.isolate("n3");
    c.propose_many("n1", 20);
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("compact");
    assert!(c.node("n1").compact(applied + 1).is_err(), "cannot compact past what is applied");
    c.heal();
    let mut asked = false;
    for _ in 0..10 {
        c.node("n1").tick();
        c.collect();
        asked = c.host("n1").snapshots_to_send.contains(&ServerId::from("n3"));
        if asked {
            break;
        }
    }
    assert!(asked, "leader requested a snapshot for n3");
    // Streaming it succeeds: the follower is credited and replication resumes.
    let term = c.node("n1").term();
    c.node("n1").snapshot_sent(&"n3".into(), applied, term, true);
    let progress = c.node("n1").peer_progress();
    let n3 = progress.iter().find(|p| p.id.as_str() == "n3").expect("n3 tracked");
    assert_eq!(n3.matched, applied, "matched index is the snapshot's");
}

#[test]
fn s7_follower_installs_a_snapshot_discarding_a_conflicting_log() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    n1.hard.term = 2;
    n1.append_local((2..=6).map(|i| Log::new(i, 2, LogType::Command, "stale")).collect());
    let _ = n1.take_ready();
    let conf = n1.configuration().0.clone();
    assert_eq!(n1.install_snapshot(&"n2".into(), 1, 10, 3, conf.clone(), 1), Err(2), "stale term refused");
    assert_eq!(n1.install_snapshot(&"n2".into(), 3, 10, 3, conf.clone(), 1), Ok(true));
    assert_eq!((n1.last_index(), n1.last_term(), n1.commit_index()), (10, 3, 10));
    assert_eq!(n1.leader(), Some(&ServerId::from("n2")));
    let ready = n1.take_ready();
    assert_eq!(ready.installed_snapshot, Some(InstalledSnapshot { index: 10, term: 3, discard_log: true }));
    assert!(ready.committed.is_empty(), "nothing up to the snapshot is re-applied");
    assert_eq!(n1.install_snapshot(&"n2".into(), 3, 8, 3, conf, 1), Ok(false), "older snapshot ignored");
}

#[test]
fn s7_follower_keeps_the_log_suffix_that_follows_a_matching_snapshot() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    n1.hard.term = 2;
    n1.append_local((2..=8).map(|i| Log::new(i, 2, LogType::Command, "x")).collect());
    let _ = n1.take_ready();
    let conf = n1.configuration().0.clone();
    assert_eq!(n1.install_snapshot(&"n2".into(), 2, 5, 2, conf, 1), Ok(true));
    assert_eq!(n1.last_index(), 8, "entries after the snapshot are kept");
    assert!(n1.entry(5).is_none() && n1.entry(6).is_some());
    let ready = n1.take_ready();
    assert_eq!(ready.installed_snapshot, Some(InstalledSnapshot { index: 5, term: 2, discard_log: false }));
}

#[test]
fn s7_a_follower_caught_up_by_a_snapshot_is_not_probed_in_a_loop() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.isolate("n3");
    c.propose_many("n1", 5);
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("compact");
    c.heal();
    // Install the snapshot on n3 by hand and credit it on the leader.
    let term = c.node("n1").term();
    let conf = c.node("n1").configuration().0.clone();
    let mut sent = false;
    for _ in 0..10 {
        c.node("n1").tick();
        c.collect();
        sent = c.host("n1").snapshots_to_send.contains(&ServerId::from("n3"));
        if sent {
            break;
        }
    }
    assert!(sent);
    let snapshot_term = c.node("n1").term_at(applied).expect("term");
    assert_eq!(c.node("n3").install_snapshot(&"n1".into(), term, applied, snapshot_term, conf, 1), Ok(true));
    c.node("n1").snapshot_sent(&"n3".into(), applied, term, true);
    // Deliver everything; the exchange must come to rest (settle panics
    // after 10,000 messages without quiescence).
    c.settle();
    assert!(c.at_rest());
}
