//! The write-stage tracker of the main task: when each proposal batch (the
//! client writes folded into one proposal) entered the leader's log, became
//! durable there and was committed. It holds one small record per batch in
//! flight, in a queue that reuses its memory, so tracking allocates nothing
//! per write once warm.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// When the writes handed to the FSM task with a batch of committed entries
/// entered the log (the earliest of them) and when they were committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WriteStamp {
    /// The earliest proposal among them.
    pub(crate) proposed: Instant,
    /// When they were committed (the earliest, for merged batches).
    pub(crate) committed: Instant,
}

impl WriteStamp {
    /// The stamp of two batches merged into one apply: the earliest times.
    pub(crate) fn earliest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => {
                Some(Self { proposed: a.proposed.min(b.proposed), committed: a.committed.min(b.committed) })
            }
            (a, None) => a,
            (None, b) => b,
        }
    }
}

/// A stage of a write measured by the main task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Entered the log (queued to the writer) to durable in the log store.
    Persist,
    /// Durable to committed (0 when committed first).
    Commit,
}

/// Where the tracker records stage durations.
pub(crate) trait StageSink {
    /// One batch took `took` in `stage`.
    fn record(&mut self, stage: Stage, took: Duration);
}

/// One proposal batch in flight.
#[derive(Debug)]
struct Batch {
    /// Index of its last entry.
    last: u64,
    /// When it entered the log.
    proposed: Instant,
    /// When it became durable in the local log store.
    persisted: Option<Instant>,
    /// Whether it was committed (before it was durable locally).
    committed: bool,
}

/// Most batches tracked: beyond, the oldest are forgotten (their stages go
/// unrecorded), so a log store that never completes cannot grow this.
const MAX_TRACKED: usize = 1 << 16;

/// The proposal batches in flight, oldest first. Entries become durable and
/// committed in log order, so the persisted batches and the committed ones
/// are each a prefix of the queue; a batch leaves the queue once it is both.
#[derive(Debug, Default)]
pub(crate) struct WriteStages {
    /// The batches, oldest first.
    batches: VecDeque<Batch>,
    /// How many batches at the front are durable.
    persisted: usize,
    /// How many batches at the front are committed.
    committed: usize,
}

impl WriteStages {
    /// A batch whose last entry is `last` entered the log at `now`.
    pub(crate) fn proposed(&mut self, last: u64, now: Instant) {
        if self.batches.len() >= MAX_TRACKED {
            self.batches.pop_front();
            self.persisted = self.persisted.saturating_sub(1);
            self.committed = self.committed.saturating_sub(1);
        }
        self.batches.push_back(Batch { last, proposed: now, persisted: None, committed: false });
    }

    /// The local log store made every entry up to `index` durable at `now`.
    pub(crate) fn persisted(&mut self, index: u64, now: Instant, sink: &mut impl StageSink) {
        while let Some(b) = self.batches.get_mut(self.persisted) {
            if b.last > index {
                break;
            }
            b.persisted = Some(now);
            sink.record(Stage::Persist, now.saturating_duration_since(b.proposed));
            if b.committed {
                sink.record(Stage::Commit, Duration::ZERO);
            }
            self.persisted += 1;
        }
        self.forget_done();
    }

    /// Every entry up to `index` was committed at `now`. Returns the stamp
    /// of the writes among them (`None`: none was tracked).
    pub(crate) fn committed(
        &mut self,
        index: u64,
        now: Instant,
        sink: &mut impl StageSink,
    ) -> Option<WriteStamp> {
        let mut earliest = None;
        while let Some(b) = self.batches.get_mut(self.committed) {
            if b.last > index {
                break;
            }
            b.committed = true;
            if let Some(at) = b.persisted {
                sink.record(Stage::Commit, now.saturating_duration_since(at));
            }
            earliest.get_or_insert(b.proposed);
            self.committed += 1;
        }
        self.forget_done();
        earliest.map(|proposed| WriteStamp { proposed, committed: now })
    }

    /// Forgets every batch (the node stopped leading: what it proposed may
    /// never commit, or commit under another leader).
    pub(crate) fn clear(&mut self) {
        self.batches.clear();
        self.persisted = 0;
        self.committed = 0;
    }

    /// Batches in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.batches.len()
    }

    /// Drops the batches at the front that are durable and committed.
    fn forget_done(&mut self) {
        let done = self.persisted.min(self.committed);
        if done > 0 {
            self.batches.drain(..done);
            self.persisted -= done;
            self.committed -= done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorded(Vec<(Stage, Duration)>);

    impl StageSink for Recorded {
        fn record(&mut self, stage: Stage, took: Duration) {
            self.0.push((stage, took));
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Each batch's persist stage runs from its proposal to the writer's
    /// completion covering its last entry, and its commit stage from there
    /// to the commit covering it; the stamp handed to the FSM task carries
    /// the earliest proposal among the committed batches.
    #[test]
    fn stages_are_measured_per_batch_in_log_order() {
        let t0 = Instant::now();
        let mut stages = WriteStages::default();
        let mut sink = Recorded::default();
        stages.proposed(3, t0);
        stages.proposed(5, t0 + ms(1));
        stages.persisted(4, t0 + ms(10), &mut sink);
        assert_eq!(sink.0, vec![(Stage::Persist, ms(10))], "only the batch ending at 3 is durable");
        stages.persisted(5, t0 + ms(12), &mut sink);
        let stamp = stages.committed(5, t0 + ms(20), &mut sink);
        assert_eq!(sink.0[1..], [(Stage::Persist, ms(11)), (Stage::Commit, ms(10)), (Stage::Commit, ms(8))],);
        assert_eq!(stamp, Some(WriteStamp { proposed: t0, committed: t0 + ms(20) }));
        assert_eq!(stages.len(), 0, "done batches are forgotten");
    }

    /// A batch a quorum of followers committed before the leader's own
    /// store made it durable has a commit stage of 0, recorded when it
    /// becomes durable.
    #[test]
    fn a_batch_committed_before_it_is_durable_locally_has_a_zero_commit_stage() {
        let t0 = Instant::now();
        let mut stages = WriteStages::default();
        let mut sink = Recorded::default();
        stages.proposed(2, t0);
        assert!(stages.committed(2, t0 + ms(5), &mut sink).is_some());
        assert!(sink.0.is_empty());
        assert_eq!(stages.len(), 1, "kept until durable");
        stages.persisted(2, t0 + ms(7), &mut sink);
        assert_eq!(sink.0, vec![(Stage::Persist, ms(7)), (Stage::Commit, Duration::ZERO)]);
        assert_eq!(stages.len(), 0);
    }

    /// Commits of entries no tracked batch holds (other leaders' entries,
    /// configuration changes) give no stamp, and a cleared tracker forgets
    /// what it held.
    #[test]
    fn untracked_commits_give_no_stamp_and_clear_forgets() {
        let t0 = Instant::now();
        let mut stages = WriteStages::default();
        let mut sink = Recorded::default();
        assert_eq!(stages.committed(9, t0, &mut sink), None);
        stages.proposed(12, t0);
        stages.clear();
        stages.persisted(12, t0, &mut sink);
        assert_eq!(stages.committed(12, t0, &mut sink), None);
        assert!(sink.0.is_empty());
    }

    /// Merged apply batches keep the earliest times.
    #[test]
    fn merged_stamps_keep_the_earliest_times() {
        let t0 = Instant::now();
        let a = WriteStamp { proposed: t0 + ms(2), committed: t0 + ms(9) };
        let b = WriteStamp { proposed: t0 + ms(1), committed: t0 + ms(10) };
        let merged = WriteStamp::earliest(Some(a), Some(b));
        assert_eq!(merged, Some(WriteStamp { proposed: t0 + ms(1), committed: t0 + ms(9) }));
        assert_eq!(WriteStamp::earliest(None, Some(a)), Some(a));
        assert_eq!(WriteStamp::earliest(Some(b), None), Some(b));
    }
}
