//! Joint consensus in the core (Raft paper §6, thesis §4.3): entering a
//! joint configuration C_old,new, leaving it automatically for C_new once
//! the joint entry commits, and handing leadership to a voter of C_new
//! when the leader is not one.
//!
//! Rules:
//! - **Entering.** [`Core::propose_joint`] appends C_old,new (planned by
//!   [`confchange::plan_joint`]) only on a leader whose latest
//!   configuration is committed (as for single-server changes), and only
//!   once every server that votes in C_new but not in C_old is a member
//!   that has caught up ([`Core::catch_up`]): otherwise
//!   [`ConfChangeError::NotStaged`] / [`ConfChangeError::NotCaughtUp`].
//!   The driver first commits [`JointPlan::staging`] (the new voters as
//!   non-voters) and waits for them, as `add_voter` does.
//! - **Deciding while joint.** A configuration takes effect when appended
//!   (§4.1): from then on every decision — commit, election, pre-vote,
//!   ReadIndex, check-quorum — needs a majority of the old and of the new
//!   voters ([`super::quorum::Quorum`], built from the latest
//!   configuration). Nothing here counts votes itself.
//! - **Leaving.** Whenever a leader's latest configuration is joint and
//!   committed, it appends C_new ([`Configuration::leave_joint`]) at once:
//!   after the joint entry commits, and also right after a new leader
//!   (elected while joint) commits its first entry. No other change is
//!   accepted while the latest configuration is joint.
//! - **Handing off.** A leader that is not a voter of C_new keeps leading
//!   (counted in the old half only) until C_new commits. Then it sends
//!   TimeoutNow to the most caught-up voter of C_new that holds C_new, so
//!   a voter of C_new takes over without waiting for an election timeout,
//!   and steps down (demoted) or becomes removed (removed). The same rule
//!   applies to a single-server change that demotes or removes the leader.
//! - **Restart and snapshots.** The joint state is the configuration
//!   itself (joint suffrages), carried by configuration entries and by
//!   snapshot metadata, so a node restarted mid-change, or caught up by a
//!   snapshot, resumes it: if it becomes leader it leaves the joint
//!   configuration as above.

use super::confchange::{self, ConfChange, ConfChangeError, JointPlan};
use super::{Body, CatchUp, Core, Refusal, Role};
use crate::message::TimeoutNowRequest;
use crate::types::{Configuration, ServerId};

impl Core {
    /// Plans a joint change of the latest configuration (pure: appends
    /// nothing). See [`confchange::plan_joint`].
    pub fn plan_membership_change(&self, changes: &[ConfChange]) -> Result<JointPlan, ConfChangeError> {
        confchange::plan_joint(self.membership.latest().0, changes)
    }

    /// (Leader) Appends the joint configuration C_old,new for `changes`
    /// (applied atomically) and returns its index. The leader leaves it
    /// for C_new by itself once it commits; the change is done when a
    /// plain configuration with an index above the returned one is
    /// committed ([`Core::committed_configuration`]).
    ///
    /// When the changes alter no voter set (only non-voters or addresses),
    /// C_new is appended directly and its index returned.
    ///
    /// Refused ([`Refusal::Membership`]) with the refusals of
    /// [`confchange::plan_joint`], with [`ConfChangeError::NotStaged`] if a
    /// server the change makes a voter is not a member yet (commit
    /// [`JointPlan::staging`] first), and with
    /// [`ConfChangeError::NotCaughtUp`] until each such server has caught
    /// up ([`Core::catch_up`] against the latest configuration's index).
    /// Also refused like [`Core::propose_configuration`]: not the leader,
    /// a transfer in progress, the latest configuration or the leader's
    /// first entry not committed yet.
    pub fn propose_joint(&mut self, changes: &[ConfChange]) -> Result<u64, Refusal> {
        self.check_configuration_change()?;
        let (current, current_index) = self.membership.latest();
        let plan = confchange::plan_joint(current, changes)?;
        if plan.target == *current {
            return Err(ConfChangeError::NoChanges.into());
        }
        if let Some(staging) = &plan.staging {
            let missing = staging.servers.iter().find(|s| current.server(&s.id).is_none());
            if let Some(s) = missing {
                return Err(ConfChangeError::NotStaged(s.id.clone()).into());
            }
        }
        for id in &plan.incoming {
            let status = self.catch_up(id, current_index);
            if status != CatchUp::Ready {
                tracing::debug!(server = %id, %status, "joint change waits: incoming voter not caught up");
                return Err(ConfChangeError::NotCaughtUp { id: id.clone(), status }.into());
            }
        }
        tracing::info!(id = %self.id, joint = plan.joint.is_joint(), "entering joint configuration");
        self.append_configuration(plan.joint)
    }

    /// The index of the latest configuration if it is joint (a joint change
    /// is under way), else `None`.
    pub fn joint_index(&self) -> Option<u64> {
        let (latest, index) = self.membership.latest();
        latest.is_joint().then_some(index)
    }

    /// (Leader) Appends C_new when the latest configuration is joint and
    /// committed (and the leader's first entry is committed, so the joint
    /// entry is known to be committed in this term's log). Returns whether
    /// it appended.
    pub(crate) fn maybe_leave_joint(&mut self) -> bool {
        let Role::Leader(leader) = &self.role else { return false };
        let (latest, index) = self.membership.latest();
        if !latest.is_joint() || index > self.commit || self.commit < leader.term_start {
            return false;
        }
        let next = latest.leave_joint();
        tracing::info!(id = %self.id, joint_index = index, "joint configuration committed; appending the new configuration");
        match self.append_configuration(next) {
            Ok(_) => true,
            Err(refusal) => {
                tracing::error!(id = %self.id, %refusal, "could not leave the joint configuration");
                false
            }
        }
    }

    /// (Leader) When the committed latest configuration (plain) no longer
    /// counts this leader as a voter: sends TimeoutNow to the most
    /// caught-up voter of it that holds it, so a voter takes over at once.
    /// Returns whether the leader must stop leading (the caller steps down
    /// or becomes removed).
    pub(crate) fn hand_off_if_not_voter(&mut self) -> bool {
        let Role::Leader(leader) = &self.role else { return false };
        let (latest, index) = self.membership.latest();
        if latest.is_joint() || index > self.commit || latest.is_voter(&self.id) || latest.servers.is_empty()
        {
            return false;
        }
        let target: Option<ServerId> = leader
            .peers
            .iter()
            .filter(|(id, p)| latest.is_voter(id) && p.matched >= index)
            .max_by_key(|(_, p)| p.matched)
            .map(|(id, _)| id.clone());
        match target {
            Some(t) => {
                tracing::info!(id = %self.id, target = %t, "not a voter of the committed configuration; handing leadership over");
                let req =
                    TimeoutNowRequest { term: self.hard.term, leader_id: self.id.clone(), cluster_id: None };
                self.send(t, Body::TimeoutNow(req));
            }
            None => tracing::info!(
                id = %self.id,
                "not a voter of the committed configuration and no voter holds it yet; the voters will elect a leader"
            ),
        }
        true
    }

    /// The checks every configuration change passes: leader, no transfer,
    /// the latest configuration (and the term's first entry) committed.
    pub(crate) fn check_configuration_change(&self) -> Result<(), Refusal> {
        match &self.role {
            Role::Leader(l) if l.transfer.is_some() => return Err(Refusal::TransferInProgress),
            Role::Leader(_) => {}
            Role::Removed => return Err(Refusal::Removed),
            _ => return Err(Refusal::NotLeader(self.leader.clone())),
        }
        let (latest, latest_index) = self.membership.latest();
        if latest_index > self.commit || latest.is_joint() {
            return Err(Refusal::ConfigurationChangeInProgress);
        }
        if let Role::Leader(l) = &self.role {
            if self.commit < l.term_start {
                return Err(Refusal::ConfigurationChangeInProgress);
            }
        }
        Ok(())
    }

    /// (Leader) Validates, encodes and appends a configuration entry.
    pub(crate) fn append_configuration(&mut self, configuration: Configuration) -> Result<u64, Refusal> {
        configuration.validate().map_err(super::InvalidRequest::Configuration)?;
        let data = crate::codec::encode(&configuration)
            .map_err(|e| super::InvalidRequest::Unencodable(e.to_string()))?;
        self.forget_moved_peers(&configuration);
        let index = self.log.last_index() + 1;
        self.append_local(vec![crate::types::Log {
            index,
            term: self.hard.term,
            log_type: crate::types::LogType::Configuration,
            data: data.into(),
        }]);
        self.broadcast_append();
        Ok(index)
    }
}

#[cfg(test)]
mod tests;
