//! Snapshots in the simulation, driven the way the runtime drives them.
//!
//! - **Taking**: when a node has applied more than the seed's threshold of
//!   entries since its last snapshot, it captures its state machine (index,
//!   term, configuration, data). The snapshot is durable only when its
//!   simulated write completes (a crash first loses it); then the core and
//!   the durable log are compacted, keeping the seed's number of trailing
//!   entries.
//! - **Sending**: for each follower in `Ready::snapshots_to_send` the leader
//!   sends its newest durable snapshot over the simulated network (lost,
//!   delayed or cut off like any message; one transfer per follower at a
//!   time). A transfer that fails anywhere is reported to the leader after a
//!   timeout with `snapshot_sent(.., false)`; otherwise the follower's
//!   answer is.
//! - **Receiving**: the follower accepts the offer (`snapshot_offered`),
//!   stores the snapshot durably (a simulated write during which it can
//!   crash), then calls `install_snapshot`; the `InstalledSnapshot` it
//!   returns is executed by [`Sim::execute_install`](super::Sim) ahead of
//!   the node's next `Ready`: the durable log is deleted as instructed (a
//!   queued write, after the writes ahead of it) and the state machine is
//!   replaced by the snapshot's state.
//!
//! Every snapshot is checked against the run-wide record of committed
//! entries and of the state after each index.

use std::rc::Rc;

use super::checks::{violation, Check};
use super::kv::KvFsm;
use super::rng::SimRng;
use super::storage::{Compaction, PendingWrite, Snapshot};
use super::trace::TraceKind;
use super::{Event, Sim, TICK_UNITS};
use crate::core::harness::DurableWrite;
use crate::core::InstalledSnapshot;
use crate::types::{ServerId, SnapshotPosition};

/// A seed's snapshot settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnapshotPolicy {
    /// Whether nodes take snapshots at all.
    pub(crate) enabled: bool,
    /// Take a snapshot once more than this many entries were applied since
    /// the last one.
    pub(crate) threshold: u64,
    /// Entries kept in the log behind a snapshot when compacting.
    pub(crate) trailing: u64,
}

impl SnapshotPolicy {
    /// Picks the settings from the seed's snapshot random source.
    pub(crate) fn pick(rate: f64, rng: &mut SimRng) -> Self {
        Self { enabled: rng.chance(rate), threshold: rng.between(5, 40), trailing: rng.between(0, 10) }
    }
}

/// One snapshot transfer from a leader to a follower.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub(crate) leader: usize,
    /// The leader's life when it started the transfer: the answer is lost
    /// if it crashed since.
    pub(crate) leader_life: u64,
    pub(crate) to: usize,
    /// The leader's term when it started the transfer.
    pub(crate) term: u64,
    pub(crate) snapshot: Rc<Snapshot>,
}

impl Sim<'_> {
    /// Starts a snapshot of node `n`'s state machine if the policy says so.
    pub(super) fn maybe_snapshot(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let due = node.fsm.applied > node.last_snapshot + self.snapshots.threshold;
        if !self.snapshots.enabled || node.snapshotting || !due || node.core.is_none() {
            return;
        }
        node.snapshotting = true;
        node.last_snapshot = node.fsm.applied;
        let snapshot = Rc::new(Snapshot {
            index: node.fsm.applied,
            term: node.fsm.applied_term,
            state: node.fsm.state.clone(),
        });
        let (life, index) = (node.life, snapshot.index);
        let delay = self.snap_rng.between(1, 2 * self.cfg.max_sync_delay.max(1));
        self.trace.push(self.now, TraceKind::Snapshot(format!("n{} snapshots at {index}", n + 1)));
        self.schedule(self.now + delay, Event::SnapshotStored { node: n, life, snapshot, transfer: None });
    }

    /// A snapshot write completed: node `n`'s own snapshot (`transfer` is
    /// `None`) or one received from a leader.
    pub(super) fn snapshot_stored(
        &mut self,
        n: usize,
        life: u64,
        snapshot: Rc<Snapshot>,
        transfer: Option<Transfer>,
    ) -> Check {
        if self.nodes[n].life != life || self.nodes[n].core.is_none() {
            // The node crashed while writing: the snapshot is lost, and a
            // transfer fails.
            if let Some(t) = transfer {
                self.transfer_failed(&t);
            }
            return Ok(());
        }
        let (index, term) = (snapshot.index, snapshot.term);
        let what = || format!("the snapshot stored by n{}", n + 1);
        self.safety.check_snapshot_state(&what, index, term, &snapshot.state)?;
        self.nodes[n].storage.store_snapshot(snapshot.clone());
        match transfer {
            None => {
                self.nodes[n].snapshotting = false;
                self.report.snapshots_taken += 1;
                self.trace.push(
                    self.now,
                    TraceKind::Snapshot(format!("n{} stored its snapshot at {index}", n + 1)),
                );
                self.compact(n, index)
            }
            Some(t) => self.install(n, t),
        }
    }

    /// Compacts node `n`'s log behind its durable snapshot at `index`.
    fn compact(&mut self, n: usize, index: u64) -> Check {
        let target = index.saturating_sub(self.snapshots.trailing);
        let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
        if target <= core.snapshot_index() {
            return Ok(());
        }
        let Some(term) = core.term_at(target) else {
            return Err(violation("compaction", format!("n{} has no entry {target} to compact to", n + 1)));
        };
        core.compact(target)
            .map_err(|e| violation("compaction", format!("n{} cannot compact to {target}: {e}", n + 1)))?;
        self.report.compactions += 1;
        let compact = Some(Compaction { through: target, term, discard_all: false });
        self.queue_write(n, PendingWrite::of(DurableWrite { compact, ..DurableWrite::default() }));
        self.check(n)
    }

    /// Starts a transfer of leader `n`'s newest durable snapshot to each
    /// follower in `peers` that has none in flight.
    pub(super) fn send_snapshots(&mut self, n: usize, peers: Vec<ServerId>) -> Check {
        for peer in peers {
            let Some(to) = self.node_index(&peer) else {
                return Err(violation(
                    "addressing",
                    format!("n{} sends a snapshot to unknown {peer}", n + 1),
                ));
            };
            let node = &self.nodes[n];
            let Some(term) = node.core.as_ref().map(|c| c.term()) else { return Ok(()) };
            if node.sending[to] {
                continue;
            }
            let Some(snapshot) = node.storage.snapshot.clone() else {
                return Err(violation(
                    "snapshots are sent only when one exists",
                    format!("n{} must send a snapshot to {peer} but has none", n + 1),
                ));
            };
            let t = Transfer { leader: n, leader_life: node.life, to, term, snapshot };
            self.nodes[n].sending[to] = true;
            self.report.snapshots_sent += 1;
            let index = t.snapshot.index;
            let delays = self.net.route(n, to, &mut self.snap_rng);
            let fate = if delays.is_empty() { " (lost)" } else { "" };
            self.trace.push(
                self.now,
                TraceKind::Snapshot(format!(
                    "n{} -> n{} send snapshot at {index} (t{term}){fate}",
                    n + 1,
                    to + 1
                )),
            );
            match delays.first() {
                Some(&d) => self.schedule(self.now + d, Event::SnapshotArrive { transfer: t }),
                None => self.transfer_failed(&t),
            }
        }
        Ok(())
    }

    /// A snapshot transfer reaches its follower.
    pub(super) fn snapshot_arrived(&mut self, t: Transfer) -> Check {
        let to = t.to;
        let blocked = self.net.is_blocked(t.leader, t.to);
        let leader_id = self.nodes[t.leader].id.clone();
        let Some(core) = self.nodes[t.to].core.as_mut().filter(|_| !blocked) else {
            self.net.dropped += 1;
            self.transfer_failed(&t);
            return Ok(());
        };
        self.report.messages_delivered += 1;
        self.trace.push(
            self.now,
            TraceKind::Snapshot(format!(
                "n{} -> n{} snapshot at {} (t{}) arrives",
                t.leader + 1,
                t.to + 1,
                t.snapshot.index,
                t.term
            )),
        );
        match core.snapshot_offered(&leader_id, t.term) {
            Err(current) => self.answer(&t, current, false),
            Ok(()) => {
                let delay = self.snap_rng.between(1, 2 * self.cfg.max_sync_delay.max(1));
                let (node, life, snapshot) = (t.to, self.nodes[t.to].life, t.snapshot.clone());
                self.schedule(
                    self.now + delay,
                    Event::SnapshotStored { node, life, snapshot, transfer: Some(t) },
                );
            }
        }
        self.after_step(to)
    }

    /// The follower stored the received snapshot: install it.
    fn install(&mut self, n: usize, t: Transfer) -> Check {
        let leader_id = self.nodes[t.leader].id.clone();
        let s = t.snapshot.clone();
        let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
        let (configuration_index, configuration) = s.state.conf.clone();
        let position = SnapshotPosition { index: s.index, term: s.term, configuration, configuration_index };
        let outcome = core.install_snapshot(&leader_id, t.term, position);
        let term = core.term();
        self.trace.push(
            self.now,
            TraceKind::Snapshot(format!(
                "n{} install_snapshot({}/t{}) = {:?}",
                n + 1,
                s.index,
                s.term,
                outcome.as_ref().map(Option::is_some)
            )),
        );
        let installed = match outcome {
            Err(current) => {
                self.answer(&t, current, false);
                None
            }
            Ok(installed) => {
                self.answer(&t, term, true);
                installed.map(|inst| (s, inst))
            }
        };
        self.after_install(n, installed)
    }

    /// Executes the install of snapshot `s` on node `n` (what
    /// `install_snapshot` returned, passed to the harness with the next
    /// `Ready`): restores the state machine from the snapshot (the harness
    /// puts the log deletion ahead of the `Ready`'s own writes).
    pub(super) fn execute_install(&mut self, n: usize, s: &Snapshot, inst: InstalledSnapshot) -> Check {
        if (s.index, s.term) != (inst.position.index, inst.position.term) {
            return Err(violation(
                "snapshot installs",
                format!(
                    "n{} installed {}/t{} but was given the snapshot at {}/t{}",
                    n + 1,
                    inst.position.index,
                    inst.position.term,
                    s.index,
                    s.term
                ),
            ));
        }
        let what = || format!("the snapshot installed by n{}", n + 1);
        self.safety.check_snapshot_state(&what, s.index, s.term, &s.state)?;
        let node = &mut self.nodes[n];
        node.fsm = KvFsm::restored(s.index, s.term, s.state.clone());
        node.applied_base = s.index;
        node.applied_terms.clear();
        node.last_snapshot = node.last_snapshot.max(s.index);
        self.report.snapshots_installed += 1;
        Ok(())
    }

    /// The follower answers a transfer: the answer travels back over the
    /// network; if it is lost the leader learns of a failure after a timeout.
    fn answer(&mut self, t: &Transfer, term: u64, success: bool) {
        if success {
            self.ack_sent(t.to, term, t.snapshot.index);
        }
        let delays = self.net.route(t.to, t.leader, &mut self.snap_rng);
        match delays.first() {
            Some(&d) => {
                let index = t.snapshot.index;
                let event = Event::SnapshotResult { transfer: t.clone(), index, term, success };
                self.schedule(self.now + d, event);
            }
            None => self.transfer_failed(t),
        }
    }

    /// Reports a failed transfer to its leader after a timeout.
    fn transfer_failed(&mut self, t: &Transfer) {
        let delay = self.snap_rng.between(2 * TICK_UNITS, 5 * TICK_UNITS);
        let (index, term) = (t.snapshot.index, t.term);
        let event = Event::SnapshotResult { transfer: t.clone(), index, term, success: false };
        self.schedule(self.now + delay, event);
    }

    /// The leader learns the outcome of a transfer.
    pub(super) fn snapshot_result(&mut self, t: Transfer, index: u64, term: u64, success: bool) -> Check {
        let n = t.leader;
        if self.nodes[n].life != t.leader_life {
            return Ok(());
        }
        self.nodes[n].sending[t.to] = false;
        let peer = self.nodes[t.to].id.clone();
        let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
        core.snapshot_sent(&peer, index, term, success);
        self.trace.push(
            self.now,
            TraceKind::Snapshot(format!(
                "n{} learns: snapshot to n{} ok={success} (t{term})",
                n + 1,
                t.to + 1
            )),
        );
        self.after_step(n)
    }
}
