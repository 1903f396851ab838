//! A targeted fault schedule that favours the interleaving of Raft's
//! Figure 8 (§5.4.2): a leader's entries reach only a minority before it is
//! cut off, another node wins a later term and is cut off in turn, an older
//! log wins again and replicates the old entries to a majority, and is cut
//! off right after its commit index first moves in its term. If a leader
//! ever counted an entry from an earlier term as committed by replication
//! alone, the node elected next can lack it, which the safety checks catch.
//!
//! In seeds that use it (a share set by [`SimConfig::figure8_rate`]), every
//! new leader is, with some probability, isolated (alone or with one peer)
//! the moment it is seen leading, and again the moment its commit index
//! first advances in its term. Its decisions draw from their own random
//! source.
//!
//! [`SimConfig::figure8_rate`]: super::SimConfig::figure8_rate

use super::rng::SimRng;
use super::trace::TraceKind;
use super::Sim;

/// The schedule's state for one run.
#[derive(Debug)]
pub(crate) struct Figure8 {
    pub(crate) enabled: bool,
    rng: SimRng,
    /// Per node: the term it was last seen leading, its commit index then,
    /// and whether that commit index has advanced since.
    led: Vec<(u64, u64, bool)>,
}

impl Figure8 {
    /// Picks whether the seed uses the schedule, from its own random source.
    pub(crate) fn new(seed: u64, rate: f64, nodes: usize) -> Self {
        let mut rng = SimRng::new(seed ^ 0x0F16_8000_0000_0000);
        Self { enabled: rng.chance(rate), rng, led: vec![(0, 0, false); nodes] }
    }
}

impl Figure8 {
    /// Entries per AppendEntries for a seed using the schedule: mostly one.
    pub(crate) fn pick_batch(&mut self) -> usize {
        [1, 1, 1, 2][self.rng.index(4)]
    }
}

impl Sim<'_> {
    /// Called after every step of node `n`: cuts off leaders at the moments
    /// that matter for Figure 8.
    pub(super) fn figure8_step(&mut self, n: usize) {
        if !self.faults || !self.figure8.enabled {
            return;
        }
        let Some(core) = self.nodes[n].core.as_ref().filter(|c| c.is_leader()) else { return };
        let (term, commit) = (core.term(), core.commit_index());
        let led = &mut self.figure8.led[n];
        let rng = &mut self.figure8.rng;
        let count = self.nodes.len();
        // A new leader is cut off alone or with one peer (its entries reach
        // at most a minority); a leader whose commit index just moved, alone.
        let partner = if led.0 != term {
            *led = (term, commit, false);
            if !rng.chance(0.5) {
                return;
            }
            rng.chance(0.5).then(|| rng.index(count))
        } else if !led.2 && commit > led.1 {
            led.2 = true;
            if !rng.chance(0.9) {
                return;
            }
            None
        } else {
            return;
        };
        let duration = rng.between(3, 20);
        let inside = |i: usize| i == n || Some(i) == partner;
        for a in 0..count {
            for b in 0..count {
                if inside(a) != inside(b) {
                    self.net.set_blocked(a, b, true);
                }
            }
        }
        let until = self.tick + duration;
        self.heal_at = Some(self.heal_at.map_or(until, |t| t.max(until)));
        self.report.partitions += 1;
        let with = partner.filter(|&p| p != n).map(|p| format!(" with n{}", p + 1)).unwrap_or_default();
        let what = format!("figure 8: leader n{} (t{term}, commit {commit}) cut off{with}", n + 1);
        self.trace.push(self.now, TraceKind::Network(what));
    }
}
