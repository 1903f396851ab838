//! Reopen benchmark: how long a [`FileStore`] holding a long uncompacted log
//! takes to open, and to answer what a restarting node reads from it (the
//! metadata of every entry, then the payloads of the newest entries up to a
//! window), and how much memory the process holds afterwards.
//!
//! ```text
//! cargo run --release -p raft-store-file --example reopen_bench -- [--entries N] [--payload BYTES] [--window BYTES] [--dir PATH]
//! ```
//! Defaults: 1,000,000 entries of 1024 bytes (about 1.06 GB on disk), a
//! 64 MiB window, a temporary directory. The log is written first (in large
//! batches, not timed), the store closed, then reopened and timed. The page
//! cache is warm (the log was just written); a cold start also pays for
//! reading every segment from the disk once.

use std::path::PathBuf;
use std::time::Instant;

use raft::{Log, LogStore, LogType};
use raft_store_file::FileStore;

struct Args {
    entries: u64,
    payload: usize,
    window: u64,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { entries: 1_000_000, payload: 1024, window: 64 << 20, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--entries" => args.entries = value.parse().map_err(|e| format!("--entries: {e}"))?,
            "--payload" => args.payload = value.parse().map_err(|e| format!("--payload: {e}"))?,
            "--window" => args.window = value.parse().map_err(|e| format!("--window: {e}"))?,
            "--dir" => args.dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// `VmRSS` and `VmHWM` of this process in MiB (Linux), if readable.
fn rss_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("log"));
    {
        let store = FileStore::open(&dir).await?;
        let have = store.last_index().await?;
        if have < args.entries {
            let start = Instant::now();
            let data = bytes::Bytes::from(vec![0x5au8; args.payload]);
            let mut next = have + 1;
            while next <= args.entries {
                let hi = args.entries.min(next + 4095);
                let batch: Vec<Log> = (next..=hi)
                    .map(|i| Log::new(i, 1 + i / 100_000, LogType::Command, data.clone()))
                    .collect();
                store.store_logs(&batch).await?;
                next = hi + 1;
            }
            println!(
                "wrote {} entries of {} bytes in {:.1?}",
                args.entries - have,
                args.payload,
                start.elapsed()
            );
        }
    }
    let before = rss_mib();

    let start = Instant::now();
    let store = FileStore::open(&dir).await?;
    let opened = start.elapsed();
    let after_open = rss_mib();
    let (first, last) = (store.first_index().await?, store.last_index().await?);
    let t = Instant::now();
    let metas = store.entry_meta(first..last + 1).await?;
    let meta_time = t.elapsed();
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut split = metas.len();
    while split > 0 && bytes + metas[split - 1].size + 64 <= args.window {
        bytes += metas[split - 1].size + 64;
        split -= 1;
    }
    let window = store.get_logs(first + split as u64..last + 1).await?;
    let window_time = t.elapsed();
    let total = start.elapsed();

    println!("entries {first}..={last}, payload {} bytes", args.payload);
    println!("open (scan and check every segment): {opened:.1?}");
    println!("entry_meta of {} entries: {meta_time:.1?}", metas.len());
    println!(
        "get_logs of the newest {} entries ({} MiB window): {window_time:.1?}",
        window.len(),
        args.window >> 20
    );
    println!("total: {total:.1?}");
    println!(
        "store index: {:.1} MiB; store cache: {} bytes",
        store.index_bytes()? as f64 / 1048576.0,
        store.cached_bytes()?
    );
    println!(
        "entry_meta vector: {:.1} MiB",
        (metas.capacity() * std::mem::size_of::<raft::LogEntryMeta>()) as f64 / 1048576.0
    );
    if let (Some((rss0, hwm0)), Some((rss1, hwm1))) = (before, after_open) {
        println!("RSS before reopen {rss0:.0} MiB, after open {rss1:.0} MiB (peak before {hwm0:.0}, after {hwm1:.0} MiB)");
    }
    if let (Some((rss0, _)), Some((rss, hwm))) = (before, rss_mib()) {
        println!("RSS before reopen {rss0:.0} MiB, after {rss:.0} MiB (peak {hwm:.0} MiB, includes the write phase)");
    }
    drop(metas);
    drop(window);
    if let Some((rss, _)) = rss_mib() {
        println!("RSS with only the store open: {rss:.0} MiB");
    }
    Ok(())
}
