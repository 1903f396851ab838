//! Durable work in the main task: persist jobs queued to the log writer
//! (driven by this task's loop) in order, their completions, a leader stepping down when its store
//! stalls, and the compaction of the log behind snapshots.

use super::*;

/// The main task's log writer and the durable work queued to it.
pub(super) struct Persistence {
    /// The log writer (its store calls are polled by the main loop).
    pub(super) writer: LogWriter,
    /// Failures reported by the FSM task (a failed restore), which stop
    /// the node like a failed write.
    pub(super) fsm_failures: mpsc::UnboundedReceiver<WriterEvent>,
    /// Last sequence number given to a persist job.
    seq: u64,
    /// Persist jobs not yet completed, oldest first.
    pending: VecDeque<QueuedJob>,
    /// Log deletions behind a snapshot queued to the writer and not yet
    /// done, oldest first.
    compactions: VecDeque<Compaction>,
    /// The log store holds no entry at or below this index (read from the
    /// store at start, advanced as compactions complete).
    pub(super) compacted_through: u64,
    /// The newest snapshot taken, installed or restored.
    pub(super) last_snapshot: NewestSnapshot,
}

/// A persist job not yet completed.
struct QueuedJob {
    /// Its sequence number.
    seq: u64,
    /// When it was queued.
    queued_at: tokio::time::Instant,
}

/// A log deletion queued to the writer.
struct Compaction {
    /// The sequence number of the persist job doing it.
    seq: u64,
    /// The log store keeps no entry at or below this index once it is done.
    through: u64,
}

/// Where the newest snapshot ends.
#[derive(Clone, Copy)]
pub(super) struct NewestSnapshot {
    /// The last index it covers.
    pub(super) index: u64,
    /// The term of that entry.
    pub(super) term: u64,
}

impl Persistence {
    pub(super) fn new(
        writer: LogWriter,
        fsm_failures: mpsc::UnboundedReceiver<WriterEvent>,
        compacted_through: u64,
        last_snapshot: NewestSnapshot,
    ) -> Self {
        Self {
            writer,
            fsm_failures,
            seq: 0,
            pending: VecDeque::new(),
            compactions: VecDeque::new(),
            compacted_through,
            last_snapshot,
        }
    }

    /// The sequence number of the last persist job queued.
    pub(super) fn last_seq(&self) -> u64 {
        self.seq
    }
}

impl<R: Send + 'static> Node<R> {
    /// Handles a completion (or the failure) of the log writer.
    pub(super) fn on_writer_event(&mut self, ev: WriterEvent) -> Flow {
        match ev {
            WriterEvent::Persisted { last, messages, seq, first_index } => {
                while self.store.pending.front().is_some_and(|j| j.seq <= seq) {
                    self.store.pending.pop_front();
                }
                self.compactions_done(seq, first_index);
                if let Some((index, term)) = last {
                    self.core.persisted(index, term);
                    self.telemetry.persisted(index);
                    self.shared.last_index.store(self.core.last_index(), Ordering::Release);
                }
                for m in messages {
                    self.route(m);
                }
                self.adoption_persisted(seq);
                Flow::Continue
            }
            WriterEvent::Failed(err) => {
                self.fatal = Some(err.to_string());
                Flow::Stop
            }
        }
    }

    /// Queues durable work for the log writer.
    pub(super) fn persist(&mut self, mut job: PersistJob) {
        self.store.seq += 1;
        job.seq = self.store.seq;
        self.store.pending.push_back(QueuedJob { seq: job.seq, queued_at: tokio::time::Instant::now() });
        self.store.writer.submit(job);
    }

    /// A leader whose own log store has stopped completing writes cannot
    /// lead: it could never count itself or apply anything. Step down
    /// rather than hang the cluster.
    pub(super) fn check_store_progress(&mut self) {
        let Some(oldest) = self.store.pending.front() else { return };
        let since = oldest.queued_at;
        if self.core.is_leader() && since.elapsed() > self.config.election_timeout {
            tracing::error!(stalled_for = ?since.elapsed(), "log store is not completing writes; stepping down");
            self.core.step_down();
        }
    }

    /// Queues the deletion of the stored log through `through` (behind an
    /// installed or taken snapshot; `u64::MAX` deletes it all) while the
    /// store keeps nothing at or below `covered`.
    pub(super) fn queue_compaction(&mut self, through: u64, covered: u64) {
        self.persist(PersistJob { compact_through: Some(through), ..PersistJob::default() });
        self.store.compactions.push_back(Compaction { seq: self.store.seq, through: covered });
    }

    /// Remembers the newest snapshot taken, installed or restored.
    pub(super) fn note_snapshot(&mut self, index: u64, term: u64) {
        if index >= self.store.last_snapshot.index {
            self.store.last_snapshot = NewestSnapshot { index, term };
        }
    }

    /// Forgets log entries a new snapshot made redundant, keeping
    /// `trailing_logs` entries for slightly lagging followers: in memory
    /// past the core's current start, and in the log store from the first
    /// entry it actually holds (after a restart that is below the restored
    /// snapshot). Returns the persist sequence number of the store deletion
    /// if one was queued.
    pub(super) fn compact(&mut self, snapshot_index: u64) -> Option<u64> {
        let target = snapshot_index.saturating_sub(self.config.trailing_logs);
        if target > self.core.snapshot_index() {
            if let Err(e) = self.core.compact(target) {
                tracing::debug!(error = %e, "compaction skipped");
                return None;
            }
        }
        let queued = self.store.compactions.back().map_or(self.store.compacted_through, |c| c.through);
        if target <= queued.max(self.store.compacted_through) {
            return None;
        }
        self.queue_compaction(target, target);
        tracing::debug!(from = self.store.compacted_through + 1, through = target, "compacting the log");
        Some(self.store.seq)
    }

    /// The writer finished every job up to `seq`: records the compactions
    /// among them and answers the snapshot requests that waited for them.
    /// `store_first` is what the store reported as its first index after
    /// the last of them: the log starts there (a store left empty, e.g. by
    /// an installed snapshot, continues after the compaction point).
    fn compactions_done(&mut self, seq: u64, store_first: Option<u64>) {
        let mut through = None;
        while let Some(c) = self.store.compactions.front() {
            if c.seq > seq {
                break;
            }
            let t = c.through;
            self.store.compactions.pop_front();
            through = Some(through.map_or(t, |max: u64| max.max(t)));
        }
        let Some(through) = through else { return };
        self.store.compacted_through = match store_first {
            Some(first) if first > 0 => first - 1,
            _ => self.store.compacted_through.max(through),
        };
        self.shared.first_index.store(self.store.compacted_through + 1, Ordering::Release);
        tracing::debug!(first_index = self.store.compacted_through + 1, "log compacted");
        self.publish(true);
        self.snapshot_replies_due(seq);
    }
}
