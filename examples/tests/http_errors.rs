//! Bad input and an unavailable cluster get clear HTTP errors (JSON with a
//! `code`), never a crash: unknown keys, invalid JSON, oversized values,
//! bad parameters, garbage on the socket, and requests while no leader can
//! be elected.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{get, http, http_auth, poll, put, start_cluster, status, JOIN_TOKEN};

fn code(r: &common::Resp) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = ["--max-value-bytes".to_owned(), "1024".to_owned()];
    let mut nodes = start_cluster(dir.path(), 1, &extra);
    let api = nodes[0].api_addr.clone();

    let r = get(&api, "missing", "linearizable").expect("GET");
    assert_eq!((r.status, code(&r).as_str()), (404, "not_found"), "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("missing")), "{}", r.body);

    let r = put(&api, "big", &"x".repeat(1025)).expect("PUT");
    assert_eq!((r.status, code(&r).as_str()), (413, "value_too_large"), "{}", r.body);
    assert!(r.body.contains("1024"), "the limit is named: {}", r.body);
    let r = put(&api, "big", &"x".repeat(1024)).expect("PUT");
    assert_eq!(r.status, 200, "{}", r.body);

    let r = http("PUT", &api, "/kv/bin", &[0xff, 0xfe]).expect("PUT");
    assert_eq!((r.status, code(&r).as_str()), (400, "bad_request"), "{}", r.body);

    let cas = |body: &str| http("POST", &api, "/kv/c/cas", body.as_bytes()).expect("cas");
    for bad in ["{not json", "[]", r#"{"new": 5}"#, r#"{"expected": null, "new": "a", "extra": 1}"#] {
        let r = cas(bad);
        assert_eq!((r.status, code(&r).as_str()), (400, "invalid_json"), "{bad}: {}", r.body);
    }
    let r = cas(&format!(r#"{{"expected": null, "new": "{}"}}"#, "y".repeat(2000)));
    assert_eq!((r.status, code(&r).as_str()), (413, "value_too_large"), "{}", r.body);
    let r = cas(r#"{"expected": null, "new": "first"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = cas(r#"{"expected": "other", "new": "second"}"#);
    assert_eq!((r.status, code(&r).as_str()), (409, "cas_mismatch"), "{}", r.body);
    assert_eq!(r.json()["current"], "first", "the conflict shows the current value: {}", r.body);

    let r = get(&api, "c", "bogus").expect("GET");
    assert_eq!((r.status, code(&r).as_str()), (400, "bad_request"), "{}", r.body);
    assert!(r.body.contains("stale, lease or linearizable"), "the levels are named: {}", r.body);
    for level in ["stale", "lease", "linearizable", "leader"] {
        let r = get(&api, "c", level).expect("GET");
        assert_eq!((r.status, r.body.as_str()), (200, "first"), "consistency={level}");
    }
    let r = http("GET", &api, "/nope", b"").expect("GET");
    assert_eq!((r.status, code(&r).as_str()), (404, "not_found"), "{}", r.body);
    let r = http("POST", &api, "/status", b"").expect("POST");
    assert_eq!(r.status, 405, "{}", r.body);
    let r = http_auth(
        "POST",
        &api,
        "/cluster/join",
        br#"{"id": "", "raft_addr": "x", "api_addr": "y"}"#,
        JOIN_TOKEN,
    )
    .expect("join");
    assert_eq!((r.status, code(&r).as_str()), (400, "bad_request"), "{}", r.body);
    let r = http_auth("POST", &api, "/cluster/join", b"garbage", JOIN_TOKEN).expect("join");
    assert_eq!((r.status, code(&r).as_str()), (400, "invalid_json"), "{}", r.body);

    // Not HTTP at all, and a declared body far over the limit.
    let mut raw = TcpStream::connect(&api).expect("connect");
    let _ = raw.write_all(b"\x16\x03\x01 definitely not http\r\n\r\n");
    drop(raw);
    let mut raw = TcpStream::connect(&api).expect("connect");
    let _ = raw.write_all(b"PUT /kv/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc");
    drop(raw);

    let s = status(&api).expect("status still answers");
    assert_eq!(s["state"], "Leader");
    assert!(nodes[0].alive(), "the node crashed:\n{}", nodes[0].log());
}

#[test]
fn requests_without_a_leader_get_503_and_the_node_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = ["--request-timeout-ms".to_owned(), "800".to_owned()];
    let mut nodes = start_cluster(dir.path(), 2, &extra);
    let r = put(&nodes[1].api_addr, "before", "1").expect("PUT");
    assert_eq!(r.status, 200, "{}", r.body);
    for node in &nodes {
        poll("the write to reach every node", Duration::from_secs(10), || {
            get(&node.api_addr, "before", "stale").ok().filter(|r| r.status == 200)
        });
    }

    // Two voters, one killed: the survivor can never win an election.
    let leader = status(&nodes[1].api_addr).and_then(|s| s["leader"]["id"].as_str().map(str::to_owned));
    let (victim, survivor) = if leader.as_deref() == Some("n1") { (0, 1) } else { (1, 0) };
    nodes[victim].kill();
    let api = nodes[survivor].api_addr.clone();

    let r = poll("a 503 for a write", Duration::from_secs(15), || {
        put(&api, "during", "x").ok().filter(|r| r.status == 503)
    });
    assert!(["no_leader", "outcome_unknown"].contains(&code(&r).as_str()), "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", r.body);
    let started = Instant::now();
    let r = put(&api, "during", "x").expect("PUT");
    assert_eq!((r.status, code(&r).as_str()), (503, "no_leader"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5), "the request waited {:?}", started.elapsed());
    let r = get(&api, "before", "linearizable").expect("GET");
    assert_eq!((r.status, code(&r).as_str()), (503, "no_leader"), "{}", r.body);
    let r = get(&api, "before", "stale").expect("GET");
    assert_eq!((r.status, r.body.as_str()), (200, "1"), "stale reads still work");
    let s = status(&api).expect("status answers during the election");
    assert!(s["leader"].is_null(), "{s}");
    assert!(nodes[survivor].alive(), "the survivor crashed:\n{}", nodes[survivor].log());

    // Once the peer is back, writes succeed again.
    nodes[victim].restart();
    poll("writes to succeed again", Duration::from_secs(20), || {
        put(&api, "after", "2").ok().filter(|r| r.status == 200)
    });
    let r = get(&api, "after", "linearizable").expect("GET");
    assert_eq!((r.status, r.body.as_str()), (200, "2"));
}
