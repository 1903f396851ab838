//! The promotion policy: when a server being added as a voter has caught up
//! enough to be made one (Raft thesis §4.2.1: a new server joins as a
//! non-voter and becomes a voter only once it can keep up, so adding it
//! never makes commits wait for a server that is copying the log, or for
//! one that never answers).
//!
//! The rule is a pure function of the leader's view of the server and the
//! configuration that added it; the runtime asks [`Core::catch_up`] and
//! promotes only on [`CatchUp::Ready`].

use std::fmt;

use super::autopilot::Stability;
use super::{Core, PeerProgress};
use crate::types::ServerId;

/// Where a server being added as a voter stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// It may be promoted now.
    Ready,
    /// The configuration that added it as a non-voter is not committed yet.
    NotCommitted {
        /// The index of that configuration.
        added_at: u64,
        /// The leader's commit index.
        commit: u64,
    },
    /// It has not acknowledged the entries it must hold: at least the
    /// configuration that added it, and everything up to within `margin`
    /// of the leader's last index.
    Behind {
        /// The highest index it acknowledged (0: none).
        matched: u64,
        /// The index it must reach.
        needed: u64,
    },
    /// It acknowledged enough once, but has not answered within the last
    /// election timeout.
    Silent {
        /// Ticks since it last answered.
        ticks_since_contact: u64,
        /// The most ticks allowed (an election timeout).
        limit: u64,
    },
    /// This node is not the leader, or has no progress for the server
    /// (it is not in the configuration).
    Unknown,
    /// (Autopilot, [`Config::autopilot`](crate::Config::autopilot)) it
    /// caught up, but has not yet been healthy without a break for the
    /// server stabilization time; becoming unhealthy restarts the count.
    Stabilizing {
        /// Whether it is healthy now (answered within the last-contact
        /// threshold and is within `max_trailing_logs` of the leader).
        healthy: bool,
        /// Ticks it has been healthy without a break (0 when unhealthy).
        healthy_ticks: u64,
        /// Ticks of health the stabilization time requires.
        needed_ticks: u64,
    },
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatchUp::Ready => write!(f, "caught up"),
            CatchUp::NotCommitted { added_at, commit } => {
                write!(f, "its configuration at index {added_at} is not committed yet (commit index {commit})")
            }
            CatchUp::Behind { matched, needed } => {
                write!(f, "catching up: match index {matched}, needs {needed}")
            }
            CatchUp::Silent { ticks_since_contact, limit } => write!(
                f,
                "has not answered for {ticks_since_contact} ticks (more than an election timeout, {limit} ticks)"
            ),
            CatchUp::Unknown => write!(f, "no replication progress for it on this node"),
            CatchUp::Stabilizing { healthy: true, healthy_ticks, needed_ticks } => write!(
                f,
                "caught up; autopilot stabilization: healthy for {healthy_ticks} of the {needed_ticks} ticks required"
            ),
            CatchUp::Stabilizing { healthy: false, needed_ticks, .. } => write!(
                f,
                "caught up but unhealthy by autopilot's bounds (last contact or lag too high); \
                 it must stay healthy for {needed_ticks} ticks"
            ),
        }
    }
}

/// What the decision depends on besides the server's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PromotionBounds {
    /// The index of the configuration entry that added it as a non-voter.
    pub(crate) added_at: u64,
    /// The leader's commit index.
    pub(crate) commit: u64,
    /// The leader's last log index.
    pub(crate) last_index: u64,
    /// How many entries behind the leader's last index it may still be.
    pub(crate) margin: u64,
    /// Ticks in an election timeout: it must have answered within them.
    pub(crate) contact_ticks: u64,
}

/// Decides whether a server may be promoted: the configuration that added
/// it is committed, it acknowledged that configuration's entry and is
/// within `margin` of the leader's last index, and it answered within the
/// last election timeout. A match index of 0 never counts as caught up,
/// however short the log.
pub(crate) fn check(progress: Option<&PeerProgress>, b: &PromotionBounds) -> CatchUp {
    let Some(p) = progress else { return CatchUp::Unknown };
    if b.commit < b.added_at {
        return CatchUp::NotCommitted { added_at: b.added_at, commit: b.commit };
    }
    let needed = b.added_at.max(b.last_index.saturating_sub(b.margin)).max(1);
    if p.matched < needed {
        return CatchUp::Behind { matched: p.matched, needed };
    }
    if p.ticks_since_contact >= b.contact_ticks {
        return CatchUp::Silent { ticks_since_contact: p.ticks_since_contact, limit: b.contact_ticks };
    }
    CatchUp::Ready
}

/// With autopilot on: a caught-up server (`status` is [`CatchUp::Ready`])
/// is ready only once it has been healthy for the stabilization time;
/// any other status is returned unchanged.
pub(crate) fn stabilized(status: CatchUp, stability: Stability) -> CatchUp {
    match (status, stability) {
        (CatchUp::Ready, Stability::Unstable { healthy, healthy_ticks, needed }) => {
            CatchUp::Stabilizing { healthy, healthy_ticks, needed_ticks: needed }
        }
        (status, _) => status,
    }
}

impl Core {
    /// (Leader) Whether `id`, added as a non-voter by the configuration at
    /// `added_at`, has caught up enough to be promoted to voter. The margin
    /// is one pipeline window (`max_append_entries * max_inflight`) and the
    /// contact window one election timeout.
    pub fn catch_up(&self, id: &ServerId, added_at: u64) -> CatchUp {
        let progress = self.peer_progress().into_iter().find(|p| &p.id == id);
        let bounds = PromotionBounds {
            added_at,
            commit: self.commit_index(),
            last_index: self.last_index(),
            margin: (self.cfg.max_append_entries as u64).saturating_mul(self.cfg.max_inflight as u64),
            contact_ticks: self.cfg.candidate_timeout_ticks,
        };
        check(progress.as_ref(), &bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(matched: u64, ticks_since_contact: u64) -> PeerProgress {
        PeerProgress { id: "n4".into(), matched, next: matched + 1, ticks_since_contact }
    }

    fn bounds(added_at: u64, commit: u64, last_index: u64) -> PromotionBounds {
        PromotionBounds { added_at, commit, last_index, margin: 512, contact_ticks: 10 }
    }

    // Thesis §4.2.1: a server that never answered has match index 0; a short
    // log must not make that look "within the margin".
    #[test]
    fn a_server_that_never_answered_is_not_caught_up_on_a_short_log() {
        let b = bounds(5, 5, 6);
        assert_eq!(check(Some(&progress(0, 0)), &b), CatchUp::Behind { matched: 0, needed: 5 });
        assert_eq!(check(Some(&progress(0, 3)), &b), CatchUp::Behind { matched: 0, needed: 5 });
    }

    #[test]
    fn it_must_hold_the_configuration_that_added_it() {
        let b = bounds(5, 6, 6);
        assert_eq!(check(Some(&progress(4, 0)), &b), CatchUp::Behind { matched: 4, needed: 5 });
        assert_eq!(check(Some(&progress(5, 0)), &b), CatchUp::Ready);
    }

    #[test]
    fn on_a_long_log_it_must_be_within_the_margin_of_the_last_index() {
        let b = bounds(100, 1000, 2000);
        assert_eq!(check(Some(&progress(1487, 0)), &b), CatchUp::Behind { matched: 1487, needed: 1488 });
        assert_eq!(check(Some(&progress(1488, 0)), &b), CatchUp::Ready);
    }

    #[test]
    fn it_must_have_answered_within_an_election_timeout() {
        let b = bounds(5, 5, 6);
        assert_eq!(check(Some(&progress(6, 10)), &b), CatchUp::Silent { ticks_since_contact: 10, limit: 10 });
        assert_eq!(check(Some(&progress(6, 9)), &b), CatchUp::Ready);
    }

    #[test]
    fn not_before_the_configuration_that_added_it_is_committed() {
        let b = bounds(5, 4, 6);
        assert_eq!(check(Some(&progress(6, 0)), &b), CatchUp::NotCommitted { added_at: 5, commit: 4 });
    }

    #[test]
    fn with_autopilot_a_caught_up_server_waits_for_stabilization() {
        let unstable = Stability::Unstable { healthy: true, healthy_ticks: 3, needed: 10 };
        assert_eq!(
            stabilized(CatchUp::Ready, unstable),
            CatchUp::Stabilizing { healthy: true, healthy_ticks: 3, needed_ticks: 10 }
        );
        assert_eq!(stabilized(CatchUp::Ready, Stability::Stable), CatchUp::Ready);
        // Not caught up: the catch-up status says why, whatever the health.
        let behind = CatchUp::Behind { matched: 1, needed: 5 };
        assert_eq!(stabilized(behind, unstable), behind);
    }

    #[test]
    fn no_progress_means_unknown() {
        assert_eq!(check(None, &bounds(5, 5, 6)), CatchUp::Unknown);
    }
}
