//! Scenario tests of `joint.rs` (joint consensus, Raft paper §6, thesis
//! §4.3): entering C_old,new only with caught-up new voters, deciding with
//! majorities of both halves, leaving automatically, handing leadership to
//! a voter of C_new, and resuming a change after a restart. Each test is
//! named after the section whose rule it checks and runs on the shared
//! driver in [`scenario`](crate::core::scenario).

use crate::core::confchange::{ConfChange, ConfChangeError};
use crate::core::scenario::*;
use crate::core::*;
use crate::types::{Configuration, ServerId};

fn add_voter(id: &str) -> ConfChange {
    ConfChange::AddVoter(id.into(), id.into())
}

fn remove(id: &str) -> ConfChange {
    ConfChange::Remove(id.into())
}

/// A 3-voter cluster led by n1, with empty nodes `extra` started (not yet
/// members).
fn cluster_with(extra: &[&str]) -> Cluster {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    for (i, id) in extra.iter().enumerate() {
        c.start(id, CoreConfig::for_tests(), 10 + i as u64, InitialState::default());
    }
    c.elect_node("n1");
    c.settle();
    c
}

/// Commits the staging configuration for `changes` on `leader` and lets
/// the new voters catch up.
fn stage(c: &mut Cluster, leader: &str, changes: &[ConfChange]) {
    let plan = c.node(leader).plan_membership_change(changes).expect("plan");
    if let Some(staging) = plan.staging {
        c.reconfigure(leader, staging);
    }
    c.tick_all(2);
}

fn voters(conf: &Configuration) -> Vec<String> {
    conf.voters().map(|id| id.to_string()).collect()
}

// §6: replacing two of three voters in one step goes through C_old,new
// and the leader leaves it for C_new by itself once the joint entry
// commits.
#[test]
fn s6_joint_change_replaces_two_voters_and_leaves_joint_automatically() {
    let mut c = cluster_with(&["n4", "n5"]);
    let changes = [remove("n2"), remove("n3"), add_voter("n4"), add_voter("n5")];
    stage(&mut c, "n1", &changes);
    let joint = c.node("n1").propose_joint(&changes).expect("caught up: joint accepted");
    assert!(c.node("n1").configuration().0.is_joint());
    assert_eq!(c.node("n1").joint_index(), Some(joint));
    c.settle();
    c.tick_all(3);
    let (conf, index) = c.node("n1").committed_configuration();
    assert!(index > joint, "C_new appended after the joint entry");
    assert!(!conf.is_joint());
    assert_eq!(voters(conf), ["n1", "n4", "n5"]);
    assert_eq!(c.node("n1").joint_index(), None);
    for id in ["n4", "n5"] {
        assert_eq!(c.node(id).configuration().1, index, "{id} holds C_new");
    }
    c.tick_all(30);
    assert!(c.node("n2").is_removed() && c.node("n3").is_removed(), "the removed voters learn it");
    c.node("n1").propose([cmd("after")]).expect("still leader");
    c.settle();
    c.tick_all(2);
    assert_eq!(c.node("n4").commit_index(), c.node("n1").last_index());
}

// §6 with thesis §4.2.1: new voters catch up as non-voters first; the
// joint entry is refused until each is a member that caught up.
#[test]
fn s6_joint_entry_waits_for_incoming_voters_to_catch_up() {
    let mut c = cluster_with(&["n4"]);
    let changes = [remove("n3"), add_voter("n4")];
    assert_eq!(
        c.node("n1").propose_joint(&changes),
        Err(Refusal::Membership(ConfChangeError::NotStaged("n4".into()))),
    );
    c.isolate("n4");
    stage(&mut c, "n1", &changes);
    let refused = c.node("n1").propose_joint(&changes);
    assert!(
        matches!(refused, Err(Refusal::Membership(ConfChangeError::NotCaughtUp { ref id, .. })) if id.as_str() == "n4"),
        "{refused:?}"
    );
    c.heal();
    c.tick_all(3);
    c.node("n1").propose_joint(&changes).expect("caught up now");
}

// §6: while joint, an entry commits only with a majority of the old AND
// of the new voters: the old majority alone is not enough. And the leader
// leaves the joint configuration only once the joint entry itself commits,
// not when an earlier entry does.
#[test]
fn s6_while_joint_commit_needs_both_majorities() {
    let mut c = cluster_with(&["n4", "n5"]);
    let changes = [remove("n2"), remove("n3"), add_voter("n4"), add_voter("n5")];
    stage(&mut c, "n1", &changes);
    // Entry x reaches everyone, but n1 hears back only from n4 and n5
    // (non-voters still): x is not committed yet.
    let x = c.node("n1").propose([cmd("x")]).expect("leader");
    c.settle_with(|m| {
        let from_old = ["n2", "n3"].contains(&m.from.as_str()) && m.to.as_str() == "n1";
        (!(from_old && matches!(m.body, Body::AppendEntriesResponse(_)))).then_some(m)
    });
    assert!(c.node("n1").commit_index() < x);
    // The new half is n1, n4, n5: cut n4 and n5 off, so that only the old
    // half (n1, n2, n3) acknowledges the joint entry.
    c.isolate("n4");
    c.isolate("n5");
    c.connect("n1", "n2");
    c.connect("n1", "n3");
    c.connect("n2", "n3");
    let joint = c.node("n1").propose_joint(&changes).expect("joint");
    c.settle();
    c.tick_all(4);
    assert!(c.progress("n1", "n2").is_some_and(|p| p.matched >= joint), "n2 acknowledged the joint entry");
    assert!(c.progress("n1", "n3").is_some_and(|p| p.matched >= joint), "n3 acknowledged the joint entry");
    assert!(c.node("n1").commit_index() >= x, "x is on a majority of both halves");
    assert!(c.node("n1").commit_index() < joint, "old majority alone does not commit the joint entry");
    assert_eq!(
        c.node("n1").joint_index(),
        Some(joint),
        "still joint: C_new waits for the joint entry to commit"
    );
    c.heal();
    c.tick_all(3);
    assert!(c.node("n1").commit_index() > joint, "committed once the new half acknowledges");
    assert_eq!(c.node("n1").joint_index(), None);
}

// §6: while joint, the new majority alone is not enough either: with the
// voters leaving cut off, the joint entry waits.
#[test]
fn s6_while_joint_the_new_majority_alone_does_not_commit() {
    let mut c = cluster_with(&["n4", "n5"]);
    let changes = [remove("n2"), remove("n3"), add_voter("n4"), add_voter("n5")];
    stage(&mut c, "n1", &changes);
    // Old half n1 n2 n3, new half n1 n4 n5: cut n2 and n3 off.
    c.isolate("n2");
    c.isolate("n3");
    c.connect("n1", "n4");
    c.connect("n1", "n5");
    c.connect("n4", "n5");
    let joint = c.node("n1").propose_joint(&changes).expect("joint");
    c.settle();
    c.tick_all(2);
    assert!(c.node("n4").last_index() >= joint && c.node("n5").last_index() >= joint);
    assert!(c.node("n1").commit_index() < joint, "new majority alone does not commit the joint entry");
    c.heal();
    c.tick_all(3);
    assert!(c.node("n1").commit_index() > joint, "committed once the old half acknowledges");
}

// §6: while joint, a candidate needs votes from a majority of each half;
// the old voters alone cannot elect a leader.
#[test]
fn s6_while_joint_an_election_needs_both_majorities() {
    let mut c = cluster_with(&["n4", "n5"]);
    let changes = [remove("n3"), add_voter("n4"), add_voter("n5")];
    stage(&mut c, "n1", &changes);
    // Deliver the joint entry everywhere but keep n1 from learning it was
    // acknowledged, so the configuration stays joint.
    c.node("n1").propose_joint(&changes).expect("joint");
    c.settle_with(|m| {
        (!matches!(m.body, Body::AppendEntriesResponse(_)) || m.to.as_str() != "n1").then_some(m)
    });
    for id in ["n2", "n3", "n4", "n5"] {
        assert!(c.node(id).configuration().0.is_joint(), "{id} holds the joint entry");
    }
    // Old half n1 n2 n3, new half n1 n2 n4 n5. n1 is gone; n4 and n5 are
    // cut off: n2 and n3 are an old majority but not a new one.
    c.crash("n1");
    c.isolate("n4");
    c.isolate("n5");
    c.connect("n2", "n3");
    c.tick_all(60);
    assert!(c.leaders().is_empty(), "no leader without a majority of the new voters: {:?}", c.leaders());
    c.heal();
    let leader = c.elect();
    assert!(["n2", "n4", "n5"].contains(&leader.as_str()), "a new-half voter leads: {leader}");
    c.tick_all(5);
    // The new leader leaves the joint configuration by itself.
    let (conf, _) = c.node(leader.as_str()).committed_configuration();
    assert!(!conf.is_joint(), "{conf:?}");
    assert_eq!(voters(conf), ["n1", "n2", "n4", "n5"]);
}

// §6 (and thesis §4.2.2): a leader that is not part of C_new keeps leading
// until C_new commits, then hands leadership to a voter of C_new with
// TimeoutNow instead of leaving the cluster to wait for an election
// timeout.
#[test]
fn s6_leader_outside_c_new_hands_off_after_c_new_commits() {
    let mut c = cluster_with(&["n4"]);
    let changes = [remove("n1"), add_voter("n4")];
    stage(&mut c, "n1", &changes);
    let joint = c.node("n1").propose_joint(&changes).expect("joint");
    c.record = true;
    c.settle();
    assert!(c.node("n1").is_removed(), "left once C_new committed");
    let handed = c.delivered.iter().any(|m| m.starts_with("n1->") && m.contains(" TimeoutNow "));
    assert!(handed, "TimeoutNow sent to a voter of C_new");
    // The new leader exists without waiting for any election timeout.
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_ne!(leaders[0].as_str(), "n1");
    let (conf, index) = c.node(leaders[0].as_str()).configuration();
    assert!(index > joint && !conf.is_joint());
    assert_eq!(voters(conf), ["n2", "n3", "n4"]);
}

// §6: a demoted leader keeps leading through the joint phase, then hands
// over and steps down as a non-voter.
#[test]
fn s6_demoted_leader_steps_down_after_c_new_commits() {
    let mut c = cluster_with(&[]);
    c.node("n1").propose_joint(&[ConfChange::Demote("n1".into())]).expect("joint");
    c.settle();
    assert!(!c.node("n1").is_leader(), "a non-voter of C_new does not lead");
    assert!(!c.node("n1").is_removed());
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1, "a voter took over at once: {leaders:?}");
    assert!(!c.node("n1").configuration().0.is_voter(&ServerId::from("n1")));
}

// §6: no other change starts while a configuration is joint.
#[test]
fn s6_no_other_change_while_joint() {
    let mut c = cluster_with(&["n4"]);
    let changes = [remove("n3"), add_voter("n4")];
    stage(&mut c, "n1", &changes);
    c.isolate("n2");
    c.isolate("n3");
    c.isolate("n4");
    let plan = c.node("n1").plan_membership_change(&changes).expect("plan");
    assert!(
        matches!(c.node("n1").propose_configuration(plan.joint), Err(Refusal::Invalid(_))),
        "a joint configuration only via propose_joint"
    );
    c.node("n1").propose_joint(&changes).expect("joint");
    let conf = c.node("n1").configuration().0.clone();
    assert_eq!(
        c.node("n1").propose_configuration(conf.leave_joint()),
        Err(Refusal::ConfigurationChangeInProgress)
    );
    assert_eq!(c.node("n1").propose_joint(&[remove("n2")]), Err(Refusal::ConfigurationChangeInProgress));
    c.heal();
    c.tick_all(3);
    // Committed and left: the joint configuration no longer blocks changes,
    // but a change planned against it is refused by the rules.
    assert_eq!(c.node("n1").joint_index(), None);
    assert_eq!(
        crate::core::confchange::apply_single(&conf, &remove("n2")),
        Err(ConfChangeError::JointInProgress)
    );
    c.node("n1").propose_joint(&[remove("n2")]).expect("a new change once C_new committed");
}

// §6: the joint state lives in the configuration entry, so a node
// restarted mid-change resumes it, and the next leader finishes it.
#[test]
fn s6_a_change_interrupted_by_a_leader_crash_completes_after_restart() {
    let mut c = cluster_with(&["n4", "n5"]);
    let changes = [remove("n2"), remove("n3"), add_voter("n4"), add_voter("n5")];
    stage(&mut c, "n1", &changes);
    c.node("n1").propose_joint(&changes).expect("joint");
    // Followers store the joint entry; the leader never hears back.
    c.settle_with(|m| {
        (!matches!(m.body, Body::AppendEntriesResponse(_)) || m.to.as_str() != "n1").then_some(m)
    });
    c.crash("n1");
    c.restart("n1", CoreConfig::for_tests(), 7);
    assert!(c.node("n1").configuration().0.is_joint(), "restarted in the joint configuration");
    let leader = c.elect();
    c.tick_all(5);
    let (conf, _) = c.node(leader.as_str()).committed_configuration();
    assert!(!conf.is_joint(), "the change completed: {conf:?}");
    assert_eq!(voters(conf), ["n1", "n4", "n5"]);
}

// §6 with §7: the joint state travels in snapshot metadata. Nodes whose
// log was compacted past the joint entry (restarting from that snapshot,
// or installing it from a leader) act on the joint configuration, and the
// next leader completes the change.
#[test]
fn s6_a_change_carried_by_a_snapshot_resumes_and_completes() {
    use crate::types::{HardState, Server, SnapshotPosition, Suffrage};
    let joint = Configuration::new(vec![
        Server::voter("n1", "n1"),
        Server::voter("n2", "n2"),
        Server { suffrage: Suffrage::LeavingVoter, ..Server::voter("n3", "n3") },
        Server { suffrage: Suffrage::IncomingVoter, ..Server::voter("n4", "n4") },
    ]);
    let position =
        SnapshotPosition { index: 5, term: 1, configuration: joint.clone(), configuration_index: 4 };
    let init = InitialState {
        hard_state: HardState { term: 1, vote: None },
        snapshot: Some(position.clone()),
        ..InitialState::default()
    };
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    for (i, id) in ["n1", "n2", "n3"].iter().enumerate() {
        c.start(id, CoreConfig::for_tests(), i as u64 + 1, init.clone());
    }
    // n4 starts empty and installs the snapshot from a leader.
    c.start("n4", CoreConfig::for_tests(), 4, InitialState::default());
    let installed = c.install_snapshot("n4", "n1", 1, position.clone());
    assert!(matches!(installed, Ok(Some(ref s)) if s.position == position), "{installed:?}");
    for id in ["n1", "n2", "n3", "n4"] {
        assert_eq!(c.node(id).configuration(), (&joint, 4), "{id} resumes the joint configuration");
        assert_eq!(c.node(id).joint_index(), Some(4));
    }
    let leader = c.elect();
    c.tick_all(5);
    let (conf, index) = c.node(leader.as_str()).committed_configuration();
    assert!(index > 5 && !conf.is_joint(), "the next leader left the joint configuration: {conf:?}");
    assert_eq!(voters(conf), ["n1", "n2", "n4"]);
}

/// A cluster in C_old,new (old voters n1 n2 n3, new voters n1 n4 n5)
/// whose joint entry cannot commit because n4 and n5 are cut off; n1 leads
/// and still hears from n2 and n3.
fn joint_without_the_new_half() -> Cluster {
    let mut c = cluster_with(&["n4", "n5"]);
    let changes = [remove("n2"), remove("n3"), add_voter("n4"), add_voter("n5")];
    stage(&mut c, "n1", &changes);
    c.isolate("n4");
    c.isolate("n5");
    c.connect("n1", "n2");
    c.connect("n1", "n3");
    c.connect("n2", "n3");
    let joint = c.node("n1").propose_joint(&changes).expect("joint");
    c.settle();
    assert_eq!(c.node("n1").joint_index(), Some(joint));
    c
}

// Thesis §6.4 with §6: while joint, a ReadIndex round is confirmed only by
// a majority of each half; the old voters' acknowledgements are not enough.
#[test]
fn s6_4_while_joint_a_read_needs_both_majorities() {
    let mut c = joint_without_the_new_half();
    c.node("n1").read_index(7).expect("leader accepts the read");
    for _ in 0..3 {
        c.node("n1").tick();
        c.settle();
    }
    assert!(c.reads("n1").is_empty(), "confirmed by the old half only: {:?}", c.reads("n1"));
    c.heal();
    for _ in 0..3 {
        c.node("n1").tick();
        c.settle();
    }
    assert_eq!(c.reads("n1").iter().map(|r| r.id).collect::<Vec<_>>(), [7], "confirmed by both halves");
}

// §6 with check-quorum (thesis §6.2): while joint, a leader stays only if
// it recently heard from a majority of each half; hearing from the old
// voters alone, it steps down.
#[test]
fn s6_while_joint_check_quorum_needs_both_majorities() {
    let mut c = joint_without_the_new_half();
    for _ in 0..CoreConfig::for_tests().lease_ticks * 2 {
        c.node("n1").tick();
        c.settle();
    }
    assert!(!c.node("n1").is_leader(), "no recently active majority of the new voters: step down");
}

// Thesis §6.4.1 with §6: while joint, the read lease too needs a majority
// of each half. Rounds acknowledged by the old voters alone earn none, so
// the lease the leader held before the change runs out.
#[test]
fn s6_4_1_while_joint_a_lease_needs_both_majorities() {
    let mut c = joint_without_the_new_half();
    for _ in 0..=CoreConfig::for_tests().read_lease_ticks {
        c.node("n1").tick();
        c.settle();
    }
    assert!(c.node("n1").is_leader(), "still within check-quorum's window");
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(0), "the old half alone kept the lease");
    c.heal();
    c.node("n1").tick();
    c.settle();
    assert!(c.node("n1").lease_remaining_ticks().is_some_and(|t| t > 0), "both halves renew it");
}
