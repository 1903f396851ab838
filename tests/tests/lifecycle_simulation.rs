//! Runtime-level lifecycle simulation: real `Raft` nodes on the in-memory
//! network under tokio's paused clock, with seeded node-lifecycle and
//! membership faults while clients write, compare-and-swap and read
//! linearizably (issue 13, "Proof"):
//!
//! - a follower restarted with an EMPTY disk under its old id, which must
//!   catch up;
//! - a torn tail: a follower restarted with its last entry or two cut off;
//! - a follower that lost only its stable store (log intact): starting it
//!   must be refused (then the operator replaces its disk, as above);
//! - `add_voter` of a server that never answers (it must not become a
//!   voter, writes keep committing, and it can be removed afterwards), and
//!   of one that answers late (started after the call, or isolated then
//!   healed): a voter only once it answered, then it catches up;
//! - removal of a follower and of the leader while clients write: the rest
//!   keep committing, the removed node does not drive the members' term up,
//!   and it reports the terminal `Removed` state;
//! - a one-server bootstrap (all voters bootstrapped on one node only);
//! - a message from another cluster: a second cluster on the same network
//!   whose configuration names one of this cluster's addresses (and whose
//!   term is first raised above this cluster's, as a long-lived cluster's
//!   would be) must not drive this cluster's term up;
//! - plain crash-restarts as background noise.
//!
//! **Disk-loss restriction.** Losing a disk (empty disk, torn tail, lost
//! stable store) is only survivable when the lost state is held elsewhere,
//! so those faults hit a follower only, one at a time, and only while every
//! other voter is running, follows the same leader and has applied a fresh
//! barrier (it holds everything committed). The previous victim has caught
//! up before the next fault (each fault waits for that).
//!
//! After each fault the nodes' applied commands are compared (state machine
//! safety). At the end the network heals, a leader must be elected, a
//! barrier must commit, EVERY member of the current configuration must
//! apply it within a bounded wait, and the clients' history must be
//! linearizable.
//!
//! Every message takes 50µs..1ms of virtual time, so a replication loop
//! that never waits still lets the clock move and a bounded wait reports
//! it; a real-time watchdog (see [`run_in_paused_runtime`]) covers any
//! remaining busy loop. Half of the seeds snapshot often (a snapshot can
//! rescue a follower the log could not), half never do.
//!
//! A run stops at the first failed check and prints the seed, the failure
//! and the fault trace. `LIFECYCLE_SIM_SEEDS=N` runs N seeds (default 20);
//! `LIFECYCLE_SIM_SEED=S` replays one (test `replay`, with `RUST_LOG` for
//! logs); `LIFECYCLE_SIM_FAULTS=empty_disk,torn_tail,...` limits the faults
//! to the named kinds (names: see [`Fault::name`]; `one_server_bootstrap`
//! makes every seed start that way).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::testing::linearizability::check_kv;
use raft::transport::inmem::InmemNetwork;
use raft::{Config, Configuration, Metrics, Raft, RaftState, Server, ServerAddress, ServerId, Suffrage};
use raft_tests::sim_client::{Rng, SimClients};
use raft_tests::{KvTestFsm, TestCluster};
use tokio::time::Instant;

/// Seeds run by default: small enough for well under a minute in debug mode
/// on a loaded two-core machine.
const DEFAULT_SEEDS: u64 = 20;
/// Lifecycle faults injected per seed.
const FAULTS_PER_SEED: usize = 5;
/// Background clients per seed.
const CLIENTS: u64 = 3;
/// Longest pause between two operations of a client: runs last several
/// virtual seconds, so clients are paced to keep the CPU cost bounded.
const CLIENT_THINK: Duration = Duration::from_millis(40);
/// A period without faults over which a healthy cluster's term must not rise.
const QUIET: Duration = Duration::from_secs(1);
/// How long a node has to catch up to a barrier.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long electing a leader may take.
const ELECTION: Duration = Duration::from_secs(10);
/// Timeout of `remove_server` and of `add_voter` for a server that never answers.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of `add_voter` for a server that answers late (it answers after
/// at most 500ms).
const LATE_ADD_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a removed node may take to notice it was removed.
const REMOVED_NOTICE: Duration = Duration::from_secs(2);
/// Real time after which a seed counts as stalled (see [`run_in_paused_runtime`]).
const STALL_LIMIT: Duration = Duration::from_secs(20);
const MIN_VOTERS: usize = 3;
const MAX_VOTERS: usize = 5;

/// Whether `raft` reports the terminal `Removed` state (issue 13 item 7).
///
/// Compared by name so this file builds before `RaftState::Removed` exists;
/// once it does, this can become `raft.state() == RaftState::Removed`.
fn reports_removed(raft: &Raft<KvTestFsm>) -> bool {
    format!("{:?}", raft.state()) == "Removed"
}

/// The lifecycle faults, one function each on [`Sim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    EmptyDisk,
    TornTail,
    LostStableStore,
    SilentVoter,
    LateVoter,
    RemoveFollower,
    RemoveLeader,
    OtherCluster,
    Restart,
}

const ALL_FAULTS: [Fault; 9] = [
    Fault::EmptyDisk,
    Fault::TornTail,
    Fault::LostStableStore,
    Fault::SilentVoter,
    Fault::LateVoter,
    Fault::RemoveFollower,
    Fault::RemoveLeader,
    Fault::OtherCluster,
    Fault::Restart,
];

impl Fault {
    /// The name `LIFECYCLE_SIM_FAULTS` uses.
    fn name(self) -> &'static str {
        match self {
            Fault::EmptyDisk => "empty_disk",
            Fault::TornTail => "torn_tail",
            Fault::LostStableStore => "lost_stable_store",
            Fault::SilentVoter => "silent_voter",
            Fault::LateVoter => "late_voter",
            Fault::RemoveFollower => "remove_follower",
            Fault::RemoveLeader => "remove_leader",
            Fault::OtherCluster => "other_cluster",
            Fault::Restart => "restart",
        }
    }
}

/// Which faults a run may inject, from `LIFECYCLE_SIM_FAULTS`.
#[derive(Clone)]
struct Plan {
    faults: Vec<Fault>,
    /// `Some(true)`: every seed starts from a one-server bootstrap;
    /// `Some(false)`: none does; `None`: every fifth seed.
    one_server_bootstrap: Option<bool>,
}

impl Plan {
    fn from_env() -> Self {
        let Ok(list) = std::env::var("LIFECYCLE_SIM_FAULTS") else {
            return Plan { faults: ALL_FAULTS.to_vec(), one_server_bootstrap: None };
        };
        let names: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        for name in &names {
            assert!(
                *name == "one_server_bootstrap" || ALL_FAULTS.iter().any(|f| f.name() == *name),
                "LIFECYCLE_SIM_FAULTS: unknown fault {name:?}"
            );
        }
        Plan {
            faults: ALL_FAULTS.iter().copied().filter(|f| names.contains(&f.name())).collect(),
            one_server_bootstrap: Some(names.contains(&"one_server_bootstrap")),
        }
    }
}

/// What a fault step returns: `Err` says which expectation failed.
type Step = Result<(), String>;

/// Snapshot often so compaction and InstallSnapshot happen under the faults.
fn compacting(c: &mut Config) {
    c.snapshot_threshold = 150;
    c.trailing_logs = 20;
    c.snapshot_interval = Duration::from_millis(100);
}

/// The defaults: no snapshot within a run, so a lagging follower must be
/// repaired from the log itself (a snapshot would hide a stuck `next`).
fn not_compacting(_: &mut Config) {}

fn voter_ids(configuration: &Configuration) -> Vec<String> {
    configuration.servers.iter().filter(|s| s.suffrage == Suffrage::Voter).map(|s| s.id.to_string()).collect()
}

fn member_ids(configuration: &Configuration) -> Vec<String> {
    configuration.servers.iter().map(|s| s.id.to_string()).collect()
}

fn is_voter(configuration: &Configuration, id: &str) -> bool {
    voter_ids(configuration).iter().any(|v| v == id)
}

/// Hands leadership around `cluster` (made of "x1" and "x2") until its
/// term reaches `target`; returns the term reached.
async fn raise_term(cluster: &TestCluster<KvTestFsm>, target: u64) -> Result<u64, String> {
    let deadline = Instant::now() + ELECTION;
    loop {
        let leader = ["x1", "x2"].into_iter().find(|id| cluster.raft(id).state() == RaftState::Leader);
        if let Some(leader) = leader {
            let term = cluster.raft(leader).metrics().borrow().term;
            if term >= target {
                return Ok(term);
            }
            // A failed transfer is retried on the next round.
            let _ = cluster.raft(leader).leadership_transfer().await;
        }
        if Instant::now() >= deadline {
            return Err(format!("the other cluster did not reach term {target} within {ELECTION:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops every node of `cluster`, ignoring what `shutdown` returns (a
/// removed node may answer it with an error).
async fn shut_down(cluster: &mut TestCluster<KvTestFsm>) {
    for node in cluster.nodes.values_mut() {
        if let Some(raft) = node.raft.take() {
            let _ = raft.shutdown().await;
        }
    }
}

/// One seeded run.
struct Sim {
    rng: Rng,
    net: InmemNetwork,
    /// The node configuration of this seed (with or without compaction).
    configure: fn(&mut Config),
    cluster: TestCluster<KvTestFsm>,
    clients: SimClients,
    /// The second, independent cluster of [`Fault::OtherCluster`].
    other: Option<TestCluster<KvTestFsm>>,
    /// Nodes removed from the configuration (they keep running).
    removed: Vec<String>,
    /// Numbers for fresh server ids (ids are never reused).
    next_id: u64,
    started: Instant,
    trace: Vec<String>,
    /// Client operations checked at the end.
    ops: usize,
}

impl Sim {
    async fn new(seed: u64, net: InmemNetwork, voters: usize, one_server_bootstrap: bool) -> Self {
        net.set_rpc_timeout(Duration::from_millis(200));
        // Every message takes a little virtual time, as on a real network:
        // a replication loop that never waits then still lets the clock
        // move, and the bounded waits report it.
        net.set_delay(Duration::from_micros(50), Duration::from_millis(1));
        let compaction = (seed / 2).is_multiple_of(2);
        let configure = if compaction { compacting } else { not_compacting };
        let cluster = if one_server_bootstrap {
            TestCluster::<KvTestFsm>::with_one_bootstrap(voters, net.clone(), configure).await
        } else {
            TestCluster::<KvTestFsm>::with_config(voters, net.clone(), configure).await
        };
        let mut sim = Sim {
            rng: Rng::new(seed),
            net,
            configure,
            cluster,
            clients: SimClients::spawn(CLIENTS, seed, CLIENT_THINK),
            other: None,
            removed: Vec::new(),
            next_id: voters as u64 + 1,
            started: Instant::now(),
            trace: Vec::new(),
            ops: 0,
        };
        let how = if one_server_bootstrap { "bootstrapped on n1 only" } else { "bootstrapped on every node" };
        let compaction = if compaction { "with frequent snapshots" } else { "without snapshots" };
        sim.note(format!("{voters} voters, {how}, {compaction}"));
        sim.publish();
        sim
    }

    fn note(&mut self, what: String) {
        let at = self.started.elapsed();
        self.trace.push(format!("{:>6}ms {what}", at.as_millis()));
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id - 1)
    }

    /// Clients talk to every running node that was not removed.
    fn publish(&self) {
        let members: Vec<String> =
            self.cluster.nodes.keys().filter(|id| !self.removed.contains(id)).cloned().collect();
        self.clients.publish(&self.cluster, &members);
    }

    fn metrics(&self, id: &str) -> Option<Metrics> {
        self.cluster.nodes.get(id)?.raft.as_ref().map(|r| r.metrics().borrow().clone())
    }

    fn describe(&self, id: &str) -> String {
        match self.metrics(id) {
            Some(m) => format!(
                "{id} is {:?} at term {}, applied {}, last log {}, {} servers configured",
                m.state,
                m.term,
                m.applied_index,
                m.last_log_index,
                m.configuration.servers.len()
            ),
            None => format!("{id} is stopped"),
        }
    }

    /// The only leader among the members, if no running voter has a higher
    /// term and a majority of its configuration's voters (itself included)
    /// follow it in its term. A lagging follower does not hide the leader;
    /// the catch-up checks report it instead.
    fn agreed_leader(&self) -> Option<(String, Metrics)> {
        let mut leaders = self
            .cluster
            .nodes
            .keys()
            .filter(|id| !self.removed.contains(id))
            .filter_map(|id| self.metrics(id).map(|m| (id.clone(), m)))
            .filter(|(_, m)| m.state == RaftState::Leader);
        let (leader, lm) = leaders.next()?;
        if leaders.next().is_some() {
            return None;
        }
        let voters = voter_ids(&lm.configuration);
        let running: Vec<Metrics> = voters.iter().filter_map(|v| self.metrics(v)).collect();
        let followers = running
            .iter()
            .filter(|m| {
                m.term == lm.term && m.current_leader.as_ref().is_some_and(|(id, _)| id.as_str() == leader)
            })
            .count();
        let highest = running.iter().all(|m| m.term <= lm.term);
        (highest && followers > voters.len() / 2).then_some((leader, lm))
    }

    async fn leader(&self) -> Result<(String, Metrics), String> {
        let deadline = Instant::now() + ELECTION;
        loop {
            if let Some(found) = self.agreed_leader() {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = self.cluster.running().iter().map(|id| self.describe(id)).collect();
                return Err(format!("no agreed leader within {ELECTION:?} ({})", states.join("; ")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn raft(&self, id: &str) -> Raft<KvTestFsm> {
        self.cluster.raft(id).clone()
    }

    /// The leader's latest configuration.
    async fn configuration(&self) -> Result<(String, Configuration), String> {
        let (leader, _) = self.leader().await?;
        let (configuration, _) =
            self.raft(&leader).get_configuration().await.map_err(|e| format!("get_configuration: {e}"))?;
        Ok((leader, configuration))
    }

    /// Commits a barrier (retrying across a leader change) and returns its index.
    async fn barrier(&self) -> Result<u64, String> {
        let mut last_error = String::new();
        for _ in 0..3 {
            let (leader, _) = self.leader().await?;
            match self.raft(&leader).barrier(Duration::from_secs(3)).await {
                Ok(index) => return Ok(index),
                Err(e) => last_error = format!("barrier on {leader}: {e}"),
            }
        }
        Err(format!("no barrier committed: {last_error}"))
    }

    /// Every node in `ids` applies `index` within `timeout`.
    async fn wait_caught_up(&self, ids: &[String], index: u64, timeout: Duration) -> Step {
        let deadline = Instant::now() + timeout;
        for id in ids {
            let Some(raft) = self.cluster.nodes.get(id).and_then(|n| n.raft.clone()) else {
                return Err(format!("member {id} is not running (never answered)"));
            };
            match tokio::time::timeout_at(deadline, raft.wait_applied(index)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("{id} failed waiting for index {index}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "{id} did not apply index {index} within {timeout:?}: {}",
                        self.describe(id)
                    ))
                }
            }
        }
        Ok(())
    }

    /// A fresh barrier commits and `id` applies it within [`CATCH_UP`].
    async fn expect_catch_up(&self, id: &str, what: &str) -> Step {
        let index = self.barrier().await?;
        self.wait_caught_up(&[id.to_string()], index, CATCH_UP)
            .await
            .map_err(|e| format!("{id} {what} never caught up: {e}"))
    }

    fn max_term(&self, ids: &[String]) -> u64 {
        ids.iter().filter_map(|id| self.metrics(id)).map(|m| m.term).max().unwrap_or(0)
    }

    /// State machine safety: no two nodes applied different commands at one
    /// index (a node restored from a snapshot only records what followed).
    fn check_applied_agree(&self) -> Step {
        let mut seen: HashMap<u64, (String, bytes::Bytes)> = HashMap::new();
        for id in self.cluster.nodes.keys() {
            for (index, data) in self.cluster.applied(id) {
                match seen.get(&index) {
                    Some((other, d)) if *d != data => {
                        return Err(format!("{id} and {other} applied different commands at index {index}"));
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(index, (id.clone(), data));
                    }
                }
            }
        }
        Ok(())
    }

    /// The faults the cluster's current shape allows.
    async fn eligible(&self, allowed: &[Fault]) -> Result<Vec<Fault>, String> {
        let (_, configuration) = self.configuration().await?;
        let voters = voter_ids(&configuration);
        let all_running = voters.iter().all(|v| self.metrics(v).is_some());
        let ok = |f: &Fault| match f {
            Fault::EmptyDisk | Fault::TornTail | Fault::LostStableStore | Fault::Restart => {
                all_running && voters.len() >= MIN_VOTERS
            }
            Fault::SilentVoter => true,
            Fault::LateVoter => voters.len() < MAX_VOTERS,
            Fault::RemoveFollower | Fault::RemoveLeader => voters.len() > MIN_VOTERS,
            Fault::OtherCluster => self.other.is_none(),
        };
        Ok(allowed.iter().copied().filter(ok).collect())
    }

    async fn inject(&mut self, fault: Fault) -> Step {
        match fault {
            Fault::EmptyDisk => self.empty_disk().await,
            Fault::TornTail => self.torn_tail().await,
            Fault::LostStableStore => self.lost_stable_store().await,
            Fault::SilentVoter => self.silent_voter().await,
            Fault::LateVoter => self.late_voter().await,
            Fault::RemoveFollower => self.remove_follower().await,
            Fault::RemoveLeader => self.remove_leader().await,
            Fault::OtherCluster => self.other_cluster().await,
            Fault::Restart => self.restart().await,
        }
    }

    /// The startup check of a one-server bootstrap: a leader is elected and
    /// a write commits everywhere.
    async fn expect_bootstrapped(&mut self) -> Step {
        let (leader, _) =
            self.leader().await.map_err(|e| format!("one-server bootstrap elected no leader: {e}"))?;
        let index = self.barrier().await?;
        let all: Vec<String> = self.cluster.nodes.keys().cloned().collect();
        self.wait_caught_up(&all, index, CATCH_UP).await?;
        self.note(format!("bootstrap: {leader} leads, barrier {index} applied everywhere"));
        Ok(())
    }

    /// Picks a follower for a disk fault, after making sure every other
    /// voter is running and holds everything committed (see the module docs).
    async fn disk_fault_victim(&mut self) -> Result<String, String> {
        let (leader, configuration) = self.configuration().await?;
        let followers: Vec<String> = voter_ids(&configuration).into_iter().filter(|v| *v != leader).collect();
        let victim = self.rng.pick(&followers).cloned().ok_or("no follower")?;
        let index = self.barrier().await?;
        let others: Vec<String> = voter_ids(&configuration).into_iter().filter(|v| *v != victim).collect();
        self.wait_caught_up(&others, index, CATCH_UP)
            .await
            .map_err(|e| format!("precondition (the other voters hold everything committed): {e}"))?;
        Ok(victim)
    }

    async fn stop(&mut self, id: &str) {
        self.cluster.stop(id).await;
        self.publish();
    }

    async fn start(&mut self, id: &str) {
        self.cluster.start(id).await;
        self.publish();
    }

    async fn pause(&mut self, max_ms: u64) {
        let ms = self.rng.below(max_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// A follower's disk is replaced: it restarts empty under its old id
    /// and must catch up (issue 13 item 1).
    async fn empty_disk(&mut self) -> Step {
        let victim = self.disk_fault_victim().await?;
        self.stop(&victim).await;
        self.cluster.wipe_stores(&victim);
        self.pause(200).await;
        self.start(&victim).await;
        self.note(format!("{victim} restarted with an empty disk"));
        self.expect_catch_up(&victim, "restarted with an empty disk").await
    }

    /// A follower restarts with its last entry or two cut off (a torn
    /// write) and must catch up.
    async fn torn_tail(&mut self) -> Step {
        let victim = self.disk_fault_victim().await?;
        self.stop(&victim).await;
        let count = 1 + self.rng.below(2);
        let cut = self.cluster.cut_log_tail(&victim, count).await;
        self.pause(200).await;
        self.start(&victim).await;
        match cut {
            Some((from, to)) => self.note(format!("{victim} restarted with entries {from}..={to} cut off")),
            None => self.note(format!("{victim} restarted (nothing past its snapshot to cut)")),
        }
        self.expect_catch_up(&victim, "restarted with a torn tail").await
    }

    /// A follower loses its stable store but keeps its log: it must refuse
    /// to start (issue 13 item 6). The operator then replaces its disk and
    /// it catches up like an empty-disk restart.
    async fn lost_stable_store(&mut self) -> Step {
        let victim = self.disk_fault_victim().await?;
        self.stop(&victim).await;
        self.cluster.lose_stable_store(&victim).await;
        match self.cluster.try_start(&victim).await {
            Ok(()) => {
                let m = self.metrics(&victim).ok_or("started node has no metrics")?;
                Err(format!(
                    "{victim} started although its stable store was lost under a non-empty log: it came back at \
                     term {} under a log ending at index {} of term {}; Raft::new should refuse",
                    m.term, m.last_log_index, m.last_log_term
                ))
            }
            Err(e) => {
                self.note(format!("{victim} with a lost stable store refused to start: {e}"));
                self.cluster.wipe_stores(&victim);
                self.start(&victim).await;
                self.note(format!("{victim} restarted with an empty disk"));
                self.expect_catch_up(&victim, "restarted with an empty disk after losing its stable store")
                    .await
            }
        }
    }

    /// `add_voter` of an address nothing serves: it must not become a voter,
    /// writes keep committing, and it can be removed afterwards (items 2, 3).
    async fn silent_voter(&mut self) -> Step {
        let ghost = self.fresh_id("ghost");
        let (leader, _) = self.leader().await?;
        let raft = self.raft(&leader);
        let (server, address) = (ServerId::from(ghost.as_str()), ServerAddress::from(ghost.as_str()));
        let call = tokio::spawn(async move { raft.add_voter(server, address, 0, CHANGE_TIMEOUT).await });
        // Writes commit while the change is pending (or after it returned).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let during = self.barrier().await.map_err(|e| format!("writes stopped while adding {ghost}: {e}"))?;
        let result = call.await.map_err(|e| format!("add_voter task: {e}"))?;
        self.note(format!(
            "add_voter({ghost}, never answers) on {leader}: {result:?}; barrier {during} meanwhile"
        ));
        let (leader, configuration) = self.configuration().await?;
        if is_voter(&configuration, &ghost) {
            return Err(format!(
                "add_voter of {ghost}, which never answered, returned {result:?} and made it a voter ({} voters now)",
                voter_ids(&configuration).len()
            ));
        }
        let index =
            self.barrier().await.map_err(|e| format!("writes stopped after add_voter({ghost}): {e}"))?;
        self.note(format!("barrier {index} committed with {ghost} pending"));
        if member_ids(&configuration).contains(&ghost) {
            let removed = self.raft(&leader).remove_server(ghost.as_str().into(), 0, CHANGE_TIMEOUT).await;
            self.note(format!("remove_server({ghost}): {removed:?}"));
            removed.map_err(|e| format!("{ghost} could not be removed after its add_voter ended: {e}"))?;
        }
        Ok(())
    }

    /// `add_voter` of a server that answers late: started after the call, or
    /// isolated then healed. It is no voter before it answered; afterwards
    /// the call succeeds and it catches up.
    async fn late_voter(&mut self) -> Step {
        let id = self.fresh_id("n");
        let isolated = self.rng.below(2) == 0;
        if isolated {
            self.cluster.add_node(&id).await;
            self.net.isolate(&id.as_str().into());
        } else {
            self.cluster.insert_stopped_node(&id);
        }
        let how = if isolated { "isolated" } else { "not started yet" };
        let (leader, _) = self.leader().await?;
        let raft = self.raft(&leader);
        let (server, address) = (ServerId::from(id.as_str()), ServerAddress::from(id.as_str()));
        let call = tokio::spawn(async move { raft.add_voter(server, address, 0, LATE_ADD_TIMEOUT).await });
        self.note(format!("add_voter({id}, {how}) on {leader}"));
        tokio::time::sleep(Duration::from_millis(100 + self.rng.below(400))).await;
        let (_, configuration) = self.configuration().await?;
        if is_voter(&configuration, &id) {
            return Err(format!("{id} was made a voter before it ever answered ({how})"));
        }
        if isolated {
            self.net.heal();
        } else {
            self.start(&id).await;
        }
        self.publish();
        self.note(format!("{id} answers now"));
        let result = call.await.map_err(|e| format!("add_voter task: {e}"))?;
        self.note(format!("add_voter({id}) returned {result:?}"));
        result.map_err(|e| format!("add_voter of {id}, which answered late, failed: {e}"))?;
        let (_, configuration) = self.configuration().await?;
        if !is_voter(&configuration, &id) {
            return Err(format!("add_voter of {id} succeeded but it is no voter"));
        }
        self.expect_catch_up(&id, "added as a voter after answering late").await
    }

    /// A follower is removed while clients write.
    async fn remove_follower(&mut self) -> Step {
        let (leader, configuration) = self.configuration().await?;
        let followers: Vec<String> = voter_ids(&configuration).into_iter().filter(|v| *v != leader).collect();
        let victim = self.rng.pick(&followers).cloned().ok_or("no follower")?;
        self.remove(&leader, &victim).await
    }

    /// The leader removes itself while clients write.
    async fn remove_leader(&mut self) -> Step {
        let (leader, _) = self.leader().await?;
        self.remove(&leader, &leader.clone()).await
    }

    /// Removes `victim` through `leader`, then checks that the rest carry on,
    /// that the removed node (left running) does not drive their term up
    /// over a quiet period, and that it reports `Removed` (item 7).
    async fn remove(&mut self, leader: &str, victim: &str) -> Step {
        let result = self.raft(leader).remove_server(victim.into(), 0, CHANGE_TIMEOUT).await;
        self.note(format!("remove_server({victim}) on {leader}: {result:?}"));
        result.map_err(|e| format!("remove_server({victim}) failed: {e}"))?;
        self.removed.push(victim.to_string());
        self.publish();
        let (new_leader, configuration) =
            self.configuration().await.map_err(|e| format!("after removing {victim}: {e}"))?;
        if member_ids(&configuration).iter().any(|m| m == victim) {
            return Err(format!("{victim} is still in the configuration after its removal"));
        }
        let index = self.barrier().await.map_err(|e| format!("after removing {victim}: {e}"))?;
        self.note(format!("{new_leader} leads without {victim}, barrier {index}"));

        let members = member_ids(&configuration);
        let before = self.max_term(&members);
        tokio::time::sleep(QUIET).await;
        let after = self.max_term(&members);
        let mut problems = Vec::new();
        if after > before {
            problems.push(format!(
                "the remaining members' term rose from {before} to {after} in a quiet {QUIET:?} after removing \
                 {victim} ({})",
                self.describe(victim)
            ));
        }
        let deadline = Instant::now() + REMOVED_NOTICE;
        let raft = self.raft(victim);
        while !reports_removed(&raft) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !reports_removed(&raft) {
            problems.push(format!(
                "the removed node {victim} does not report Removed {REMOVED_NOTICE:?} after the quiet period: {}",
                self.describe(victim)
            ));
        }
        if problems.is_empty() {
            self.note(format!("{victim} is Removed; members stayed at term {after}"));
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// A second cluster starts on the same network with a configuration
    /// naming one of this cluster's addresses: this cluster's term must not
    /// rise because of it (item 5). Then the other cluster is stopped (the
    /// operator fixes its configuration): a node that later restarts with
    /// an empty disk has no cluster id yet and would adopt whichever leader
    /// contacts it first, the other cluster's included (see README,
    /// "Cluster identity").
    async fn other_cluster(&mut self) -> Step {
        let (_, configuration) = self.configuration().await?;
        let members = member_ids(&configuration);
        let victim = self.rng.pick(&members).cloned().ok_or("no member")?;
        let victim_address = ServerAddress::from(victim.as_str());
        let other_configuration = Configuration::new(vec![
            Server::voter("x1", "x1"),
            Server::voter("x2", "x2"),
            Server::voter("x3", victim.as_str()),
        ]);
        // Cut the other cluster off from the victim until its term is
        // above this cluster's, as a long-running cluster's would be.
        for x in ["x1", "x2"] {
            self.net.cut(&x.into(), &victim_address);
            self.net.cut(&victim_address, &x.into());
        }
        let other = TestCluster::<KvTestFsm>::with_configuration(
            self.net.clone(),
            self.configure,
            &["x1", "x2"],
            other_configuration,
        )
        .await;
        let target = self.max_term(&members) + 1 + self.rng.below(3);
        // If the other cluster cannot raise its term (it elects no leader of
        // its own), its candidates still knock on the victim's door.
        let other_term = match raise_term(&other, target).await {
            Ok(term) => format!("at term {term}"),
            Err(e) => e,
        };
        self.other = Some(other);
        let before = self.max_term(&members);
        self.net.heal();
        self.note(format!(
            "another cluster x1, x2 ({other_term}) names x3 at {victim}'s address (term here {before})"
        ));
        tokio::time::sleep(QUIET + QUIET / 2).await;
        let after = self.max_term(&members);
        let other_terms: Vec<u64> = ["x1", "x2"]
            .iter()
            .filter_map(|id| self.other.as_ref().map(|o| o.raft(id).metrics().borrow().term))
            .collect();
        if after > before {
            return Err(format!(
                "another cluster naming {victim}'s address drove this cluster's term from {before} to {after} \
                 (other cluster's terms {other_terms:?}; {})",
                self.describe(&victim)
            ));
        }
        self.note(format!("term here stayed at {after}; other cluster's terms {other_terms:?}"));
        if let Some(other) = self.other.as_mut() {
            shut_down(other).await;
        }
        for x in ["x1", "x2"] {
            self.net.disconnect(&x.into());
        }
        Ok(())
    }

    /// A plain crash-restart of any voter (the leader included).
    async fn restart(&mut self) -> Step {
        let (_, configuration) = self.configuration().await?;
        let voters = voter_ids(&configuration);
        let victim = self.rng.pick(&voters).cloned().ok_or("no voter")?;
        self.stop(&victim).await;
        self.pause(200).await;
        self.start(&victim).await;
        self.note(format!("{victim} crash-restarted"));
        Ok(())
    }

    /// Liveness after healing, then the history check.
    async fn finish(&mut self) -> Step {
        self.net.heal();
        let (leader, configuration) =
            self.configuration().await.map_err(|e| format!("after healing: {e}"))?;
        let index = self.barrier().await.map_err(|e| format!("after healing: {e}"))?;
        let members = member_ids(&configuration);
        self.wait_caught_up(&members, index, Duration::from_secs(10))
            .await
            .map_err(|e| format!("after healing, not every member caught up: {e}"))?;
        self.note(format!("healed: {leader} leads, every member applied {index}"));
        self.check_applied_agree()?;
        let history = self.clients.finish().await?;
        shut_down(&mut self.cluster).await;
        if let Some(mut other) = self.other.take() {
            shut_down(&mut other).await;
        }
        let result = check_kv(&history);
        if !result.is_ok() {
            return Err(format!("history is not linearizable: {result}"));
        }
        self.ops = history.len();
        Ok(())
    }
}

/// What one seed did: operations checked and faults injected.
struct Outcome {
    ops: usize,
    faults: Vec<Fault>,
    virtual_time: Duration,
    trace: Vec<String>,
}

/// Runs one seed; on failure, the message names the seed, the failed check
/// and the fault trace.
async fn run_seed(seed: u64, plan: &Plan, net: InmemNetwork) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let one_server_bootstrap = plan.one_server_bootstrap.unwrap_or(seed % 5 == 4);
    // The first fault goes round-robin over the kinds so every kind runs
    // within a few seeds; removals need a fourth voter to start with.
    let first = plan.faults.get(seed as usize % plan.faults.len().max(1)).copied();
    let voters = match first {
        Some(Fault::RemoveFollower | Fault::RemoveLeader) => 4,
        _ => 3 + (seed % 2) as usize,
    };
    let mut sim = Sim::new(seed, net, voters, one_server_bootstrap).await;
    let mut faults = Vec::new();
    let mut result = if one_server_bootstrap { sim.expect_bootstrapped().await } else { Ok(()) };
    for round in 0..FAULTS_PER_SEED {
        if result.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
        let eligible = match sim.eligible(&plan.faults).await {
            Ok(e) => e,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let fault = match first {
            Some(f) if round == 0 && eligible.contains(&f) => f,
            _ => match rng.pick(&eligible) {
                Some(f) => *f,
                None => break,
            },
        };
        faults.push(fault);
        result = sim.inject(fault).await.map_err(|e| format!("{}: {e}", fault.name()));
        if result.is_ok() {
            result = sim.check_applied_agree();
        }
    }
    if result.is_ok() {
        result = sim.finish().await;
    }
    match result {
        Ok(()) => Ok(Outcome { ops: sim.ops, faults, virtual_time: sim.started.elapsed(), trace: sim.trace }),
        Err(e) => Err(format!("seed {seed}: {e}\n  fault trace:\n    {}", sim.trace.join("\n    "))),
    }
}

/// Runs one seed on a current-thread runtime with a paused clock, under
/// the real-time watchdog of [`raft_tests::run_paused_with_watchdog`]
/// (which catches busy loops that keep virtual time from advancing).
fn run_in_paused_runtime(seed: u64, plan: &Plan) -> Result<Outcome, String> {
    let net = InmemNetwork::with_seed(seed);
    raft_tests::run_paused_with_watchdog(seed, &net, STALL_LIMIT, run_seed(seed, plan, net.clone()))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn lifecycle_simulation_many_seeds() {
    let seeds = env_u64("LIFECYCLE_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let plan = Plan::from_env();
    let threads = 2;
    let failures = Arc::new(Mutex::new(Vec::new()));
    let total_ops = Arc::new(AtomicU64::new(0));
    let injected = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (failures, total_ops, injected, plan) =
                (failures.clone(), total_ops.clone(), injected.clone(), plan.clone());
            s.spawn(move || {
                for seed in (0..seeds).filter(|x| x % threads == t) {
                    match run_in_paused_runtime(seed, &plan) {
                        Ok(outcome) => {
                            total_ops.fetch_add(outcome.ops as u64, Ordering::Relaxed);
                            injected.lock().expect("lock").extend(outcome.faults);
                        }
                        Err(e) => failures.lock().expect("lock").push((seed, e)),
                    }
                }
            });
        }
    });
    let mut failures = failures.lock().expect("lock").clone();
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed; replay one with LIFECYCLE_SIM_SEED=<seed> cargo test -p raft-tests --test \
         lifecycle_simulation replay\n\n{}",
        failures.len(),
        failures.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>().join("\n\n")
    );
    let ops = total_ops.load(Ordering::Relaxed);
    assert!(ops > seeds * 20, "clients completed too few operations ({ops})");
    let injected = injected.lock().expect("lock");
    if seeds >= 2 * ALL_FAULTS.len() as u64 {
        for fault in &plan.faults {
            assert!(injected.contains(fault), "no seed injected {}", fault.name());
        }
    }
    eprintln!("{seeds} lifecycle simulation seeds passed, {ops} client operations checked");
}

#[test]
fn replay() {
    if std::env::var("RUST_LOG").is_ok() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let seed = env_u64("LIFECYCLE_SIM_SEED").unwrap_or(0);
    match run_in_paused_runtime(seed, &Plan::from_env()) {
        Ok(outcome) => eprintln!(
            "seed {seed} passed: {} operations, faults {:?}, {:?} of virtual time\n  fault trace:\n    {}",
            outcome.ops,
            outcome.faults,
            outcome.virtual_time,
            outcome.trace.join("\n    ")
        ),
        Err(e) => panic!("{e}"),
    }
}
