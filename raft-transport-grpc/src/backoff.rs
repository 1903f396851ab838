//! Reconnect back-off for one peer: after each consecutive failure the peer
//! is left alone for a delay that doubles up to a cap, with random jitter so
//! a cluster whose peers all lost the same node does not retry in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The pseudo-random source for jitter: the workspace's generator,
/// [`raft::Rng`], seeded from the standard library's per-process random
/// keys (so processes do not retry in step) and shared behind a lock, taken
/// only when a peer fails. Not for cryptography.
#[derive(Debug)]
pub(crate) struct Jitter(Mutex<raft::Rng>);

impl Jitter {
    /// Creates a randomly seeded source.
    pub(crate) fn new() -> Self {
        Self(Mutex::new(raft::Rng::new(RandomState::new().hash_one(0x5eed_u64))))
    }

    /// The next pseudo-random value.
    pub(crate) fn next_u64(&self) -> u64 {
        // A panic while holding the lock cannot leave the generator invalid.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).next_u64()
    }
}

/// Back-off state of one peer.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    /// Consecutive failures since the last success.
    failures: u32,
    /// No new attempt before this instant; `None` when the peer is healthy.
    retry_at: Option<Instant>,
}

impl Backoff {
    /// A healthy peer.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, failures: 0, retry_at: None }
    }

    /// `Err(remaining)` while the peer is backed off.
    pub(crate) fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.retry_at {
            Some(at) if at > now => Err(at - now),
            _ => Ok(()),
        }
    }

    /// Records a success: the peer is healthy again.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// Records a failure and returns the delay before the next attempt:
    /// `min(initial * 2^(failures-1), max)`, then scaled by a random factor
    /// in `[0.5, 1.0]`.
    pub(crate) fn failed(&mut self, now: Instant, jitter: &Jitter) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let half = base / 2;
        let extra_nanos = match u64::try_from(half.as_nanos()) {
            Ok(0) | Err(_) => 0,
            Ok(n) => jitter.next_u64() % (n + 1),
        };
        let delay = half + Duration::from_nanos(extra_nanos);
        self.retry_at = Some(now + delay);
        delay
    }

    /// Consecutive failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_within_jitter_and_is_capped() {
        let jitter = Jitter::new();
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        let now = Instant::now();
        let mut prev_cap = Duration::ZERO;
        for i in 0..10u32 {
            let d = b.failed(now, &jitter);
            let cap = Duration::from_millis(10).saturating_mul(1 << i).min(Duration::from_millis(100));
            assert!(d >= cap / 2 && d <= cap, "failure {i}: {d:?} not in [{:?}, {cap:?}]", cap / 2);
            assert!(cap >= prev_cap);
            prev_cap = cap;
            assert!(b.check(now).is_err());
            assert!(b.check(now + d).is_ok());
        }
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert!(b.check(now).is_ok());
    }
}
