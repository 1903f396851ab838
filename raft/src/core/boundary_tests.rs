//! Tests of the core's boundary: every inbound request is answered or
//! declined through [`Ready`], a leadership transfer's success is a
//! [`Ready`] output, and a snapshot install or restore returns the position
//! it covers. A small driver persists instantly and delivers messages.

use std::collections::{BTreeMap, VecDeque};

use super::tests::{bootstrapped, config_of, ids};
use super::*;
use crate::message::{AppendEntriesRequest, RequestVoteRequest};
use crate::types::SnapshotPosition;

/// Cores wired together: messages are delivered in order, writes are
/// durable at once, and what the boundary reports is recorded per node.
struct Net {
    nodes: BTreeMap<ServerId, Core>,
    queue: VecDeque<Message>,
    /// Links messages do not cross (by recipient).
    cut: Vec<ServerId>,
    declined: BTreeMap<ServerId, Vec<u64>>,
    transfers_completed: BTreeMap<ServerId, usize>,
    transfers_aborted: BTreeMap<ServerId, usize>,
    /// Every message sent, for checking answers.
    sent: Vec<Message>,
}

impl Net {
    fn new(n: usize) -> Self {
        let conf = config_of(&ids(n));
        let nodes = (1..=n)
            .map(|i| {
                let id: ServerId = format!("n{i}").into();
                let core = Core::new(id.clone(), CoreConfig::for_tests(), i as u64, bootstrapped(&conf));
                (id, core.expect("core"))
            })
            .collect();
        Self {
            nodes,
            queue: VecDeque::new(),
            cut: Vec::new(),
            declined: BTreeMap::new(),
            transfers_completed: BTreeMap::new(),
            transfers_aborted: BTreeMap::new(),
            sent: Vec::new(),
        }
    }

    fn node(&mut self, id: &str) -> &mut Core {
        self.nodes.get_mut(&ServerId::from(id)).expect("node")
    }

    /// Executes every node's `Ready`.
    fn collect(&mut self) {
        for (id, core) in &mut self.nodes {
            let ready = core.take_ready();
            if let Some(last) = ready.entries.last() {
                core.persisted(last.index, last.term);
            }
            self.declined.entry(id.clone()).or_default().extend(ready.declined);
            *self.transfers_completed.entry(id.clone()).or_default() += usize::from(ready.transfer_completed);
            *self.transfers_aborted.entry(id.clone()).or_default() += usize::from(ready.transfer_aborted);
            self.sent.extend(ready.messages.iter().chain(&ready.persisted_messages).cloned());
            self.queue.extend(ready.messages);
            self.queue.extend(ready.persisted_messages);
        }
    }

    /// Delivers messages until none is left.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.collect();
            let Some(msg) = self.queue.pop_front() else { return };
            if self.cut.contains(&msg.to) {
                continue;
            }
            if let Some(core) = self.nodes.get_mut(&msg.to) {
                core.step(msg);
            }
        }
        panic!("the cluster did not settle");
    }

    /// Ticks `id` alone until it leads.
    fn elect(&mut self, id: &str) {
        for _ in 0..100 {
            self.node(id).tick();
            self.settle();
            if self.node(id).is_leader() {
                return;
            }
        }
        panic!("{id} was not elected");
    }

    fn completed(&self, id: &str) -> usize {
        self.transfers_completed.get(&ServerId::from(id)).copied().unwrap_or(0)
    }

    fn aborted(&self, id: &str) -> usize {
        self.transfers_aborted.get(&ServerId::from(id)).copied().unwrap_or(0)
    }
}

fn append_from(from: &str, term: u64, rpc_id: u64) -> Message {
    let req = AppendEntriesRequest { term, leader_id: from.into(), ..AppendEntriesRequest::default() };
    Message { from: from.into(), to: "n1".into(), rpc_id, body: Body::AppendEntries(req) }
}

#[test]
fn a_request_the_core_ignores_is_declined_through_ready() {
    let mut net = Net::new(3);
    net.elect("n1");
    let term = net.node("n1").term();
    // A second leader of our term: logged and ignored, never answered.
    net.node("n1").step(append_from("n2", term, 7));
    let ready = net.node("n1").take_ready();
    assert_eq!(ready.declined, vec![7]);
    assert!(ready.messages.iter().chain(&ready.persisted_messages).all(|m| m.rpc_id != 7));
    assert!(!ready.is_empty(), "a declined request is work for the driver");
}

#[test]
fn an_answered_request_is_not_declined() {
    let mut net = Net::new(3);
    net.elect("n1");
    let term = net.node("n1").term();
    // A stale leader is answered with our term; a current one with success.
    net.node("n2").step(Message { to: "n2".into(), ..append_from("n3", term - 1, 11) });
    net.node("n2").step(Message { to: "n2".into(), ..append_from("n1", term, 12) });
    let ready = net.node("n2").take_ready();
    assert!(ready.declined.is_empty(), "declined {:?}", ready.declined);
    let answered: Vec<u64> =
        ready.messages.iter().chain(&ready.persisted_messages).map(|m| m.rpc_id).collect();
    assert!(answered.contains(&11) && answered.contains(&12), "answers {answered:?}");
    // Requests without a driver token are not tracked either way.
    net.node("n1").step(append_from("n2", term, 0));
    assert!(net.node("n1").take_ready().declined.is_empty());
}

#[test]
fn a_removed_server_declines_every_request() {
    let conf = config_of(&ids(3));
    let init = InitialState { removed: true, ..bootstrapped(&conf) };
    let mut core = Core::new("n1".into(), CoreConfig::for_tests(), 1, init).expect("core");
    assert!(core.is_removed());
    let vote = RequestVoteRequest {
        term: 5,
        candidate_id: "n2".into(),
        last_log_index: 9,
        last_log_term: 4,
        leadership_transfer: false,
        cluster_id: None,
    };
    core.step(Message { from: "n2".into(), to: "n1".into(), rpc_id: 3, body: Body::RequestVote(vote) });
    core.step(append_from("n3", 5, 4));
    let ready = core.take_ready();
    assert_eq!(ready.declined, vec![3, 4]);
    assert!(ready.messages.is_empty() && ready.persisted_messages.is_empty());
}

#[test]
fn s3_10_a_transfer_that_hands_over_leadership_completes_through_ready() {
    let mut net = Net::new(3);
    net.elect("n1");
    assert_eq!(net.node("n1").transfer_leadership(Some("n2".into())), Ok("n2".into()));
    net.settle();
    assert!(net.node("n2").is_leader(), "the target took over");
    assert!(!net.node("n1").is_leader());
    assert_eq!((net.completed("n1"), net.aborted("n1")), (1, 0));
    assert_eq!(net.completed("n2") + net.completed("n3"), 0, "only the old leader reports it");
}

/// A three-node cluster whose leader n1 is transferring leadership to n2,
/// which it cannot reach.
fn transferring_to_an_unreachable_target() -> Net {
    let mut net = Net::new(3);
    net.elect("n1");
    net.cut.push("n2".into());
    assert_eq!(net.node("n1").transfer_leadership(Some("n2".into())), Ok("n2".into()));
    net.settle();
    net
}

#[test]
fn s3_10_a_transfer_that_times_out_aborts_and_a_later_step_down_completes_nothing() {
    let mut net = transferring_to_an_unreachable_target();
    for _ in 0..100 {
        net.node("n1").tick();
        net.settle();
        if net.aborted("n1") > 0 {
            break;
        }
    }
    assert_eq!((net.completed("n1"), net.aborted("n1")), (0, 1));
    // Stepping down without a transfer running reports no transfer.
    net.node("n1").step_down();
    net.collect();
    assert_eq!(net.completed("n1"), 0);
}

#[test]
fn s3_10_a_leader_that_loses_leadership_during_a_transfer_reports_it_completed() {
    // As the runtime always did: the caller learns that this node no
    // longer leads, whoever took over.
    let mut net = transferring_to_an_unreachable_target();
    assert!(net.node("n1").transfer_in_progress());
    let term = net.node("n1").term();
    net.node("n1").step(append_from("n3", term + 1, 0));
    net.collect();
    assert!(!net.node("n1").is_leader());
    assert_eq!((net.completed("n1"), net.aborted("n1")), (1, 0));
}

#[test]
fn s7_restoring_a_snapshot_returns_the_position_it_covers() {
    let mut net = Net::new(3);
    net.elect("n1");
    let (latest, _) = net.node("n1").configuration();
    let latest = latest.clone();
    let term = net.node("n1").term();
    let (noop, installed) = net.node("n1").restore_snapshot(50).expect("leader restores");
    assert_eq!(noop, 51);
    let position = SnapshotPosition { index: 50, term, configuration: latest, configuration_index: 50 };
    assert_eq!(installed, InstalledSnapshot { position, discard_log: true });
    assert_eq!(net.node("n1").configuration().1, 50, "the configuration now dates from the snapshot");
}
