//! Snapshot storage: the [`SnapshotStore`] trait, the [`SnapshotSink`] a store
//! hands out for writing, and the [`SnapshotWriter`] / [`SnapshotReader`]
//! byte streams the FSM sees. Also [`DiscardSnapshotStore`] for FSMs that
//! never snapshot.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::StorageError;
use crate::types::{Configuration, SnapshotMeta};

/// Durable storage for snapshots.
///
/// # To be correct
/// - A snapshot becomes visible to [`list`](SnapshotStore::list) and
///   [`open`](SnapshotStore::open) only after its sink was finalized, and is
///   durable by then. A cancelled or half-written snapshot is never listed.
/// - `list` returns the newest first.
/// - Stored data is verified (e.g. with a checksum kept beside it). `open`
///   should verify it before handing out a reader and report damage as
///   [`StorageError::Corrupt`], so a damaged snapshot never reaches an FSM.
///   At the latest, the reader must fail with an I/O error of kind
///   [`std::io::ErrorKind::InvalidData`] when it reaches the end of damaged
///   data; the runtime reads every snapshot to its end (after the FSM's
///   `restore`, and when a received snapshot is stored) and turns that into
///   [`StorageError::Corrupt`], failing the restore. A store that never
///   reports damage lets wrong state through: the conformance suite
///   (`raft::testing::conformance::snapshot_corruption_conformance`) checks this.
/// - [`SnapshotMeta::size`] is the data's length (the runtime refuses data
///   of another length; 0 means unknown).
///
/// What the runtime does with a damaged snapshot: at start it falls back to
/// an older snapshot or the log only when the log still bridges to the
/// damaged one, and otherwise refuses to start; a damaged incoming
/// (InstallSnapshot) or user ([`Raft::restore`](crate::Raft::restore))
/// snapshot is refused before it replaces any state.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Starts a new snapshot covering the log up to `index` (of `term`),
    /// whose latest configuration is `configuration` from `configuration_index`.
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError>;

    /// Every complete snapshot, newest first.
    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError>;

    /// Opens a snapshot for reading.
    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError>;

    /// Deletes snapshot `id`, which the runtime found damaged right after
    /// storing it (a received or restored snapshot that was refused, so
    /// nothing relies on it): it must no longer be listed. Returns whether
    /// it was deleted. The default keeps it (`Ok(false)`): it then stays
    /// listed until retention drops it, and a restart meets it as a damaged
    /// newest snapshot.
    async fn delete(&self, id: &str) -> Result<bool, StorageError> {
        let _ = id;
        Ok(false)
    }
}

/// A snapshot being written. Write the bytes through [`AsyncWrite`], then
/// call exactly one of `finalize` or `cancel` (the runtime does this for FSM
/// snapshots, so user code never has to).
#[async_trait]
pub trait SnapshotSink: AsyncWrite + Send + Unpin {
    /// The id the snapshot will have once finalized.
    fn id(&self) -> &str;

    /// Makes the snapshot durable and visible, and returns its metadata.
    async fn finalize(self: Box<Self>) -> Result<SnapshotMeta, StorageError>;

    /// Discards the partly written snapshot.
    async fn cancel(self: Box<Self>) -> Result<(), StorageError>;
}

/// The byte sink an [`FsmSnapshot`](crate::FsmSnapshot) writes into. Use it
/// with [`tokio::io::AsyncWriteExt`].
pub struct SnapshotWriter {
    sink: Box<dyn SnapshotSink>,
    written: u64,
    /// The kind of the first error the sink returned, if any: tells a
    /// storage failure under [`FsmSnapshot::persist`](crate::FsmSnapshot::persist)
    /// from the FSM's own.
    sink_error: Option<io::ErrorKind>,
}

impl SnapshotWriter {
    /// Wraps a store's sink.
    pub fn new(sink: Box<dyn SnapshotSink>) -> Self {
        Self { sink, written: 0, sink_error: None }
    }

    /// The kind of the first error the store's sink returned, if it failed.
    pub(crate) fn sink_error(&self) -> Option<io::ErrorKind> {
        self.sink_error
    }

    fn note(&mut self, result: &io::Result<impl Sized>) {
        if let (Err(e), None) = (result, self.sink_error) {
            self.sink_error = Some(e.kind());
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The id the snapshot will have.
    pub fn id(&self) -> &str {
        self.sink.id()
    }

    /// Finalizes the underlying sink.
    pub async fn finalize(self) -> Result<SnapshotMeta, StorageError> {
        self.sink.finalize().await
    }

    /// Cancels the underlying sink.
    pub async fn cancel(self) -> Result<(), StorageError> {
        self.sink.cancel().await
    }
}

impl AsyncWrite for SnapshotWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = std::task::ready!(Pin::new(&mut this.sink).poll_write(cx, buf));
        match &result {
            Ok(n) => this.written += *n as u64,
            Err(_) => this.note(&result),
        }
        Poll::Ready(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = std::task::ready!(Pin::new(&mut self.sink).poll_flush(cx));
        self.note(&result);
        Poll::Ready(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = std::task::ready!(Pin::new(&mut self.sink).poll_shutdown(cx));
        self.note(&result);
        Poll::Ready(result)
    }
}

/// The I/O error behind `err`, an error the FSM returned after the store
/// failed under it (with an error of `kind`): the store's own error if the
/// FSM passed it on as it was, else an error of `kind` wrapping the FSM's
/// (whose source chain leads to the store's).
pub(crate) fn into_io_error(err: crate::error::BoxError, kind: io::ErrorKind) -> io::Error {
    match err.downcast::<io::Error>() {
        Ok(io) => *io,
        Err(other) => io::Error::new(kind, other),
    }
}

/// A stream of snapshot bytes, read with [`tokio::io::AsyncReadExt`].
pub struct SnapshotReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
}

impl SnapshotReader {
    /// Wraps any async byte source.
    pub fn new(inner: impl AsyncRead + Send + 'static) -> Self {
        Self { inner: Box::pin(inner) }
    }

    /// A reader over bytes held in memory.
    pub fn from_bytes(bytes: impl Into<bytes::Bytes>) -> Self {
        Self::new(io::Cursor::new(bytes.into()))
    }
}

impl AsyncRead for SnapshotReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotReader")
    }
}

/// A snapshot store that keeps nothing, for FSMs that never snapshot.
/// `create` hands out a sink that discards its bytes; `list` is always empty.
/// Since no snapshot can ever replace compacted entries, a node using it
/// never compacts its log: memory and disk grow with the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSnapshotStore;

impl DiscardSnapshotStore {
    /// Creates the store.
    pub fn new() -> Self {
        Self
    }
}

struct DiscardSink {
    meta: SnapshotMeta,
}

impl AsyncWrite for DiscardSink {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.meta.size += buf.len() as u64;
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
impl SnapshotSink for DiscardSink {
    fn id(&self) -> &str {
        &self.meta.id
    }

    async fn finalize(self: Box<Self>) -> Result<SnapshotMeta, StorageError> {
        Ok(self.meta)
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for DiscardSnapshotStore {
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        Ok(Box::new(DiscardSink {
            meta: SnapshotMeta {
                id: format!("discard-{term}-{index}"),
                index,
                term,
                configuration: configuration.clone(),
                configuration_index,
                size: 0,
            },
        }))
    }

    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        Ok(Vec::new())
    }

    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        Err(StorageError::SnapshotNotFound(id.to_owned()))
    }
}
