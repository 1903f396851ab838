//! Helpers for the process-level tests: `kv serve` children that are
//! always killed (a Drop guard), a tiny blocking HTTP/1.1 client (HTTPS for
//! the nodes started with `--tls-dir`, see [`use_https`]), free loopback
//! ports and bounded polling.

#![allow(dead_code)]

pub mod certs;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_examples::service::https::rustls;
use serde_json::Value;

/// Election timeout the test nodes run with, in milliseconds.
pub const ELECTION_MS: &str = "300";
/// The join token test nodes share (given through `KV_JOIN_TOKEN`).
pub const JOIN_TOKEN: &str = "test-join-token";

/// A loopback address with a port that was free a moment ago, and never
/// handed out before by this process (a released ephemeral port can be
/// given again at once, which would give two test nodes one address).
pub fn free_addr() -> String {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr.to_string();
        }
    }
}

/// Polls `f` until it returns `Some`, failing the test after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP response: status and body.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Client TLS settings of the API addresses served over HTTPS.
static HTTPS: std::sync::Mutex<Vec<(String, Arc<rustls::ClientConfig>)>> = std::sync::Mutex::new(Vec::new());

/// From now on the helpers reach `addr` over HTTPS with `config` (done by
/// [`KvProc::start`] for nodes given `--tls-dir`).
pub fn use_https(addr: &str, config: Arc<rustls::ClientConfig>) {
    HTTPS.lock().unwrap_or_else(|e| e.into_inner()).push((addr.to_owned(), config));
}

fn https_config(addr: &str) -> Option<Arc<rustls::ClientConfig>> {
    let registered = HTTPS.lock().unwrap_or_else(|e| e.into_inner());
    registered.iter().rev().find(|(a, _)| a == addr).map(|(_, c)| c.clone())
}

/// Sends one request (`head` and `body`) to `addr` and reads until the
/// server closes: over TLS with `tls` if given, else plain.
fn exchange(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    head: &str,
    body: &[u8],
) -> std::io::Result<Resp> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(15)))?;
    let mut raw = Vec::new();
    match tls {
        None => {
            let mut stream = stream;
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            stream.read_to_end(&mut raw)?;
        }
        Some(config) => {
            let host =
                addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
            let name =
                rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
            let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            tls.write_all(head.as_bytes())?;
            tls.write_all(body)?;
            match tls.read_to_end(&mut raw) {
                Ok(_) => {}
                // A close without close_notify after a whole answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                Err(e) => return Err(e),
            }
        }
    }
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("bad response: {:?}", String::from_utf8_lossy(&raw))))
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the answer
/// (over HTTPS if `addr` was registered with [`use_https`]).
pub fn http(method: &str, addr: &str, path: &str, body: &[u8]) -> std::io::Result<Resp> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(addr, https_config(addr), &head, body)
}

/// Sends one HTTPS request with `tls` (whatever [`use_https`] says),
/// with `Authorization: Bearer {token}` if a token is given.
pub fn https(
    method: &str,
    addr: &str,
    path: &str,
    body: &[u8],
    tls: Arc<rustls::ClientConfig>,
    token: Option<&str>,
) -> std::io::Result<Resp> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(addr, Some(tls), &head, body)
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Resp { status, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Sends one HTTP/1.1 request with `Authorization: Bearer {token}` (the
/// cluster routes' credentials).
pub fn http_auth(method: &str, addr: &str, path: &str, body: &[u8], token: &str) -> std::io::Result<Resp> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(addr, https_config(addr), &head, body)
}

/// `PUT /kv/{key}`.
pub fn put(addr: &str, key: &str, value: &str) -> std::io::Result<Resp> {
    http("PUT", addr, &format!("/kv/{key}"), value.as_bytes())
}

/// `GET /kv/{key}?consistency=...`.
pub fn get(addr: &str, key: &str, consistency: &str) -> std::io::Result<Resp> {
    http("GET", addr, &format!("/kv/{key}?consistency={consistency}"), b"")
}

/// `GET /status` as JSON, if the node answers.
pub fn status(addr: &str) -> Option<Value> {
    http("GET", addr, "/status", b"").ok().filter(|r| r.status == 200).map(|r| r.json())
}

/// One `kv serve` process and what is needed to restart it.
pub struct KvProc {
    /// Server id.
    pub id: String,
    /// Raft (gRPC) address.
    pub raft_addr: String,
    /// HTTP API address.
    pub api_addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl KvProc {
    /// Starts `kv serve` for `id` under `dir` with `first_args` (e.g.
    /// `--bootstrap` or `--join`, used only for this start) and `extra`
    /// arguments (used on every start).
    pub fn start(dir: &Path, id: &str, first_args: &[String], extra: &[String]) -> Self {
        let mut p = KvProc {
            id: id.to_owned(),
            raft_addr: free_addr(),
            api_addr: free_addr(),
            data_dir: dir.join(id),
            log: dir.join(format!("{id}.log")),
            extra: extra.to_vec(),
            child: None,
        };
        // A node with --tls-dir serves HTTPS: reach it with its certificate.
        let args: Vec<&String> = first_args.iter().chain(extra).collect();
        if let Some(tls) = args.iter().position(|a| *a == "--tls-dir").and_then(|i| args.get(i + 1)) {
            let tls = Path::new(tls.as_str());
            let config = raft_examples::service::https::client_config(
                &tls.join("ca.pem"),
                Some((&tls.join("node.pem"), &tls.join("node-key.pem"))),
            )
            .expect("client TLS settings from --tls-dir");
            use_https(&p.api_addr, config);
        }
        p.spawn(first_args);
        p
    }

    fn spawn(&mut self, first_args: &[String]) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(["serve", "--id", &self.id, "--raft-addr", &self.raft_addr, "--api-addr", &self.api_addr])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--election-timeout-ms", ELECTION_MS])
            .args(first_args)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            // The env form of `--join-token`; an explicit flag in the
            // arguments wins over it.
            .env("KV_JOIN_TOKEN", JOIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn kv serve");
        self.child = Some(child);
    }

    /// Restarts the process with no bootstrap/join flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.id);
        self.spawn(&[]);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits (bounded) for the process to exit on its own; returns its
    /// exit code (`None` if killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("process was started");
        let status = poll(&format!("{} to exit", self.id), limit, || child.try_wait().ok().flatten());
        self.child = None;
        status.code()
    }

    /// The node's data directory (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KvProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", self.id);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The id of the leader every node in `nodes` agrees on, with every node
/// seeing `members` servers.
pub fn agreed_leader(nodes: &[&KvProc], members: usize) -> Option<String> {
    let mut leader = None;
    for n in nodes {
        let s = status(&n.api_addr)?;
        let servers = s["configuration"]["servers"].as_array()?;
        if servers.len() != members {
            return None;
        }
        // A joiner is added as a non-voter and promoted once caught up: the
        // cluster is settled when every member votes and the configuration
        // that says so is committed (a membership change in flight would
        // refuse the next one with `ConfigurationChangeInProgress`).
        if servers.iter().any(|m| m["suffrage"] != "voter")
            || s["configuration"]["index"].as_u64()? > s["commit_index"].as_u64()?
        {
            return None;
        }
        let l = s["leader"]["id"].as_str()?.to_owned();
        // The leader's API address must be known for forwarding.
        s["leader"]["api_addr"].as_str()?;
        if leader.get_or_insert_with(|| l.clone()) != &l {
            return None;
        }
    }
    leader
}

/// Starts `n` nodes: the first bootstraps, the others join through it;
/// returns once all agree on a leader.
pub fn start_cluster(dir: &Path, n: usize, extra: &[String]) -> Vec<KvProc> {
    let first = KvProc::start(dir, "n1", &["--bootstrap".to_owned()], extra);
    poll("n1 to lead", Duration::from_secs(20), || agreed_leader(&[&first], 1));
    let mut nodes = vec![first];
    for i in 2..=n {
        let join = vec!["--join".to_owned(), nodes[0].api_addr.clone()];
        nodes.push(KvProc::start(dir, &format!("n{i}"), &join, extra));
    }
    let refs: Vec<&KvProc> = nodes.iter().collect();
    poll("all nodes to agree on a leader", Duration::from_secs(30), || agreed_leader(&refs, n));
    nodes
}

/// Runs `raftctl` with `args`.
pub fn raftctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftctl")).args(args).output().expect("run raftctl")
}
