//! Runtime-level randomized simulation: real `Raft` nodes on the in-memory
//! network under tokio's paused clock, with seeded faults (isolation,
//! partitions, message drops and delays, crash-restarts from the stores)
//! while clients write, compare-and-swap and read linearizably. Every run's
//! client history is checked for linearizability; afterwards the faults heal
//! and the cluster must elect a leader and commit within a bounded time, and
//! every node must have applied the same sequence.
//!
//! Values come in mixed sizes around the AppendEntries byte budget, and on
//! every other seed the network refuses messages over a small size limit
//! (as the gRPC transport does): catch-up batches must be cut to fit, and a
//! command too large for one message must be refused at once with
//! `CommandTooLarge`, without effect.
//!
//! `RUNTIME_SIM_SEEDS=N` runs N seeds (default 50); `RUNTIME_SIM_SEED=S`
//! replays one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::testing::linearizability::{check_kv, KvInput, KvOperation, KvOutput, Operation};
use raft::transport::inmem::InmemNetwork;
use raft::{Error, Raft, Rng};
use raft_examples::kv::{KvCommand, KvMap, KvResponse};
use raft_tests::{KvTestFsm, TestCluster};

type Directory = Arc<Mutex<HashMap<String, (Raft<KvTestFsm>, KvMap)>>>;

struct Shared {
    directory: Directory,
    ids: Vec<String>,
    clock: AtomicU64,
    history: Mutex<Vec<KvOperation>>,
    stop: AtomicBool,
    /// Commands refused as too large for one message.
    too_large: AtomicU64,
    /// Writes over the byte budget that committed.
    over_budget: AtomicU64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn record(&self, op: KvOperation) {
        self.history.lock().expect("lock").push(op);
    }

    fn node(&self, id: &str) -> Option<(Raft<KvTestFsm>, KvMap)> {
        self.directory.lock().expect("lock").get(id).cloned()
    }
}

const OP_TIMEOUT: Duration = Duration::from_millis(400);

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

async fn client(shared: Arc<Shared>, client: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ (client + 1).wrapping_mul(0x1234_5678_9abc));
    let mut target = shared.ids[rng.below(shared.ids.len() as u64) as usize].clone();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let Some((raft, map)) = shared.node(&target) else {
            target = shared.ids[rng.below(shared.ids.len() as u64) as usize].clone();
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let key = format!("k{}", rng.below(4));
        n += 1;
        let choice = rng.below(10);
        let call = shared.now();
        let mut redirect = None;
        let mut failed = false;
        if choice < 4 {
            let read = tokio::time::timeout(OP_TIMEOUT, raft.linearizable_read()).await;
            match read {
                Ok(Ok(())) => {
                    let value = map.read().expect("lock").get(&key).cloned();
                    let ret = shared.now();
                    shared.record(Operation {
                        client,
                        input: KvInput::Get { key },
                        output: Some(KvOutput::Get(value)),
                        call,
                        ret,
                    });
                }
                Ok(Err(Error::NotLeader { leader })) => redirect = Some(leader),
                _ => failed = true,
            }
        } else {
            let mut value = format!("c{client}-{n}-");
            let len = value_len(&mut rng);
            while value.len() < len {
                value.push((b'a' + (value.len() % 26) as u8) as char);
            }
            let (cmd, input) = if choice < 8 {
                (KvCommand::Put { key: key.clone(), value: value.clone() }, KvInput::Put { key, value })
            } else {
                let expected = if rng.below(2) == 0 {
                    None
                } else {
                    Some(format!("c{}-{}", rng.below(4), rng.below(n + 1)))
                };
                (
                    KvCommand::Cas { key: key.clone(), expected: expected.clone(), new: value.clone() },
                    KvInput::Cas { key, expected, new: value },
                )
            };
            let encoded = cmd.encode();
            let size = encoded.len();
            let too_large = raft.max_command_size().is_some_and(|max| size > max);
            let started = tokio::time::Instant::now();
            let result = raft.apply(encoded, OP_TIMEOUT).await;
            if too_large {
                match result {
                    Err(Error::CommandTooLarge { size: s, max }) if s == size && max < MESSAGE_LIMIT => {
                        assert!(started.elapsed() < Duration::from_millis(1), "refused late");
                        shared.too_large.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    other => panic!("a command of {size} bytes was not refused as too large: {other:?}"),
                }
            }
            if size > APPEND_BUDGET && result.is_ok() {
                shared.over_budget.fetch_add(1, Ordering::Relaxed);
            }
            match result {
                Ok(applied) => {
                    let output = match applied.response {
                        KvResponse::Previous(_) => KvOutput::Put,
                        KvResponse::Cas { swapped, .. } => KvOutput::Cas(swapped),
                        KvResponse::Invalid(e) => panic!("command rejected by the FSM: {e}"),
                    };
                    let ret = shared.now();
                    shared.record(Operation { client, input, output: Some(output), call, ret });
                }
                // Refused before being appended: no effect.
                Err(Error::NotLeader { leader }) => redirect = Some(leader),
                Err(Error::EnqueueTimeout) | Err(Error::LeadershipTransferInProgress) => failed = true,
                // Outcome unknown: it may still take effect.
                Err(_) => {
                    shared.record(Operation { client, input, output: None, call, ret: u64::MAX });
                    failed = true;
                }
            }
        }
        match redirect {
            Some(Some((id, _))) => target = id.to_string(),
            Some(None) => failed = true,
            None => {}
        }
        if failed {
            target = shared.ids[rng.below(shared.ids.len() as u64) as usize].clone();
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.below(3))).await;
        }
    }
}

fn publish(cluster: &TestCluster<KvTestFsm>, directory: &Directory) {
    let mut dir = directory.lock().expect("lock");
    dir.clear();
    for (id, node) in &cluster.nodes {
        if let Some(raft) = &node.raft {
            dir.insert(id.clone(), (raft.clone(), node.fsm.kv.handle()));
        }
    }
}

/// What a seed exercised.
#[derive(Default)]
struct SeedStats {
    ops: usize,
    compacted: usize,
    too_large: u64,
    over_budget: u64,
}

async fn run_seed(seed: u64) -> Result<SeedStats, String> {
    let mut rng = Rng::new(seed);
    let n = if seed % 3 == 0 { 5 } else { 3 };
    let net = InmemNetwork::with_seed(seed);
    net.set_rpc_timeout(Duration::from_millis(200));
    let limited = seed % 2 == 0;
    if limited {
        net.set_max_message_size(Some(MESSAGE_LIMIT));
    }
    // Snapshot often so compaction and InstallSnapshot happen under faults.
    let mut cluster = TestCluster::<KvTestFsm>::with_config(n, net.clone(), |c| {
        c.snapshot_threshold = 150;
        c.trailing_logs = 20;
        c.snapshot_interval = std::time::Duration::from_millis(100);
        c.max_append_entries_bytes = APPEND_BUDGET;
    })
    .await;
    let shared = Arc::new(Shared {
        directory: Directory::default(),
        ids: cluster.nodes.keys().cloned().collect(),
        clock: AtomicU64::new(0),
        history: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        too_large: AtomicU64::new(0),
        over_budget: AtomicU64::new(0),
    });
    publish(&cluster, &shared.directory);
    let clients: Vec<_> = (0..4).map(|c| tokio::spawn(client(shared.clone(), c, seed))).collect();

    // Fault phase.
    let mut trace = Vec::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
        let ids = shared.ids.clone();
        let victim = ids[rng.below(ids.len() as u64) as usize].clone();
        match rng.below(7) {
            0 => {
                net.isolate(&victim.as_str().into());
                trace.push(format!("isolate {victim}"));
            }
            1 => {
                let split = 1 + rng.below(ids.len() as u64 - 1) as usize;
                let (a, b) = ids.split_at(split);
                let group = |g: &[String]| g.iter().map(|s| s.as_str().into()).collect::<Vec<_>>();
                net.partition(&[group(a), group(b)]);
                trace.push(format!("partition {a:?} | {b:?}"));
            }
            2 => {
                let rate = rng.below(25) as f64 / 100.0;
                net.set_drop_rate(rate);
                trace.push(format!("drop rate {rate}"));
            }
            3 => {
                let max = Duration::from_millis(rng.below(20));
                net.set_delay(Duration::ZERO, max);
                trace.push(format!("delay up to {max:?}"));
            }
            4 => {
                cluster.stop(&victim).await;
                publish(&cluster, &shared.directory);
                tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
                cluster.start(&victim).await;
                publish(&cluster, &shared.directory);
                trace.push(format!("restart {victim}"));
            }
            _ => {
                net.heal();
                net.set_drop_rate(0.0);
                trace.push("heal".to_string());
            }
        }
    }

    // Heal, stop the clients, and require progress within a bound.
    net.heal();
    net.set_drop_rate(0.0);
    net.set_delay(Duration::ZERO, Duration::ZERO);
    shared.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.map_err(|e| format!("client panicked: {e}"))?;
    }
    let fail = |what: String| format!("seed {seed} (message limit: {limited}): {what}\nfaults: {trace:?}");
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
    cluster.shutdown().await;

    let history = std::mem::take(&mut *shared.history.lock().expect("lock"));
    let ops = history.len();
    let result = check_kv(&history);
    if !result.is_ok() {
        return Err(fail(format!("history is not linearizable: {result}")));
    }
    Ok(SeedStats {
        ops,
        compacted,
        too_large: shared.too_large.load(Ordering::Relaxed),
        over_budget: shared.over_budget.load(Ordering::Relaxed),
    })
}

fn run_in_paused_runtime(seed: u64) -> Result<SeedStats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_seed(seed))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn runtime_simulation_many_seeds() {
    let seeds = env_u64("RUNTIME_SIM_SEEDS").unwrap_or(50);
    let threads = 2;
    let failures = Arc::new(Mutex::new(Vec::new()));
    let total_ops = Arc::new(AtomicU64::new(0));
    let compacted_nodes = Arc::new(AtomicU64::new(0));
    let too_large = Arc::new(AtomicU64::new(0));
    let over_budget = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..threads {
            let failures = failures.clone();
            let total_ops = total_ops.clone();
            let compacted_nodes = compacted_nodes.clone();
            let too_large = too_large.clone();
            let over_budget = over_budget.clone();
            s.spawn(move || {
                for seed in (0..seeds).filter(|x| x % threads == t) {
                    match run_in_paused_runtime(seed) {
                        Ok(stats) => {
                            total_ops.fetch_add(stats.ops as u64, Ordering::Relaxed);
                            compacted_nodes.fetch_add(stats.compacted as u64, Ordering::Relaxed);
                            too_large.fetch_add(stats.too_large, Ordering::Relaxed);
                            over_budget.fetch_add(stats.over_budget, Ordering::Relaxed);
                        }
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
    let ops = total_ops.load(Ordering::Relaxed);
    assert!(ops > seeds * 20, "clients completed too few operations ({ops})");
    let compacted = compacted_nodes.load(Ordering::Relaxed);
    assert!(compacted > 0, "no run exercised log compaction");
    let too_large = too_large.load(Ordering::Relaxed);
    let over_budget = over_budget.load(Ordering::Relaxed);
    assert!(too_large > 0, "no run refused a command over the message limit");
    assert!(over_budget > 0, "no run committed a write over the byte budget");
    eprintln!(
        "{seeds} runtime simulation seeds passed, {ops} client operations checked, {compacted} compacted logs, \
         {too_large} commands refused as too large, {over_budget} writes over the byte budget"
    );
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
