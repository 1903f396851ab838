//! The back-off of one peer task: after a failed send, nothing more is sent
//! to that peer for a while, growing exponentially (with jitter) with the
//! number of consecutive failures. Appends, votes and snapshot transfers
//! all go through the one [`Backoff`] of their peer, so a peer that fails
//! one kind of call is not hammered with the others.

use std::time::Duration;

use tokio::time::Instant;

/// The first back-off (before jitter halves it at most).
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest back-off, however many failures.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Consecutive failures of one peer and until when it is left alone.
#[derive(Debug)]
pub(super) struct Backoff {
    /// Failed sends since the last success.
    failures: u32,
    /// Nothing is sent before this instant (`None`: no back-off).
    until: Option<Instant>,
    /// Jitter source, seeded per peer.
    rng: crate::Rng,
}

impl Backoff {
    /// No failures yet; `seed` varies the jitter between peers.
    pub(super) fn new(seed: u64) -> Self {
        Self { failures: 0, until: None, rng: crate::Rng::new(seed) }
    }

    /// A send failed: the peer is left alone for `2^failures * MIN_BACKOFF`
    /// (capped at [`MAX_BACKOFF`]), of which a random half is jitter.
    pub(super) fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let exp = MIN_BACKOFF.saturating_mul(1u32 << self.failures.min(10)).min(MAX_BACKOFF);
        let jitter = Duration::from_micros(self.rng.below(exp.as_micros() as u64 / 2 + 1));
        self.until = Some(Instant::now() + exp / 2 + jitter);
    }

    /// A send succeeded: the failures are forgotten.
    pub(super) fn succeeded(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    /// Whether sends to the peer are held back now.
    pub(super) fn active(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }

    /// When the current back-off ends (`None`: none is under way).
    pub(super) fn until(&self) -> Option<Instant> {
        self.until.filter(|t| Instant::now() < *t)
    }

    /// Failed sends since the last success.
    #[cfg(test)]
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_with_failures_up_to_the_cap_and_a_success_clears_it() {
        let mut b = Backoff::new(7);
        assert!(!b.active());
        assert_eq!(b.until(), None);
        let mut last = Duration::ZERO;
        for n in 1..=12u32 {
            b.failed();
            let wait = b.until().expect("backing off") - Instant::now();
            let exp = MIN_BACKOFF.saturating_mul(1 << n.min(10)).min(MAX_BACKOFF);
            assert!(
                wait >= exp / 2 && wait <= exp,
                "failure {n}: waits {wait:?}, expected {:?}..={exp:?}",
                exp / 2
            );
            if exp < MAX_BACKOFF {
                assert!(wait >= last, "failure {n}: {wait:?} shorter than the previous {last:?}");
            }
            last = wait;
        }
        assert_eq!(b.failures(), 12);
        tokio::time::advance(MAX_BACKOFF).await;
        assert!(!b.active(), "a back-off ends");
        b.failed();
        assert!(b.active());
        b.succeeded();
        assert!(!b.active());
        assert_eq!(b.failures(), 0);
    }
}
