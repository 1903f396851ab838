//! [`Rng`]: the workspace's one seeded pseudo-random generator (SplitMix64).
//! The core draws its randomized election timeouts from it, so they replay
//! exactly from a seed; the runtime's back-off and snapshot jitter, the
//! in-memory network's faults, the simulations, the tests and the
//! benchmark use it too (public as [`raft::Rng`](crate::Rng)), so there is
//! one implementation to trust.

/// SplitMix64 (Steele, Lea and Flood): small, fast, and every 64-bit seed
/// gives a full-period sequence. The same seed always gives the same
/// sequence, on every platform. Not for cryptography.
///
/// ```
/// let mut a = raft::Rng::new(7);
/// let mut b = raft::Rng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.range(10, 20) >= 10);
/// assert!(!a.chance(0.0));
/// ```
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next pseudo-random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A value in `lo..hi` (`lo`, drawing nothing, if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// A value in `lo..=hi` (`lo`, drawing nothing, if `hi <= lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.next_u64() % span,
            None => self.next_u64(),
        }
    }

    /// A value in `0..n` (0, drawing nothing, if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.range(0, n)
    }

    /// An index in `0..n` (0, drawing nothing, if `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `p` (never, drawing nothing, if `p <= 0`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.next_f64() < p
    }

    /// One element of `items`, or `None` (drawing nothing) when it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.index(items.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64() {
        // Reference values of SplitMix64 from seed 0 (Vigna's splitmix64.c).
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn draws_stay_in_their_ranges_and_empty_ranges_draw_nothing() {
        let mut rng = Rng::new(42);
        for _ in 0..1000 {
            assert!((5..9).contains(&rng.range(5, 9)));
            assert!((5..=9).contains(&rng.between(5, 9)));
            assert!(rng.below(3) < 3);
            assert!(rng.index(4) < 4);
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        let before = rng.clone().next_u64();
        assert_eq!(rng.range(3, 3), 3);
        assert_eq!(rng.between(3, 2), 3);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.index(0), 0);
        assert!(!rng.chance(0.0));
        assert_eq!(rng.pick::<u8>(&[]), None);
        assert_eq!(rng.next_u64(), before, "empty draws consumed nothing");
        assert!(rng.chance(1.0));
        assert_eq!(rng.pick(&[7]), Some(&7));
        rng.between(0, u64::MAX); // the full range does not overflow
    }
}
