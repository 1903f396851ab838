//! Scenario tests of the log window (`log.rs`) as replication uses it: a
//! leader reads entries that left its window from the store
//! (`Ready::fetches`, `Core::entries_fetched`) to bring a follower up to
//! date (§5.3), byte-based flow control (bytes in flight per follower,
//! uncommitted bytes on the leader), the memory the core holds staying
//! bounded, and a restart from entry metadata and a recorded commit index
//! that applies committed entries from the store. Runs on the shared driver
//! in [`scenario`](crate::core::scenario), whose harness serves reads of
//! the store from each node's disk.

use crate::core::scenario::*;
use crate::core::*;
use crate::transport::ENTRY_OVERHEAD;
use crate::types::LogEntryMeta;

/// The test configuration with a log window of `window` bytes.
fn windowed(window: usize) -> CoreConfig {
    CoreConfig { max_window_bytes: window, ..CoreConfig::for_tests() }
}

/// A command of `n` bytes.
fn sized(n: usize, fill: u8) -> (LogType, Bytes) {
    (LogType::Command, Bytes::from(vec![fill; n]))
}

/// Ticks every core once, then settles, up to `n` times, until `done`.
fn tick_until(c: &mut Cluster, n: usize, mut done: impl FnMut(&mut Cluster) -> bool) {
    for _ in 0..n {
        if done(c) {
            return;
        }
        c.tick_all(1);
    }
}

#[test]
fn s5_3_a_follower_far_behind_the_window_catches_up_from_the_store() {
    let each = 100 + ENTRY_OVERHEAD;
    let mut c = Cluster::new(3, windowed(10 * each));
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    let behind = c.node("n3").last_index();
    for i in 0..200 {
        c.node("n1").propose([sized(100, i as u8)]).expect("leader");
    }
    c.settle();
    let window_start = c.node("n1").window_start();
    assert!(window_start > behind + 150, "n3 (at {behind}) is far behind the window (from {window_start})");
    assert!(c.node("n1").held_bytes() <= 10 * each, "the leader holds only its window");
    assert!(c.node("n1").entry(behind + 1).is_none(), "the entries n3 needs are not in memory");
    c.heal();
    let fetches_before = c.host("n1").fetches_done;
    let mut from_store = 0;
    for _ in 0..100 {
        if c.node("n3").last_index() == c.node("n1").last_index() {
            break;
        }
        for core in c.cores() {
            core.tick();
        }
        c.settle_with(|m| {
            if let Body::AppendEntries(req) = &m.body {
                if m.to.as_str() == "n3" && req.entries.first().is_some_and(|e| e.index < window_start) {
                    from_store += req.entries.len();
                }
            }
            Some(m)
        });
    }
    c.tick_all(2);
    assert_eq!(c.node("n3").last_index(), c.node("n1").last_index(), "n3 caught up");
    let leader_applied = c.applied("n1").to_vec();
    assert_eq!(c.applied("n3"), leader_applied, "n3 applied the same entries");
    assert!(c.host("n1").fetches_done > fetches_before, "the leader read from the store");
    assert!(from_store >= 150, "only {from_store} entries went to n3 from the store");
}

#[test]
fn held_bytes_stay_bounded_while_many_mib_are_written() {
    let window = 256 << 10;
    let entry = 4096;
    let mut c = Cluster::new(3, windowed(window));
    c.elect_node("n1");
    let mut max_held = 0;
    let writes = 2048; // 8 MiB of payloads
    for i in 0..writes {
        c.node("n1").propose([sized(entry, i as u8)]).expect("leader");
        c.settle();
        for core in c.cores() {
            max_held = max_held.max(core.held_bytes());
        }
    }
    c.tick_all(2);
    let written: usize = c.applied("n1").iter().map(|e| e.data.len()).sum();
    assert!(written >= 8 << 20, "{written} bytes written");
    for id in ["n1", "n2", "n3"] {
        let commands = c.applied(id).iter().filter(|e| e.log_type == LogType::Command).count();
        assert_eq!(commands, writes, "{id} applied every write");
    }
    assert!(max_held <= window, "a core held {max_held} bytes with a window of {window}");
    assert!(max_held >= window / 2, "the window is used ({max_held} bytes held)");
}

#[test]
fn a_smaller_window_takes_effect_at_once() {
    let mut c = Cluster::new(3, windowed(64 << 20));
    c.elect_node("n1");
    for i in 0..50 {
        c.node("n1").propose([sized(1000, i)]).expect("leader");
    }
    c.settle();
    assert!(c.node("n1").held_bytes() > 50_000);
    c.node("n1").reconfigure(windowed(4000));
    assert!(c.node("n1").held_bytes() <= 4000, "{} bytes held", c.node("n1").held_bytes());
}

#[test]
fn s5_3_bytes_in_flight_to_a_follower_are_capped() {
    let each = 100 + ENTRY_OVERHEAD;
    let cfg = CoreConfig {
        max_inflight: 64,
        max_inflight_bytes: 3 * each,
        max_append_entries: 1,
        ..CoreConfig::for_tests()
    };
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.settle();
    c.tick_all(1);
    // n2's answers are lost: whatever is sent to it stays in flight.
    c.cut.insert(("n2".into(), "n1".into()));
    for i in 0..10 {
        c.node("n1").propose([sized(100, i)]).expect("leader");
    }
    c.settle();
    let p = c.progress("n1", "n2").expect("n2 is a follower");
    assert_eq!(p.next - 1 - p.matched, 3, "three entries' worth of bytes in flight, not ten");
    // Once acknowledged, an entry larger than the budget still goes, alone.
    c.heal();
    c.tick_all(3);
    assert_eq!(c.node("n2").last_index(), c.node("n1").last_index());
    c.cut.insert(("n2".into(), "n1".into()));
    c.node("n1").propose([sized(5000, 1)]).expect("leader");
    c.node("n1").propose([sized(100, 2)]).expect("leader");
    c.settle();
    let p = c.progress("n1", "n2").expect("n2 is a follower");
    assert_eq!(p.next - 1 - p.matched, 1, "the large entry went alone; the next one waits");
    c.heal();
    c.tick_all(3);
    assert_eq!(c.node("n2").last_index(), c.node("n1").last_index(), "and n2 catches up");
}

#[test]
fn a_leader_refuses_proposals_beyond_its_uncommitted_byte_limit() {
    let each = 100 + ENTRY_OVERHEAD;
    let cfg = CoreConfig { max_uncommitted_bytes: 3 * each, ..CoreConfig::for_tests() };
    let mut c = Cluster::new(3, cfg);
    c.elect_node("n1");
    c.settle();
    c.isolate("n1");
    for i in 0..3 {
        c.node("n1").propose([sized(100, i)]).expect("within the limit");
    }
    c.settle();
    assert_eq!(c.node("n1").uncommitted_bytes(), 3 * each);
    assert_eq!(
        c.node("n1").propose([sized(100, 9)]),
        Err(Refusal::UncommittedLimit { uncommitted: 3 * each, limit: 3 * each })
    );
    // Configuration changes are never refused for it.
    let conf = c.node("n1").configuration().0.clone();
    c.node("n1").propose_configuration(conf).expect("a configuration change goes through");
    c.heal();
    c.tick_all(3);
    assert_eq!(c.node("n1").uncommitted_bytes(), 0, "everything committed");
    // With nothing uncommitted, one entry larger than the limit goes.
    c.isolate("n1");
    c.node("n1").propose([sized(10 * each, 1)]).expect("nothing uncommitted: accepted");
    assert!(matches!(c.node("n1").propose([sized(1, 2)]), Err(Refusal::UncommittedLimit { .. })));
    c.heal();
    c.tick_all(3);
    c.node("n1").propose([sized(100, 3)]).expect("room again once committed");
}

/// A cluster whose leader n1 has a window of 0 bytes, with n3 behind it by
/// 20 entries and reads of the store held until the test serves them.
fn leader_with_a_lagging_follower() -> Cluster {
    let mut c = Cluster::new(3, CoreConfig { heartbeat_ticks: 3, ..windowed(0) });
    c.elect_node("n1");
    c.settle();
    c.isolate("n3");
    c.propose_many("n1", 20);
    c.auto_fetch = false;
    c.heal();
    tick_until(&mut c, 10, |c| !c.host("n1").fetches.is_empty());
    assert_eq!(c.host("n1").fetches.len(), 1, "one read of the store for n3");
    c
}

/// AppendEntries carrying entries that `from` sends to `to` in the queue.
fn appends_with_entries(c: &Cluster, from: &str, to: &str) -> usize {
    c.queue
        .iter()
        .filter(|m| m.from.as_str() == from && m.to.as_str() == to)
        .filter(|m| matches!(&m.body, Body::AppendEntries(r) if !r.entries.is_empty()))
        .count()
}

#[test]
fn at_most_one_read_of_the_store_is_outstanding_per_follower() {
    let mut c = leader_with_a_lagging_follower();
    for _ in 0..6 {
        c.node("n1").tick();
        c.settle();
    }
    assert_eq!(c.host("n1").fetches.len(), 1, "heartbeats do not start a second read for n3");
    c.auto_fetch = true;
    c.complete_fetches("n1", |_| true);
    tick_until(&mut c, 30, |c| c.node("n3").last_index() == c.node("n1").last_index());
    assert_eq!(c.node("n3").last_index(), c.node("n1").last_index());
}

#[test]
fn a_failed_read_of_the_store_is_retried_at_the_next_heartbeat() {
    let mut c = leader_with_a_lagging_follower();
    assert_eq!(c.complete_fetches("n1", |_| false), 1);
    c.settle();
    // n3's answers to heartbeats do not start a new read either.
    c.node("n1").send_heartbeats();
    c.settle();
    assert!(c.host("n1").fetches.is_empty(), "no new read before the next heartbeat");
    assert_eq!(appends_with_entries(&c, "n1", "n3"), 0);
    for _ in 0..3 {
        c.node("n1").tick();
        c.collect();
    }
    assert_eq!(c.host("n1").fetches.len(), 1, "retried at the heartbeat");
    c.auto_fetch = true;
    c.complete_fetches("n1", |_| true);
    tick_until(&mut c, 30, |c| c.node("n3").last_index() == c.node("n1").last_index());
    assert_eq!(c.node("n3").last_index(), c.node("n1").last_index(), "n3 caught up after the retry");
}

#[test]
fn entries_read_from_the_store_that_do_not_match_the_log_are_dropped() {
    let mut c = leader_with_a_lagging_follower();
    let fetch = c.host("n1").fetches.pop_front().expect("a read");
    let mut entries = c.host("n1").disk.mem.read(fetch.lo, fetch.hi).expect("on disk");
    entries[0].term += 1;
    c.node("n1").entries_fetched(fetch, Ok(entries));
    let ready = c.take_ready("n1");
    assert!(
        !ready.messages.iter().any(|m| matches!(&m.body, Body::AppendEntries(r) if !r.entries.is_empty())),
        "entries of another term are not sent"
    );
}

#[test]
fn entries_read_after_losing_leadership_are_dropped() {
    let mut c = leader_with_a_lagging_follower();
    c.node("n1").step_down();
    c.collect();
    let fetch = c.host("n1").fetches.pop_front().expect("a read");
    let entries = c.host("n1").disk.mem.read(fetch.lo, fetch.hi).expect("on disk");
    c.node("n1").entries_fetched(fetch, Ok(entries));
    let ready = c.take_ready("n1");
    assert!(ready.messages.is_empty(), "a follower sends nothing for them");
}

#[test]
fn s7_entries_compacted_while_being_read_are_replaced_by_a_snapshot() {
    let mut c = leader_with_a_lagging_follower();
    let applied = c.node("n1").applied_index();
    c.node("n1").compact(applied).expect("applied entries compact");
    c.complete_fetches("n1", |_| true);
    c.collect();
    assert!(c.host("n1").snapshots_to_send.iter().any(|p| p.as_str() == "n3"), "n3 gets a snapshot instead");
    assert_eq!(appends_with_entries(&c, "n1", "n3"), 0);
}

#[test]
fn restart_applies_the_recorded_committed_entries_from_the_store() {
    // A single-node cluster restarts with its state: it applies what it
    // had recorded as committed at once, the entries outside its window
    // read from the store, without waiting to be elected.
    let mut c = Cluster::new(1, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 20);
    let (commit, last) = (c.node("n1").commit_index(), c.node("n1").last_index());
    assert_eq!(commit, last);
    let before = c.applied("n1").to_vec();
    c.crash("n1");
    let init = c.host("n1").disk.windowed_initial_state(5, commit);
    assert_eq!(init.entry_meta.len() as u64, last - 5);
    c.restart_from("n1", CoreConfig::for_tests(), 7, init);
    assert_eq!(c.node("n1").commit_index(), commit);
    let ready = c.take_ready("n1");
    assert_eq!(ready.apply_from_store, Some((1, last - 5)));
    assert_eq!(ready.committed.first().map(|e| e.index), Some(last - 4));
    c.execute("n1", ready);
    assert_eq!(c.applied("n1"), before, "the state machine is back before any election");
    assert_eq!(c.host("n1").applied_from_store, vec![(1, last - 5)]);
    c.elect_node("n1");
    c.node("n1").propose([cmd("after")]).expect("leader again");
    c.settle();
    assert_eq!(c.applied("n1").last().map(|e| e.data.clone()), Some(Bytes::from("after")));
}

#[test]
fn restart_bounds_the_recorded_commit_by_the_log() {
    let mut c = Cluster::new(1, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 5);
    let last = c.node("n1").last_index();
    c.crash("n1");
    let init = c.host("n1").disk.windowed_initial_state(2, last + 100);
    c.restart_from("n1", CoreConfig::for_tests(), 7, init);
    assert_eq!(c.node("n1").commit_index(), last, "never above the last index");
}

#[test]
fn restart_keeps_configurations_known_only_by_metadata() {
    // The bootstrap configuration (entry 1) is outside the window: it comes
    // in `configurations`, and the node knows its cluster.
    let mut c = Cluster::new(3, CoreConfig::for_tests());
    c.elect_node("n1");
    c.propose_many("n1", 5);
    c.crash("n2");
    let init = c.host("n2").disk.windowed_initial_state(1, 0);
    assert!(init.configurations.iter().any(|e| e.index == 1));
    c.restart_from("n2", CoreConfig::for_tests(), 7, init);
    let (conf, index) = c.node("n2").configuration();
    assert_eq!((conf.voters().count(), index), (3, 1));
    // Without it the node would not know any voter.
    let mut bare = c.host("n2").disk.windowed_initial_state(1, 0);
    bare.configurations.clear();
    let core = Core::new("n2".into(), CoreConfig::for_tests(), 1, bare).expect("consistent");
    assert_eq!(core.configuration().0.voters().count(), 0);
}

#[test]
fn restart_rejects_inconsistent_metadata() {
    let meta = |index, term| LogEntryMeta { index, term, log_type: LogType::Command, size: 3 };
    let start = |entry_meta: Vec<LogEntryMeta>, entries: Vec<Log>, configurations: Vec<Log>| {
        let init = InitialState { entry_meta, entries, configurations, ..InitialState::default() };
        Core::new("n1".into(), CoreConfig::for_tests(), 1, init).err()
    };
    let gap = start(vec![meta(1, 1), meta(2, 1)], vec![Log::new(4, 1, LogType::Command, "x")], vec![]);
    assert!(matches!(gap, Some(InconsistentState::LogGap { expected: 3, found: 4 })), "{gap:?}");
    let down = start(vec![meta(1, 2), meta(2, 1)], vec![], vec![]);
    assert!(matches!(down, Some(InconsistentState::TermDecreases { index: 2 })), "{down:?}");
    let conf = crate::codec::encode(&config_of(&ids(1))).expect("encode");
    let stray = start(vec![meta(1, 1)], vec![], vec![Log::new(5, 1, LogType::Configuration, conf)]);
    assert!(matches!(stray, Some(InconsistentState::ConfigurationNotInLog { index: 5 })), "{stray:?}");
}
