//! Simulated power loss: after a series of acknowledged batches, one more
//! batch is written and then its unsynced bytes are damaged (the last
//! segment truncated at a random offset, random bytes flipped, or a newly
//! created segment lost), for hundreds of seeds. Reopening must give back
//! every acknowledged entry plus at most a prefix of the damaged batch,
//! never a corrupt entry. A second test damages the last segment anywhere:
//! the store then either refuses to open or returns a prefix, never wrong
//! data.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{entry, segments, Rng, HEADER};
use raft::{Log, LogStore, StorageError};
use raft_store_file::{FileStore, FileStoreOptions};

fn options(rng: &mut Rng) -> FileStoreOptions {
    let segment_size = [4096, 8192, 65536][rng.range(0, 3) as usize];
    FileStoreOptions { segment_size, cache_entries: 0, ..Default::default() }
}

/// Runs a random history of acknowledged operations and returns the log
/// they leave.
async fn acknowledged_history(rng: &mut Rng, store: &FileStore) -> Vec<Log> {
    let mut model: Vec<Log> = Vec::new();
    let mut term = 1;
    let start = rng.range(1, 5);
    for _ in 0..rng.range(3, 12) {
        let roll = rng.range(0, 100);
        if roll < 10 && model.len() > 10 {
            // Compaction.
            let k = rng.range(1, model.len() as u64 / 2) as usize;
            store.delete_range(model[0].index, model[k - 1].index).await.unwrap();
            model.drain(..k);
        } else if roll < 25 && model.len() > 10 {
            // Conflict: overwrite a suffix with entries of a new term.
            term += 1;
            let at = rng.range(1, model.len() as u64) as usize;
            let from = model[at].index;
            let batch: Vec<Log> = (from..from + rng.range(1, 30)).map(|i| entry(rng, i, term)).collect();
            store.store_logs(&batch).await.unwrap();
            model.truncate(at);
            model.extend(batch);
        } else {
            let from = model.last().map_or(start, |l| l.index + 1);
            let batch: Vec<Log> = (from..from + rng.range(1, 30)).map(|i| entry(rng, i, term)).collect();
            store.store_logs(&batch).await.unwrap();
            model.extend(batch);
        }
    }
    model
}

fn sizes(dir: &Path) -> HashMap<PathBuf, u64> {
    segments(dir).into_iter().map(|p| (p.clone(), std::fs::metadata(&p).unwrap().len())).collect()
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn flip_bytes(rng: &mut Rng, path: &Path, from: u64, to: u64) {
    if to <= from {
        return;
    }
    let mut bytes = std::fs::read(path).unwrap();
    for _ in 0..rng.range(1, 4) {
        let at = rng.range(from, to) as usize;
        bytes[at] ^= 1 << rng.range(0, 8);
    }
    std::fs::write(path, bytes).unwrap();
}

/// Reads the whole reopened log and checks it is `acked` followed by a
/// prefix of `unacked`, with at least `min_len` entries.
async fn check_prefix(store: &FileStore, written: &[Log], min_len: usize, seed: u64) -> usize {
    let first = store.first_index().await.unwrap();
    let last = store.last_index().await.unwrap();
    if last == 0 {
        assert_eq!(min_len, 0, "seed {seed}: the log came back empty");
        return 0;
    }
    assert_eq!(first, written[0].index, "seed {seed}: first index");
    let got = store.get_logs(first..last + 1).await.unwrap();
    assert!(
        got.len() >= min_len,
        "seed {seed}: {} entries came back, {min_len} were acknowledged",
        got.len()
    );
    assert!(got.len() <= written.len(), "seed {seed}: more entries than were written");
    assert!(got[..] == written[..got.len()], "seed {seed}: the log is not a prefix of what was written");
    got.len()
}

#[tokio::test]
async fn power_loss_in_the_unsynced_tail_keeps_every_acknowledged_batch() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let opts = options(&mut rng);
        let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
        let acked = acknowledged_history(&mut rng, &store).await;
        drop(store);
        let synced = sizes(dir.path());

        // One more batch whose fdatasync "never returned".
        let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
        let from = acked.last().map_or(1, |l| l.index + 1);
        let unacked: Vec<Log> = (from..from + rng.range(1, 40)).map(|i| entry(&mut rng, i, 99)).collect();
        store.store_logs(&unacked).await.unwrap();
        drop(store);

        // Only the last segment can hold unsynced bytes: earlier ones are
        // fsync'd before a new segment is created, and a new segment's
        // header is durable before any record is written to it.
        let segs = segments(dir.path());
        let last = segs.last().unwrap().clone();
        let is_new = !synced.contains_key(&last);
        let durable = synced.get(&last).copied().unwrap_or(0).max(HEADER);
        let len = std::fs::metadata(&last).unwrap().len();
        match rng.range(0, 4) {
            0 => truncate(&last, rng.range(durable, len + 1)),
            1 => flip_bytes(&mut rng, &last, durable, len),
            2 => {
                let cut = rng.range(durable, len + 1);
                truncate(&last, cut);
                flip_bytes(&mut rng, &last, durable, cut);
            }
            _ if is_new => std::fs::remove_file(&last).unwrap(),
            _ => truncate(&last, durable),
        }

        let mut written = acked.clone();
        written.extend(unacked);
        let store = FileStore::open_with(dir.path(), opts.clone())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after damage to the unsynced tail failed: {e}"));
        let kept = check_prefix(&store, &written, acked.len(), seed).await;

        // The recovered log takes new entries and survives another reopen.
        let from = written[kept - 1].index + 1;
        let more: Vec<Log> = (from..from + 5).map(|i| entry(&mut rng, i, 100)).collect();
        store.store_logs(&more).await.unwrap();
        drop(store);
        let store = FileStore::open_with(dir.path(), opts).await.unwrap();
        let mut want = written[..kept].to_vec();
        want.extend(more);
        assert_eq!(check_prefix(&store, &want, want.len(), seed).await, want.len(), "seed {seed}");
    }
}

#[tokio::test]
async fn damage_anywhere_in_the_last_segment_never_returns_wrong_data() {
    let (mut refused, mut opened) = (0, 0);
    for seed in 1000..1150 {
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let opts = options(&mut rng);
        let store = FileStore::open_with(dir.path(), opts.clone()).await.unwrap();
        let written = acknowledged_history(&mut rng, &store).await;
        drop(store);
        let last = segments(dir.path()).last().unwrap().clone();
        let len = std::fs::metadata(&last).unwrap().len();
        let truncated = rng.chance(0.5);
        if truncated {
            truncate(&last, rng.range(HEADER, len + 1));
        } else {
            flip_bytes(&mut rng, &last, 0, len);
        }
        match FileStore::open_with(dir.path(), opts).await {
            Ok(store) => {
                opened += 1;
                check_prefix(&store, &written, 0, seed).await;
            }
            Err(StorageError::Corrupt { path, .. }) => {
                assert!(!truncated, "seed {seed}: a truncation must read as a torn tail");
                assert_eq!(path, last.display().to_string(), "seed {seed}");
                refused += 1;
            }
            Err(e) => panic!("seed {seed}: unexpected error {e}"),
        }
    }
    assert!(refused > 0 && opened > 0, "both outcomes should occur: refused {refused}, opened {opened}");
}
