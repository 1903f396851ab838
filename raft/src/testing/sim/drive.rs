//! How the simulation executes a node's `Ready`: the core harness's
//! [`execute`](crate::core::harness::execute) (the executor the core's
//! scenario tests use too) calls [`Driving`] for each output, in the order
//! the core documents. Messages go out over the simulated network, the
//! durable part is queued on the simulated disk (its persisted messages wait
//! for the simulated fsync, see `Sim::synced`), reads of the durable log for
//! followers are queued (see the `window` module), committed entries are
//! applied to the node's state machine (those outside the core's window read
//! from its disk first), and confirmed or failed reads go to the
//! clients waiting for them. A snapshot install the core returned is
//! executed with the `Ready` that follows it; requests the core declined go
//! unanswered (their senders time out, as for a lost answer).

use std::rc::Rc;

use super::checks::{violation, Violation};
use super::client::Stage;
use super::storage::{PendingWrite, Snapshot};
use super::trace::TraceKind;
use super::Sim;
use crate::core::harness::{DurableWrite, ReadyHost};
use crate::core::{InstalledSnapshot, LogFetch, LogReset, Message, ReadState, Refusal};
use crate::types::{Log, ServerId};

/// Node `n` of `sim` executing one `Ready`.
pub(super) struct Driving<'s, 'a> {
    pub(super) sim: &'s mut Sim<'a>,
    pub(super) n: usize,
    /// The snapshot whose install is executed with this `Ready` (the one
    /// given to `install_snapshot`), if any.
    pub(super) snapshot: Option<Rc<Snapshot>>,
}

impl ReadyHost for Driving<'_, '_> {
    type Error = Violation;

    fn log_reset(&mut self, reset: LogReset) -> Result<(), Violation> {
        self.sim.report.log_resets += 1;
        let what = format!(
            "n{} resets {}'s progress: it had matched {}, its log now ends at {}",
            self.n + 1,
            reset.peer,
            reset.matched,
            reset.last_log_index
        );
        self.sim.trace.push(self.sim.now, TraceKind::Network(what));
        Ok(())
    }

    fn send(&mut self, msg: Message) -> Result<(), Violation> {
        self.sim.send(self.n, msg)
    }

    fn install(&mut self, installed: InstalledSnapshot) -> Result<(), Violation> {
        let Some(s) = self.snapshot.take() else {
            return Err(violation(
                "snapshot installs",
                format!(
                    "n{} executes an install at {} without the snapshot it was given",
                    self.n + 1,
                    installed.position.index
                ),
            ));
        };
        self.sim.execute_install(self.n, &s, installed)
    }

    fn write(&mut self, write: DurableWrite) -> Result<(), Violation> {
        if let Some(t) = write.truncate_from {
            let m = &mut self.sim.monitors[self.n];
            m.mem_verified = m.mem_verified.min(t.saturating_sub(1));
        }
        self.sim.queue_write(self.n, PendingWrite::of(write));
        Ok(())
    }

    fn send_snapshots(&mut self, to: Vec<ServerId>) -> Result<(), Violation> {
        self.sim.send_snapshots(self.n, to)
    }

    fn fetch(&mut self, fetch: LogFetch) -> Result<(), Violation> {
        self.sim.start_fetch(self.n, fetch)
    }

    fn apply_from_store(&mut self, lo: u64, hi: u64) -> Result<(), Violation> {
        self.sim.apply_from_store(self.n, lo, hi)
    }

    fn apply(&mut self, entry: Log) -> Result<(), Violation> {
        self.sim.apply(self.n, entry)
    }

    fn applied(&mut self) -> Result<(), Violation> {
        self.sim.maybe_snapshot(self.n);
        Ok(())
    }

    fn read(&mut self, read: ReadState) -> Result<(), Violation> {
        for c in &mut self.sim.clients {
            if let Stage::Read { id, confirmed, committed, .. } = &mut c.stage {
                if *id == read.id {
                    // ReadIndex (thesis §6.4): the read index covers every
                    // entry committed before the read arrived.
                    if self.sim.cfg.direct_read_checks && read.index < *committed {
                        return Err(violation(
                            "a read index covers every earlier commit",
                            format!(
                                "n{} confirmed read {id} at index {}, but entries up to {committed} had been \
                                 committed before the read was requested",
                                self.n + 1,
                                read.index
                            ),
                        ));
                    }
                    *confirmed = Some(read.index);
                }
            }
        }
        Ok(())
    }

    fn read_failed(&mut self, read: u64, why: Refusal) -> Result<(), Violation> {
        for c in 0..self.sim.clients.len() {
            if matches!(self.sim.clients[c].stage, Stage::Read { id, .. } if id == read) {
                self.sim.refused(c, &why);
            }
        }
        Ok(())
    }

    fn transfer_aborted(&mut self) -> Result<(), Violation> {
        Ok(())
    }

    fn transfer_completed(&mut self) -> Result<(), Violation> {
        Ok(())
    }

    fn declined(&mut self, _rpc_id: u64) -> Result<(), Violation> {
        // The simulated network has no per-request answer channel: the
        // sender learns nothing, as when an answer is lost.
        Ok(())
    }
}
