//! The one place that counts quorums (Raft paper §5.2–§5.4, joint
//! consensus §6 / thesis §4.3): majorities of one voter set, and joint
//! quorums that need a majority of each of two voter sets.
//!
//! Every decision of the core that needs "a majority" asks this module:
//! - the commit index: [`Quorum::committed_index`] over the voters' match
//!   indexes (the leader's own is its durable index);
//! - elections and pre-votes: [`Quorum::vote_result`] over the grants;
//! - ReadIndex confirmations and check-quorum's "recently active" count:
//!   [`Quorum::is_reached`] over a yes/no per voter.
//!
//! A [`Quorum`] is built from the latest configuration with
//! [`Quorum::of`]: one majority for a plain configuration, two (old and
//! new voters) for a joint one. A joint decision is the conjunction of the
//! two majority decisions; in particular the joint committed index is the
//! smaller of the two halves' committed indexes.
//!
//! Conventions (as in etcd's `quorum` package): a majority of an empty
//! voter set is reached by anyone (its committed index is `u64::MAX` and
//! its vote is won), so a joint quorum whose other half is empty behaves
//! as that half alone; a [`Quorum`] with no voter at all (an unconfigured
//! node) never commits anything and never wins a vote.

use std::collections::BTreeSet;

use crate::types::{Configuration, ServerId};

/// The outcome of counting votes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    /// A quorum granted.
    Won,
    /// Enough voters refused that a quorum can no longer grant.
    Lost,
    /// Neither yet: some voters have not answered.
    Pending,
}

/// A set of voters decided by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Majority {
    voters: BTreeSet<ServerId>,
}

impl Majority {
    /// A majority config over `voters` (duplicates count once).
    pub(crate) fn new<'a>(voters: impl IntoIterator<Item = &'a ServerId>) -> Self {
        Self { voters: voters.into_iter().cloned().collect() }
    }

    /// Number of voters.
    pub(crate) fn len(&self) -> usize {
        self.voters.len()
    }

    /// Whether `id` is one of the voters.
    pub(crate) fn contains(&self, id: &ServerId) -> bool {
        self.voters.contains(id)
    }

    /// The highest index that a majority has reached, given each voter's
    /// match index (`None`: unknown, counted as 0). `u64::MAX` for an empty
    /// voter set.
    pub(crate) fn committed_index(&self, matched: impl Fn(&ServerId) -> Option<u64>) -> u64 {
        if self.voters.is_empty() {
            return u64::MAX;
        }
        let mut indexes: Vec<u64> = self.voters.iter().map(|id| matched(id).unwrap_or(0)).collect();
        // Descending: the index at position n/2 is held by n/2 + 1 voters.
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        indexes[indexes.len() / 2]
    }

    /// Counts votes: `Some(true)` granted, `Some(false)` refused, `None`
    /// not answered. Votes of non-members are ignored by construction
    /// (only members are asked).
    pub(crate) fn vote_result(&self, vote: impl Fn(&ServerId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let needed = self.voters.len() / 2 + 1;
        let (mut yes, mut missing) = (0, 0);
        for id in &self.voters {
            match vote(id) {
                Some(true) => yes += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        if yes >= needed {
            VoteResult::Won
        } else if yes + missing >= needed {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// The voters whose majorities a decision needs: one set, or two while a
/// joint configuration is the latest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quorum {
    /// The old voters (for a plain configuration: all voters).
    old: Majority,
    /// The new voters of a joint configuration.
    new: Option<Majority>,
}

impl Quorum {
    /// The quorum of `configuration`: its voters, or for a joint
    /// configuration its old and its new voters.
    pub(crate) fn of(configuration: &Configuration) -> Self {
        let old = Majority::new(configuration.old_voters());
        let new = configuration.is_joint().then(|| Majority::new(configuration.new_voters()));
        Self { old, new }
    }

    /// A quorum from explicit voter sets (`new: None`: not joint).
    #[cfg(test)]
    pub(crate) fn from_sets(old: &[&str], new: Option<&[&str]>) -> Self {
        let ids = |s: &[&str]| s.iter().map(|id| ServerId::from(*id)).collect::<Vec<_>>();
        Self { old: Majority::new(&ids(old)), new: new.map(|n| Majority::new(&ids(n))) }
    }

    /// Whether no voter at all is known (an unconfigured node).
    pub(crate) fn is_empty(&self) -> bool {
        self.old.len() == 0 && self.new.as_ref().is_none_or(|n| n.len() == 0)
    }

    /// Whether this is a joint quorum.
    #[cfg(test)]
    pub(crate) fn is_joint(&self) -> bool {
        self.new.is_some()
    }

    /// Whether `id` counts in any half.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &ServerId) -> bool {
        self.old.contains(id) || self.new.as_ref().is_some_and(|n| n.contains(id))
    }

    /// Whether `id` is the only voter (a one-voter cluster decides alone).
    pub(crate) fn is_sole_voter(&self, id: &ServerId) -> bool {
        let alone = |m: &Majority| m.len() == 0 || (m.len() == 1 && m.contains(id));
        self.old.len() + self.new.as_ref().map_or(0, Majority::len) > 0
            && alone(&self.old)
            && self.new.as_ref().is_none_or(alone)
    }

    /// The highest index a quorum has reached (joint: the smaller of the
    /// two halves'). 0 when no voter is known.
    pub(crate) fn committed_index(&self, matched: impl Fn(&ServerId) -> Option<u64>) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let old = self.old.committed_index(&matched);
        let new = self.new.as_ref().map_or(u64::MAX, |n| n.committed_index(&matched));
        old.min(new)
    }

    /// Counts votes (joint: won only if both halves are won, lost if
    /// either is lost). Never won when no voter is known.
    pub(crate) fn vote_result(&self, vote: impl Fn(&ServerId) -> Option<bool>) -> VoteResult {
        if self.is_empty() {
            return VoteResult::Pending;
        }
        let old = self.old.vote_result(&vote);
        let new = self.new.as_ref().map_or(VoteResult::Won, |n| n.vote_result(&vote));
        match (old, new) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the voters for which `yes` holds form a quorum (ReadIndex
    /// acknowledgements, check-quorum's recently active voters).
    pub(crate) fn is_reached(&self, yes: impl Fn(&ServerId) -> bool) -> bool {
        self.vote_result(|id| yes(id).then_some(true)) == VoteResult::Won
    }
}

#[cfg(test)]
mod tests;
