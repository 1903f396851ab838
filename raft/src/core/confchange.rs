//! The rules for configuration changes, as pure functions: the next
//! configuration from the current one and a change, with every refusal a
//! typed [`ConfChangeError`].
//!
//! Two forms share these rules:
//!
//! - **Single-server changes** ([`apply_single`], Raft thesis §4.1, the
//!   HashiCorp API): add a voter or a non-voter, remove, promote, demote,
//!   move to a new address. Each changes the voter set by at most one
//!   server, so the next configuration takes over directly.
//! - **Joint changes** ([`plan_joint`], Raft paper §6, thesis §4.3): any set
//!   of those changes applied atomically. When the voter set changes by
//!   more than the single-server rules allow, the cluster goes through a
//!   joint configuration C_old,new (see [`Configuration::is_joint`]) in
//!   which every decision needs a majority of both the old and the new
//!   voters, and leaves it for C_new once the joint entry commits.
//!
//! New voters catch up first. A server a joint change adds as a voter is
//! first added as a non-voter ([`JointPlan::staging`]); the core enters the
//! joint configuration only once every incoming voter is a member that
//! caught up ([`Core::catch_up`](super::Core::catch_up)), so a new,
//! empty server never holds up commitment in the new half. This is the
//! rule `add_voter` already follows, applied to each incoming voter.
//!
//! While a configuration is joint, no other change is accepted
//! ([`ConfChangeError::JointInProgress`]).

use std::collections::BTreeSet;

use crate::types::{Configuration, Server, ServerAddress, ServerId, Suffrage};

/// One change to the cluster's membership.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Adds a server as a voter (a non-voter at this address is promoted).
    /// Adding a voter again at the same address changes nothing.
    AddVoter(ServerId, ServerAddress),
    /// Adds a server as a non-voter. A member at this address stays as it
    /// is (HashiCorp semantics: a voter added as a non-voter stays a voter).
    AddNonvoter(ServerId, ServerAddress),
    /// Removes a member.
    Remove(ServerId),
    /// Makes a member a voter.
    Promote(ServerId),
    /// Makes a voter a non-voter.
    Demote(ServerId),
    /// Moves a member to a new address, keeping its suffrage.
    UpdateAddress(ServerId, ServerAddress),
}

impl ConfChange {
    /// The server the change is about.
    pub fn id(&self) -> &ServerId {
        match self {
            ConfChange::AddVoter(id, _)
            | ConfChange::AddNonvoter(id, _)
            | ConfChange::Remove(id)
            | ConfChange::Promote(id)
            | ConfChange::Demote(id)
            | ConfChange::UpdateAddress(id, _) => id,
        }
    }
}

/// Why a configuration change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// The change names a server that is not a member.
    #[error("server {0} is not in the configuration")]
    UnknownServer(ServerId),
    /// Adding an id that is already a member at another address (moving a
    /// member is an explicit [`ConfChange::UpdateAddress`]).
    #[error("server {id} is already a member at {address}; use an address update to move it")]
    ServerExists {
        /// The id.
        id: ServerId,
        /// Its current address.
        address: ServerAddress,
    },
    /// A joint change names the same server twice.
    #[error("server {0} appears in more than one change")]
    DuplicateServer(ServerId),
    /// A joint change with no changes in it.
    #[error("no changes given")]
    NoChanges,
    /// The latest configuration is joint: it must be left (its C_new
    /// committed) before another change starts.
    #[error("a joint configuration change is in progress")]
    JointInProgress,
    /// The resulting configuration is invalid (duplicate address, no
    /// voter left, ...), as [`Configuration::validate`] explains.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A server the joint change makes a voter is not a member yet: add it
    /// as a non-voter first (the staging step of its `JointPlan`).
    #[error("server {0} must first be added as a non-voter and catch up")]
    NotStaged(ServerId),
    /// A server the joint change makes a voter has not caught up yet.
    #[error("server {id} has not caught up yet: {status}")]
    NotCaughtUp {
        /// The server.
        id: ServerId,
        /// Where it stands.
        status: super::CatchUp,
    },
}

/// Applies one single-server change to `current` (HashiCorp semantics).
/// `Ok(None)`: the change would not change the configuration.
///
/// Refusals: [`ConfChangeError::JointInProgress`] while `current` is
/// joint, [`ConfChangeError::UnknownServer`],
/// [`ConfChangeError::ServerExists`], [`ConfChangeError::Invalid`] (the
/// result fails [`Configuration::validate`], e.g. no voter left).
pub fn apply_single(
    current: &Configuration,
    change: &ConfChange,
) -> Result<Option<Configuration>, ConfChangeError> {
    if current.is_joint() {
        return Err(ConfChangeError::JointInProgress);
    }
    let mut next = current.clone();
    if !apply_to(&mut next, change)? {
        return Ok(None);
    }
    next.validate().map_err(ConfChangeError::Invalid)?;
    Ok(Some(next))
}

/// Applies `change` to `conf` in place; returns whether it changed.
fn apply_to(conf: &mut Configuration, change: &ConfChange) -> Result<bool, ConfChangeError> {
    let find = |conf: &mut Configuration, id: &ServerId| conf.servers.iter().position(|s| &s.id == id);
    let member = |conf: &mut Configuration, id: &ServerId| {
        find(conf, id).ok_or_else(|| ConfChangeError::UnknownServer(id.clone()))
    };
    match change {
        ConfChange::AddVoter(id, address) | ConfChange::AddNonvoter(id, address) => {
            let voter = matches!(change, ConfChange::AddVoter(..));
            match find(conf, id) {
                Some(i) => {
                    let s = &mut conf.servers[i];
                    if &s.address != address {
                        return Err(ConfChangeError::ServerExists {
                            id: id.clone(),
                            address: s.address.clone(),
                        });
                    }
                    if voter && s.suffrage != Suffrage::Voter {
                        s.suffrage = Suffrage::Voter;
                        return Ok(true);
                    }
                    Ok(false)
                }
                None => {
                    let suffrage = if voter { Suffrage::Voter } else { Suffrage::Nonvoter };
                    conf.servers.push(Server { suffrage, id: id.clone(), address: address.clone() });
                    Ok(true)
                }
            }
        }
        ConfChange::Remove(id) => {
            let i = member(conf, id)?;
            conf.servers.remove(i);
            Ok(true)
        }
        ConfChange::Promote(id) | ConfChange::Demote(id) => {
            let i = member(conf, id)?;
            let want =
                if matches!(change, ConfChange::Promote(_)) { Suffrage::Voter } else { Suffrage::Nonvoter };
            let s = &mut conf.servers[i];
            let changed = s.suffrage != want;
            s.suffrage = want;
            Ok(changed)
        }
        ConfChange::UpdateAddress(id, address) => {
            let i = member(conf, id)?;
            let s = &mut conf.servers[i];
            let changed = &s.address != address;
            s.address = address.clone();
            Ok(changed)
        }
    }
}

/// The steps of a joint change, from [`plan_joint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JointPlan {
    /// First step, when a server the change makes a voter is not a member
    /// yet: the current configuration with those servers added as
    /// non-voters, to commit (and let them catch up) before entering the
    /// joint configuration. `None` when nothing needs staging.
    pub staging: Option<Configuration>,
    /// The configuration to append once staging is done: C_old,new when
    /// the voter sets differ (see [`Configuration::is_joint`]); when they
    /// do not (only non-voters or addresses change) this is C_new itself.
    pub joint: Configuration,
    /// The configuration the change ends in (C_new).
    pub target: Configuration,
    /// The servers that vote in C_new but not in the current
    /// configuration: they must have caught up before `joint` is appended.
    pub incoming: Vec<ServerId>,
}

/// Plans a joint change of `current` by `changes`, applied atomically.
///
/// Every change follows the single-server rules of [`apply_single`]
/// (applied in order to C_new). Refusals: [`ConfChangeError::NoChanges`],
/// [`ConfChangeError::DuplicateServer`] (one server named twice),
/// [`ConfChangeError::JointInProgress`], the refusals of
/// [`apply_single`], and [`ConfChangeError::Invalid`] when C_new or the
/// joint configuration fails [`Configuration::validate`]. A change that
/// leaves the configuration as it is gives a plan whose `target` equals
/// `current` (the caller answers it without appending anything).
///
/// The joint configuration keeps the old configuration's members in
/// their order, then the new ones. A server removed as a non-voter is
/// dropped at once (non-voters count in no quorum); a voter removed or
/// demoted stays a voter of the old half ([`Suffrage::LeavingVoter`],
/// [`Suffrage::DemotingVoter`]) until C_new.
pub fn plan_joint(current: &Configuration, changes: &[ConfChange]) -> Result<JointPlan, ConfChangeError> {
    if current.is_joint() {
        return Err(ConfChangeError::JointInProgress);
    }
    if changes.is_empty() {
        return Err(ConfChangeError::NoChanges);
    }
    let mut seen = BTreeSet::new();
    for c in changes {
        if !seen.insert(c.id()) {
            return Err(ConfChangeError::DuplicateServer(c.id().clone()));
        }
    }
    let mut target = current.clone();
    for c in changes {
        apply_to(&mut target, c)?;
    }
    target.validate().map_err(ConfChangeError::Invalid)?;

    // Stage: servers that will vote but are not members yet join as
    // non-voters at their new address first.
    let mut staged = current.clone();
    for s in &target.servers {
        if s.suffrage == Suffrage::Voter && current.server(&s.id).is_none() {
            staged.servers.push(Server { suffrage: Suffrage::Nonvoter, ..s.clone() });
        }
    }
    let staging = (staged != *current).then(|| staged.clone());
    if let Some(st) = &staging {
        st.validate().map_err(ConfChangeError::Invalid)?;
    }

    let joint = joint_of(&staged, &target);
    joint.validate().map_err(ConfChangeError::Invalid)?;
    let incoming = joint
        .servers
        .iter()
        .filter(|s| s.suffrage == Suffrage::IncomingVoter)
        .map(|s| s.id.clone())
        .collect();
    Ok(JointPlan { staging, joint, target, incoming })
}

/// The joint configuration between `old` and `new` (both plain): members
/// of `old` in order, then those only in `new`; addresses from `new`.
fn joint_of(old: &Configuration, new: &Configuration) -> Configuration {
    let mut servers = Vec::new();
    for o in &old.servers {
        let suffrage = match (o.suffrage, new.server(&o.id).map(|n| n.suffrage)) {
            (Suffrage::Voter, Some(Suffrage::Voter)) => Suffrage::Voter,
            (Suffrage::Voter, Some(_)) => Suffrage::DemotingVoter,
            (Suffrage::Voter, None) => Suffrage::LeavingVoter,
            (_, Some(Suffrage::Voter)) => Suffrage::IncomingVoter,
            (_, Some(_)) => Suffrage::Nonvoter,
            // A non-voter removed: it counts nowhere, so it leaves now.
            (_, None) => continue,
        };
        let address = new.server(&o.id).map_or_else(|| o.address.clone(), |n| n.address.clone());
        servers.push(Server { suffrage, id: o.id.clone(), address });
    }
    for n in new.servers.iter().filter(|n| old.server(&n.id).is_none()) {
        let suffrage =
            if n.suffrage == Suffrage::Voter { Suffrage::IncomingVoter } else { Suffrage::Nonvoter };
        servers.push(Server { suffrage, ..n.clone() });
    }
    Configuration { servers }
}

#[cfg(test)]
mod tests;
