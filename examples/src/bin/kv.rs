//! `kv`: the replicated key-value service.
//!
//! - `kv serve ...` runs one node: durable file stores, the gRPC raft
//!   transport (with the admin service for `raftctl` on the same port) and
//!   an HTTP/JSON API (see `raft_examples::service::api`).
//! - `kv demo` starts three nodes in this process on loopback, writes keys,
//!   stops the leader, shows a new leader take over with every key intact,
//!   restarts the old leader and shows it catch up. Exits non-zero on any
//!   failure. `kv demo --tls-dir DIR` runs it with TLS: mutual TLS between
//!   the raft ports, HTTPS APIs, nodes joining by certificate.
//!
//! Exit codes of `kv serve`: 0 after SIGINT/SIGTERM (a clean stop); 1 when
//! the node could not start or raft stopped by itself (a fatal storage
//! error: the data it would serve is frozen, so the process exits for its
//! supervisor to see); 3 when this server was removed from the cluster
//! (restarting it on the same data directory is pointless: wipe the data
//! directory and join it as a new server, or leave it stopped).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use raft::RaftState;
use raft_examples::service::api::ApiSettings;
use raft_examples::service::client::{encode_key, ApiClient};
use raft_examples::service::{HttpsConfig, KvNode, MetricsServer, NodeError, NodeExit, NodeOptions};
use tokio::time::Instant;

#[derive(Parser)]
#[command(name = "kv", version, about = "A replicated key-value service on raft")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of the service.
    Serve(Box<ServeArgs>),
    /// Run a three-node cluster in this process and show a failover.
    Demo(DemoArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Directory with ca.pem, node.pem and node-key.pem (a certificate
    /// valid for 127.0.0.1): run the demo over mutual TLS and HTTPS.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Server id, unique in the cluster for all time.
    #[arg(long)]
    id: String,
    /// Address of the raft gRPC transport and admin service (what peers and raftctl dial).
    #[arg(long, value_name = "HOST:PORT")]
    raft_addr: String,
    /// Address of the HTTP API.
    #[arg(long, value_name = "HOST:PORT")]
    api_addr: String,
    /// Directory of the log, stable store and snapshots.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Bootstrap a one-node cluster (first node only; ignored if the data directory has state).
    #[arg(long, conflicts_with = "join")]
    bootstrap: bool,
    /// HTTP API address of any member: ask it to add this node as a voter
    /// (ignored if the data directory has state).
    #[arg(long, value_name = "API_ADDR")]
    join: Option<String>,
    /// With --join: if this id is already a member at another raft address
    /// (the node moved, or replaces a lost machine), move it to this
    /// node's --raft-addr instead of being refused.
    #[arg(long, requires = "join")]
    replace_address: bool,
    /// Directory with ca.pem, node.pem and node-key.pem: mutual TLS on the
    /// raft port, and HTTPS on the API port, where a client certificate
    /// signed by ca.pem authenticates /cluster/* requests instead of the
    /// join token. Give it to every node or to none.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Cluster id every raft and admin RPC must carry.
    #[arg(long)]
    cluster_id: Option<String>,
    /// Largest value accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_value_bytes: usize,
    /// Raft heartbeat and election timeout, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout_ms: u64,
    /// How long an API request may take, including waiting for a leader, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// The cluster's shared secret: required of /cluster/join and
    /// /cluster/nodes requests (`Authorization: Bearer TOKEN`) and sent on
    /// this node's own (joining, registering, forwarding). Give every node
    /// the same one. Without it the node refuses those routes and cannot
    /// join, unless --tls-dir is given: then client certificates signed by
    /// the cluster CA are accepted instead (and nodes join with theirs).
    #[arg(long, env = "KV_JOIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    join_token: Option<String>,
    /// How long a client may take to send a request's headers (and how
    /// long an idle connection stays open), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// How long a client may take to send a request's body, in milliseconds (then 408).
    #[arg(long, default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// Requests this node forwards to the leader at once; more get 503
    /// overloaded with Retry-After at once.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_forwards: u64,
    /// How often raft checks whether to take a snapshot, in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_interval: u64,
    /// Log entries since the last snapshot that make raft take one.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_threshold: u64,
    /// Serve the raft metrics for Prometheus at http://HOST:PORT/metrics
    /// (series listed in the `raft::telemetry` docs). Off by default.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: logs sent to a file or a collector stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// `kv serve` exit code: raft stopped by itself (fatal error).
const EXIT_FAILED: u8 = 1;
/// `kv serve` exit code: this server was removed from the cluster.
const EXIT_REMOVED: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_tracing("info");
            match serve(*args).await {
                Ok(None) => Ok(()),
                Ok(Some(code)) => return ExitCode::from(code),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Demo(args) => {
            init_tracing("warn");
            demo(args.tls_dir).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one node until a signal (`Ok(None)`) or until the node ends on its
/// own (`Ok(Some(exit code))`).
async fn serve(args: ServeArgs) -> Result<Option<u8>, NodeError> {
    let data_dir = args.data_dir.clone();
    // Before the node starts: it registers its series when it starts.
    let _metrics = match &args.metrics_addr {
        Some(addr) => {
            let server = MetricsServer::start(addr).await?;
            tracing::info!(metrics_addr = %server.local_addr(), "serving Prometheus metrics at /metrics");
            Some(server)
        }
        None => None,
    };
    let mut opts = NodeOptions::new(args.id, args.raft_addr, args.api_addr, args.data_dir);
    opts.bootstrap = args.bootstrap;
    opts.join = args.join;
    opts.replace_address = args.replace_address;
    opts.tls_dir = args.tls_dir;
    opts.cluster_id = args.cluster_id;
    opts.api = ApiSettings {
        max_value_bytes: args.max_value_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        join_token: args.join_token,
        header_read_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        body_read_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
        max_forwards: usize::try_from(args.max_forwards).unwrap_or(usize::MAX),
    };
    opts.snapshot_interval = Duration::from_secs(args.snapshot_interval);
    opts.snapshot_threshold = args.snapshot_threshold;
    opts.election_timeout = Duration::from_millis(args.election_timeout_ms);
    let node = KvNode::start(opts).await?;
    tracing::info!(
        id = node.id(),
        raft_addr = node.raft_addr(),
        api = %node.api_url(),
        "serving; Ctrl-C to stop"
    );
    let exit = tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            None
        }
        exit = node.stopped() => Some(exit),
    };
    match exit {
        None => {
            tracing::info!("shutting down");
            node.shutdown(true).await?;
            Ok(None)
        }
        Some(NodeExit::Removed) => {
            tracing::error!(
                data_dir = %data_dir.display(),
                exit_code = EXIT_REMOVED,
                "this server was removed from the cluster; exiting. Do not restart it on this data \
                 directory: wipe it and join the cluster again as a new server (--join), or leave it stopped"
            );
            if let Err(e) = node.shutdown(false).await {
                tracing::warn!(error = %e, "stopping the removed node failed");
            }
            Ok(Some(EXIT_REMOVED))
        }
        Some(NodeExit::Failed) => {
            tracing::error!(
                exit_code = EXIT_FAILED,
                "the raft node stopped by itself after a fatal error (logged above, e.g. a storage \
                 failure); exiting so a supervisor can restart or replace this server"
            );
            if let Err(e) = node.shutdown(false).await {
                tracing::warn!(error = %e, "closing the stopped node failed");
            }
            Ok(Some(EXIT_FAILED))
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| NodeError::io("installing the SIGTERM handler", e))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| NodeError::io("waiting for Ctrl-C", e)),
        _ = term.recv() => Ok(()),
    }
}

// ---------------------------------------------------------------- demo

const IDS: [&str; 3] = ["node-1", "node-2", "node-3"];
const STEP: Duration = Duration::from_secs(15);
const REQUEST: Duration = Duration::from_secs(5);

/// Prints a line; a closed stdout (`kv demo | head`) is ignored.
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints a narrative line prefixed with the time since the demo started.
struct Clock(Instant);

impl Clock {
    fn say(&self, msg: impl AsRef<str>) {
        say(format!("[{:>5.2}s] {}", self.0.elapsed().as_secs_f64(), msg.as_ref()));
    }
}

/// What every demo node shares: the join token and, with `--tls-dir`, the
/// TLS directory.
struct DemoShared {
    token: String,
    tls_dir: Option<PathBuf>,
}

fn demo_options(
    i: usize,
    dir: &std::path::Path,
    raft_addr: &str,
    api_addr: &str,
    shared: &DemoShared,
) -> NodeOptions {
    let mut opts = NodeOptions::new(IDS[i], raft_addr, api_addr, dir.join(IDS[i]));
    opts.election_timeout = Duration::from_millis(300);
    opts.api.join_token = Some(shared.token.clone());
    opts.tls_dir = shared.tls_dir.clone();
    opts
}

/// A fresh random join token for the demo's nodes (128 bits from the
/// standard library's randomly keyed hasher, in hex).
fn demo_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut token = String::new();
    for part in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(part);
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        token.push_str(&format!("{:016x}", h.finish()));
    }
    token
}

/// Polls `check` until it returns `Some` or `STEP` passes.
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {STEP:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The index of the only leader among the running nodes that all running
/// nodes agree on.
fn agreed_leader(nodes: &[Option<KvNode>]) -> Option<usize> {
    let running: Vec<&KvNode> = nodes.iter().flatten().collect();
    let leader =
        nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.raft().state() == RaftState::Leader))?;
    running.iter().all(|n| leader_of(n).as_deref() == Some(IDS[leader])).then_some(leader)
}

/// The leader `node` knows of. Read from the metrics rather than
/// `Raft::leader()`, which can stay `None` on a node that learned of the
/// leader before the leader was in its configuration (see the service docs).
fn leader_of(node: &KvNode) -> Option<String> {
    node.raft().metrics().borrow().current_leader.as_ref().map(|(id, _)| id.to_string())
}

fn running(nodes: &[Option<KvNode>], i: usize) -> Result<&KvNode, String> {
    nodes[i].as_ref().ok_or_else(|| format!("{} is not running", IDS[i]))
}

async fn put(client: &ApiClient, api: SocketAddr, key: &str, value: &str) -> Result<(), String> {
    let resp = client
        .put(&api.to_string(), &format!("/kv/{}", encode_key(key)), value.to_owned(), REQUEST)
        .await
        .map_err(|e| format!("PUT {key} via {api}: {e}"))?;
    if !resp.status.is_success() {
        return Err(format!("PUT {key} via {api}: {} {}", resp.status, resp.text()));
    }
    Ok(())
}

async fn get(
    client: &ApiClient,
    api: SocketAddr,
    key: &str,
    consistency: &str,
) -> Result<Option<String>, String> {
    let path = format!("/kv/{}?consistency={consistency}", encode_key(key));
    let resp = client
        .get(&api.to_string(), &path, REQUEST)
        .await
        .map_err(|e| format!("GET {key} via {api}: {e}"))?;
    match resp.status.as_u16() {
        200 => Ok(Some(resp.text())),
        404 => Ok(None),
        _ => Err(format!("GET {key} via {api}: {} {}", resp.status, resp.text())),
    }
}

/// Checks that every key `0..n` reads back its value from `api`.
async fn check_keys(client: &ApiClient, api: SocketAddr, n: usize, consistency: &str) -> Result<(), String> {
    for i in 0..n {
        let key = format!("key-{i:03}");
        let want = format!("value-{i}");
        match get(client, api, &key, consistency).await? {
            Some(v) if v == want => {}
            other => {
                return Err(format!("{key} via {api} ({consistency}): expected {want:?}, got {other:?}"))
            }
        }
    }
    Ok(())
}

async fn demo(tls_dir: Option<PathBuf>) -> Result<(), String> {
    let clock = Clock(Instant::now());
    let dir = tempfile::Builder::new().prefix("kv-demo-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let client = match &tls_dir {
        Some(tls) => ApiClient::with_tls(HttpsConfig::load(tls).map_err(|e| e.to_string())?.client_config()),
        None => ApiClient::new(),
    };
    say(format!(
        "kv demo: three nodes in one process, gRPC on loopback, file stores in {}, sharing a fresh join token{}",
        dir.path().display(),
        if tls_dir.is_some() { "; mutual TLS on the raft ports, HTTPS APIs" } else { "" }
    ));

    let mut nodes: Vec<Option<KvNode>> = vec![None, None, None];
    let shared = DemoShared { token: demo_token(), tls_dir };
    let mut first = demo_options(0, dir.path(), "127.0.0.1:0", "127.0.0.1:0", &shared);
    first.bootstrap = true;
    let n1 = KvNode::start(first).await.map_err(|e| format!("starting {}: {e}", IDS[0]))?;
    let seed_api = n1.api_addr().to_string();
    nodes[0] = Some(n1);
    wait_for("node-1 to lead", || agreed_leader(&nodes)).await?;
    clock.say(format!("{} bootstrapped a one-node cluster and leads", IDS[0]));
    for i in 1..3 {
        let mut opts = demo_options(i, dir.path(), "127.0.0.1:0", "127.0.0.1:0", &shared);
        opts.join = Some(seed_api.clone());
        nodes[i] = Some(KvNode::start(opts).await.map_err(|e| format!("starting {}: {e}", IDS[i]))?);
    }
    wait_for("all three nodes to agree on the leader", || {
        let leader = agreed_leader(&nodes)?;
        let servers = nodes[leader].as_ref()?.raft().metrics().borrow().configuration.servers.len();
        (servers == 3).then_some(leader)
    })
    .await?;
    for n in nodes.iter().flatten() {
        clock.say(format!("  {:<7} raft (gRPC) {}  HTTP API {}", n.id(), n.raft_addr(), n.api_url()));
    }
    clock.say(format!("{} and {} joined through {}'s HTTP API as voters", IDS[1], IDS[2], IDS[0]));

    let leader = wait_for("a leader", || agreed_leader(&nodes)).await?;
    let t = Instant::now();
    for i in 0..100 {
        let via = running(&nodes, i % 3)?.api_addr();
        put(&client, via, &format!("key-{i:03}"), &format!("value-{i}")).await?;
    }
    clock.say(format!(
        "wrote 100 keys round-robin through all three HTTP APIs in {:.0?} (followers forward to the leader {}); each PUT returned once committed and applied",
        t.elapsed(),
        IDS[leader]
    ));
    let follower = (leader + 1) % 3;
    check_keys(&client, running(&nodes, follower)?.api_addr(), 100, "linearizable").await?;
    clock.say(format!("linearizable reads of all 100 keys through {} agree", IDS[follower]));

    let old_leader = leader;
    let (old_raft_addr, old_api_addr) = {
        let n = running(&nodes, old_leader)?;
        (n.raft_addr().to_owned(), n.api_addr().to_string())
    };
    let stopping = nodes[old_leader].take().ok_or("leader not running")?;
    let t = Instant::now();
    stopping.shutdown(false).await.map_err(|e| format!("stopping {}: {e}", IDS[old_leader]))?;
    clock.say(format!("stopped the leader {} (no leadership hand-over)", IDS[old_leader]));
    let new_leader = wait_for("a new leader", || agreed_leader(&nodes)).await?;
    clock.say(format!(
        "{} was elected the new leader {:.0?} after {} stopped",
        IDS[new_leader],
        t.elapsed(),
        IDS[old_leader]
    ));

    let other = (0..3).find(|&i| i != old_leader && i != new_leader).ok_or("no third node")?;
    let t = Instant::now();
    for i in 100..150 {
        let via = running(&nodes, if i % 2 == 0 { new_leader } else { other })?.api_addr();
        put(&client, via, &format!("key-{i:03}"), &format!("value-{i}")).await?;
    }
    check_keys(&client, running(&nodes, other)?.api_addr(), 150, "linearizable").await?;
    clock.say(format!(
        "wrote 50 more keys in {:.0?}; linearizable reads through {} see all 150: no acknowledged write was lost",
        t.elapsed(),
        IDS[other]
    ));

    let t = Instant::now();
    let restarted = restart(dir.path(), old_leader, &old_raft_addr, &old_api_addr, &shared).await?;
    let api = restarted.api_addr();
    nodes[old_leader] = Some(restarted);
    let leader_raft = running(&nodes, new_leader)?.raft().clone();
    let barrier = leader_raft.barrier(REQUEST).await.map_err(|e| format!("barrier: {e}"))?;
    let rejoined = running(&nodes, old_leader)?.raft().clone();
    tokio::time::timeout(STEP, rejoined.wait_applied(barrier))
        .await
        .map_err(|_| format!("{} did not catch up within {STEP:?}", IDS[old_leader]))?
        .map_err(|e| format!("waiting for {} to catch up: {e}", IDS[old_leader]))?;
    check_keys(&client, api, 150, "stale").await?;
    clock.say(format!(
        "restarted {} from its data directory: it caught up to index {barrier} in {:.0?} and its local copy holds all 150 keys",
        IDS[old_leader],
        t.elapsed()
    ));

    for n in nodes.into_iter().flatten() {
        let id = n.id().to_owned();
        n.shutdown(false).await.map_err(|e| format!("stopping {id}: {e}"))?;
    }
    clock.say("stopped all nodes; demo succeeded");
    Ok(())
}

/// Starts node `i` again on its old addresses; retries while the old
/// incarnation's sockets and directory lock are being released.
async fn restart(
    dir: &std::path::Path,
    i: usize,
    raft_addr: &str,
    api_addr: &str,
    shared: &DemoShared,
) -> Result<KvNode, String> {
    let deadline = Instant::now() + STEP;
    loop {
        match KvNode::start(demo_options(i, dir, raft_addr, api_addr, shared)).await {
            Ok(node) => return Ok(node),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "restart not possible yet; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("restarting {}: {e}", IDS[i])),
        }
    }
}
