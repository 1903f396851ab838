//! Autopilot: opt-in server health, stabilization before promotion and
//! dead-server cleanup, in the manner of Consul's autopilot. Turn it on
//! with [`Config::autopilot`](crate::Config::autopilot) on every server
//! (only the leader acts on it; a server that becomes leader uses its own
//! settings).
//!
//! # Health
//! The leader judges each server **healthy** when it answered within
//! [`AutopilotConfig::last_contact_threshold`] and its match index is at
//! most [`AutopilotConfig::max_trailing_logs`] entries behind the leader's
//! last index (Consul's `LastContactThreshold` and `MaxTrailingLogs`). A
//! server that never acknowledged an entry is not healthy; the leader
//! itself always is. Last contact is measured in the node's ticks (a tenth
//! of `heartbeat_timeout`), as [`PeerMetrics::last_contact`] shows it.
//!
//! Health is published on the leader in [`Metrics::peers`]:
//! [`PeerMetrics::healthy`], [`PeerMetrics::healthy_for`] (how long without
//! a break) and [`PeerMetrics::lag`], and in [`Raft::stats`] as
//! `autopilot_healthy` (every server healthy), `autopilot_failure_tolerance`
//! (healthy voters beyond a majority) and per server
//! `peer.<id>.healthy` / `peer.<id>.lag`. With autopilot off the same
//! figures are computed with [`AutopilotConfig::default`]'s bounds, for
//! display only: nothing acts on them.
//!
//! # Stabilization
//! [`Raft::add_voter`] adds a server as a non-voter and promotes it once it
//! has caught up (thesis §4.2.1). With autopilot on it is promoted only
//! once it has also been healthy **without a break** for
//! [`AutopilotConfig::server_stabilization_time`] (Consul's
//! `ServerStabilizationTime`): a server that keeps dropping out is not
//! made a voter. Becoming unhealthy restarts the count. The call's timeout
//! still applies: if the server is not promoted in time the call fails with
//! [`Error::CatchUpTimeout`] and the server stays a non-voter. While it
//! waits, [`CatchUp::Stabilizing`] describes it (in the in-progress error
//! other changes get).
//!
//! # Dead-server cleanup
//! With [`AutopilotConfig::cleanup_dead_servers`] on, the leader removes a
//! server that has not answered for [`AutopilotConfig::dead_server_after`]
//! (Consul's `CleanupDeadServers`), one at a time, dead non-voters first.
//! A dead voter is removed only if the voters left would number at least
//! [`AutopilotConfig::min_quorum`] (Consul's `MinQuorum`) and a majority
//! of them is healthy, so cleanup never shrinks a cluster below the size
//! the operator asked for and never proposes a configuration that could
//! not commit. It never removes the leader itself, leaves a server being
//! promoted by `add_voter` to its promotion, and waits while another
//! configuration change is under way. Every removal is logged at WARN with
//! the reason; a dead voter kept by one of the rules is logged at WARN once
//! per leadership, naming the rule.
//!
//! A removed server learns it was removed (it moves to
//! [`RaftState::Removed`](crate::RaftState::Removed) when it comes back);
//! to bring it back, wipe its data directory and add it again.
//!
//! [`PeerMetrics::last_contact`]: crate::PeerMetrics::last_contact
//! [`PeerMetrics::healthy`]: crate::PeerMetrics::healthy
//! [`PeerMetrics::healthy_for`]: crate::PeerMetrics::healthy_for
//! [`PeerMetrics::lag`]: crate::PeerMetrics::lag
//! [`Metrics::peers`]: crate::Metrics::peers
//! [`Raft::stats`]: crate::Raft::stats
//! [`Raft::add_voter`]: crate::Raft::add_voter
//! [`Error::CatchUpTimeout`]: crate::Error::CatchUpTimeout
//! [`CatchUp::Stabilizing`]: crate::CatchUp::Stabilizing

use std::time::Duration;

use crate::core::autopilot::AutopilotTicks;

/// Autopilot's settings ([`Config::autopilot`](crate::Config::autopilot)).
/// See the [module docs](self) for what each rule does.
///
/// ```
/// use std::time::Duration;
/// use raft::{AutopilotConfig, Config};
/// let config = Config {
///     autopilot: Some(AutopilotConfig {
///         cleanup_dead_servers: true,
///         dead_server_after: Duration::from_secs(60),
///         ..AutopilotConfig::default()
///     }),
///     ..Config::new("n1")
/// };
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutopilotConfig {
    /// A server is unhealthy when it has not answered the leader for longer
    /// than this. Measured in ticks (a tenth of `heartbeat_timeout`): it
    /// must be at least one tick, and a value of one tick is strict (the
    /// leader sends a heartbeat every tick). Default 200 ms (two ticks at
    /// the default `heartbeat_timeout` of 1 s, as Consul's default is two
    /// heartbeat intervals).
    pub last_contact_threshold: Duration,
    /// A server is unhealthy when its match index is more than this many
    /// entries behind the leader's last index. Default 250.
    pub max_trailing_logs: u64,
    /// How long a server added with `add_voter` must have been healthy,
    /// without a break, before it is promoted to voter. Default 10 s.
    pub server_stabilization_time: Duration,
    /// Remove dead servers automatically (see
    /// [`dead_server_after`](Self::dead_server_after) and
    /// [`min_quorum`](Self::min_quorum)). Default false.
    pub cleanup_dead_servers: bool,
    /// How long a server must have gone without answering the leader to
    /// count as dead. Long enough to ride out a restart of its process;
    /// it must be at least `heartbeat_timeout` and above
    /// `last_contact_threshold`. The silence is counted by the current
    /// leader, so it starts over after an election. Default 30 s.
    pub dead_server_after: Duration,
    /// Cleanup never removes a voter if fewer voters than this would be
    /// left. At least 1. Default 3.
    pub min_quorum: usize,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        Self {
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            server_stabilization_time: Duration::from_secs(10),
            cleanup_dead_servers: false,
            dead_server_after: Duration::from_secs(30),
            min_quorum: 3,
        }
    }
}

impl AutopilotConfig {
    /// Checks the settings against the node's `heartbeat_timeout` and its
    /// `tick` (a tenth of it); the message names the field.
    pub(crate) fn check(&self, heartbeat_timeout: Duration, tick: Duration) -> Result<(), String> {
        if self.last_contact_threshold < tick {
            return Err(format!(
                "autopilot.last_contact_threshold {:?} is below one tick ({tick:?}, a tenth of heartbeat_timeout \
                 {heartbeat_timeout:?}): last contact is measured in ticks, so no server could be healthy",
                self.last_contact_threshold
            ));
        }
        if self.dead_server_after < heartbeat_timeout || self.dead_server_after <= self.last_contact_threshold
        {
            return Err(format!(
                "autopilot.dead_server_after {:?} must be at least heartbeat_timeout {heartbeat_timeout:?} and \
                 above autopilot.last_contact_threshold {:?}",
                self.dead_server_after, self.last_contact_threshold
            ));
        }
        if self.min_quorum == 0 {
            return Err("autopilot.min_quorum must be at least 1".into());
        }
        Ok(())
    }

    /// The bounds in ticks of `tick`: the contact bound rounded down (at
    /// least one tick), the stabilization and dead-server times rounded up.
    pub(crate) fn ticks(&self, tick: Duration) -> AutopilotTicks {
        let tick = tick.as_micros().max(1);
        let down = |d: Duration| (d.as_micros() / tick) as u64;
        let up = |d: Duration| d.as_micros().div_ceil(tick) as u64;
        AutopilotTicks {
            contact_ticks: down(self.last_contact_threshold).max(1),
            max_trailing_logs: self.max_trailing_logs,
            stabilization_ticks: up(self.server_stabilization_time),
            dead_ticks: up(self.dead_server_after).max(1),
            min_quorum: self.min_quorum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_ticks() {
        let t = AutopilotConfig::default().ticks(Duration::from_millis(100));
        assert_eq!(
            t,
            AutopilotTicks {
                contact_ticks: 2,
                max_trailing_logs: 250,
                stabilization_ticks: 100,
                dead_ticks: 300,
                min_quorum: 3
            }
        );
        let odd = AutopilotConfig {
            last_contact_threshold: Duration::from_millis(250),
            server_stabilization_time: Duration::from_millis(250),
            ..AutopilotConfig::default()
        };
        let t = odd.ticks(Duration::from_millis(100));
        assert_eq!((t.contact_ticks, t.stabilization_ticks), (2, 3), "contact rounds down, time up");
    }

    #[test]
    fn checks_name_the_field() {
        let hb = Duration::from_secs(1);
        let tick = Duration::from_millis(100);
        assert!(AutopilotConfig::default().check(hb, tick).is_ok());
        let cases = [
            (
                AutopilotConfig { last_contact_threshold: Duration::from_millis(99), ..Default::default() },
                "last_contact_threshold",
            ),
            (
                AutopilotConfig { dead_server_after: Duration::from_millis(999), ..Default::default() },
                "dead_server_after",
            ),
            (
                AutopilotConfig {
                    last_contact_threshold: Duration::from_secs(2),
                    dead_server_after: Duration::from_secs(2),
                    ..Default::default()
                },
                "dead_server_after",
            ),
            (AutopilotConfig { min_quorum: 0, ..Default::default() }, "min_quorum"),
        ];
        for (c, field) in cases {
            let err = c.check(hb, tick).expect_err(field);
            assert!(err.contains(field), "{err} names {field}");
        }
    }
}
