//! [`InmemSnapshotStore`]: snapshots kept as byte buffers in memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use raft::{
    async_trait, Configuration, SnapshotMeta, SnapshotReader, SnapshotSink, SnapshotStore, StorageError,
};
use tokio::io::AsyncWrite;

#[derive(Default)]
struct Inner {
    /// Finalized snapshots, oldest first: ordered by (term, index, creation
    /// order), whatever order they were finalized in.
    snapshots: Vec<(SnapshotMeta, Bytes, u64)>,
    next_id: u64,
}

/// An in-memory [`SnapshotStore`] that keeps the newest `retain` snapshots
/// (default 2). "Newest" means highest (term, index), then latest created,
/// whatever order the sinks were finalized in. Clones share the same
/// snapshots.
#[derive(Clone)]
pub struct InmemSnapshotStore {
    inner: Arc<Mutex<Inner>>,
    retain: usize,
}

impl Default for InmemSnapshotStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InmemSnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InmemSnapshotStore").field("retain", &self.retain).finish()
    }
}

impl InmemSnapshotStore {
    /// A store keeping the two newest snapshots.
    pub fn new() -> Self {
        Self::with_retain(2)
    }

    /// A store keeping the newest `retain` snapshots (at least 1).
    pub fn with_retain(retain: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(Inner::default())), retain: retain.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct InmemSink {
    store: InmemSnapshotStore,
    meta: SnapshotMeta,
    /// Creation order, the tie-breaker between equal (term, index).
    seq: u64,
    buf: Vec<u8>,
}

impl AsyncWrite for InmemSink {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl SnapshotSink for InmemSink {
    fn id(&self) -> &str {
        &self.meta.id
    }

    async fn finalize(self: Box<Self>) -> Result<SnapshotMeta, StorageError> {
        let InmemSink { store, mut meta, seq, buf } = *self;
        meta.size = buf.len() as u64;
        let mut inner = store.lock();
        let key = (meta.term, meta.index, seq);
        let at = inner.snapshots.partition_point(|(m, _, s)| (m.term, m.index, *s) < key);
        inner.snapshots.insert(at, (meta.clone(), Bytes::from(buf), seq));
        let excess = inner.snapshots.len().saturating_sub(store.retain);
        inner.snapshots.drain(..excess);
        Ok(meta)
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for InmemSnapshotStore {
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        let seq = {
            let mut inner = self.lock();
            inner.next_id += 1;
            inner.next_id
        };
        let id = format!("{term}-{index}-{seq}");
        Ok(Box::new(InmemSink {
            store: self.clone(),
            meta: SnapshotMeta {
                id,
                index,
                term,
                configuration: configuration.clone(),
                configuration_index,
                size: 0,
            },
            seq,
            buf: Vec::new(),
        }))
    }

    async fn delete(&self, id: &str) -> Result<bool, StorageError> {
        let mut inner = self.lock();
        let before = inner.snapshots.len();
        inner.snapshots.retain(|(m, _, _)| m.id != id);
        Ok(inner.snapshots.len() < before)
    }

    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        Ok(self.lock().snapshots.iter().rev().map(|(m, _, _)| m.clone()).collect())
    }

    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        let inner = self.lock();
        let (meta, data, _) = inner
            .snapshots
            .iter()
            .find(|(m, _, _)| m.id == id)
            .ok_or_else(|| StorageError::SnapshotNotFound(id.to_owned()))?;
        Ok((meta.clone(), SnapshotReader::from_bytes(data.clone())))
    }
}
