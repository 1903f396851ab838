//! The README's first command: three Raft nodes in one process over the
//! in-memory network. Writes keys, stops the leader, shows a new leader
//! being elected with every acknowledged write still there, then restarts
//! the old leader and shows it catch up.

use std::time::{Duration, Instant};

use raft::transport::inmem::InmemNetwork;
use raft::{Config, Configuration, Raft, RaftState, Server, ServerId};
use raft_examples::kv::{KvCommand, KvFsm, KvMap};
use raft_store_mem::{InmemSnapshotStore, InmemStore};

const TIMEOUT: Duration = Duration::from_secs(5);
const IDS: [&str; 3] = ["node-1", "node-2", "node-3"];

struct Node {
    raft: Option<Raft<KvFsm>>,
    map: KvMap,
    store: InmemStore,
    snaps: InmemSnapshotStore,
}

fn config(id: &str) -> Config {
    Config {
        local_id: ServerId::from(id),
        heartbeat_timeout: Duration::from_millis(200),
        election_timeout: Duration::from_millis(200),
        leader_lease_timeout: Duration::from_millis(200),
        ..Config::default()
    }
}

async fn start(net: &InmemNetwork, id: &str, node: &mut Node) -> Result<(), raft::Error> {
    let fsm = KvFsm::new();
    node.map = fsm.handle();
    let raft = Raft::new(
        config(id),
        fsm,
        node.store.clone(),
        node.store.clone(),
        node.snaps.clone(),
        net.transport(id),
    )
    .await?;
    node.raft = Some(raft);
    Ok(())
}

async fn wait_for_leader(nodes: &[Node], skip: Option<usize>) -> Result<usize, String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if Some(i) != skip && n.raft.as_ref().is_some_and(|r| r.state() == RaftState::Leader) {
                return Ok(i);
            }
        }
        if Instant::now() > deadline {
            return Err("no leader elected in time".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let net = InmemNetwork::new();
    let mut nodes: Vec<Node> = IDS
        .iter()
        .map(|_| Node {
            raft: None,
            map: KvMap::default(),
            store: InmemStore::new(),
            snaps: InmemSnapshotStore::new(),
        })
        .collect();
    let configuration = Configuration::new(IDS.iter().map(|id| Server::voter(*id, *id)).collect());
    for (i, id) in IDS.iter().enumerate() {
        start(&net, id, &mut nodes[i]).await?;
        if let Some(r) = &nodes[i].raft {
            r.bootstrap_cluster(configuration.clone()).await?;
        }
    }
    println!("Started a 3-node cluster ({}) over the in-memory network.", IDS.join(", "));

    let t = Instant::now();
    let leader = wait_for_leader(&nodes, None).await?;
    println!("[{:>6.1?}] {} was elected leader.", t.elapsed(), IDS[leader]);

    let t = Instant::now();
    let raft = nodes[leader].raft.clone().ok_or("leader not running")?;
    for i in 0..100 {
        let cmd = KvCommand::Put { key: format!("key-{i:03}"), value: format!("value-{i}") };
        raft.apply(cmd.encode(), TIMEOUT).await?;
    }
    println!(
        "[{:>6.1?}] Wrote 100 keys through {}; each was acknowledged after commit.",
        t.elapsed(),
        IDS[leader]
    );

    let t = Instant::now();
    if let Some(r) = nodes[leader].raft.take() {
        r.shutdown().await?;
    }
    net.disconnect(&IDS[leader].into());
    println!("Stopped the leader {}.", IDS[leader]);
    let new_leader = wait_for_leader(&nodes, Some(leader)).await?;
    println!("[{:>6.1?}] {} took over as the new leader.", t.elapsed(), IDS[new_leader]);

    let raft = nodes[new_leader].raft.clone().ok_or("new leader not running")?;
    for i in 100..150 {
        let cmd = KvCommand::Put { key: format!("key-{i:03}"), value: format!("value-{i}") };
        raft.apply(cmd.encode(), TIMEOUT).await?;
    }
    raft.linearizable_read().await?;
    let missing: Vec<String> = (0..150)
        .map(|i| format!("key-{i:03}"))
        .filter(|k| !nodes[new_leader].map.read().map(|m| m.contains_key(k)).unwrap_or(false))
        .collect();
    if !missing.is_empty() {
        return Err(format!("acknowledged writes lost: {missing:?}").into());
    }
    println!(
        "Wrote 50 more keys; a linearizable read on {} sees all 150: no write was lost.",
        IDS[new_leader]
    );

    let t = Instant::now();
    start(&net, IDS[leader], &mut nodes[leader]).await?;
    let last = raft.barrier(TIMEOUT).await?;
    let restarted = nodes[leader].raft.clone().ok_or("restarted node not running")?;
    tokio::time::timeout(TIMEOUT, restarted.wait_applied(last)).await??;
    let count = nodes[leader].map.read().map(|m| m.len()).unwrap_or(0);
    println!(
        "[{:>6.1?}] Restarted {} from its stores; it caught up to index {last} and holds {count} keys.",
        t.elapsed(),
        IDS[leader]
    );
    if count != 150 {
        return Err(format!("restarted node has {count} keys, expected 150").into());
    }
    for n in &nodes {
        if let Some(r) = &n.raft {
            r.shutdown().await?;
        }
    }
    println!("Done in {:.1?}.", started.elapsed());
    Ok(())
}
