//! Scenario tests of `transfer.rs`: Leadership transfer (thesis §3.10). Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::types::{Server, Suffrage};

#[test]
fn s3_10_leadership_transfer_hands_over_to_the_target() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.node("n1").propose([cmd("a")]).expect("leader");
    c.settle();
    c.node("n1").transfer_leadership(Some("n3".into())).expect("transfer");
    c.settle();
    assert!(c.node("n3").is_leader(), "target took over");
    assert!(!c.node("n1").is_leader());
}

#[test]
fn s3_10_leadership_transfer_aborts_after_a_timeout() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.node("n1").transfer_leadership(Some("n3".into())).expect("transfer");
    for _ in 0..100 {
        c.tick_all(1);
        if c.host("n1").transfers_aborted > 0 {
            break;
        }
    }
    assert_eq!(c.host("n1").transfers_aborted, 1);
    assert!(c.node("n1").is_leader());
    assert!(c.node("n1").propose([cmd("after")]).is_ok(), "writes accepted again");
}

// Thesis §3.10: a leadership transfer names a voter; an unknown id and a
// non-voter are two different mistakes with their own refusals.
#[test]
fn s3_10_transfer_refuses_an_unknown_id_and_a_non_voter_distinctly() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let mut conf = c.node("n1").configuration().0.clone();
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n4".into(), address: "n4".into() });
    c.node("n1").propose_configuration(conf).expect("leader");
    c.settle();
    assert_eq!(c.node("n1").transfer_leadership(Some("n4".into())), Err(Refusal::NotAVoter("n4".into())));
    assert_eq!(c.node("n1").transfer_leadership(Some("n9".into())), Err(Refusal::UnknownServer("n9".into())));
    assert!(c.node("n1").is_leader());
}

/// Transfers node `id` reported (completed, aborted).
fn transfers(c: &mut Cluster, id: &str) -> (usize, usize) {
    let host = c.host(id);
    (host.transfers_completed, host.transfers_aborted)
}

#[test]
fn s3_10_a_transfer_that_hands_over_leadership_completes_through_ready() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    assert_eq!(c.node("n1").transfer_leadership(Some("n2".into())), Ok("n2".into()));
    c.settle();
    assert!(c.node("n2").is_leader(), "the target took over");
    assert!(!c.node("n1").is_leader());
    assert_eq!(transfers(&mut c, "n1"), (1, 0));
    assert_eq!(transfers(&mut c, "n2").0 + transfers(&mut c, "n3").0, 0, "only the old leader reports it");
}

/// A three-node cluster whose leader n1 is transferring leadership to n2,
/// which it cannot reach.
fn transferring_to_an_unreachable_target() -> Cluster {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n2");
    assert_eq!(c.node("n1").transfer_leadership(Some("n2".into())), Ok("n2".into()));
    c.settle();
    c
}

#[test]
fn s3_10_a_transfer_that_times_out_aborts_and_a_later_step_down_completes_nothing() {
    let mut c = transferring_to_an_unreachable_target();
    for _ in 0..100 {
        c.node("n1").tick();
        c.settle();
        if transfers(&mut c, "n1").1 > 0 {
            break;
        }
    }
    assert_eq!(transfers(&mut c, "n1"), (0, 1));
    // Stepping down without a transfer running reports no transfer.
    c.node("n1").step_down();
    c.collect();
    assert_eq!(transfers(&mut c, "n1"), (0, 1));
}

#[test]
fn s3_10_a_leader_that_loses_leadership_during_a_transfer_reports_it_completed() {
    // As the runtime always did: the caller learns that this node no
    // longer leads, whoever took over.
    let mut c = transferring_to_an_unreachable_target();
    assert!(c.node("n1").transfer_in_progress());
    let term = c.node("n1").term();
    c.node("n1").step(msg(
        "n3",
        "n1",
        0,
        Body::AppendEntries(append_request(term + 1, "n3", (0, 0), Vec::new(), 0)),
    ));
    c.collect();
    assert!(!c.node("n1").is_leader());
    assert_eq!(transfers(&mut c, "n1"), (1, 0));
}

// Thesis §3.10: the leader sends TimeoutNow only once the target's log
// matches its own, so the target can win the election it starts at once
// (a target behind the leader would be refused every vote, and the
// cluster would be left without a leader until an election timeout).
#[test]
fn s3_10_timeout_now_waits_until_the_target_has_caught_up() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.propose_many("n1", 20);
    c.settle();
    c.heal();
    assert!(c.node("n3").last_index() < c.node("n1").last_index(), "n3 is behind");
    c.node("n1").transfer_leadership(Some("n3".into())).expect("transfer");
    let mut timeout_now_sent = false;
    for _ in 0..10_000 {
        if c.node("n3").is_leader() {
            break;
        }
        c.collect();
        let Some(m) = c.queue.pop_front() else {
            // Heartbeats carry the replication to the target.
            c.node("n1").tick();
            continue;
        };
        if matches!(m.body, Body::TimeoutNow(_)) {
            let (target, leader) = (c.node("n3").last_index(), c.node("n1").last_index());
            assert_eq!(
                target, leader,
                "TimeoutNow went out while the target's log ended at {target} of {leader}"
            );
            timeout_now_sent = true;
        }
        c.deliver(m);
    }
    assert!(timeout_now_sent, "the transfer went ahead once the target caught up");
    assert!(c.node("n3").is_leader(), "the caught-up target took over");
}
