//! Scenario tests of `election.rs`: Elections (§5.2, §5.4.1), pre-vote (thesis §9.6), check-quorum (§6.2) and leader stickiness (§4.2.3). Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::message::*;

#[test]
fn s5_2_one_leader_is_elected_in_1_3_and_5_node_clusters() {
    for n in [1, 3, 5] {
        let mut c = Cluster::new(n, CoreConfig::for_tests());
        let leader = c.elect();
        c.tick_all(30);
        assert_eq!(c.leaders(), vec![leader.clone()], "{n} nodes: leadership is stable");
        let term = c.node(leader.as_str()).term();
        assert!(c.cores().all(|core| core.term() == term));
    }
}

#[test]
fn s5_2_vote_is_persisted_before_it_is_sent() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let req = vote_request(2, "n2", (1, 1));
    c.node("n1").step(msg("n2", "n1", 7, Body::RequestVote(req)));
    let ready = c.take_ready("n1");
    assert_eq!(
        render_ready(&ready),
        ["persist term 2 vote n2", "after persist send n1->n2 VoteResp#7 t2 granted"],
        "the grant waits for the vote to be durable"
    );
    assert_eq!(ready.hard_state, Some(HardState { term: 2, vote: Some("n2".into()) }));
    assert!(ready.messages.is_empty(), "granted vote must not go out before it is durable");
    assert_eq!(ready.persisted_messages.len(), 1);
    assert_eq!(ready.persisted_messages[0].rpc_id, 7);
    assert!(matches!(&ready.persisted_messages[0].body, Body::RequestVoteResponse(r) if r.granted));
}

#[test]
fn s5_2_only_one_vote_per_term() {
    let mut cfg = CoreConfig::for_tests();
    cfg.check_quorum = false;
    let mut c = Cluster::new(3, cfg);
    let vote = |cand: &str| vote_request(2, cand, (1, 1));
    let n1 = c.node("n1");
    n1.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 1, body: Body::RequestVote(vote("n2")) });
    n1.step(Message { from: "n3".into(), to: "n1".into(), rpc_id: 2, body: Body::RequestVote(vote("n3")) });
    n1.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 3, body: Body::RequestVote(vote("n2")) });
    let ready = n1.take_ready();
    let mut all = ready.messages;
    all.extend(ready.persisted_messages);
    let granted: Vec<(u64, bool)> = all
        .iter()
        .map(|m| match &m.body {
            Body::RequestVoteResponse(r) => (m.rpc_id, r.granted),
            other => panic!("unexpected {other:?}"),
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(granted, vec![(1, true), (2, false), (3, true)], "a repeated request from n2 is re-granted");
}

#[test]
fn s5_4_1_vote_denied_to_a_candidate_with_a_less_up_to_date_log() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.node("n1").propose([cmd("a")]).expect("leader");
    c.settle();
    // n3 missed nothing but we fake a candidate whose log ends earlier.
    let req = transfer_vote_request(10, "n3", (1, 1));
    let n2 = c.node("n2");
    n2.step(Message { from: "n3".into(), to: "n2".into(), rpc_id: 1, body: Body::RequestVote(req) });
    let ready = n2.take_ready();
    assert_eq!(n2.term(), 10, "the higher term is adopted");
    assert_eq!(n2.vote(), None, "but no vote is granted");
    assert!(ready
        .messages
        .iter()
        .any(|m| matches!(&m.body, Body::RequestVoteResponse(r) if !r.granted && r.term == 10)));
}

#[test]
fn s9_6_partitioned_node_does_not_disrupt_the_cluster_with_pre_vote() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    c.isolate("n3");
    c.tick_all(100);
    assert_eq!(c.node("n3").term(), term, "pre-vote keeps the isolated node's term");
    c.heal();
    // n3's timer fires before any heartbeat reaches it: its pre-vote goes to
    // servers that still hear from the leader, and they refuse it.
    let timeout = c.node("n3").election_timeout;
    for _ in 0..timeout {
        c.node("n3").tick();
    }
    c.settle();
    assert_eq!(c.node("n3").term(), term, "nobody who hears from a leader grants a pre-vote");
    c.tick_all(30);
    assert!(c.node("n1").is_leader(), "leader undisturbed");
    assert_eq!(c.node("n1").term(), term);
    assert!(c.cores().all(|core| core.term() == term), "no term moved after the heal");
}

#[test]
fn without_pre_vote_a_partitioned_node_inflates_its_term() {
    let mut cfg = CoreConfig::for_tests();
    cfg.pre_vote = false;
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    let term = c.node("n1").term();
    c.isolate("n3");
    c.tick_all(100);
    assert!(c.node("n3").term() > term, "control: the rule above is what pre-vote buys");
}

#[test]
fn s6_2_check_quorum_leader_steps_down_without_a_quorum() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.isolate("n1");
    let lease = c.node("n1").cfg.lease_ticks as usize;
    c.tick_all(lease * 2 + 1);
    assert!(!c.node("n1").is_leader(), "isolated leader stepped down");
}

#[test]
fn s4_2_3_leader_stickiness_ignores_votes_while_leader_is_live() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    let req = vote_request(term + 5, "n3", (100, 100));
    let n2 = c.node("n2");
    n2.step(Message { from: "n3".into(), to: "n2".into(), rpc_id: 1, body: Body::RequestVote(req) });
    assert_eq!(n2.term(), term, "a live leader's follower does not adopt the disruptive term");
}

#[test]
fn s9_6_one_server_bootstrapped_with_all_voters_elects_a_leader() {
    // Issue 13 item 8: only n1 has the configuration {n1, n2, n3}; n2 and n3
    // start empty at term 0. They never campaign (they know no
    // configuration) but must grant n1's pre-vote and vote.
    for pre_vote in [true, false] {
        let mut cfg = CoreConfig::for_tests();
        cfg.pre_vote = pre_vote;
        let mut c = Cluster::new(3, cfg.clone());
        for id in ["n2", "n3"] {
            c.start(id, cfg.clone(), 3, InitialState::default());
        }
        let leader = c.elect();
        assert_eq!(leader, ServerId::from("n1"), "pre_vote={pre_vote}");
        c.node("n1").propose([cmd("x")]).expect("leader");
        c.settle();
        c.tick_all(2);
        for id in ["n2", "n3"] {
            let applied = &c.applied(id);
            assert!(applied.iter().any(|l| l.data == "x"), "{id} applied the write (pre_vote={pre_vote})");
            assert_eq!(c.node(id).configuration().0.voters().count(), 3);
        }
    }
}

#[test]
fn s9_6_a_granted_pre_vote_carries_the_requested_term() {
    // The voter is behind (term 0): its grant must still count for the
    // candidate, so it names the term it grants, not its own.
    let mut v = Core::new("n2".into(), CoreConfig::for_tests(), 1, InitialState::default()).expect("core");
    // Up for a follower timeout: no longer refusing for having just started.
    for _ in 0..CoreConfig::for_tests().follower_timeout_ticks {
        v.tick();
    }
    let req = pre_vote_request(2, "n1", (1, 1));
    v.step(Message { from: "n1".into(), to: "n2".into(), rpc_id: 4, body: Body::RequestPreVote(req) });
    assert_eq!(v.term(), 0, "a pre-vote never changes the voter's term");
    let ready = v.take_ready();
    let resp = ready.messages.iter().find_map(|m| match &m.body {
        Body::RequestPreVoteResponse(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(resp, Some(RequestPreVoteResponse { term: 2, granted: true, removed: false }));
    // A refusal carries the voter's own term.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    let req = pre_vote_request(term + 1, "n3", (0, 0));
    let n2 = c.node("n2");
    n2.step(Message { from: "n3".into(), to: "n2".into(), rpc_id: 5, body: Body::RequestPreVote(req) });
    let resp = n2.take_ready().messages.iter().find_map(|m| match &m.body {
        Body::RequestPreVoteResponse(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(resp, Some(RequestPreVoteResponse { term, granted: false, removed: false }));
}

#[test]
fn s9_6_a_pre_vote_grant_from_an_earlier_round_does_not_count() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    n1.hard.term = 3;
    while n1.state() != RaftState::Candidate {
        n1.tick();
    }
    let _ = n1.take_ready();
    // A grant for term 3 (an earlier round, when n1 was at term 2) arrives.
    let old = RequestPreVoteResponse { term: 3, granted: true, removed: false };
    n1.step(Message {
        from: "n2".into(),
        to: "n1".into(),
        rpc_id: 0,
        body: Body::RequestPreVoteResponse(old),
    });
    assert_eq!((n1.term(), n1.state()), (3, RaftState::Candidate), "still pre-voting at term 3");
    assert!(n1.vote().is_none(), "no election started");
    // The grant for this round's term (4) wins the pre-vote.
    let now = RequestPreVoteResponse { term: 4, granted: true, removed: false };
    n1.step(Message {
        from: "n2".into(),
        to: "n1".into(),
        rpc_id: 0,
        body: Body::RequestPreVoteResponse(now),
    });
    assert_eq!(n1.term(), 4, "the election started");
    assert_eq!(n1.vote(), Some(&ServerId::from("n1")));
}

#[test]
fn s5_2_a_vote_granted_in_an_earlier_term_does_not_count() {
    // n1 campaigned in term 2, timed out and campaigns again in term 3. A
    // grant for term 2 arriving late must not make it leader of term 3.
    let mut cfg = CoreConfig::for_tests();
    cfg.pre_vote = false;
    let mut c = Cluster::new(3, cfg);
    let n1 = c.node("n1");
    n1.start_election(false);
    n1.start_election(false);
    assert_eq!((n1.term(), n1.state()), (3, RaftState::Candidate));
    let old = RequestVoteResponse { term: 2, granted: true, removed: false };
    n1.step(msg("n2", "n1", 0, Body::RequestVoteResponse(old)));
    assert_eq!(n1.state(), RaftState::Candidate, "a term-2 grant is not a term-3 vote");
    let now = RequestVoteResponse { term: 3, granted: true, removed: false };
    n1.step(msg("n2", "n1", 0, Body::RequestVoteResponse(now)));
    assert!(n1.is_leader(), "the current term's grant wins the election");
}

#[test]
fn s5_2_an_election_step_by_step() {
    script::run("election/testdata/s5_2_election.txt", include_str!("testdata/s5_2_election.txt"));
}
