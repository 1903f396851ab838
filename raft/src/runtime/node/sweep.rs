//! The main loop's sweep: after each event the main task handles whatever
//! else is already waiting (a finished log write, peer reports, inbound
//! RPCs, client requests) with non-blocking receives, and waits in its
//! `select!` only when nothing is.
//!
//! Entering the `select!` polls every source and registers a waker with
//! each; a sweep costs a few atomic loads per source. A log store that
//! completes at once (in memory) is finished in the same loop turn that
//! started its write instead of one turn later. Under CPU contention,
//! when the main task runs in short time slices, most events arrive while
//! it runs and are handled this way.

use futures::FutureExt;

use super::*;

/// Most sweeps in a row before the main loop waits in its `select!` again,
/// so its timers (ticks, deadlines, the commit flush) are never starved.
pub(super) const MAX_SWEEPS: usize = 16;

impl<R: Send + 'static> Node<R> {
    /// Handles, once each, every source that has something ready now.
    /// Returns whether anything was handled, and whether the node stops.
    pub(super) fn sweep(&mut self) -> (bool, Flow) {
        let mut handled = false;
        if self.store.writer.busy() {
            // Polled with a no-op waker: if the write is still under way,
            // the `select!` polls it again with the main task's own.
            if let Some(ev) = self.store.writer.next_done().now_or_never() {
                handled = true;
                if let Flow::Stop = self.on_writer_event(ev) {
                    return (true, Flow::Stop);
                }
            }
        }
        if let Ok(ev) = self.store.fsm_failures.try_recv() {
            handled = true;
            if let Flow::Stop = self.on_writer_event(ev) {
                return (true, Flow::Stop);
            }
        }
        handled |= self.drain_peer_events() > 0;
        handled |= self.drain_inbound() > 0;
        if let Ok(taken) = self.snapshots.taken.try_recv() {
            handled = true;
            self.on_snapshot_taken(taken);
        }
        if !self.clients.restoring {
            if let Ok(req) = self.clients.requests.try_recv() {
                handled = true;
                if let Flow::Stop = self.on_requests(req) {
                    return (true, Flow::Stop);
                }
            }
        }
        (handled, Flow::Continue)
    }

    /// Handles the peer reports waiting now (at most [`MAX_DRAIN`]);
    /// returns how many.
    pub(super) fn drain_peer_events(&mut self) -> usize {
        let mut n = 0;
        while n < MAX_DRAIN {
            let Ok(ev) = self.peers.events.try_recv() else { break };
            self.on_peer_event(ev);
            n += 1;
        }
        n
    }

    /// Handles the inbound RPCs waiting now (at most [`MAX_DRAIN`]);
    /// returns how many.
    pub(super) fn drain_inbound(&mut self) -> usize {
        let mut n = 0;
        while n < MAX_DRAIN {
            let Some(Ok(rpc)) = self.rpcs.inbound.as_mut().map(|r| r.try_recv()) else { break };
            self.on_rpc(rpc);
            n += 1;
        }
        n
    }
}
