//! [`Membership`]: which configuration is in force. A configuration takes
//! effect as soon as its entry is appended (Raft thesis §4.1), so the core
//! remembers every configuration entry that is not yet committed, to fall
//! back to an older one when a conflicting suffix is truncated.

use super::quorum::Quorum;
use super::{Core, Role};
use crate::types::Configuration;

/// Configurations known to the core.
///
/// Invariant: `history` is ascending by index and never empty; the last
/// element is the latest configuration; `quorum` is the latest
/// configuration's quorum (kept here so the hot paths that count
/// acknowledgements do not rebuild it).
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    history: Vec<(u64, Configuration)>,
    quorum: Quorum,
}

impl Membership {
    /// Starts from a configuration at `index` (0 and an empty configuration
    /// for a brand-new node).
    pub(crate) fn new(index: u64, configuration: Configuration) -> Self {
        let quorum = Quorum::of(&configuration);
        Self { history: vec![(index, configuration)], quorum }
    }

    /// The quorum of the latest configuration (joint: of both halves).
    pub(crate) fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// The configuration in force and its index.
    pub(crate) fn latest(&self) -> (&Configuration, u64) {
        let (i, c) = self.history.last().expect("history is never empty");
        (c, *i)
    }

    /// The newest configuration with index <= `commit`, and its index.
    pub(crate) fn committed(&self, commit: u64) -> (&Configuration, u64) {
        self.history
            .iter()
            .rev()
            .find(|(i, _)| *i <= commit)
            .or_else(|| self.history.first())
            .map(|(i, c)| (c, *i))
            .expect("history is never empty")
    }

    /// Whether a configuration older than `index` includes `id`.
    pub(crate) fn member_before(&self, index: u64, id: &crate::types::ServerId) -> bool {
        self.history.iter().any(|(i, c)| *i < index && c.server(id).is_some())
    }

    /// Whether the configuration in force at `index` (if still known) or
    /// any later one includes `id`.
    pub(crate) fn member_since(&self, index: u64, id: &crate::types::ServerId) -> bool {
        let start = self.history.iter().rposition(|(i, _)| *i <= index).unwrap_or(0);
        self.history[start..].iter().any(|(_, c)| c.server(id).is_some())
    }

    /// The configurations from entries with index > `index`, ascending.
    pub(crate) fn after(&self, index: u64) -> Vec<(u64, Configuration)> {
        self.history.iter().filter(|(i, _)| *i > index).cloned().collect()
    }

    /// Records a configuration appended at `index`.
    pub(crate) fn push(&mut self, index: u64, configuration: Configuration) {
        self.quorum = Quorum::of(&configuration);
        self.history.push((index, configuration));
    }

    /// Drops configurations from entries with index >= `index` (truncated).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self.history.len() > 1 && self.history.last().is_some_and(|(i, _)| *i >= index) {
            self.history.pop();
        }
        self.quorum = Quorum::of(self.latest().0);
    }

    /// Forgets history older than the newest configuration at or below
    /// `commit`, which can never be truncated away.
    pub(crate) fn compact(&mut self, commit: u64) {
        let keep_from = self.history.iter().rposition(|(i, _)| *i <= commit).unwrap_or(0);
        self.history.drain(..keep_from);
    }
}

impl Core {
    /// (Leader) Forgets the replication progress of members that `next`
    /// moves to another address: whatever answers there is a different
    /// process until it proves otherwise, so it is probed afresh (from the
    /// end of the log down) instead of being trusted with the old match
    /// index. Lowering a match index never lowers the commit index.
    pub(crate) fn forget_moved_peers(&mut self, next: &Configuration) {
        let current = self.membership.latest().0;
        let moved: Vec<_> = next
            .servers
            .iter()
            .filter(|s| current.server(&s.id).is_some_and(|old| old.address != s.address))
            .map(|s| s.id.clone())
            .collect();
        let Role::Leader(leader) = &mut self.role else { return };
        for id in moved {
            if leader.peers.remove(&id).is_some() {
                tracing::info!(server = %id, "member moved to a new address: its replication progress starts over");
            }
        }
    }
}

#[cfg(test)]
mod tests;
