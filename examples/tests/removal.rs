//! `kv serve` exits when its node ends on its own (issue 13 item 9): a
//! server removed from the cluster reports `Removed` and exits with code 3,
//! so a supervisor sees it instead of a process serving frozen data.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_removed_kv_node_exits_with_code_3_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let refs: Vec<&KvProc> = nodes.iter().collect();
    let leader = poll("a leader", Duration::from_secs(10), || agreed_leader(&refs, 3));
    let leader_raft = nodes.iter().find(|n| n.id == leader).expect("leader node").raft_addr.clone();
    let victim = nodes.iter().position(|n| n.id != leader).expect("a follower");
    let out = raftctl(&["--addr", &leader_raft, "remove", &nodes[victim].id]);
    assert!(out.status.success(), "raftctl remove: {}", String::from_utf8_lossy(&out.stderr));
    let code = nodes[victim].wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(3), "a removed node exits with code 3");
    let log = nodes[victim].log();
    assert!(log.contains("removed from the cluster"), "the log says why: {log}");
    assert!(log.contains("wipe"), "the log says what to do: {log}");
    // The other two keep serving.
    let others: Vec<&KvProc> =
        nodes.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, n)| n).collect();
    poll("the rest to agree on a leader", Duration::from_secs(20), || agreed_leader(&others, 2));
    let resp = put(&others[0].api_addr, "after", "1").expect("put");
    assert!(resp.status < 300, "the rest keep writing: {} {}", resp.status, resp.body);
    for n in &mut nodes {
        n.kill();
    }
}

/// The signal `kv serve` exits with code 1 on: raft stopping without the
/// process asking (as after a fatal storage error) is reported as
/// `NodeExit::Failed`; a removal is `NodeExit::Removed`.
#[tokio::test]
async fn a_node_that_stops_by_itself_is_reported_as_failed() {
    use raft_examples::service::{KvNode, NodeExit, NodeOptions};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = NodeOptions::new("solo", free_addr(), free_addr(), dir.path().join("solo"));
    opts.bootstrap = true;
    opts.election_timeout = Duration::from_millis(200);
    let node = KvNode::start(opts).await.expect("start");
    let watch = tokio::time::timeout(Duration::from_millis(300), node.stopped()).await;
    assert!(watch.is_err(), "a running node has not stopped");
    // Stop raft underneath the service, the way a fatal error stops it.
    node.raft().shutdown().await.expect("stop raft");
    let exit = tokio::time::timeout(Duration::from_secs(10), node.stopped()).await.expect("noticed in time");
    assert_eq!(exit, NodeExit::Failed);
    node.shutdown(false).await.expect("close");
}
