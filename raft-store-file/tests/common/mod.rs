//! Helpers shared by the integration tests: the seeded generator, entry
//! generators, and access to the segment files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use raft::{Log, LogStore, LogType};

/// The workspace's seeded generator, so every test run with the same seed
/// does the same thing.
pub use raft::Rng;

/// An entry whose content depends on its index, term and a salt.
pub fn entry(rng: &mut Rng, index: u64, term: u64) -> Log {
    let len = rng.range(0, 300) as usize;
    let salt = rng.next_u64() as u8;
    let data: Vec<u8> = (0..len).map(|i| salt.wrapping_add(i as u8).wrapping_mul(7)).collect();
    let log_type = if index.is_multiple_of(13) { LogType::Noop } else { LogType::Command };
    Log::new(index, term, log_type, data)
}

/// The `.wal` segment files of `dir`, sorted by first index.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

/// Asserts `store` holds exactly `want` (contiguous entries).
pub async fn assert_log<S: LogStore>(store: &S, want: &[Log], context: &str) {
    let first = store.first_index().await.unwrap();
    let last = store.last_index().await.unwrap();
    match (want.first(), want.last()) {
        (Some(h), Some(t)) => assert_eq!((first, last), (h.index, t.index), "{context}: bounds"),
        _ => assert_eq!((first, last), (0, 0), "{context}: bounds of an empty log"),
    }
    if let (Some(h), Some(t)) = (want.first(), want.last()) {
        let got = store.get_logs(h.index..t.index + 1).await.unwrap();
        assert!(got == want, "{context}: entries differ");
        for log in want.iter().step_by(17) {
            assert_eq!(store.get_log(log.index).await.unwrap().as_ref(), Some(log), "{context}: get_log");
        }
    }
}

/// Size of the segment header.
pub const HEADER: u64 = 32;

/// Length of the record of `log` on disk.
pub fn record_len(log: &Log) -> u64 {
    8 + 25 + log.data.len() as u64
}
