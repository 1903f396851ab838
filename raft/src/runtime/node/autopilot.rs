//! Autopilot for the main task ([`crate::autopilot`] has the rules a user
//! sees): once per tick the leader records every follower's health from
//! the core's replication progress, gates `add_voter` promotions on the
//! stabilization time, and (opt-in) removes one dead server at a time.
//!
//! The rules themselves are pure functions in ticks in the core's
//! `autopilot` module; this file converts, acts and logs. With
//! [`Config::autopilot`] `None` only the health record runs (for the
//! metrics); promotions and the configuration are untouched.

use super::*;
use crate::core::autopilot::{self as rules, Cleanup, HealthTracker};
use crate::core::CatchUp;

/// The main task's autopilot state.
#[derive(Default)]
pub(super) struct Autopilot {
    /// Every follower's health as this leader sees it.
    pub(super) tracker: HealthTracker,
    /// Dead voters a rule keeps, already warned about in `warned_term`.
    warned: HashSet<ServerId>,
    /// The term of those warnings.
    warned_term: u64,
}

impl<R: Send + 'static> Node<R> {
    /// Once per tick, after the core's tick: records the followers' health
    /// (on the leader) and, with cleanup on, removes a dead server.
    pub(super) fn autopilot_tick(&mut self) {
        if !self.core.is_leader() {
            self.autopilot.tracker.clear();
            return;
        }
        let bounds = self.config.autopilot_ticks();
        let peers = self.core.peer_progress();
        self.autopilot.tracker.observe(self.core.term(), self.core.last_index(), &peers, &bounds);
        if self.config.autopilot.as_ref().is_some_and(|a| a.cleanup_dead_servers) {
            self.cleanup_dead_servers(&bounds);
        }
    }

    /// Where a server being added as a voter stands: the core's catch-up
    /// rule and, with autopilot on, the stabilization time.
    pub(super) fn promotion_status(&self, id: &ServerId, after_index: u64) -> CatchUp {
        let status = self.core.catch_up(id, after_index);
        if self.config.autopilot.is_none() {
            return status;
        }
        let bounds = self.config.autopilot_ticks();
        rules::stabilized(status, rules::stability(self.autopilot.tracker.health(id), &bounds))
    }

    /// Removes the dead server the rules pick, if any, one at a time and
    /// only while no other configuration change is under way; warns once
    /// per leadership about a dead voter a rule keeps.
    fn cleanup_dead_servers(&mut self, bounds: &rules::AutopilotTicks) {
        let term = self.core.term();
        if self.autopilot.warned_term != term {
            self.autopilot.warned.clear();
            self.autopilot.warned_term = term;
        }
        let (config, index) = self.core.configuration();
        if self.membership.joint.is_some() || config.is_joint() || index > self.core.commit_index() {
            return;
        }
        let promoting: Vec<ServerId> = self.membership.promotions.iter().map(|p| p.id.clone()).collect();
        let decision = rules::dead_server(config, self.id(), &self.autopilot.tracker, bounds, &promoting);
        let tick = self.config.tick_interval();
        let after = self.config.autopilot.as_ref().map(|a| a.dead_server_after).unwrap_or_default();
        match decision {
            None => {}
            Some(Cleanup::Remove { id, voter, silent_ticks }) => {
                let silent_for = tick * silent_ticks.min(u32::MAX as u64) as u32;
                let suffrage = if voter { "voter" } else { "non-voter" };
                match self.membership_change(MembershipChange::RemoveServer(id.clone())) {
                    Ok(index) => tracing::warn!(
                        server = %id,
                        suffrage,
                        ?silent_for,
                        dead_server_after = ?after,
                        index,
                        "autopilot removed a dead server: it has not answered the leader for longer than \
                         dead_server_after; to bring it back, wipe its data directory and add it again"
                    ),
                    Err(e) => {
                        tracing::debug!(server = %id, error = %e, "autopilot could not remove a dead server yet")
                    }
                }
            }
            // Warned about once per leadership.
            Some(Cleanup::Held { id, silent_ticks, reason }) if self.autopilot.warned.insert(id.clone()) => {
                let silent_for = tick * silent_ticks.min(u32::MAX as u64) as u32;
                tracing::warn!(
                    server = %id,
                    ?silent_for,
                    reason = %reason,
                    "autopilot is not removing a dead voter: {reason}; bring it back, or add a \
                     replacement and then remove it"
                );
            }
            Some(Cleanup::Held { .. }) => {}
        }
    }
}
