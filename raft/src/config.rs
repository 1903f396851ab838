//! Node configuration: [`Config`] with HashiCorp raft's names and defaults,
//! plus pre-vote, check-quorum and pipelining knobs, and its validation.

use std::time::Duration;

use crate::autopilot::AutopilotConfig;
use crate::error::Error;
use crate::types::{ClusterId, ServerId};

/// Settings for one node. Start from [`Config::default`], set `local_id`, and
/// call [`Config::validate`] (which [`Raft::new`](crate::Raft::new) also does).
///
/// ```
/// use raft::{Config, ServerId};
/// let config = Config { local_id: ServerId::from("n1"), ..Config::default() };
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's permanent id. Required.
    pub local_id: ServerId,
    /// How long a follower waits without hearing from a leader before it
    /// starts an election (randomized between 1x and 2x). The leader sends
    /// heartbeats ten times per this period. Default 1s.
    pub heartbeat_timeout: Duration,
    /// How long a candidate waits for an election to finish before starting a
    /// new one (randomized between 1x and 2x). Default 1s.
    pub election_timeout: Duration,
    /// How long a leader waits, after its commit index advanced, before it
    /// sends the new commit index to followers that have not received any
    /// AppendEntries since (so they apply promptly in an idle cluster).
    /// Default 50ms.
    pub commit_timeout: Duration,
    /// Maximum entries in one AppendEntries request. Default 64, at most 1024.
    /// Requests are also cut by bytes: see `max_append_entries_bytes`.
    pub max_append_entries: usize,
    /// Maximum AppendEntries requests in flight to one follower (pipelining).
    /// Default 8.
    pub max_inflight_append_entries: usize,
    /// Hand committed commands to [`Fsm::apply_batch`](crate::Fsm::apply_batch)
    /// in batches (up to 4096 at once). When false, each command goes to
    /// [`Fsm::apply`](crate::Fsm::apply) alone. Default **true** (HashiCorp
    /// defaults to false; batching is the faster choice and `apply_batch`'s
    /// default implementation calls `apply` per entry anyway).
    pub batch_apply: bool,
    /// Entries kept in the log after a snapshot, so slightly lagging
    /// followers can catch up without a snapshot. Default 10240.
    pub trailing_logs: u64,
    /// How often to check whether to take a snapshot. Default 120s.
    pub snapshot_interval: Duration,
    /// Entries past the last snapshot that trigger a new one. Default 8192.
    pub snapshot_threshold: u64,
    /// Entries applied since the last snapshot that trigger one at once,
    /// without waiting for `snapshot_interval` (checked ten times a second;
    /// 0: never). The protocol core keeps the log since the last compaction
    /// in memory, so this bounds that memory under a high write rate, where
    /// `snapshot_interval` alone would let millions of entries pile up.
    /// Not in HashiCorp's raft. Default 1,048,576.
    pub snapshot_log_limit: u64,
    /// A leader steps down if it has not heard from a quorum within this
    /// period (when `check_quorum` is on). Default 500ms.
    pub leader_lease_timeout: Duration,
    /// Do not restore the newest snapshot when starting. Default false.
    pub no_snapshot_restore_on_start: bool,
    /// Run a pre-vote round before a real election (Raft thesis §9.6), so a
    /// node that was partitioned away cannot force the cluster to a new term.
    /// Default true.
    pub pre_vote: bool,
    /// A leader that cannot reach a quorum within `leader_lease_timeout`
    /// steps down, and voters ignore vote requests while they have a live
    /// leader. Default true.
    pub check_quorum: bool,
    /// Capacity of the queue of client requests waiting for the main task.
    /// Default 8192.
    pub max_queued_requests: usize,
    /// The cluster this node belongs to, when the operator names it. `None`
    /// (the default): the id is derived from the bootstrap configuration
    /// ([`ClusterId::derive`]) or adopted from the first leader that
    /// contacts the node. Either way it is stored in the stable store, RPCs
    /// carry it, and RPCs of another cluster are refused. Set it on a node
    /// whose store already holds another id and [`Raft::new`](crate::Raft::new)
    /// fails with [`Error::ClusterMismatch`].
    pub cluster_id: Option<ClusterId>,
    /// Byte budget of the entries in one AppendEntries request, each entry
    /// counted as its data plus
    /// [`ENTRY_OVERHEAD`](crate::transport::ENTRY_OVERHEAD). A request is
    /// cut at `max_append_entries` entries or at this many bytes, whichever
    /// comes first, and always carries at least one entry (a larger one goes
    /// alone). The node lowers it to what fits in one message of its
    /// transport ([`Transport::max_message_size`](crate::Transport::max_message_size)
    /// minus a framing margin, see
    /// [`max_entries_bytes`](crate::transport::max_entries_bytes)), so a
    /// lagging follower's catch-up batches never exceed the transport's
    /// limit. Reloadable. Not in HashiCorp's raft. Default 1 MiB (the gRPC
    /// transport's messages default to 64 MiB).
    pub max_append_entries_bytes: usize,
    /// How many bytes of entry payloads the protocol core keeps in memory
    /// (the log window): unpersisted entries always, then the newest
    /// persisted ones up to this budget. Older entries are read back from
    /// the [`LogStore`](crate::LogStore) when a lagging follower or the
    /// state machine needs them, so a node's memory does not grow with the
    /// log between snapshots. Reloadable (a smaller budget takes effect as
    /// entries are next persisted). Not in HashiCorp's raft (its `LogCache`
    /// is counted in entries). Default 64 MiB.
    pub max_log_window_bytes: usize,
    /// Flow control: the most entry bytes a leader has in flight (sent, not
    /// yet acknowledged) to one follower (etcd's `MaxInflightBytes`). A
    /// request always carries at least one entry, so progress never stops.
    /// Reloadable (applies to the next requests sent). Default 32 MiB.
    pub max_inflight_bytes: usize,
    /// Flow control: the most bytes of uncommitted entries a leader accepts;
    /// further [`Raft::apply`](crate::Raft::apply) calls wait (within their
    /// timeout) until commits make room, instead of growing memory, and
    /// fail with [`Error::EnqueueTimeout`] if
    /// none is made in time. One entry is always accepted when nothing is
    /// uncommitted. Reloadable (a larger limit lets waiting writes in at
    /// once). Default 64 MiB.
    pub max_uncommitted_bytes: usize,
    /// The bound lease reads ([`ReadPolicy::Lease`](crate::ReadPolicy::Lease))
    /// rely on: how far two nodes' monotonic clocks may disagree about the
    /// length of one `heartbeat_timeout` (clock rate differences, and any
    /// pause a node's clock does not see).
    ///
    /// A leader's lease starts when it *sends* a heartbeat round and holds
    /// once a quorum acknowledged that round; it lasts `heartbeat_timeout`
    /// minus this bound minus two ticks (rounding), because a follower that
    /// heard from a leader refuses votes for `heartbeat_timeout` (with
    /// `check_quorum`). If clocks drift by more than this, a deposed leader
    /// may serve a stale lease read. When the lease left is not positive,
    /// or `check_quorum` is off, lease reads take a ReadIndex round instead.
    ///
    /// `None` (the default): a tenth of `heartbeat_timeout`. `Some(d)` must
    /// be below `heartbeat_timeout` minus three ticks (a tick is a tenth of
    /// `heartbeat_timeout`). Not in HashiCorp's raft.
    pub max_clock_drift: Option<Duration>,
    /// Autopilot (Consul's name): server health judged by the leader,
    /// promotion of a server added with
    /// [`Raft::add_voter`](crate::Raft::add_voter) only after it has been
    /// healthy for a stabilization time, and opt-in removal of dead servers
    /// that never drops the voters below a minimum. See
    /// [`crate::autopilot`] for the rules. `None` (the default): promotion
    /// and membership behave as without it (health is still shown in
    /// [`PeerMetrics`](crate::PeerMetrics), computed with
    /// [`AutopilotConfig::default`]'s bounds, for display only). Set it on
    /// every server: whichever is leader uses its own. Not reloadable.
    pub autopilot: Option<AutopilotConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            local_id: ServerId::default(),
            heartbeat_timeout: Duration::from_millis(1000),
            election_timeout: Duration::from_millis(1000),
            commit_timeout: Duration::from_millis(50),
            max_append_entries: 64,
            max_inflight_append_entries: 8,
            batch_apply: true,
            trailing_logs: 10240,
            snapshot_interval: Duration::from_secs(120),
            snapshot_threshold: 8192,
            snapshot_log_limit: 1 << 20,
            leader_lease_timeout: Duration::from_millis(500),
            no_snapshot_restore_on_start: false,
            pre_vote: true,
            check_quorum: true,
            max_queued_requests: 8192,
            cluster_id: None,
            max_append_entries_bytes: 1024 * 1024,
            max_log_window_bytes: 64 << 20,
            max_inflight_bytes: 32 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_clock_drift: None,
            autopilot: None,
        }
    }
}

impl Config {
    /// A configuration with defaults and the given id.
    pub fn new(local_id: impl Into<ServerId>) -> Self {
        Self { local_id: local_id.into(), ..Self::default() }
    }

    /// Checks every field and returns [`Error::InvalidConfig`] naming the
    /// first problem found.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        let min = Duration::from_millis(5);
        if self.local_id.as_str().is_empty() {
            return bad("local_id must not be empty".into());
        }
        if self.heartbeat_timeout < min {
            return bad(format!("heartbeat_timeout {:?} is below the minimum 5ms", self.heartbeat_timeout));
        }
        if self.election_timeout < min {
            return bad(format!("election_timeout {:?} is below the minimum 5ms", self.election_timeout));
        }
        if self.election_timeout < self.heartbeat_timeout {
            return bad(format!(
                "election_timeout {:?} must be at least heartbeat_timeout {:?}",
                self.election_timeout, self.heartbeat_timeout
            ));
        }
        if self.commit_timeout < Duration::from_millis(1) {
            return bad("commit_timeout must be at least 1ms".into());
        }
        if self.leader_lease_timeout < min {
            return bad(format!(
                "leader_lease_timeout {:?} is below the minimum 5ms",
                self.leader_lease_timeout
            ));
        }
        if self.leader_lease_timeout > self.heartbeat_timeout {
            return bad(format!(
                "leader_lease_timeout {:?} must not exceed heartbeat_timeout {:?}",
                self.leader_lease_timeout, self.heartbeat_timeout
            ));
        }
        if self.max_append_entries == 0 || self.max_append_entries > 1024 {
            return bad(format!("max_append_entries {} must be in 1..=1024", self.max_append_entries));
        }
        if self.max_inflight_append_entries == 0 {
            return bad("max_inflight_append_entries must be at least 1".into());
        }
        if self.snapshot_interval < min {
            return bad("snapshot_interval must be at least 5ms".into());
        }
        if self.snapshot_threshold == 0 {
            return bad("snapshot_threshold must be at least 1".into());
        }
        if self.max_queued_requests == 0 {
            return bad("max_queued_requests must be at least 1".into());
        }
        if let Some(id) = &self.cluster_id {
            if let Err(why) = id.as_str().parse::<ClusterId>() {
                return bad(format!("cluster_id {:?}: {why}", id.as_str()));
            }
        }
        if self.max_append_entries_bytes == 0 {
            return bad("max_append_entries_bytes must be at least 1".into());
        }
        if self.max_log_window_bytes == 0 {
            return bad("max_log_window_bytes must be at least 1".into());
        }
        if self.max_inflight_bytes == 0 {
            return bad("max_inflight_bytes must be at least 1".into());
        }
        if self.max_uncommitted_bytes == 0 {
            return bad("max_uncommitted_bytes must be at least 1".into());
        }
        if let Some(drift) = self.max_clock_drift {
            let limit = self.heartbeat_timeout.saturating_sub(self.tick_interval() * 3);
            if drift >= limit {
                return bad(format!(
                    "max_clock_drift {drift:?} leaves no lease: it must be below heartbeat_timeout {:?} minus three ticks ({limit:?})",
                    self.heartbeat_timeout
                ));
            }
        }
        if let Some(autopilot) = &self.autopilot {
            autopilot.check(self.heartbeat_timeout, self.tick_interval()).map_err(Error::InvalidConfig)?;
        }
        Ok(())
    }

    /// Autopilot's bounds in ticks: the configured ones, or (autopilot off)
    /// [`AutopilotConfig::default`]'s, used for the health shown in the
    /// metrics only.
    pub(crate) fn autopilot_ticks(&self) -> crate::core::autopilot::AutopilotTicks {
        match &self.autopilot {
            Some(a) => a.ticks(self.tick_interval()),
            None => AutopilotConfig::default().ticks(self.tick_interval()),
        }
    }

    /// The runtime's clock tick: a tenth of the heartbeat timeout, at least 1ms.
    pub(crate) fn tick_interval(&self) -> Duration {
        (self.heartbeat_timeout / 10).max(Duration::from_millis(1))
    }

    /// The clock-drift bound in effect: [`Config::max_clock_drift`] or a
    /// tenth of `heartbeat_timeout`.
    pub fn clock_drift_bound(&self) -> Duration {
        self.max_clock_drift.unwrap_or(self.heartbeat_timeout / 10)
    }

    /// Converts the durations into the protocol core's tick counts.
    pub(crate) fn core_config(&self) -> crate::core::CoreConfig {
        let tick = self.tick_interval().as_micros().max(1);
        let ticks = |d: Duration| ((d.as_micros() / tick) as u64).max(1);
        let follower_timeout_ticks = ticks(self.heartbeat_timeout).max(2);
        // Whole ticks the drift bound covers, rounded up, plus two ticks for
        // the rounding of the leader's and the follower's tick counts.
        let drift_ticks = (self.clock_drift_bound().as_micros()).div_ceil(tick) as u64;
        let read_lease_ticks =
            if self.check_quorum { follower_timeout_ticks.saturating_sub(drift_ticks + 2) } else { 0 };
        crate::core::CoreConfig {
            heartbeat_ticks: 1,
            follower_timeout_ticks,
            read_lease_ticks,
            candidate_timeout_ticks: ticks(self.election_timeout).max(2),
            lease_ticks: ticks(self.leader_lease_timeout).max(2),
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            max_append_entries: self.max_append_entries,
            max_inflight: self.max_inflight_append_entries,
            max_append_bytes: self.max_append_entries_bytes,
            max_window_bytes: self.max_log_window_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
            max_uncommitted_bytes: self.max_uncommitted_bytes,
        }
    }

    /// [`Config::core_config`] with the AppendEntries byte budget lowered to
    /// what fits in one message of a transport whose limit is `max_message`
    /// (`None`: no limit).
    pub(crate) fn core_config_for_transport(&self, max_message: Option<usize>) -> crate::core::CoreConfig {
        let mut cfg = self.core_config();
        if let Some(max) = max_message {
            let fits = crate::transport::max_entries_bytes(max, &self.local_id);
            if fits < cfg.max_append_bytes {
                tracing::debug!(
                    configured = cfg.max_append_bytes,
                    transport_limit = max,
                    budget = fits,
                    "AppendEntries byte budget lowered to fit the transport's message limit"
                );
                cfg.max_append_bytes = fits;
            }
        }
        cfg
    }
}

/// The settings that can change while a node runs, through
/// [`Raft::reload_config`](crate::Raft::reload_config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadableConfig {
    /// See [`Config::trailing_logs`].
    pub trailing_logs: u64,
    /// See [`Config::snapshot_interval`].
    pub snapshot_interval: Duration,
    /// See [`Config::snapshot_threshold`].
    pub snapshot_threshold: u64,
    /// See [`Config::snapshot_log_limit`].
    pub snapshot_log_limit: u64,
    /// See [`Config::heartbeat_timeout`].
    pub heartbeat_timeout: Duration,
    /// See [`Config::election_timeout`].
    pub election_timeout: Duration,
    /// See [`Config::max_append_entries_bytes`].
    pub max_append_entries_bytes: usize,
    /// See [`Config::max_log_window_bytes`].
    pub max_log_window_bytes: usize,
    /// See [`Config::max_inflight_bytes`].
    pub max_inflight_bytes: usize,
    /// See [`Config::max_uncommitted_bytes`].
    pub max_uncommitted_bytes: usize,
}

impl ReloadableConfig {
    /// The reloadable part of `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            trailing_logs: config.trailing_logs,
            snapshot_interval: config.snapshot_interval,
            snapshot_threshold: config.snapshot_threshold,
            snapshot_log_limit: config.snapshot_log_limit,
            heartbeat_timeout: config.heartbeat_timeout,
            election_timeout: config.election_timeout,
            max_append_entries_bytes: config.max_append_entries_bytes,
            max_log_window_bytes: config.max_log_window_bytes,
            max_inflight_bytes: config.max_inflight_bytes,
            max_uncommitted_bytes: config.max_uncommitted_bytes,
        }
    }

    /// `config` with these settings applied.
    pub fn apply_to(&self, config: &Config) -> Config {
        Config {
            trailing_logs: self.trailing_logs,
            snapshot_interval: self.snapshot_interval,
            snapshot_threshold: self.snapshot_threshold,
            snapshot_log_limit: self.snapshot_log_limit,
            heartbeat_timeout: self.heartbeat_timeout,
            election_timeout: self.election_timeout,
            max_append_entries_bytes: self.max_append_entries_bytes,
            max_log_window_bytes: self.max_log_window_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
            max_uncommitted_bytes: self.max_uncommitted_bytes,
            ..config.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_with_id_is_valid() {
        assert!(Config::new("a").validate().is_ok());
    }

    #[test]
    fn rejects_bad_fields_with_a_message() {
        let cases: Vec<(Config, &str)> = vec![
            (Config::default(), "local_id"),
            (Config { max_append_entries: 0, ..Config::new("a") }, "max_append_entries"),
            (Config { max_append_entries: 5000, ..Config::new("a") }, "max_append_entries"),
            (Config { heartbeat_timeout: Duration::from_millis(1), ..Config::new("a") }, "heartbeat_timeout"),
            (Config { election_timeout: Duration::from_millis(10), ..Config::new("a") }, "election_timeout"),
            (
                Config { leader_lease_timeout: Duration::from_secs(5), ..Config::new("a") },
                "leader_lease_timeout",
            ),
            (Config { max_inflight_append_entries: 0, ..Config::new("a") }, "max_inflight"),
            (Config { max_append_entries_bytes: 0, ..Config::new("a") }, "max_append_entries_bytes"),
            (Config { max_log_window_bytes: 0, ..Config::new("a") }, "max_log_window_bytes"),
            (Config { max_inflight_bytes: 0, ..Config::new("a") }, "max_inflight_bytes"),
            (Config { max_uncommitted_bytes: 0, ..Config::new("a") }, "max_uncommitted_bytes"),
            (
                Config {
                    autopilot: Some(AutopilotConfig { min_quorum: 0, ..AutopilotConfig::default() }),
                    ..Config::new("a")
                },
                "autopilot.min_quorum",
            ),
            (
                Config {
                    heartbeat_timeout: Duration::from_secs(5),
                    election_timeout: Duration::from_secs(5),
                    autopilot: Some(AutopilotConfig::default()),
                    ..Config::new("a")
                },
                "autopilot.last_contact_threshold",
            ),
        ];
        for (config, needle) in cases {
            match config.validate() {
                Err(Error::InvalidConfig(msg)) => {
                    assert!(msg.contains(needle), "{msg} should mention {needle}")
                }
                other => panic!("expected InvalidConfig mentioning {needle}, got {other:?}"),
            }
        }
    }

    #[test]
    fn append_byte_budget_is_lowered_to_the_transport_limit() {
        let config = Config { max_append_entries_bytes: 1 << 20, ..Config::new("leader") };
        assert_eq!(config.core_config().max_append_bytes, 1 << 20);
        assert_eq!(config.core_config_for_transport(None).max_append_bytes, 1 << 20);
        // A roomy transport leaves the configured budget alone.
        assert_eq!(config.core_config_for_transport(Some(64 << 20)).max_append_bytes, 1 << 20);
        // A tight one lowers it to what fits after the framing margin.
        let tight = config.core_config_for_transport(Some(256 * 1024)).max_append_bytes;
        let margin =
            crate::transport::MESSAGE_OVERHEAD + crate::transport::MAX_CLUSTER_ID_LEN + "leader".len();
        assert_eq!(tight, 256 * 1024 - margin);
    }

    #[test]
    fn core_ticks_follow_the_durations() {
        let c = Config::new("a").core_config();
        assert_eq!(c.follower_timeout_ticks, 10);
        assert_eq!(c.candidate_timeout_ticks, 10);
        assert_eq!(c.lease_ticks, 5);
    }

    #[test]
    fn a_clock_drift_bound_that_leaves_no_lease_is_refused() {
        // 1 s heartbeat timeout: ticks of 100 ms; the bound must stay below
        // 1 s minus three ticks.
        for drift in [Duration::from_millis(700), Duration::from_secs(1), Duration::from_secs(5)] {
            let config = Config { max_clock_drift: Some(drift), ..Config::new("a") };
            match config.validate() {
                Err(Error::InvalidConfig(msg)) => assert!(msg.contains("max_clock_drift"), "{msg}"),
                other => panic!("{drift:?}: expected InvalidConfig naming max_clock_drift, got {other:?}"),
            }
        }
        let config = Config { max_clock_drift: Some(Duration::from_millis(699)), ..Config::new("a") };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_read_lease_is_the_follower_timeout_less_the_drift_bound_and_two_ticks() {
        // Thesis §6.4.1: the lease ends before a follower that acknowledged
        // its round can vote, however far the clocks drift within the bound.
        let lease = |config: Config| config.core_config().read_lease_ticks;
        // Defaults: 10 ticks of stickiness, a drift bound of one tick.
        assert_eq!(lease(Config::new("a")), 10 - 1 - 2);
        // A drift bound of 250 ms covers three ticks (rounded up).
        let drift = |ms| Config { max_clock_drift: Some(Duration::from_millis(ms)), ..Config::new("a") };
        assert_eq!(lease(drift(250)), 10 - 3 - 2);
        assert_eq!(lease(drift(0)), 10 - 2);
        assert!(lease(drift(600)) < lease(drift(100)));
        // No check-quorum, no stickiness, no lease.
        assert_eq!(lease(Config { check_quorum: false, ..Config::new("a") }), 0);
    }

    #[test]
    fn memory_budgets_are_reloadable_and_reach_the_core() {
        let base = Config::new("a");
        let rc = ReloadableConfig {
            max_log_window_bytes: 1000,
            max_inflight_bytes: 2000,
            max_uncommitted_bytes: 3000,
            ..ReloadableConfig::from_config(&base)
        };
        let next = rc.apply_to(&base);
        assert_eq!(ReloadableConfig::from_config(&next), rc);
        let core = next.core_config();
        assert_eq!(
            (core.max_window_bytes, core.max_inflight_bytes, core.max_uncommitted_bytes),
            (1000, 2000, 3000)
        );
    }
}
