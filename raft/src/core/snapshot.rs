//! Snapshots in the core (Raft §7): the leader learns that a follower needs
//! compacted entries and asks the driver to stream a snapshot; the follower
//! accepts a snapshot from the current leader, keeps the part of its log
//! that follows and agrees with it, and discards the rest; and any node
//! forgets log entries a snapshot has made redundant.

use super::membership::Membership;
use super::progress::SendMode;
use super::{Core, InstalledSnapshot, InvalidRequest, Refusal, Role};
use crate::types::{Configuration, Log, LogType, ServerId, SnapshotPosition};

impl Core {
    /// Reports the outcome of streaming a snapshot covering `index` to
    /// `peer` (requested through `Ready::snapshots_to_send`).
    pub fn snapshot_sent(&mut self, peer: &ServerId, index: u64, term: u64, success: bool) {
        if self.is_removed() {
            return;
        }
        if term > self.hard.term {
            self.become_follower(term, None);
            return;
        }
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(p) = leader.peers.get_mut(peer) else { return };
        if p.mode != SendMode::Snapshot {
            return;
        }
        if success {
            p.recent_active = true;
            p.matched = p.matched.max(index);
            p.probe_from(index + 1);
            self.maybe_commit();
            self.on_peer_progress(peer);
            self.send_append(peer);
        } else {
            // Retry from a probe at the next heartbeat.
            p.probe_from(p.matched + 1);
            p.probe_sent = true;
        }
    }

    /// A leader offers a snapshot. Returns `Err(current_term)` if the offer
    /// comes from a stale term and must be refused; otherwise the sender is
    /// recognized as leader and the data may be received.
    pub fn snapshot_offered(&mut self, from: &ServerId, term: u64) -> Result<(), u64> {
        if term < self.hard.term || self.is_removed() {
            return Err(self.hard.term);
        }
        if term > self.hard.term || !matches!(self.role, Role::Follower) {
            if self.is_leader() && term == self.hard.term {
                tracing::error!(from = %from, term, "snapshot from another leader of our term; refusing");
                return Err(self.hard.term);
            }
            self.become_follower(term, Some(from.clone()));
        }
        self.leader = Some(from.clone());
        self.election_elapsed = 0;
        self.heard_from_leader();
        Ok(())
    }

    /// Installs a snapshot received from the leader of `term`, covering
    /// `snapshot`. Returns `Err(current_term)` if it came from a stale term,
    /// `Ok(None)` if it was already covered (nothing to do), and otherwise
    /// the work to execute before the next [`Ready`](super::Ready): replace
    /// the stored log and restore the state machine from the snapshot.
    pub fn install_snapshot(
        &mut self,
        from: &ServerId,
        term: u64,
        snapshot: SnapshotPosition,
    ) -> Result<Option<InstalledSnapshot>, u64> {
        self.snapshot_offered(from, term)?;
        let (index, snapshot_term) = (snapshot.index, snapshot.term);
        if index <= self.commit {
            return Ok(None);
        }
        let keep_suffix = self.log.term(index) == Some(snapshot_term);
        // The configurations of the kept suffix (entries after the last
        // committed configuration are all in the membership history, even
        // those whose payloads left the log window).
        let kept: Vec<(u64, Configuration)> =
            if keep_suffix { self.membership.after(index) } else { Vec::new() };
        if keep_suffix {
            self.log.compact_to(index, snapshot_term);
        } else {
            self.log.truncate_from(self.log.snapshot_index() + 1);
            self.log.compact_to(index, snapshot_term);
            self.ready.entries.clear();
            self.ready.truncate_from = None;
        }
        self.ready.entries.retain(|e| e.index > index);
        let mut membership = Membership::new(snapshot.configuration_index, snapshot.configuration.clone());
        for (i, c) in kept {
            membership.push(i, c);
        }
        self.membership = membership;
        self.commit = index;
        self.applied_sent = index;
        self.persisted = if keep_suffix { self.persisted.max(index) } else { index };
        self.ready.committed.clear();
        self.ready.apply_from_store = None;
        tracing::info!(id = %self.id, index, term = snapshot_term, keep_suffix, "installed snapshot");
        Ok(Some(InstalledSnapshot { position: snapshot, discard_log: !keep_suffix }))
    }
}

impl Core {
    /// (Leader) replaces the cluster's state with a user-supplied snapshot,
    /// stored locally as covering the log up to `index`, which must be past
    /// the last log entry (HashiCorp's `Restore`: the jump leaves a hole no
    /// follower can fill from the log, so each one installs the snapshot).
    /// The current configuration is kept. Appends a no-op after the
    /// snapshot and returns its index (once it commits, a quorum holds the
    /// restored state) with the install to execute before the next
    /// [`Ready`](super::Ready), as for
    /// [`Core::install_snapshot`]. Uncommitted entries are discarded.
    pub fn restore_snapshot(&mut self, index: u64) -> Result<(u64, InstalledSnapshot), Refusal> {
        match &self.role {
            Role::Leader(l) if l.transfer.is_some() => return Err(Refusal::TransferInProgress),
            Role::Leader(_) => {}
            _ => return Err(Refusal::NotLeader(self.leader.clone())),
        }
        if index <= self.log.last_index() {
            return Err(InvalidRequest::RestoreNotPastLog { index, last_index: self.log.last_index() }.into());
        }
        let term = self.hard.term;
        let configuration = self.membership.latest().0.clone();
        self.log.truncate_from(self.log.snapshot_index() + 1);
        self.log.compact_to(index, term);
        self.ready.entries.clear();
        self.ready.truncate_from = None;
        self.membership = Membership::new(index, configuration.clone());
        self.commit = index;
        self.applied_sent = index;
        self.persisted = index;
        let position = SnapshotPosition { index, term, configuration, configuration_index: index };
        let installed = InstalledSnapshot { position, discard_log: true };
        if let Role::Leader(leader) = &mut self.role {
            leader.term_start = index + 1;
            for p in leader.peers.values_mut() {
                p.probe_from(index + 1);
            }
        }
        tracing::info!(id = %self.id, index, "restored a user snapshot");
        let noop = Log { index: index + 1, term, log_type: LogType::Noop, data: bytes::Bytes::new() };
        self.append_local(vec![noop]);
        self.broadcast_append();
        Ok((index + 1, installed))
    }

    /// (Leader) steps down without changing term, e.g. because the local
    /// log store stopped making progress and this node can no longer lead.
    pub fn step_down(&mut self) {
        if self.is_leader() {
            let term = self.hard.term;
            self.become_follower(term, None);
        }
    }
}

#[cfg(test)]
mod tests;
