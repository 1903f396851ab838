//! Scenario tests of the protocol core, one per rule, each labelled with the
//! section of the Raft paper (or thesis) it checks. A tiny synchronous
//! cluster driver persists instantly and delivers messages between cores,
//! with links that can be cut.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::*;
use crate::message::*;
use crate::types::{Server, SnapshotPosition, Suffrage};

pub(super) fn ids(n: usize) -> Vec<ServerId> {
    (1..=n).map(|i| ServerId::from(format!("n{i}"))).collect()
}

pub(super) fn config_of(ids: &[ServerId]) -> Configuration {
    Configuration { servers: ids.iter().map(|id| Server::voter(id.clone(), id.as_str())).collect() }
}

/// The position of a snapshot covering the log up to `index` (of `term`),
/// with `conf` from `conf_index`.
fn position(index: u64, term: u64, conf: &Configuration, conf_index: u64) -> SnapshotPosition {
    SnapshotPosition { index, term, configuration: conf.clone(), configuration_index: conf_index }
}

pub(super) fn bootstrapped(conf: &Configuration) -> InitialState {
    let data = crate::codec::encode(conf).expect("encode");
    InitialState {
        hard_state: HardState { term: 1, vote: None },
        entries: vec![Log::new(1, 1, LogType::Configuration, data)],
        ..InitialState::default()
    }
}

/// A synchronous cluster of cores.
struct Cluster {
    nodes: BTreeMap<ServerId, Core>,
    /// Directed links that drop messages.
    cut: BTreeSet<(ServerId, ServerId)>,
    /// Messages in flight, delivered FIFO.
    queue: VecDeque<Message>,
    /// Everything applied, per node.
    applied: BTreeMap<ServerId, Vec<Log>>,
    /// Confirmed reads per node.
    reads: BTreeMap<ServerId, Vec<ReadState>>,
    /// Whether `persisted` is reported automatically.
    auto_persist: bool,
    /// Some node reported an aborted leadership transfer.
    transfer_aborted: bool,
}

impl Cluster {
    fn new(n: usize, cfg: CoreConfig) -> Self {
        let all = ids(n);
        let conf = config_of(&all);
        let nodes = all
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let core =
                    Core::new(id.clone(), cfg.clone(), i as u64 + 1, bootstrapped(&conf)).expect("core");
                (id.clone(), core)
            })
            .collect();
        Self {
            nodes,
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            auto_persist: true,
            transfer_aborted: false,
        }
    }

    fn node(&mut self, id: &str) -> &mut Core {
        self.nodes.get_mut(&ServerId::from(id)).expect("node exists")
    }

    fn isolate(&mut self, id: &str) {
        let id = ServerId::from(id);
        for other in self.nodes.keys() {
            if *other != id {
                self.cut.insert((id.clone(), other.clone()));
                self.cut.insert((other.clone(), id.clone()));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Collects every node's ready, "persists" it, queues its messages.
    fn collect(&mut self) {
        for (id, core) in self.nodes.iter_mut() {
            if !core.has_ready() {
                continue;
            }
            let ready = core.take_ready();
            self.queue.extend(ready.messages);
            if self.auto_persist {
                if let Some(last) = ready.entries.last() {
                    core.persisted(last.index, last.term);
                }
                self.queue.extend(ready.persisted_messages);
            }
            self.applied.entry(id.clone()).or_default().extend(ready.committed);
            self.reads.entry(id.clone()).or_default().extend(ready.reads);
            self.transfer_aborted |= ready.transfer_aborted;
        }
    }

    /// Delivers messages until nothing is left.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.collect();
            let Some(msg) = self.queue.pop_front() else { return };
            if self.cut.contains(&(msg.from.clone(), msg.to.clone())) {
                continue;
            }
            if let Some(core) = self.nodes.get_mut(&msg.to) {
                core.step(msg);
            }
        }
        panic!("cluster did not settle");
    }

    fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            for core in self.nodes.values_mut() {
                core.tick();
            }
            self.settle();
        }
    }

    fn leaders(&self) -> Vec<ServerId> {
        self.nodes.values().filter(|c| c.is_leader()).map(|c| c.id().clone()).collect()
    }

    fn elect(&mut self) -> ServerId {
        for _ in 0..200 {
            self.tick_all(1);
            let leaders = self.leaders();
            if leaders.len() == 1 {
                return leaders[0].clone();
            }
        }
        panic!("no leader elected");
    }

    /// Makes `id` leader by letting it time out first: every other node's
    /// timer is pushed far out, then the whole cluster ticks.
    fn elect_node(&mut self, id: &str) {
        let target = ServerId::from(id);
        for _ in 0..200 {
            for (nid, core) in self.nodes.iter_mut() {
                if *nid != target && !core.is_leader() {
                    core.election_timeout = 10_000;
                }
            }
            self.tick_all(1);
            if self.nodes[&target].is_leader() {
                return;
            }
        }
        panic!("{id} should have won");
    }
}

fn cmd(s: &str) -> (LogType, Bytes) {
    (LogType::Command, Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn s5_2_one_leader_is_elected_in_1_3_and_5_node_clusters() {
    for n in [1, 3, 5] {
        let mut c = Cluster::new(n, CoreConfig::for_tests());
        let leader = c.elect();
        c.tick_all(30);
        assert_eq!(c.leaders(), vec![leader.clone()], "{n} nodes: leadership is stable");
        let term = c.nodes[&leader].term();
        assert!(c.nodes.values().all(|core| core.term() == term));
    }
}

#[test]
fn s5_2_vote_is_persisted_before_it_is_sent() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let req = RequestVoteRequest {
        term: 2,
        candidate_id: "n2".into(),
        last_log_index: 1,
        last_log_term: 1,
        leadership_transfer: false,
        cluster_id: None,
    };
    let n1 = c.node("n1");
    n1.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 7, body: Body::RequestVote(req) });
    let ready = n1.take_ready();
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
    let vote = |cand: &str| RequestVoteRequest {
        term: 2,
        candidate_id: cand.into(),
        last_log_index: 1,
        last_log_term: 1,
        leadership_transfer: false,
        cluster_id: None,
    };
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
    let req = RequestVoteRequest {
        term: 10,
        candidate_id: "n3".into(),
        last_log_index: 1,
        last_log_term: 1,
        leadership_transfer: true,
        cluster_id: None,
    };
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
fn s5_3_replicated_entries_are_applied_in_order_on_every_node() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    for i in 0..200 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
    c.tick_all(3);
    let leader_log: Vec<Log> = c.applied[&ServerId::from("n1")].clone();
    let commands = leader_log.iter().filter(|l| l.log_type == LogType::Command).count();
    assert_eq!(commands, 200);
    for id in ["n2", "n3"] {
        assert_eq!(c.applied[&ServerId::from(id)], leader_log, "{id} applied the same sequence");
    }
}

/// Delivers messages until nothing is left, checking each AppendEntries
/// with `check` before it is delivered.
fn settle_checking(c: &mut Cluster, check: &mut impl FnMut(&Message)) {
    for _ in 0..10_000 {
        c.collect();
        let Some(msg) = c.queue.pop_front() else { return };
        if c.cut.contains(&(msg.from.clone(), msg.to.clone())) {
            continue;
        }
        check(&msg);
        if let Some(core) = c.nodes.get_mut(&msg.to) {
            core.step(msg);
        }
    }
    panic!("cluster did not settle");
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
        for core in c.nodes.values_mut() {
            core.tick();
        }
        settle_checking(&mut c, &mut |m| {
            let Body::AppendEntries(req) = &m.body else { return };
            if m.to.as_str() != "n3" || req.entries.is_empty() {
                return;
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
    let req = AppendEntriesRequest {
        term: 3,
        leader_id: "n2".into(),
        prev_log_index: 6,
        prev_log_term: 3,
        entries: vec![],
        leader_commit: 1,
        round: 0,
        cluster_id: None,
    };
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
    c.cut.remove(&(ServerId::from("n1"), ServerId::from("n2")));
    c.cut.remove(&(ServerId::from("n2"), ServerId::from("n1")));
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
        c.deliver_without_current_term_entries();
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
    c.cut.remove(&(ServerId::from("n4"), ServerId::from("n5")));
    c.cut.remove(&(ServerId::from("n5"), ServerId::from("n4")));
    // Stop n1's no-op from committing the old entry: intercept by checking
    // the commit index right after the election but before acknowledgements.
    for _ in 0..5 {
        let timeout = c.node("n1").election_timeout;
        for _ in 0..timeout + 1 {
            c.node("n1").tick();
        }
        // Deliver everything, except that AppendEntries lose their
        // current-term entries: the old entry spreads, the no-op does not.
        c.deliver_without_current_term_entries();
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

impl Cluster {
    fn deliver_without_current_term_entries(&mut self) {
        for _ in 0..1000 {
            self.collect();
            let Some(msg) = self.queue.pop_front() else { break };
            if self.cut.contains(&(msg.from.clone(), msg.to.clone())) {
                continue;
            }
            // Drop the leader's AppendEntries carrying the new term's no-op,
            // but let through the ones that only carry old entries.
            if let Body::AppendEntries(req) = &msg.body {
                if req.entries.iter().any(|e| e.term == req.term) {
                    let mut req = req.clone();
                    req.entries.retain(|e| e.term != req.term);
                    let msg = Message { body: Body::AppendEntries(req), ..msg };
                    self.nodes.get_mut(&msg.to).expect("node").step(msg);
                    continue;
                }
            }
            self.nodes.get_mut(&msg.to.clone()).expect("node").step(msg);
        }
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
    assert!(c.applied[&ServerId::from("n1")].iter().all(|l| l.data != "doomed"));
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
    c.tick_all(30);
    assert!(c.node("n1").is_leader(), "leader undisturbed");
    assert_eq!(c.node("n1").term(), term);
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
    let req = RequestVoteRequest {
        term: term + 5,
        candidate_id: "n3".into(),
        last_log_index: 100,
        last_log_term: 100,
        leadership_transfer: false,
        cluster_id: None,
    };
    let n2 = c.node("n2");
    n2.step(Message { from: "n3".into(), to: "n2".into(), rpc_id: 1, body: Body::RequestVote(req) });
    assert_eq!(n2.term(), term, "a live leader's follower does not adopt the disruptive term");
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
}

#[test]
fn durability_follower_acks_only_after_persisting() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    let term = c.node("n1").term();
    let req = AppendEntriesRequest {
        term,
        leader_id: "n1".into(),
        prev_log_index: c.node("n2").last_index(),
        prev_log_term: c.node("n2").last_term(),
        entries: vec![Log::new(c.node("n2").last_index() + 1, term, LogType::Command, "x")],
        leader_commit: 0,
        round: 0,
        cluster_id: None,
    };
    let n2 = c.node("n2");
    n2.step(Message { from: "n1".into(), to: "n2".into(), rpc_id: 3, body: Body::AppendEntries(req) });
    let ready = n2.take_ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.messages.is_empty());
    assert!(matches!(&ready.persisted_messages[0].body, Body::AppendEntriesResponse(r) if r.success));
}

#[test]
fn s6_4_read_index_waits_for_a_commit_in_the_leaders_term() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.isolate("n2");
    c.isolate("n3");
    c.cut.clear();
    c.elect_node("n1");
    // A fresh leader whose no-op has not committed yet must hold reads.
    c.isolate("n1");
    c.node("n1").propose([cmd("x")]).expect("leader");
    let term = c.node("n1").term();
    c.node("n1").hard.term = term; // unchanged
    c.node("n1").read_index(42).expect("leader accepts the read");
    c.settle();
    assert!(c.reads.get(&ServerId::from("n1")).is_none_or(|r| r.is_empty()));
    c.heal();
    c.settle();
    c.tick_all(1);
    let reads = &c.reads[&ServerId::from("n1")];
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].id, 42);
    assert!(reads[0].index >= c.node("n1").term_at(0).map_or(0, |_| 2));
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
    assert!(c.reads.get(&ServerId::from("n1")).is_none_or(|r| r.is_empty()), "no stale confirmation");
    c.heal();
    c.tick_all(1);
    assert_eq!(c.reads[&ServerId::from("n1")].iter().map(|r| r.id).collect::<Vec<_>>(), vec![1]);
    // A retried read gets its own round.
    c.isolate("n1");
    c.node("n1").read_index(2).expect("leader");
    c.settle();
    assert_eq!(c.reads[&ServerId::from("n1")].len(), 1, "read 2 not confirmed by read 1's round");
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
        if c.transfer_aborted {
            break;
        }
    }
    assert!(c.transfer_aborted);
    assert!(c.node("n1").is_leader());
    assert!(c.node("n1").propose([cmd("after")]).is_ok(), "writes accepted again");
}

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

#[test]
fn bad_input_entries_that_skip_indexes_are_ignored() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let req = AppendEntriesRequest {
        term: 2,
        leader_id: "n2".into(),
        prev_log_index: 1,
        prev_log_term: 1,
        entries: vec![Log::new(5, 2, LogType::Command, "x")],
        leader_commit: 5,
        round: 0,
        cluster_id: None,
    };
    let n1 = c.node("n1");
    n1.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 1, body: Body::AppendEntries(req) });
    assert_eq!(n1.last_index(), 1);
    assert_eq!(n1.commit_index(), 0);
}

#[test]
fn s7_leader_asks_for_a_snapshot_when_a_follower_needs_compacted_entries() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.isolate("n3");
    for i in 0..20 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("compact");
    assert!(c.node("n1").compact(applied + 1).is_err(), "cannot compact past what is applied");
    c.heal();
    let mut asked = false;
    for _ in 0..10 {
        c.node("n1").tick();
        let ready = c.node("n1").take_ready();
        asked |= ready.snapshots_to_send.contains(&ServerId::from("n3"));
        c.queue.extend(ready.messages);
        if asked {
            break;
        }
    }
    assert!(asked, "leader requested a snapshot for n3");
    // Streaming it succeeds: the follower is credited and replication resumes.
    let term = c.node("n1").term();
    c.node("n1").snapshot_sent(&"n3".into(), applied, term, true);
    let progress = c.node("n1").peer_progress();
    let n3 = progress.iter().find(|p| p.id.as_str() == "n3").expect("n3 tracked");
    assert_eq!(n3.matched, applied, "matched index is the snapshot's");
}

#[test]
fn s7_follower_installs_a_snapshot_discarding_a_conflicting_log() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    n1.hard.term = 2;
    n1.append_local((2..=6).map(|i| Log::new(i, 2, LogType::Command, "stale")).collect());
    let _ = n1.take_ready();
    let conf = n1.configuration().0.clone();
    assert_eq!(n1.install_snapshot(&"n2".into(), 1, position(10, 3, &conf, 1)), Err(2), "stale term refused");
    let installed = n1.install_snapshot(&"n2".into(), 3, position(10, 3, &conf, 1));
    let expected = InstalledSnapshot { position: position(10, 3, &conf, 1), discard_log: true };
    assert_eq!(installed, Ok(Some(expected)));
    assert_eq!((n1.last_index(), n1.last_term(), n1.commit_index()), (10, 3, 10));
    assert_eq!(n1.leader(), Some(&ServerId::from("n2")));
    let ready = n1.take_ready();
    assert!(ready.committed.is_empty(), "nothing up to the snapshot is re-applied");
    let older = n1.install_snapshot(&"n2".into(), 3, position(8, 3, &conf, 1));
    assert_eq!(older, Ok(None), "older snapshot ignored");
}

#[test]
fn s7_follower_keeps_the_log_suffix_that_follows_a_matching_snapshot() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    let n1 = c.node("n1");
    n1.hard.term = 2;
    n1.append_local((2..=8).map(|i| Log::new(i, 2, LogType::Command, "x")).collect());
    let _ = n1.take_ready();
    let conf = n1.configuration().0.clone();
    let installed = n1.install_snapshot(&"n2".into(), 2, position(5, 2, &conf, 1));
    let expected = InstalledSnapshot { position: position(5, 2, &conf, 1), discard_log: false };
    assert_eq!(installed, Ok(Some(expected)));
    assert_eq!(n1.last_index(), 8, "entries after the snapshot are kept");
    assert!(n1.entry(5).is_none() && n1.entry(6).is_some());
}

#[test]
fn s7_a_follower_caught_up_by_a_snapshot_is_not_probed_in_a_loop() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.isolate("n3");
    for i in 0..5 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("compact");
    c.heal();
    // Install the snapshot on n3 by hand and credit it on the leader.
    let term = c.node("n1").term();
    let conf = c.node("n1").configuration().0.clone();
    let mut sent = false;
    for _ in 0..10 {
        c.node("n1").tick();
        let ready = c.node("n1").take_ready();
        sent |= ready.snapshots_to_send.contains(&ServerId::from("n3"));
        c.queue.extend(ready.messages);
        if sent {
            break;
        }
    }
    assert!(sent);
    let snapshot_term = c.node("n1").term_at(applied).expect("term");
    let installed =
        c.node("n3").install_snapshot(&"n1".into(), term, position(applied, snapshot_term, &conf, 1));
    assert!(matches!(installed, Ok(Some(_))));
    c.node("n1").snapshot_sent(&"n3".into(), applied, term, true);
    // Deliver everything; the exchange must come to rest (settle panics
    // after 10,000 messages without quiescence).
    c.settle();
    assert!(c.nodes.values().all(|n| !n.has_ready()));
}

/// The leader's view of `peer`, if it has one.
fn progress_of(core: &Core, peer: &str) -> Option<PeerProgress> {
    core.peer_progress().into_iter().find(|p| p.id.as_str() == peer)
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
    assert!(progress_of(c.node("n1"), "n2").is_some_and(|p| p.matched > 0));
    let commit = c.node("n1").commit_index();
    let mut conf = c.node("n1").configuration().0.clone();
    if let Some(s) = conf.servers.iter_mut().find(|s| s.id.as_str() == "n2") {
        s.address = "n2-new".into();
    }
    c.isolate("n2");
    c.node("n1").propose_configuration(conf).expect("leader");
    assert_eq!(progress_of(c.node("n1"), "n2").map(|p| p.matched), Some(0));
    assert!(progress_of(c.node("n1"), "n3").is_some_and(|p| p.matched > 0), "others keep theirs");
    assert!(c.node("n1").commit_index() >= commit);
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

fn progress_in(core: &Core, id: &str) -> PeerProgress {
    core.peer_progress().into_iter().find(|p| p.id.as_str() == id).expect("peer tracked")
}

/// Replaces node `id` of `c` with a core restarted from an empty disk
/// (term 0, no log, no configuration) under the same id.
fn wipe(c: &mut Cluster, id: &str) {
    let core = Core::new(id.into(), CoreConfig::for_tests(), 99, InitialState::default()).expect("core");
    c.nodes.insert(id.into(), core);
}

#[test]
fn s5_3_follower_with_an_empty_log_hints_to_start_from_index_1() {
    // A follower that restarted with nothing at all (term 0) joins the
    // leader's term on its first AppendEntries and answers with a hint
    // the leader can use: its log ends at 0, retry from 1.
    let mut f = Core::new("n2".into(), CoreConfig::for_tests(), 7, InitialState::default()).expect("core");
    let req = AppendEntriesRequest {
        cluster_id: None,
        term: 5,
        leader_id: "n1".into(),
        prev_log_index: 40,
        prev_log_term: 5,
        entries: vec![],
        leader_commit: 40,
        round: 0,
    };
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
    let req = AppendEntriesRequest {
        cluster_id: None,
        term: 2,
        leader_id: "n1".into(),
        prev_log_index: 9,
        prev_log_term: 2,
        entries: vec![],
        leader_commit: 9,
        round: 0,
    };
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
    for i in 0..30 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
    let last = c.node("n1").last_index();
    assert_eq!(progress_in(c.node("n1"), "n3").matched, last);
    wipe(&mut c, "n3");
    let _ = c.node("n1").take_ready();
    // The next heartbeat (prev = n3's old match) is refused.
    let mut resets = Vec::new();
    for _ in 0..20 {
        for core in c.nodes.values_mut() {
            core.tick();
        }
        for _ in 0..10_000 {
            if let Some(core) = c.nodes.get_mut(&ServerId::from("n1")) {
                if core.has_ready() {
                    let ready = core.take_ready();
                    resets.extend(ready.log_resets.iter().cloned());
                    c.queue.extend(ready.messages);
                    c.queue.extend(ready.persisted_messages);
                    if let Some(e) = ready.entries.last() {
                        core.persisted(e.index, e.term);
                    }
                }
            }
            c.collect();
            let Some(msg) = c.queue.pop_front() else { break };
            if let Some(core) = c.nodes.get_mut(&msg.to) {
                core.step(msg);
            }
        }
    }
    assert_eq!(resets.len(), 1, "one reset, reported once: {resets:?}");
    assert_eq!(resets[0], LogReset { peer: "n3".into(), matched: last, last_log_index: 0 });
    let (n1, n3) = (&c.nodes[&ServerId::from("n1")], &c.nodes[&ServerId::from("n3")]);
    assert_eq!(n3.last_index(), n1.last_index(), "n3 has the whole log again");
    assert_eq!(n3.commit_index(), n1.commit_index());
    assert_eq!(n3.term(), n1.term());
    let p = progress_in(c.node("n1"), "n3");
    assert_eq!(p.matched, c.node("n1").last_index(), "and is matched again");
}

#[test]
fn s5_3_leader_re_replicates_a_cut_off_log_tail() {
    // The last three entries of n2's log were cut off (a torn tail) while
    // its term and vote survived.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    for i in 0..10 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
    let last = c.node("n1").last_index();
    let n2 = c.node("n2");
    let init = InitialState {
        hard_state: n2.hard.clone(),
        entries: (1..=last - 3).filter_map(|i| n2.entry(i).cloned()).collect(),
        ..InitialState::default()
    };
    let core = Core::new("n2".into(), CoreConfig::for_tests(), 5, init).expect("core");
    c.nodes.insert("n2".into(), core);
    c.tick_all(3);
    let leader = c.node("n1");
    assert_eq!(progress_in(leader, "n2").matched, last, "matched again after the reset");
    assert_eq!(c.node("n2").last_index(), last);
    assert_eq!(c.node("n2").commit_index(), last);
}

#[test]
fn s5_3_a_reset_follower_needing_compacted_entries_gets_a_snapshot() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    for i in 0..10 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("compact");
    wipe(&mut c, "n3");
    let mut asked = false;
    for _ in 0..10 {
        c.node("n1").tick();
        let ready = c.node("n1").take_ready();
        asked |= ready.snapshots_to_send.contains(&ServerId::from("n3"));
        c.queue.extend(ready.messages);
        // Deliver n1's messages to n3 and its answers back (bounded: a
        // leader that keeps probing above the wiped log never stops).
        for _ in 0..1000 {
            let Some(msg) = c.queue.pop_front() else { break };
            if let Some(core) = c.nodes.get_mut(&msg.to) {
                core.step(msg);
                let r = core.take_ready();
                asked |= r.snapshots_to_send.contains(&ServerId::from("n3"));
                c.queue.extend(r.messages);
            }
        }
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
    for i in 0..5 {
        c.node("n1").propose([cmd(&format!("v{i}"))]).expect("leader");
    }
    c.settle();
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
    let p = progress_in(c.node("n1"), "n2");
    assert_eq!((p.matched, p.next), (0, 2));
    c.settle();
    c.tick_all(2);
    assert_eq!(progress_in(c.node("n1"), "n2").matched, last, "n2 acknowledged again");
    assert_eq!(c.node("n2").last_index(), last);
    assert!(c.node("n1").is_leader());
    assert!(c.nodes.values().all(|n| !n.has_ready()), "at rest");
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
            let core = Core::new(id.into(), cfg.clone(), 3, InitialState::default()).expect("core");
            c.nodes.insert(id.into(), core);
        }
        let leader = c.elect();
        assert_eq!(leader, ServerId::from("n1"), "pre_vote={pre_vote}");
        c.node("n1").propose([cmd("x")]).expect("leader");
        c.settle();
        c.tick_all(2);
        for id in ["n2", "n3"] {
            let applied = &c.applied[&ServerId::from(id)];
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
    let req = RequestPreVoteRequest {
        cluster_id: None,
        term: 2,
        candidate_id: "n1".into(),
        last_log_index: 1,
        last_log_term: 1,
    };
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
    let req = RequestPreVoteRequest {
        cluster_id: None,
        term: term + 1,
        candidate_id: "n3".into(),
        last_log_index: 0,
        last_log_term: 0,
    };
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
fn a_ready_holding_only_a_log_reset_is_not_empty() {
    let reset = LogReset { peer: "n2".into(), matched: 9, last_log_index: 0 };
    let ready = Ready { log_resets: vec![reset], ..Ready::default() };
    assert!(!ready.is_empty(), "the driver must see it to report it");
}

/// Proposes `conf` on the leader `id` and lets the cluster settle.
fn reconfigure(c: &mut Cluster, leader: &str, conf: Configuration) -> u64 {
    let idx = c.node(leader).propose_configuration(conf).expect("leader accepts the change");
    c.settle();
    c.tick_all(2);
    idx
}

#[test]
fn s4_2_2_a_follower_whose_committed_configuration_excludes_it_is_removed() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let conf = config_of(&ids(2));
    let idx = reconfigure(&mut c, "n1", conf);
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
}

#[test]
fn s4_2_2_a_removed_nonvoter_is_removed_too() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let mut conf = config_of(&ids(2));
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n3".into(), address: "n3".into() });
    reconfigure(&mut c, "n1", conf);
    assert_eq!(c.node("n3").state(), RaftState::Follower, "still a member as a non-voter");
    reconfigure(&mut c, "n1", config_of(&ids(2)));
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
    reconfigure(&mut c, "n1", config_of(&ids(2)));
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
fn s4_2_2_removed_answers_are_trusted_only_from_a_leader_of_a_current_term() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    let n3 = c.node("n3");
    n3.hard.term = 9;
    n3.start_election(false);
    let term = n3.term();
    let stale = RequestVoteResponse { term: term - 1, granted: false, removed: true };
    n3.step(Message {
        from: "n1".into(),
        to: "n3".into(),
        rpc_id: 0,
        body: Body::RequestVoteResponse(stale),
    });
    assert_eq!(n3.state(), RaftState::Candidate, "an older term's leader may be stale");
    let current = RequestVoteResponse { term, granted: false, removed: true };
    n3.step(Message {
        from: "n1".into(),
        to: "n3".into(),
        rpc_id: 0,
        body: Body::RequestVoteResponse(current),
    });
    assert_eq!(n3.state(), RaftState::Removed);
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
    let req = RequestPreVoteRequest {
        cluster_id: None,
        term: c.node("n1").term() + 1,
        candidate_id: "n3".into(),
        last_log_index: 0,
        last_log_term: 0,
    };
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
    // A follower never says removed, even when n3 is not in its configuration.
    let n2 = c.node("n2");
    n2.step(Message { from: "n9".into(), to: "n2".into(), rpc_id: 8, body: Body::RequestPreVote(req) });
    let ready = n2.take_ready();
    let answer = ready.messages.iter().find(|m| m.rpc_id == 8).expect("answered");
    assert!(matches!(&answer.body, Body::RequestPreVoteResponse(r) if !r.removed));
}

#[test]
fn s4_2_2_a_new_server_catching_up_through_configurations_without_it_is_not_removed() {
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.settle();
    for i in 0..5 {
        c.node("n1").propose([cmd(&format!("x{i}"))]).expect("leader");
    }
    c.settle();
    // n4 starts empty: its log will pass through configurations without it.
    let n4 = Core::new("n4".into(), CoreConfig::for_tests(), 4, InitialState::default()).expect("core");
    c.nodes.insert("n4".into(), n4);
    let mut conf = c.node("n1").configuration().0.clone();
    conf.servers.push(Server { suffrage: Suffrage::Nonvoter, id: "n4".into(), address: "n4".into() });
    let idx = reconfigure(&mut c, "n1", conf);
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
    let n4 = Core::new("n4".into(), cfg, 4, InitialState::default()).expect("core");
    c.nodes.insert("n4".into(), n4);
    // The addition cannot commit: n2 and n3 are cut off from the leader.
    for id in ["n2", "n3"] {
        c.cut.insert((ServerId::from("n1"), ServerId::from(id)));
        c.cut.insert((ServerId::from(id), ServerId::from("n1")));
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
