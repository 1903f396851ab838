//! The main task's tick clock: the number of ticks the protocol core has
//! been given is derived from the monotonic clock
//! ([`tokio::time::Instant`]), not from how often the loop got to run.
//!
//! A leader's read lease is counted in its ticks. A tokio interval that
//! skips the ticks a stalled loop missed (`MissedTickBehavior::Delay`)
//! would let the leader's tick count fall behind real time and stretch its
//! lease past the point where followers may elect someone else. Instead,
//! every whole tick elapsed since the clock started is delivered: when the
//! loop wakes late it catches up all the ticks it missed, and a lease read
//! first delivers any tick that is due (see `Node::deliver_due_ticks`).
//!
//! After a very long stall (a suspended process) at most
//! [`TickClock::max_catch_up`] ticks are delivered at once: more would
//! change nothing (every timeout and lease has run out by then) but cost
//! work.

use tokio::time::{Duration, Instant};

/// Counts the ticks due since a start instant.
#[derive(Debug, Clone)]
pub(super) struct TickClock {
    /// When tick 0 was (the clock's start, or the last interval change).
    start: Instant,
    /// The tick interval.
    interval: Duration,
    /// Ticks delivered since `start`.
    delivered: u64,
    /// Most ticks delivered at once.
    max_catch_up: u64,
}

impl TickClock {
    /// A clock ticking every `interval` from `now`; at most `max_catch_up`
    /// ticks (at least 1) are delivered at once.
    pub(super) fn new(now: Instant, interval: Duration, max_catch_up: u64) -> Self {
        let interval = interval.max(Duration::from_micros(1));
        Self { start: now, interval, delivered: 0, max_catch_up: max_catch_up.max(1) }
    }

    /// The most ticks delivered at once after a long stall.
    pub(super) fn max_catch_up(&self) -> u64 {
        self.max_catch_up
    }

    /// Whole ticks elapsed at `now` since the start.
    fn elapsed_ticks(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(elapsed / self.interval.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The ticks due at `now` that were not delivered yet (capped at
    /// [`TickClock::max_catch_up`]); they count as delivered once returned.
    pub(super) fn take_due(&mut self, now: Instant) -> u64 {
        let total = self.elapsed_ticks(now);
        let due = total.saturating_sub(self.delivered);
        self.delivered = self.delivered.max(total);
        due.min(self.max_catch_up)
    }

    /// When the next tick is due.
    pub(super) fn next_at(&self) -> Instant {
        self.instant_after(1)
    }

    /// When the `ticks`-th tick after those delivered so far is due: a
    /// count the core keeps in its ticks (a lease's remaining ticks) runs
    /// out at this instant.
    pub(super) fn instant_after(&self, ticks: u64) -> Instant {
        let nanos = self
            .interval
            .as_nanos()
            .saturating_mul(u128::from(self.delivered).saturating_add(u128::from(ticks)));
        let offset = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.start.checked_add(offset).unwrap_or_else(|| self.start + Duration::from_secs(86_400 * 365))
    }

    /// Starts over at `now` with a new interval (a configuration reload).
    pub(super) fn restart(&mut self, now: Instant, interval: Duration) {
        *self = Self::new(now, interval, self.max_catch_up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_whole_tick_elapsed_is_delivered_even_after_a_stall() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, Duration::from_millis(10), 1000);
        assert_eq!(clock.take_due(Instant::now()), 0);
        assert_eq!(clock.next_at(), start + Duration::from_millis(10));
        // The loop stalls for 35ms: three ticks are due at once, none lost.
        tokio::time::advance(Duration::from_millis(35)).await;
        assert_eq!(clock.take_due(Instant::now()), 3);
        assert_eq!(clock.take_due(Instant::now()), 0, "a tick is delivered once");
        assert_eq!(clock.next_at(), start + Duration::from_millis(40));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(clock.take_due(Instant::now()), 1);
        // Ticks stay aligned to the start, not to when the loop woke.
        assert_eq!(clock.next_at(), start + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_of_ticks_ends_when_its_last_tick_is_due_whatever_was_delivered() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, Duration::from_millis(10), 1000);
        assert_eq!(clock.instant_after(3), start + Duration::from_millis(30));
        // 25ms late, two ticks delivered: three more end at tick 5.
        tokio::time::advance(Duration::from_millis(25)).await;
        assert_eq!(clock.take_due(Instant::now()), 2);
        assert_eq!(clock.instant_after(3), start + Duration::from_millis(50));
        assert_eq!(clock.instant_after(0), start + Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_very_long_stall_delivers_at_most_the_catch_up_bound() {
        let mut clock = TickClock::new(Instant::now(), Duration::from_millis(1), 50);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(clock.take_due(Instant::now()), 50);
        assert_eq!(clock.take_due(Instant::now()), 0);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(clock.take_due(Instant::now()), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_changes_the_interval_from_now() {
        let mut clock = TickClock::new(Instant::now(), Duration::from_millis(10), 100);
        tokio::time::advance(Duration::from_millis(25)).await;
        assert_eq!(clock.take_due(Instant::now()), 2);
        let now = Instant::now();
        clock.restart(now, Duration::from_millis(4));
        assert_eq!(clock.next_at(), now + Duration::from_millis(4));
        tokio::time::advance(Duration::from_millis(9)).await;
        assert_eq!(clock.take_due(Instant::now()), 2);
    }
}
