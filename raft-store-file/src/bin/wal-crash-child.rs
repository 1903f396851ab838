//! Test helper for the process-kill test: appends batches to a
//! [`FileStore`](raft_store_file::FileStore) forever and prints the last
//! index of each batch once `store_logs` has returned.
//!
//! Usage: `wal-crash-child <dir> <seed>`. Entry `i` has term `i / 100 + 1`
//! and data derived from `i` alone, so the parent can check every entry.

use std::io::Write;

use raft::{Log, LogStore, LogType};
use raft_store_file::{FileStore, FileStoreOptions};

/// The data of entry `index`, shared with the test that checks it.
fn payload(index: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(2654435761) % 200) as usize;
    (0..len).map(|i| (index as usize + i) as u8).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: wal-crash-child <dir> <seed>")?;
    let mut seed: u64 = args.next().ok_or("usage: wal-crash-child <dir> <seed>")?.parse()?;
    let opts = FileStoreOptions { segment_size: 16 * 1024, ..Default::default() };
    let store = FileStore::open_with(&dir, opts).await?;
    let mut next = store.last_index().await? + 1;
    let mut out = std::io::stdout().lock();
    loop {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = seed % 40 + 1;
        let batch: Vec<Log> =
            (next..next + n).map(|i| Log::new(i, i / 100 + 1, LogType::Command, payload(i))).collect();
        store.store_logs(&batch).await?;
        next += n;
        writeln!(out, "{}", next - 1)?;
        out.flush()?;
    }
}
