//! [`Progress`]: what a leader knows about one follower's log, and the
//! flow-control state (probe or pipelined replicate) for sending to it.

use std::collections::VecDeque;

/// How the leader is currently sending to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendMode {
    /// Looking for the point where the logs match: one request at a time.
    Probe,
    /// Logs match up to `matched`: several requests in flight (pipelining).
    Replicate,
    /// The entries the follower needs were compacted: a snapshot is being
    /// streamed to it and appends wait until it is installed.
    Snapshot,
}

/// Replication state of one follower, kept by the leader.
///
/// Invariants: `matched < next`; every index in `inflight` is `>= next - 1`
/// minus what was acknowledged, i.e. ascending and `> matched`.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Highest index known to be durable on the follower and to match ours.
    pub(crate) matched: u64,
    /// Next index to send.
    pub(crate) next: u64,
    pub(crate) mode: SendMode,
    /// In probe mode: a probe is outstanding, so don't send another.
    pub(crate) probe_sent: bool,
    /// In replicate mode: last index of each request in flight, ascending.
    pub(crate) inflight: VecDeque<u64>,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// Highest read round the follower has echoed this term.
    pub(crate) acked_round: u64,
    /// Ticks since the follower last made progress while requests were in flight.
    pub(crate) stalled_ticks: u64,
    /// Ticks since the leader last heard from this follower at all.
    pub(crate) ticks_since_contact: u64,
    /// The range of a read from the log store under way for this follower
    /// (at most one): nothing more is sent to it until the entries arrive.
    pub(crate) fetching: Option<(u64, u64)>,
    /// A read from the log store failed (or returned unusable entries):
    /// wait for the next heartbeat interval before reading again.
    pub(crate) fetch_paused: bool,
}

impl Progress {
    pub(crate) fn new(next: u64) -> Self {
        Self {
            matched: 0,
            next: next.max(1),
            mode: SendMode::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            acked_round: 0,
            stalled_ticks: 0,
            ticks_since_contact: 0,
            fetching: None,
            fetch_paused: false,
        }
    }

    /// Whether another request may be sent now.
    pub(crate) fn can_send(&self, max_inflight: usize) -> bool {
        match self.mode {
            SendMode::Probe => !self.probe_sent,
            SendMode::Replicate => self.inflight.len() < max_inflight,
            SendMode::Snapshot => false,
        }
    }

    /// Records that a request ending at `last` was sent.
    pub(crate) fn sent(&mut self, last: u64) {
        match self.mode {
            SendMode::Probe | SendMode::Snapshot => self.probe_sent = true,
            SendMode::Replicate => {
                self.inflight.push_back(last);
                self.next = last + 1;
            }
        }
    }

    /// A success covering up to `index`. Returns true if `matched` advanced.
    pub(crate) fn acknowledge(&mut self, index: u64) -> bool {
        self.probe_sent = false;
        if index <= self.matched {
            // A probe (or heartbeat) that confirms the follower's log up to
            // the probe point ends probing even though nothing new was
            // matched, e.g. right after a snapshot set `matched`. Staying in
            // probe mode would re-probe a caught-up follower forever.
            if self.mode == SendMode::Probe && index + 1 >= self.next {
                self.mode = SendMode::Replicate;
                self.inflight.clear();
                self.next = self.next.max(self.matched + 1);
            }
            return false;
        }
        self.matched = index;
        self.stalled_ticks = 0;
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        if self.mode != SendMode::Replicate {
            self.mode = SendMode::Replicate;
            self.inflight.clear();
            self.next = index + 1;
        } else {
            self.next = self.next.max(index + 1);
        }
        true
    }

    /// The follower's log turned out not to hold entries it acknowledged
    /// (its disk was replaced, its log tail was cut off after damage, or
    /// the answer saying so is a delayed one): forget what it matched and
    /// probe from `next`, which may be below the old `matched`.
    ///
    /// Lowering `matched` is always safe: it only makes the leader count
    /// fewer copies (the commit index never moves back), and `matched`
    /// rises again as soon as the follower acknowledges a probe. It is
    /// reset to 0 rather than to the follower's reported last index, since
    /// nothing is known about what its remaining entries hold.
    pub(crate) fn reset(&mut self, next: u64) {
        self.matched = 0;
        self.probe_from(next);
    }

    /// Falls back to probing from `next`.
    pub(crate) fn probe_from(&mut self, next: u64) {
        self.mode = SendMode::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.stalled_ticks = 0;
        self.next = next.max(self.matched + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_replicate_pipelines() {
        let mut p = Progress::new(5);
        assert!(p.can_send(2));
        p.sent(5);
        assert!(!p.can_send(2), "one probe at a time");
        assert!(p.acknowledge(5));
        assert_eq!(p.mode, SendMode::Replicate);
        assert_eq!(p.next, 6);
        p.sent(7);
        p.sent(9);
        assert!(!p.can_send(2), "window full");
        assert!(p.acknowledge(7));
        assert!(p.can_send(2));
        assert!(!p.acknowledge(6), "stale ack ignored");
        assert_eq!(p.next, 10);
    }

    #[test]
    fn a_probe_confirming_the_match_point_ends_probing() {
        // As after a snapshot: matched is known, the follower is probed at
        // matched + 1 and answers with what it already had.
        let mut p = Progress::new(1);
        p.matched = 10;
        p.probe_from(11);
        p.sent(10);
        assert!(!p.acknowledge(10), "nothing new matched");
        assert_eq!(p.mode, SendMode::Replicate, "but probing is over");
        assert_eq!(p.next, 11);
        // A stale acknowledgement below the probe point changes nothing.
        let mut q = Progress::new(1);
        q.matched = 10;
        q.probe_from(20);
        assert!(!q.acknowledge(10));
        assert_eq!(q.mode, SendMode::Probe);
    }

    #[test]
    fn reset_forgets_the_match_and_probes_below_it() {
        let mut p = Progress::new(1);
        p.sent(40);
        assert!(p.acknowledge(40));
        p.sent(45);
        p.reset(1);
        assert_eq!((p.matched, p.next, p.mode), (0, 1, SendMode::Probe));
        assert!(p.inflight.is_empty() && p.can_send(1), "a probe may go out at once");
        // The follower acknowledges again: matched rises from the probe.
        p.sent(30);
        assert!(p.acknowledge(30));
        assert_eq!((p.matched, p.next, p.mode), (30, 31, SendMode::Replicate));
    }

    #[test]
    fn probe_from_never_goes_below_match() {
        let mut p = Progress::new(1);
        p.sent(3);
        p.acknowledge(3);
        p.probe_from(1);
        assert_eq!(p.next, 4);
        assert_eq!(p.mode, SendMode::Probe);
    }
}
