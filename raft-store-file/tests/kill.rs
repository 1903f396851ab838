//! Process-kill test: a child process (`wal-crash-child`) appends batches
//! and prints the last index of each batch once `store_logs` returned; the
//! parent SIGKILLs it after a random number of acknowledgements, reopens
//! the store and checks that every acknowledged entry is there and the log
//! is a valid prefix of what the child writes. Repeated on the same
//! directory, each child continuing where the last left off.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Rng;
use raft::{LogStore, LogType};
use raft_store_file::{FileStore, FileStoreOptions};

/// Must match `payload` in `src/bin/wal-crash-child.rs`.
fn payload(index: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(2654435761) % 200) as usize;
    (0..len).map(|i| (index as usize + i) as u8).collect()
}

#[tokio::test]
async fn sigkill_never_loses_an_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(42);
    let mut acked_total = 0u64;
    for round in 0..6 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
            .arg(dir.path())
            .arg(rng.range(1, u64::MAX).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let wait_for = rng.range(5, 150);
        let mut acked = 0u64;
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..wait_for {
            match lines.next() {
                Some(line) => acked = line.unwrap().trim().parse().unwrap(),
                None => {
                    let out = child.wait_with_output().unwrap();
                    panic!("round {round}: child exited early: {out:?}");
                }
            }
        }
        // SIGKILL while it is in the middle of further batches.
        child.kill().unwrap();
        // Anything acknowledged before the kill landed counts too.
        for line in lines {
            match line.map(|l| l.trim().parse::<u64>()) {
                Ok(Ok(index)) => acked = index,
                _ => break,
            }
        }
        child.wait().unwrap();
        assert!(acked > acked_total, "round {round}: the child made progress");
        acked_total = acked;

        let opts = FileStoreOptions { segment_size: 16 * 1024, ..Default::default() };
        let store = FileStore::open_with(dir.path(), opts).await.unwrap();
        assert_eq!(store.first_index().await.unwrap(), 1, "round {round}");
        let last = store.last_index().await.unwrap();
        assert!(last >= acked, "round {round}: acknowledged {acked} but the log ends at {last}");
        let logs = store.get_logs(1..last + 1).await.unwrap();
        for (i, log) in logs.iter().enumerate() {
            let index = i as u64 + 1;
            assert_eq!(log.index, index);
            assert_eq!(log.term, index / 100 + 1, "round {round}: entry {index}");
            assert_eq!(log.log_type, LogType::Command);
            assert_eq!(log.data.as_ref(), payload(index).as_slice(), "round {round}: entry {index}");
        }
    }
}
