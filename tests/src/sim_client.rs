//! Pieces shared by the runtime-level simulations: the seeded generator,
//! key-value clients that write, compare-and-swap and read linearizably
//! against whichever nodes are published to them, and the recorded history
//! those clients produce for [`check_kv`](raft::testing::linearizability::check_kv).
//!
//! Reads are `linearizable_read` by default; [`SimClients::mix_reads`]
//! turns on a mix of every read path of [`Raft::read`]: stale reads (never
//! put in the history: only checked to return a value some client wrote),
//! lease reads, ReadIndex reads and the old `linearizable_read`, on whichever
//! node a client talks to (on a follower, the linearizable ones are
//! follower reads).
//!
//! Written values are short by default; [`SimClients::spawn_sized`] pads
//! them to lengths drawn by the caller (around a byte budget, over a message
//! limit): a command larger than the node's
//! [`max_command_size`](raft::Raft::max_command_size) must then be refused at
//! once with `CommandTooLarge`, without effect (a client panics otherwise).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::testing::linearizability::{KvInput, KvOperation, KvOutput, Operation};
use raft::{Error, Raft, RaftState, ReadPolicy};
use raft_examples::kv::{KvCommand, KvMap, KvResponse};
use tokio::task::JoinHandle;

use crate::{KvTestFsm, TestCluster};

/// The seeded generator the clients draw from (the workspace's one,
/// re-exported so the simulations name it from here).
pub use raft::Rng;

/// The nodes clients may talk to, by id: the node and its FSM's map (what a
/// linearizable read returns once the node applied the read point).
pub type Directory = Arc<Mutex<HashMap<String, (Raft<KvTestFsm>, KvMap)>>>;

/// How long one client operation may take before the client gives up on it.
pub const OP_TIMEOUT: Duration = Duration::from_millis(400);

/// Draws the length of a value to write.
pub type ValueLen = fn(&mut Rng) -> usize;

/// State the clients share with the simulation driving them.
#[derive(Default)]
pub struct ClientShared {
    /// The nodes clients may pick.
    pub directory: Directory,
    /// A logical clock ordering calls and returns.
    clock: AtomicU64,
    /// Every operation a client started (completed or with unknown outcome).
    history: Mutex<Vec<KvOperation>>,
    /// Set to stop the clients.
    stop: AtomicBool,
    /// Longest pause between two operations of one client, in milliseconds.
    think_ms: AtomicU64,
    /// Value lengths (short values when `None`) and the byte budget a
    /// write must exceed to count in `over_budget`.
    sizes: Option<(ValueLen, usize)>,
    /// Commands refused at once as too large for one message.
    pub too_large: AtomicU64,
    /// Writes larger than the byte budget that committed.
    pub over_budget: AtomicU64,
    /// Whether reads mix every read path ([`SimClients::mix_reads`]).
    mixed_reads: AtomicBool,
    /// Every value a client tried to write, by key (what a stale read may
    /// return).
    written: Mutex<HashMap<String, HashSet<String>>>,
    /// Completed reads by path, when mixed: stale, lease, ReadIndex through
    /// `Raft::read`, `linearizable_read`.
    pub reads_by_path: [AtomicU64; 4],
    /// Completed linearizable reads served by a node that was not the
    /// leader when the read started (follower reads).
    pub follower_reads: AtomicU64,
}

impl ClientShared {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn record(&self, op: KvOperation) {
        self.history.lock().expect("lock").push(op);
    }

    fn node(&self, id: &str) -> Option<(Raft<KvTestFsm>, KvMap)> {
        self.directory.lock().expect("lock").get(id).cloned()
    }

    fn random_target(&self, rng: &mut Rng) -> Option<String> {
        let mut ids: Vec<String> = self.directory.lock().expect("lock").keys().cloned().collect();
        ids.sort();
        rng.pick(&ids).cloned()
    }
}

/// A set of key-value clients running in the background.
pub struct SimClients {
    /// What they share with the simulation.
    pub shared: Arc<ClientShared>,
    handles: Vec<JoinHandle<()>>,
}

impl SimClients {
    /// Spawns `count` clients seeded from `seed`, each pausing up to
    /// `think` between operations (fewer operations per virtual second make
    /// long virtual runs cheaper). They talk only to the nodes
    /// [`SimClients::publish`] lists.
    pub fn spawn(count: u64, seed: u64, think: Duration) -> Self {
        Self::start(count, seed, think, None)
    }

    /// Like [`SimClients::spawn`], padding each written value to a length
    /// drawn by `value_len`; writes over `budget` bytes that commit are
    /// counted in [`ClientShared::over_budget`].
    pub fn spawn_sized(count: u64, seed: u64, think: Duration, value_len: ValueLen, budget: usize) -> Self {
        Self::start(count, seed, think, Some((value_len, budget)))
    }

    fn start(count: u64, seed: u64, think: Duration, sizes: Option<(ValueLen, usize)>) -> Self {
        let shared = Arc::new(ClientShared { sizes, ..ClientShared::default() });
        shared.think_ms.store(think.as_millis() as u64, Ordering::Relaxed);
        let handles = (0..count).map(|c| tokio::spawn(client(shared.clone(), c, seed))).collect();
        Self { shared, handles }
    }

    /// Lets clients use the running nodes of `cluster` whose ids are in
    /// `members` (and only those).
    pub fn publish(&self, cluster: &TestCluster<KvTestFsm>, members: &[String]) {
        let mut dir = self.shared.directory.lock().expect("lock");
        dir.clear();
        for (id, node) in &cluster.nodes {
            if let (Some(raft), true) = (&node.raft, members.contains(id)) {
                dir.insert(id.clone(), (raft.clone(), node.fsm.kv.handle()));
            }
        }
    }

    /// Mixes every read path into the clients' reads from now on (see the
    /// module docs).
    pub fn mix_reads(&self) {
        self.shared.mixed_reads.store(true, Ordering::SeqCst);
    }

    /// Stops the clients, waits for them, and returns the recorded history.
    pub async fn finish(&mut self) -> Result<Vec<KvOperation>, String> {
        self.shared.stop.store(true, Ordering::SeqCst);
        for handle in std::mem::take(&mut self.handles) {
            handle.await.map_err(|e| format!("client panicked: {e}"))?;
        }
        Ok(std::mem::take(&mut *self.shared.history.lock().expect("lock")))
    }
}

/// One client: random puts, compare-and-swaps and linearizable reads on four
/// keys, following leader redirects, recording every operation it started.
async fn client(shared: Arc<ClientShared>, client: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ (client + 1).wrapping_mul(0x1234_5678_9abc));
    let mut target = shared.random_target(&mut rng);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let Some((raft, map)) = target.as_deref().and_then(|t| shared.node(t)) else {
            target = shared.random_target(&mut rng);
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let key = format!("k{}", rng.below(4));
        n += 1;
        let choice = rng.below(10);
        let call = shared.now();
        let mut redirect = None;
        let mut failed = false;
        let mixed = shared.mixed_reads.load(Ordering::SeqCst);
        if choice < 4 && mixed && rng.below(4) == 0 {
            // A stale read: no check at all, so not linearizable; it must
            // still return some state the cluster had (a value written).
            let value = map.read().expect("lock").get(&key).cloned();
            if let Some(v) = &value {
                let written = shared.written.lock().expect("lock");
                assert!(
                    written.get(&key).is_some_and(|vs| vs.contains(v)),
                    "a stale read of {key} returned {v:?}, which no client wrote"
                );
            }
            shared.reads_by_path[0].fetch_add(1, Ordering::Relaxed);
        } else if choice < 4 {
            let path = if mixed { 1 + rng.below(3) as usize } else { 3 };
            let on_follower = raft.state() != RaftState::Leader;
            let read = async {
                match path {
                    1 => raft.read(ReadPolicy::Lease).await.map(|_| ()),
                    2 => raft.read(ReadPolicy::ReadIndex).await.map(|_| ()),
                    _ => raft.linearizable_read().await,
                }
            };
            match tokio::time::timeout(OP_TIMEOUT, read).await {
                Ok(Ok(())) => {
                    if mixed {
                        shared.reads_by_path[path].fetch_add(1, Ordering::Relaxed);
                        if on_follower {
                            shared.follower_reads.fetch_add(1, Ordering::Relaxed);
                        }
                    }
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
            let mut value = format!("c{client}-{n}");
            if let Some((value_len, _)) = shared.sizes {
                value.push('-');
                let len = value_len(&mut rng);
                while value.len() < len {
                    value.push((b'a' + (value.len() % 26) as u8) as char);
                }
            }
            if mixed {
                shared.written.lock().expect("lock").entry(key.clone()).or_default().insert(value.clone());
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
            let max = raft.max_command_size();
            let started = tokio::time::Instant::now();
            let result = raft.apply(encoded, OP_TIMEOUT).await;
            if max.is_some_and(|max| size > max) {
                match result {
                    Err(Error::CommandTooLarge { size: s, max: m }) if s == size && Some(m) == max => {
                        assert!(started.elapsed() < Duration::from_millis(1), "refused late");
                        shared.too_large.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    other => panic!("a command of {size} bytes was not refused as too large: {other:?}"),
                }
            }
            if shared.sizes.is_some_and(|(_, budget)| size > budget) && result.is_ok() {
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
            Some(Some((id, _))) => target = Some(id.to_string()),
            Some(None) => failed = true,
            None => {}
        }
        if failed {
            target = shared.random_target(&mut rng);
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            let think = shared.think_ms.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(rng.below(think + 1))).await;
        }
    }
}
