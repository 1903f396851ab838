//! Runtime-level randomized simulation: real `Raft` nodes on the in-memory
//! network under tokio's paused clock, with seeded faults while clients
//! write, compare-and-swap and read linearizably. Every run's client history
//! is checked for linearizability; afterwards the faults heal and the
//! cluster must elect a leader and commit within a bounded time, and every
//! node must have applied the same sequence.
//!
//! Faults (each step picks one; see [`FaultKind`]):
//!
//! - isolation of any node or of the leader (which then holds uncommitted
//!   entries that a later leader truncates), partitions, one-way cuts and
//!   deaf nodes (a node that still sends but hears nothing, like a deposed
//!   leader behind a broken link), message drops and short delays,
//!   crash-restarts from the stores, and a correlated failure (a follower
//!   crashes, losing its in-flight writes, while the leader is cut off);
//! - long-tail network faults: some messages held for several election
//!   timeouts and then delivered, some requests delivered twice
//!   ([`InmemNetwork::set_hold`], [`InmemNetwork::set_duplicate_rate`]);
//! - slow and stalled disks: every write of a node delayed by up to several
//!   election timeouts, or stalled until a later step releases it (across
//!   leader changes); a crash of such a node loses its in-flight writes
//!   ([`FaultInjector::abandon_held`](raft::testing::faulty::FaultInjector::abandon_held));
//! - leadership transfers started on the leader while clients read under
//!   its lease (the old leader must stop answering lease reads before its
//!   TimeoutNow leaves: without that, seeds 32 and 246 of 400 return stale
//!   reads);
//! - paused nodes (SIGSTOP, a VM pause), modelled as: every message to and
//!   from the node waits ([`InmemNetwork::pause`]) and every store call of
//!   the node stalls, and a later step releases all of it at once. Not
//!   modelled: the node's own timers keep running on the shared paused
//!   clock (one tokio runtime drives all nodes, and separate runtimes would
//!   each auto-advance their own clock), so it may time out or step down
//!   during the pause in memory instead of right after it.
//!
//! Every message takes at least 50µs of virtual time, and a real-time
//! watchdog ([`raft_tests::run_paused_with_watchdog`]) fails a seed whose
//! nodes busy-loop without ever letting the paused clock advance. One seed
//! in four runs without pre-vote, so candidates race more often.
//!
//! Checked all along, by sampling every node every few milliseconds (see
//! [`watch`]): at most one leader per term (election safety); every command
//! a node recently applied is durable, with the same bytes, in a quorum of
//! the log stores (a commit never runs ahead of what a quorum durably
//! holds, and nothing committed is truncated); no two nodes applied
//! different commands at one index.
//!
//! Values come in mixed sizes around the AppendEntries byte budget, and on
//! every other seed the network refuses messages over a small size limit
//! (as the gRPC transport does): catch-up batches must be cut to fit, and a
//! command too large for one message must be refused at once with
//! `CommandTooLarge`, without effect.
//!
//! At the end it prints how many seeds saw a leader change, a snapshot
//! install and a log truncation, and fails if any of them is seen by too few
//! seeds (the faults would no longer exercise those paths).
//!
//! Clients mix the four read paths with their writes
//! ([`SimClients::mix_reads`]): lease reads, ReadIndex reads through
//! `Raft::read` and `linearizable_read`, on leaders and on followers
//! (linearizable follower reads), all in the checked history; and stale
//! reads, kept out of it and only checked to return a value some client
//! wrote. The run fails if no seed served a lease, follower or stale read.
//!
//! `RUNTIME_SIM_SEEDS=N` runs N seeds (default 50); `RUNTIME_SIM_SEED=S`
//! replays one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::testing::faulty::Fault;
use raft::testing::linearizability::check_kv;
use raft::transport::inmem::InmemNetwork;
use raft::{Config, Raft, RaftState};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::sim_client::{Rng, SimClients};
use raft_tests::{AppliedLog, KvTestFsm, TestCluster};

/// The AppendEntries byte budget of every node.
const APPEND_BUDGET: usize = 2048;

/// The message size limit of the network on limited seeds.
const MESSAGE_LIMIT: usize = 8 * 1024;

/// A value length: mostly small, often around the byte budget, sometimes
/// well over it (but within one message), rarely over the message limit.
fn value_len(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0..=9 => rng.below(16) as usize,
        10..=14 => APPEND_BUDGET - 256 + rng.below(512) as usize,
        15..=17 => 3000 + rng.below(3000) as usize,
        18 => 6500,
        _ => MESSAGE_LIMIT + rng.below(4096) as usize,
    }
}

/// The election timeout of every node ([`raft_tests::test_config`]).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(50);

/// The longest a message is held ([`FaultKind::LongTail`] and the initial
/// holds stay below it).
const MAX_HOLD: Duration = Duration::from_millis(50 * 13);

/// The least delay of every message.
const MIN_DELAY: Duration = Duration::from_micros(50);

/// Real time after which a seed counts as stuck in a busy loop.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Fault steps per seed.
const STEPS: usize = 16;

/// Client tasks per seed.
const CLIENTS: u64 = 12;

/// Longest pause between two operations of a client.
const CLIENT_THINK: Duration = Duration::from_millis(2);

/// The faults a step can inject.
#[derive(Clone, Copy, Debug)]
enum FaultKind {
    /// Cut one node off.
    Isolate,
    /// Cut the current leader off while clients write to it.
    IsolateLeader,
    /// Split the nodes into two groups.
    Partition,
    /// Drop a fraction of messages.
    Drops,
    /// Delay every message a little.
    Delays,
    /// Hold some messages for several election timeouts, duplicate some.
    LongTail,
    /// Crash a node (losing its in-flight writes) and restart it.
    Restart,
    /// Every write of a node takes up to several election timeouts.
    SlowDisk,
    /// A node's writes stall until a later step releases them.
    StalledDisk,
    /// A node stops hearing, being heard and persisting; released later.
    Pause,
    /// Cut every link into one node: it still sends (as a deposed leader
    /// would) but hears nothing.
    Deaf,
    /// Cut one direction of one link.
    OneWay,
    /// A correlated failure: crash a follower (preferably one whose disk
    /// holds writes, which are lost) and isolate the leader at once.
    CrashAndIsolateLeader,
    /// Cut the leader off, wait for a candidate, and hold every answer to
    /// it for several election timeouts: it campaigns again (and again)
    /// before the answers of its first campaign arrive.
    SlowAnswersToCandidate,
    /// Restore every link.
    Heal,
    /// The leader hands leadership over (`leadership_transfer`) while
    /// clients read under its lease: the TimeoutNow lets the target skip
    /// the voters' stickiness, so the old leader must stop serving lease
    /// reads before it leaves.
    Transfer,
}

const FAULT_KINDS: [FaultKind; 16] = [
    FaultKind::Isolate,
    FaultKind::IsolateLeader,
    FaultKind::Partition,
    FaultKind::Drops,
    FaultKind::Delays,
    FaultKind::LongTail,
    FaultKind::Restart,
    FaultKind::SlowDisk,
    FaultKind::StalledDisk,
    FaultKind::Pause,
    FaultKind::Deaf,
    FaultKind::OneWay,
    FaultKind::CrashAndIsolateLeader,
    FaultKind::SlowAnswersToCandidate,
    FaultKind::Heal,
    FaultKind::Transfer,
];

/// A held fault to undo at a virtual time.
#[derive(Clone, Copy, Debug)]
struct Release {
    at: tokio::time::Instant,
}

/// When a held fault started now ends: 2 to 11 election timeouts later.
fn hold_until(rng: &mut Rng) -> tokio::time::Instant {
    tokio::time::Instant::now() + ELECTION_TIMEOUT * (2 + rng.below(10) as u32)
}

/// One node as the watcher sees it: its current incarnation (if running)
/// and its durable stores.
#[derive(Clone)]
struct Watched {
    id: String,
    raft: Option<Raft<KvTestFsm>>,
    store: InmemStore,
    snaps: InmemSnapshotStore,
    applied: AppliedLog,
}

/// What the watcher saw: every leader by term, and the first broken
/// invariant.
#[derive(Default)]
struct WatchLog {
    leaders: BTreeMap<u64, String>,
    violation: Option<String>,
}

/// How many of each node's most recently applied commands every sample
/// checks for durability.
const RECENT_APPLIED: usize = 8;

/// Samples the nodes every few milliseconds until `stop`, checking:
///
/// - election safety: at most one leader per term (from the metrics);
/// - durability of what was applied: each of the last few commands a node
///   applied is held, with the same bytes, by a quorum of the nodes' log
///   stores (or lies under a snapshot of them). Writes held by a stalled or
///   slow disk are not in the store yet, and a crash loses them, so an
///   acknowledgement sent before its write was durable, or a committed
///   entry truncated later, shows up here;
/// - state machine safety on the fly: no two nodes applied different
///   commands at one index.
async fn watch(nodes: Arc<Mutex<Vec<Watched>>>, log: Arc<Mutex<WatchLog>>, stop: Arc<AtomicBool>) {
    use raft::{LogStore, SnapshotStore};
    while !stop.load(Ordering::SeqCst) {
        let nodes = nodes.lock().expect("lock").clone();
        let mut found = Vec::new();
        let mut leaders = Vec::new();
        let mut recent: BTreeMap<u64, (String, bytes::Bytes)> = BTreeMap::new();
        for node in &nodes {
            if let Some(raft) = &node.raft {
                let m = raft.metrics();
                let m = m.borrow();
                if m.state == RaftState::Leader {
                    leaders.push((m.term, node.id.clone()));
                }
            }
            let applied = node.applied.lock().expect("lock");
            for (index, data) in applied.iter().rev().take(RECENT_APPLIED) {
                match recent.get(index) {
                    Some((other, d)) if d != data => {
                        found.push(format!("{} and {other} applied different commands at {index}", node.id))
                    }
                    Some(_) => {}
                    None => {
                        recent.insert(*index, (node.id.clone(), data.clone()));
                    }
                }
            }
        }
        // The in-memory stores answer at once: this is one consistent look.
        let quorum = nodes.len() / 2 + 1;
        let mut covered_by_snapshot = Vec::new();
        for node in &nodes {
            let snapshot =
                node.snaps.list().await.map_or(0, |l| l.iter().map(|m| m.index).max().unwrap_or(0));
            covered_by_snapshot.push(snapshot);
        }
        for (index, (who, data)) in &recent {
            let mut holders = 0;
            for (node, snapshot) in nodes.iter().zip(&covered_by_snapshot) {
                let stored = node.store.get_log(*index).await.ok().flatten();
                if stored.as_ref().is_some_and(|l| l.data == *data)
                    || (stored.is_none() && *snapshot >= *index)
                {
                    holders += 1;
                }
            }
            if holders < quorum {
                found.push(format!(
                    "{who} applied index {index}, but only {holders} of {} log stores hold it durably",
                    nodes.len()
                ));
            }
        }
        {
            let mut log = log.lock().expect("lock");
            for (term, id) in leaders {
                match log.leaders.get(&term) {
                    Some(other) if *other != id => {
                        found.push(format!("two leaders in term {term}: {other} and {id}"))
                    }
                    Some(_) => {}
                    None => {
                        log.leaders.insert(term, id);
                    }
                }
            }
            if log.violation.is_none() {
                log.violation = found.into_iter().next();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a seed exercised.
#[derive(Default)]
struct SeedStats {
    ops: usize,
    compacted: usize,
    too_large: u64,
    over_budget: u64,
    /// Completed reads: stale, lease, ReadIndex, `linearizable_read`.
    reads: [u64; 4],
    /// Linearizable reads served by followers.
    follower_reads: u64,
    /// Terms in which some node was seen leading.
    leader_terms: usize,
    /// InstallSnapshot requests that succeeded.
    snapshot_installs: u64,
    /// Log suffixes deleted by conflict truncation.
    truncations: u64,
    /// Messages held for a long time.
    held: u64,
    /// Requests duplicated.
    duplicated: u64,
    /// Messages that waited for a paused node.
    waited_for_pause: u64,
}

/// The fault-driving state of one seed.
struct Driver {
    cluster: TestCluster<KvTestFsm>,
    net: InmemNetwork,
    ids: Vec<String>,
    clients: SimClients,
    /// What the watcher samples.
    watched: Arc<Mutex<Vec<Watched>>>,
    /// Nodes whose disk is slow or stalled, and when that ends.
    disks: BTreeMap<String, Release>,
    /// Paused nodes, and when they resume.
    paused: BTreeMap<String, Release>,
    trace: Vec<String>,
}

impl Driver {
    /// Lets the clients use the running nodes that are not paused, and the
    /// watcher see every node.
    fn publish(&self) {
        let members: Vec<String> =
            self.ids.iter().filter(|id| !self.paused.contains_key(*id)).cloned().collect();
        self.clients.publish(&self.cluster, &members);
        let mut watched = self.watched.lock().expect("lock");
        watched.clear();
        for (id, node) in &self.cluster.nodes {
            watched.push(Watched {
                id: id.clone(),
                raft: node.raft.clone(),
                store: node.store.clone(),
                snaps: node.snaps.clone(),
                applied: node.applied.clone(),
            });
        }
    }

    fn leader(&self) -> Option<String> {
        self.cluster.leaders().into_iter().next()
    }

    /// Ends the disk faults and pauses due by `now` (all of them if `all`).
    fn release_due(&mut self, all: bool) {
        let now = tokio::time::Instant::now();
        let due = |r: &Release| all || r.at <= now;
        let disks: Vec<String> =
            self.disks.iter().filter(|(_, r)| due(r)).map(|(id, _)| id.clone()).collect();
        for id in disks {
            self.disks.remove(&id);
            if !self.paused.contains_key(&id) {
                self.cluster.nodes[&id].faults.clear_all();
            }
            self.trace.push(format!("{id}: disk back to normal"));
        }
        let paused: Vec<String> =
            self.paused.iter().filter(|(_, r)| due(r)).map(|(id, _)| id.clone()).collect();
        for id in &paused {
            self.paused.remove(id);
            let faults = &self.cluster.nodes[id].faults;
            faults.release();
            if !self.disks.contains_key(id) {
                faults.clear_all();
            }
            self.net.resume(&id.as_str().into());
            self.trace.push(format!("{id}: resumed"));
        }
        if !paused.is_empty() {
            self.publish();
        }
    }

    /// Waits (at most `limit`) until some running node is a candidate, and
    /// returns it as soon as its metrics say so.
    async fn wait_for_candidate(&self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut watches: Vec<(String, tokio::sync::watch::Receiver<raft::Metrics>)> = self
            .cluster
            .nodes
            .iter()
            .filter_map(|(id, n)| n.raft.as_ref().map(|r| (id.clone(), r.metrics())))
            .collect();
        loop {
            for (id, m) in &mut watches {
                if m.borrow_and_update().state == RaftState::Candidate {
                    return Some(id.clone());
                }
            }
            if watches.is_empty() {
                return None;
            }
            let stopped = {
                let changed =
                    futures::future::select_all(watches.iter_mut().map(|(_, m)| Box::pin(m.changed())));
                match tokio::time::timeout_at(deadline, changed).await {
                    Err(_) => return None,
                    Ok((Ok(()), _, _)) => continue,
                    Ok((Err(_), index, _)) => index,
                }
            };
            // That node stopped: its metrics will not change again.
            watches.remove(stopped);
        }
    }

    /// Crashes `id` (its held writes are lost) and starts it again.
    async fn crash_restart(&mut self, id: &str, rng: &mut Rng) {
        let faults = self.cluster.nodes[id].faults.clone();
        faults.abandon_held();
        faults.clear_all();
        self.disks.remove(id);
        self.paused.remove(id);
        self.net.resume(&id.into());
        self.cluster.stop(id).await;
        self.publish();
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        self.cluster.start(id).await;
        self.publish();
    }

    async fn step(&mut self, kind: FaultKind, rng: &mut Rng) {
        let ids = self.ids.clone();
        let victim = ids[rng.below(ids.len() as u64) as usize].clone();
        match kind {
            FaultKind::Isolate => {
                self.net.isolate(&victim.as_str().into());
                self.trace.push(format!("isolate {victim}"));
            }
            FaultKind::IsolateLeader => {
                let victim = self.leader().unwrap_or(victim);
                self.net.isolate(&victim.as_str().into());
                self.trace.push(format!("isolate leader {victim}"));
            }
            FaultKind::Partition => {
                let split = 1 + rng.below(ids.len() as u64 - 1) as usize;
                let mut shuffled = ids.clone();
                for i in (1..shuffled.len()).rev() {
                    shuffled.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let (a, b) = shuffled.split_at(split);
                let group = |g: &[String]| g.iter().map(|s| s.as_str().into()).collect::<Vec<_>>();
                self.net.heal();
                self.net.partition(&[group(a), group(b)]);
                self.trace.push(format!("partition {a:?} | {b:?}"));
            }
            FaultKind::Drops => {
                let rate = rng.below(25) as f64 / 100.0;
                self.net.set_drop_rate(rate);
                self.trace.push(format!("drop rate {rate}"));
            }
            FaultKind::Delays => {
                let max = Duration::from_millis(rng.below(20));
                self.net.set_delay(MIN_DELAY, max);
                self.trace.push(format!("delay up to {max:?}"));
            }
            FaultKind::LongTail => {
                let rate = (1 + rng.below(15)) as f64 / 100.0;
                let max = ELECTION_TIMEOUT * (3 + rng.below(10) as u32);
                let dup = rng.below(10) as f64 / 100.0;
                self.net.set_hold(rate, ELECTION_TIMEOUT / 2, max);
                self.net.set_duplicate_rate(dup);
                self.trace.push(format!("hold {rate} up to {max:?}, duplicate {dup}"));
            }
            FaultKind::Restart => {
                // Prefer a node whose disk holds writes: the crash loses them.
                let victim =
                    self.disks.keys().next().cloned().filter(|_| rng.below(2) == 0).unwrap_or(victim);
                self.crash_restart(&victim, rng).await;
                self.trace.push(format!("crash-restart {victim}"));
            }
            FaultKind::SlowDisk => {
                if self.paused.contains_key(&victim) {
                    return;
                }
                let latency = Duration::from_millis(10 + rng.below(300));
                self.cluster.nodes[&victim].faults.inject_writes(Fault::Latency(latency));
                let until = hold_until(rng);
                self.disks.insert(victim.clone(), Release { at: until });
                self.trace.push(format!("{victim}: writes take {latency:?}"));
            }
            FaultKind::StalledDisk => {
                if self.paused.contains_key(&victim) {
                    return;
                }
                self.cluster.nodes[&victim].faults.inject_writes(Fault::Stall);
                let until = hold_until(rng);
                self.disks.insert(victim.clone(), Release { at: until });
                self.trace.push(format!("{victim}: writes stall"));
            }
            FaultKind::Pause => {
                if self.paused.contains_key(&victim) || self.paused.len() + 1 >= ids.len() {
                    return;
                }
                self.net.pause(&victim.as_str().into());
                self.cluster.nodes[&victim].faults.inject_all(Fault::Stall);
                let until = hold_until(rng);
                self.paused.insert(victim.clone(), Release { at: until });
                self.publish();
                self.trace.push(format!("pause {victim}"));
            }
            FaultKind::Deaf => {
                for other in ids.iter().filter(|o| **o != victim) {
                    self.net.cut(&other.as_str().into(), &victim.as_str().into());
                }
                self.trace.push(format!("{victim} deaf"));
            }
            FaultKind::OneWay => {
                let others: Vec<&String> = ids.iter().filter(|o| **o != victim).collect();
                let to = others[rng.below(others.len() as u64) as usize];
                self.net.cut(&victim.as_str().into(), &to.as_str().into());
                self.trace.push(format!("cut {victim} -> {to}"));
            }
            FaultKind::CrashAndIsolateLeader => {
                let Some(leader) = self.leader() else { return };
                let followers: Vec<String> = ids.iter().filter(|o| **o != leader).cloned().collect();
                let held: Vec<String> =
                    followers.iter().filter(|f| self.disks.contains_key(*f)).cloned().collect();
                let victim = if held.is_empty() { &followers } else { &held };
                let victim = victim[rng.below(victim.len() as u64) as usize].clone();
                self.net.isolate(&leader.as_str().into());
                self.crash_restart(&victim, rng).await;
                self.trace.push(format!("crash-restart {victim} and isolate leader {leader}"));
            }
            FaultKind::SlowAnswersToCandidate => {
                if let Some(leader) = self.leader() {
                    self.net.isolate(&leader.as_str().into());
                }
                let Some(candidate) = self.wait_for_candidate(ELECTION_TIMEOUT * 10).await else { return };
                let hold = ELECTION_TIMEOUT * (2 + rng.below(8) as u32);
                self.net.hold_answers_to(&candidate.as_str().into(), hold);
                self.trace.push(format!("answers to candidate {candidate} held {hold:?}"));
            }
            FaultKind::Heal => {
                self.net.heal();
                self.net.set_drop_rate(0.0);
                self.trace.push("heal".to_string());
            }
            FaultKind::Transfer => {
                let Some(leader) = self.leader() else { return };
                let Some(raft) = self.cluster.nodes[&leader].raft.clone() else { return };
                // Not awaited: clients keep going while it completes (or
                // fails under the faults in force).
                tokio::spawn(async move {
                    let _ = raft.leadership_transfer().await;
                });
                self.trace.push(format!("leadership transfer from {leader}"));
            }
        }
    }
}

/// Snapshots often, so compaction and InstallSnapshot happen under faults.
fn configure(c: &mut Config) {
    c.snapshot_threshold = 64;
    c.trailing_logs = 10;
    c.snapshot_interval = Duration::from_millis(50);
    c.max_append_entries_bytes = APPEND_BUDGET;
}

/// [`configure`] without the pre-vote round.
fn configure_without_pre_vote(c: &mut Config) {
    configure(c);
    c.pre_vote = false;
}

async fn run_seed(seed: u64, net: InmemNetwork) -> Result<SeedStats, String> {
    let mut rng = Rng::new(seed);
    let n = if seed.is_multiple_of(3) { 5 } else { 3 };
    // Every message takes at least a little virtual time, so nodes that
    // exchange messages for ever without waiting still let the clock move
    // and the bounded waits report it.
    net.set_delay(MIN_DELAY, MIN_DELAY);
    net.set_rpc_timeout(Duration::from_millis(200));
    let limited = seed.is_multiple_of(2);
    if limited {
        net.set_max_message_size(Some(MESSAGE_LIMIT));
    }
    // Every seed starts with a few messages held long and duplicated.
    net.set_hold(
        rng.below(4) as f64 / 100.0,
        ELECTION_TIMEOUT / 2,
        ELECTION_TIMEOUT * (4 + rng.below(8) as u32),
    );
    net.set_duplicate_rate(rng.below(4) as f64 / 100.0);
    // Without pre-vote, candidates race more often.
    let configure: fn(&mut Config) = if seed % 4 == 1 { configure_without_pre_vote } else { configure };
    let cluster = TestCluster::<KvTestFsm>::with_config(n, net.clone(), configure).await;
    let mut driver = Driver {
        ids: cluster.nodes.keys().cloned().collect(),
        cluster,
        net: net.clone(),
        clients: SimClients::spawn_sized(CLIENTS, seed, CLIENT_THINK, value_len, APPEND_BUDGET),
        watched: Arc::default(),
        disks: BTreeMap::new(),
        paused: BTreeMap::new(),
        trace: Vec::new(),
    };
    driver.clients.mix_reads();
    driver.publish();
    let leaders = Arc::new(Mutex::new(WatchLog::default()));
    let watching = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch(driver.watched.clone(), leaders.clone(), watching.clone()));

    // Fault phase.
    for _ in 0..STEPS {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(200))).await;
        driver.release_due(false);
        let kind = FAULT_KINDS[rng.below(FAULT_KINDS.len() as u64) as usize];
        driver.step(kind, &mut rng).await;
    }

    // Heal, stop the clients, and require progress within a bound.
    driver.release_due(true);
    net.heal();
    net.set_drop_rate(0.0);
    net.set_delay(MIN_DELAY, MIN_DELAY);
    net.set_hold(0.0, Duration::ZERO, Duration::ZERO);
    net.set_duplicate_rate(0.0);
    let history = driver.clients.finish().await?;
    let Driver { mut cluster, trace, clients, .. } = driver;
    let fail = |what: String| format!("seed {seed} (message limit: {limited}): {what}\nfaults: {trace:?}");
    // Let every message held before the heal arrive first: a candidate's
    // late vote request may still unseat a leader once.
    tokio::time::sleep(MAX_HOLD + Duration::from_millis(100)).await;
    let leader = tokio::time::timeout(Duration::from_secs(10), cluster.wait_for_leader())
        .await
        .map_err(|_| fail("no leader within 10s after healing".into()))?;
    let last =
        tokio::time::timeout(Duration::from_secs(5), cluster.raft(&leader).barrier(Duration::from_secs(5)))
            .await
            .map_err(|_| fail("no commit within 5s after healing".into()))?
            .map_err(|e| fail(format!("barrier failed after healing: {e}")))?;
    for id in cluster.running() {
        tokio::time::timeout(Duration::from_secs(10), cluster.raft(&id).wait_applied(last))
            .await
            .map_err(|_| fail(format!("{id} did not catch up to {last}")))?
            .map_err(|e| fail(e.to_string()))?;
    }
    watching.store(true, Ordering::SeqCst);
    watcher.await.map_err(|e| fail(format!("watcher panicked: {e}")))?;
    let (leader_terms, violation) = {
        let log = leaders.lock().expect("lock");
        (log.leaders.len(), log.violation.clone())
    };
    if let Some(violation) = violation {
        return Err(fail(violation));
    }
    // State machine safety: no two nodes applied different commands at one
    // index (a node restored from a snapshot only records what followed it).
    let reference: HashMap<u64, bytes::Bytes> = cluster.applied(&leader).into_iter().collect();
    for id in cluster.running() {
        for (index, data) in cluster.applied(&id) {
            if reference.get(&index).is_some_and(|d| *d != data) {
                return Err(fail(format!("{id} applied a different command than {leader} at {index}")));
            }
        }
    }
    let mut compacted = 0;
    for id in cluster.running() {
        if cluster.raft(&id).metrics().borrow().snapshot_index > 0 {
            compacted += 1;
        }
    }
    let truncations = cluster.nodes.values().map(|n| n.faults.truncations()).sum();
    cluster.shutdown().await;

    let ops = history.len();
    let result = check_kv(&history);
    if !result.is_ok() {
        return Err(fail(format!("history is not linearizable: {result}")));
    }
    let net_stats = net.stats();
    Ok(SeedStats {
        ops,
        compacted,
        too_large: clients.shared.too_large.load(Ordering::Relaxed),
        over_budget: clients.shared.over_budget.load(Ordering::Relaxed),
        reads: std::array::from_fn(|i| clients.shared.reads_by_path[i].load(Ordering::Relaxed)),
        follower_reads: clients.shared.follower_reads.load(Ordering::Relaxed),
        leader_terms,
        snapshot_installs: net_stats.snapshots_installed,
        truncations,
        held: net_stats.held,
        duplicated: net_stats.duplicated,
        waited_for_pause: net_stats.waited_for_pause,
    })
}

/// Runs one seed on a paused clock under the real-time watchdog of
/// [`raft_tests::run_paused_with_watchdog`].
/// A panic inside the run (a client's, a helper's bounded wait) fails the
/// seed with its message.
fn run_in_paused_runtime(seed: u64) -> Result<SeedStats, String> {
    let net = InmemNetwork::with_seed(seed);
    let run = || raft_tests::run_paused_with_watchdog(seed, &net, STALL_LIMIT, run_seed(seed, net.clone()));
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("seed {seed}: panicked: {message}"))
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Totals over the seeds of one run.
#[derive(Default)]
struct Totals {
    seeds: u64,
    ops: u64,
    compacted: u64,
    too_large: u64,
    over_budget: u64,
    reads: [u64; 4],
    follower_reads: u64,
    leader_change: u64,
    snapshot_install: u64,
    truncation: u64,
    held: u64,
    duplicated: u64,
    waited_for_pause: u64,
}

impl Totals {
    fn add(&mut self, s: &SeedStats) {
        self.seeds += 1;
        self.ops += s.ops as u64;
        self.compacted += s.compacted as u64;
        self.too_large += s.too_large;
        self.over_budget += s.over_budget;
        for (total, n) in self.reads.iter_mut().zip(s.reads) {
            *total += n;
        }
        self.follower_reads += s.follower_reads;
        self.leader_change += u64::from(s.leader_terms > 1);
        self.snapshot_install += u64::from(s.snapshot_installs > 0);
        self.truncation += u64::from(s.truncations > 0);
        self.held += s.held;
        self.duplicated += s.duplicated;
        self.waited_for_pause += s.waited_for_pause;
    }
}

#[test]
fn runtime_simulation_many_seeds() {
    let seeds = env_u64("RUNTIME_SIM_SEEDS").unwrap_or(50);
    let threads = 2;
    let started = std::time::Instant::now();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let totals = Arc::new(Mutex::new(Totals::default()));
    std::thread::scope(|s| {
        for t in 0..threads {
            let failures = failures.clone();
            let totals = totals.clone();
            s.spawn(move || {
                for seed in (0..seeds).filter(|x| x % threads == t) {
                    match run_in_paused_runtime(seed) {
                        Ok(stats) => totals.lock().expect("lock").add(&stats),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                }
            });
        }
    });
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed; replay one with RUNTIME_SIM_SEED=<seed> cargo test -p raft-tests --test runtime_simulation replay\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let t = totals.lock().expect("lock");
    eprintln!(
        "{seeds} runtime simulation seeds passed in {:.1?}: leader change {}/{seeds}, snapshot install {}/{seeds}, \
         truncation {}/{seeds}; {} client operations checked, {} compacted logs, {} commands refused as too large, \
         {} writes over the byte budget, {} messages held long, {} duplicated, {} waited for a paused node",
        started.elapsed(),
        t.leader_change,
        t.snapshot_install,
        t.truncation,
        t.ops,
        t.compacted,
        t.too_large,
        t.over_budget,
        t.held,
        t.duplicated,
        t.waited_for_pause,
    );
    assert!(t.ops > seeds * 20, "clients completed too few operations ({})", t.ops);
    assert!(t.compacted > 0, "no run exercised log compaction");
    assert!(t.too_large > 0, "no run refused a command over the message limit");
    assert!(t.over_budget > 0, "no run committed a write over the byte budget");
    eprintln!(
        "reads: {} stale, {} lease, {} ReadIndex, {} linearizable_read; {} served by followers",
        t.reads[0], t.reads[1], t.reads[2], t.reads[3], t.follower_reads
    );
    assert!(t.reads.iter().all(|&n| n > 0), "some read path was never exercised: {:?}", t.reads);
    assert!(t.follower_reads > 0, "no run served a follower read");
    assert!(t.held > 0 && t.duplicated > 0 && t.waited_for_pause > 0, "long-tail faults were not injected");
    // The faults must keep exercising elections, snapshot installs and
    // truncations: at least a quarter of the seeds each (with a floor of
    // one, for small seed counts).
    let enough = (seeds / 4).max(1);
    for (what, count) in [
        ("leader change", t.leader_change),
        ("snapshot install", t.snapshot_install),
        ("truncation", t.truncation),
    ] {
        assert!(count >= enough, "only {count} of {seeds} seeds saw a {what} (want at least {enough})");
    }
}

#[test]
fn replay() {
    if std::env::var("RUST_LOG").is_ok() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let seed = env_u64("RUNTIME_SIM_SEED").unwrap_or(7);
    if let Err(e) = run_in_paused_runtime(seed) {
        panic!("{e}");
    }
}
