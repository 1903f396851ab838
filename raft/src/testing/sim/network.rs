//! The simulated network: per-message loss, duplication and random delay
//! (which also reorders), plus partitions expressed as blocked directed
//! links, so both symmetric splits and one-way cuts can be modelled.

use super::rng::SimRng;

/// Fault settings and the current partition of the network.
#[derive(Debug)]
pub(crate) struct Network {
    nodes: usize,
    /// `blocked[from * nodes + to]`: messages on this link are lost.
    blocked: Vec<bool>,
    pub(crate) drop_rate: f64,
    pub(crate) dup_rate: f64,
    pub(crate) min_delay: u64,
    pub(crate) max_delay: u64,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
    pub(crate) duplicated: u64,
}

impl Network {
    pub(crate) fn new(nodes: usize, drop_rate: f64, dup_rate: f64, max_delay: u64) -> Self {
        Self {
            nodes,
            blocked: vec![false; nodes * nodes],
            drop_rate,
            dup_rate,
            min_delay: 1,
            max_delay: max_delay.max(1),
            sent: 0,
            dropped: 0,
            duplicated: 0,
        }
    }

    /// Whether messages from `from` to `to` are currently lost.
    pub(crate) fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked.get(from * self.nodes + to).copied().unwrap_or(true)
    }

    /// Blocks (or unblocks) the directed link `from -> to`.
    pub(crate) fn set_blocked(&mut self, from: usize, to: usize, blocked: bool) {
        if from != to {
            if let Some(b) = self.blocked.get_mut(from * self.nodes + to) {
                *b = blocked;
            }
        }
    }

    /// Unblocks every link.
    pub(crate) fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Decides the fate of one message: the delays after which copies of it
    /// arrive (empty if it is lost).
    pub(crate) fn route(&mut self, from: usize, to: usize, rng: &mut SimRng) -> Vec<u64> {
        self.sent += 1;
        if self.is_blocked(from, to) || rng.chance(self.drop_rate) {
            self.dropped += 1;
            return Vec::new();
        }
        let mut delays = vec![rng.between(self.min_delay, self.max_delay)];
        if rng.chance(self.dup_rate) {
            self.duplicated += 1;
            delays.push(rng.between(self.min_delay, self.max_delay * 2));
        }
        delays
    }

    /// A readable description of the blocked links.
    pub(crate) fn describe(&self) -> String {
        let mut cuts = Vec::new();
        for from in 0..self.nodes {
            for to in 0..self.nodes {
                if self.is_blocked(from, to) {
                    cuts.push(format!("n{}->n{}", from + 1, to + 1));
                }
            }
        }
        if cuts.is_empty() {
            "fully connected".to_owned()
        } else {
            format!("blocked {}", cuts.join(" "))
        }
    }
}
