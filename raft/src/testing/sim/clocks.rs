//! Clocks that drift: every node's clock runs at a rate of its own, within
//! the drift bound leases are built on ([`SimConfig::clock_drift`]).
//!
//! Real time advances by one tick per simulated tick. Node `i`'s clock
//! advances by `rate_i` (drawn once per run from `[1 - eps, 1 + eps]`: the
//! slowest, the fastest, or anywhere between, each a third of the time) and
//! starts at a random phase; the node's core is ticked once for every whole
//! tick its clock passed, so over a simulated tick it gets 0, 1 or 2 ticks.
//! The clock keeps running while the node is down or paused: a paused
//! node's clock sees the pause (a monotonic clock does), so it is ticked for
//! every tick it missed as soon as it resumes, before it handles anything
//! that queued up for it (the runtime must do the same before it answers a
//! lease read). A restarted node's core starts counting afresh.
//!
//! # The bound
//! With [`SimConfig::adversarial_clocks`] the rates are an adversary's
//! instead: every node that leads runs at the slowest rate the bound allows,
//! every other node at the fastest, the worst case for a lease.
//!
//! A lease of `L` leader ticks is safe while, in real time, it ends before a
//! voter that acknowledged its round can vote again, `F =
//! follower_timeout_ticks` ticks of the voter's clock after it heard the
//! round (see `core::lease`). Because ticks are delivered at whole
//! simulated ticks, the leader's last tick inside the lease may come up to
//! a tick late and the voter's count starts up to a tick early, so the sim
//! needs `L / (1 - eps) + 1 <= (F - 1) / (1 + eps)`, which holds whenever
//! `(L + 1) / (1 - eps) <= (F - 1) / (1 + eps)`; [`safe_drift`] is the
//! largest `eps` for which it holds: `(F - L - 2) / (F + L)` (1/17 for the
//! test configuration's `F = 10`, `L = 7`).
//!
//! [`SimConfig::clock_drift`]: super::SimConfig::clock_drift
//! [`SimConfig::adversarial_clocks`]: super::SimConfig::adversarial_clocks

use super::rng::SimRng;
use crate::core::CoreConfig;

/// The largest clock drift (`eps`, a fraction of the nominal rate) under
/// which `cfg`'s lease is safe in the simulation: `(F - L - 2) / (F + L)`,
/// with `L` the lease the core uses (at most `F - 2`).
pub fn safe_drift(cfg: &CoreConfig) -> f64 {
    let f = cfg.follower_timeout_ticks as f64;
    let l = cfg.read_lease_ticks.min(cfg.follower_timeout_ticks.saturating_sub(2)) as f64;
    ((f - l - 2.0) / (f + l)).max(0.0)
}

/// Every node's clock.
#[derive(Debug)]
pub(super) struct Clocks {
    /// The bound the rates were drawn within.
    pub(super) drift: f64,
    /// Ticks of node `i`'s clock per real tick.
    rates: Vec<f64>,
    /// Node `i`'s clock reading, in ticks.
    reading: Vec<f64>,
    /// Whole ticks of node `i`'s clock already handed to its core (or
    /// passed while it was down).
    delivered: Vec<u64>,
}

impl Clocks {
    /// `n` clocks with rates drawn within `drift` of 1 from `rng`.
    pub(super) fn new(n: usize, drift: f64, rng: &mut SimRng) -> Self {
        let drift = drift.clamp(0.0, 0.99);
        let rates = (0..n)
            .map(|_| match rng.index(3) {
                0 => 1.0 - drift,
                1 => 1.0 + drift,
                _ => 1.0 - drift + 2.0 * drift * rng.next_f64(),
            })
            .collect();
        let reading: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
        let delivered = reading.iter().map(|r| r.floor() as u64).collect();
        Self { drift, rates, reading, delivered }
    }

    /// One real tick passes. With `slow_leaders` (the adversary of
    /// [`SimConfig::adversarial_clocks`](super::SimConfig::adversarial_clocks)),
    /// instead of their own rates, the nodes that `leads` run at the slowest
    /// rate the bound allows and every other node at the fastest.
    pub(super) fn advance(&mut self, slow_leaders: bool, leads: impl Fn(usize) -> bool) {
        for (n, (reading, rate)) in self.reading.iter_mut().zip(&self.rates).enumerate() {
            *reading += match (slow_leaders, leads(n)) {
                (false, _) => *rate,
                (true, true) => 1.0 - self.drift,
                (true, false) => 1.0 + self.drift,
            };
        }
    }

    /// The ticks node `n`'s clock passed since they were last taken.
    pub(super) fn take_due(&mut self, n: usize) -> u64 {
        let now = self.reading[n].floor() as u64;
        let due = now.saturating_sub(self.delivered[n]);
        self.delivered[n] = now;
        due
    }

    /// The whole ticks node `n`'s clock passed that were not taken yet.
    pub(super) fn pending(&self, n: usize) -> u64 {
        (self.reading[n].floor() as u64).saturating_sub(self.delivered[n])
    }

    /// The rates, for the run's setup line.
    pub(super) fn describe(&self) -> String {
        let rates: Vec<String> = self.rates.iter().map(|r| format!("{r:.3}")).collect();
        format!("clock rates [{}] (drift bound {:.3})", rates.join(" "), self.drift)
    }
}
