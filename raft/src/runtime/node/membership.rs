//! Membership for the main task: configuration changes with `prev_index`
//! guards, catching a new voter up as a non-voter before promoting it, and
//! telling observers about configuration changes.
//!
//! Rules a caller can rely on:
//! - A server added as a voter is promoted only once the core's promotion
//!   policy ([`Core::catch_up`]) says it caught up: it acknowledged the
//!   configuration that added it, is within one pipeline window of the
//!   leader's last index and answered within the last election timeout;
//!   with autopilot on, only once it has also been healthy for the server
//!   stabilization time (`autopilot`).
//! - The caller's timeout ends the promotion on the leader too: the server
//!   stays a non-voter and the caller gets [`Error::CatchUpTimeout`], so a
//!   server that never answers cannot block later changes.
//! - Adding an id that is already a member at another address is refused
//!   with [`Error::ServerExists`]; moving a member is an explicit
//!   [`MembershipChange::UpdateAddress`]. Adding a member again at the same
//!   address is a no-op that returns the configuration's index.

use super::*;
use crate::core::confchange::{self, ConfChange, ConfChangeError};
use crate::core::CatchUp;

/// The main task's membership changes under way.
pub(super) struct Membership {
    /// Servers being added as voters, waiting to catch up as non-voters.
    pub(super) promotions: Vec<Promotion>,
    /// The joint change under way, if any (see the `joint` module).
    pub(super) joint: Option<super::joint::JointChange>,
    /// The configuration observers last heard about.
    seen: SeenConfig,
}

impl Default for Membership {
    fn default() -> Self {
        // No index matches the first configuration: observers hear of it.
        let seen = SeenConfig { configuration: Configuration::default(), index: u64::MAX };
        Self { promotions: Vec::new(), joint: None, seen }
    }
}

/// A configuration observers were told about.
struct SeenConfig {
    /// The configuration.
    configuration: Configuration,
    /// The index of its entry.
    index: u64,
}

/// A server added with `add_voter` that is catching up as a non-voter.
pub(super) struct Promotion {
    /// The server.
    pub(super) id: ServerId,
    /// Its address.
    pub(super) address: ServerAddress,
    /// The configuration that added it as a non-voter; promote only once
    /// this is committed.
    pub(super) after_index: u64,
    /// When the caller gives up: the promotion ends then and the server
    /// stays a non-voter (`None`: no limit).
    pub(super) deadline: Option<tokio::time::Instant>,
    /// The caller, answered with the index of the configuration that
    /// made it a voter.
    pub(super) tx: oneshot::Sender<Result<u64, Error>>,
}

impl<R: Send + 'static> Node<R> {
    /// Handles a membership change request. A server added as a voter is
    /// first added as a non-voter and promoted once it has caught up.
    pub(super) fn on_change_membership(
        &mut self,
        change: MembershipChange,
        prev_index: u64,
        deadline: Option<tokio::time::Instant>,
        tx: oneshot::Sender<Result<u64, Error>>,
    ) {
        if let Some(pending) = self.describe_joint() {
            tracing::info!(change = ?change, pending = %pending, "membership change refused: a joint change is in progress");
            let _ = tx.send(Err(Error::ConfigurationChangeInProgress { pending }));
            return;
        }
        if let Some(p) = self.membership.promotions.first() {
            let pending = self.describe_promotion(p);
            tracing::info!(change = ?change, pending = %pending, "membership change refused: another is in progress");
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
        let (config, config_index) = {
            let (c, i) = self.core.configuration();
            (c.clone(), i)
        };
        // The core's rules say whether an add or a move changes anything
        // (HashiCorp semantics: adding a member again at its address, or a
        // voter as a non-voter, changes nothing) and refuse an id that is a
        // member at another address.
        if matches!(
            change,
            MembershipChange::AddVoter(..)
                | MembershipChange::AddNonvoter(..)
                | MembershipChange::UpdateAddress(..)
        ) {
            match confchange::apply_single(&config, &conf_change_of(&change)) {
                Ok(None) => {
                    let _ = tx.send(self.unchanged(config_index));
                    return;
                }
                Err(ConfChangeError::ServerExists { id, address }) => {
                    tracing::warn!(
                        server = %id,
                        existing = %address,
                        change = ?change,
                        "refusing to add a server whose id is already a member at another address; \
                         use update_address to move it on purpose"
                    );
                    let _ = tx.send(Err(Error::ServerExists { id, address }));
                    return;
                }
                // A change, or a refusal `membership_change` reports.
                Ok(Some(_)) | Err(_) => {}
            }
        }
        if let MembershipChange::AddVoter(id, address) = &change {
            let (id, address) = (id.clone(), address.clone());
            let staged = match config.server(&id) {
                // Already a non-voter at this address: promote once caught up.
                Some(_) => Ok(config_index),
                None => self.membership_change(MembershipChange::AddNonvoter(id.clone(), address.clone())),
            };
            match staged {
                Ok(after_index) => {
                    tracing::info!(server = %id, %address, after_index, "adding a voter: catching it up as a non-voter first");
                    if let Some(at) = deadline {
                        self.track_deadline(at);
                    }
                    self.membership.promotions.push(Promotion { id, address, after_index, deadline, tx });
                    self.advance_promotions();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
            return;
        }
        match self.membership_change(change) {
            Ok(index) => {
                let term = self.core.term();
                if let Some(at) = deadline {
                    self.track_deadline(at);
                }
                self.clients.waiters.insert(index, Pending { term, waiter: Waiter::Index(tx), deadline });
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    }

    /// The answer to a change that would not change the configuration at
    /// `index`: its index once committed, else "in progress".
    pub(super) fn unchanged(&self, index: u64) -> Result<u64, Error> {
        let committed = self.core.committed_configuration().1;
        if committed == index {
            Ok(index)
        } else {
            Err(self.uncommitted_change())
        }
    }

    /// The in-progress error for an uncommitted configuration entry.
    pub(super) fn uncommitted_change(&self) -> Error {
        let index = self.core.configuration().1;
        let commit = self.core.commit_index();
        if let Some(joint) = self.core.joint_index() {
            return Error::ConfigurationChangeInProgress {
                pending: format!(
                    "a joint configuration change is under way (its joint configuration at index {joint} is left \
                     once committed; commit index {commit})"
                ),
            };
        }
        if index <= commit {
            // The core's other reason: a new leader changes the
            // configuration only once an entry of its term is committed.
            return Error::ConfigurationChangeInProgress {
                pending: format!(
                    "this leader was just elected and has not committed an entry of its term yet \
                     (commit index {commit}); retry shortly"
                ),
            };
        }
        Error::ConfigurationChangeInProgress {
            pending: format!(
                "the configuration at index {index} is not committed yet (commit index {commit})"
            ),
        }
    }

    /// Describes a promotion under way, for the in-progress error.
    pub(super) fn describe_promotion(&self, p: &Promotion) -> String {
        let status = self.promotion_status(&p.id, p.after_index);
        let until = match p.deadline {
            Some(at) => format!(
                "; it ends in {:?} if the server has not caught up",
                at.saturating_duration_since(tokio::time::Instant::now())
            ),
            None => "; the caller set no timeout".to_owned(),
        };
        format!("add_voter of {} at {} ({status}){until}", p.id, p.address)
    }

    /// Notifies observers of servers added, changed or removed since the
    /// configuration last seen.
    pub(super) fn observe_configuration(&mut self) {
        let (config, index) = self.core.configuration();
        if index == self.membership.seen.index {
            return;
        }
        for s in &config.servers {
            if self.membership.seen.configuration.server(&s.id) != Some(s) {
                self.shared.observers.notify(Observation::PeerChanged(s.clone()));
            }
        }
        for s in &self.membership.seen.configuration.servers {
            if config.server(&s.id).is_none() {
                self.shared.observers.notify(Observation::PeerRemoved(s.id.clone()));
            }
        }
        self.membership.seen = SeenConfig { configuration: config.clone(), index };
    }

    /// Promotes non-voters that are being added as voters once the core's
    /// promotion policy says they caught up (so adding a server never
    /// stalls commits while it copies the log), and ends the promotions
    /// whose caller's deadline passed: those servers stay non-voters.
    pub(super) fn advance_promotions(&mut self) {
        self.advance_joint();
        if self.membership.promotions.is_empty() {
            return;
        }
        if !self.core.is_leader() {
            for p in self.membership.promotions.drain(..) {
                let _ = p.tx.send(Err(Error::LeadershipLost));
            }
            return;
        }
        let now = tokio::time::Instant::now();
        let mut waiting = Vec::new();
        for p in std::mem::take(&mut self.membership.promotions) {
            let status = self.promotion_status(&p.id, p.after_index);
            if status != CatchUp::Ready {
                if p.deadline.is_some_and(|at| at <= now) {
                    self.end_promotion(p, &status);
                } else {
                    waiting.push(p);
                }
                continue;
            }
            // The promotion follows the core's rules like any change.
            let current = self.core.configuration().0;
            let next = match confchange::apply_single(current, &ConfChange::Promote(p.id.clone())) {
                Ok(next) => next.unwrap_or_else(|| current.clone()),
                Err(ConfChangeError::JointInProgress) if p.deadline.is_some_and(|at| at <= now) => {
                    self.end_promotion(p, &status);
                    continue;
                }
                Err(ConfChangeError::JointInProgress) => {
                    waiting.push(p);
                    continue;
                }
                Err(e) => {
                    let _ = p.tx.send(Err(crate::runtime::reads::membership_error(e)));
                    continue;
                }
            };
            match self.core.propose_configuration(next) {
                Ok(index) => {
                    tracing::info!(server = %p.id, index, "caught-up non-voter promoted to voter");
                    let term = self.core.term();
                    let pending = Pending { term, waiter: Waiter::Index(p.tx), deadline: p.deadline };
                    self.clients.waiters.insert(index, pending);
                }
                // Caught up, but another entry is not committed yet: try
                // again later, unless the caller's time is up.
                Err(Refusal::ConfigurationChangeInProgress) if p.deadline.is_some_and(|at| at <= now) => {
                    self.end_promotion(p, &status)
                }
                Err(Refusal::ConfigurationChangeInProgress) => waiting.push(p),
                Err(r) => {
                    let _ = p.tx.send(Err(self.refusal(r)));
                }
            }
        }
        self.membership.promotions = waiting;
    }

    /// The caller of `add_voter` gave up before the server caught up: it
    /// stays a non-voter and later changes are no longer blocked.
    fn end_promotion(&mut self, p: Promotion, status: &CatchUp) {
        let matched = self.core.peer_progress().iter().find(|pp| pp.id == p.id).map_or(0, |pp| pp.matched);
        let last_index = self.core.last_index();
        tracing::warn!(
            server = %p.id,
            address = %p.address,
            matched,
            last_index,
            status = %status,
            "add_voter timed out before the server caught up: it stays a non-voter; \
             check that it runs and is reachable at that address, then retry add_voter, or remove it"
        );
        let _ = p.tx.send(Err(Error::CatchUpTimeout { id: p.id, matched, last_index }));
    }

    /// The earliest deadline still ahead of a promotion under way, if any.
    pub(super) fn next_promotion_deadline(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let joint = self.membership.joint.as_ref().and_then(|j| j.deadline);
        self.membership.promotions.iter().filter_map(|p| p.deadline).chain(joint).filter(|at| *at > now).min()
    }

    /// Proposes the configuration `change` makes (the caller checked
    /// leadership and `prev_index`). Returns the new entry's index.
    pub(super) fn membership_change(&mut self, change: MembershipChange) -> Result<u64, Error> {
        let current: &Configuration = self.core.configuration().0;
        if let MembershipChange::UpdateAddress(id, address) = &change {
            if let Some(s) = current.server(id) {
                tracing::warn!(server = %id, from = %s.address, to = %address, "moving a member to a new address");
            }
        }
        let change = conf_change_of(&change);
        // The rules live in the core; a change that alters nothing is
        // still proposed (and answered once committed), as before.
        let next = match confchange::apply_single(current, &change) {
            Ok(next) => next.unwrap_or_else(|| current.clone()),
            Err(ConfChangeError::JointInProgress) => return Err(self.uncommitted_change()),
            Err(e) => return Err(crate::runtime::reads::membership_error(e)),
        };
        self.core.propose_configuration(next).map_err(|r| match r {
            Refusal::ConfigurationChangeInProgress => self.uncommitted_change(),
            r => self.refusal(r),
        })
    }

    /// Refuses a change based on a stale view of the configuration.
    pub(super) fn check_prev_index(&self, prev_index: u64) -> Result<(), Error> {
        let index = self.core.configuration().1;
        if prev_index != 0 && prev_index != index {
            return Err(Error::StalePrevIndex { current: index });
        }
        Ok(())
    }
}

/// The core's form of a single-server change.
fn conf_change_of(change: &MembershipChange) -> ConfChange {
    match change.clone() {
        MembershipChange::AddVoter(id, address) => ConfChange::AddVoter(id, address),
        MembershipChange::AddNonvoter(id, address) => ConfChange::AddNonvoter(id, address),
        MembershipChange::DemoteVoter(id) => ConfChange::Demote(id),
        MembershipChange::RemoveServer(id) => ConfChange::Remove(id),
        MembershipChange::UpdateAddress(id, address) => ConfChange::UpdateAddress(id, address),
    }
}
