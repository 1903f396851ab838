//! The log writer task: makes hard state and log entries durable in FIFO
//! order and only then releases the messages that promised durability.
//! Jobs queued while a write is in progress are merged into one
//! `store_logs` call (group commit: one fsync for many proposals).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::Message;
use crate::error::StorageError;
use crate::storage::{LogStore, StableStore};
use crate::types::{HardState, Log};

/// One unit of durable work, taken from a core `Ready`.
#[derive(Default)]
pub(crate) struct PersistJob {
    /// Sequence number assigned by the main task (for stall detection).
    pub(crate) seq: u64,
    pub(crate) hard_state: Option<HardState>,
    /// Delete stored entries up to and including this index (compaction
    /// after a snapshot; `u64::MAX` discards the whole log).
    pub(crate) compact_through: Option<u64>,
    pub(crate) truncate_from: Option<u64>,
    pub(crate) entries: Vec<Log>,
    pub(crate) messages: Vec<Message>,
    /// Record durably that this server was removed from the cluster.
    pub(crate) mark_removed: bool,
    /// A cluster id to record (bootstrap, or adoption from a leader),
    /// written before anything else in the job.
    pub(crate) cluster_id: Option<crate::types::ClusterId>,
    /// A commit index to record under [`COMMIT_KEY`](super::COMMIT_KEY),
    /// written after everything else in the job: every entry up to it was
    /// in the core's log when the job was made, so it is durable by then.
    pub(crate) commit: Option<u64>,
}

impl PersistJob {
    /// Folds a later job into this one, if that keeps the order of effects.
    // The job is handed back by value on purpose: it becomes the next job,
    // and boxing it would allocate on the write path.
    #[allow(clippy::result_large_err)]
    fn merge(&mut self, next: PersistJob) -> Result<(), PersistJob> {
        if next.truncate_from.is_some() || next.compact_through.is_some() {
            return Err(next);
        }
        self.seq = self.seq.max(next.seq);
        self.mark_removed |= next.mark_removed;
        if next.hard_state.is_some() {
            self.hard_state = next.hard_state;
        }
        self.entries.extend(next.entries);
        self.messages.extend(next.messages);
        if next.cluster_id.is_some() {
            self.cluster_id = next.cluster_id;
        }
        self.commit = self.commit.max(next.commit);
        Ok(())
    }
}

/// What the writer reports back to the main task.
pub(crate) enum WriterEvent {
    /// Everything up to (index, term) is durable; send these messages.
    /// `first_index`: what the log store reported as its first index right
    /// after a compaction in these jobs (0: it holds no entry), if any.
    Persisted { last: Option<(u64, u64)>, messages: Vec<Message>, seq: u64, first_index: Option<u64> },
    /// A write failed: the node must stop (fail-stop).
    Failed(StorageError),
}

/// Most entries merged into one store call.
const MAX_MERGED_ENTRIES: usize = 64 * 1024;

pub(crate) async fn run(
    logs: Arc<dyn LogStore>,
    stable: Arc<dyn StableStore>,
    mut jobs: mpsc::UnboundedReceiver<PersistJob>,
    events: mpsc::UnboundedSender<WriterEvent>,
    telemetry: crate::telemetry::WriterTelemetry,
) {
    let mut carry: Option<PersistJob> = None;
    loop {
        let mut job = match carry.take() {
            Some(j) => j,
            None => match jobs.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        while job.entries.len() < MAX_MERGED_ENTRIES {
            match jobs.try_recv() {
                Ok(next) => {
                    if let Err(next) = job.merge(next) {
                        carry = Some(next);
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let (first, last) =
            (job.entries.first().map_or(0, |e| e.index), job.entries.last().map_or(0, |e| e.index));
        let span = tracing::debug_span!("log_write", node = %telemetry.node, first, last, entries = job.entries.len());
        let started = tokio::time::Instant::now();
        match tracing::Instrument::instrument(persist(&*logs, &*stable, &job), span).await {
            Ok(first_index) => {
                telemetry.wrote(job.entries.len(), first, last, started.elapsed());
                let last = job.entries.last().map(|e| (e.index, e.term));
                let done = WriterEvent::Persisted { last, messages: job.messages, seq: job.seq, first_index };
                if events.send(done).is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "log write failed; stopping the node");
                let _ = events.send(WriterEvent::Failed(err));
                return;
            }
        }
    }
}

/// Runs one job. Returns the store's first index after the job's
/// compaction, if it had one.
async fn persist(
    logs: &dyn LogStore,
    stable: &dyn StableStore,
    job: &PersistJob,
) -> Result<Option<u64>, StorageError> {
    let mut first_index = None;
    if let Some(id) = &job.cluster_id {
        super::identity::store_cluster_id(stable, id).await?;
    }
    if let Some(hs) = &job.hard_state {
        let bytes = crate::codec::encode(hs)?;
        stable.set(super::HARD_STATE_KEY, &bytes).await?;
    }
    if job.mark_removed {
        stable.set(super::REMOVED_KEY, b"removed").await?;
    }
    if let Some(through) = job.compact_through {
        let first = logs.first_index().await?;
        let last = logs.last_index().await?;
        if first > 0 && first <= through.min(last) {
            logs.delete_range(first, through.min(last)).await?;
        }
        first_index = Some(logs.first_index().await?);
    }
    if let Some(from) = job.truncate_from {
        let last = logs.last_index().await?;
        if from <= last {
            logs.delete_range(from, last).await?;
        }
    }
    if !job.entries.is_empty() {
        logs.store_logs(&job.entries).await?;
    }
    if let Some(commit) = job.commit {
        stable.set_u64(super::COMMIT_KEY, commit).await?;
    }
    Ok(first_index)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::types::LogType;

    /// A log and stable store in memory whose `store_logs` can be made to
    /// fail.
    #[derive(Default)]
    struct Mem {
        logs: Mutex<Vec<Log>>,
        kv: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
        fail_writes: AtomicBool,
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[async_trait]
    impl LogStore for Mem {
        async fn first_index(&self) -> Result<u64, StorageError> {
            Ok(lock(&self.logs).first().map_or(0, |l| l.index))
        }
        async fn last_index(&self) -> Result<u64, StorageError> {
            Ok(lock(&self.logs).last().map_or(0, |l| l.index))
        }
        async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
            Ok(lock(&self.logs).iter().find(|l| l.index == index).cloned())
        }
        async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
            Ok(lock(&self.logs).iter().filter(|l| range.contains(&l.index)).cloned().collect())
        }
        async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
            if self.fail_writes.load(Ordering::Acquire) {
                return Err(StorageError::Failed("disk full".into()));
            }
            lock(&self.logs).extend_from_slice(logs);
            Ok(())
        }
        async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
            lock(&self.logs).retain(|l| l.index < min || l.index > max);
            Ok(())
        }
    }

    #[async_trait]
    impl StableStore for Mem {
        async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
            lock(&self.kv).insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(lock(&self.kv).get(key).cloned())
        }
    }

    fn job(entries: std::ops::RangeInclusive<u64>, commit: u64) -> PersistJob {
        let entries = entries.map(|i| Log::new(i, 1, LogType::Command, "x")).collect();
        PersistJob { entries, commit: Some(commit), ..PersistJob::default() }
    }

    /// The recorded commit index is never ahead of the durable log: it is
    /// written after the job's entries, so a failed log write leaves the
    /// old record in place.
    #[tokio::test]
    async fn the_commit_index_is_recorded_only_after_the_entries_it_covers() {
        let mem = Mem::default();
        persist(&mem, &mem, &job(1..=3, 3)).await.expect("persist");
        assert_eq!(mem.get_u64(crate::runtime::COMMIT_KEY).await.expect("get"), Some(3));
        mem.fail_writes.store(true, Ordering::Release);
        assert!(persist(&mem, &mem, &job(4..=6, 6)).await.is_err());
        assert_eq!(
            mem.get_u64(crate::runtime::COMMIT_KEY).await.expect("get"),
            Some(3),
            "a commit index past the durable log was recorded"
        );
    }

    /// Merged jobs record the highest commit index among them.
    #[test]
    fn merged_jobs_keep_the_highest_commit_index() {
        let mut first = job(1..=2, 2);
        assert!(first.merge(job(3..=4, 4)).is_ok());
        assert!(first.merge(PersistJob::default()).is_ok());
        assert_eq!(first.commit, Some(4));
        assert_eq!(first.entries.len(), 4);
    }
}
