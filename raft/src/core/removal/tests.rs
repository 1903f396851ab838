//! Scenario tests of `removal.rs`: Removal from the cluster (thesis §4.2.2). Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::message::*;
use crate::types::{Server, Suffrage};

#[test]
fn s4_2_2_a_follower_whose_committed_configuration_excludes_it_is_removed() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let conf = config_of(&ids(2));
    let idx = c.reconfigure("n1", conf);
    assert!(c.node("n1").commit_index() >= idx, "the removal committed");
    let n3 = c.node("n3");
    assert!(n3.commit_index() >= idx, "the leader kept replicating to n3 until the removal committed");
    assert_eq!(n3.state(), RaftState::Removed);
    assert_eq!(n3.propose([cmd("x")]), Err(Refusal::Removed));
    assert_eq!(n3.read_index(1), Err(Refusal::Removed));
    // A removed server stays quiet: no campaign, no answers.
    let term = n3.term();
    c.tick_all(100);
    let n3 = c.node("n3");
    assert_eq!(n3.state(), RaftState::Removed);
    assert_eq!(n3.term(), term, "never campaigns again");
    assert!(!n3.has_ready(), "sends nothing");
    assert_eq!(c.leaders(), vec![ServerId::from("n1")], "the rest keep their leader");
    assert!(c.node("n1").propose([cmd("y")]).is_ok());
    // Whatever still reaches it is ignored: a heartbeat of the current term
    // neither brings it back as a follower nor gets an answer.
    let term = c.node("n1").term();
    let heartbeat =
        append_request(term, "n1", (idx, c.node("n1").term_at(idx).expect("in the log")), Vec::new(), idx);
    let n3 = c.node("n3");
    n3.step(msg("n1", "n3", 5, Body::AppendEntries(heartbeat)));
    assert_eq!(n3.state(), RaftState::Removed, "a message does not bring it back");
    let ready = n3.take_ready();
    assert!(ready.messages.is_empty() && ready.persisted_messages.is_empty(), "and gets no answer");
    assert_eq!(ready.declined, vec![5], "the driver learns it was declined");
    assert!(!n3.has_ready());
}

#[test]
fn s4_2_2_a_removed_nonvoter_is_removed_too() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let mut conf = config_of(&ids(2));
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n3".into(), address: "n3".into() });
    c.reconfigure("n1", conf);
    assert_eq!(c.node("n3").state(), RaftState::Follower, "still a member as a non-voter");
    c.reconfigure("n1", config_of(&ids(2)));
    assert_eq!(c.node("n3").state(), RaftState::Removed);
}

#[test]
fn s4_2_2_the_leader_that_commits_its_own_removal_tells_followers_then_is_removed() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let conf = config_of(&[ServerId::from("n2"), ServerId::from("n3")]);
    let idx = c.node("n1").propose_configuration(conf).expect("leader");
    c.settle();
    assert_eq!(c.node("n1").state(), RaftState::Removed);
    for id in ["n2", "n3"] {
        assert!(
            c.node(id).commit_index() >= idx,
            "{id} learned the removal committed before the leader left"
        );
    }
    assert_eq!(c.node("n1").propose([cmd("x")]), Err(Refusal::Removed));
    let leader = c.elect();
    assert_ne!(leader, ServerId::from("n1"));
    c.node(leader.as_str()).propose([cmd("after")]).expect("the rest keep writing");
    c.settle();
    assert_eq!(c.node("n1").state(), RaftState::Removed, "stays removed");
}

#[test]
fn s4_2_2_a_server_partitioned_during_its_removal_is_told_by_the_leader() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.reconfigure("n1", config_of(&ids(2)));
    // n3 never saw the removal: it still lists the old configuration.
    assert_eq!(c.node("n3").configuration().0.servers.len(), 3);
    c.tick_all(50);
    assert_ne!(c.node("n3").state(), RaftState::Removed, "nobody told it yet");
    c.heal();
    for _ in 0..100 {
        c.tick_all(1);
        if c.node("n3").is_removed() {
            break;
        }
    }
    assert_eq!(c.node("n3").state(), RaftState::Removed, "its pre-vote was answered 'removed' by the leader");
    assert_eq!(c.leaders(), vec![ServerId::from("n1")], "the leader was not disturbed");
    // It still lists itself as a voter, yet never campaigns again.
    let term = c.node("n3").term();
    for _ in 0..100 {
        c.node("n3").tick();
        assert!(!c.node("n3").has_ready(), "a removed server sends nothing");
    }
    assert_eq!(c.node("n3").term(), term);
}

#[test]
fn s4_2_2_only_a_leader_whose_removal_committed_says_removed() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n1");
    // The removal is appended but cannot commit: n3 is not removed yet.
    c.node("n1").propose_configuration(config_of(&ids(2))).expect("leader");
    c.settle();
    let req = pre_vote_request(c.node("n1").term() + 1, "n3", (0, 0));
    c.node("n1").step(Message {
        from: "n3".into(),
        to: "n1".into(),
        rpc_id: 7,
        body: Body::RequestPreVote(req.clone()),
    });
    let ready = c.node("n1").take_ready();
    let answer = ready.messages.iter().find(|m| m.rpc_id == 7).expect("answered");
    assert!(
        matches!(&answer.body, Body::RequestPreVoteResponse(r) if !r.removed),
        "removal not committed yet"
    );
    // Nor does a follower that does not hold the removal.
    let n2 = c.node("n2");
    n2.step(Message { from: "n3".into(), to: "n2".into(), rpc_id: 8, body: Body::RequestPreVote(req) });
    let ready = n2.take_ready();
    let answer = ready.messages.iter().find(|m| m.rpc_id == 8).expect("answered");
    assert!(matches!(&answer.body, Body::RequestPreVoteResponse(r) if !r.removed));
}

#[test]
fn s4_2_2_a_follower_whose_committed_configuration_excludes_the_candidate_says_removed_with_proof() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.reconfigure("n1", config_of(&ids(2)));
    let (commit, term) = (c.node("n2").commit_index(), c.node("n2").term());
    let commit_term = c.node("n2").term_at(commit).expect("in the log");
    let n2 = c.node("n2");
    // A higher term than n2's: n2 neither adopts it nor grants anything.
    let req = vote_request(term + 5, "n3", (1, 1));
    n2.step(Message { from: "n3".into(), to: "n2".into(), rpc_id: 9, body: Body::RequestVote(req) });
    let ready = n2.take_ready();
    let answer = ready.messages.iter().find(|m| m.rpc_id == 9).expect("answered");
    assert_eq!(
        answer.body,
        Body::RequestVoteResponse(RequestVoteResponse {
            term,
            granted: false,
            removed: true,
            removal_index: commit,
            removal_term: commit_term,
        })
    );
    assert_eq!(n2.term(), term, "the removed server's term is not adopted");
    assert_eq!(c.leaders(), vec![ServerId::from("n1")]);
}

#[test]
fn s4_2_2_a_new_server_catching_up_through_configurations_without_it_is_not_removed() {
    // One entry per request: n4 holds each configuration without it, with
    // a commit index past it, before it receives the one that adds it.
    let cfg = CoreConfig { max_append_entries: 1, ..CoreConfig::for_tests() };
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.settle();
    for i in 0..5 {
        c.node("n1").propose([cmd(&format!("x{i}"))]).expect("leader");
    }
    c.settle();
    // n4 starts empty: its log will pass through configurations without it.
    c.start("n4", CoreConfig::for_tests(), 4, InitialState::default());
    let mut conf = c.node("n1").configuration().0.clone();
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n4".into(), address: "n4".into() });
    let idx = c.reconfigure("n1", conf);
    c.tick_all(5);
    let n4 = c.node("n4");
    assert!(n4.commit_index() >= idx);
    assert_eq!(n4.state(), RaftState::Follower, "an empty or older configuration is not a removal");
}

#[test]
fn s4_2_2_a_restarted_core_that_recorded_its_removal_starts_removed() {
    let conf = config_of(&ids(3));
    let init = InitialState { removed: true, ..bootstrapped(&conf) };
    let core = Core::new("n1".into(), CoreConfig::for_tests(), 1, init).expect("core");
    assert_eq!(core.state(), RaftState::Removed);
    // From the log alone: member at 1, excluded at 2, both applied.
    let later = config_of(&ids(2));
    let mut init = bootstrapped(&conf);
    init.entries.push(Log::new(2, 1, LogType::Configuration, crate::codec::encode(&later).expect("encode")));
    init.applied = 2;
    let core = Core::new("n3".into(), CoreConfig::for_tests(), 1, init.clone()).expect("core");
    assert_eq!(core.state(), RaftState::Removed);
    // Not applied: the removal may not have committed, so be conservative.
    init.applied = 1;
    let core = Core::new("n3".into(), CoreConfig::for_tests(), 1, init).expect("core");
    assert_eq!(core.state(), RaftState::Follower);
}

#[test]
fn s4_2_2_a_joiner_that_caught_up_to_the_commit_but_not_to_its_own_addition_is_not_removed() {
    let cfg = CoreConfig { max_append_entries: 2, ..CoreConfig::for_tests() };
    let mut c = Cluster::new(3, cfg.clone());
    c.elect_node("n1");
    c.settle();
    assert_eq!(c.node("n1").commit_index(), 2, "bootstrap entry and the leader's no-op");
    c.start("n4", cfg, 4, InitialState::default());
    // The addition cannot commit: n2 and n3 are cut off from the leader.
    for id in ["n2", "n3"] {
        c.cut_between("n1", id);
    }
    let mut conf = c.node("n1").configuration().0.clone();
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n4".into(), address: "n4".into() });
    c.node("n1").propose_configuration(conf).expect("leader");
    c.settle();
    for _ in 0..3 {
        c.node("n1").tick();
        c.settle();
    }
    let n4 = c.node("n4");
    assert_eq!(n4.commit_index(), 2, "n4 reached the leader's commit index");
    assert_eq!(n4.state(), RaftState::Follower, "configurations from before it joined are not a removal");
}

#[test]
fn s4_2_2_a_server_catching_up_past_its_removal_to_its_re_addition_is_not_removed() {
    // n3 misses its removal and its re-addition under the same id. It then
    // catches up one entry at a time: when it holds the removal (committed,
    // as the leader's commit index says) but not yet the entry adding it
    // back, its log does not reach the leader's commit index, so it must
    // not conclude it was removed.
    let cfg = CoreConfig { max_append_entries: 1, ..CoreConfig::for_tests() };
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    let removed_at = c.reconfigure("n1", config_of(&ids(2)));
    let added_at = c.reconfigure("n1", config_of(&ids(3)));
    assert!(c.node("n1").commit_index() >= added_at, "both changes committed");
    assert!(c.node("n3").last_index() < removed_at, "n3 missed both");
    c.heal();
    c.tick_all(20);
    let n3 = c.node("n3");
    assert_eq!(n3.state(), RaftState::Follower, "an old removal followed by a re-addition is not a removal");
    assert!(n3.commit_index() >= added_at, "n3 caught up");
}

#[test]
fn s4_2_2_a_server_restarted_as_removed_declines_every_request() {
    let init = InitialState { removed: true, ..bootstrapped(&config_of(&ids(3))) };
    let mut core = Core::new("n1".into(), CoreConfig::for_tests(), 1, init).expect("core");
    assert!(core.is_removed());
    core.step(msg("n2", "n1", 3, Body::RequestVote(vote_request(5, "n2", (9, 4)))));
    core.step(msg("n3", "n1", 4, Body::AppendEntries(append_request(5, "n3", (0, 0), Vec::new(), 0))));
    let ready = core.take_ready();
    assert_eq!(ready.declined, vec![3, 4]);
    assert!(ready.messages.is_empty() && ready.persisted_messages.is_empty());
}

/// Proposes the removal of n3 on the leader n1 and ticks until n1 has
/// committed it and sent n3 the final heartbeat, losing every message that
/// would tell n3 the removal committed. Returns how many were lost.
fn remove_n3_losing_its_final_heartbeat(c: &mut Cluster) -> usize {
    let idx = c.node("n1").propose_configuration(config_of(&ids(2))).expect("leader accepts the change");
    let mut lost = 0;
    for _ in 0..20 {
        for core in c.cores() {
            core.tick();
        }
        c.settle_with(|m| match &m.body {
            Body::AppendEntries(a) if m.to.as_str() == "n3" && a.leader_commit >= idx => {
                lost += 1;
                None
            }
            _ => Some(m),
        });
        if !c.node("n1").departing_peers().is_empty() {
            break;
        }
    }
    assert!(c.node("n1").commit_index() >= idx, "the removal committed");
    lost
}

#[test]
fn s4_2_2_a_removed_server_that_missed_the_final_heartbeat_is_told_again() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let lost = remove_n3_losing_its_final_heartbeat(&mut c);
    assert!(lost >= 1, "the final heartbeat was sent (and lost)");
    assert_eq!(c.node("n3").state(), RaftState::Follower, "n3 has not heard yet");
    assert!(c.progress("n1", "n3").is_none(), "n3 is no longer a follower of n1");
    assert_eq!(c.node("n1").departing_peers(), vec![ServerId::from("n3")], "but is still being told");
    // n3 is not a voter of its own latest configuration, so it never
    // campaigns and never hears a vote refusal: only the leader's reminder
    // can tell it.
    c.tick_all(CoreConfig::for_tests().heartbeat_ticks as usize + 1);
    assert_eq!(c.node("n3").state(), RaftState::Removed, "the reminder reached it");
    assert!(c.node("n1").departing_peers().is_empty(), "and the leader forgot it once it answered");
    assert_eq!(c.leaders(), vec![ServerId::from("n1")]);
}

#[test]
fn s4_2_2_the_leader_stops_reminding_a_removed_server_that_never_answers() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    remove_n3_losing_its_final_heartbeat(&mut c);
    c.isolate("n3");
    assert_eq!(c.node("n1").departing_peers(), vec![ServerId::from("n3")]);
    let cfg = CoreConfig::for_tests();
    c.tick_all(2 * cfg.follower_timeout_ticks as usize + cfg.heartbeat_ticks as usize);
    assert!(
        c.node("n1").departing_peers().is_empty(),
        "bounded: the leader gives up after two election timeouts"
    );
}

#[test]
fn s4_2_2_a_removed_server_that_never_hears_its_removal_committed_asks_and_is_told() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    remove_n3_losing_its_final_heartbeat(&mut c);
    let idx = c.node("n1").configuration().1;
    let term = c.node("n1").term();
    // Every message that would tell n3 its removal committed is lost, for
    // good: the leader's reminders end, and n3 (no voter of its own latest
    // configuration) never campaigns. Its timer fires as usual.
    c.node("n3").election_timeout = 20;
    for _ in 0..200 {
        for core in c.cores() {
            core.tick();
        }
        c.settle_with(|m| match &m.body {
            Body::AppendEntries(a) if m.to.as_str() == "n3" && a.leader_commit >= idx => None,
            _ => Some(m),
        });
        if c.node("n3").state() == RaftState::Removed {
            break;
        }
    }
    assert_eq!(c.node("n3").state(), RaftState::Removed, "n3 asked the cluster and the leader told it");
    assert_eq!(c.leaders(), vec![ServerId::from("n1")], "the question disturbed no one");
    assert_eq!(c.node("n1").term(), term);
    assert_eq!(c.node("n2").term(), term);
}

#[test]
fn s4_2_2_a_server_asking_whether_it_was_removed_never_campaigns() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    remove_n3_losing_its_final_heartbeat(&mut c);
    // The leader is gone before n3 hears anything: n2, hearing from no
    // leader, does not answer "removed" (its view may be behind), and n3
    // must not start an election of its own.
    c.crash("n1");
    let term = c.node("n3").term();
    c.node("n3").election_timeout = 20;
    c.tick_all(200);
    let n3 = c.node("n3");
    assert_eq!(n3.state(), RaftState::Follower);
    assert_eq!(n3.term(), term, "never campaigned");
}

/// n4 misses its removal (cut off), the leader that committed it crashes,
/// and by the time n4 hears from the cluster again its term is above the
/// new leader's (raised while cut off, as when it heard the vote request
/// of another server the change removed). The new leader answers its
/// (pre-)votes `removed` with its own, lower term; n4 must still stop.
#[test]
fn s4_2_2_a_removed_server_whose_term_passed_the_new_leaders_is_told_by_proof() {
    let mut c = Cluster::new(4, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n4");
    let idx = c.reconfigure("n1", config_of(&ids(3)));
    assert!(c.node("n1").commit_index() >= idx, "the removal committed");
    assert!(c.node("n4").last_index() < idx, "n4 missed it");
    // The leader that removed n4 crashes: n2 or n3 takes over.
    c.crash("n1");
    let leader = c.elect();
    let leader_term = c.node(leader.as_str()).term();
    let n4 = c.node("n4");
    n4.hard.term = leader_term + 3;
    let term = n4.term();
    c.heal();
    for _ in 0..100 {
        c.tick_all(1);
        if c.node("n4").is_removed() {
            break;
        }
    }
    let n4 = c.node("n4");
    assert_eq!(
        n4.state(),
        RaftState::Removed,
        "n4 trusted the lower-term answer: its log confirms the proof"
    );
    assert_eq!(n4.term(), term, "it never learned a higher term");
    assert_eq!(c.leaders(), vec![leader.clone()], "the new leader was not disturbed");
    assert_eq!(c.node(leader.as_str()).term(), leader_term);
    // Once removed it stays quiet.
    for _ in 0..50 {
        c.node("n4").tick();
        assert!(!c.node("n4").has_ready());
    }
}

/// A "removed" answer of a term below the candidate's carries an entry
/// committed under the configuration that excludes it; the candidate
/// trusts it only if its own log confirms it.
#[test]
fn s4_2_2_an_older_terms_removed_answer_is_trusted_only_if_the_log_confirms_its_proof() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let (last, last_term) = (c.node("n3").last_index(), c.node("n3").last_term());
    let n3 = c.node("n3");
    n3.hard.term = 9;
    n3.start_election(false);
    let answer = |removal_index, removal_term| Message {
        from: "n1".into(),
        to: "n3".into(),
        rpc_id: 0,
        body: Body::RequestVoteResponse(RequestVoteResponse {
            term: 2,
            granted: false,
            removed: true,
            removal_index,
            removal_term,
        }),
    };
    // No proof: not trusted, whatever the term.
    n3.step(answer(0, 0));
    assert_eq!(n3.state(), RaftState::Candidate);
    // n3 holds the entry, and its configuration there includes it: a newer
    // configuration may have added it back since.
    n3.step(answer(last, last_term));
    assert_eq!(n3.state(), RaftState::Candidate, "its log contradicts the proof");
    // An entry at n3's last index but of another term: n3's entry there
    // conflicts with a committed one, so none of its entries from there on
    // (or after) can have added it back.
    n3.step(answer(last, last_term + 1));
    assert_eq!(n3.state(), RaftState::Removed);

    // An entry past the end of the log: n3 never acknowledged anything
    // after it.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let last = c.node("n3").last_index();
    let n3 = c.node("n3");
    n3.hard.term = 9;
    n3.start_election(false);
    n3.step(answer(last + 1, 1));
    assert_eq!(n3.state(), RaftState::Removed);
}

/// A server that holds the proof entry and a later configuration (in its
/// log) adding it back ignores an older term's "removed" answer.
#[test]
fn s4_2_2_a_server_added_back_after_the_proof_ignores_an_older_terms_removed_answer() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let removed_at = c.reconfigure("n1", config_of(&ids(2)));
    let removed_term = c.node("n1").term();
    // n3 was removed (rule 1); start it again from a disk holding its
    // removal followed by the entry that added it back.
    assert!(c.node("n3").is_removed());
    let added_at = c.reconfigure("n1", config_of(&ids(3)));
    let mut init = bootstrapped(&config_of(&ids(3)));
    init.entries = c.node("n1").log.slice(1, added_at, usize::MAX);
    init.hard_state.term = 9;
    c.start("n3", CoreConfig::for_tests(), 3, init);
    let n3 = c.node("n3");
    assert!(!n3.is_removed());
    n3.start_election(false);
    let answer = RequestVoteResponse {
        term: removed_term,
        granted: false,
        removed: true,
        removal_index: removed_at,
        removal_term: removed_term,
    };
    n3.step(Message {
        from: "n1".into(),
        to: "n3".into(),
        rpc_id: 0,
        body: Body::RequestVoteResponse(answer),
    });
    assert_eq!(n3.state(), RaftState::Candidate, "a configuration after the proof adds it back");
}

/// n3 is removed, its disk is wiped, and it is added back under the same
/// id (as a non-voter, at `added_at`). Catching up from an empty log a few
/// entries per request, it holds its old removal, committed, before the
/// entry adding it back: neither the leader's requests nor its heartbeats
/// may make it conclude it was removed (rule 1) while it is a member of the
/// leader's latest configuration, even when the addition is not committed
/// yet and its log reaches the leader's commit index.
#[test]
fn s4_2_2_a_removed_server_wiped_and_added_back_catches_up() {
    let cfg = CoreConfig { max_append_entries: 4, ..CoreConfig::for_tests() };
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.settle();
    c.propose_many("n1", 6);
    c.reconfigure("n1", config_of(&ids(2)));
    assert!(c.node("n3").is_removed());
    c.propose_many("n1", 10);
    let commit = c.node("n1").commit_index();
    // Nothing commits from here on until n2 is back.
    c.cut_between("n1", "n2");
    c.propose_many("n1", 6);
    c.wipe("n3");
    let mut conf = config_of(&ids(2));
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n3".into(), address: "n3".into() });
    let added_at = c.node("n1").propose_configuration(conf).expect("leader");
    assert_eq!(c.node("n1").commit_index(), commit);
    // Every request carrying the entry that adds n3 back is lost, so n3's
    // log ends short of it, past the leader's commit index.
    let run = |c: &mut Cluster, ticks: usize| {
        for _ in 0..ticks {
            for core in c.cores() {
                core.tick();
            }
            c.settle_with(|m| match &m.body {
                Body::AppendEntries(a)
                    if m.to.as_str() == "n3" && a.entries.last().is_some_and(|e| e.index >= added_at) =>
                {
                    None
                }
                _ => Some(m),
            });
            assert!(!c.node("n3").is_removed(), "n3 concluded it was removed while catching up");
        }
    };
    run(&mut c, 30);
    assert!(c.node("n3").last_index() >= commit, "n3's log reaches the commit index");
    assert!(c.node("n3").last_index() < added_at);
    // The addition commits; the leader's heartbeats to n3 still must not
    // carry a commit index that makes n3's old removal look final.
    c.connect("n1", "n2");
    run(&mut c, 30);
    assert!(c.node("n1").commit_index() >= added_at);
    // Now the requests get through.
    c.tick_all(20);
    let (last, commit) = (c.node("n1").last_index(), c.node("n1").commit_index());
    let n3 = c.node("n3");
    assert_eq!(n3.state(), RaftState::Follower);
    assert_eq!(n3.last_index(), last, "caught up");
    assert_eq!(n3.commit_index(), commit);
    assert_eq!(c.progress("n1", "n3").map(|p| p.matched), Some(last));
}

/// A server that missed its removal wins an election among servers of its
/// old configuration that were wiped since (empty logs grant any vote)
/// before the "removed" answer to its campaign arrives: the late answer
/// still stops it, since its log confirms the proof.
#[test]
fn s4_2_2_a_removed_server_that_won_an_election_before_the_answer_arrived_is_removed() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let last = c.node("n1").last_index();
    let n1 = c.node("n1");
    assert!(n1.is_leader());
    let answer = |removal_index, removal_term| Message {
        from: "n2".into(),
        to: "n1".into(),
        rpc_id: 0,
        body: Body::RequestVoteResponse(RequestVoteResponse {
            term: 1,
            granted: false,
            removed: true,
            removal_index,
            removal_term,
        }),
    };
    // Not confirmed: n1 holds the entry and its configuration includes it.
    let term_at_last = n1.term_at(last).expect("in the log");
    n1.step(answer(last, term_at_last));
    assert!(n1.is_leader(), "a leader whose log contradicts the proof keeps leading");
    // Confirmed: a committed entry past the end of its log.
    n1.step(answer(last + 3, 7));
    assert_eq!(n1.state(), RaftState::Removed);
}

/// n3 is removed while cut off (it never holds the removal), and its disk
/// is wiped before it is reachable again, to add it back later. The leader
/// must not replicate the log to the empty server and tell it it was
/// removed (rule 1): it forgets it, and adding it back works.
#[test]
fn s4_2_2_a_removed_server_wiped_before_it_heard_of_its_removal_is_not_told_and_can_be_added_back() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.reconfigure("n1", config_of(&ids(2)));
    assert!(c.progress("n1", "n3").is_some(), "the leader still replicates to n3");
    c.wipe("n3");
    c.heal();
    c.tick_all(5);
    assert!(c.progress("n1", "n3").is_none(), "the leader forgot the empty server");
    assert!(c.node("n1").departing_peers().is_empty());
    assert_eq!(c.node("n3").state(), RaftState::Follower, "the empty server was not told it was removed");
    assert_eq!(c.node("n3").last_index(), 0);
    let mut conf = config_of(&ids(2));
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n3".into(), address: "n3".into() });
    c.reconfigure("n1", conf);
    c.tick_all(10);
    let last = c.node("n1").last_index();
    let n3 = c.node("n3");
    assert_eq!(n3.state(), RaftState::Follower);
    assert_eq!(n3.last_index(), last, "added back, it caught up");
}

#[test]
fn s4_2_2_a_removed_server_that_is_down_is_retired_after_two_election_timeouts() {
    // n3 is down before its removal: it never holds the removal entry, so
    // the leader cannot wait for that to stop replicating to it.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    let idx = c.reconfigure("n1", config_of(&ids(2)));
    assert!(c.node("n1").commit_index() >= idx, "n1 and n2 commit the removal");
    assert!(c.progress("n1", "n3").is_some(), "still replicated to while it may come back");
    let cfg = CoreConfig::for_tests();
    c.tick_all(2 * cfg.follower_timeout_ticks as usize + cfg.heartbeat_ticks as usize);
    assert!(
        c.progress("n1", "n3").is_none(),
        "a removed server silent for two election timeouts is no longer a follower of the leader"
    );
}

#[test]
fn s4_2_2_only_an_accepted_final_heartbeat_ends_the_reminders() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    remove_n3_losing_its_final_heartbeat(&mut c);
    assert_eq!(c.node("n1").departing_peers(), vec![ServerId::from("n3")]);
    // n3's answer to the reminder comes back as a refusal (say its log was
    // cut since): it has not learned the removal committed.
    let step = CoreConfig::for_tests().heartbeat_ticks as usize + 1;
    for _ in 0..step {
        for core in c.cores() {
            core.tick();
        }
        c.settle_with(|mut m| {
            if let Body::AppendEntriesResponse(r) = &mut m.body {
                if m.from.as_str() == "n3" {
                    r.success = false;
                }
            }
            Some(m)
        });
    }
    assert_eq!(
        c.node("n1").departing_peers(),
        vec![ServerId::from("n3")],
        "a refused final heartbeat is repeated, not taken as learned"
    );
}

#[test]
fn s4_2_2_a_final_heartbeat_sent_after_later_commits_carries_no_commit_beyond_the_removed_servers_log() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    remove_n3_losing_its_final_heartbeat(&mut c);
    // The cluster moves on: n1 and n2 commit entries n3 will never hold.
    c.propose_many("n1", 5);
    let commit = c.node("n1").commit_index();
    assert!(c.node("n3").last_index() < commit);
    assert_eq!(c.node("n3").state(), RaftState::Follower);
    // The reminder must carry a commit index n3's log reaches (its match
    // index), or n3 cannot tell that the removal it holds committed.
    c.tick_all(CoreConfig::for_tests().heartbeat_ticks as usize + 1);
    assert_eq!(c.node("n3").state(), RaftState::Removed, "the reminder told n3 its removal committed");
    assert!(c.node("n1").departing_peers().is_empty());
}

#[test]
fn s4_2_2_a_server_added_back_while_being_told_of_its_removal_is_no_longer_told() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    remove_n3_losing_its_final_heartbeat(&mut c);
    assert_eq!(c.node("n1").departing_peers(), vec![ServerId::from("n3")]);
    // Added back before any reminder reached it.
    c.node("n1").propose_configuration(config_of(&ids(3))).expect("leader accepts the change");
    assert!(c.node("n1").departing_peers().is_empty(), "a member again, not a departing server");
    c.settle();
    c.tick_all(2);
    assert_eq!(c.node("n3").state(), RaftState::Follower, "n3 was never told it was removed");
    let last = c.node("n1").last_index();
    assert_eq!(c.progress("n1", "n3").map(|p| p.matched), Some(last), "and it caught up");
}
