//! The snapshot task: decides when to snapshot (every `snapshot_interval`,
//! randomized, once more than `snapshot_threshold` entries were applied
//! since the last snapshot; at once when `snapshot_log_limit` entries were)
//! and takes user-requested snapshots. It asks the
//! FSM task for a point-in-time capture, persists it into the snapshot
//! store concurrently with later applies, finalizes or cancels the sink from
//! the result, and tells the main task so the log can be compacted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use super::apply::ApplyMsg;
use crate::error::{Error, FsmOperation, StorageError};
use crate::fsm::FsmSnapshot;
use crate::snapshot::{SnapshotReader, SnapshotStore, SnapshotWriter};
use crate::types::{SnapshotMeta, SnapshotPosition};

/// A stored snapshot, as returned by [`Raft::snapshot`](crate::Raft::snapshot).
#[derive(Clone)]
pub struct SnapshotHandle {
    meta: SnapshotMeta,
    store: Arc<dyn SnapshotStore>,
}

impl std::fmt::Debug for SnapshotHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotHandle").field("meta", &self.meta).finish()
    }
}

impl SnapshotHandle {
    /// What the snapshot contains.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Opens the snapshot for reading.
    pub async fn open(&self) -> Result<(SnapshotMeta, SnapshotReader), Error> {
        Ok(self.store.open(&self.meta.id).await?)
    }
}

/// Requests to the snapshot task.
pub(crate) enum SnapshotCmd {
    /// Take a snapshot now (user request).
    Take(oneshot::Sender<Result<SnapshotHandle, Error>>),
    /// New `snapshot_interval`, `snapshot_threshold` and `snapshot_log_limit`.
    Reload { interval: Duration, threshold: u64, log_limit: u64 },
}

/// What the snapshot task reports to the main task: a new snapshot.
pub(crate) struct SnapshotTaken {
    pub(crate) index: u64,
    pub(crate) term: u64,
    /// Whether the store kept it: only then can the log be compacted behind
    /// it (a discarding store keeps nothing).
    pub(crate) retained: bool,
    /// A user request to answer once the log is compacted behind it.
    pub(crate) reply: Option<SnapshotReply>,
}

/// A user's snapshot request, answered by the main task after compaction.
pub(crate) type SnapshotReply = (oneshot::Sender<Result<SnapshotHandle, Error>>, SnapshotHandle);

pub(crate) struct SnapshotTask<R> {
    pub(crate) snaps: Arc<dyn SnapshotStore>,
    pub(crate) apply_tx: mpsc::UnboundedSender<ApplyMsg<R>>,
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) last_snapshot: u64,
    pub(crate) interval: Duration,
    pub(crate) threshold: u64,
    pub(crate) log_limit: u64,
    /// Jitter source for the interval checks.
    pub(crate) rng: crate::Rng,
    pub(crate) events: mpsc::UnboundedSender<SnapshotTaken>,
    /// Metric handles.
    pub(crate) telemetry: crate::telemetry::SnapshotTelemetry,
}

/// How often the applied index is compared with `snapshot_log_limit`.
const LOG_LIMIT_CHECK: Duration = Duration::from_millis(100);
/// After a snapshot triggered by the log limit failed, how long before the
/// limit triggers another.
const LOG_LIMIT_RETRY: Duration = Duration::from_secs(1);

pub(crate) async fn run<R: Send + 'static>(
    mut task: SnapshotTask<R>,
    mut cmds: mpsc::UnboundedReceiver<SnapshotCmd>,
) {
    let mut limit_check = tokio::time::interval(LOG_LIMIT_CHECK);
    limit_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let next_check = tokio::time::sleep(task.next_wait());
    tokio::pin!(next_check);
    let mut limit_retry_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = &mut next_check => {
                next_check.as_mut().reset(tokio::time::Instant::now() + task.next_wait());
                let applied = task.applied.load(Ordering::Acquire);
                if applied.saturating_sub(task.last_snapshot) > task.threshold {
                    if let Err(e) = task.take_auto().await {
                        tracing::warn!(error = %e, "automatic snapshot failed");
                    }
                }
            }
            _ = limit_check.tick(), if task.log_limit > 0 => {
                let applied = task.applied.load(Ordering::Acquire);
                let waiting = limit_retry_at.is_some_and(|at| tokio::time::Instant::now() < at);
                if !waiting && applied.saturating_sub(task.last_snapshot) >= task.log_limit {
                    tracing::debug!(applied, last = task.last_snapshot, "log limit reached; snapshotting");
                    limit_retry_at = None;
                    if let Err(e) = task.take_auto().await {
                        tracing::warn!(error = %e, "automatic snapshot failed");
                        limit_retry_at = Some(tokio::time::Instant::now() + LOG_LIMIT_RETRY);
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(SnapshotCmd::Take(tx)) => {
                    task.take_for(tx).await;
                }
                Some(SnapshotCmd::Reload { interval, threshold, log_limit }) => {
                    task.interval = interval;
                    task.threshold = threshold;
                    task.log_limit = log_limit;
                    next_check.as_mut().reset(tokio::time::Instant::now() + task.next_wait());
                }
            }
        }
    }
}

impl<R: Send + 'static> SnapshotTask<R> {
    /// Time to the next interval check: `interval` plus up to one more
    /// `interval` of jitter, so nodes do not snapshot in lockstep.
    fn next_wait(&mut self) -> Duration {
        self.interval + self.interval.mul_f64(self.rng.next_f64())
    }

    /// Takes a snapshot; a new one is reported to the main task.
    async fn take_auto(&mut self) -> Result<(), Error> {
        let (handle, new) = self.take().await?;
        if new {
            self.report(handle, None).await;
        }
        Ok(())
    }

    /// Takes a snapshot for a user; a new one is handed to the main task,
    /// which answers `tx` once the log is compacted behind it.
    async fn take_for(&mut self, tx: oneshot::Sender<Result<SnapshotHandle, Error>>) {
        match self.take().await {
            Ok((handle, true)) => self.report(handle, Some(tx)).await,
            Ok((handle, false)) => {
                let _ = tx.send(Ok(handle));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    }

    /// Tells the main task about a new snapshot, so it can compact the log
    /// behind it (only behind a snapshot the store kept: a discarding store
    /// keeps nothing, so its log is never compacted) and answer `reply`.
    async fn report(
        &mut self,
        handle: SnapshotHandle,
        reply: Option<oneshot::Sender<Result<SnapshotHandle, Error>>>,
    ) {
        let meta = handle.meta();
        let retained = match self.snaps.list().await {
            Ok(list) => list.iter().any(|m| m.id == meta.id),
            Err(e) => {
                tracing::warn!(error = %e, "listing snapshots failed; log not compacted");
                false
            }
        };
        if !retained {
            tracing::debug!(id = %meta.id, "snapshot not retained by the store; log not compacted");
        }
        let taken = SnapshotTaken {
            index: meta.index,
            term: meta.term,
            retained,
            reply: reply.map(|tx| (tx, handle.clone())),
        };
        if let Err(mpsc::error::SendError(taken)) = self.events.send(taken) {
            if let Some((tx, _)) = taken.reply {
                let _ = tx.send(Err(Error::Shutdown));
            }
        }
    }

    /// Captures the FSM and stores the snapshot. Returns it, and whether it
    /// is new (`false`: nothing was applied since the last one, which is
    /// returned).
    async fn take(&mut self) -> Result<(SnapshotHandle, bool), Error> {
        let started = tokio::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.apply_tx.send(ApplyMsg::Capture(tx)).map_err(|_| Error::Shutdown)?;
        let capture = rx.await.map_err(|_| Error::Shutdown)??;
        if capture.position.index == 0 {
            return Err(Error::NothingToSnapshot);
        }
        if capture.position.index <= self.last_snapshot {
            let index = capture.position.index;
            if let Some(meta) = self.snaps.list().await?.into_iter().find(|m| m.index == index) {
                return Ok((SnapshotHandle { meta, store: self.snaps.clone() }, false));
            }
        }
        let meta = write_snapshot(&*self.snaps, capture.snapshot, &capture.position).await?;
        tracing::info!(index = meta.index, size = meta.size, id = %meta.id, "snapshot taken");
        self.telemetry.taken(started.elapsed(), meta.size);
        self.last_snapshot = meta.index;
        Ok((SnapshotHandle { meta, store: self.snaps.clone() }, true))
    }
}

/// Writes an FSM snapshot into a new sink of `snaps` and finalizes it; the
/// sink is cancelled if the FSM fails to write it.
pub(crate) async fn write_snapshot(
    snaps: &dyn SnapshotStore,
    snapshot: Box<dyn FsmSnapshot>,
    position: &SnapshotPosition,
) -> Result<SnapshotMeta, Error> {
    let SnapshotPosition { index, term, configuration, configuration_index } = position;
    let sink = snaps.create(*index, *term, configuration, *configuration_index).await?;
    let mut writer = SnapshotWriter::new(sink);
    let persisted = match snapshot.persist(&mut writer).await {
        Ok(()) => writer
            .flush()
            .await
            .map_err(|e| StorageError::io(format!("flush snapshot {}", writer.id()), e).into()),
        // The store's sink failed under the FSM, which passed the failure
        // on: a storage failure, whatever the FSM wrapped it in.
        Err(e) => Err(match writer.sink_error() {
            Some(kind) => StorageError::io(
                format!("write snapshot {}", writer.id()),
                crate::snapshot::into_io_error(e, kind),
            )
            .into(),
            None => Error::fsm(FsmOperation::Persist, e),
        }),
    };
    match persisted {
        Ok(()) => Ok(writer.finalize().await?),
        Err(e) => {
            if let Err(cancel) = writer.cancel().await {
                tracing::warn!(error = %cancel, "cancelling the snapshot sink failed");
            }
            Err(e)
        }
    }
}
