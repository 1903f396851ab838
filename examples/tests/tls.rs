//! `--tls-dir`: two `kv serve` nodes replicate over mutual TLS (and serve
//! their HTTP API over HTTPS: the test helpers reach them with the node
//! certificate), `raftctl` with the same directory can administer them, and
//! a client without a certificate (or with the wrong cluster id) is refused.
//! More on the HTTPS API in `https.rs`.

mod common;

use std::time::Duration;

use common::certs::write_tls_dir;
use common::{get, poll, put, raftctl, start_cluster};

#[test]
fn nodes_replicate_over_mutual_tls_and_raftctl_needs_the_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    write_tls_dir(&tls);
    let tls_arg = tls.to_string_lossy().into_owned();
    let extra = ["--tls-dir".to_owned(), tls_arg.clone(), "--cluster-id".to_owned(), "kv-tls".to_owned()];
    let nodes = start_cluster(dir.path(), 2, &extra);

    // With two voters every commit needs the follower: replication works
    // over TLS.
    let r = put(&nodes[1].api_addr, "secret", "s3").expect("PUT");
    assert_eq!(r.status, 200, "{}", r.body);
    poll("the write on both nodes", Duration::from_secs(10), || {
        get(&nodes[1].api_addr, "secret", "stale").ok().filter(|r| r.status == 200)
    });

    let addr = nodes[0].raft_addr.as_str();
    let out =
        raftctl(&["--addr", addr, "--tls-dir", &tls_arg, "--cluster-id", "kv-tls", "members", "--json"]);
    assert!(out.status.success(), "raftctl over TLS: {}", String::from_utf8_lossy(&out.stderr));
    let members: serde_json::Value = serde_json::from_slice(&out.stdout).expect("members JSON");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(2), "{members}");

    let out = raftctl(&["--addr", addr, "--cluster-id", "kv-tls", "status"]);
    assert!(!out.status.success(), "plaintext raftctl must be refused");
    let out = raftctl(&["--addr", addr, "--tls-dir", &tls_arg, "--cluster-id", "other", "status"]);
    assert!(!out.status.success(), "a wrong cluster id must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permission denied"), "clear error for a wrong cluster id: {stderr}");

    // The (plain) HTTP port given with --tls-dir: the handshake fails, and
    // raftctl says which port it was given.
    let out =
        raftctl(&["--addr", &nodes[0].api_addr, "--tls-dir", &tls_arg, "--cluster-id", "kv-tls", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this looks like an HTTP port"), "{stderr}");
}
