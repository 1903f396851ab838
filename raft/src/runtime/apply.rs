//! The FSM task: applies committed entries in order, in batches, resolves
//! the futures of the callers who proposed them, restores the FSM from
//! snapshots, and captures point-in-time snapshots for the snapshot task.
//! Everything arrives on one FIFO channel, so a restore or a capture always
//! sits at an exact position in the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::{Applied, Waiter};
use crate::error::{Error, FsmOperation, StorageError};
use crate::fsm::{Fsm, FsmSnapshot};
use crate::snapshot::SnapshotStore;
use crate::storage::LogStore;
use crate::types::{Configuration, Log, LogType, SnapshotPosition};

/// Committed entries plus whoever waits on some of them (by index).
pub(crate) struct ApplyBatch<R> {
    pub(crate) entries: Vec<Log>,
    pub(crate) waiters: Vec<(u64, Waiter<R>)>,
    /// When the client writes among them were proposed and committed.
    pub(crate) stamp: Option<crate::telemetry::WriteStamp>,
}

/// A point-in-time FSM snapshot and the log position it reflects.
pub(crate) struct Capture {
    pub(crate) snapshot: Box<dyn FsmSnapshot>,
    pub(crate) position: SnapshotPosition,
}

/// Work for the FSM task.
pub(crate) enum ApplyMsg<R> {
    /// Apply these committed entries.
    Batch(ApplyBatch<R>),
    /// Read committed entries `lo..=hi` from the log store, in batches
    /// bounded by bytes, and apply them (with the waiters among them).
    FromStore { lo: u64, hi: u64, waiters: Vec<(u64, Waiter<R>)> },
    /// Replace the FSM state with a stored snapshot.
    Restore { id: String, position: SnapshotPosition },
    /// Capture a snapshot of the current state.
    Capture(oneshot::Sender<Result<Capture, Error>>),
}

/// Most entries handed to one `apply_batch` call, and read from the log
/// store at once.
pub(crate) const MAX_BATCH: usize = 4096;

/// Most entry bytes read from the log store at once when applying entries
/// the core no longer holds: the main task cuts such ranges by the sizes
/// the core records for every entry (`Core::store_read_ranges`).
pub(crate) const MAX_READ_BYTES: u64 = 4 << 20;

pub(crate) struct ApplyTask<F: Fsm> {
    pub(crate) fsm: F,
    pub(crate) batch_apply: bool,
    pub(crate) snaps: Arc<dyn SnapshotStore>,
    /// The log position the FSM state reflects.
    pub(crate) position: SnapshotPosition,
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) applied_tx: watch::Sender<u64>,
    /// Tells the main task that the FSM can no longer be trusted (a failed
    /// restore), so the node stops instead of serving frozen state.
    pub(crate) failures: mpsc::UnboundedSender<super::writer::WriterEvent>,
    /// The log store, read for committed entries the core no longer holds
    /// in memory.
    pub(crate) logs: Arc<dyn LogStore>,
    /// Metric handles and trace fields.
    pub(crate) telemetry: crate::telemetry::ApplyTelemetry,
}

pub(crate) async fn run<F: Fsm>(
    mut task: ApplyTask<F>,
    mut rx: mpsc::UnboundedReceiver<ApplyMsg<F::Response>>,
) {
    let mut carry = None;
    loop {
        let msg = match carry.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        match msg {
            ApplyMsg::Batch(first) => {
                let mut entries = first.entries;
                let mut waiters = first.waiters;
                let mut stamp = first.stamp;
                while entries.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(ApplyMsg::Batch(more)) => {
                            entries.extend(more.entries);
                            waiters.extend(more.waiters);
                            stamp = crate::telemetry::WriteStamp::earliest(stamp, more.stamp);
                        }
                        Ok(other) => {
                            carry = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let range = entries.first().zip(entries.last()).map(|(f, l)| (f.index, l.index));
                task.apply(entries, waiters).await;
                if let Some((lo, hi)) = range {
                    task.telemetry.applied(lo, hi, stamp);
                }
            }
            ApplyMsg::FromStore { lo, hi, waiters } => {
                if !task.apply_from_store(lo, hi, waiters).await {
                    // Entries after the missing ones must not be applied.
                    return;
                }
            }
            ApplyMsg::Restore { id, position } => {
                if !task.restore(&id, position).await {
                    // The FSM may hold part of a snapshot: applying more
                    // entries on top would publish wrong state.
                    return;
                }
            }
            ApplyMsg::Capture(tx) => {
                let _ = tx.send(task.capture().await);
            }
        }
    }
}

impl<F: Fsm> ApplyTask<F> {
    fn set_applied(&mut self, index: u64) {
        self.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
    }

    async fn apply(&mut self, entries: Vec<Log>, waiters: Vec<(u64, Waiter<F::Response>)>) {
        let Some(last) = entries.last() else { return };
        let (last_index, last_term) = (last.index, last.term);
        let skip = self.position.index;
        for e in entries.iter().filter(|e| e.log_type == LogType::Configuration && e.index > skip) {
            match crate::codec::decode::<Configuration>(&e.data) {
                Ok(c) => {
                    self.position.configuration = c;
                    self.position.configuration_index = e.index;
                }
                Err(err) => tracing::error!(index = e.index, error = %err, "undecodable configuration entry"),
            }
        }
        // Keep only the commands in place: no clone of any entry.
        let mut commands = entries;
        commands.retain(|e| e.log_type == LogType::Command && e.index > skip);
        let mut responses = if self.batch_apply {
            self.fsm.apply_batch(&commands).await
        } else {
            let mut out = Vec::with_capacity(commands.len());
            for c in &commands {
                out.push(self.fsm.apply(c).await);
            }
            out
        }
        .into_iter();
        let mut waiters = waiters.into_iter().peekable();
        for cmd in &commands {
            let response = responses.next();
            while waiters.peek().is_some_and(|(i, _)| *i < cmd.index) {
                if let Some((i, w)) = waiters.next() {
                    resolve_index(i, w);
                }
            }
            if waiters.peek().is_some_and(|(i, _)| *i == cmd.index) {
                if let (Some((_, w)), Some(response)) = (waiters.next(), response) {
                    match w {
                        Waiter::Apply(tx) => {
                            let _ = tx.send(Ok(Applied { index: cmd.index, response }));
                        }
                        other => resolve_index(cmd.index, other),
                    }
                }
            }
        }
        for (i, w) in waiters {
            resolve_index(i, w);
        }
        if last_index > self.position.index {
            self.position.index = last_index;
            self.position.term = last_term;
            self.set_applied(last_index);
        }
    }

    /// Reads committed entries `lo..=hi` from the log store in one read
    /// (the main task sized the range, see [`MAX_READ_BYTES`]) and applies
    /// them in order. Returns `false` if the read failed: the node stops (a
    /// committed entry it cannot read can never be applied), the failure is
    /// reported to the main task like any storage failure, and the waiters
    /// learn why.
    async fn apply_from_store(&mut self, lo: u64, hi: u64, waiters: Vec<(u64, Waiter<F::Response>)>) -> bool {
        // Entries a restored snapshot covers are applied already.
        let next = lo.max(self.position.index.saturating_add(1));
        if next > hi {
            for (i, w) in waiters {
                resolve_index(i, w);
            }
            return true;
        }
        let read = match self.logs.get_logs(next..hi.saturating_add(1)).await {
            Ok(entries) => check_range(&entries, next, hi).map(|()| entries),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(entries) => {
                self.apply(entries, waiters).await;
                true
            }
            Err(err) => {
                tracing::error!(lo = next, hi, error = %err,
                    "reading committed entries from the log store failed; the node stops. \
                     Check the log store, then restart the node");
                let reason = format!("reading committed entries {next}..={hi} from the log store: {err}");
                for (_, w) in waiters {
                    w.fail(Error::Storage(StorageError::Failed(reason.clone())));
                }
                let _ = self.failures.send(super::writer::WriterEvent::Failed(StorageError::Failed(reason)));
                false
            }
        }
    }

    /// Restores the FSM from stored snapshot `id`, verified (see
    /// [`super::verify::restore_verified`]). Returns `false` if it failed:
    /// the FSM state can no longer be trusted and nothing more is applied.
    async fn restore(&mut self, id: &str, position: SnapshotPosition) -> bool {
        let index = position.index;
        let (started, mut size) = (tokio::time::Instant::now(), 0);
        let result = match self.snaps.open(id).await {
            Ok((meta, reader)) => {
                size = meta.size;
                super::verify::restore_verified(&mut self.fsm, id, reader, Some(meta.size)).await
            }
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => {
                tracing::info!(snapshot = id, index, "state machine restored from snapshot");
                self.telemetry.restored(started.elapsed(), size);
                self.position = position;
                self.set_applied(index);
                true
            }
            // The snapshot was verified when it was stored a moment ago;
            // failing to read it back now means the disk damaged it and the
            // FSM state can no longer be trusted.
            Err(e) => {
                tracing::error!(snapshot = id, index, error = %e,
                    "restoring the state machine failed; the node stops. Check the disk, \
                     then restart the node (it falls back to an older snapshot or the log, or refuses \
                     to start saying why)");
                let reason =
                    format!("restoring the state machine from snapshot {id} (index {index}) failed: {e}");
                let _ = self.failures.send(super::writer::WriterEvent::Failed(StorageError::Failed(reason)));
                false
            }
        }
    }

    async fn capture(&mut self) -> Result<Capture, Error> {
        let snapshot = self.fsm.snapshot().await.map_err(|e| Error::fsm(FsmOperation::Snapshot, e))?;
        Ok(Capture { snapshot, position: self.position.clone() })
    }
}

/// Answers a waiter on a non-command entry (barrier, no-op, configuration).
fn resolve_index<R>(index: u64, waiter: Waiter<R>) {
    match waiter {
        Waiter::Index(tx) => {
            let _ = tx.send(Ok(index));
        }
        Waiter::Apply(tx) => {
            let _ = tx.send(Err(crate::Error::Fsm(format!("entry {index} was not a command"))));
        }
    }
}

/// `Ok` if `entries` are exactly the entries `lo..=hi`, in order (a store
/// that returns fewer, or others, is reported, never trusted).
pub(crate) fn check_range(entries: &[Log], lo: u64, hi: u64) -> Result<(), String> {
    let expected = hi.saturating_sub(lo).saturating_add(1);
    if entries.len() as u64 != expected {
        return Err(format!(
            "the log store returned {} entries for {lo}..={hi} ({expected} expected)",
            entries.len()
        ));
    }
    for (want, e) in (lo..).zip(entries) {
        if e.index != want {
            return Err(format!("the log store returned entry {} where {want} was expected", e.index));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::error::BoxError;
    use crate::snapshot::{DiscardSnapshotStore, SnapshotReader};

    /// A log store that remembers the ranges read from it.
    struct Reads {
        logs: Vec<Log>,
        ranges: Mutex<Vec<Range<u64>>>,
        fail_from: Option<u64>,
    }

    #[async_trait]
    impl LogStore for Reads {
        async fn first_index(&self) -> Result<u64, StorageError> {
            Ok(self.logs.first().map_or(0, |l| l.index))
        }
        async fn last_index(&self) -> Result<u64, StorageError> {
            Ok(self.logs.last().map_or(0, |l| l.index))
        }
        async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
            Ok(self.logs.iter().find(|l| l.index == index).cloned())
        }
        async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
            if self.fail_from.is_some_and(|f| range.end > f) {
                return Err(StorageError::Failed("unreadable".into()));
            }
            self.ranges.lock().unwrap_or_else(|e| e.into_inner()).push(range.clone());
            Ok(self.logs.iter().filter(|l| range.contains(&l.index)).cloned().collect())
        }
        async fn store_logs(&self, _: &[Log]) -> Result<(), StorageError> {
            Err(StorageError::Failed("read only".into()))
        }
        async fn delete_range(&self, _: u64, _: u64) -> Result<(), StorageError> {
            Err(StorageError::Failed("read only".into()))
        }
    }

    /// Records the indexes it applied.
    #[derive(Default)]
    struct Indexes(Vec<u64>);

    #[async_trait]
    impl Fsm for Indexes {
        type Response = u64;
        async fn apply(&mut self, log: &Log) -> u64 {
            self.0.push(log.index);
            log.index
        }
        async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
            Err("not in this test".into())
        }
        async fn restore(&mut self, _: SnapshotReader) -> Result<(), BoxError> {
            Err("not in this test".into())
        }
    }

    const ENTRY: usize = 512 * 1024;

    fn task(
        fail_from: Option<u64>,
    ) -> (ApplyTask<Indexes>, Arc<Reads>, mpsc::UnboundedReceiver<super::super::writer::WriterEvent>) {
        let logs: Vec<Log> = (1..=40).map(|i| Log::new(i, 1, LogType::Command, vec![0u8; ENTRY])).collect();
        let store = Arc::new(Reads { logs, ranges: Mutex::new(Vec::new()), fail_from });
        let (failures, failed) = mpsc::unbounded_channel();
        let (applied_tx, _) = watch::channel(0);
        let task = ApplyTask {
            fsm: Indexes::default(),
            batch_apply: true,
            snaps: Arc::new(DiscardSnapshotStore),
            position: SnapshotPosition::default(),
            applied: Arc::new(AtomicU64::new(0)),
            applied_tx,
            failures,
            logs: store.clone(),
            telemetry: crate::telemetry::ApplyTelemetry::new(&crate::types::ServerId::from("test")),
        };
        (task, store, failed)
    }

    /// Committed entries outside the window are read back in one read per
    /// range the main task sized, and applied in order, the waiters among
    /// them answered.
    #[tokio::test]
    async fn entries_from_the_store_are_read_once_per_range_and_applied_in_order() {
        let (mut task, store, _failed) = task(None);
        let (tx, rx) = oneshot::channel();
        assert!(task.apply_from_store(1, 8, Vec::new()).await);
        assert!(task.apply_from_store(9, 40, vec![(17, Waiter::Apply(tx))]).await);
        assert_eq!(task.fsm.0, (1..=40).collect::<Vec<_>>());
        assert_eq!(rx.await.expect("answered").expect("applied").response, 17);
        assert_eq!(task.position.index, 40);
        let ranges = store.ranges.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(ranges, vec![1..9, 9..41], "one read per range");
        // A range the FSM applied already (a snapshot restored past it) is
        // not read again.
        assert!(task.apply_from_store(5, 40, Vec::new()).await);
        assert_eq!(store.ranges.lock().unwrap_or_else(|e| e.into_inner()).len(), 2);
    }

    /// A committed entry that cannot be read stops the applying (nothing
    /// after it is applied), fails its waiters and reports the failure.
    #[tokio::test]
    async fn an_unreadable_committed_entry_stops_applying_and_is_reported() {
        let (mut task, _store, mut failed) = task(Some(30));
        let (tx, rx) = oneshot::channel();
        assert!(!task.apply_from_store(1, 40, vec![(35, Waiter::Apply(tx))]).await);
        assert!(task.fsm.0.iter().all(|i| *i < 30), "applied past the gap: {:?}", task.fsm.0);
        assert!(matches!(rx.await.expect("answered"), Err(Error::Storage(_))));
        assert!(matches!(failed.try_recv(), Ok(super::super::writer::WriterEvent::Failed(_))));
    }
}
