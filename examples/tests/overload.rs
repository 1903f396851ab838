//! Overload is not "no leader": a node that already forwards its limit of
//! requests (`kv serve --max-forwards`) sheds more at once with `503
//! overloaded` (and `Retry-After`), and a forwarded request whose leader
//! never answers ends within the forwarding node's `--request-timeout-ms`.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{agreed_leader, http_auth, poll, put, start_cluster, JOIN_TOKEN};

fn code(r: &common::Resp) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_follower_at_its_forwarding_limit_answers_503_overloaded_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra: Vec<String> =
        ["--max-forwards", "1", "--request-timeout-ms", "3000"].iter().map(|s| s.to_string()).collect();
    let nodes = start_cluster(dir.path(), 2, &extra);
    // Usually the bootstrapped n1, but a spurious election on a loaded
    // machine may have moved leadership: ask the cluster.
    let leader_id = poll("a leader", Duration::from_secs(10), || agreed_leader(&[&nodes[0], &nodes[1]], 2));
    let leader = nodes.iter().find(|n| n.id == leader_id).expect("the leader is a node");
    let follower = nodes.iter().find(|n| n.id != leader_id).expect("a follower").api_addr.clone();

    // Point the directory's entry for the leader at a socket that accepts
    // connections and never answers: every forward from the follower then
    // holds its one permit until its deadline.
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    black_hole.set_nonblocking(true).expect("non-blocking");
    let hole_addr = black_hole.local_addr().expect("addr").to_string();
    let body = serde_json::json!({ "api_addr": hole_addr }).to_string();
    let path = format!("/cluster/nodes/{leader_id}");
    let r = http_auth("PUT", &leader.api_addr, &path, body.as_bytes(), JOIN_TOKEN).expect("PUT");
    assert_eq!(r.status, 200, "{}", r.body);
    poll("the follower to learn the new directory entry", Duration::from_secs(10), || {
        let s = common::status(&follower)?;
        (s["leader"]["api_addr"].as_str()? == hole_addr).then_some(())
    });

    let stuck_follower = follower.clone();
    let stuck = std::thread::spawn(move || {
        let started = Instant::now();
        let r = put(&stuck_follower, "held", "1").expect("PUT");
        (r, started.elapsed())
    });
    // Held once the black hole has the forwarded connection.
    let _held =
        poll("the forward to reach the black hole", Duration::from_secs(10), || black_hole.accept().ok());

    let started = Instant::now();
    let r = put(&follower, "shed", "1").expect("PUT");
    assert_eq!((r.status, code(&r).as_str()), (503, "overloaded"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(2), "shedding took {:?}", started.elapsed());

    let (r, took) = stuck.join().expect("the stuck request's thread");
    assert_ne!(code(&r), "no_leader", "a saturated leader is not 'no leader': {}", r.body);
    assert!(r.status == 504 || r.status == 503, "{} {}", r.status, r.body);
    assert!(took < Duration::from_millis(3000 + 1500), "the forwarding node answered after {took:?}");
}
