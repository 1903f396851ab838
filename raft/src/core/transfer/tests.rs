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
        if c.host("n1").transfer_aborted {
            break;
        }
    }
    assert!(c.host("n1").transfer_aborted);
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
