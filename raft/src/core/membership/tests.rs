//! Scenario tests of `membership.rs`: Configurations in force (thesis §4.1), catching up before promotion (§4.2.1), and members that move. Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::types::{Server, Suffrage};

#[test]
fn s4_1_configuration_takes_effect_when_appended_and_reverts_on_truncation() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n1");
    let mut conf = c.node("n1").configuration().0.clone();
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n4".into(), address: "n4".into() });
    let idx = c.node("n1").propose_configuration(conf.clone()).expect("leader");
    assert_eq!(c.node("n1").configuration(), (&conf, idx), "in force as soon as appended");
    assert_eq!(
        c.node("n1").propose_configuration(conf.clone()),
        Err(Refusal::ConfigurationChangeInProgress),
        "one change at a time"
    );
    c.settle();
    c.elect_node("n2");
    c.node("n2").propose([cmd("x")]).expect("leader");
    c.settle();
    c.heal();
    c.tick_all(30);
    assert_eq!(c.node("n1").configuration().0.servers.len(), 3, "truncated change no longer in force");
}

// Thesis §4.2.1: a new server is promoted only once it holds the log; one
// that never answers (match index 0) is never "caught up", however short
// the log is.
#[test]
fn s4_2_1_a_server_that_never_answered_is_not_caught_up() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let mut conf = c.node("n1").configuration().0.clone();
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n4".into(), address: "n4".into() });
    let added = c.node("n1").propose_configuration(conf).expect("leader");
    assert_eq!(
        c.node("n1").catch_up(&"n4".into(), added),
        CatchUp::NotCommitted { added_at: added, commit: added - 1 },
        "not before the configuration that added it commits"
    );
    // n4 does not exist: nothing it is sent is ever answered.
    c.settle();
    c.tick_all(5);
    assert!(matches!(c.node("n1").catch_up(&"n4".into(), added), CatchUp::Behind { matched: 0, .. }));
    assert_eq!(
        c.node("n1").catch_up(&"n2".into(), added),
        CatchUp::Ready,
        "a follower that holds the log is"
    );
    assert_eq!(c.node("n2").catch_up(&"n1".into(), added), CatchUp::Unknown, "only a leader knows");
}

// A member moved to another address is a different process until it
// proves otherwise: the leader forgets what it knew of the old one and
// probes the new address from scratch (the commit index does not move
// back).
#[test]
fn moving_a_member_to_a_new_address_restarts_its_replication_progress() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.node("n1").propose([cmd("x")]).expect("leader");
    c.settle();
    assert!(c.progress("n1", "n2").is_some_and(|p| p.matched > 0));
    let commit = c.node("n1").commit_index();
    let mut conf = c.node("n1").configuration().0.clone();
    if let Some(s) = conf.servers.iter_mut().find(|s| s.id.as_str() == "n2") {
        s.address = "n2-new".into();
    }
    c.isolate("n2");
    c.node("n1").propose_configuration(conf).expect("leader");
    assert_eq!(c.progress("n1", "n2").map(|p| p.matched), Some(0));
    assert!(c.progress("n1", "n3").is_some_and(|p| p.matched > 0), "others keep theirs");
    assert!(c.node("n1").commit_index() >= commit);
}
