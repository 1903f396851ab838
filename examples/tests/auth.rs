//! The kv service is safe to expose: cluster changes need the join token
//! (401 without it, 403 with a wrong one, refused on a node that has none),
//! half-sent requests are cut off, and pooled client connections close
//! once idle.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_addr, http, http_auth, poll, start_cluster, status, KvProc, JOIN_TOKEN};
use raft_examples::service::api::ApiSettings;
use raft_examples::service::client::ApiClient;
use raft_examples::service::{KvNode, NodeOptions};

fn code(r: &common::Resp) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_owned()
}

fn servers(api: &str) -> usize {
    status(api).and_then(|s| s["configuration"]["servers"].as_array().map(Vec::len)).unwrap_or(0)
}

fn registered(api: &str, id: &str) -> Option<String> {
    let s = status(api)?;
    let m = s["configuration"]["servers"].as_array()?.iter().find(|m| m["id"] == id)?.clone();
    m["api_addr"].as_str().map(str::to_owned)
}

#[test]
fn cluster_routes_need_the_join_token_on_leader_and_follower() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Joining through the token (from KV_JOIN_TOKEN) works: the node's own
    // join, registration and forwarding carry it.
    let nodes = start_cluster(dir.path(), 2, &[]);
    for node in &nodes {
        let api = node.api_addr.clone();
        let body =
            format!(r#"{{"id": "intruder", "raft_addr": "{}", "api_addr": "{}"}}"#, free_addr(), free_addr());
        let r = http("POST", &api, "/cluster/join", body.as_bytes()).expect("join");
        assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"), "{}", r.body);
        let r = http_auth("POST", &api, "/cluster/join", body.as_bytes(), "wrong-token").expect("join");
        assert_eq!((r.status, code(&r).as_str()), (403, "forbidden"), "{}", r.body);
        // Repointing the leader's API address is refused the same way.
        let repoint = br#"{"api_addr": "127.0.0.1:1"}"#;
        let r = http("PUT", &api, "/cluster/nodes/n1", repoint).expect("register");
        assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"), "{}", r.body);
        let r = http_auth("PUT", &api, "/cluster/nodes/n1", repoint, &format!("{JOIN_TOKEN}x"))
            .expect("register");
        assert_eq!((r.status, code(&r).as_str()), (403, "forbidden"), "{}", r.body);
    }
    assert_eq!(servers(&nodes[0].api_addr), 2, "nobody was added");
    assert_eq!(registered(&nodes[0].api_addr, "n1").as_deref(), Some(nodes[0].api_addr.as_str()));

    // With the token, through the follower (forwarded with the token).
    let r = http_auth(
        "PUT",
        &nodes[1].api_addr,
        "/cluster/nodes/n9",
        br#"{"api_addr": "127.0.0.1:9"}"#,
        JOIN_TOKEN,
    )
    .expect("register");
    assert_eq!(r.status, 200, "{}", r.body);

    // A node given another token cannot join.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let args =
        ["--join".to_owned(), nodes[0].api_addr.clone(), "--join-token".to_owned(), "not-it".to_owned()];
    let mut outsider = KvProc::start(&other, "n3", &args, &[]);
    poll("the outsider to give up", Duration::from_secs(30), || (!outsider.alive()).then_some(()));
    assert!(outsider.log().contains("403"), "{}", outsider.log());
    assert_eq!(servers(&nodes[0].api_addr), 2);
}

#[tokio::test]
async fn a_node_without_a_token_refuses_cluster_changes_and_cannot_join() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = NodeOptions::new("solo", free_addr(), free_addr(), dir.path().join("solo"));
    opts.bootstrap = true;
    opts.election_timeout = Duration::from_millis(200);
    let node = KvNode::start(opts).await.expect("start");
    let api = node.api_addr().to_string();
    let body = format!(r#"{{"id": "x", "raft_addr": "{}", "api_addr": "{}"}}"#, free_addr(), free_addr());
    let r = tokio::task::spawn_blocking(move || {
        http_auth("POST", &api, "/cluster/join", body.as_bytes(), "anything")
    })
    .await
    .expect("join task")
    .expect("join");
    assert_eq!((r.status, code(&r).as_str()), (403, "join_token_not_set"), "{}", r.body);
    assert!(r.body.contains("--join-token"), "the error says what to do: {}", r.body);

    let mut joiner = NodeOptions::new("j", free_addr(), free_addr(), dir.path().join("j"));
    joiner.join = Some(node.api_addr().to_string());
    let err = KvNode::start(joiner).await.err().expect("a join without a token is refused");
    assert!(err.to_string().contains("--join-token"), "{err}");
    node.shutdown(false).await.expect("stop");
}

/// Starts a one-node cluster with short header and body timeouts.
async fn short_timeouts_node(dir: &std::path::Path) -> KvNode {
    let mut opts = NodeOptions::new("solo", free_addr(), free_addr(), dir.join("solo"));
    opts.bootstrap = true;
    opts.election_timeout = Duration::from_millis(200);
    opts.api = ApiSettings {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..ApiSettings::default()
    };
    KvNode::start(opts).await.expect("start")
}

/// Sends `bytes`, then reads until the server closes the connection;
/// returns what it sent back and how long it took.
fn half_request(addr: &str, bytes: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let start = Instant::now();
    stream.write_all(bytes).expect("send");
    let mut got = Vec::new();
    // An error (the 10 s read timeout) fails the bound below.
    let _ = stream.read_to_end(&mut got);
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_within_the_timeouts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = short_timeouts_node(dir.path()).await;
    let api = node.api_addr().to_string();
    let bound = Duration::from_secs(3);

    let addr = api.clone();
    let (got, took) =
        tokio::task::spawn_blocking(move || half_request(&addr, b"PUT /kv/a HTTP/1.1\r\nHost: x\r\n"))
            .await
            .expect("task");
    assert!(took < bound, "half-sent headers: the connection stayed open {took:?}");
    assert!(!got.contains("200 OK"), "{got}");

    let addr = api.clone();
    let (got, took) = tokio::task::spawn_blocking(move || {
        half_request(&addr, b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
    })
    .await
    .expect("task");
    assert!(took < bound, "half-sent body: the connection stayed open {took:?}");
    assert!(got.starts_with("HTTP/1.1 408") && got.contains("request_timeout"), "{got}");

    // An idle keep-alive connection is closed too.
    let addr = api.clone();
    let (got, took) =
        tokio::task::spawn_blocking(move || half_request(&addr, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"))
            .await
            .expect("task");
    assert!(took < bound && got.starts_with("HTTP/1.1 200"), "{took:?} {got}");
    node.shutdown(false).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_client_connections_are_closed() {
    // A plain TCP server that answers one request per connection with
    // keep-alive and records when the client closes the connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let answered = Instant::now();
        // Blocks until the client closes its end (EOF).
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let eof = matches!(stream.read(&mut buf), Ok(0));
        let _ = closed_tx.send((eof, answered.elapsed()));
    });
    let client = ApiClient::with_idle_timeout(Duration::from_millis(300));
    let r = client.get(&addr, "/", Duration::from_secs(5)).await.expect("request");
    assert_eq!(r.status, 200);
    // The client is kept alive (and unused): only the pool's timer closes it.
    let (eof, after) = tokio::task::spawn_blocking(move || closed_rx.recv_timeout(Duration::from_secs(25)))
        .await
        .expect("task")
        .expect("server thread reports");
    assert!(eof && after < Duration::from_secs(5), "idle connection closed: eof={eof} after {after:?}");
    drop(client);
}
