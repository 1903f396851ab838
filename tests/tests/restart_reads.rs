//! What a restarting node reads from its log store (issue 17): the shape of
//! the whole log (`LogStore::entry_meta`), the configuration entries, and
//! payloads only for the newest entries that fit its log window, never the
//! whole log.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raft::transport::inmem::InmemNetwork;
use raft::transport::ENTRY_OVERHEAD;
use raft::{
    async_trait, Config, Configuration, Log, LogEntryMeta, LogStore, LogType, Raft, Server, StableStore,
    StorageError,
};
use raft_store_file::FileStore;
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::{test_config, RecordingFsm};

/// A log and stable store that counts the payload bytes handed out by
/// `get_log`/`get_logs` and the entries described by `entry_meta`.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    payload_bytes: Arc<AtomicU64>,
    metas: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Self { inner, payload_bytes: Arc::default(), metas: Arc::default() }
    }

    fn count(&self, logs: &[Log]) {
        let n: usize = logs.iter().map(|l| l.data.len()).sum();
        self.payload_bytes.fetch_add(n as u64, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: LogStore> LogStore for Counting<S> {
    async fn first_index(&self) -> Result<u64, StorageError> {
        self.inner.first_index().await
    }
    async fn last_index(&self) -> Result<u64, StorageError> {
        self.inner.last_index().await
    }
    async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
        let log = self.inner.get_log(index).await?;
        self.count(log.as_slice());
        Ok(log)
    }
    async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
        let logs = self.inner.get_logs(range).await?;
        self.count(&logs);
        Ok(logs)
    }
    async fn entry_meta(&self, range: Range<u64>) -> Result<Vec<LogEntryMeta>, StorageError> {
        let metas = self.inner.entry_meta(range).await?;
        self.metas.fetch_add(metas.len() as u64, Ordering::SeqCst);
        Ok(metas)
    }
    async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
        self.inner.store_logs(logs).await
    }
    async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
        self.inner.delete_range(min, max).await
    }
}

#[async_trait]
impl<S: StableStore> StableStore for Counting<S> {
    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.inner.set(key, value).await
    }
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key).await
    }
}

const ENTRY: usize = 1000;
const WINDOW_ENTRIES: usize = 20;

fn config() -> Config {
    Config { max_log_window_bytes: WINDOW_ENTRIES * (ENTRY + ENTRY_OVERHEAD), ..test_config("n1") }
}

/// Bootstraps a one-node cluster in `store` and writes `count` commands of
/// `ENTRY` bytes after the configuration entry, as an earlier run would
/// have. Returns the configuration entry's payload size.
async fn prepare<S: LogStore + StableStore>(store: &S, snaps: &InmemSnapshotStore, count: u64) -> u64 {
    let conf = Configuration::new(vec![Server::voter("n1", "n1")]);
    raft::bootstrap_cluster(&config(), store, store, snaps, conf).await.expect("bootstrap");
    let entries: Vec<Log> =
        (2..=count + 1).map(|i| Log::new(i, 1, LogType::Command, vec![(i % 251) as u8; ENTRY])).collect();
    for chunk in entries.chunks(500) {
        store.store_logs(chunk).await.expect("store");
    }
    store.get_log(1).await.expect("read").expect("configuration entry").data.len() as u64
}

/// Starts the node on `counting` and returns the payload bytes read while
/// `Raft::new` ran (the runtime's tasks have not run yet on this
/// current-thread runtime), then shuts it down.
async fn start_and_count<S: LogStore + StableStore + Clone>(
    counting: &Counting<S>,
    snaps: &InmemSnapshotStore,
    net: &InmemNetwork,
    last: u64,
) -> (u64, u64) {
    let raft = Raft::new(
        config(),
        RecordingFsm::default(),
        counting.clone(),
        counting.clone(),
        snaps.clone(),
        net.transport("n1"),
    )
    .await
    .expect("start");
    let read = counting.payload_bytes.load(Ordering::SeqCst);
    let metas = counting.metas.load(Ordering::SeqCst);
    assert_eq!(raft.metrics().borrow().last_log_index, last, "the node knows its whole log");
    raft.shutdown().await.expect("shutdown");
    (read, metas)
}

#[tokio::test]
async fn a_restart_reads_payloads_only_for_its_window_from_an_inmem_store() {
    let (store, snaps, net) = (InmemStore::new(), InmemSnapshotStore::new(), InmemNetwork::new());
    let conf_bytes = prepare(&store, &snaps, 2000).await;
    let counting = Counting::new(store);
    let (read, metas) = start_and_count(&counting, &snaps, &net, 2001).await;
    assert!(metas >= 2001, "the whole log's shape is read through entry_meta ({metas} entries)");
    let window = (WINDOW_ENTRIES * ENTRY) as u64;
    assert!(
        (window..=window + conf_bytes).contains(&read),
        "payload bytes read at start: {read}, expected the {window}-byte window (plus {conf_bytes} of configuration)"
    );
}

#[tokio::test]
async fn a_restart_reads_payloads_only_for_its_window_from_a_file_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (snaps, net) = (InmemSnapshotStore::new(), InmemNetwork::new());
    let conf_bytes = {
        let store = FileStore::open(dir.path()).await.expect("open");
        prepare(&store, &snaps, 3000).await
    };
    let counting = Counting::new(FileStore::open(dir.path()).await.expect("reopen"));
    let (read, _) = start_and_count(&counting, &snaps, &net, 3001).await;
    let window = (WINDOW_ENTRIES * ENTRY) as u64;
    assert!(
        (window..=window + conf_bytes).contains(&read),
        "payload bytes read at start: {read}, expected the {window}-byte window (plus {conf_bytes} of configuration)"
    );
}
