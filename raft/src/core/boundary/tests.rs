//! Scenario tests of the core's boundary (`boundary.rs`): every inbound
//! request is answered by a message carrying its `rpc_id` or declined
//! through [`Ready::declined`]. The transfer and snapshot outputs are tested
//! beside their rules (`transfer/tests.rs`, `snapshot/tests.rs`). Runs on the
//! shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;

/// An empty AppendEntries from `from` of `term` to `to`, with driver token
/// `rpc_id`.
fn append_from(from: &str, to: &str, term: u64, rpc_id: u64) -> Message {
    msg(from, to, rpc_id, Body::AppendEntries(append_request(term, from, (0, 0), Vec::new(), 0)))
}

#[test]
fn a_request_the_core_ignores_is_declined_through_ready() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    // A second leader of our term: logged and ignored, never answered.
    c.node("n1").step(append_from("n2", "n1", term, 7));
    let ready = c.take_ready("n1");
    assert_eq!(ready.declined, vec![7]);
    assert!(ready.messages.iter().chain(&ready.persisted_messages).all(|m| m.rpc_id != 7));
    assert!(!ready.is_empty(), "a declined request is work for the driver");
    c.execute("n1", ready);
    assert_eq!(c.host("n1").declined, vec![7], "the driver executed the decline");
}

#[test]
fn an_answered_request_is_not_declined() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    // A stale leader is answered with our term; a current one with success.
    c.node("n2").step(append_from("n3", "n2", term - 1, 11));
    c.node("n2").step(append_from("n1", "n2", term, 12));
    let ready = c.take_ready("n2");
    assert!(ready.declined.is_empty(), "declined {:?}", ready.declined);
    let answered: Vec<u64> =
        ready.messages.iter().chain(&ready.persisted_messages).map(|m| m.rpc_id).collect();
    assert!(answered.contains(&11) && answered.contains(&12), "answers {answered:?}");
    // Requests without a driver token are not tracked either way.
    c.node("n1").step(append_from("n2", "n1", term, 0));
    assert!(c.take_ready("n1").declined.is_empty());
}
