//! [`SimRng`]: the simulation's seeded random source, so a run replays
//! exactly from its seed. Built on the core's SplitMix64 generator, with the
//! draws the harness needs.

use crate::core::rng::Rng;

/// A small, fast, seedable random number generator.
#[derive(Clone, Debug)]
pub(crate) struct SimRng(Rng);

impl SimRng {
    /// A generator whose whole output is determined by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(Rng::new(seed ^ 0x00BD_DA1E_A222_0000))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `lo..=hi` (`lo` if the range is empty).
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// An index in `0..n` (0 if `n` is 0).
    pub(crate) fn index(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.0.next_f64() < p
    }
}
