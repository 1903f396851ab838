//! The log writer: makes hard state and log entries durable in FIFO order
//! and only then releases the messages that promised durability. Jobs
//! queued while a write is in progress are merged into one `store_logs`
//! call (group commit: one fsync for many proposals). The main task drives
//! it in its own loop ([`LogWriter`]): no task of its own, so no hand-off
//! between tasks on the write path.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::core::Message;
use crate::error::StorageError;
use crate::storage::{LogStore, StableStore};
use crate::telemetry::WriterTelemetry;
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

/// The write under way: its store call, and what to report when it ends.
struct InFlight {
    /// The store calls of the (merged) job, run to completion in order.
    write: Pin<Box<dyn Future<Output = Result<Option<u64>, StorageError>> + Send>>,
    /// The highest sequence number among the merged jobs.
    seq: u64,
    /// Index and term of the job's last entry, if it had entries.
    last: Option<(u64, u64)>,
    /// Index of its first entry (0 without entries; for telemetry).
    first: u64,
    /// Entries written (for telemetry).
    entries: usize,
    /// Messages released once the write is durable.
    messages: Vec<Message>,
    /// When the store call started.
    started: tokio::time::Instant,
}

/// The node's log writer, driven by the main task itself: one store call
/// at a time, in FIFO order; jobs queued while a call is under way are
/// merged into the next one (group commit: one fsync for many proposals).
///
/// The main task polls the call under way ([`LogWriter::next_done`]) in
/// its own loop, so a store that completes at once (in memory) costs no
/// task hand-off at all, and one that waits for a disk wakes the main task
/// directly when the data is durable.
pub(crate) struct LogWriter {
    /// The log store.
    logs: Arc<dyn LogStore>,
    /// The stable store.
    stable: Arc<dyn StableStore>,
    /// Jobs waiting for the call under way, oldest first.
    queued: VecDeque<PersistJob>,
    /// The call under way, if any.
    in_flight: Option<InFlight>,
    /// A write failed: nothing more is written (fail-stop).
    failed: bool,
    /// Metric handles and trace fields.
    telemetry: WriterTelemetry,
}

impl LogWriter {
    /// A writer to `logs` and `stable` with nothing queued.
    pub(crate) fn new(
        logs: Arc<dyn LogStore>,
        stable: Arc<dyn StableStore>,
        telemetry: WriterTelemetry,
    ) -> Self {
        Self { logs, stable, queued: VecDeque::new(), in_flight: None, failed: false, telemetry }
    }

    /// Queues a job; it starts at once if no store call is under way.
    pub(crate) fn submit(&mut self, job: PersistJob) {
        self.queued.push_back(job);
        self.start_next();
    }

    /// Whether a store call is under way (and [`next_done`](Self::next_done)
    /// will complete).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Merges the queued jobs that may go together and starts their store
    /// call, unless one is under way.
    fn start_next(&mut self) {
        if self.in_flight.is_some() || self.failed {
            return;
        }
        let Some(mut job) = self.queued.pop_front() else { return };
        while job.entries.len() < MAX_MERGED_ENTRIES {
            let Some(next) = self.queued.pop_front() else { break };
            if let Err(next) = job.merge(next) {
                self.queued.push_front(next);
                break;
            }
        }
        let first = job.entries.first().map_or(0, |e| e.index);
        let last = job.entries.last().map(|e| (e.index, e.term));
        let span = tracing::debug_span!(
            "log_write",
            node = %self.telemetry.node,
            first,
            last = last.map_or(0, |(i, _)| i),
            entries = job.entries.len()
        );
        let messages = std::mem::take(&mut job.messages);
        let (seq, entries) = (job.seq, job.entries.len());
        let (logs, stable) = (self.logs.clone(), self.stable.clone());
        let write = Box::pin(tracing::Instrument::instrument(
            async move { persist(&*logs, &*stable, &job).await },
            span,
        ));
        let started = tokio::time::Instant::now();
        self.in_flight = Some(InFlight { write, seq, last, first, entries, messages, started });
    }

    /// Waits for the store call under way and reports it; the next queued
    /// jobs start right after. Pending forever when no call is under way.
    /// Cancel-safe: the call stays under way if this future is dropped.
    pub(crate) async fn next_done(&mut self) -> WriterEvent {
        let result = std::future::poll_fn(|cx| match self.in_flight.as_mut() {
            Some(f) => f.write.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        })
        .await;
        let Some(done) = self.in_flight.take() else {
            return WriterEvent::Failed(StorageError::Failed("log writer lost its write".into()));
        };
        match result {
            Ok(first_index) => {
                let last_index = done.last.map_or(0, |(i, _)| i);
                self.telemetry.wrote(done.entries, done.first, last_index, done.started.elapsed());
                self.start_next();
                WriterEvent::Persisted {
                    last: done.last,
                    messages: done.messages,
                    seq: done.seq,
                    first_index,
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "log write failed; stopping the node");
                self.failed = true;
                self.queued.clear();
                WriterEvent::Failed(err)
            }
        }
    }

    /// Runs the call under way and every queued job to completion (at
    /// shutdown: the final commit record is queued behind the log writes).
    /// The messages they would release are dropped.
    pub(crate) async fn finish(mut self) {
        while self.busy() {
            if let WriterEvent::Failed(_) = self.next_done().await {
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

    /// A log store whose writes wait until the test opens its gate, and
    /// that counts its `store_logs` calls.
    struct Gated {
        mem: Mem,
        open: tokio::sync::watch::Sender<bool>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl LogStore for Gated {
        async fn first_index(&self) -> Result<u64, StorageError> {
            self.mem.first_index().await
        }
        async fn last_index(&self) -> Result<u64, StorageError> {
            self.mem.last_index().await
        }
        async fn get_log(&self, index: u64) -> Result<Option<Log>, StorageError> {
            self.mem.get_log(index).await
        }
        async fn get_logs(&self, range: Range<u64>) -> Result<Vec<Log>, StorageError> {
            self.mem.get_logs(range).await
        }
        async fn store_logs(&self, logs: &[Log]) -> Result<(), StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|o| *o).await;
            self.mem.store_logs(logs).await
        }
        async fn delete_range(&self, min: u64, max: u64) -> Result<(), StorageError> {
            self.mem.delete_range(min, max).await
        }
    }

    fn message(term: u64) -> Message {
        let req = crate::message::AppendEntriesRequest { term, ..Default::default() };
        Message {
            from: "a".into(),
            to: "b".into(),
            rpc_id: term,
            body: crate::core::Body::AppendEntries(req),
        }
    }

    fn job_with_message(entries: std::ops::RangeInclusive<u64>, term: u64) -> PersistJob {
        PersistJob { messages: vec![message(term)], ..job(entries, 0) }
    }

    /// The messages of a job are released only once its entries are
    /// durable, jobs complete in FIFO order, and jobs queued while a write
    /// is under way are merged into the next single store call.
    #[tokio::test(start_paused = true)]
    async fn messages_wait_for_their_write_and_queued_jobs_share_one_store_call() {
        let (open, _) = tokio::sync::watch::channel(false);
        let store = Arc::new(Gated { mem: Mem::default(), open, calls: Default::default() });
        let mut writer = LogWriter::new(
            store.clone(),
            Arc::new(Mem::default()),
            WriterTelemetry::new(&crate::types::ServerId::from("a")),
        );
        assert!(!writer.busy());
        writer.submit(job_with_message(1..=2, 1));
        writer.submit(job_with_message(3..=4, 2));
        writer.submit(job_with_message(5..=5, 3));
        assert!(writer.busy());
        let early = tokio::time::timeout(std::time::Duration::from_secs(5), writer.next_done()).await;
        assert!(early.is_err(), "a write was reported before the store finished it");
        assert_eq!(store.mem.last_index().await.expect("last"), 0);
        store.open.send_replace(true);
        let first = writer.next_done().await;
        let WriterEvent::Persisted { last, messages, .. } = first else { panic!("the first write failed") };
        assert_eq!(last, Some((2, 1)));
        assert_eq!(messages, vec![message(1)]);
        let second = writer.next_done().await;
        let WriterEvent::Persisted { last, messages, .. } = second else { panic!("the second write failed") };
        assert_eq!(last, Some((5, 1)), "the two queued jobs go together");
        assert_eq!(messages, vec![message(2), message(3)]);
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
        assert!(!writer.busy());
        assert_eq!(store.mem.last_index().await.expect("last"), 5);
    }

    /// A failed write fails the writer for good: queued jobs are dropped,
    /// never written after the failure.
    #[tokio::test]
    async fn a_failed_write_stops_the_writer() {
        let mem = Arc::new(Mem::default());
        mem.fail_writes.store(true, Ordering::Release);
        let mut writer = LogWriter::new(
            mem.clone(),
            mem.clone(),
            WriterTelemetry::new(&crate::types::ServerId::from("a")),
        );
        writer.submit(job(1..=1, 1));
        writer.submit(job(2..=2, 2));
        assert!(matches!(writer.next_done().await, WriterEvent::Failed(_)));
        mem.fail_writes.store(false, Ordering::Release);
        assert!(!writer.busy(), "a job queued behind a failed write was started");
        writer.submit(job(3..=3, 3));
        assert!(!writer.busy(), "a job submitted after a failed write was started");
        assert_eq!(mem.last_index().await.expect("last"), 0);
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
