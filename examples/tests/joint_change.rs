//! `raftctl members change` end to end (issue 18): a three-node kv cluster
//! replaces two of its servers by two new ones in one joint change made
//! through the admin service; the removed servers exit (code 3), the
//! cluster keeps serving, and refused or malformed changes fail with a
//! message saying why. A voter is then demoted and promoted again the
//! same way.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("raftctl printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn raftctl_members_change_replaces_two_servers_in_one_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let refs: Vec<&KvProc> = nodes.iter().collect();
    let leader = poll("a leader", Duration::from_secs(10), || agreed_leader(&refs, 3));
    let leader_raft = nodes.iter().find(|n| n.id == leader).expect("leader node").raft_addr.clone();
    let leaving: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].id != leader).collect();
    // Two empty servers that wait to be added.
    let n4 = KvProc::start(dir.path(), "n4", &[], &[]);
    let n5 = KvProc::start(dir.path(), "n5", &[], &[]);

    // Malformed and refused changes say why, and change nothing.
    let out = raftctl(&["--addr", &leader_raft, "members", "change"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one"), "{out:?}");
    let out = raftctl(&["--addr", &leader_raft, "members", "change", "--remove", "n9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found") && err.contains("n9"), "{err}");
    let out = raftctl(&["--addr", &leader_raft, "members", "change", "--add", "n4"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ID=HOST:PORT"), "{out:?}");

    // Sent to a follower: raftctl finds the leader.
    let (add4, add5) = (format!("n4={}", n4.raft_addr), format!("n5={}", n5.raft_addr));
    let out = raftctl(&[
        "--addr",
        &nodes[leaving[0]].raft_addr,
        "--json",
        "--timeout-ms",
        "30000",
        "members",
        "change",
        "--add",
        &add4,
        "--add",
        &add5,
        "--remove",
        &nodes[leaving[0]].id,
        "--remove",
        &nodes[leaving[1]].id,
    ]);
    assert!(out.status.success(), "members change: {}", String::from_utf8_lossy(&out.stderr));
    let answer = stdout_json(&out);
    assert!(answer["configuration_index"].as_u64().is_some_and(|i| i > 0), "{answer}");
    assert_eq!(answer["changes"].as_array().map(Vec::len), Some(4), "{answer}");

    let out = raftctl(&["--addr", &leader_raft, "--json", "members"]);
    assert!(out.status.success(), "members: {}", String::from_utf8_lossy(&out.stderr));
    let members = stdout_json(&out);
    let list = members["members"].as_array().expect("members");
    let ids: BTreeSet<&str> = list.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([leader.as_str(), "n4", "n5"]), "{members}");
    assert!(list.iter().all(|m| m["suffrage"] == "voter"), "{members}");
    assert_eq!(members["configuration_index"], answer["configuration_index"], "{members}");

    for i in leaving {
        assert_eq!(
            nodes[i].wait_exit(Duration::from_secs(30)),
            Some(3),
            "{} was removed and exits",
            nodes[i].id
        );
    }
    let leader_api = nodes.iter().find(|n| n.id == leader).expect("leader").api_addr.clone();
    let resp = put(&leader_api, "after", "1").expect("put");
    assert!(resp.status < 300, "the new configuration commits: {} {}", resp.status, resp.body);

    // `--demote` then `--promote` through the same admin method: n4 becomes
    // a non-voter, then a voter again, and the cluster keeps committing.
    let suffrage_of = |id: &str| -> String {
        let out = raftctl(&["--addr", &leader_raft, "--json", "members"]);
        assert!(out.status.success(), "members: {}", String::from_utf8_lossy(&out.stderr));
        let members = stdout_json(&out);
        let list = members["members"].as_array().expect("members").clone();
        let m = list.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("{id} is a member: {members}"));
        m["suffrage"].as_str().unwrap_or_default().to_owned()
    };
    for (flag, expected) in [("--demote", "nonvoter"), ("--promote", "voter")] {
        let out = raftctl(&[
            "--addr",
            &leader_raft,
            "--json",
            "--timeout-ms",
            "30000",
            "members",
            "change",
            flag,
            "n4",
        ]);
        assert!(out.status.success(), "members change {flag} n4: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(suffrage_of("n4"), expected, "after {flag}");
        assert_eq!(suffrage_of("n5"), "voter");
        let resp = put(&leader_api, "after", flag).expect("put");
        assert!(resp.status < 300, "commits after {flag}: {} {}", resp.status, resp.body);
    }
    for n in &mut nodes {
        n.kill();
    }
}
