//! `raftctl` against live `kv serve` clusters (gRPC transport, admin
//! service): `snapshot save`/`restore` round trip and refusal of damaged
//! backups, `members` with replication progress, `status --watch`,
//! `recover` from a peers.json (dry run and real), and the errors a new
//! user meets (HTTP port, dead port, wrong cluster id).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{agreed_leader, get, poll, put, raftctl, start_cluster, KvProc};
use serde_json::Value;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs raftctl and requires success.
fn ok(args: &[&str]) -> Output {
    let out = raftctl(args);
    assert!(out.status.success(), "raftctl {args:?} failed: {}{}", stdout(&out), stderr(&out));
    out
}

/// Runs raftctl and requires failure; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = raftctl(args);
    assert!(!out.status.success(), "raftctl {args:?} succeeded: {}", stdout(&out));
    stderr(&out)
}

/// Writes `key=value`, retrying through `nodes` while the cluster settles.
fn write(nodes: &[KvProc], key: &str, value: &str) {
    let mut attempt = 0usize;
    poll(&format!("PUT {key}"), Duration::from_secs(20), || {
        attempt += 1;
        let node = &nodes[attempt % nodes.len()];
        put(&node.api_addr, key, value).ok().filter(|r| r.status == 200)
    });
}

/// Waits until every node's own (stale) reads show exactly `expected`
/// (`None`: absent).
fn wait_state(nodes: &[KvProc], expected: &BTreeMap<&str, Option<&str>>) {
    for node in nodes {
        for (key, value) in expected {
            poll(&format!("{key} = {value:?} on {}", node.id), Duration::from_secs(20), || {
                let r = get(&node.api_addr, key, "stale").ok()?;
                let got = match r.status {
                    200 => Some(r.body),
                    404 => None,
                    _ => return None,
                };
                (got.as_deref() == *value).then_some(())
            });
        }
    }
}

/// A digest of every file under `dir` (path, length, contents).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.display().to_string(), std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

#[test]
fn snapshot_save_then_restore_brings_back_the_saved_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 3, &[]);
    for i in 1..=5 {
        write(&nodes, &format!("k{i}"), &format!("v{i}"));
    }
    let file = dir.path().join("backup.snap");
    let file_arg = file.to_str().expect("utf-8 path");
    // Through a follower: raftctl finds the leader.
    let refs: Vec<&KvProc> = nodes.iter().collect();
    let leader = poll("a leader", Duration::from_secs(10), || agreed_leader(&refs, 3));
    let follower = nodes.iter().find(|n| n.id != leader).expect("a follower");
    let out = ok(&["--addr", &follower.raft_addr, "--json", "snapshot", "save", file_arg]);
    let saved: Value = serde_json::from_slice(&out.stdout).expect("save JSON");
    assert!(saved["snapshot"]["index"].as_u64() >= Some(6), "{saved}");
    assert_eq!(saved["file_bytes"].as_u64(), std::fs::metadata(&file).ok().map(|m| m.len()));
    let info = raft_examples::backup::verify(&file).expect("the saved file verifies");
    assert_eq!(Some(info.meta.index), saved["snapshot"]["index"].as_u64());

    // The cluster moves on: a changed key, a new key.
    write(&nodes, "k1", "changed");
    write(&nodes, "k6", "new");

    // A damaged copy is refused before anything is sent.
    let bad = dir.path().join("bad.snap");
    let mut bytes = std::fs::read(&file).expect("read backup");
    let at = bytes.len() - 8;
    bytes[at] ^= 0x20;
    std::fs::write(&bad, &bytes).expect("write damaged copy");
    let err = fails(&["--addr", &nodes[0].raft_addr, "snapshot", "restore", bad.to_str().expect("utf-8")]);
    assert!(err.contains("refusing to restore") && err.contains("checksum mismatch"), "{err}");
    std::fs::write(&bad, &bytes[..bytes.len() - 1]).expect("write truncated copy");
    let err = fails(&["--addr", &nodes[0].raft_addr, "snapshot", "restore", bad.to_str().expect("utf-8")]);
    assert!(err.contains("damaged backup"), "{err}");
    wait_state(&nodes, &BTreeMap::from([("k1", Some("changed")), ("k6", Some("new"))]));

    // The real restore: every node comes back to the saved state.
    let out = ok(&["--addr", &follower.raft_addr, "snapshot", "restore", file_arg]);
    assert!(stdout(&out).contains("restored"), "{}", stdout(&out));
    let mut expected: BTreeMap<&str, Option<&str>> =
        BTreeMap::from([("k1", Some("v1")), ("k5", Some("v5")), ("k6", None)]);
    wait_state(&nodes, &expected);
    // And the cluster still takes writes afterwards.
    write(&nodes, "k7", "after");
    expected.insert("k7", Some("after"));
    wait_state(&nodes, &expected);
}

#[test]
fn members_shows_progress_and_status_watch_refreshes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 3, &[]);
    write(&nodes, "a", "1");
    let refs: Vec<&KvProc> = nodes.iter().collect();
    let leader = poll("a leader", Duration::from_secs(10), || agreed_leader(&refs, 3));
    let follower = nodes.iter().find(|n| n.id != leader).expect("a follower");

    // Asked of a follower, answered by the leader, with every follower's progress.
    let members = poll("every follower caught up", Duration::from_secs(20), || {
        let out = ok(&["--addr", &follower.raft_addr, "--json", "members"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("members JSON");
        let caught_up = v["members"].as_array()?.iter().all(|m| m["catching_up"] == false);
        caught_up.then_some(v)
    });
    assert_eq!(members["from_leader"], true, "{members}");
    assert_eq!(members["leader"]["id"], leader.as_str(), "{members}");
    let list = members["members"].as_array().expect("members");
    assert_eq!(list.len(), 3);
    let last_index = members["last_index"].as_u64().expect("last index");
    for m in list {
        assert_eq!(m["suffrage"], "voter", "{m}");
        let (matched, lag) = (m["match_index"].as_u64().expect("match"), m["lag"].as_u64().expect("lag"));
        assert_eq!(matched + lag, last_index, "lag is measured from the leader's last index: {m}");
        if m["id"] == leader.as_str() {
            assert_eq!(m["leader"], true);
        } else {
            assert!(m["last_contact_ms"].as_u64().is_some(), "{m}");
        }
    }

    // A stopped follower falls behind: its lag grows and it is catching up.
    let victim = nodes.iter().position(|n| n.id != leader).expect("a follower");
    let victim_id = nodes[victim].id.clone();
    let mut nodes = nodes;
    nodes[victim].kill();
    for i in 0..5 {
        let via: Vec<&KvProc> = nodes.iter().filter(|n| n.id != victim_id).collect();
        poll("a write without the victim", Duration::from_secs(20), || {
            via.iter().find_map(|n| put(&n.api_addr, &format!("b{i}"), "x").ok().filter(|r| r.status == 200))
        });
    }
    let leader_node = nodes.iter().find(|n| n.id == leader).expect("leader");
    // Its last contact grows past the election timeout (300 ms here).
    let gone = poll("the leader to see the victim silent", Duration::from_secs(20), || {
        let out = ok(&["--addr", &leader_node.raft_addr, "--json", "members"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("members JSON");
        let gone = v["members"].as_array()?.iter().find(|m| m["id"] == victim_id.as_str())?.clone();
        (gone["last_contact_ms"].as_u64()? >= 300).then_some(gone)
    });
    assert!(gone["lag"].as_u64() >= Some(3) && gone["catching_up"] == true, "{gone}");
    assert_eq!(gone["healthy"], false, "a silent follower is unhealthy: {gone}");
    let table = stdout(&ok(&["--addr", &leader_node.raft_addr, "members"]));
    assert!(
        table.contains("LAG") && table.contains("catching up") && table.contains("up to date"),
        "{table}"
    );
    assert!(
        table.contains("HEALTH") && table.contains("unhealthy") && table.contains("healthy for"),
        "{table}"
    );

    // status --watch refreshes (bounded here by the hidden --count).
    let out = ok(&[
        "--addr",
        &leader_node.raft_addr,
        "--json",
        "status",
        "--watch",
        "--interval-ms",
        "20",
        "--count",
        "3",
    ]);
    let lines: Vec<Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("one JSON status per refresh")).collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&out));
    assert!(lines.iter().all(|s| s["state"] == "Leader"), "{lines:?}");
    let err = fails(&["--addr", &leader_node.raft_addr, "status", "--count", "2"]);
    assert!(err.contains("--watch"), "--count needs --watch: {err}");
}

#[test]
fn recover_rebuilds_a_cluster_that_lost_its_quorum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    for i in 1..=4 {
        write(&nodes, &format!("r{i}"), &format!("v{i}"));
    }
    // Every node has applied the writes before the quorum is lost.
    wait_state(&nodes, &BTreeMap::from([("r4", Some("v4"))]));
    let peers = dir.path().join("peers.json");
    let survivor = &nodes[0];
    let peers_json =
        format!(r#"[{{"id": "{}", "address": "{}", "non_voter": false}}]"#, survivor.id, survivor.raft_addr);
    std::fs::write(&peers, peers_json).expect("write peers.json");
    let data_dir = survivor.data_dir().to_str().expect("utf-8").to_owned();
    let (data_dir, peers_arg) = (data_dir.as_str(), peers.to_str().expect("utf-8"));

    // A running node is refused: its data directory is in use.
    let err = fails(&["recover", "--data-dir", data_dir, "--peers", peers_arg]);
    assert!(err.contains("still running"), "{err}");

    for node in &mut nodes {
        node.kill();
    }
    // n2 and n3 are gone for good.
    let before = tree(nodes[0].data_dir());
    let out = ok(&["recover", "--data-dir", data_dir, "--peers", peers_arg, "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("nothing was changed") && text.contains(&nodes[0].raft_addr), "{text}");
    assert_eq!(tree(nodes[0].data_dir()), before, "the dry run changed the data directory");

    // A peers.json without this node, or malformed, is refused.
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"[{"id": "n9", "address": "127.0.0.1:1"}]"#).expect("write");
    let err = fails(&["recover", "--data-dir", data_dir, "--peers", other.to_str().expect("utf-8")]);
    assert!(err.contains("not in") && err.contains("n1"), "{err}");
    std::fs::write(&other, r#"[{"id": "n1", "address": "a:1", "nonvoter": true}]"#).expect("write");
    let err = fails(&["recover", "--data-dir", data_dir, "--peers", other.to_str().expect("utf-8")]);
    assert!(err.contains("unknown field"), "{err}");

    let out = ok(&["--json", "recover", "--data-dir", data_dir, "--peers", peers_arg]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("recover JSON");
    assert_eq!(report["configuration"].as_array().map(Vec::len), Some(1), "{report}");
    assert_ne!(tree(nodes[0].data_dir()), before);

    // Alone, the survivor elects itself and serves the old data and new writes.
    nodes[0].restart();
    let survivor = &nodes[0];
    poll("the survivor leads alone", Duration::from_secs(20), || agreed_leader(&[survivor], 1));
    let survivors = std::slice::from_ref(&nodes[0]);
    write(survivors, "r5", "v5");
    wait_state(survivors, &BTreeMap::from([("r1", Some("v1")), ("r4", Some("v4")), ("r5", Some("v5"))]));
}

#[test]
fn errors_and_help_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 1, &[]);
    let node = &nodes[0];
    write(&nodes, "x", "1");

    // The HTTP port instead of the raft port.
    let err = fails(&["--addr", &node.api_addr, "status"]);
    assert!(err.contains("this looks like an HTTP port, not the raft gRPC port"), "{err}");
    assert!(!err.contains("invalid compression flag"), "{err}");

    // A port nothing listens on: the address and the cause.
    let dead = common::free_addr();
    let err = fails(&["--addr", &dead, "status"]);
    assert!(err.contains(&dead) && err.to_lowercase().contains("refused"), "{err}");

    // A wrong cluster id: both ids, plainly.
    let err = fails(&["--addr", &node.raft_addr, "--cluster-id", "other-cluster", "status"]);
    assert!(err.contains("permission denied") && err.contains("other-cluster"), "{err}");
    assert!(!err.contains("Some("), "{err}");

    // `snapshot` reports what it compacted.
    let text = stdout(&ok(&["--addr", &node.raft_addr, "snapshot"]));
    assert!(text.contains("compacted"), "{text}");

    // --timeout-ms is described per command.
    for (args, says) in [
        (vec!["snapshot", "save", "--help"], "bounds the whole transfer"),
        (vec!["add-voter", "--help"], "catch-up"),
        (vec!["status", "--help"], "bounds each call"),
        (vec!["recover", "--help"], "--timeout-ms does not apply"),
    ] {
        let text = stdout(&ok(&args));
        assert!(text.contains(says), "{args:?}: {text}");
    }
}
