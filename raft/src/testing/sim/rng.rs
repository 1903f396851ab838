//! [`SimRng`]: the simulation's seeded random source, so a run replays
//! exactly from its seed. It is the workspace's one generator,
//! [`Rng`](crate::Rng), with a seed of its own so its draws do not follow
//! any other generator's of the same run.

use std::ops::{Deref, DerefMut};

use crate::core::rng::Rng;

/// The simulation's generator: an [`Rng`] with every draw it offers.
#[derive(Clone, Debug)]
pub(crate) struct SimRng(Rng);

impl SimRng {
    /// A generator whose whole output is determined by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(Rng::new(seed ^ 0x00BD_DA1E_A222_0000))
    }
}

impl Deref for SimRng {
    type Target = Rng;

    fn deref(&self) -> &Rng {
        &self.0
    }
}

impl DerefMut for SimRng {
    fn deref_mut(&mut self) -> &mut Rng {
        &mut self.0
    }
}
