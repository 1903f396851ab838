//! Scenario tests of `snapshot.rs`: Snapshots (§7): asking for one, installing one, and what comes after. Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::types::{Configuration, SnapshotPosition};

/// The position of a snapshot covering the log up to `index` (of `term`),
/// with `conf` from `conf_index`.
fn position(index: u64, term: u64, conf: &Configuration, conf_index: u64) -> SnapshotPosition {
    SnapshotPosition { index, term, configuration: conf.clone(), configuration_index: conf_index }
}

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
    assert_eq!(n1.install_snapshot(&"n2".into(), 1, position(10, 3, &conf, 1)), Err(2), "stale term refused");
    let installed = n1.install_snapshot(&"n2".into(), 3, position(10, 3, &conf, 1));
    let expected = InstalledSnapshot { position: position(10, 3, &conf, 1), discard_log: true };
    assert_eq!(installed, Ok(Some(expected)));
    assert_eq!((n1.last_index(), n1.last_term(), n1.commit_index()), (10, 3, 10));
    assert_eq!(n1.leader(), Some(&ServerId::from("n2")));
    let ready = n1.take_ready();
    assert!(ready.committed.is_empty(), "nothing up to the snapshot is re-applied");
    let older = n1.install_snapshot(&"n2".into(), 3, position(8, 3, &conf, 1));
    assert_eq!(older, Ok(None), "older snapshot ignored");
}

#[test]
fn s7_follower_keeps_the_log_suffix_that_follows_a_matching_snapshot() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    n1.hard.term = 2;
    n1.append_local((2..=8).map(|i| Log::new(i, 2, LogType::Command, "x")).collect());
    let _ = n1.take_ready();
    let conf = n1.configuration().0.clone();
    let installed = n1.install_snapshot(&"n2".into(), 2, position(5, 2, &conf, 1));
    let expected = InstalledSnapshot { position: position(5, 2, &conf, 1), discard_log: false };
    assert_eq!(installed, Ok(Some(expected)));
    assert_eq!(n1.last_index(), 8, "entries after the snapshot are kept");
    assert!(n1.entry(5).is_none() && n1.entry(6).is_some());
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
    let installed = c.install_snapshot("n3", "n1", term, position(applied, snapshot_term, &conf, 1));
    assert!(matches!(installed, Ok(Some(_))));
    assert_eq!(c.host("n3").disk.mem.log_start, applied, "the install's log deletion was written");
    c.node("n1").snapshot_sent(&"n3".into(), applied, term, true);
    // Deliver everything; the exchange must come to rest (settle panics
    // after 10,000 messages without quiescence).
    c.settle();
    assert!(c.at_rest());
}

#[test]
fn s7_restoring_a_snapshot_returns_the_position_it_covers() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let latest = c.node("n1").configuration().0.clone();
    let term = c.node("n1").term();
    let (noop, installed) = c.node("n1").restore_snapshot(50).expect("leader restores");
    assert_eq!(noop, 51);
    let expected = InstalledSnapshot { position: position(50, term, &latest, 50), discard_log: true };
    assert_eq!(installed, expected);
    assert_eq!(c.node("n1").configuration().1, 50, "the configuration now dates from the snapshot");
}
