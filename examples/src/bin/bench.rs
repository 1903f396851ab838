//! The benchmark: a cluster of N Raft nodes in one process and C clients
//! (tokio tasks) that each issue one operation at a time against the leader,
//! the next as soon as the last returns (a closed loop).
//!
//! ```text
//! cargo run --release -p raft-examples --bin bench -- \
//!     [--nodes 3] [--clients 256] [--payload 64] [--ops N | --seconds S] \
//!     [--store mem|file] [--transport inmem|grpc] [--dir PATH] \
//!     [--read-ratio 0.0] [--read-mode read_index|barrier|lease|follower] [--snapshot-interval 0.2] \
//!     [--log-window-mb M] [--warmup 1] [--cpu-hogs N] [--file-caller-writes] [--json]
//! cargo run --release -p raft-examples --bin bench -- --restart \
//!     [--restart-entries 1000000] [--payload 64] [--restart-dir PATH] [--log-window-mb M] [--json]
//! ```
//!
//! A write is `raft.apply(payload)` with a fresh `payload`-byte command; a
//! read (a fraction `--read-ratio` of the operations) is
//! `raft.linearizable_read()` (`read_index`), `raft.barrier()` (`barrier`),
//! `raft.read(ReadPolicy::Lease)` on the leader (`lease`), or
//! `raft.read(ReadPolicy::ReadIndex)` on a follower (`follower`: a
//! linearizable follower read; each client reads at one follower, the
//! clients spread over the followers).
//! The first `--warmup` seconds are run but not counted (leader elected,
//! caches and allocators warm). Latencies go into an HDR histogram.
//!
//! Output: a readable table, then one JSON line with `ops_per_sec`,
//! `p50_us`, `p99_us`, `p999_us`, `cpu_s` (user + system CPU of the whole
//! process during the measured window, from `/proc/self/stat`),
//! `peak_rss_mb` (`VmHWM`: the whole process's peak), `rss_end_mb` (`VmRSS`
//! when the measured window ends), `log_window_peak_mb` / `log_window_end_mb`
//! (per node, the payload bytes its protocol core held in memory:
//! `Metrics::log_window_bytes`, sampled every 50 ms), `log_fetches` /
//! `log_fetched_mb` (entries leaders read back from their log stores for
//! followers), `cpu_hogs`, `cpu_us_per_op`, `polls_per_op` (polls of the
//! nodes' tasks per operation, by kind of task: each follows a wake-up, see
//! `raft::telemetry::task_polls`), `worker_parks_per_op` (tokio worker
//! threads going idle per operation: each ends with an OS wake-up),
//! `runtime_busy_us_per_op` and every setting. `--cpu-hogs N` runs N
//! busy-loop child processes for the whole run (warm-up included), to
//! measure on a CPU shared with other work. With `--json` only the JSON
//! line is printed. No flag weakens durability or safety: the file store
//! fsyncs every append and followers acknowledge only durable entries.
//!
//! `--restart` runs no cluster: it measures how one node with a long
//! uncompacted log restarts (time to be ready as a follower, FSM replay,
//! RSS in a fresh child process); see the `restart` module.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use raft::transport::inmem::InmemNetwork;
use raft::{
    async_trait, BoxError, Config, Configuration, Fsm, FsmSnapshot, Log, Raft, RaftState, ReadPolicy, Server,
    SnapshotReader, SnapshotWriter, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "bench/contention.rs"]
mod contention;
#[path = "bench/restart.rs"]
mod restart;
#[path = "bench/window.rs"]
mod window;

/// The bench links mimalloc as its global allocator, as allocation-heavy
/// production services commonly do: a write's payload is allocated by the
/// client task and freed by another thread once the entry is compacted,
/// which glibc's allocator handles poorly (arena locks, consolidation).
/// The output names the allocator; build with `--features system-allocator`
/// to measure with the system's.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator's name, for the output.
const ALLOCATOR_NAME: &str = if cfg!(feature = "system-allocator") { "system" } else { "mimalloc" };

/// Per-operation timeout handed to `apply` / `barrier`.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the first leader.
const ELECTION_WAIT: Duration = Duration::from_secs(20);

/// Log store choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// `raft_store_mem::InmemStore` (no disk).
    Mem,
    /// `raft_store_file::FileStore` (fsync'd write-ahead log).
    File,
}

/// Transport choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TransportKind {
    /// The in-process network of `raft::transport::inmem`.
    Inmem,
    /// gRPC over loopback TCP.
    Grpc,
}

/// How reads are made linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReadMode {
    /// `Raft::linearizable_read`: ReadIndex, no log write.
    #[value(name = "read_index")]
    ReadIndex,
    /// `Raft::barrier`: commits a barrier entry through the log.
    #[value(name = "barrier")]
    Barrier,
    /// `Raft::read(ReadPolicy::Lease)` on the leader: no quorum round while
    /// its lease holds.
    #[value(name = "lease")]
    Lease,
    /// `Raft::read(ReadPolicy::ReadIndex)` on a follower: a read index from
    /// the leader, served once the follower applied it.
    #[value(name = "follower")]
    Follower,
}

/// Command-line flags (the workspace's benchmark contract).
#[derive(Parser, Debug, Clone)]
#[command(name = "bench", about = "Closed-loop Raft benchmark: N nodes in one process, C clients")]
struct Args {
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients, each with one operation in flight.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Bytes per write command.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Total operations to measure (after the warm-up).
    #[arg(long, conflicts_with = "seconds")]
    ops: Option<u64>,
    /// Seconds to measure (after the warm-up); default 10 if --ops is not given.
    #[arg(long)]
    seconds: Option<f64>,
    /// Log and stable store.
    #[arg(long, value_enum, default_value_t = StoreKind::Mem)]
    store: StoreKind,
    /// Transport between the nodes.
    #[arg(long, value_enum, default_value_t = TransportKind::Inmem)]
    transport: TransportKind,
    /// Fraction of operations that are linearizable reads (0.0-1.0).
    #[arg(long = "read-ratio", default_value_t = 0.0)]
    read_ratio: f64,
    /// How reads are made linearizable.
    #[arg(long = "read-mode", value_enum, default_value_t = ReadMode::ReadIndex)]
    read_mode: ReadMode,
    /// Directory for the file store (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds between the nodes' snapshot checks (`Config::snapshot_interval`;
    /// the library's default is 120). A node keeps the log since its last
    /// compaction in memory: at ~1M writes/s a 1 s interval holds ~1M
    /// entries per node between compactions.
    #[arg(long = "snapshot-interval", default_value_t = 0.2)]
    snapshot_interval: f64,
    /// Seconds of warm-up run before measuring (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
    /// Instead of running a cluster, measure the restart of one node whose
    /// file store holds `--restart-entries` uncompacted entries of
    /// `--payload` bytes (see the `restart` module): time to reopen its
    /// stores and be ready as a follower, FSM replay, and its RSS in a
    /// fresh child process. Always uses the file store (`--store` is
    /// ignored).
    #[arg(long)]
    restart: bool,
    /// Entries in the restarted node's log (`--restart`).
    #[arg(long = "restart-entries", default_value_t = 1_000_000)]
    restart_entries: u64,
    /// Directory holding the restarted node's stores (`--restart`): built
    /// there if it holds none, reused as is if it does, kept afterwards.
    /// Default: a temporary directory, removed at the end.
    #[arg(long = "restart-dir")]
    restart_dir: Option<PathBuf>,
    /// `Config::max_log_window_bytes` of every node, in MiB: the entry
    /// payloads a node's protocol core keeps in memory (default: the
    /// library's default).
    #[arg(long = "log-window-mb")]
    log_window_mb: Option<f64>,
    /// Internal: the child process of `--restart` (`--restart-dir` is then
    /// the node's directory).
    #[arg(long = "restart-child", hide = true)]
    restart_child: bool,
    /// Busy-loop child processes competing for the CPU during the run
    /// (0: a quiet machine); see the `contention` module.
    #[arg(long = "cpu-hogs", default_value_t = 0)]
    cpu_hogs: usize,
    /// `--store file`: the calling task writes and syncs the log itself
    /// when it is idle (`FileStoreOptions::caller_writes = true`) instead
    /// of handing every write to the file store's writer thread.
    #[arg(long = "file-caller-writes")]
    file_caller_writes: bool,
    /// Internal: a `--cpu-hogs` child process (spins until killed).
    #[arg(long = "cpu-hog-child", hide = true)]
    cpu_hog_child: bool,
}

/// A trivial state machine: counts commands and bytes.
#[derive(Default)]
struct BenchFsm {
    commands: u64,
    bytes: u64,
}

struct BenchSnapshot {
    commands: u64,
    bytes: u64,
}

#[async_trait]
impl FsmSnapshot for BenchSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        sink.write_all(&self.commands.to_le_bytes()).await?;
        sink.write_all(&self.bytes.to_le_bytes()).await?;
        Ok(())
    }
}

#[async_trait]
impl Fsm for BenchFsm {
    type Response = u64;

    async fn apply(&mut self, log: &Log) -> u64 {
        self.commands += 1;
        self.bytes += log.data.len() as u64;
        self.commands
    }

    async fn apply_batch(&mut self, logs: &[Log]) -> Vec<u64> {
        logs.iter()
            .map(|log| {
                self.commands += 1;
                self.bytes += log.data.len() as u64;
                self.commands
            })
            .collect()
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Ok(Box::new(BenchSnapshot { commands: self.commands, bytes: self.bytes }))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        let mut buf = [0u8; 16];
        snapshot.read_exact(&mut buf).await?;
        let (c, b) = buf.split_at(8);
        self.commands = u64::from_le_bytes(c.try_into()?);
        self.bytes = u64::from_le_bytes(b.try_into()?);
        Ok(())
    }
}

type Node = Raft<BenchFsm>;

fn node_config(id: &str, snapshot_interval: Duration) -> Config {
    Config {
        local_id: id.into(),
        heartbeat_timeout: Duration::from_millis(500),
        election_timeout: Duration::from_millis(500),
        leader_lease_timeout: Duration::from_millis(500),
        batch_apply: true,
        // Check for a snapshot every `--snapshot-interval` (default 120 s)
        // so the log is compacted during a run and memory stays bounded, as
        // in a long-running service; the threshold (8192 entries) and
        // trailing logs keep their defaults.
        snapshot_interval,
        ..Config::default()
    }
}

/// `config` with `Config::max_log_window_bytes` set to `bytes` if given.
fn with_log_window(config: Config, bytes: Option<usize>) -> Config {
    match bytes {
        Some(max_log_window_bytes) => Config { max_log_window_bytes, ..config },
        None => config,
    }
}

impl Args {
    /// `--log-window-mb` in bytes.
    fn log_window(&self) -> Option<usize> {
        self.log_window_mb.map(|mb| (mb * (1 << 20) as f64) as usize)
    }
}

/// Where the file stores live, removed at the end.
enum DataDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(t) => t.path(),
            DataDir::Given(p) => p,
        }
    }
}

/// Starts one node over `transport` with the chosen store.
async fn start_node<T: Transport>(
    transport: T,
    id: &str,
    store: StoreKind,
    dir: Option<&Path>,
    snapshot_interval: Duration,
    log_window: Option<usize>,
    caller_writes: bool,
) -> Result<Node, BoxError> {
    let config = with_log_window(node_config(id, snapshot_interval), log_window);
    let node = match (store, dir) {
        (StoreKind::File, Some(dir)) => {
            let base = dir.join(id);
            let options = raft_store_file::FileStoreOptions {
                caller_writes,
                ..raft_store_file::FileStoreOptions::default()
            };
            let logs = raft_store_file::FileStore::open_with(base.join("log"), options).await?;
            let snaps = raft_store_file::FileSnapshotStore::new(base.join("snapshots"), 2).await?;
            Raft::new(config, BenchFsm::default(), logs.clone(), logs, snaps, transport).await?
        }
        _ => {
            let logs = raft_store_mem::InmemStore::new();
            let snaps = raft_store_mem::InmemSnapshotStore::new();
            Raft::new(config, BenchFsm::default(), logs.clone(), logs, snaps, transport).await?
        }
    };
    Ok(node)
}

/// Builds, bootstraps and starts the cluster; returns the nodes.
async fn start_cluster(args: &Args, dir: Option<&Path>) -> Result<Vec<Node>, BoxError> {
    let ids: Vec<String> = (1..=args.nodes).map(|i| format!("node-{i}")).collect();
    let snapshot_interval = Duration::from_secs_f64(args.snapshot_interval);
    let mut nodes = Vec::new();
    match args.transport {
        TransportKind::Inmem => {
            let net = InmemNetwork::new();
            let configuration =
                Configuration::new(ids.iter().map(|id| Server::voter(id.as_str(), id.as_str())).collect());
            for id in &ids {
                let node = start_node(
                    net.transport(id.as_str()),
                    id,
                    args.store,
                    dir,
                    snapshot_interval,
                    args.log_window(),
                    args.file_caller_writes,
                )
                .await?;
                node.bootstrap_cluster(configuration.clone()).await?;
                nodes.push(node);
            }
        }
        TransportKind::Grpc => {
            let mut transports = Vec::new();
            for _ in &ids {
                let config = raft_transport_grpc::GrpcConfig::default();
                transports.push(raft_transport_grpc::GrpcTransport::bind("127.0.0.1:0", config).await?);
            }
            let configuration = Configuration::new(
                ids.iter()
                    .zip(&transports)
                    .map(|(id, t)| Server::voter(id.as_str(), t.local_addr()))
                    .collect(),
            );
            for (id, transport) in ids.iter().zip(transports) {
                let node = start_node(
                    transport,
                    id,
                    args.store,
                    dir,
                    snapshot_interval,
                    args.log_window(),
                    args.file_caller_writes,
                )
                .await?;
                node.bootstrap_cluster(configuration.clone()).await?;
                nodes.push(node);
            }
        }
    }
    Ok(nodes)
}

/// Index of the node that is leader, waiting up to `wait`.
async fn find_leader(nodes: &[Node], wait: Duration) -> Option<usize> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(i) = nodes.iter().position(|n| n.state() == RaftState::Leader) {
            return Some(i);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Measurement phases, shared by the clients.
const WARMUP: usize = 0;
const MEASURE: usize = 1;
const DONE: usize = 2;

struct Shared {
    nodes: Vec<Node>,
    leader: AtomicUsize,
    phase: AtomicUsize,
    /// Ops mode: tickets handed out during the measured phase.
    tickets: AtomicU64,
    errors: AtomicU64,
    stop_issuing: AtomicBool,
    recorder: Recorder,
}

/// Latency histograms (writes, reads), sharded by worker thread so
/// recording is an uncontended lock on a histogram that stays in cache
/// (one histogram per client would spread 256 of them over the caches).
struct Recorder {
    shards: Vec<Mutex<(Histogram<u64>, Histogram<u64>)>>,
}

/// Number of recorder shards (more than worker threads).
const SHARDS: usize = 16;
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl Recorder {
    fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new((new_histogram(), new_histogram()))).collect() }
    }

    fn record(&self, is_read: bool, nanos: u64) {
        let shard = SHARD.with(|s| *s);
        let mut h = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let h = if is_read { &mut h.1 } else { &mut h.0 };
        h.saturating_record(nanos.max(1));
    }

    /// Merged (writes, reads).
    fn merged(&self) -> Result<(Histogram<u64>, Histogram<u64>), BoxError> {
        let (mut writes, mut reads) = (new_histogram(), new_histogram());
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            writes.add(&h.0)?;
            reads.add(&h.1)?;
        }
        Ok((writes, reads))
    }
}

fn new_histogram() -> Histogram<u64> {
    // Nanoseconds from 1 ns to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds and precision")
}

async fn client(shared: Arc<Shared>, args: Args, seed: u64) {
    let mut rng = raft::Rng::new(seed);
    let mut body = vec![0u8; args.payload];
    let mut n: u64 = 0;
    let total = args.ops;
    loop {
        if shared.stop_issuing.load(Ordering::Relaxed) {
            break;
        }
        let measuring = shared.phase.load(Ordering::Acquire) == MEASURE;
        if measuring {
            if let Some(total) = total {
                if shared.tickets.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
            }
        }
        let is_read = rng.chance(args.read_ratio);
        let leader_at = shared.leader.load(Ordering::Relaxed);
        let leader = &shared.nodes[leader_at];
        let start = Instant::now();
        let outcome = if is_read {
            match args.read_mode {
                ReadMode::ReadIndex => leader.linearizable_read().await,
                ReadMode::Barrier => leader.barrier(OP_TIMEOUT).await.map(|_| ()),
                ReadMode::Lease => leader.read(ReadPolicy::Lease).await.map(|_| ()),
                ReadMode::Follower => {
                    let n = shared.nodes.len();
                    let at = if n > 1 { (leader_at + 1 + (seed as usize % (n - 1))) % n } else { leader_at };
                    shared.nodes[at].read(ReadPolicy::ReadIndex).await.map(|_| ())
                }
            }
        } else {
            n += 1;
            let stamp = n.to_le_bytes();
            let k = stamp.len().min(body.len());
            body[..k].copy_from_slice(&stamp[..k]);
            leader.apply(Bytes::copy_from_slice(&body), OP_TIMEOUT).await.map(|_| ())
        };
        let took = start.elapsed().as_nanos() as u64;
        match outcome {
            Ok(()) => {
                if measuring {
                    shared.recorder.record(is_read, took);
                }
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "operation failed; looking for the leader again");
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Some(i) = find_leader(&shared.nodes, Duration::from_secs(5)).await {
                    shared.leader.store(i, Ordering::Relaxed);
                }
            }
        }
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds(ticks_per_sec: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall (11th and 12th after the name).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (get(11) + get(12)) as f64 / ticks_per_sec
}

/// Clock ticks per second for `/proc/self/stat` (`getconf CLK_TCK`; 100 on
/// every common Linux if that is unavailable).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Peak resident set size in MiB (`VmHWM`).
fn peak_rss_mb() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.cpu_hog_child {
        contention::spin();
    }
    if args.nodes == 0 || args.clients == 0 {
        return Err("--nodes and --clients must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err("--read-ratio must be within 0.0-1.0".into());
    }
    if args.log_window_mb.is_some_and(|mb| !(mb > 0.0 && mb <= 1_048_576.0)) {
        return Err("--log-window-mb must be more than 0 and at most 1048576".into());
    }
    if !(0.005..=86_400.0).contains(&args.snapshot_interval) {
        return Err("--snapshot-interval must be within 0.005-86400 seconds".into());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.restart_child {
        let dir = args.restart_dir.clone().ok_or("--restart-child needs --restart-dir")?;
        return runtime.block_on(restart::child(&dir, args.log_window()));
    }
    if args.restart {
        return runtime.block_on(restart::run(&args));
    }
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let seconds = match (args.ops, args.seconds) {
        (Some(_), _) => None,
        (None, Some(s)) => Some(s),
        (None, None) => Some(10.0),
    };
    let data_dir = match (args.store, &args.dir) {
        (StoreKind::Mem, _) => None,
        (StoreKind::File, None) => {
            Some(DataDir::Temp(tempfile::Builder::new().prefix("raft-bench-").tempdir()?))
        }
        (StoreKind::File, Some(d)) => {
            let p = d.join(format!("raft-bench-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            Some(DataDir::Given(p))
        }
    };
    let nodes = start_cluster(&args, data_dir.as_ref().map(|d| d.path())).await?;
    let leader = find_leader(&nodes, ELECTION_WAIT).await.ok_or("no leader elected")?;
    let shared = Arc::new(Shared {
        nodes,
        leader: AtomicUsize::new(leader),
        phase: AtomicUsize::new(WARMUP),
        tickets: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop_issuing: AtomicBool::new(false),
        recorder: Recorder::new(),
    });
    let sampler = window::Sampler::start(shared.nodes.clone());
    let ticks = clock_ticks();
    // Started before the clients: the warm-up runs under the same load.
    let hogs = contention::Hogs::start(args.cpu_hogs)?;
    let clients: Vec<_> =
        (0..args.clients).map(|i| tokio::spawn(client(shared.clone(), args.clone(), i as u64 + 1))).collect();
    if args.warmup > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    }
    let cpu_start = cpu_seconds(ticks);
    let counters_start = contention::Counters::read();
    let start = Instant::now();
    shared.phase.store(MEASURE, Ordering::Release);
    if let Some(s) = seconds {
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
        shared.stop_issuing.store(true, Ordering::Relaxed);
    }
    for c in clients {
        c.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(ticks) - cpu_start;
    let counted = contention::Counters::read().since(&counters_start);
    drop(hogs);
    shared.phase.store(DONE, Ordering::Release);
    let (writes, reads) = shared.recorder.merged()?;
    let mut all = writes.clone();
    all.add(&reads)?;
    let ops = all.len();
    let ops_per_sec = ops as f64 / elapsed;
    let per_op = |x: f64| if ops > 0 { x / ops as f64 } else { 0.0 };
    let cpu_us_per_op = per_op(cpu * 1e6);
    let parks_per_op = per_op(counted.parks as f64);
    let busy_us_per_op = per_op(counted.busy.as_secs_f64() * 1e6);
    let polls_per_op = per_op(counted.polls.total() as f64);
    let rss = peak_rss_mb();
    let rss_end = restart::proc_status_mb("VmRSS");
    let windows = sampler.finish().await;
    let errors = shared.errors.load(Ordering::Relaxed);
    for n in &shared.nodes {
        n.shutdown().await?;
    }
    let dir_label = match &data_dir {
        Some(d) => d.path().display().to_string(),
        None => String::new(),
    };
    drop(data_dir);

    let store = format!("{:?}", args.store).to_lowercase();
    let transport = format!("{:?}", args.transport).to_lowercase();
    let read_mode = match args.read_mode {
        ReadMode::ReadIndex => "read_index",
        ReadMode::Barrier => "barrier",
        ReadMode::Lease => "lease",
        ReadMode::Follower => "follower",
    };
    if !args.json {
        println!("settings");
        println!("  nodes {}  clients {}  payload {} B", args.nodes, args.clients, args.payload);
        println!(
            "  store {store}  transport {transport}  read_ratio {}  read_mode {read_mode}",
            args.read_ratio
        );
        match (args.ops, seconds) {
            (Some(o), _) => println!("  ops {o} (after {}s warm-up, not counted)", args.warmup),
            (_, Some(s)) => println!("  seconds {s} (after {}s warm-up, not counted)", args.warmup),
            _ => {}
        }
        if !dir_label.is_empty() {
            println!("  dir {dir_label}");
        }
        println!("  snapshot check every {} s", args.snapshot_interval);
        if let Some(mb) = args.log_window_mb {
            println!("  log window {mb} MiB per node (Config::max_log_window_bytes)");
        }
        if args.cpu_hogs > 0 {
            println!("  cpu hogs {} (busy-loop processes sharing the CPU)", args.cpu_hogs);
        }
        println!("  durability: full (no safety or durability shortcut is enabled)");
        println!("  allocator: {ALLOCATOR_NAME}");
        println!();
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "", "ops", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us"
        );
        for (name, h) in [("writes", &writes), ("reads", &reads), ("all", &all)] {
            if h.is_empty() {
                continue;
            }
            println!(
                "{:<10} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                name,
                h.len(),
                us(h, 0.5),
                us(h, 0.9),
                us(h, 0.99),
                us(h, 0.999),
                h.max() as f64 / 1000.0
            );
        }
        println!();
        println!("throughput   {ops_per_sec:.0} ops/s over {elapsed:.2} s");
        println!(
            "cpu          {cpu:.2} s ({:.1} us/op, {:.2} cores)",
            if ops > 0 { cpu * 1e6 / ops as f64 } else { 0.0 },
            cpu / elapsed
        );
        println!(
            "wake-ups     {polls_per_op:.2} task polls/op (main {:.2}, apply {:.2}, peer {:.2}, pipeline reader {:.2}, \
             calls {:.2}, in-memory transport {:.2}); {parks_per_op:.3} worker parks/op; {busy_us_per_op:.1} us busy/op",
            per_op(counted.polls.main as f64),
            per_op(counted.polls.apply as f64),
            per_op(counted.polls.peer as f64),
            per_op(counted.polls.pipeline_reader as f64),
            per_op(counted.polls.calls as f64),
            per_op(counted.polls.inmem_transport as f64),
        );
        println!("peak rss     {rss:.1} MiB (rss at the end {rss_end:.1} MiB)");
        println!(
            "log window   peak per node {} MiB, at the end {} MiB; {} store reads for followers ({:.1} MiB)",
            window::mib_list(&windows.peak),
            window::mib_list(&windows.end),
            windows.fetches,
            windows.fetched_bytes as f64 / (1 << 20) as f64
        );
        println!("errors       {errors}");
        println!();
    }
    println!(
        "{{\"ops_per_sec\":{ops_per_sec:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
         \"cpu_s\":{cpu:.3},\"peak_rss_mb\":{rss:.1},\"ops\":{ops},\"writes\":{},\"reads\":{},\"errors\":{errors},\
         \"elapsed_s\":{elapsed:.3},\"nodes\":{},\"clients\":{},\"payload\":{},\"ops_target\":{},\"seconds\":{},\
         \"warmup_s\":{},\"store\":{},\"transport\":{},\"read_ratio\":{},\"read_mode\":{},\"dir\":{},\
         \"snapshot_interval_s\":{},\"batch_apply\":true,\"durability\":\"full\",\"allocator\":\"{ALLOCATOR_NAME}\",\"rss_end_mb\":{rss_end:.1},\
         \"log_window_peak_mb\":{},\"log_window_end_mb\":{},\"log_fetches\":{},\"log_fetched_mb\":{:.1},\"log_window_mb\":{},\
         \"cpu_hogs\":{},\"cpu_us_per_op\":{cpu_us_per_op:.3},\"polls_per_op\":{},\"worker_parks_per_op\":{parks_per_op:.4},\
         \"runtime_busy_us_per_op\":{busy_us_per_op:.3},\"file_caller_writes\":{}}}",
        us(&all, 0.5),
        us(&all, 0.99),
        us(&all, 0.999),
        all.max() as f64 / 1000.0,
        writes.len(),
        reads.len(),
        args.nodes,
        args.clients,
        args.payload,
        args.ops.map_or("null".to_string(), |o| o.to_string()),
        seconds.map_or("null".to_string(), |s| s.to_string()),
        args.warmup,
        json_str(&store),
        json_str(&transport),
        args.read_ratio,
        json_str(read_mode),
        if dir_label.is_empty() { "null".to_string() } else { json_str(&dir_label) },
        args.snapshot_interval,
        window::mib_list(&windows.peak),
        window::mib_list(&windows.end),
        windows.fetches,
        windows.fetched_bytes as f64 / (1 << 20) as f64,
        args.log_window_mb.map_or("null".to_string(), |mb| mb.to_string()),
        args.cpu_hogs,
        counted.polls_json(ops),
        args.file_caller_writes,
    );
    Ok(())
}
