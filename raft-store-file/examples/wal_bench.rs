//! Write-ahead log benchmark: appends/s and entries/s of
//! [`FileStore::store_logs`](raft_store_file::FileStore) for batches of 1, 64
//! and 1024 entries of 100 bytes, next to the raw limit of the disk (a loop
//! of small append + fdatasync on one file).
//!
//! One more raw row overwrites a file zero-filled beforehand instead of
//! appending: `fdatasync` then has no file size to commit, which on ext4
//! saves a journal write per sync (the file store appends).
//!
//! Three more rows measure the raw loop run by 2 and 3 writers at once,
//! each on its own file (appending, and for 3 writers also overwriting
//! zero-filled files), and report the rate each writer gets: what each
//! replica of a cluster whose nodes share this disk (as `bench` runs them)
//! can hope for. A 3-node cluster's single-client durable write waits for
//! the syncs of three replicas on this one disk, so the 3-writer rows, not
//! the single raw loop, are its ceiling here.
//!
//! ```text
//! cargo run --release -p raft-store-file --example wal_bench -- [--dir PATH] [--seconds S] [--rounds N]
//! ```
//! `--dir` picks the filesystem to measure (default: a temporary directory
//! under the system temp dir); `--seconds` is the time of one measurement
//! (default 2); `--rounds` how many times every row is measured, the rows
//! interleaved so that a disk whose speed drifts (a shared VM) affects them
//! alike (default 3). Each figure is the median over the rounds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use raft::{Log, LogStore, LogType};
use raft_store_file::FileStore;

const ENTRY_BYTES: usize = 100;

struct Args {
    dir: Option<PathBuf>,
    seconds: f64,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { dir: None, seconds: 2.0, rounds: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value)),
            "--seconds" => args.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--rounds" => args.rounds = value.parse::<usize>().map_err(|e| format!("--rounds: {e}"))?.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// Small appends to one file, each followed by fdatasync: the most syncs
/// per second this disk gives one writer.
fn raw_fdatasync(dir: &Path, limit: Duration) -> std::io::Result<(u64, Duration)> {
    raw_fdatasync_file(&dir.join("raw.bin"), limit)
}

/// Small writes + fdatasync overwriting a file zero-filled (and synced)
/// beforehand: no size change per sync. With `start_together`, the timed
/// loop starts once every writer sharing it has zero-filled its file.
fn raw_fdatasync_preallocated(
    path: &Path,
    start_together: Option<&Barrier>,
    limit: Duration,
) -> std::io::Result<(u64, Duration)> {
    let record = [0x5au8; ENTRY_BYTES + 33];
    // Enough zeroed space for a fast disk: 64 MiB (records wrap around).
    let space: u64 = 64 << 20;
    let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    {
        let zeros = vec![0u8; 1 << 20];
        let mut f = &file;
        for _ in 0..(space >> 20) {
            f.write_all(&zeros)?;
        }
        file.sync_all()?;
    }
    if let Some(barrier) = start_together {
        barrier.wait();
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut at = 0u64;
    while start.elapsed() < limit {
        std::os::unix::fs::FileExt::write_all_at(&file, &record, at)?;
        file.sync_data()?;
        n += 1;
        at = (at + record.len() as u64) % (space - record.len() as u64);
    }
    let took = start.elapsed();
    std::fs::remove_file(path)?;
    Ok((n, took))
}

/// The raw loop (appending, or overwriting zero-filled files if
/// `preallocated`) on `writers` files at once (one thread each); returns
/// the mean rate per writer.
fn raw_fdatasync_concurrent(
    dir: &Path,
    writers: usize,
    preallocated: bool,
    limit: Duration,
) -> std::io::Result<f64> {
    let barrier = Barrier::new(writers);
    let results: Vec<std::io::Result<(u64, Duration)>> = std::thread::scope(|scope| {
        let barrier = &barrier;
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let path = dir.join(format!("raw-{w}.bin"));
                scope.spawn(move || {
                    if preallocated {
                        raw_fdatasync_preallocated(&path, Some(barrier), limit)
                    } else {
                        raw_fdatasync_file(&path, limit)
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked"))))
            .collect()
    });
    let mut total = 0.0;
    for r in results {
        let (n, took) = r?;
        total += n as f64 / took.as_secs_f64();
    }
    Ok(total / writers as f64)
}

fn raw_fdatasync_file(path: &Path, limit: Duration) -> std::io::Result<(u64, Duration)> {
    let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let record = [0x5au8; ENTRY_BYTES + 33];
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < limit {
        file.write_all(&record)?;
        file.sync_data()?;
        n += 1;
    }
    let took = start.elapsed();
    std::fs::remove_file(path)?;
    Ok((n, took))
}

async fn store_bench(dir: &Path, batch: u64, limit: Duration) -> Result<(u64, Duration), raft::StorageError> {
    let store = FileStore::open(dir).await?;
    let data = raft::Bytes::from(vec![0xa5u8; ENTRY_BYTES]);
    let mut next = 1;
    let mut appends = 0;
    let start = Instant::now();
    while start.elapsed() < limit {
        let logs: Vec<Log> =
            (next..next + batch).map(|i| Log::new(i, 1, LogType::Command, data.clone())).collect();
        store.store_logs(&logs).await?;
        next += batch;
        appends += 1;
    }
    Ok((appends, start.elapsed()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp;
    let root = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let limit = Duration::from_secs_f64(args.seconds);
    println!(
        "wal_bench: {ENTRY_BYTES}-byte entries, median of {} rounds of {:.1}s per row, in {}",
        args.rounds,
        args.seconds,
        root.display()
    );
    const BATCHES: [u64; 3] = [1, 64, 1024];
    // (writers, preallocated)
    const WRITERS: [(usize, bool); 3] = [(2, false), (3, false), (3, true)];
    let mut raw_rates = Vec::new();
    let mut prealloc_rates = Vec::new();
    let mut shared_rates: Vec<Vec<f64>> = vec![Vec::new(); WRITERS.len()];
    let mut store_rates: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    for round in 0..args.rounds {
        let (n, took) = raw_fdatasync(&root, limit)?;
        raw_rates.push(n as f64 / took.as_secs_f64());
        let (n, took) = raw_fdatasync_preallocated(&root.join("raw-prealloc.bin"), None, limit)?;
        prealloc_rates.push(n as f64 / took.as_secs_f64());
        for (i, (writers, preallocated)) in WRITERS.into_iter().enumerate() {
            shared_rates[i].push(raw_fdatasync_concurrent(&root, writers, preallocated, limit)?);
        }
        for (i, batch) in BATCHES.into_iter().enumerate() {
            let dir = root.join(format!("store-{round}-{batch}"));
            let (appends, took) = store_bench(&dir, batch, limit).await?;
            store_rates[i].push(appends as f64 / took.as_secs_f64());
            std::fs::remove_dir_all(&dir)?;
        }
    }

    println!("{:<28} {:>12} {:>14} {:>12}", "", "appends/s", "entries/s", "vs raw");
    let raw = median(raw_rates);
    println!("{:<28} {:>12.0} {:>14.0} {:>11.0}%", "raw write+fdatasync", raw, raw, 100.0);
    let prealloc = median(prealloc_rates);
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>11.0}%",
        "  same, preallocated file",
        prealloc,
        prealloc,
        prealloc / raw * 100.0
    );
    for ((writers, preallocated), rates) in WRITERS.into_iter().zip(shared_rates) {
        let per_writer = median(rates);
        let label = if preallocated {
            format!("  same, {writers} preallocated (each)")
        } else {
            format!("  same, {writers} writers (each)")
        };
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>11.0}%",
            label,
            per_writer,
            per_writer,
            per_writer / raw * 100.0
        );
    }
    let mut entries_per_sec = Vec::new();
    for (batch, rates) in BATCHES.into_iter().zip(store_rates) {
        let aps = median(rates);
        let eps = aps * batch as f64;
        entries_per_sec.push(eps);
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>11.0}%",
            format!("FileStore batch of {batch}"),
            aps,
            eps,
            aps / raw * 100.0
        );
    }
    if let (Some(one), Some(big)) = (entries_per_sec.first(), entries_per_sec.last()) {
        println!("batch of 1024 vs batch of 1: {:.0}x the entries/s", big / one);
    }
    Ok(())
}
