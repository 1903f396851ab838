//! `kv serve --snapshot-interval` and `--snapshot-threshold` reach raft: a
//! node with a low threshold and a short interval takes a snapshot after a
//! few writes (the defaults, 8192 entries and 120 s, would not).

mod common;

use std::time::Duration;

use common::{poll, put, status, KvProc};

#[test]
fn snapshot_flags_make_a_node_snapshot_after_a_few_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--snapshot-interval", "1", "--snapshot-threshold", "5"].map(str::to_owned);
    let node = KvProc::start(dir.path(), "n1", &["--bootstrap".to_owned()], &flags);
    poll("n1 to lead", Duration::from_secs(20), || {
        status(&node.api_addr).filter(|s| s["state"] == "Leader").map(|_| ())
    });
    for i in 0..10 {
        let r = put(&node.api_addr, &format!("k{i}"), "v").expect("PUT");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    poll("a snapshot", Duration::from_secs(15), || {
        let s = status(&node.api_addr)?;
        (s["snapshot_index"].as_u64()? >= 5).then_some(())
    });
}

#[test]
fn a_zero_snapshot_interval_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["serve", "--id", "x", "--raft-addr", "127.0.0.1:1", "--api-addr", "127.0.0.1:2"])
        .args(["--data-dir", "/nonexistent", "--snapshot-interval", "0"])
        .output()
        .expect("run kv");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("snapshot-interval"));
}
