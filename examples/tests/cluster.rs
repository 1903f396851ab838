//! Three `kv serve` processes on loopback: writes and reads through every
//! node's HTTP API, `kill -9` of the leader while writes go on through the
//! others, a restart, and then every acknowledged write must be readable
//! with `consistency=linearizable` from every node. Also checks `raftctl`
//! against the live cluster.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{agreed_leader, get, http, poll, put, raftctl, start_cluster, KvProc};

/// Writes `key=value` through `via` (round-robin), retrying while the
/// cluster has no leader; returns once a node acknowledged it.
fn put_acked(via: &[&KvProc], key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        let node = via[attempt % via.len()];
        attempt += 1;
        match put(&node.api_addr, key, value) {
            Ok(r) if r.status == 200 => return,
            Ok(r) => assert!(
                [503, 504].contains(&r.status),
                "PUT {key} via {}: unexpected {} {}",
                node.id,
                r.status,
                r.body
            ),
            Err(_) => {} // the node may be the one being killed
        }
        assert!(Instant::now() < deadline, "PUT {key} was never acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `key` through `node` at `consistency`, retrying (bounded) only
/// while the answer is 503/504: a spurious election on a loaded machine
/// can leave the cluster briefly without a leader, as `put_acked` allows
/// for writes. Any other answer is returned as is.
fn get_settled(node: &KvProc, key: &str, consistency: &str) -> common::Resp {
    poll(&format!("GET {key} ({consistency}) via {}", node.id), Duration::from_secs(30), || {
        let r = get(&node.api_addr, key, consistency).expect("GET");
        (![503, 504].contains(&r.status)).then_some(r)
    })
}

fn assert_readable(node: &KvProc, acked: &BTreeMap<String, String>) {
    for (key, value) in acked {
        let got = poll(&format!("{key} from {}", node.id), Duration::from_secs(20), || {
            match get(&node.api_addr, key, "linearizable") {
                Ok(r) if r.status == 200 => Some(r.body),
                Ok(r) if r.status == 404 => panic!("{key} is missing on {} (404)", node.id),
                _ => None, // 503 while the cluster settles, or not up yet
            }
        });
        assert_eq!(&got, value, "{key} read through {}", node.id);
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_leader() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let mut acked = BTreeMap::new();

    // Writes through every node (followers forward to the leader), read
    // back through another node.
    for i in 0..15 {
        let (key, value) = (format!("k{i:02}"), format!("v{i}"));
        // Retried only on 503/504 (say, a spurious election on a loaded machine).
        put_acked(&[&nodes[i % 3]], &key, &value);
        let r = get_settled(&nodes[(i + 1) % 3], &key, "linearizable");
        assert_eq!((r.status, r.body.as_str()), (200, value.as_str()));
        acked.insert(key, value);
    }

    // Reads at every consistency level are served by the node asked: a
    // follower's `lease` and `linearizable` reads are follower reads (its
    // /status counts them), and see the write acknowledged just before.
    let leader =
        poll("a leader", Duration::from_secs(10), || agreed_leader(&nodes.iter().collect::<Vec<_>>(), 3));
    let follower = nodes.iter().find(|n| n.id != leader).expect("a follower");
    let before = common::status(&follower.api_addr).expect("status")["reads"]["follower_reads"].as_u64();
    for (i, consistency) in ["linearizable", "lease", "leader"].iter().enumerate() {
        let (key, value) = (format!("f{i}"), format!("fv{i}"));
        put_acked(&[follower], &key, &value);
        let r = get_settled(follower, &key, consistency);
        assert_eq!((r.status, r.body.as_str()), (200, value.as_str()), "{consistency} read on a follower");
        acked.insert(key, value);
    }
    // Published counts may lag a tick behind.
    let before = before.expect("follower_reads in /status");
    poll("the follower's read count", Duration::from_secs(10), || {
        let after = common::status(&follower.api_addr)?["reads"]["follower_reads"].as_u64()?;
        (after >= before + 3).then_some(())
    });
    let r = get(&follower.api_addr, "f0", "stale").expect("GET");
    assert_eq!(r.status, 200);

    // Every node reports the same cluster id in /status: the joiners
    // adopted the bootstrapped node's.
    let cluster_ids: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            let r = http("GET", &n.api_addr, "/status", b"").expect("GET /status");
            let status: serde_json::Value = serde_json::from_str(&r.body).expect("status JSON");
            status["cluster_id"].clone()
        })
        .collect();
    assert!(cluster_ids[0].is_string(), "cluster id in /status: {cluster_ids:?}");
    assert!(cluster_ids.iter().all(|c| *c == cluster_ids[0]), "one cluster id: {cluster_ids:?}");

    // raftctl sees the same cluster from any node.
    let out = raftctl(&["--addr", &nodes[1].raft_addr, "members", "--json"]);
    assert!(out.status.success(), "raftctl members: {}", String::from_utf8_lossy(&out.stderr));
    let members: serde_json::Value = serde_json::from_slice(&out.stdout).expect("members JSON");
    let mut ids: Vec<&str> =
        members["members"].as_array().expect("members").iter().filter_map(|m| m["id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    let out = raftctl(&["--addr", &nodes[2].raft_addr, "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("leader"), "raftctl status: {text}");

    // kill -9 the leader while writes keep going through the others.
    let leader_id = {
        let refs: Vec<&KvProc> = nodes.iter().collect();
        poll("a leader", Duration::from_secs(10), || agreed_leader(&refs, 3))
    };
    let victim = nodes.iter().position(|n| n.id == leader_id).expect("leader is a node");
    nodes[victim].kill();
    let killed_at = Instant::now();
    {
        let others: Vec<&KvProc> = nodes.iter().filter(|n| n.id != leader_id).collect();
        for i in 15..30 {
            let (key, value) = (format!("k{i:02}"), format!("v{i}"));
            put_acked(&others, &key, &value);
            acked.insert(key, value);
        }
        let new_leader = poll("a new leader", Duration::from_secs(10), || agreed_leader(&others, 3));
        assert_ne!(new_leader, leader_id);
        eprintln!("{new_leader} took over from {leader_id}; 15 writes acked in {:?}", killed_at.elapsed());
    }

    // The old leader restarts from its data directory and catches up.
    nodes[victim].restart();
    let refs: Vec<&KvProc> = nodes.iter().collect();
    poll("the restarted node to rejoin", Duration::from_secs(20), || agreed_leader(&refs, 3));
    for node in &nodes {
        assert_readable(node, &acked);
    }
    let out = raftctl(&["--addr", &nodes[victim].raft_addr, "applied-index"]);
    let applied: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("applied index");
    assert!(applied >= 30, "restarted node applied only {applied}");
    for node in &mut nodes {
        assert!(node.alive(), "{} died:\n{}", node.id, node.log());
    }
    eprintln!("cluster test took {:?}", started.elapsed());
}
