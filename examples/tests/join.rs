//! Joining with an id that is already a member at another raft address is
//! refused (`409 server_exists`, and `kv serve --join` exits saying how to
//! replace it) instead of cutting the real member off; `--replace-address`
//! (`?replace_address=true`) moves the member on purpose, e.g. to a new
//! machine with an empty disk.

mod common;

use std::time::Duration;

use common::{
    agreed_leader, free_addr, get, http_auth, poll, put, start_cluster, status, KvProc, JOIN_TOKEN,
};

fn code(r: &common::Resp) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_owned()
}

/// The raft and API addresses `/status` on `api` lists for member `id`.
fn member(api: &str, id: &str) -> Option<(String, String)> {
    let s = status(api)?;
    let servers = s["configuration"]["servers"].as_array()?.clone();
    let m = servers.into_iter().find(|m| m["id"] == id)?;
    Some((m["raft_addr"].as_str()?.to_owned(), m["api_addr"].as_str().unwrap_or_default().to_owned()))
}

#[test]
fn a_duplicate_id_is_refused_and_replace_address_moves_the_member() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let api = nodes[0].api_addr.clone();
    let original = member(&api, "n3").expect("n3 is a member");

    // Another process claiming n3's id from a new address: refused, and
    // n3's registered API address is left alone.
    let body = format!(r#"{{"id": "n3", "raft_addr": "{}", "api_addr": "{}"}}"#, free_addr(), free_addr());
    let r = http_auth("POST", &api, "/cluster/join", body.as_bytes(), JOIN_TOKEN).expect("join");
    assert_eq!((r.status, code(&r).as_str()), (409, "server_exists"), "{}", r.body);
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(&original.0) && error.contains("replace_address"), "{error}");
    assert_eq!(member(&api, "n3"), Some(original.clone()), "the member is untouched");

    // `kv serve --join` with a taken id gives up at once, saying what to do.
    let other = dir.path().join("impostor");
    std::fs::create_dir_all(&other).expect("create dir");
    let mut impostor = KvProc::start(&other, "n3", &["--join".to_owned(), api.clone()], &[]);
    poll("the impostor to exit", Duration::from_secs(30), || (!impostor.alive()).then_some(()));
    let log = impostor.log();
    assert!(log.contains("server_exists") && log.contains("--replace-address"), "{log}");

    // n3's machine is replaced: empty disk, new addresses, --replace-address.
    put(&api, "before", "1").expect("PUT");
    nodes[2].kill();
    let fresh = dir.path().join("replacement");
    std::fs::create_dir_all(&fresh).expect("create dir");
    let join = ["--join".to_owned(), api.clone(), "--replace-address".to_owned()];
    let replacement = KvProc::start(&fresh, "n3", &join, &[]);
    let refs = [&nodes[0], &nodes[1], &replacement];
    poll("the replacement to be a member", Duration::from_secs(30), || {
        let (raft_addr, api_addr) = member(&api, "n3")?;
        (raft_addr == replacement.raft_addr && api_addr == replacement.api_addr).then_some(())
    });
    poll("all nodes to agree on a leader", Duration::from_secs(30), || agreed_leader(&refs, 3));
    let r = put(&api, "after", "2").expect("PUT");
    assert_eq!(r.status, 200, "{}", r.body);
    poll("the replacement to have the whole state", Duration::from_secs(30), || {
        let before = get(&replacement.api_addr, "before", "stale").ok()?;
        let after = get(&replacement.api_addr, "after", "stale").ok()?;
        (before.body == "1" && after.body == "2").then_some(())
    });
}
