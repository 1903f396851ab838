//! Joint membership changes in the main task
//! ([`Raft::change_membership`](crate::Raft::change_membership)): any set of
//! adds, removals, promotions and demotions applied atomically, driven in
//! three steps.
//!
//! 1. **Staging.** Servers the change makes voters that are not members yet
//!    are added as non-voters, in one configuration entry
//!    ([`JointPlan::staging`](crate::core::JointPlan::staging)).
//! 2. **Catching up.** Once that entry commits, the leader waits until
//!    every incoming voter has caught up by the core's promotion policy
//!    ([`Core::catch_up`], the rule `add_voter` follows), then enters the
//!    joint configuration C_old,new ([`Core::propose_joint`]). If the
//!    caller's timeout passes first, the change ends with
//!    [`Error::CatchUpTimeout`]: the staged servers **stay non-voters** and
//!    nothing else changed.
//! 3. **Leaving.** The core leaves C_old,new for C_new by itself once the
//!    joint entry commits (and hands leadership to a voter of C_new if this
//!    leader is not one). The caller is answered with C_new's index once it
//!    is committed.
//!
//! One change at a time: while a joint change is under way, every other
//! change (joint or single-server) is refused with
//! [`Error::ConfigurationChangeInProgress`] naming it, and a joint change is
//! refused while an `add_voter` promotion is under way.
//!
//! If leadership is lost midway the caller gets [`Error::LeadershipLost`]:
//! the outcome is unknown. A joint entry that survived in the new leader's
//! log is completed by that leader (the core leaves any committed joint
//! configuration it finds, also after a restart); a staging entry alone
//! leaves the new servers as non-voters.

use super::*;
use crate::core::{CatchUp, ConfChange, ConfChangeError};

/// A joint change under way on this leader.
pub(super) struct JointChange {
    /// The changes, applied atomically.
    changes: Vec<ConfChange>,
    /// Servers that vote in C_new but not in the configuration the change
    /// started from: they must catch up first.
    incoming: Vec<ServerId>,
    /// Where the change stands.
    phase: Phase,
    /// When the caller stops waiting (`None`: no limit).
    pub(super) deadline: Option<tokio::time::Instant>,
    /// The caller, answered with C_new's index.
    tx: oneshot::Sender<Result<u64, Error>>,
}

/// The steps of a joint change.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// The incoming voters are members (staged as non-voters by the
    /// configuration at `index`, or members already): waiting for it to
    /// commit and for them to catch up.
    Staging {
        /// The configuration the incoming voters must have caught up from.
        index: u64,
    },
    /// C_old,new (or C_new directly, when no voter set changes) was
    /// appended at `index`: waiting for C_new to commit.
    Entered {
        /// The index of the entry appended.
        index: u64,
    },
}

/// The public error for a joint change the configuration rules refused.
pub(crate) fn joint_error(e: ConfChangeError) -> Error {
    match e {
        ConfChangeError::UnknownServer(id) => Error::UnknownServer(id),
        ConfChangeError::ServerExists { id, address } => Error::ServerExists { id, address },
        ConfChangeError::JointInProgress => Error::ConfigurationChangeInProgress {
            pending: "a joint configuration change is not finished yet".into(),
        },
        other => Error::MembershipChangeRefused(other),
    }
}

impl<R: Send + 'static> Node<R> {
    /// Handles [`Raft::change_membership`](crate::Raft::change_membership):
    /// checks the request, stages the incoming voters and starts driving
    /// the change ([`Node::advance_joint`]).
    pub(super) fn on_change_membership_joint(
        &mut self,
        changes: Vec<ConfChange>,
        prev_index: u64,
        deadline: Option<tokio::time::Instant>,
        tx: oneshot::Sender<Result<u64, Error>>,
    ) {
        let pending = self
            .describe_joint()
            .or_else(|| self.membership.promotions.first().map(|p| self.describe_promotion(p)));
        if let Some(pending) = pending {
            tracing::info!(?changes, %pending, "joint membership change refused: another change is in progress");
            let _ = tx.send(Err(Error::ConfigurationChangeInProgress { pending }));
            return;
        }
        if !self.core.is_leader() {
            let _ = tx.send(Err(self.refusal(Refusal::NotLeader(self.core.leader().cloned()))));
            return;
        }
        if let Err(e) = self.check_prev_index(prev_index) {
            let _ = tx.send(Err(e));
            return;
        }
        let (current, index) = {
            let (c, i) = self.core.configuration();
            (c.clone(), i)
        };
        if index > self.core.commit_index() {
            let _ = tx.send(Err(self.uncommitted_change()));
            return;
        }
        let plan = match self.core.plan_membership_change(&changes) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(?changes, error = %e, "joint membership change refused");
                let _ = tx.send(Err(joint_error(e)));
                return;
            }
        };
        if plan.target == current {
            let _ = tx.send(self.unchanged(index));
            return;
        }
        let staged_at = match plan.staging {
            Some(staging) => match self.core.propose_configuration(staging) {
                Ok(at) => {
                    tracing::info!(
                        incoming = ?plan.incoming,
                        index = at,
                        "joint membership change: adding the new voters as non-voters first"
                    );
                    at
                }
                Err(r) => {
                    let e = match r {
                        Refusal::ConfigurationChangeInProgress => self.uncommitted_change(),
                        r => self.refusal(r),
                    };
                    let _ = tx.send(Err(e));
                    return;
                }
            },
            None => index,
        };
        if let Some(at) = deadline {
            self.track_deadline(at);
        }
        let phase = Phase::Staging { index: staged_at };
        self.membership.joint = Some(JointChange { changes, incoming: plan.incoming, phase, deadline, tx });
        self.advance_joint();
    }

    /// Drives the joint change under way: enters the joint configuration
    /// once the incoming voters caught up, answers the caller once C_new is
    /// committed, and ends the change when leadership is lost or the
    /// caller's deadline passes.
    pub(super) fn advance_joint(&mut self) {
        let Some(mut j) = self.membership.joint.take() else { return };
        let expired = j.deadline.is_some_and(|at| at <= tokio::time::Instant::now());
        match j.phase {
            Phase::Entered { index } => {
                if let Some(done) = self.joint_done(index) {
                    tracing::info!(
                        index = done,
                        "joint membership change done: the new configuration is committed"
                    );
                    let _ = j.tx.send(Ok(done));
                    return;
                }
                if !self.core.is_leader() {
                    tracing::warn!(
                        joint_index = index,
                        "leadership lost during a joint membership change: its outcome is unknown; \
                         a new leader holding the joint entry completes it (check get_configuration)"
                    );
                    let _ = j.tx.send(Err(Error::LeadershipLost));
                    return;
                }
                if expired {
                    tracing::warn!(
                        joint_index = index,
                        "joint membership change not finished within the caller's timeout; \
                         the leader keeps driving it to the new configuration"
                    );
                    let _ = j.tx.send(Err(Error::Timeout));
                    return;
                }
            }
            Phase::Staging { index } => {
                if j.tx.is_closed() {
                    // Nobody waits for it (a caller without a timeout gave
                    // up): keeping it would refuse every later change.
                    tracing::warn!(
                        staged_at = index,
                        "change_membership's caller stopped waiting before the joint configuration was \
                         entered: abandoning the change; the staged servers stay non-voters (remove them \
                         or retry the change)"
                    );
                    return;
                }
                if !self.core.is_leader() {
                    tracing::warn!(
                        staged_at = index,
                        "leadership lost before the joint configuration was entered: the new servers \
                         may stay non-voters; retry change_membership on the new leader"
                    );
                    let _ = j.tx.send(Err(Error::LeadershipLost));
                    return;
                }
                match self.core.propose_joint(&j.changes) {
                    Ok(at) => {
                        tracing::info!(
                            index = at,
                            staged_at = index,
                            "joint membership change: entered the joint configuration"
                        );
                        j.phase = Phase::Entered { index: at };
                    }
                    // Waiting for the staging entry to commit or for the
                    // incoming voters to catch up.
                    Err(Refusal::Membership(ConfChangeError::NotCaughtUp { .. }))
                    | Err(Refusal::ConfigurationChangeInProgress) => {
                        if expired {
                            self.end_joint_catch_up(j, index);
                            return;
                        }
                    }
                    Err(Refusal::Membership(ConfChangeError::NoChanges)) => {
                        let index = self.core.configuration().1;
                        let _ = j.tx.send(self.unchanged(index));
                        return;
                    }
                    Err(Refusal::Membership(e)) => {
                        tracing::warn!(error = %e, "joint membership change refused after staging");
                        let _ = j.tx.send(Err(joint_error(e)));
                        return;
                    }
                    Err(r) => {
                        let _ = j.tx.send(Err(self.refusal(r)));
                        return;
                    }
                }
            }
        }
        self.membership.joint = Some(j);
    }

    /// The index of C_new if the change entered at `index` is done: the
    /// committed configuration is at or after it and is not joint.
    fn joint_done(&self, index: u64) -> Option<u64> {
        let (committed, at) = self.core.committed_configuration();
        (at >= index && !committed.is_joint()).then_some(at)
    }

    /// The caller's deadline passed before the incoming voters caught up:
    /// the change ends, the staged servers stay non-voters.
    fn end_joint_catch_up(&mut self, j: JointChange, staged_at: u64) {
        let behind = j
            .incoming
            .iter()
            .map(|id| (id, self.core.catch_up(id, staged_at)))
            .find(|(_, status)| *status != CatchUp::Ready);
        let Some((id, status)) = behind else {
            let _ = j.tx.send(Err(Error::Timeout));
            return;
        };
        let matched = self.core.peer_progress().iter().find(|pp| &pp.id == id).map_or(0, |pp| pp.matched);
        let last_index = self.core.last_index();
        tracing::warn!(
            server = %id,
            matched,
            last_index,
            %status,
            "change_membership timed out before the new voters caught up: they stay non-voters and \
             nothing else changed; check that they run and are reachable, then retry, or remove them"
        );
        let _ = j.tx.send(Err(Error::CatchUpTimeout { id: id.clone(), matched, last_index }));
    }

    /// Describes the joint change under way, for the in-progress error.
    pub(super) fn describe_joint(&self) -> Option<String> {
        let j = self.membership.joint.as_ref()?;
        let step = match j.phase {
            Phase::Staging { index } => {
                let waiting: Vec<String> = j
                    .incoming
                    .iter()
                    .map(|id| (id, self.core.catch_up(id, index)))
                    .filter(|(_, s)| *s != CatchUp::Ready)
                    .map(|(id, s)| format!("{id}: {s}"))
                    .collect();
                format!("new voters staged at index {index}, waiting for [{}]", waiting.join("; "))
            }
            Phase::Entered { index } => {
                format!("joint configuration at index {index}, waiting for the new configuration to commit")
            }
        };
        Some(format!("change_membership {:?} ({step})", j.changes))
    }

    /// Answers the joint change under way with C_new's index if it is
    /// done (for a leader the change removed: C_new committed before it
    /// learned it was removed).
    pub(super) fn answer_joint_if_done(&mut self) {
        let Some(j) = self.membership.joint.take() else { return };
        match j.phase {
            Phase::Entered { index } => match self.joint_done(index) {
                Some(done) => {
                    let _ = j.tx.send(Ok(done));
                }
                None => self.membership.joint = Some(j),
            },
            Phase::Staging { .. } => self.membership.joint = Some(j),
        }
    }

    /// Ends the joint change under way with [`Error::ServerRemoved`] if it
    /// is still waiting for `peer` to catch up as an incoming voter (the
    /// staged servers stay non-voters, as after a catch-up timeout).
    pub(super) fn fail_joint_staging(&mut self, peer: &ServerId) {
        let waits = self
            .membership
            .joint
            .as_ref()
            .is_some_and(|j| matches!(j.phase, Phase::Staging { .. }) && j.incoming.contains(peer));
        if waits {
            tracing::warn!(server = %peer, "change_membership ended: an incoming voter was removed earlier and ignores requests");
            self.fail_joint(Error::ServerRemoved { id: peer.clone() });
        }
    }

    /// Answers the joint change under way, if any, with `err`.
    pub(super) fn fail_joint(&mut self, err: Error) {
        if let Some(j) = self.membership.joint.take() {
            let _ = j.tx.send(Err(err));
        }
    }
}
