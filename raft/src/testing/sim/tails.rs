//! Faults with long tails: what real networks, machines and disks do that a
//! delay of a tick or two never shows.
//!
//! - **held messages** ([`SimConfig::hold_rate`](super::SimConfig::hold_rate)): a message is held back
//!   for one to five maximum election timeouts and then delivered, so an
//!   answer from an old term can arrive after new elections were held
//!   (retransmissions, a congested switch, a sender paused mid-write). Half
//!   of the held messages are also delivered on time, so the late copy is a
//!   duplicate arriving long after the original.
//! - **paused nodes** ([`SimConfig::pause_rate`](super::SimConfig::pause_rate)): a node stops for one to
//!   five maximum election timeouts, like a process under `SIGSTOP` or a
//!   paused VM: it is not ticked, nothing is delivered to it, none of its
//!   fsyncs completes (its writer is stopped too), its snapshot writes and
//!   transfers wait and clients' requests to it go unanswered; so it sends
//!   nothing. Unlike a crash it keeps its memory: when it resumes, its core
//!   is first ticked for every tick its clock passed meanwhile (a monotonic
//!   clock sees the pause; see the `clocks` module; not under
//!   `SimConfig::legacy_clock_skew`), then every event that queued up for
//!   it is handled, in the order it arrived. A
//!   paused node may still be killed (a crash event), which loses what
//!   queued up for it.
//! - **stalled disks** ([`SimConfig::stall_rate`](super::SimConfig::stall_rate)): a write's fsync takes one
//!   to five maximum election timeouts instead of under a tick. Syncs of one
//!   node complete in submission order, exactly what the runtime's writer
//!   task guarantees (`runtime/writer.rs` makes jobs durable in FIFO order
//!   and reports each `(index, term)` only after the fsync, and never merges
//!   a truncation into an earlier job), so every later write of that node
//!   waits behind the stalled one. Meanwhile the node keeps running: it can
//!   see a leader change, truncate its in-memory log and append a different
//!   suffix while the old write is still being synced; the old write's
//!   completion then reports `persisted(index, old_term)` for an index whose
//!   entry has since been replaced, which `Core::persisted` must ignore.
//!   Stalls end, at the latest, when the faults stop.
//!
//! Each fault draws from a random source of its own, and only when its rate
//! is non-zero, so a seed in which none of them fires runs exactly as it did
//! before they existed. All three stop with the fault phase (paused nodes
//! resume then); messages already held are still delivered late.

use super::trace::TraceKind;
use super::{Event, Sim, TICK_UNITS};

/// Share of held messages that are also delivered on time (the held copy
/// is then a late duplicate).
const HELD_ALSO_ON_TIME: f64 = 0.5;

impl Sim<'_> {
    /// The longest election timeout a core may pick, in ticks: the unit of
    /// the long-tail faults.
    pub(super) fn max_election_ticks(&self) -> u64 {
        2 * self.core_cfg.follower_timeout_ticks.max(self.core_cfg.candidate_timeout_ticks).max(1)
    }

    /// One to five maximum election timeouts, in time units, drawn from
    /// the random source of `which` fault.
    fn long_tail(&mut self, which: Tail) -> u64 {
        let unit = self.max_election_ticks();
        let rng = match which {
            Tail::Hold => &mut self.hold_rng,
            Tail::Pause => &mut self.pause_rng,
            Tail::Stall => &mut self.stall_rng,
        };
        rng.between(unit, 5 * unit) * TICK_UNITS
    }

    /// Decides whether a message routed with `delays` is held back; returns
    /// the delays to deliver it with.
    pub(super) fn hold(&mut self, from: usize, to: usize, mut delays: Vec<u64>) -> Vec<u64> {
        if !self.faults || delays.is_empty() || !self.hold_rng.chance(self.cfg.hold_rate) {
            return delays;
        }
        let late = self.long_tail(Tail::Hold);
        self.report.messages_held += 1;
        let also_on_time = self.hold_rng.chance(HELD_ALSO_ON_TIME);
        if also_on_time {
            self.report.messages_held_duplicated += 1;
            delays.push(late);
        } else {
            delays = vec![late];
        }
        let what = format!(
            "n{}->n{} held for {} ticks{}",
            from + 1,
            to + 1,
            late / TICK_UNITS,
            if also_on_time { " (and delivered on time too)" } else { "" }
        );
        self.trace.push(self.now, TraceKind::Network(what));
        delays
    }

    /// The sync delay of a write queued now, possibly stalled.
    pub(super) fn stall(&mut self, n: usize, delay: u64) -> u64 {
        if !self.faults || !self.stall_rng.chance(self.cfg.stall_rate) {
            return delay;
        }
        let end_of_faults = self.cfg.ticks * TICK_UNITS;
        let stalled = self.long_tail(Tail::Stall).min(end_of_faults.saturating_sub(self.now)).max(delay);
        self.report.disk_stalls += 1;
        let what = format!("n{}'s disk stalls for {} ticks", n + 1, stalled / TICK_UNITS);
        self.trace.push(self.now, TraceKind::Network(what));
        stalled
    }

    /// Pauses a random running node, sometimes (once per tick of the faults).
    pub(super) fn maybe_pause(&mut self) {
        if !self.pause_rng.chance(self.cfg.pause_rate) {
            return;
        }
        let n = self.pause_rng.index(self.nodes.len());
        if self.nodes[n].core.is_none() || self.is_paused(n) {
            return;
        }
        let ticks = self.long_tail(Tail::Pause) / TICK_UNITS;
        self.nodes[n].paused_until = Some(self.tick + ticks);
        self.report.pauses += 1;
        self.trace.push(self.now, TraceKind::Network(format!("n{} pauses for {ticks} ticks", n + 1)));
    }

    /// Whether node `n` is paused.
    pub(super) fn is_paused(&self, n: usize) -> bool {
        self.nodes[n].paused_until.is_some()
    }

    /// The node an event happens on, if a pause of that node must hold it
    /// back. (A crash is not held: a paused process can be killed.)
    pub(super) fn paused_target(&self, event: &Event) -> Option<usize> {
        let n = match event {
            Event::Deliver { to, .. } => *to,
            Event::Synced { node, .. } | Event::SnapshotStored { node, .. } | Event::Fetched { node, .. } => {
                *node
            }
            Event::SnapshotArrive { transfer } => transfer.to,
            Event::SnapshotResult { transfer, .. } => transfer.leader,
            Event::Crash { .. } => return None,
        };
        self.is_paused(n).then_some(n)
    }

    /// Resumes paused nodes whose pause is over (all of them when `all`):
    /// everything that queued up for one is handled, in arrival order.
    pub(super) fn resume_paused(&mut self, all: bool) -> super::checks::Check {
        for n in 0..self.nodes.len() {
            let due = self.nodes[n].paused_until.is_some_and(|t| all || t <= self.tick);
            if !due {
                continue;
            }
            self.nodes[n].paused_until = None;
            let queued = std::mem::take(&mut self.nodes[n].held);
            let what = format!("n{} resumes with {} queued events", n + 1, queued.len());
            self.trace.push(self.now, TraceKind::Network(what));
            // Its clock saw the pause: the ticks it missed come first.
            self.catch_up_clock(n)?;
            for event in queued {
                self.handle(event)?;
            }
        }
        Ok(())
    }
}

/// Which long-tail fault a duration is drawn for (each has its own source).
#[derive(Clone, Copy)]
enum Tail {
    Hold,
    Pause,
    Stall,
}
