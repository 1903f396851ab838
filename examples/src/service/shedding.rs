//! Load shedding made visible. A node that answers `503 overloaded`
//! (too many requests forwarded to the leader at once, the node's request
//! queue full, or a leader that did not take a forwarded request in time)
//! counts each one in `kv_requests_shed_total` (exported with
//! `--metrics-addr`) and logs a warning at most once per [`WARN_EVERY`],
//! with how many requests it shed since the last warning, the latest
//! reason, and what to do about it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the counter of requests answered `503 overloaded`.
pub const SHED_TOTAL: &str = "kv_requests_shed_total";

/// Least time between two warnings about shed requests.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Decides when shed requests are worth a warning: the first one, then at
/// most one warning per period, each carrying the count since the last.
#[derive(Debug)]
pub struct WarnLimiter {
    period: Duration,
    since_warning: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl WarnLimiter {
    /// A limiter that warns at most once per `period`.
    pub const fn new(period: Duration) -> Self {
        Self { period, since_warning: AtomicU64::new(0), last_warning: Mutex::new(None) }
    }

    /// Records one shed request at `now`; returns how many were shed since
    /// the last warning if a warning is due now.
    pub fn note(&self, now: Instant) -> Option<u64> {
        self.since_warning.fetch_add(1, Ordering::Relaxed);
        // Another thread deciding at this moment covers this request.
        let mut last = self.last_warning.try_lock().ok()?;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.period) {
            return None;
        }
        *last = Some(now);
        Some(self.since_warning.swap(0, Ordering::Relaxed))
    }
}

static LIMITER: WarnLimiter = WarnLimiter::new(WARN_EVERY);

/// Counts a request answered `503 overloaded` for `reason`, and warns if
/// one is due.
pub fn note_shed(reason: &str) {
    metrics::counter!(SHED_TOTAL).increment(1);
    if let Some(shed) = LIMITER.note(Instant::now()) {
        tracing::warn!(
            shed,
            latest_reason = reason,
            "this node is shedding load: requests answered 503 overloaded since the last warning. Clients \
             should retry after Retry-After; to shed less, send requests to the leader directly, raise \
             --max-forwards, or add capacity"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_shed_request_warns_then_at_most_once_per_period_with_the_count() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.note(t0), Some(1), "the first one warns at once");
        for s in 1..=5 {
            assert_eq!(limiter.note(t0 + Duration::from_secs(s)), None, "within the period");
        }
        assert_eq!(
            limiter.note(t0 + Duration::from_secs(10)),
            Some(6),
            "the next warning counts every request since the last one"
        );
        assert_eq!(limiter.note(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.note(t0 + Duration::from_secs(25)), Some(2));
    }
}
