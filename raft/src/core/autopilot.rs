//! Autopilot's rules in ticks: server health as the leader sees it, how
//! long a server has been healthy without a break (stabilization), and
//! which dead server, if any, may be removed (dead-server cleanup).
//!
//! The rules follow Consul's autopilot:
//! - a server is **healthy** when it answered within the last-contact bound
//!   and its match index is within `max_trailing_logs` of the leader's last
//!   index (a server that never acknowledged anything is not healthy; the
//!   leader itself always is);
//! - a server added with `add_voter` is promoted only once it has been
//!   healthy **continuously** for the stabilization time: becoming
//!   unhealthy restarts the count;
//! - a server is **dead** once it has not answered for the dead-server
//!   bound. Cleanup removes one dead server at a time, non-voters first;
//!   a voter only if the voters left would still number at least
//!   `min_quorum` and a majority of them is healthy. The leader never
//!   removes itself.
//!
//! Everything here is a pure function of the leader's replication progress
//! ([`PeerProgress`]) counted in ticks; the runtime feeds a
//! [`HealthTracker`] once per tick, converts durations to ticks, and acts
//! on the decisions (see `runtime::node::autopilot`).

use std::collections::BTreeMap;
use std::fmt;

pub(crate) use super::promotion::stabilized;
use super::PeerProgress;
use crate::types::{Configuration, ServerId, Suffrage};

/// Autopilot's bounds in the leader's ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AutopilotTicks {
    /// Healthy only if it answered within this many ticks.
    pub(crate) contact_ticks: u64,
    /// Healthy only if at most this many entries behind the leader's last index.
    pub(crate) max_trailing_logs: u64,
    /// Ticks of uninterrupted health before a promotion.
    pub(crate) stabilization_ticks: u64,
    /// Ticks without an answer after which a server counts as dead.
    pub(crate) dead_ticks: u64,
    /// Voters never removed below this count.
    pub(crate) min_quorum: usize,
}

/// Whether a server is healthy: it acknowledged something, answered within
/// `contact_ticks`, and is at most `max_trailing_logs` entries behind.
pub(crate) fn is_healthy(p: &PeerProgress, last_index: u64, b: &AutopilotTicks) -> bool {
    p.matched > 0
        && p.ticks_since_contact <= b.contact_ticks
        && last_index.saturating_sub(p.matched) <= b.max_trailing_logs
}

/// One server's health as the leader last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Health {
    /// Healthy at the last observation.
    pub(crate) healthy: bool,
    /// Ticks it has been healthy without a break (0 when unhealthy, or at
    /// the first healthy observation).
    pub(crate) healthy_ticks: u64,
    /// Entries behind the leader's last index.
    pub(crate) lag: u64,
    /// Ticks since it last answered.
    pub(crate) silent_ticks: u64,
}

/// What the tracker keeps per server.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    /// The observation at which it became healthy (`None`: unhealthy).
    healthy_since: Option<u64>,
    /// Entries behind at the last observation.
    lag: u64,
    /// Ticks since it last answered, at the last observation.
    silent_ticks: u64,
}

/// The leader's record of every follower's health, fed once per tick.
///
/// It starts over when the term changes (a new leadership: the new
/// leader's progress starts over too) and forgets servers that leave the
/// leader's progress (removed from the configuration).
#[derive(Debug, Default)]
pub(crate) struct HealthTracker {
    /// The term of the leadership observed.
    term: u64,
    /// Observations made in this term.
    now: u64,
    /// Per follower.
    servers: BTreeMap<ServerId, Tracked>,
}

impl HealthTracker {
    /// Records one tick's view of the leader (`term`, `last_index`) and its
    /// followers' progress.
    pub(crate) fn observe(&mut self, term: u64, last_index: u64, peers: &[PeerProgress], b: &AutopilotTicks) {
        if term != self.term {
            self.servers.clear();
            self.term = term;
            self.now = 0;
        }
        self.now += 1;
        self.servers.retain(|id, _| peers.iter().any(|p| &p.id == id));
        for p in peers {
            let healthy = is_healthy(p, last_index, b);
            let now = self.now;
            let t = self.servers.entry(p.id.clone()).or_insert(Tracked {
                healthy_since: None,
                lag: 0,
                silent_ticks: 0,
            });
            t.lag = last_index.saturating_sub(p.matched);
            t.silent_ticks = p.ticks_since_contact;
            t.healthy_since = match (healthy, t.healthy_since) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
            };
        }
    }

    /// Forgets everything (this node is not the leader).
    pub(crate) fn clear(&mut self) {
        self.servers.clear();
        self.now = 0;
        self.term = 0;
    }

    /// The health of follower `id`, if observed this term.
    pub(crate) fn health(&self, id: &ServerId) -> Option<Health> {
        self.servers.get(id).map(|t| Health {
            healthy: t.healthy_since.is_some(),
            healthy_ticks: t.healthy_since.map_or(0, |since| self.now - since),
            lag: t.lag,
            silent_ticks: t.silent_ticks,
        })
    }

    /// Whether `id` is healthy; `leader` (this node) always is.
    fn healthy(&self, id: &ServerId, leader: &ServerId) -> bool {
        id == leader || self.health(id).is_some_and(|h| h.healthy)
    }
}

/// Where a server being promoted stands against the stabilization time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stability {
    /// Healthy for at least the stabilization time.
    Stable,
    /// Not yet: healthy for `healthy_ticks` (0 and `healthy` false when it
    /// is unhealthy now) of the `needed` ticks.
    Unstable {
        /// Healthy at the last observation.
        healthy: bool,
        /// Ticks healthy without a break.
        healthy_ticks: u64,
        /// Ticks required.
        needed: u64,
    },
}

/// Whether a server with this health (`None`: not observed yet) has been
/// healthy for the stabilization time.
pub(crate) fn stability(health: Option<Health>, b: &AutopilotTicks) -> Stability {
    match health {
        Some(h) if h.healthy && h.healthy_ticks >= b.stabilization_ticks => Stability::Stable,
        Some(h) => Stability::Unstable {
            healthy: h.healthy,
            healthy_ticks: h.healthy_ticks,
            needed: b.stabilization_ticks,
        },
        None => Stability::Unstable { healthy: false, healthy_ticks: 0, needed: b.stabilization_ticks },
    }
}

/// A dead server autopilot found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cleanup {
    /// Remove it now.
    Remove {
        /// The server.
        id: ServerId,
        /// Whether it is a voter.
        voter: bool,
        /// Ticks since it last answered.
        silent_ticks: u64,
    },
    /// It is dead, but removing it would break a rule.
    Held {
        /// The server (a voter).
        id: ServerId,
        /// Ticks since it last answered.
        silent_ticks: u64,
        /// The rule.
        reason: HeldReason,
    },
}

/// Why a dead voter is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldReason {
    /// The voters left would be fewer than `min_quorum`.
    BelowMinQuorum {
        /// Voters after the removal.
        remaining: usize,
        /// The configured minimum.
        min_quorum: usize,
    },
    /// The voters left would not have a healthy majority.
    NoHealthyQuorum {
        /// Healthy voters after the removal (the leader included).
        healthy: usize,
        /// Voters after the removal.
        remaining: usize,
    },
}

impl fmt::Display for HeldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldReason::BelowMinQuorum { remaining, min_quorum } => {
                write!(f, "removing it would leave {remaining} voters, below min_quorum {min_quorum}")
            }
            HeldReason::NoHealthyQuorum { healthy, remaining } => {
                write!(f, "only {healthy} of the {remaining} voters left would be healthy, not a majority")
            }
        }
    }
}

/// Picks the dead server to remove, if any: a server of `config` other
/// than `leader` and `exclude` (servers being promoted) that has not
/// answered for `dead_ticks`. Non-voters come first, then voters; among
/// them the one silent longest (then by id). A voter is removed only if
/// the voters left number at least `min_quorum` and a majority of them is
/// healthy; otherwise the decision is [`Cleanup::Held`] with the reason.
/// Joint configurations are left alone (`None`).
pub(crate) fn dead_server(
    config: &Configuration,
    leader: &ServerId,
    tracker: &HealthTracker,
    b: &AutopilotTicks,
    exclude: &[ServerId],
) -> Option<Cleanup> {
    if config.is_joint() {
        return None;
    }
    let mut dead: Vec<(bool, u64, &ServerId)> = config
        .servers
        .iter()
        .filter(|s| &s.id != leader && !exclude.contains(&s.id))
        .filter_map(|s| {
            let h = tracker.health(&s.id)?;
            (h.silent_ticks >= b.dead_ticks).then_some((s.suffrage == Suffrage::Voter, h.silent_ticks, &s.id))
        })
        .collect();
    // Non-voters first, then the longest silent, then by id.
    dead.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    let (voter, silent_ticks, id) = dead.into_iter().next()?;
    if !voter {
        return Some(Cleanup::Remove { id: id.clone(), voter, silent_ticks });
    }
    let remaining: Vec<&ServerId> = config.voters().filter(|v| *v != id).collect();
    let held = |reason| Some(Cleanup::Held { id: id.clone(), silent_ticks, reason });
    if remaining.len() < b.min_quorum {
        return held(HeldReason::BelowMinQuorum { remaining: remaining.len(), min_quorum: b.min_quorum });
    }
    let healthy = remaining.iter().filter(|v| tracker.healthy(v, leader)).count();
    if healthy <= remaining.len() / 2 {
        return held(HeldReason::NoHealthyQuorum { healthy, remaining: remaining.len() });
    }
    Some(Cleanup::Remove { id: id.clone(), voter, silent_ticks })
}

#[cfg(test)]
mod tests;
