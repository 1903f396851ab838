//! Sending side of InstallSnapshot: the header message, then the
//! [`SnapshotReader`] cut into `snapshot_chunk_size` data messages, read
//! lazily as HTTP/2 flow control lets them go (never the whole snapshot in
//! memory).
//!
//! The call fails with [`TransportError::Timeout`] if no chunk could be sent
//! for `snapshot_timeout` (or the answer takes that long after the last
//! chunk), so a stuck peer is detected without capping the total transfer
//! time of a large snapshot.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use raft::message::{InstallSnapshotRequest, InstallSnapshotResponse};
use raft::{ServerAddress, SnapshotReader, TransportError};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::convert;
use crate::pb;
use crate::pb::install_snapshot_chunk::Payload;
use crate::pool::{Pool, RaftClient};

/// Shared between the chunk stream and the caller.
#[derive(Clone)]
struct Progress(Arc<Mutex<ProgressState>>);

struct ProgressState {
    last: Instant,
    read_error: Option<io::Error>,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Chunker {
    data: SnapshotReader,
    remaining: u64,
    chunk_size: usize,
    progress: Progress,
}

impl Chunker {
    /// Reads the next full chunk (shorter only at the end).
    async fn next(&mut self) -> Result<Option<pb::InstallSnapshotChunk>, io::Error> {
        let mut buf = BytesMut::with_capacity(self.chunk_size);
        while buf.len() < self.chunk_size {
            if self.data.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let len = buf.len() as u64;
        if len > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "snapshot reader yields more bytes than meta.size declares",
            ));
        }
        self.remaining -= len;
        self.progress.lock().last = Instant::now();
        Ok(Some(pb::InstallSnapshotChunk { payload: Some(Payload::Data(buf.freeze())) }))
    }
}

/// Streams one snapshot to `addr`.
pub(crate) async fn send(
    mut client: RaftClient,
    pool: Arc<Pool>,
    addr: ServerAddress,
    req: InstallSnapshotRequest,
    data: SnapshotReader,
    chunk_size: usize,
    timeout: Duration,
) -> Result<InstallSnapshotResponse, TransportError> {
    let progress = Progress(Arc::new(Mutex::new(ProgressState { last: Instant::now(), read_error: None })));
    let chunker = Chunker { data, remaining: req.meta.size, chunk_size, progress: progress.clone() };
    let header = futures::stream::once(futures::future::ready(convert::snapshot_header_to_pb(&req)));
    let chunks = futures::stream::unfold(Some(chunker), |state| async move {
        let mut chunker = state?;
        match chunker.next().await {
            Ok(Some(chunk)) => Some((chunk, Some(chunker))),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "reading the snapshot to send failed");
                chunker.progress.lock().read_error = Some(err);
                None
            }
        }
    });
    let call = client.install_snapshot(futures::StreamExt::chain(header, chunks));
    tokio::pin!(call);
    let outcome = loop {
        let deadline = progress.lock().last + timeout;
        tokio::select! {
            result = &mut call => break Some(result),
            _ = tokio::time::sleep_until(deadline) => {
                if progress.lock().last + timeout <= Instant::now() {
                    break None;
                }
            }
        }
    };
    // A local read failure explains a rejected or truncated stream best.
    if let Some(err) = progress.lock().read_error.take() {
        return Err(TransportError::Other(format!("reading snapshot {} failed: {err}", req.meta.id)));
    }
    match outcome {
        None => {
            pool.failed(&addr, false);
            Err(TransportError::Timeout(addr))
        }
        Some(Err(status)) => Err(pool.on_status(&addr, &status)),
        Some(Ok(response)) => {
            pool.succeeded(&addr);
            Ok(convert::snapshot_response_from_pb(response.into_inner()))
        }
    }
}
