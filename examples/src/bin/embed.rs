//! The README's embedding example: an FSM, a 3-node cluster in one
//! process, a write through the leader and a linearizable read.

use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{Config, Configuration, Raft, RaftState, Server};
use raft_examples::kv::{KvCommand, KvFsm};
use raft_store_mem::{InmemSnapshotStore, InmemStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = InmemNetwork::new();
    let members = Configuration::new(["a", "b", "c"].map(|id| Server::voter(id, id)).to_vec());
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        let (store, fsm) = (InmemStore::new(), KvFsm::new());
        let snaps = InmemSnapshotStore::new();
        let raft =
            Raft::new(Config::new(id), fsm.clone(), store.clone(), store, snaps, net.transport(id)).await?;
        raft.bootstrap_cluster(members.clone()).await?;
        nodes.push((raft, fsm));
    }
    let (raft, fsm) = loop {
        if let Some(node) = nodes.iter().find(|(r, _)| r.state() == RaftState::Leader) {
            break node;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let put = KvCommand::Put { key: "k".into(), value: "v".into() };
    raft.apply(put.encode(), Duration::from_secs(5)).await?; // committed and applied
    raft.linearizable_read().await?; // ReadIndex: confirms leadership, no log write
    println!("k = {:?}", fsm.handle().read().expect("lock").get("k"));
    Ok(())
}
