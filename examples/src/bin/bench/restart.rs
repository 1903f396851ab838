//! `bench --restart`: how long a node with a long uncompacted log takes to
//! restart, and how much memory it needs once started.
//!
//! 1. **Build** (or reuse, with `--restart-dir`) one node's file stores
//!    holding `--restart-entries` command entries of `--payload` bytes: an
//!    empty `FileStore` is bootstrapped with [`raft::bootstrap_cluster`] as
//!    `node-1` of a three-voter cluster (whose other members never run);
//!    then the entries are appended straight through
//!    [`LogStore::store_logs`] in batches of about 8 MiB, in the term of the
//!    bootstrap entry, and the node's persisted commit index is set to the
//!    last entry (as a node that had learned everything was committed would
//!    have left it). No cluster runs, so writing a gigabyte takes seconds.
//! 2. **Restart**, in a fresh child process (the bench runs itself with a
//!    hidden flag), so nothing the build allocated counts in the memory
//!    figures: the child opens the stores and starts the node with the
//!    bench's node settings (and `--log-window-mb`, if given), except that
//!    no snapshot is taken (interval one day, no log limit) so the log
//!    stays as built.
//!
//! The child reports, all from the moment it starts opening the stores:
//! - `open_ms`: `FileStore::open` and `FileSnapshotStore::new` returned;
//! - `new_ms`: `Raft::new` returned (the log and hard state loaded, the
//!   runtime's tasks spawned);
//! - `ready_ms`: the node is **ready as a follower**: `Raft::new` returned,
//!   its metrics show it a follower with the whole log (`last_log_index`
//!   equal to the store's last index), and its main task answered a request
//!   (`Raft::get_configuration`), so it is running its loop and would
//!   answer a leader;
//! - `replay_ms`: the **FSM replay**, from `Raft::new` returning until the
//!   FSM has applied the commit index the node knew at start (its metrics'
//!   `commit_index` then), timed on its own task so that it runs alongside
//!   the readiness check (the replay may end before or after ready);
//!   `null` when the node knew of no committed entry beyond what its
//!   snapshot covers (it then waits for a leader to apply anything);
//! - memory of the child process from `/proc/self/status`: `VmRSS` before
//!   opening the stores (the runtime alone), once they are open (what the
//!   stores hold), at ready and after the replay,
//!   `RssAnon` at ready (heap, without file pages), and `VmHWM` (the peak)
//!   at the end;
//! - `log_window_bytes`: the node's `Config::max_log_window_bytes`;
//! - `store_index_bytes`: what the file store's index of entries holds
//!   once open (`FileStore::index_bytes`), and `store_cached_bytes`: its
//!   cache of the newest entries after the replay (`FileStore::cached_bytes`).
//!
//! The page cache is warm (the files were just written or read); dropping
//! it needs root and would disturb everything else on the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::transport::inmem::InmemNetwork;
use raft::{BoxError, Configuration, Log, LogStore, LogType, Raft, RaftState, Server, StableStore};

use super::{json_str, node_config, with_log_window, Args, BenchFsm, ALLOCATOR_NAME};

/// The node whose restart is measured; its two peers never run.
const NODE: &str = "node-1";
/// Members of the configuration the node is bootstrapped with.
const MEMBERS: [&str; 3] = ["node-1", "node-2", "node-3"];
/// Bytes per `store_logs` call while building.
const BUILD_BATCH_BYTES: usize = 8 << 20;
/// The stable-store key under which the runtime persists the highest index
/// it knows is committed (a big-endian u64; the crate-private
/// `raft::runtime::COMMIT_KEY`). A library that does not read it at start
/// simply ignores it.
const COMMIT_KEY: &[u8] = b"raft/commit";
/// How long the child waits for the FSM to catch up with the commit index.
const REPLAY_WAIT: Duration = Duration::from_secs(900);

/// What the child process measured.
#[derive(Debug, Clone, serde::Deserialize)]
struct ChildReport {
    last_index: u64,
    commit_index: u64,
    applied_at_ready: u64,
    open_ms: f64,
    new_ms: f64,
    ready_ms: f64,
    replay_ms: Option<f64>,
    replayed_entries: u64,
    rss_base_mb: f64,
    rss_open_mb: f64,
    store_index_bytes: u64,
    store_cached_bytes: u64,
    rss_ready_mb: f64,
    rss_anon_ready_mb: f64,
    rss_after_replay_mb: f64,
    peak_rss_mb: f64,
    log_window_bytes: u64,
}

/// A `/proc/self/status` field in MiB (`VmRSS`, `VmHWM`, `RssAnon`, ...).
pub(crate) fn proc_status_mb(field: &str) -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Total size of the files under `dir` (what the stores take on disk,
/// preallocated segments included).
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The node's configuration: the bench's (with `--log-window-mb` if
/// given), without snapshots, and with 5 s heartbeat and election timeouts so that the node, alone, is still a
/// follower (not yet campaigning) when the measurement checks it is ready.
fn restart_config(log_window: Option<usize>) -> raft::Config {
    let config = raft::Config {
        snapshot_log_limit: u64::MAX,
        heartbeat_timeout: Duration::from_secs(5),
        election_timeout: Duration::from_secs(5),
        ..node_config(NODE, Duration::from_secs(86_400))
    };
    with_log_window(config, log_window)
}

async fn open_stores(
    node_dir: &Path,
) -> Result<(raft_store_file::FileStore, raft_store_file::FileSnapshotStore), BoxError> {
    let logs = raft_store_file::FileStore::open(node_dir.join("log")).await?;
    let snaps = raft_store_file::FileSnapshotStore::new(node_dir.join("snapshots"), 2).await?;
    Ok((logs, snaps))
}

/// Writes a bootstrapped node's stores with `entries` command entries of
/// `payload` bytes after the bootstrap entry; returns the last index.
async fn build(node_dir: &Path, entries: u64, payload: usize) -> Result<u64, BoxError> {
    let (logs, snaps) = open_stores(node_dir).await?;
    let configuration = Configuration::new(MEMBERS.iter().map(|id| Server::voter(*id, *id)).collect());
    raft::bootstrap_cluster(&restart_config(None), &logs, &logs, &snaps, configuration).await?;
    let first = logs.last_index().await? + 1;
    let term = match logs.get_log(first - 1).await? {
        Some(entry) => entry.term,
        None => return Err("the bootstrap entry is missing from the log store".into()),
    };
    let body = Bytes::from(vec![0x5a; payload]);
    let batch = (BUILD_BATCH_BYTES / payload.max(1)).clamp(1, 65_536) as u64;
    let last = first + entries - 1;
    let mut lo = first;
    while lo <= last {
        let hi = last.min(lo + batch - 1);
        let chunk: Vec<Log> = (lo..=hi).map(|i| Log::new(i, term, LogType::Command, body.clone())).collect();
        logs.store_logs(&chunk).await?;
        lo = hi + 1;
    }
    logs.set_u64(COMMIT_KEY, last).await?;
    Ok(last)
}

/// Parent side of `--restart`: builds or reuses the stores, runs the child,
/// prints the figures.
pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    if args.restart_entries == 0 {
        return Err("--restart-entries must be at least 1".into());
    }
    let temp;
    let base: PathBuf = match &args.restart_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("raft-bench-restart-").tempdir()?;
            temp.path().to_owned()
        }
    };
    let node_dir = base.join(NODE);
    let existing = if node_dir.join("log").exists() {
        let logs = raft_store_file::FileStore::open(node_dir.join("log")).await?;
        logs.last_index().await?
    } else {
        0
    };
    let reused = existing > 0;
    let build_start = Instant::now();
    if !reused {
        build(&node_dir, args.restart_entries, args.payload).await?;
    }
    let build_s = if reused { None } else { Some(build_start.elapsed().as_secs_f64()) };
    let on_disk = disk_bytes(&node_dir);

    let exe = std::env::current_exe()?;
    let child_dir = node_dir.clone();
    let window_args: Vec<String> =
        args.log_window_mb.map(|mb| vec!["--log-window-mb".to_string(), mb.to_string()]).unwrap_or_default();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .arg("--restart-child")
            .arg("--restart-dir")
            .arg(&child_dir)
            .args(&window_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
    })
    .await??;
    if !output.status.success() {
        return Err(format!("the restart child process failed: {}", output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line =
        stdout.lines().rev().find(|l| l.starts_with('{')).ok_or("the restart child printed no report")?;
    let r: ChildReport = serde_json::from_str(line)?;
    let entries = r.last_index.saturating_sub(1);
    let opt = |v: Option<f64>, digits: usize| v.map_or("null".to_string(), |v| format!("{v:.digits$}"));
    let dir_label = base.display().to_string();

    if !args.json {
        println!("restart of one node (file store, child process)");
        println!(
            "  log: {entries} entries of {} B after the bootstrap entry, {:.1} MiB on disk ({})",
            args.payload,
            on_disk as f64 / (1 << 20) as f64,
            if reused { "reused".to_string() } else { format!("built in {:.1} s", build_s.unwrap_or(0.0)) }
        );
        if args.restart_dir.is_some() {
            println!("  dir {dir_label} (kept)");
        }
        println!("  commit index known at start {}  applied at ready {}", r.commit_index, r.applied_at_ready);
        if let Some(mb) = args.log_window_mb {
            println!("  log window {mb} MiB (Config::max_log_window_bytes)");
        }
        println!("  allocator: {ALLOCATOR_NAME}");
        println!();
        println!("stores open      {:>10.1} ms", r.open_ms);
        println!("Raft::new        {:>10.1} ms", r.new_ms);
        println!("ready (follower) {:>10.1} ms", r.ready_ms);
        match r.replay_ms {
            Some(ms) => {
                println!(
                    "fsm replay       {ms:>10.1} ms ({} entries, from Raft::new returning)",
                    r.replayed_entries
                )
            }
            None => println!("fsm replay       none at start (nothing known committed beyond the snapshot)"),
        }
        println!("rss before open  {:>10.1} MiB", r.rss_base_mb);
        println!(
            "rss stores open  {:>10.1} MiB (the file store's index of entries: {:.1} MiB)",
            r.rss_open_mb,
            r.store_index_bytes as f64 / (1 << 20) as f64
        );
        println!("rss at ready     {:>10.1} MiB ({:.1} MiB anonymous)", r.rss_ready_mb, r.rss_anon_ready_mb);
        println!("rss after replay {:>10.1} MiB", r.rss_after_replay_mb);
        println!("peak rss (child) {:>10.1} MiB", r.peak_rss_mb);
        println!(
            "file store cache {:>10.1} MiB (its newest entries, at the end)",
            r.store_cached_bytes as f64 / (1 << 20) as f64
        );
        println!();
    }
    println!(
        "{{\"mode\":\"restart\",\"restart_entries\":{entries},\"payload\":{},\"store\":\"file\",\"reused\":{reused},\
         \"build_s\":{},\"disk_mb\":{:.1},\"last_index\":{},\"commit_index\":{},\"applied_at_ready\":{},\
         \"open_ms\":{:.1},\"new_ms\":{:.1},\"ready_ms\":{:.1},\"replay_ms\":{},\"replayed_entries\":{},\
         \"rss_base_mb\":{:.1},\"rss_open_mb\":{:.1},\"store_index_bytes\":{},\"store_cached_bytes\":{},\"rss_ready_mb\":{:.1},\"rss_anon_ready_mb\":{:.1},\"rss_after_replay_mb\":{:.1},\
         \"peak_rss_mb\":{:.1},\"dir\":{},\"allocator\":\"{ALLOCATOR_NAME}\",\"log_window_mb\":{},\"log_window_bytes\":{}}}",
        args.payload,
        opt(build_s, 3),
        on_disk as f64 / (1 << 20) as f64,
        r.last_index,
        r.commit_index,
        r.applied_at_ready,
        r.open_ms,
        r.new_ms,
        r.ready_ms,
        opt(r.replay_ms, 1),
        r.replayed_entries,
        r.rss_base_mb,
        r.rss_open_mb,
        r.store_index_bytes,
        r.store_cached_bytes,
        r.rss_ready_mb,
        r.rss_anon_ready_mb,
        r.rss_after_replay_mb,
        r.peak_rss_mb,
        if args.restart_dir.is_some() { json_str(&dir_label) } else { "null".to_string() },
        args.log_window_mb.map_or("null".to_string(), |mb| mb.to_string()),
        r.log_window_bytes,
    );
    Ok(())
}

/// Child side (`--restart-child --restart-dir NODE_DIR`): restarts the node
/// and prints one JSON line with the measurements.
pub(crate) async fn child(node_dir: &Path, log_window: Option<usize>) -> Result<(), BoxError> {
    let rss_base_mb = proc_status_mb("VmRSS");
    let start = Instant::now();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let (logs, snaps) = open_stores(node_dir).await?;
    let open_ms = ms(start);
    let rss_open_mb = proc_status_mb("VmRSS");
    let store_index_bytes = logs.index_bytes()?;
    let last_index = logs.last_index().await?;
    let net = InmemNetwork::new();
    let config = restart_config(log_window);
    let log_window_bytes = config.max_log_window_bytes;
    let store = logs.clone();
    let node = Raft::new(config, BenchFsm::default(), logs.clone(), logs, snaps, net.transport(NODE)).await?;
    let new_ms = ms(start);
    let metrics = node.metrics().borrow().clone();
    let commit_index = metrics.commit_index;
    // The FSM replay runs after `Raft::new` returns, possibly while the
    // readiness check below waits: time it on its own task.
    let replay = (commit_index > metrics.last_snapshot_index).then(|| {
        let node = node.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(REPLAY_WAIT, node.wait_applied(commit_index)).await {
                Ok(Ok(())) => Ok(Instant::now()),
                Ok(Err(e)) => Err(format!("waiting for the FSM replay failed: {e}")),
                Err(_) => Err(format!(
                    "the FSM applied {} of {commit_index} known-committed entries in {} s",
                    node.applied_index(),
                    REPLAY_WAIT.as_secs()
                )),
            }
        })
    });
    node.get_configuration().await?;
    let metrics = node.metrics().borrow().clone();
    if metrics.last_log_index != last_index {
        return Err(format!(
            "the restarted node reports last index {} but its store holds {last_index}",
            metrics.last_log_index
        )
        .into());
    }
    if !matches!(metrics.state, RaftState::Follower | RaftState::Candidate) {
        return Err(format!("the restarted node is {:?}, not a follower, when ready", metrics.state).into());
    }
    let ready_ms = ms(start);
    let rss_ready_mb = proc_status_mb("VmRSS");
    let rss_anon_ready_mb = proc_status_mb("RssAnon");
    let applied_at_ready = node.applied_index();
    let replay_ms = match replay {
        Some(task) => {
            let done = task.await?.map_err(BoxError::from)?;
            Some(done.duration_since(start).as_secs_f64() * 1e3 - new_ms)
        }
        None => None,
    };
    // Everything applied since the start, whether before or after ready.
    let replayed_entries = node.applied_index().saturating_sub(metrics.last_snapshot_index);
    let rss_after_replay_mb = proc_status_mb("VmRSS");
    let store_cached_bytes = store.cached_bytes()?;
    node.shutdown().await?;
    let peak_rss_mb = proc_status_mb("VmHWM");
    println!(
        "{{\"last_index\":{last_index},\"commit_index\":{commit_index},\"applied_at_ready\":{applied_at_ready},\
         \"open_ms\":{open_ms:.3},\"new_ms\":{new_ms:.3},\"ready_ms\":{ready_ms:.3},\"replay_ms\":{},\
         \"replayed_entries\":{replayed_entries},\"rss_base_mb\":{rss_base_mb:.2},\"rss_open_mb\":{rss_open_mb:.2},\"store_index_bytes\":{store_index_bytes},\"store_cached_bytes\":{store_cached_bytes},\"rss_ready_mb\":{rss_ready_mb:.2},\
         \"rss_anon_ready_mb\":{rss_anon_ready_mb:.2},\"rss_after_replay_mb\":{rss_after_replay_mb:.2},\
         \"peak_rss_mb\":{peak_rss_mb:.2},\"log_window_bytes\":{log_window_bytes}}}",
        replay_ms.map_or("null".to_string(), |v: f64| format!("{v:.3}")),
    );
    Ok(())
}
