//! Recording the commit index durably (HashiCorp #549/#613): now and then
//! the main task asks the log writer to store the commit index under
//! [`COMMIT_KEY`](crate::runtime::COMMIT_KEY), so a restarted node applies
//! its known-committed entries at start instead of waiting for a leader
//! (and a single-node cluster restarts with its state).
//!
//! The value rides on the writer's FIFO queue, written after every entry
//! queued before it: each entry up to the recorded index was in the core's
//! log when the job was made, so it is durable before the index is. It is
//! throttled (a stable-store write may cost an fsync): at most once per
//! [`RECORD_INTERVAL`], piggybacked on a log write when there is one, from
//! the tick when the node is idle, and once more on a clean shutdown.

use super::*;

/// The shortest time between two records of the commit index.
pub(super) const RECORD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// The main task's record of the commit index.
#[derive(Default)]
pub(super) struct CommitRecord {
    /// The highest commit index queued to the writer.
    pub(super) recorded: u64,
    /// When it was last queued.
    last_at: Option<tokio::time::Instant>,
}

impl<R: Send + 'static> Node<R> {
    /// The commit index to record now, if it moved and the last record is
    /// old enough (or `force`); notes it as recorded.
    pub(super) fn commit_to_record(&mut self, force: bool) -> Option<u64> {
        let commit = self.core.commit_index().min(self.core.last_index());
        if commit <= self.commit_record.recorded {
            return None;
        }
        let now = tokio::time::Instant::now();
        let due = self.commit_record.last_at.is_none_or(|at| now.duration_since(at) >= RECORD_INTERVAL);
        if !force && !due {
            return None;
        }
        self.commit_record.recorded = commit;
        self.commit_record.last_at = Some(now);
        Some(commit)
    }

    /// Queues a record of the commit index on its own, if one is due (the
    /// idle case: no log write to piggyback on).
    pub(super) fn record_commit(&mut self, force: bool) {
        if self.fatal.is_some() {
            return;
        }
        if let Some(commit) = self.commit_to_record(force) {
            self.persist(PersistJob { commit: Some(commit), ..PersistJob::default() });
        }
    }
}
