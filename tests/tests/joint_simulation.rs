//! Seeded runs of joint membership changes through the public API
//! ([`Raft::change_membership`], Raft paper §6): on a lossy, delayed
//! in-memory network, with key-value clients writing, swapping and reading
//! linearizably all along, a cluster replaces one or two voters at a time
//! (the leader included, by chance; a leaving voter is removed, or now and
//! then demoted), and in about half the rounds the
//! leader crashes mid-change and restarts. A removed server is stopped
//! (with `JOINT_SIM_READD=1` it gets a new, empty disk and may be added
//! again under the same id in a later round).
//! Checked: every change without a crash succeeds, after every round the
//! cluster settles in a plain (not joint) committed configuration, servers
//! removed learn it (crash or not), the final configuration is the same on
//! every member, each member applies the final barrier, and the clients'
//! history is linearizable.
//!
//! Bugs this simulation found, each now checked in every round (the last
//! one with `JOINT_SIM_READD=1`):
//! - a server removed by a joint change that never learned it (its log
//!   held C_new, every word of the commit was lost, and being no voter of
//!   its latest configuration it never campaigned): rule 4 of
//!   `raft/src/core/removal.rs`;
//! - after a leader crash or a hand-off by a leaving leader, a removed
//!   server whose log lacked its removal campaigned with a term above the
//!   new leader's and ignored that leader's lower-term "removed" answer, or
//!   asked only servers of its old configuration, none of them leading: it
//!   campaigned alone forever. Answers now carry a proof the server checks
//!   against its own log whatever the term, and followers hearing from a
//!   live leader answer too (rule 3);
//! - a server removed, wiped and added again under the same id, catching up
//!   from an empty log, took its old removal (committed, before the entry
//!   adding it back) for the last word and stopped: the change ended with
//!   `CatchUpTimeout`, or the server never applied the final barrier.
//!   Removal rule 1 now fires only on the leader's word (heartbeats; a
//!   member still missing the latest configuration gets no commit index in
//!   them), and a leader still replicating a removal to a server that comes
//!   back wiped stops instead of telling the new server it was removed.
//!
//! Known gaps, both with `JOINT_SIM_READD=1` only (hence re-adding is not
//! the default).
//! (1) Seed 43 failed 39 runs in 100 on the code of the merge of issue 19's
//! leases (a member never applies the final barrier): a removed server
//! wiped and restarted grants any vote (an empty log is behind no one), so
//! a member whose log lacks the change (a demoted voter, which no removal
//! rule stops) can win an election in its stale configuration with the
//! wiped servers' votes and disturb the real cluster (the conflicting
//! entries are refused, so nothing committed by the real cluster is lost,
//! but the cluster stalls; the stale leader could also commit its own
//! clients' writes with the wiped servers' acknowledgements alone, writes
//! the real cluster then overwrites: not seen yet, but the same hole). Raft
//! assumes a voter's log is durable; reusing an id after a wipe is safe
//! only once no member's log still counts it. Tried (branch
//! `j4-blank-votes`): a server knowing no configuration refuses any candidate whose
//! log goes beyond a bootstrap entry (or any candidate at all). Seed 43
//! then passed 100 runs in 100 (each), but one-server bootstraps
//! (HashiCorp's semantics, issue 13 item 8: the other voters start blank
//! and must vote until a leader reaches them) lost liveness in the core
//! simulation (`one_server_bootstrap_seeds` 13 of 200, `simulation_seeds`
//! 10 of 1000, `lost_disk_seeds` 3 of 300): blank voters are needed there
//! for as long as no leader has reached them, whatever the candidate's log
//! holds. Closing the gap needs a way to tell a blank server waiting for a
//! one-server bootstrap from one wiped after its removal (an operator flag,
//! or ids never reused).
//! (2) Seed 195 fails about 7 runs in 40 (`CatchUpTimeout` of a re-added
//! server): the server is wiped and restarted while the leader still
//! replicates its removal to it, from index 1 (its probe for the old
//! server had gone back to the start, it seems: the log of a failing run
//! shows the wiped server committing entries 1 to 42 at once); the blank
//! server accepts the whole log, then the final
//! heartbeat, and stops as removed before the entry adding it back reaches
//! it. A leader cannot tell it from the old server, which needs that log to
//! confirm its removal (rule 3).
//!
//! Measured again in session 9 (2026-11-26, after the published-lease
//! change): with `JOINT_SIM_READD=1`, seeds 1-200 passed in one run, seed
//! 43 passed 30 runs of 30, and seed 195 failed 1 run of 30 (gap 2:
//! `CatchUpTimeout` of the re-added n2, match index 0).
//!
//! `JOINT_SIM_SEEDS=N` runs N seeds (default 6); `JOINT_SIM_SEED=S` runs
//! seed S only; `JOINT_SIM_READD=1` wipes removed servers and adds them
//! again (`JOINT_SIM_STRICT=1`, its former name, does the same).
//!
//! [`Raft::change_membership`]: raft::Raft::change_membership

use std::collections::BTreeSet;
use std::time::Duration;

use raft::testing::linearizability::check_kv;
use raft::transport::inmem::InmemNetwork;
use raft::{ConfChange, Configuration, RaftState, Suffrage};
use raft_tests::sim_client::{Rng, SimClients};
use raft_tests::{KvTestFsm, TestCluster};

/// Every server a run may use: with `JOINT_SIM_READD=1` the first seven, a
/// removed one being wiped and added again later; else all of them, a
/// removed server being stopped and never added again.
const POOL: [&str; 11] = ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11"];
/// Membership rounds per seed.
const ROUNDS: usize = 4;
/// Timeout of one `change_membership` call.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the cluster settling after a round (virtual time).
const SETTLE: Duration = Duration::from_secs(20);
/// Real-time bound on one seed.
const STALL_LIMIT: Duration = Duration::from_secs(60);

type Cluster = TestCluster<KvTestFsm>;

fn voters(c: &Configuration) -> Vec<String> {
    c.servers.iter().filter(|s| s.suffrage == Suffrage::Voter).map(|s| s.id.to_string()).collect()
}

fn members(c: &Configuration) -> BTreeSet<String> {
    c.servers.iter().map(|s| s.id.to_string()).collect()
}

/// Draws `k` distinct items of `from`.
fn draw(rng: &mut Rng, from: &[String], k: usize) -> Vec<String> {
    let mut left = from.to_vec();
    let mut out = Vec::new();
    while out.len() < k && !left.is_empty() {
        let i = rng.below(left.len() as u64) as usize;
        out.push(left.swap_remove(i));
    }
    out
}

/// Waits until a running node leads with a committed, plain latest
/// configuration; returns the leader and that configuration.
async fn settle(c: &Cluster) -> Result<(String, Configuration), String> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        for leader in c.leaders() {
            let raft = c.raft(&leader);
            if let Ok((conf, index)) = raft.get_configuration().await {
                let committed = raft.metrics().borrow().commit_index >= index;
                // A barrier commits an entry of the leader's term: only
                // then does it accept configuration changes.
                if !conf.is_joint()
                    && committed
                    && conf.is_voter(&leader.as_str().into())
                    && raft.barrier(Duration::from_millis(500)).await.is_ok()
                {
                    return Ok((leader, conf));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let states: Vec<String> = c
                .running()
                .iter()
                .map(|id| {
                    let m = c.raft(id).metrics().borrow().clone();
                    format!(
                        "{id}: {:?} term {} commit {} conf {:?}",
                        m.state, m.term, m.commit_index, m.configuration
                    )
                })
                .collect();
            return Err(format!(
                "no leader with a committed plain configuration within {SETTLE:?}: {states:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run_seed(seed: u64, net: InmemNetwork) -> Result<String, String> {
    let mut rng = Rng::new(seed);
    net.set_delay(Duration::from_millis(1), Duration::from_millis(1 + rng.below(5)));
    net.set_drop_rate(rng.below(3) as f64 / 100.0);
    let mut c = Cluster::with_network(3, net.clone()).await;
    let pool: Vec<String> =
        POOL.iter().take(if fresh() { POOL.len() } else { 7 }).map(|s| s.to_string()).collect();
    // Servers that were members at some point.
    let mut used: BTreeSet<String> = pool[..3].iter().cloned().collect();
    let mut clients = SimClients::spawn(3, seed, Duration::from_millis(5));
    clients.publish(&c, &c.running());
    let mut trace = Vec::new();
    for round in 0..ROUNDS {
        let (leader, conf) = settle(&c).await.map_err(|e| format!("round {round}: {e}\n{trace:#?}"))?;
        let current = voters(&conf);
        let spare: Vec<String> = pool
            .iter()
            .filter(|id| !members(&conf).contains(*id) && (!fresh() || !used.contains(*id)))
            .cloned()
            .collect();
        let k = (1 + rng.below(2) as usize).min(spare.len());
        if k == 0 {
            // Every server of the pool is a member (demoted ones stay):
            // nothing to swap in this round.
            trace.push(format!("round {round}: no spare server"));
            continue;
        }
        let leaving = draw(&mut rng, &current, k);
        let arriving = draw(&mut rng, &spare, k);
        for id in &arriving {
            if !c.nodes.contains_key(id) {
                c.add_node(id).await;
            }
        }
        let mut changes: Vec<ConfChange> =
            arriving.iter().map(|id| ConfChange::AddVoter(id.as_str().into(), id.as_str().into())).collect();
        // A leaving voter is removed, or (one time in three) demoted to a
        // non-voter that stays a member.
        let demoted: Vec<String> = leaving.iter().filter(|_| rng.below(3) == 0).cloned().collect();
        changes.extend(leaving.iter().map(|id| {
            if demoted.contains(id) {
                ConfChange::Demote(id.as_str().into())
            } else {
                ConfChange::Remove(id.as_str().into())
            }
        }));
        let crash = rng.below(2) == 0;
        trace.push(format!(
            "round {round}: leader {leader}, {current:?} -> +{arriving:?} -{leaving:?} (demoted {demoted:?}), crash {crash}"
        ));
        let call = tokio::spawn({
            let raft = c.raft(&leader).clone();
            async move { raft.change_membership(changes, 0, CHANGE_TIMEOUT).await }
        });
        if crash {
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            c.stop(&leader).await;
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
            c.start(&leader).await;
        }
        let result = call.await.map_err(|e| format!("change task: {e}"))?;
        trace.push(format!("round {round}: {result:?}"));
        if !crash {
            result.map_err(|e| format!("round {round}: change without a crash failed: {e}\n{trace:#?}"))?;
        }
        let (_, conf) = settle(&c).await.map_err(|e| format!("after round {round}: {e}\n{trace:#?}"))?;
        if !crash {
            let want: BTreeSet<String> =
                current.iter().filter(|v| !leaving.contains(v)).chain(&arriving).cloned().collect();
            let got: BTreeSet<String> = voters(&conf).into_iter().collect();
            if got != want {
                return Err(format!("round {round}: voters {got:?}, expected {want:?}\n{trace:#?}"));
            }
        }
        // Servers no longer members learn they were removed, crash or not
        // (see `raft/src/core/removal.rs`: a server that missed every word
        // of its removal asks, rule 4; one whose log lacks its removal
        // campaigns and is told, rule 3, even when it raised its term above
        // the leader's after a crash or a hand-off). Then they get a new
        // disk so a later round may add them again with JOINT_SIM_READD=1
        // (else they are stopped).
        used.extend(members(&conf));
        for id in pool.iter().map(String::as_str) {
            let gone = !members(&conf).contains(id);
            let started = c.nodes.get(id).is_some_and(|n| n.raft.is_some());
            if gone && started && leaving.iter().any(|l| l == id) && !demoted.iter().any(|d| d == id) {
                let deadline = tokio::time::Instant::now() + SETTLE;
                while c.raft(id).state() != RaftState::Removed {
                    if tokio::time::Instant::now() >= deadline {
                        let m = c.raft(id).metrics().borrow().clone();
                        let what = format!(
                            "{:?} term {} commit {} last {} conf {:?} (index {})",
                            m.state,
                            m.term,
                            m.commit_index,
                            m.last_log_index,
                            m.configuration,
                            m.configuration_index
                        );
                        return Err(format!(
                            "round {round}: {id} never learned it was removed: {what}\n{trace:#?}"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if gone && started && !fresh() {
                c.restart_wiped(id).await;
            } else if gone && started && used.contains(id) {
                c.stop(id).await;
            }
        }
        let live: Vec<String> = c.running().into_iter().filter(|id| members(&conf).contains(id)).collect();
        clients.publish(&c, &live);
    }
    let (leader, conf) = settle(&c).await.map_err(|e| format!("at the end: {e}\n{trace:#?}"))?;
    let last = c.raft(&leader).barrier(SETTLE).await.map_err(|e| format!("final barrier: {e}"))?;
    for id in members(&conf) {
        let raft = c.raft(&id);
        tokio::time::timeout(SETTLE, raft.wait_applied(last))
            .await
            .map_err(|_| format!("{id} did not apply {last}"))?
            .map_err(|e| format!("{id}: {e}"))?;
        let (theirs, _) = raft.get_configuration().await.map_err(|e| format!("{id}: {e}"))?;
        if theirs != conf {
            return Err(format!("{id} holds {theirs:?}, the leader {conf:?}\n{trace:#?}"));
        }
    }
    let history = clients.finish().await?;
    let result = check_kv(&history);
    if !result.is_ok() {
        return Err(format!("history is not linearizable: {result}\n{trace:#?}"));
    }
    c.shutdown().await;
    Ok(format!("{} operations; {}", history.len(), trace.join("; ")))
}

/// Whether removed servers are stopped and never added again (the
/// default; see the module docs for `JOINT_SIM_READD=1`).
fn fresh() -> bool {
    let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    !on("JOINT_SIM_READD") && !on("JOINT_SIM_STRICT")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn s6_joint_changes_with_leader_crashes_keep_the_cluster_consistent() {
    if std::env::var("RUST_LOG").is_ok() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let seeds: Vec<u64> = match env_u64("JOINT_SIM_SEED") {
        Some(s) => vec![s],
        None => (1..=env_u64("JOINT_SIM_SEEDS").unwrap_or(6)).collect(),
    };
    let mut failures = Vec::new();
    for seed in seeds {
        let net = InmemNetwork::with_seed(seed);
        match raft_tests::run_paused_with_watchdog(seed, &net, STALL_LIMIT, run_seed(seed, net.clone())) {
            Ok(_) => {}
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
