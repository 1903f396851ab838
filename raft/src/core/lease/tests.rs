//! Scenario tests of `lease.rs`: leader leases for reads (Raft thesis
//! §6.4.1), the read-round identity they share with ReadIndex (§6.4,
//! etcd-io/raft #397), and the follower stickiness they rely on (§4.2.3).
//! Each test is named after the section whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::message::{RequestPreVoteResponse, RequestVoteResponse};

/// The lease length of the test configuration.
fn lease_ticks() -> u64 {
    CoreConfig::for_tests().read_lease_ticks
}

/// A three-node cluster led by n1, which has committed its no-op and whose
/// followers acknowledged its latest heartbeat round: its lease holds.
fn leased_cluster() -> Cluster {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.tick_all(2);
    assert!(c.node("n1").lease_remaining_ticks().is_some_and(|t| t > 0), "n1 holds a lease");
    c
}

/// Asks `id` for lease read `read` and returns the `Ready` it left (then
/// executes it).
fn lease_read(c: &mut Cluster, id: &str, read: u64) -> Ready {
    c.node(id).lease_read(read).expect("the leader accepts the read");
    let ready = c.take_ready(id);
    let copy = Ready {
        messages: ready.messages.clone(),
        reads: ready.reads.clone(),
        failed_reads: ready.failed_reads.clone(),
        ..Ready::default()
    };
    c.execute(id, ready);
    copy
}

/// Whether `ready` starts a heartbeat round (an empty AppendEntries).
fn starts_a_round(ready: &Ready) -> bool {
    ready.messages.iter().any(|m| matches!(&m.body, Body::AppendEntries(a) if a.entries.is_empty()))
}

#[test]
fn s6_4_1_a_lease_read_is_answered_at_once_while_the_lease_holds() {
    let mut c = leased_cluster();
    let commit = c.node("n1").commit_index();
    let ready = lease_read(&mut c, "n1", 5);
    assert_eq!(ready.reads, [ReadState { id: 5, index: commit }], "answered at the commit index");
    assert!(ready.messages.is_empty(), "no round trip: {:?}", render_ready(&ready));
    // A ReadIndex read at the same moment takes a round.
    c.node("n1").read_index(6).expect("leader");
    let ready = c.take_ready("n1");
    assert!(ready.reads.is_empty() && starts_a_round(&ready), "{:?}", render_ready(&ready));
}

#[test]
fn s6_4_1_the_lease_expires_without_acknowledgements_and_reads_fall_back_to_a_round() {
    let mut c = leased_cluster();
    let start = c.node("n1").lease_remaining_ticks().unwrap_or(0);
    assert!(start <= lease_ticks());
    // Cut off: no round is acknowledged any more; the lease runs out
    // within its length, while n1 still leads (check-quorum takes longer).
    c.isolate("n1");
    let mut ticks = 0;
    while c.node("n1").lease_remaining_ticks() != Some(0) {
        let ready = lease_read(&mut c, "n1", 100 + ticks);
        assert_eq!(ready.reads.len(), 1, "answered at once while the lease holds");
        c.node("n1").tick();
        c.settle();
        ticks += 1;
        assert!(ticks <= start, "the lease outlived its length ({start} ticks)");
    }
    assert_eq!(ticks, start);
    assert!(c.node("n1").is_leader());
    // Now a lease read takes a ReadIndex round, which cannot complete.
    let ready = lease_read(&mut c, "n1", 7);
    assert!(ready.reads.is_empty(), "served on an expired lease: {:?}", render_ready(&ready));
    assert!(starts_a_round(&ready), "falls back to a quorum round");
    c.settle();
    assert!(c.reads("n1").iter().all(|r| r.id != 7));
    // Once the followers answer, the round confirms it.
    c.heal();
    c.tick_all(1);
    assert!(c.reads("n1").iter().any(|r| r.id == 7), "confirmed by the round");
    assert!(c.node("n1").lease_remaining_ticks().is_some_and(|t| t > 0), "and the lease is back");
}

/// Strips the sender's own-term entries from every AppendEntries, so that a
/// new leader's followers answer its heartbeats but never receive the no-op
/// that opens its term.
fn without_current_term_entries(mut m: Message) -> Option<Message> {
    if let Body::AppendEntries(req) = &mut m.body {
        let term = req.term;
        req.entries.retain(|e| e.term != term);
    }
    Some(m)
}

#[test]
fn s6_4_1_no_lease_before_the_leader_commits_an_entry_of_its_term() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.tick_all(1);
    c.node("n1").transfer_leadership(Some("n2".into())).expect("transfer starts");
    c.settle_with(without_current_term_entries);
    assert!(c.node("n2").is_leader());
    let stale_commit = c.node("n2").commit_index();
    // Its followers acknowledge every round, but its no-op never commits.
    for _ in 0..3 {
        c.node("n2").tick();
        c.settle_with(without_current_term_entries);
    }
    assert!(c.progress("n2", "n1").is_some_and(|p| p.ticks_since_contact == 0), "n1 answers");
    assert_eq!(c.node("n2").commit_index(), stale_commit, "nothing of the new term committed");
    assert_eq!(c.node("n2").lease_remaining_ticks(), Some(0));
    let ready = lease_read(&mut c, "n2", 42);
    assert!(
        ready.reads.is_empty(),
        "a read at the stale commit index {stale_commit}: {:?}",
        render_ready(&ready)
    );
    // Once the no-op commits, the lease holds and reads are answered at once.
    // (The leader resends it once it finds the earlier sends stalled.)
    for _ in 0..10 {
        if c.node("n2").commit_index() > stale_commit {
            break;
        }
        c.tick_all(1);
    }
    c.tick_all(1);
    assert!(c.reads("n2").iter().any(|r| r.id == 42), "the round confirmed the waiting read");
    let commit = c.node("n2").commit_index();
    assert!(commit > stale_commit);
    assert_eq!(lease_read(&mut c, "n2", 43).reads, [ReadState { id: 43, index: commit }]);
}

#[test]
fn s6_4_1_no_lease_in_a_term_that_started_a_leadership_transfer() {
    let mut c = leased_cluster();
    c.isolate("n3");
    c.node("n1").transfer_leadership(Some("n3".into())).expect("transfer starts");
    assert_eq!(c.node("n1").lease_read(1), Err(Refusal::TransferInProgress));
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(0));
    // The transfer times out; n2 keeps acknowledging every round.
    for _ in 0..100 {
        c.tick_all(1);
        if c.host("n1").transfers_aborted > 0 {
            break;
        }
    }
    assert_eq!(c.host("n1").transfers_aborted, 1);
    assert!(c.node("n1").is_leader());
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(0), "no lease for the rest of the term");
    let ready = lease_read(&mut c, "n1", 2);
    assert!(ready.reads.is_empty(), "served on a lease after a transfer: {:?}", render_ready(&ready));
    assert!(starts_a_round(&ready));
    c.settle();
    assert!(c.reads("n1").iter().any(|r| r.id == 2), "the ReadIndex round confirms it");
}

/// n1 (leading a settled three-node cluster) ticks and sends a heartbeat
/// round; its followers answer, and the answers are held back: returns
/// them.
fn hold_answers_to_a_round(c: &mut Cluster) -> Vec<Message> {
    c.node("n1").tick();
    c.collect();
    let heartbeats: Vec<Message> = c.queue.drain(..).collect();
    assert!(!heartbeats.is_empty());
    for m in heartbeats {
        c.deliver(m);
    }
    c.collect();
    let answers: Vec<Message> = c.queue.drain(..).collect();
    assert!(answers.iter().all(|m| matches!(m.body, Body::AppendEntriesResponse(_))), "{answers:?}");
    answers
}

#[test]
fn s6_4_1_an_old_rounds_acknowledgement_extends_the_lease_only_from_its_send_tick() {
    let mut c = leased_cluster();
    let held = hold_answers_to_a_round(&mut c);
    // Newer rounds go out and are lost; three ticks pass.
    c.isolate("n1");
    for _ in 0..3 {
        c.node("n1").tick();
        c.settle();
    }
    let before = c.node("n1").lease_remaining_ticks().unwrap_or(0);
    c.heal();
    for m in held {
        c.deliver(m);
    }
    c.collect();
    // The old round was sent three ticks ago: three ticks of its lease are gone.
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(lease_ticks() - 3));
    assert!(before < lease_ticks() - 3, "the held answers did extend the lease");
}

#[test]
fn s6_4_a_delayed_answer_to_an_old_round_does_not_release_a_newer_read() {
    // The etcd-io/raft #397 shape: n1 is cut off after its followers
    // answered round r; a read arrives and gets round r + 1; the answers to
    // round r arrive late. They must not release the read.
    let mut c = leased_cluster();
    let held = hold_answers_to_a_round(&mut c);
    // n1's messages are lost from now on; its followers' still arrive.
    c.cut.insert(("n1".into(), "n2".into()));
    c.cut.insert(("n1".into(), "n3".into()));
    c.node("n1").tick();
    c.settle();
    c.node("n1").read_index(9).expect("leader");
    c.settle();
    for m in held {
        c.deliver(m);
    }
    c.collect();
    assert!(c.reads("n1").iter().all(|r| r.id != 9), "released by answers to an older round");
    // Nor do they anchor a lease at a newer round's send tick: it runs from
    // the old round's, sent one tick before the read's round.
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(lease_ticks() - 1));
    // Answers to the read's own round release it.
    c.heal();
    c.tick_all(1);
    assert!(c.reads("n1").iter().any(|r| r.id == 9));
}

/// The vote and pre-vote answers in `ready`, granted or not (those sent at
/// once first, then those sent after persisting).
fn vote_answers(ready: &Ready) -> Vec<bool> {
    ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .filter_map(|m| match &m.body {
            Body::RequestVoteResponse(RequestVoteResponse { granted, .. }) => Some(*granted),
            Body::RequestPreVoteResponse(RequestPreVoteResponse { granted, .. }) => Some(*granted),
            _ => None,
        })
        .collect()
}

#[test]
fn s6_4_1_a_restarted_voter_refuses_votes_for_a_follower_timeout() {
    let mut c = leased_cluster();
    let term = c.node("n1").term();
    let last = (c.node("n3").last_index(), c.node("n3").last_term());
    c.crash("n2");
    c.restart("n2", CoreConfig::for_tests(), 7);
    // Its election timer is pushed out so that it does not campaign itself.
    c.node("n2").election_timeout = 10_000;
    let ask = |c: &mut Cluster, rpc_id: u64| {
        let pre = pre_vote_request(term + 1, "n3", last);
        c.node("n2").step(msg("n3", "n2", rpc_id, Body::RequestPreVote(pre)));
        let vote = vote_request(term + 1, "n3", last);
        c.node("n2").step(msg("n3", "n2", rpc_id + 1, Body::RequestVote(vote)));
        vote_answers(&c.take_ready("n2"))
    };
    // n2 may have acknowledged n1's latest round just before it crashed: it
    // refuses votes as if it had just heard from n1, for a follower timeout.
    for _ in 1..CoreConfig::for_tests().follower_timeout_ticks {
        assert_eq!(ask(&mut c, 1), [false, false], "a vote inside n1's lease");
        c.node("n2").tick();
    }
    assert_eq!(ask(&mut c, 1), [false, false]);
    c.node("n2").tick();
    assert_eq!(ask(&mut c, 3), [true, true], "after a follower timeout it votes again");
}

#[test]
fn s6_4_1_a_restarted_voter_still_votes_for_a_leadership_transfer() {
    let mut c = leased_cluster();
    let term = c.node("n1").term();
    let last = (c.node("n3").last_index(), c.node("n3").last_term());
    c.crash("n2");
    c.restart("n2", CoreConfig::for_tests(), 7);
    let vote = transfer_vote_request(term + 1, "n3", last);
    c.node("n2").step(msg("n3", "n2", 1, Body::RequestVote(vote)));
    assert_eq!(vote_answers(&c.take_ready("n2")), [true], "TimeoutNow skips stickiness");
}

#[test]
fn s4_2_3_stickiness_holds_in_a_term_adopted_from_a_late_answer() {
    // n2 heard from n1 a moment ago. A late refusal of an old pre-vote,
    // carrying a higher term, makes it adopt that term without a leader;
    // a vote request of that very term must still be refused.
    let mut c = leased_cluster();
    let term = c.node("n1").term();
    let late = RequestPreVoteResponse {
        term: term + 1,
        granted: false,
        removed: false,
        removal_index: 0,
        removal_term: 0,
    };
    c.node("n2").step(msg("n3", "n2", 0, Body::RequestPreVoteResponse(late)));
    assert_eq!(c.node("n2").term(), term + 1);
    assert_eq!(c.node("n2").leader(), None);
    let last = (c.node("n3").last_index(), c.node("n3").last_term());
    let vote = vote_request(term + 1, "n3", last);
    c.node("n2").step(msg("n3", "n2", 1, Body::RequestVote(vote)));
    assert_eq!(vote_answers(&c.take_ready("n2")), [false], "a vote inside n1's lease");
}

#[test]
fn s6_4_1_no_lease_without_check_quorum() {
    // Without check-quorum followers do not refuse votes while they hear
    // from a leader: nothing stops a new leader, so there is no lease.
    let cfg = CoreConfig { check_quorum: false, ..CoreConfig::for_tests() };
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.tick_all(2);
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(0));
    let ready = lease_read(&mut c, "n1", 1);
    assert!(ready.reads.is_empty() && starts_a_round(&ready), "{:?}", render_ready(&ready));
    c.settle();
    assert!(c.reads("n1").iter().any(|r| r.id == 1), "confirmed by the round");
}

#[test]
fn s6_4_1_a_lease_never_outlasts_the_followers_stickiness() {
    // A configured lease longer than the follower timeout allows is cut to
    // `follower_timeout_ticks - 2` (a tick of rounding on each side).
    let cfg = CoreConfig { read_lease_ticks: 100, ..CoreConfig::for_tests() };
    let max = cfg.follower_timeout_ticks - 2;
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.tick_all(2);
    assert_eq!(c.node("n1").lease_remaining_ticks(), Some(max));
}

/// n1's current read round (0 when it does not lead).
fn current_round(c: &mut Cluster, id: &str) -> u64 {
    match &c.node(id).role {
        Role::Leader(l) => l.round,
        _ => 0,
    }
}

#[test]
fn s6_4_an_answer_to_a_round_of_an_earlier_term_counts_for_no_round_of_a_later_one() {
    // Round numbers start again at every term a node leads, so a round of
    // an earlier term is no round of this one. n1 leads term t and has sent
    // many rounds; its heartbeat to n2 for the latest is delayed. n1 steps
    // down (check-quorum) and is elected again in a later term, which n2
    // follows, and n1's rounds restart from 1. The delayed heartbeat then
    // reaches n2, which refuses it (its term is stale) and answers in its
    // own term: n1's current one. That answer must not count as n2
    // acknowledging a round of the new term (it echoes a round number
    // above the new term's), or it would release reads (and earn leases)
    // no follower confirmed, the etcd-io/raft #397 shape across terms.
    let mut c = leased_cluster();
    c.tick_all(20);
    c.node("n1").tick();
    c.collect();
    let mut held = None;
    for m in c.queue.drain(..).collect::<Vec<_>>() {
        let heartbeat = matches!(&m.body, Body::AppendEntries(a) if a.entries.is_empty());
        if held.is_none() && heartbeat && m.to.as_str() == "n2" {
            held = Some(m);
        } else {
            c.deliver(m);
        }
    }
    c.settle();
    let held = held.expect("n1 sent n2 a heartbeat");
    let Body::AppendEntries(old) = &held.body else { unreachable!("a heartbeat") };
    let (old_term, old_round) = (old.term, old.round);
    // Cut off, n1 steps down; the others hold off their elections.
    c.isolate("n1");
    for _ in 0..100 {
        if !c.node("n1").is_leader() {
            break;
        }
        for core in c.cores() {
            core.election_timeout = 10_000;
        }
        c.tick_all(1);
    }
    assert!(!c.node("n1").is_leader(), "check-quorum made n1 step down");
    c.heal();
    c.elect_node("n1");
    let term = c.node("n1").term();
    assert!(term > old_term && c.node("n2").term() == term, "n1 leads n2 in a later term");
    let round = current_round(&mut c, "n1");
    assert!(round < old_round, "rounds restarted: {round} in t{term}, {old_round} in t{old_term}");
    // The delayed heartbeat arrives; n2's refusal (in term `term`) reaches n1.
    c.deliver(held);
    c.settle();
    assert!(c.node("n1").is_leader() && c.node("n1").term() == term);
    // From now on n1 hears nothing: a read must wait for a quorum that
    // never comes.
    c.cut.insert(("n2".into(), "n1".into()));
    c.cut.insert(("n3".into(), "n1".into()));
    c.node("n1").tick();
    c.settle();
    c.node("n1").read_index(9).expect("leader");
    c.settle();
    assert!(
        c.reads("n1").iter().all(|r| r.id != 9),
        "released by an answer to round {old_round} of t{old_term}"
    );
}
