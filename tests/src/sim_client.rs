//! Pieces shared by the runtime-level simulations: the seeded generator,
//! key-value clients that write, compare-and-swap and read linearizably
//! against whichever nodes are published to them, and the recorded history
//! those clients produce for [`check_kv`](raft::testing::linearizability::check_kv).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::testing::linearizability::{KvInput, KvOperation, KvOutput, Operation};
use raft::{Error, Raft};
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
        let shared = Arc::new(ClientShared::default());
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
        if choice < 4 {
            match tokio::time::timeout(OP_TIMEOUT, raft.linearizable_read()).await {
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
            let value = format!("c{client}-{n}");
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
            match raft.apply(cmd.encode(), OP_TIMEOUT).await {
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
