//! The core's log window in the simulation: in a share of seeds
//! ([`SimConfig::window_rate`](super::SimConfig::window_rate)) the cores
//! hold only a tiny window of entry payloads (0 to a few hundred bytes
//! beyond the entries not yet durable), so leaders read most of what they
//! replicate from the node's durable log and restarted nodes apply their
//! committed entries from it.
//!
//! - A read a leader asks for ([`Ready::fetches`](crate::core::Ready)) is
//!   served from the node's simulated disk after a random delay (through
//!   the simulation's event queue, so it races with everything else), and
//!   fails now and then
//!   ([`SimConfig::fetch_fail_rate`](super::SimConfig::fetch_fail_rate));
//!   the outcome goes to [`Core::entries_fetched`](crate::core::Core). A
//!   read that completes after a crash of its node is dropped.
//! - Committed entries to apply from the store
//!   ([`Ready::apply_from_store`](crate::core::Ready)) are read from the
//!   disk at once; every one must be there, with the term the core's log
//!   names for it.
//!
//! Choices draw from a random source of their own, so seeds without a small
//! window run exactly as before.

use super::checks::{violation, Check};
use super::rng::SimRng;
use super::trace::TraceKind;
use super::{Event, Sim};
use crate::core::{Body, CoreConfig, LogFetch};

/// The window settings a seed picked.
pub(super) struct WindowPolicy {
    /// Whether the cores run with a small window.
    pub(super) small: bool,
    rng: SimRng,
}

impl WindowPolicy {
    /// Picks the window for a seed (with probability `rate` a small one)
    /// and sets it in `core_cfg`, with byte budgets for flow control.
    pub(super) fn pick(seed: u64, rate: f64, core_cfg: &mut CoreConfig) -> Self {
        let mut rng = SimRng::new(seed ^ 0x3A1D_0F00_0000_0004);
        let small = rng.chance(rate);
        if small {
            core_cfg.max_window_bytes = [0, 0, 100, 300][rng.index(4)];
            core_cfg.max_inflight_bytes = [100, 200, 400, 1 << 20][rng.index(4)];
            core_cfg.max_uncommitted_bytes = [64 << 20, 64 << 20, 400][rng.index(3)];
        }
        Self { small, rng }
    }

    /// A line for the seed's setup description.
    pub(super) fn describe(&self, cfg: &CoreConfig) -> String {
        if self.small {
            format!(
                ", log window {} bytes, max_inflight_bytes={}, max_uncommitted_bytes={}",
                cfg.max_window_bytes, cfg.max_inflight_bytes, cfg.max_uncommitted_bytes
            )
        } else {
            String::new()
        }
    }
}

impl Sim<'_> {
    /// Node `n` (a leader) asks for `fetch` to be read from its disk: the
    /// read completes after a random delay. What it asks for must be
    /// durable now, with the terms its log names (everything before the
    /// window is).
    pub(super) fn start_fetch(&mut self, n: usize, fetch: LogFetch) -> Check {
        let node = &self.nodes[n];
        for i in fetch.lo..=fetch.hi {
            let durable = node.storage.entry(i).map(|e| e.term);
            let named = node.core.as_ref().and_then(|c| c.term_at(i));
            if durable.is_none() || durable != named {
                return Err(violation(
                    "reads of the store ask for durable entries",
                    format!(
                        "n{} asks to read {}..={} for {}, but its disk holds {durable:?} at {i} where its log \
                         names {named:?}",
                        n + 1,
                        fetch.lo,
                        fetch.hi,
                        fetch.peer
                    ),
                ));
            }
        }
        let delay = self.window.rng.between(1, self.cfg.max_sync_delay.max(1));
        let fail = self.window.rng.chance(self.cfg.fetch_fail_rate);
        let life = self.nodes[n].life;
        self.schedule(self.now + delay, Event::Fetched { node: n, life, fetch, fail });
        Ok(())
    }

    /// A read of node `n`'s disk completes: hands the entries (or the
    /// failure) to its core.
    pub(super) fn fetched(&mut self, n: usize, life: u64, fetch: LogFetch, fail: bool) -> Check {
        if self.nodes[n].life != life {
            return Ok(());
        }
        let result = if fail {
            self.report.fetch_failures += 1;
            Err("simulated read failure".to_owned())
        } else {
            self.nodes[n].storage.read(fetch.lo, fetch.hi)
        };
        let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
        self.report.fetches += 1;
        let before = core.ready.messages.len();
        let (peer, prev) = (fetch.peer.clone(), fetch.lo - 1);
        let what =
            format!("n{} read {}..={} for {peer} from its disk (fail: {fail})", n + 1, fetch.lo, fetch.hi);
        core.entries_fetched(fetch, result);
        let sent: usize = core.ready.messages[before..]
            .iter()
            .filter(|m| m.to == peer)
            .map(|m| match &m.body {
                Body::AppendEntries(a) if a.prev_log_index == prev => a.entries.len(),
                _ => 0,
            })
            .next()
            .unwrap_or(0);
        self.report.entries_from_store += sent as u64;
        self.trace.push(self.now, TraceKind::Network(what));
        self.after_step(n)
    }

    /// Node `n` applies the committed entries `lo..=hi` from its disk.
    pub(super) fn apply_from_store(&mut self, n: usize, lo: u64, hi: u64) -> Check {
        let entries = self.nodes[n].storage.read(lo, hi).map_err(|e| {
            violation("committed entries outside the window are on disk", format!("n{}: {e}", n + 1))
        })?;
        for e in &entries {
            let term = self.nodes[n].core.as_ref().and_then(|c| c.term_at(e.index));
            if term.is_some_and(|t| t != e.term) {
                return Err(violation(
                    "committed entries outside the window are on disk",
                    format!(
                        "n{}'s disk holds entry {} of term {} but its log says {term:?}",
                        n + 1,
                        e.index,
                        e.term
                    ),
                ));
            }
        }
        self.report.applied_from_store += entries.len() as u64;
        for e in entries {
            self.apply(n, e)?;
        }
        Ok(())
    }
}
