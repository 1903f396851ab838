//! Scenario tests of `read.rs`: ReadIndex reads (thesis §6.4). Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;

/// Strips the sender's own-term entries from every AppendEntries, so that
/// a new leader's followers answer its heartbeats (and read rounds) but never
/// receive the no-op that opens its term.
fn without_current_term_entries(mut m: Message) -> Option<Message> {
    if let Body::AppendEntries(req) = &mut m.body {
        let term = req.term;
        req.entries.retain(|e| e.term != term);
    }
    Some(m)
}

#[test]
fn s6_4_read_index_waits_for_a_commit_in_the_leaders_term() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.tick_all(1);
    let old_commit = c.node("n1").commit_index();
    assert_eq!(c.node("n2").commit_index(), old_commit, "n2 learned n1's commit index");
    // n2 takes over in a new term; its no-op never reaches anyone, so its
    // commit index is still the one it learned from n1's term.
    c.node("n1").transfer_leadership(Some("n2".into())).expect("transfer starts");
    c.settle_with(without_current_term_entries);
    assert!(c.node("n2").is_leader());
    let term_start = c.node("n2").last_index();
    assert_eq!(c.node("n2").commit_index(), old_commit, "nothing of the new term committed");
    // A read arrives: no confirmation round may start yet.
    c.node("n2").read_index(42).expect("leader accepts the read");
    assert_eq!(render_ready(&c.take_ready("n2")), Vec::<String>::new(), "no round for the read yet");
    // Followers keep answering heartbeats (quorum rounds happen), but the
    // leader has committed nothing of its own term: the read waits.
    for _ in 0..5 {
        c.node("n2").tick();
        c.settle_with(without_current_term_entries);
    }
    assert!(c.progress("n2", "n1").is_some_and(|p| p.ticks_since_contact == 0), "n1 answers");
    assert!(c.reads("n2").is_empty(), "a read at the stale commit index {old_commit} would be served");
    // Once the no-op commits, the read is confirmed at the new commit index.
    c.tick_all(2);
    assert!(c.node("n2").commit_index() >= term_start);
    assert_eq!(c.reads("n2"), [ReadState { id: 42, index: term_start }]);
}

#[test]
fn s6_4_read_index_needs_a_fresh_quorum_round() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.tick_all(2);
    // Followers have acknowledged earlier rounds. Now the leader is cut off:
    // a new read must not be confirmed by those old acknowledgements.
    c.isolate("n1");
    c.node("n1").read_index(1).expect("still leader");
    c.settle();
    c.tick_all(1);
    assert!(c.reads("n1").is_empty(), "no stale confirmation");
    c.heal();
    c.tick_all(1);
    assert_eq!(c.reads("n1").iter().map(|r| r.id).collect::<Vec<_>>(), vec![1]);
    // A retried read gets its own round.
    c.isolate("n1");
    c.node("n1").read_index(2).expect("leader");
    c.settle();
    assert_eq!(c.reads("n1").len(), 1, "read 2 not confirmed by read 1's round");
}

#[test]
fn s6_4_reads_refused_on_followers_and_during_transfer() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    assert_eq!(c.node("n2").read_index(1), Err(Refusal::NotLeader(Some("n1".into()))));
    c.isolate("n2");
    c.node("n1").transfer_leadership(Some("n2".into())).expect("transfer starts");
    assert_eq!(c.node("n1").read_index(2), Err(Refusal::TransferInProgress));
    assert_eq!(c.node("n1").propose([cmd("x")]), Err(Refusal::TransferInProgress));
}

#[test]
fn s6_4_a_read_is_confirmed_by_a_round_that_starts_after_it() {
    script::run("read/testdata/s6_4_read_index.txt", include_str!("testdata/s6_4_read_index.txt"));
}
