//! Tests of [`load_initial_state`](super::load_initial_state): what a
//! restarting node reads from its stores (payloads only for the log window,
//! the configuration entries, the recorded commit index) and the errors for
//! a log that does not fit its snapshot.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;
use crate::error::BoxError;
use crate::fsm::FsmSnapshot;
use crate::snapshot::{DiscardSnapshotStore, SnapshotReader, SnapshotSink};
use crate::types::Server;

/// A log and stable store in memory that counts the payload bytes it hands
/// out through `get_log`/`get_logs`; `entry_meta` reads no payload.
#[derive(Clone, Default)]
struct CountingStore {
    logs: Arc<Mutex<Vec<Log>>>,
    kv: Arc<Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>>,
    payload_bytes: Arc<AtomicU64>,
    /// Entries returned by `entry_meta` (to tell whether startup used it).
    metas_returned: Arc<AtomicU64>,
    /// The most payload bytes one `get_logs` call returned.
    largest_read: Arc<AtomicU64>,
    /// Makes `entry_meta` leave out its answer's second entry (a broken store).
    drop_a_meta: bool,
}

impl CountingStore {
    fn with_log(logs: Vec<Log>) -> Self {
        let s = Self::default();
        *s.logs.lock().unwrap() = logs;
        s
    }

    fn payload_bytes(&self) -> u64 {
        self.payload_bytes.load(Ordering::SeqCst)
    }

    fn count(&self, logs: &[Log]) {
        let n: usize = logs.iter().map(|l| l.data.len()).sum();
        self.payload_bytes.fetch_add(n as u64, Ordering::SeqCst);
        self.largest_read.fetch_max(n as u64, Ordering::SeqCst);
    }

    fn slice(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        let logs = self.logs.lock().unwrap();
        let first = logs.first().map_or(0, |l| l.index);
        let last = logs.last().map_or(0, |l| l.index);
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        if logs.is_empty() || range.start < first || range.start > last {
            return Err(StorageError::LogNotFound(range.start));
        }
        if range.end > last + 1 {
            return Err(StorageError::LogNotFound(last + 1));
        }
        Ok(logs[(range.start - first) as usize..(range.end - first) as usize].to_vec())
    }
}

#[async_trait]
impl LogStore for CountingStore {
    async fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.logs.lock().unwrap().first().map_or(0, |l| l.index))
    }
    async fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.logs.lock().unwrap().last().map_or(0, |l| l.index))
    }
    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        let found = self.logs.lock().unwrap().iter().find(|l| l.index == index).cloned();
        self.count(found.as_slice());
        Ok(found)
    }
    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        let logs = self.slice(range)?;
        self.count(&logs);
        Ok(logs)
    }
    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        let mut metas: Vec<LogEntryMeta> = self.slice(range)?.iter().map(LogEntryMeta::of).collect();
        if self.drop_a_meta && metas.len() > 1 {
            metas.remove(1);
        }
        self.metas_returned.fetch_add(metas.len() as u64, Ordering::SeqCst);
        Ok(metas)
    }
    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        self.logs.lock().unwrap().extend_from_slice(logs);
        Ok(())
    }
    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        self.logs.lock().unwrap().retain(|l| l.index < min || l.index > max);
        Ok(())
    }
}

#[async_trait]
impl StableStore for CountingStore {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.kv.lock().unwrap().insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.kv.lock().unwrap().get(key).cloned())
    }
}

/// An FSM that does nothing (startup only restores snapshots into it).
struct NullFsm;

#[async_trait]
impl Fsm for NullFsm {
    type Response = ();
    async fn apply(&mut self, _log: &Log) {}
    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        Err("unused".into())
    }
    async fn restore(&mut self, _snapshot: SnapshotReader) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A snapshot store listing one snapshot (used with
/// `no_snapshot_restore_on_start`, so it is never opened).
struct ListedSnapshot(SnapshotMeta);

#[async_trait]
impl SnapshotStore for ListedSnapshot {
    async fn create(
        &self,
        _: u64,
        _: u64,
        _: &Configuration,
        _: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        Err(StorageError::Other("unused".into()))
    }
    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        Ok(vec![self.0.clone()])
    }
    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        Err(StorageError::SnapshotNotFound(id.to_owned()))
    }
}

fn snapshot_at(index: u64, term: u64) -> ListedSnapshot {
    ListedSnapshot(SnapshotMeta {
        id: format!("snap-{index}"),
        index,
        term,
        configuration: configuration(&["n1"]),
        configuration_index: 1,
        size: 0,
    })
}

fn configuration(ids: &[&str]) -> Configuration {
    Configuration::new(ids.iter().map(|id| Server::voter(*id, format!("{id}:1"))).collect())
}

fn config_entry(index: u64, term: u64, ids: &[&str]) -> Log {
    Log::new(index, term, LogType::Configuration, crate::codec::encode(&configuration(ids)).unwrap())
}

/// Entries `range` of 1000-byte commands in term 1, except configuration
/// entries at the indexes in `configs`.
fn log(range: std::ops::RangeInclusive<u64>, configs: &[u64]) -> Vec<Log> {
    range
        .map(|i| {
            if configs.contains(&i) {
                config_entry(i, 1, if i % 2 == 0 { &["n1", "n2"] } else { &["n1"] })
            } else {
                Log::new(i, 1, LogType::Command, vec![(i % 251) as u8; 1000])
            }
        })
        .collect()
}

fn config_with_window(window: usize) -> Config {
    Config { max_log_window_bytes: window, ..Config::new("n1") }
}

async fn load(
    config: &Config,
    store: &CountingStore,
    snaps: &dyn SnapshotStore,
) -> Result<InitialState, Error> {
    load_initial_state(config, &mut NullFsm, store, store, snaps).await
}

#[tokio::test]
async fn startup_reads_payloads_only_for_the_window_and_the_configuration_entries() {
    let all = log(1..=1000, &[1, 400]);
    let store = CountingStore::with_log(all.clone());
    // Each entry counts its data plus ENTRY_OVERHEAD, as in the core's window.
    let each = 1000 + ENTRY_OVERHEAD;
    let init = load(&config_with_window(10 * each + each - 1), &store, &DiscardSnapshotStore).await.unwrap();
    // The newest 10 entries fit in the window; an 11th would not.
    assert_eq!(init.entries, all[990..].to_vec());
    let metas: Vec<LogEntryMeta> = all[..990].iter().map(LogEntryMeta::of).collect();
    assert_eq!(init.entry_meta, metas);
    assert_eq!(init.configurations, vec![all[0].clone(), all[399].clone()]);
    let config_bytes = (all[0].data.len() + all[399].data.len()) as u64;
    assert_eq!(
        store.payload_bytes(),
        10 * 1000 + config_bytes,
        "payloads read: the window and the configurations"
    );
}

#[tokio::test]
async fn a_log_that_fits_the_window_is_loaded_whole() {
    let all = log(1..=20, &[1]);
    let store = CountingStore::with_log(all.clone());
    let init = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap();
    assert_eq!(init.entries, all);
    assert!(init.entry_meta.is_empty() && init.configurations.is_empty());
}

#[tokio::test]
async fn the_window_loaded_at_start_is_capped_and_read_in_batches_of_bounded_size() {
    let all: Vec<Log> =
        (1..=100).map(|i| Log::new(i, 1, LogType::Command, vec![i as u8; 100 << 10])).collect();
    let store = CountingStore::with_log(all.clone());
    let init = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap();
    // 10 MiB would fit the configured window, but a start loads at most
    // STARTUP_WINDOW_BYTES: the newest entries that fit in it.
    let each = (100 << 10) + ENTRY_OVERHEAD;
    let fit = STARTUP_WINDOW_BYTES / each;
    assert_eq!(init.entries, all[100 - fit..].to_vec(), "only the newest {fit} entries are loaded");
    assert_eq!(init.entry_meta.len(), 100 - fit);
    let largest = store.largest_read.load(Ordering::SeqCst);
    assert!(largest <= READ_BATCH_BYTES, "one read returned {largest} bytes");
    assert_eq!(store.payload_bytes(), (fit * (100 << 10)) as u64);
}

#[tokio::test]
async fn an_entry_larger_than_the_window_stays_in_the_store() {
    let all = log(1..=5, &[1]);
    let store = CountingStore::with_log(all.clone());
    let init =
        load(&config_with_window(1000 + ENTRY_OVERHEAD - 1), &store, &DiscardSnapshotStore).await.unwrap();
    assert!(init.entries.is_empty());
    assert_eq!(init.entry_meta.len(), 5);
    assert_eq!(init.configurations, vec![all[0].clone()]);
    assert_eq!(store.payload_bytes(), all[0].data.len() as u64);
}

#[tokio::test]
async fn the_log_after_a_snapshot_starts_after_it() {
    // Entries 1..=50 are compacted into the snapshot but still stored.
    let all = log(1..=100, &[1, 60]);
    let store = CountingStore::with_log(all.clone());
    let config =
        Config { no_snapshot_restore_on_start: true, ..config_with_window(5 * (1000 + ENTRY_OVERHEAD)) };
    let init = load(&config, &store, &snapshot_at(50, 1)).await.unwrap();
    assert_eq!(init.entries, all[95..].to_vec());
    assert_eq!(init.entry_meta.first().map(|m| m.index), Some(51));
    assert_eq!(init.entry_meta.last().map(|m| m.index), Some(95));
    assert_eq!(
        init.configurations,
        vec![all[59].clone()],
        "the configuration before the snapshot is not needed"
    );
}

#[tokio::test]
async fn the_recorded_commit_index_is_read() {
    let store = CountingStore::with_log(log(1..=100, &[1]));
    store.set_u64(COMMIT_KEY, 70).await.unwrap();
    let init = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap();
    assert_eq!(init.commit, 70);
}

#[tokio::test]
async fn no_recorded_commit_index_is_zero() {
    let store = CountingStore::with_log(log(1..=10, &[1]));
    let init = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap();
    assert_eq!(init.commit, 0);
}

#[tokio::test]
async fn a_recorded_commit_index_past_the_log_is_clamped_to_its_end() {
    let store = CountingStore::with_log(log(1..=100, &[1]));
    store.set_u64(COMMIT_KEY, 5_000).await.unwrap();
    let init = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap();
    assert_eq!(init.commit, 100);
}

#[tokio::test]
async fn a_recorded_commit_index_past_an_empty_log_is_clamped_to_the_snapshot() {
    let store = CountingStore::default();
    store.set_u64(COMMIT_KEY, 90).await.unwrap();
    let config = Config { no_snapshot_restore_on_start: true, ..Config::new("n1") };
    let init = load(&config, &store, &snapshot_at(80, 2)).await.unwrap();
    assert_eq!(init.commit, 80);
}

#[tokio::test]
async fn a_recorded_commit_index_below_the_snapshot_is_ignored() {
    let store = CountingStore::with_log(log(1..=100, &[1]));
    store.set_u64(COMMIT_KEY, 30).await.unwrap();
    let config = Config { no_snapshot_restore_on_start: true, ..Config::new("n1") };
    let init = load(&config, &store, &snapshot_at(50, 1)).await.unwrap();
    assert_eq!(init.commit, 0);
    // At the snapshot exactly it is kept.
    store.set_u64(COMMIT_KEY, 50).await.unwrap();
    let init = load(&config, &store, &snapshot_at(50, 1)).await.unwrap();
    assert_eq!(init.commit, 50);
}

#[tokio::test]
async fn a_malformed_commit_record_is_ignored() {
    let store = CountingStore::with_log(log(1..=10, &[1]));
    store.set(COMMIT_KEY, b"bad").await.unwrap();
    let init = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap();
    assert_eq!(init.commit, 0);
}

#[tokio::test]
async fn a_log_starting_after_the_snapshot_leaves_a_gap_and_is_refused() {
    let store = CountingStore::with_log(log(60..=100, &[]));
    let config = Config { no_snapshot_restore_on_start: true, ..Config::new("n1") };
    let err = load(&config, &store, &snapshot_at(50, 1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Storage(StorageError::Corrupt { reason, .. }) if reason.contains("entries are missing")),
        "{err}"
    );
}

#[tokio::test]
async fn a_store_whose_metadata_leaves_a_gap_is_refused() {
    let store = CountingStore { drop_a_meta: true, ..CountingStore::with_log(log(1..=10, &[1])) };
    let err = load(&config_with_window(64 << 20), &store, &DiscardSnapshotStore).await.unwrap_err();
    assert!(
        matches!(&err, Error::Storage(StorageError::Corrupt { reason, .. }) if reason.contains("entry_meta(1..11)")),
        "{err}"
    );
}

#[tokio::test]
async fn a_log_superseded_by_the_snapshot_is_discarded_without_reading_payloads() {
    // The entry at the snapshot's index has another term: the log is stale.
    let store = CountingStore::with_log(log(1..=100, &[1]));
    let config = Config { no_snapshot_restore_on_start: true, ..Config::new("n1") };
    let init = load(&config, &store, &snapshot_at(50, 7)).await.unwrap();
    assert!(init.entries.is_empty() && init.entry_meta.is_empty());
    assert_eq!(store.last_index().await.unwrap(), 0, "the stale log was deleted");
    assert_eq!(store.payload_bytes(), 0);
}

#[test]
fn byte_batches_are_bounded_and_cover_the_log() {
    let metas: Vec<LogEntryMeta> = [10u64, 10, 10, 50, 5, 5]
        .iter()
        .enumerate()
        .map(|(i, &size)| LogEntryMeta { index: 7 + i as u64, term: 1, log_type: LogType::Command, size })
        .collect();
    assert_eq!(byte_batches(&metas, 25), vec![7..9, 9..10, 10..11, 11..13]);
    assert_eq!(byte_batches(&metas, 1000), vec![7..13]);
    assert!(byte_batches(&[], 10).is_empty());
}
