//! `--tls-dir` puts the kv HTTP API under HTTPS: nodes join, register and
//! forward to the leader by certificate (no join token needed), a client
//! certificate signed by the cluster CA authenticates `/cluster/*` instead
//! of the token, a client without one still needs the token (401 without
//! it, 403 with a wrong one), a certificate of another CA gets nowhere,
//! and a plain HTTP request to the HTTPS port is told to use https.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::certs::TestCa;
use common::{free_addr, http};
use raft::RaftState;
use raft_examples::service::client::{ApiClient, ApiResponse};
use raft_examples::service::https::{client_config, rustls};
use raft_examples::service::{KvNode, NodeOptions};
use serde_json::json;
use tokio::time::Instant;

const REQUEST: Duration = Duration::from_secs(5);
const SETTLE: Duration = Duration::from_secs(30);

fn options(dir: &Path, id: &str, tls: &Path) -> NodeOptions {
    let mut opts = NodeOptions::new(id, free_addr(), free_addr(), dir.join(id));
    opts.election_timeout = Duration::from_millis(300);
    opts.tls_dir = Some(tls.to_owned());
    opts
}

/// A client trusting `ca` (a PEM file) and presenting `identity` (a
/// `(cert PEM, key PEM)` pair written under `dir` as `name`), if given.
fn client(dir: &Path, ca: &Path, identity: Option<(&str, &(String, String))>) -> Arc<rustls::ClientConfig> {
    match identity {
        None => client_config(ca, None).expect("client config"),
        Some((name, (cert, key))) => {
            let (cert_path, key_path) =
                (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
            std::fs::write(&cert_path, cert).expect("write cert");
            std::fs::write(&key_path, key).expect("write key");
            client_config(ca, Some((&cert_path, &key_path))).expect("client config")
        }
    }
}

fn code(r: &ApiResponse) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_owned()
}

/// Polls `f` every 20 ms until it returns `Some`, failing after `limit`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register(client: &ApiClient, api: &str, id: &str) -> Result<ApiResponse, String> {
    client
        .send_json(
            axum::http::Method::PUT,
            api,
            &format!("/cluster/nodes/{id}"),
            &json!({ "api_addr": "127.0.0.1:9" }),
            REQUEST,
        )
        .await
        .map_err(|e| e.to_string())
}

fn registered(node: &KvNode, id: &str) -> bool {
    node.fsm().nodes().read().unwrap_or_else(|e| e.into_inner()).contains_key(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_nodes_join_by_certificate_alone_and_forward_over_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let ca = TestCa::new("kv test CA");
    ca.write_tls_dir(&tls);

    // No join token anywhere: the nodes authenticate by certificate.
    let mut first = options(dir.path(), "n1", &tls);
    first.bootstrap = true;
    let n1 = KvNode::start(first).await.expect("start n1");
    assert!(n1.api_url().starts_with("https://"), "{}", n1.api_url());
    wait_for("n1 to lead", SETTLE, || async { (n1.raft().state() == RaftState::Leader).then_some(()) }).await;
    let mut nodes = vec![n1];
    for id in ["n2", "n3"] {
        let mut opts = options(dir.path(), id, &tls);
        opts.join = Some(nodes[0].api_addr().to_string());
        nodes.push(KvNode::start(opts).await.unwrap_or_else(|e| panic!("{id} joins without a token: {e}")));
    }

    // A client with the CA but no certificate (and no token): the data
    // routes work, through every node.
    let anon = ApiClient::with_tls(client(dir.path(), &tls.join("ca.pem"), None));
    let leader = wait_for("one leader whose API address every node knows", SETTLE, || async {
        let mut leader = None;
        for n in &nodes {
            let s = anon.get(&n.api_addr().to_string(), "/status", REQUEST).await.ok()?.json();
            if s["configuration"]["servers"].as_array()?.len() != 3 {
                return None;
            }
            s["leader"]["api_addr"].as_str()?;
            let id = s["leader"]["id"].as_str()?.to_owned();
            if leader.get_or_insert_with(|| id.clone()) != &id {
                return None;
            }
        }
        leader
    })
    .await;
    let followers: Vec<&KvNode> = nodes.iter().filter(|n| n.id() != leader).collect();
    let via = followers[0].api_addr().to_string();
    let r = anon.put(&via, "/kv/greeting", "hello over https", REQUEST).await.expect("PUT via a follower");
    assert_eq!(r.status, 200, "forwarded to the leader over HTTPS: {}", r.text());
    assert_eq!(r.headers.get("x-kv-node").and_then(|v| v.to_str().ok()), Some(leader.as_str()));
    let other = followers[1].api_addr().to_string();
    let r = anon.get(&other, "/kv/greeting?consistency=linearizable", REQUEST).await.expect("GET");
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello over https"));

    // Cluster changes without a certificate: this cluster has no token,
    // so only a certificate would do, and the answer says so.
    let r = register(&anon, &via, "intruder").await.expect("an answer");
    assert_eq!((r.status.as_u16(), code(&r).as_str()), (403, "join_token_not_set"), "{}", r.text());
    assert!(r.text().contains("client certificate"), "{}", r.text());

    // Plain HTTP to the HTTPS port is told to use https.
    let addr = via.clone();
    let r = tokio::task::spawn_blocking(move || http("GET", &addr, "/status", b"")).await.expect("task");
    let r = r.expect("a plain HTTP answer");
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("https_required")), "{}", r.body);
    // And a plain HTTP client gets a clear error.
    let plain = ApiClient::new().get(&via, "/status", REQUEST).await.expect("an answer");
    assert_eq!(plain.status, 400, "{}", plain.text());

    for n in nodes {
        n.shutdown(false).await.expect("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_routes_over_https_take_a_ca_signed_certificate_or_the_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let ca = TestCa::new("kv test CA");
    ca.write_tls_dir(&tls);
    let mut opts = options(dir.path(), "solo", &tls);
    opts.bootstrap = true;
    opts.api.join_token = Some("s3cret".into());
    let node = KvNode::start(opts).await.expect("start");
    let api = node.api_addr().to_string();
    wait_for("solo to lead", SETTLE, || async { (node.raft().state() == RaftState::Leader).then_some(()) })
        .await;
    let ca_pem = tls.join("ca.pem");

    // An operator's certificate signed by the cluster CA: no token needed.
    let operator =
        ApiClient::with_tls(client(dir.path(), &ca_pem, Some(("operator", &ca.issue("operator")))));
    let r = register(&operator, &api, "by-cert").await.expect("register");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(registered(&node, "by-cert"));

    // No certificate: the token is still required.
    let anon = ApiClient::with_tls(client(dir.path(), &ca_pem, None));
    let r = register(&anon, &api, "anon").await.expect("an answer");
    assert_eq!((r.status.as_u16(), code(&r).as_str()), (401, "unauthorized"), "{}", r.text());
    let mut wrong = axum::http::HeaderMap::new();
    wrong.insert(axum::http::header::AUTHORIZATION, "Bearer s3cret-not".parse().expect("header"));
    wrong.insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("header"));
    let body = bytes::Bytes::from_static(br#"{"api_addr": "127.0.0.1:9"}"#);
    let r = anon
        .send(axum::http::Method::PUT, &api, "/cluster/nodes/anon", wrong.clone(), body.clone(), REQUEST)
        .await
        .expect("an answer");
    assert_eq!((r.status.as_u16(), code(&r).as_str()), (403, "forbidden"), "{}", r.text());
    let join = json!({ "id": "anon", "raft_addr": free_addr(), "api_addr": free_addr() });
    let r = anon
        .send_json(axum::http::Method::POST, &api, "/cluster/join", &join, REQUEST)
        .await
        .expect("an answer");
    assert_eq!((r.status.as_u16(), code(&r).as_str()), (401, "unauthorized"), "{}", r.text());
    assert!(!registered(&node, "anon"));
    let mut right = wrong;
    right.insert(axum::http::header::AUTHORIZATION, "Bearer s3cret".parse().expect("header"));
    let r = anon
        .send(axum::http::Method::PUT, &api, "/cluster/nodes/by-token", right, body, REQUEST)
        .await
        .expect("an answer");
    assert_eq!(r.status, 200, "the token over HTTPS: {}", r.text());

    // A certificate from another CA is no credential: the handshake fails.
    let rogue_ca = TestCa::new("rogue CA");
    let rogue = ApiClient::with_tls(client(dir.path(), &ca_pem, Some(("rogue", &rogue_ca.issue("rogue")))));
    let r = register(&rogue, &api, "rogue").await;
    assert!(r.as_ref().map_or(true, |r| !r.status.is_success()), "{:?}", r.map(|r| r.status));
    assert!(!registered(&node, "rogue"));
    // Nor does a client that trusts another CA get to talk to the node.
    std::fs::write(dir.path().join("rogue-ca.pem"), rogue_ca.pem()).expect("write");
    let stranger = ApiClient::with_tls(client(dir.path(), &dir.path().join("rogue-ca.pem"), None));
    assert!(stranger.get(&api, "/status", REQUEST).await.is_err());
    node.shutdown(false).await.expect("stop");
}

#[tokio::test]
async fn a_bad_tls_file_is_named_when_the_node_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    TestCa::new("kv test CA").write_tls_dir(&tls);
    std::fs::write(tls.join("node-key.pem"), "no key here").expect("write");
    let mut opts = options(dir.path(), "n1", &tls);
    opts.bootstrap = true;
    let err = KvNode::start(opts).await.err().expect("a bad key is refused").to_string();
    assert!(err.contains("node-key.pem"), "{err}");
    std::fs::remove_file(tls.join("node.pem")).expect("remove");
    let mut opts = options(dir.path(), "n1", &tls);
    opts.bootstrap = true;
    let err = KvNode::start(opts).await.err().expect("a missing certificate is refused").to_string();
    assert!(err.contains("node.pem"), "{err}");
}

/// Connects to `addr`, sends `bytes` (over TLS with `tls` if given), then
/// reads until the server closes the connection; returns what came back
/// and how long it took.
fn half_request(addr: &str, tls: Option<Arc<rustls::ClientConfig>>, bytes: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    // An error (the 10 s read timeout) fails the caller's bound.
    match tls {
        None => {
            let mut stream = stream;
            stream.write_all(bytes).expect("send");
            let _ = stream.read_to_end(&mut got);
        }
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let conn = rustls::ClientConnection::new(config, name).expect("client");
            let mut tls = rustls::StreamOwned::new(conn, stream);
            tls.write_all(bytes).expect("send");
            let _ = tls.read_to_end(&mut got);
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_handshakes_over_https_are_closed_within_the_timeouts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    TestCa::new("kv test CA").write_tls_dir(&tls);
    let mut opts = options(dir.path(), "solo", &tls);
    opts.bootstrap = true;
    opts.api.header_read_timeout = Duration::from_millis(300);
    opts.api.body_read_timeout = Duration::from_millis(300);
    let node = KvNode::start(opts).await.expect("start");
    let api = node.api_addr().to_string();
    let config = client(dir.path(), &tls.join("ca.pem"), None);
    let bound = Duration::from_secs(3);
    // (what, TLS client or raw TCP, bytes sent, expected start of the answer)
    type Case<'a> = (&'a str, Option<Arc<rustls::ClientConfig>>, &'a [u8], &'a str);
    let cases: [Case; 5] = [
        ("a connection that sends nothing", None, b"", ""),
        ("a half-sent TLS handshake", None, b"\x16\x03\x01\x02\x00\x01", ""),
        ("half-sent headers over TLS", Some(config.clone()), b"PUT /kv/a HTTP/1.1\r\nHost: x\r\n", ""),
        (
            "a half-sent body over TLS",
            Some(config.clone()),
            b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part",
            "HTTP/1.1 408",
        ),
        (
            "an idle keep-alive TLS connection",
            Some(config),
            b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 200",
        ),
    ];
    for (what, tls, bytes, answer) in cases {
        let addr = api.clone();
        let (got, took) =
            tokio::task::spawn_blocking(move || half_request(&addr, tls, bytes)).await.expect("task");
        assert!(took < bound, "{what}: the connection stayed open {took:?}");
        if answer.is_empty() {
            assert!(!got.contains("200 OK"), "{what}: {got}");
        } else {
            assert!(got.starts_with(answer), "{what}: expected {answer:?}, got {got:?}");
        }
    }
    node.shutdown(false).await.expect("stop");
}

#[test]
fn kv_demo_runs_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    TestCa::new("kv demo CA").write_tls_dir(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kv"))
        .arg("demo")
        .arg("--tls-dir")
        .arg(dir.path())
        .output()
        .expect("run kv demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("HTTPS APIs") && stdout.contains("https://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("demo succeeded"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixing_tls_and_plain_nodes_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    TestCa::new("kv test CA").write_tls_dir(&tls);
    let mut plain = NodeOptions::new("plain", free_addr(), free_addr(), dir.path().join("plain"));
    plain.bootstrap = true;
    plain.api.join_token = Some("s3cret".into());
    let plain = KvNode::start(plain).await.expect("start the plain node");

    // A TLS node asked to join a plain one: its handshake fails, and says why.
    let mut joiner = options(dir.path(), "tls", &tls);
    joiner.join = Some(plain.api_addr().to_string());
    joiner.join_timeout = Duration::from_millis(500);
    let err = KvNode::start(joiner).await.err().expect("no TLS on the other side").to_string();
    assert!(err.contains("does not speak TLS") && err.contains("--tls-dir"), "{err}");

    // A plain node asked to join a TLS one is told to use https.
    let mut seed = options(dir.path(), "seed", &tls);
    seed.bootstrap = true;
    let seed = KvNode::start(seed).await.expect("start the TLS node");
    let mut joiner = NodeOptions::new("plain-2", free_addr(), free_addr(), dir.path().join("plain-2"));
    joiner.join = Some(seed.api_addr().to_string());
    joiner.api.join_token = Some("s3cret".into());
    let err = KvNode::start(joiner).await.err().expect("plain HTTP to an HTTPS port").to_string();
    assert!(err.contains("https_required"), "{err}");
    plain.shutdown(false).await.expect("stop");
    seed.shutdown(false).await.expect("stop");
}
