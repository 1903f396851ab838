//! How the simulation executes a node's `Ready`: the core harness's
//! [`execute`](crate::core::harness::execute) (the executor the core's
//! scenario tests use too) calls [`Driving`] for each output, in the order
//! the core documents. Messages go out over the simulated network, the
//! durable part is queued on the simulated disk (its persisted messages wait
//! for the simulated fsync, see `Sim::synced`), committed entries are applied
//! to the node's state machine, and confirmed or failed reads go to the
//! clients waiting for them.

use super::checks::{violation, Violation};
use super::client::Stage;
use super::storage::PendingWrite;
use super::trace::TraceKind;
use super::Sim;
use crate::core::harness::{DurableWrite, ReadyHost};
use crate::core::{InstalledSnapshot, LogReset, Message, ReadState, Refusal};
use crate::types::{Log, ServerId};

/// Node `n` of `sim` executing one `Ready`.
pub(super) struct Driving<'s, 'a> {
    pub(super) sim: &'s mut Sim<'a>,
    pub(super) n: usize,
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

    fn install(&mut self, snapshot: InstalledSnapshot) -> Result<(), Violation> {
        self.sim.execute_install(self.n, snapshot)
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
                    if read.index < *committed {
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
}
