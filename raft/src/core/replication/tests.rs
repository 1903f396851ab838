//! Scenario tests of `replication.rs`: Log replication (§5.3), commitment by current-term counting (§5.4.2, Figure 8), durability before acknowledging, and re-replication to followers whose logs lost entries. Each test is named after the
//! section of the Raft paper (or thesis) whose rule it checks, and runs on
//! the shared driver in [`scenario`](crate::core::scenario).

use crate::core::scenario::*;
use crate::core::*;
use crate::message::*;

#[test]
fn s5_3_replicated_entries_are_applied_in_order_on_every_node() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 200);
    c.tick_all(3);
    let leader_log: Vec<Log> = c.applied("n1").to_vec();
    let commands = leader_log.iter().filter(|l| l.log_type == LogType::Command).count();
    assert_eq!(commands, 200);
    for id in ["n2", "n3"] {
        assert_eq!(c.applied(id), leader_log, "{id} applied the same sequence");
    }
}

#[test]
fn s5_3_a_lagging_follower_catches_up_in_requests_cut_by_bytes() {
    // A follower that missed many large entries is sent them in requests
    // whose entries stay within the byte budget (data + overhead each), an
    // entry larger than the budget alone, and it catches up.
    let each = 1000 + crate::transport::ENTRY_OVERHEAD;
    let mut cfg = CoreConfig::for_tests();
    cfg.max_append_bytes = 3 * each;
    cfg.max_append_entries = 64;
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    let payload = |i: usize| (LogType::Command, Bytes::from(vec![i as u8; if i == 7 { 5000 } else { 1000 }]));
    for i in 0..30 {
        c.node("n1").propose([payload(i)]).expect("leader");
    }
    c.settle();
    c.heal();
    let (mut requests, mut most, mut alone) = (0, 0, false);
    for _ in 0..40 {
        for core in c.cores() {
            core.tick();
        }
        c.settle_with(|m| {
            let Body::AppendEntries(req) = &m.body else { return Some(m) };
            if m.to.as_str() != "n3" || req.entries.is_empty() {
                return Some(m);
            }
            requests += 1;
            let bytes: usize =
                req.entries.iter().map(|e| e.data.len() + crate::transport::ENTRY_OVERHEAD).sum();
            if req.entries.len() > 1 {
                assert!(
                    bytes <= 3 * each,
                    "{} entries of {bytes} bytes exceed the budget",
                    req.entries.len()
                );
            }
            most = most.max(req.entries.len());
            alone |= req.entries.len() == 1 && req.entries[0].data.len() == 5000;
            Some(m)
        });
    }
    assert_eq!(c.node("n3").last_index(), c.node("n1").last_index(), "n3 caught up");
    let last = c.node("n3").last_index();
    let n3_sizes: Vec<usize> =
        (1..=last).filter_map(|i| c.node("n3").entry(i).map(|e| e.data.len())).collect();
    assert_eq!(n3_sizes.iter().filter(|&&n| n == 5000).count(), 1, "n3 holds the large entry");
    assert_eq!(most, 3, "full requests carry as many entries as the budget allows");
    assert!(alone, "the entry over the budget was sent alone");
    assert!(requests >= 10, "30 entries of ~1 KB took {requests} requests under a 3 KB budget");
}

#[test]
fn s5_3_follower_truncates_a_conflicting_suffix() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    // n1 appends entries that only it has, then loses leadership.
    c.isolate("n1");
    c.node("n1").propose([cmd("lost1"), cmd("lost2"), cmd("lost3")]).expect("leader");
    c.settle();
    c.elect_node("n2");
    c.node("n2").propose([cmd("kept")]).expect("leader");
    c.settle();
    c.heal();
    c.tick_all(30);
    let n1_log: Vec<Bytes> = (1..=c.node("n1").last_index())
        .filter_map(|i| c.node("n1").entry(i).map(|e| e.data.clone()))
        .collect();
    assert!(n1_log.contains(&Bytes::from_static(b"kept")));
    assert!(!n1_log.contains(&Bytes::from_static(b"lost1")), "uncommitted suffix was replaced");
    assert_eq!(c.node("n1").last_index(), c.node("n2").last_index());
}

#[test]
fn s5_3_rejection_hint_skips_a_whole_conflicting_term() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    // n1 holds entries 2..=6 of term 2 that nobody else has.
    n1.hard.term = 2;
    let entries: Vec<Log> = (2..=6).map(|i| Log::new(i, 2, LogType::Command, "x")).collect();
    n1.append_local(entries);
    let req = append_request(3, "n2", (6, 3), vec![], 1);
    n1.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 1, body: Body::AppendEntries(req) });
    let ready = n1.take_ready();
    let resp = ready
        .messages
        .iter()
        .find_map(|m| match &m.body {
            Body::AppendEntriesResponse(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a response");
    assert!(!resp.success);
    assert_eq!((resp.conflict_term, resp.conflict_index), (2, 2), "hint names the first index of term 2");
}

#[test]
fn s5_4_2_figure_8_leader_does_not_commit_an_old_term_entry_by_counting() {
    let mut cfg = CoreConfig::for_tests();
    cfg.check_quorum = false;
    cfg.pre_vote = false;
    let mut c = Cluster::new(5, cfg);
    // (a) n1 leads term 2 and replicates entry 3 (term 2) to n2 only.
    c.elect_node("n1");
    let t2 = c.node("n1").term();
    c.isolate("n1");
    c.connect("n1", "n2");
    let idx = c.node("n1").propose([cmd("old")]).expect("leader");
    c.settle();
    assert_eq!(c.node("n2").term_at(idx), Some(t2));
    // (b) n1 crashes/isolated; n5 leads a later term with votes of n3, n4, n5
    // and writes a different entry at the same index, replicated nowhere.
    c.heal();
    c.isolate("n1");
    c.isolate("n2");
    for _ in 0..5 {
        let timeout = c.node("n5").election_timeout;
        for _ in 0..timeout + 1 {
            c.node("n5").tick();
        }
        deliver_without_current_term_entries(&mut c);
        if c.node("n5").is_leader() {
            break;
        }
    }
    assert!(c.node("n5").is_leader());
    c.isolate("n5");
    c.node("n5").propose([cmd("other")]).expect("leader");
    c.settle();
    // (c) n1 comes back, wins a new term with n2, n3 (n5 isolated), and
    // replicates its old-term entry to a majority (n1, n2, n3).
    c.heal();
    c.isolate("n5");
    c.isolate("n4");
    c.connect("n4", "n5");
    // Stop n1's no-op from committing the old entry: intercept by checking
    // the commit index right after the election but before acknowledgements.
    for _ in 0..5 {
        let timeout = c.node("n1").election_timeout;
        for _ in 0..timeout + 1 {
            c.node("n1").tick();
        }
        // Deliver everything, except that AppendEntries lose their
        // current-term entries: the old entry spreads, the no-op does not.
        deliver_without_current_term_entries(&mut c);
        if c.node("n1").is_leader() {
            break;
        }
    }
    let n1 = c.node("n1");
    assert!(n1.is_leader());
    assert!(n1.term() > t2);
    assert_eq!(c.node("n3").term_at(idx), Some(t2), "old entry now on n1, n2, n3");
    let n1 = c.node("n1");
    assert!(
        n1.commit_index() < idx,
        "entry {idx} from term {t2} is on a majority but must not be committed by counting (commit {})",
        n1.commit_index()
    );
    // Once the current term's no-op is on a majority, both commit together.
    c.settle();
    c.tick_all(5);
    assert!(c.node("n1").commit_index() > idx);
}

/// Delivers what is in flight (at most 1,000 messages), except that each
/// AppendEntries loses the entries of the leader's own term: older entries
/// spread, the new term's no-op does not.
fn deliver_without_current_term_entries(c: &mut Cluster) {
    for _ in 0..1000 {
        c.collect();
        let Some(mut m) = c.queue.pop_front() else { break };
        if let Body::AppendEntries(req) = &mut m.body {
            let term = req.term;
            req.entries.retain(|e| e.term != term);
        }
        c.deliver(m);
    }
}

#[test]
fn s5_1_stale_leader_cannot_commit() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let old_commit = c.node("n1").commit_index();
    c.isolate("n1");
    c.node("n1").propose([cmd("doomed")]).expect("still thinks it leads");
    c.settle();
    c.elect_node("n2");
    // The old leader hears from nobody: it cannot commit its entry.
    for _ in 0..5 {
        c.node("n1").tick();
        c.settle();
    }
    assert_eq!(c.node("n1").commit_index(), old_commit);
    c.heal();
    c.tick_all(20);
    assert!(!c.node("n1").is_leader(), "stale leader stepped down on seeing the higher term");
    assert!(c.applied("n1").iter().all(|l| l.data != "doomed"));
}

#[test]
fn durability_leader_counts_itself_only_after_its_own_fsync() {
    let mut c = Cluster::new(1, CoreConfig::for_tests());
    c.elect_node("n1");
    c.auto_persist = false;
    let idx = c.node("n1").propose([cmd("x")]).expect("leader");
    let ready = c.node("n1").take_ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(c.node("n1").commit_index() < idx, "not committed before local fsync");
    c.node("n1").persisted(idx, ready.entries[0].term);
    assert_eq!(c.node("n1").commit_index(), idx);
    // With peers: a follower's durable copy plus the leader's copy still
    // waiting for its fsync is not a quorum of durable copies.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.auto_persist = false;
    let idx = c.node("n1").propose([cmd("x")]).expect("leader");
    c.settle();
    assert!(c.sync("n2"), "n2 received the entry");
    c.settle();
    assert_eq!(c.progress("n1", "n2").map(|p| p.matched), Some(idx), "n2 acknowledged it");
    assert!(c.node("n1").commit_index() < idx, "the leader's own copy is not durable yet");
    assert!(c.sync("n1"));
    assert_eq!(c.node("n1").commit_index(), idx, "committed once the leader's fsync completed");
}

#[test]
fn durability_entries_are_applied_only_after_the_local_fsync() {
    // A follower may learn that an entry committed before its own copy is
    // durable: it applies the entry only after its fsync.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.tick_all(1);
    let (term, last) = (c.node("n2").term(), c.node("n2").last_index());
    assert_eq!(c.node("n2").applied_index(), last, "n2 applied everything before");
    let req = append_request(
        term,
        "n1",
        (last, term),
        vec![Log::new(last + 1, term, LogType::Command, "x")],
        last + 1,
    );
    c.auto_persist = false;
    c.node("n2").step(msg("n1", "n2", 3, Body::AppendEntries(req)));
    let i = last + 1;
    let ready = c.take_ready("n2");
    assert_eq!(
        render_ready(&ready),
        [
            format!("append {i}/{term}"),
            format!("after persist send n2->n1 AppResp#3 t{term} ok last={i} round=0")
        ],
        "nothing is applied before the entry is durable"
    );
    c.execute("n2", ready);
    assert_eq!(c.node("n2").commit_index(), i, "although n2 knows it committed");
    assert!(c.sync("n2"), "the fsync completes");
    assert_eq!(render_ready(&c.take_ready("n2")), [format!("apply {i}/{term}")]);
}

#[test]
fn durability_a_crash_before_the_fsync_loses_the_write_and_its_acknowledgement() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.tick_all(1);
    let before = c.node("n2").last_index();
    c.auto_persist = false;
    let idx = c.node("n1").propose([cmd("x")]).expect("leader");
    c.settle();
    // n2 crashes before its write is durable: the entry and the
    // acknowledgement waiting for it are gone.
    c.crash("n2");
    assert!(c.sync("n3") && c.sync("n1"));
    c.settle();
    assert_eq!(c.progress("n1", "n2").map(|p| p.matched), Some(before), "n2 never acknowledged {idx}");
    assert_eq!(c.node("n1").commit_index(), idx, "n1 and n3 hold it durably");
    c.restart("n2", CoreConfig::for_tests(), 22);
    assert_eq!(c.node("n2").last_index(), before, "n2 restarts from its disk, without {idx}");
    c.auto_persist = true;
    c.tick_all(3);
    assert_eq!(c.host("n2").disk.mem.last_index(), idx, "the leader sent it again");
    assert_eq!(c.node("n2").commit_index(), idx);
}

#[test]
fn durability_a_late_fsync_report_for_a_replaced_entry_is_ignored() {
    // n2 writes entry 2 of term 2; before that write is durable a leader of
    // term 3 replaces it with its own entry 2. The first write's completion
    // says nothing about the new entry.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let append = |term: u64, leader: &str| {
        append_request(term, leader, (1, 1), vec![Log::new(2, term, LogType::Command, "x")], 1)
    };
    let n2 = c.node("n2");
    n2.step(msg("n1", "n2", 1, Body::AppendEntries(append(2, "n1"))));
    let _ = n2.take_ready();
    n2.step(msg("n3", "n2", 2, Body::AppendEntries(append(3, "n3"))));
    assert_eq!(
        render_ready(&n2.take_ready()),
        [
            "persist term 3 vote none",
            "truncate from 2",
            "append 2/3",
            "after persist send n2->n3 AppResp#2 t3 ok last=2 round=0"
        ]
    );
    n2.persisted(2, 2);
    assert_eq!(n2.persisted_index(), 1, "the report for the replaced entry 2/2 is stale");
    n2.persisted(2, 3);
    assert_eq!(n2.persisted_index(), 2);
}

#[test]
fn durability_follower_acks_only_after_persisting() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    let req = append_request(
        term,
        "n1",
        (c.node("n2").last_index(), c.node("n2").last_term()),
        vec![Log::new(c.node("n2").last_index() + 1, term, LogType::Command, "x")],
        0,
    );
    let n2 = c.node("n2");
    n2.step(Message { from: "n1".into(), to: "n2".into(), rpc_id: 3, body: Body::AppendEntries(req) });
    let ready = n2.take_ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.messages.is_empty());
    assert!(matches!(&ready.persisted_messages[0].body, Body::AppendEntriesResponse(r) if r.success));
}

#[test]
fn bad_input_entries_that_skip_indexes_are_ignored() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let req = append_request(2, "n2", (1, 1), vec![Log::new(5, 2, LogType::Command, "x")], 5);
    let n1 = c.node("n1");
    n1.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 1, body: Body::AppendEntries(req) });
    assert_eq!(n1.last_index(), 1);
    assert_eq!(n1.commit_index(), 0);
}

#[test]
fn s5_3_follower_with_an_empty_log_hints_to_start_from_index_1() {
    // A follower that restarted with nothing at all (term 0) joins the
    // leader's term on its first AppendEntries and answers with a hint
    // the leader can use: its log ends at 0, retry from 1.
    let mut f = Core::new("n2".into(), CoreConfig::for_tests(), 7, InitialState::default()).expect("core");
    let req = append_request(5, "n1", (40, 5), vec![], 40);
    f.step(Message { from: "n1".into(), to: "n2".into(), rpc_id: 1, body: Body::AppendEntries(req) });
    assert_eq!((f.term(), f.leader()), (5, Some(&ServerId::from("n1"))), "joined the leader's term");
    assert_eq!(f.state(), RaftState::Follower);
    let ready = f.take_ready();
    assert_eq!(ready.hard_state, Some(HardState { term: 5, vote: None }), "the new term is made durable");
    let resp = append_responses(&ready.messages);
    assert_eq!(resp.len(), 1);
    let r = &resp[0];
    assert_eq!((r.term, r.success, r.last_log_index, r.conflict_term, r.conflict_index), (5, false, 0, 0, 1));
    assert_eq!(f.commit_index(), 0, "a refused heartbeat commits nothing");
}

#[test]
fn s5_3_follower_with_a_shorter_log_hints_its_last_index_plus_one() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n2 = c.node("n2");
    n2.append_local((2..=4).map(|i| Log::new(i, 1, LogType::Command, "x")).collect());
    let _ = n2.take_ready();
    let req = append_request(2, "n1", (9, 2), vec![], 9);
    n2.step(Message { from: "n1".into(), to: "n2".into(), rpc_id: 1, body: Body::AppendEntries(req) });
    let r = append_responses(&n2.take_ready().messages).pop().expect("an answer");
    assert_eq!((r.success, r.last_log_index, r.conflict_term, r.conflict_index), (false, 4, 0, 5));
}

#[test]
fn s5_3_leader_re_replicates_to_a_follower_that_lost_its_whole_log() {
    // Issue 13 item 1: n3 acknowledged everything, then its disk was
    // replaced. Its refusal hints index 1, below what it acknowledged: the
    // leader believes it, resets n3's progress, reports it, and sends the
    // whole log again.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 30);
    let last = c.node("n1").last_index();
    assert_eq!(c.progress("n1", "n3").expect("peer tracked").matched, last);
    c.wipe("n3");
    let _ = c.node("n1").take_ready();
    // The next heartbeat (prev = n3's old match) is refused.
    for _ in 0..20 {
        for core in c.cores() {
            core.tick();
        }
        c.settle();
    }
    let resets = &c.host("n1").log_resets;
    assert_eq!(resets.len(), 1, "one reset, reported once: {resets:?}");
    assert_eq!(resets[0], LogReset { peer: "n3".into(), matched: last, last_log_index: 0 });
    let n1 = (c.node("n1").last_index(), c.node("n1").commit_index(), c.node("n1").term());
    let n3 = (c.node("n3").last_index(), c.node("n3").commit_index(), c.node("n3").term());
    assert_eq!(n3.0, n1.0, "n3 has the whole log again");
    assert_eq!(n3.1, n1.1);
    assert_eq!(n3.2, n1.2);
    let p = c.progress("n1", "n3").expect("peer tracked");
    assert_eq!(p.matched, c.node("n1").last_index(), "and is matched again");
}

#[test]
fn s5_3_leader_re_replicates_a_cut_off_log_tail() {
    // The last three entries of n2's log were cut off (a torn tail) while
    // its term and vote survived.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 10);
    let last = c.node("n1").last_index();
    let n2 = c.node("n2");
    let init = InitialState {
        hard_state: n2.hard.clone(),
        entries: (1..=last - 3).filter_map(|i| n2.entry(i).cloned()).collect(),
        ..InitialState::default()
    };
    c.start("n2", CoreConfig::for_tests(), 5, init);
    c.tick_all(3);
    assert_eq!(c.progress("n1", "n2").expect("peer tracked").matched, last, "matched again after the reset");
    assert_eq!(c.node("n2").last_index(), last);
    assert_eq!(c.node("n2").commit_index(), last);
}

#[test]
fn s5_3_a_reset_follower_needing_compacted_entries_gets_a_snapshot() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 10);
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("compact");
    c.wipe("n3");
    let mut asked = false;
    for _ in 0..10 {
        c.node("n1").tick();
        // Deliver n1's messages to n3 and its answers back (bounded: a
        // leader that keeps probing above the wiped log never stops).
        c.deliver_some(1000);
        asked = c.host("n1").snapshots_to_send.contains(&ServerId::from("n3"));
        if asked {
            break;
        }
    }
    assert!(asked, "the leader streams a snapshot to the wiped follower");
}

#[test]
fn s5_3_a_delayed_rejection_below_the_match_costs_a_resend_not_safety() {
    // A refusal n2 sent long ago (when its log ended at 1) arrives after n2
    // acknowledged everything. The leader resets n2's progress: it lowers
    // n2's match (never its own commit) and re-sends; n2 simply
    // acknowledges again and everything comes back to rest.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 5);
    let (term, last, commit) = (c.node("n1").term(), c.node("n1").last_index(), c.node("n1").commit_index());
    let stale = AppendEntriesResponse {
        term,
        success: false,
        last_log_index: 1,
        conflict_term: 0,
        conflict_index: 2,
        round: 0,
    };
    c.node("n1").step(Message {
        from: "n2".into(),
        to: "n1".into(),
        rpc_id: 0,
        body: Body::AppendEntriesResponse(stale),
    });
    assert_eq!(c.node("n1").commit_index(), commit, "commit never moves back");
    let p = c.progress("n1", "n2").expect("peer tracked");
    assert_eq!((p.matched, p.next), (0, 2));
    c.settle();
    c.tick_all(2);
    assert_eq!(c.progress("n1", "n2").expect("peer tracked").matched, last, "n2 acknowledged again");
    assert_eq!(c.node("n2").last_index(), last);
    assert!(c.node("n1").is_leader());
    assert!(c.at_rest(), "at rest");
}

/// The AppendEntries answers `msgs` hold, in order.
fn append_responses(msgs: &[Message]) -> Vec<AppendEntriesResponse> {
    msgs.iter()
        .filter_map(|m| match &m.body {
            Body::AppendEntriesResponse(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_ready_holding_only_a_log_reset_is_not_empty() {
    let reset = LogReset { peer: "n2".into(), matched: 9, last_log_index: 0 };
    let ready = Ready { log_resets: vec![reset], ..Ready::default() };
    assert!(!ready.is_empty(), "the driver must see it to report it");
}

#[test]
fn durability_a_crash_before_the_fsync_step_by_step() {
    script::run("replication/testdata/durability_crash.txt", include_str!("testdata/durability_crash.txt"));
}
