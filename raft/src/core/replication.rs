//! Log replication (Raft Figure 2, §5.3): the leader's sending side with
//! probing and pipelining, the follower's consistency check, conflict
//! truncation and fast back-off hint, and commitment by counting replicas of
//! current-term entries only (§5.4.2, Figure 8).

use super::progress::{Progress, SendMode};
use super::{Body, Core, LogFetch, Role};
use crate::message::{AppendEntriesRequest, AppendEntriesResponse};
use crate::types::{Log, ServerId};

impl Core {
    /// Sends whatever each follower can take now.
    pub(crate) fn broadcast_append(&mut self) {
        let Role::Leader(leader) = &self.role else { return };
        let peers: Vec<ServerId> = leader.peers.keys().cloned().collect();
        for peer in peers {
            self.send_append(&peer);
        }
    }

    /// Sends AppendEntries to one follower while its window allows: from
    /// the log window, or, for entries whose payloads left it, by asking
    /// the driver to read them from the store first ([`Ready::fetches`],
    /// one read at a time per follower; see [`Core::entries_fetched`]).
    /// Besides the request count, the bytes in flight to the follower are
    /// capped by `max_inflight_bytes`; a request always carries at least
    /// one entry, so a follower always makes progress.
    ///
    /// [`Ready::fetches`]: super::Ready::fetches
    pub(crate) fn send_append(&mut self, peer: &ServerId) {
        loop {
            let last = self.log.last_index();
            let window_start = self.log.window_start();
            let Role::Leader(leader) = &mut self.role else { return };
            let Some(p) = leader.peers.get_mut(peer) else { return };
            if !p.can_send(self.cfg.max_inflight) || p.fetching.is_some() || p.fetch_paused {
                return;
            }
            // In replicate mode only send when there is something new.
            if p.mode == SendMode::Replicate && p.next > last {
                return;
            }
            let in_flight = if p.mode == SendMode::Replicate && !p.inflight.is_empty() {
                usize::try_from(self.log.bytes(p.matched + 1, p.next - 1)).unwrap_or(usize::MAX)
            } else {
                0
            };
            if in_flight > 0 && in_flight >= self.cfg.max_inflight_bytes {
                return;
            }
            let budget = self.cfg.max_append_bytes.min(self.cfg.max_inflight_bytes.saturating_sub(in_flight));
            let prev_log_index = p.next - 1;
            let Some(prev_log_term) = self.log.term(prev_log_index) else {
                // The entries this follower needs were compacted away; it
                // must be brought up to date with a snapshot.
                tracing::info!(peer = %peer, next = p.next, "follower needs compacted entries; sending a snapshot");
                p.mode = SendMode::Snapshot;
                p.inflight.clear();
                self.ready.snapshots_to_send.push(peer.clone());
                return;
            };
            if p.next <= last && p.next < window_start {
                // The payloads left the window: read them from the store.
                // Everything before the window is durable, so the store has it.
                let lo = p.next;
                let hi = self.log.read_end(lo, window_start - 1, self.cfg.max_append_entries, budget);
                p.fetching = Some((lo, hi));
                tracing::debug!(peer = %peer, lo, hi, "reading entries for a follower from the log store");
                self.ready.fetches.push(LogFetch { peer: peer.clone(), lo, hi });
                return;
            }
            let entries = self.log.slice_bytes(p.next, last, self.cfg.max_append_entries, budget);
            if self.send_entries(peer, prev_log_index, prev_log_term, entries) != Some(SendMode::Replicate) {
                return;
            }
        }
    }

    /// Sends one AppendEntries carrying `entries` (following
    /// `prev_log_index`) to `peer` and records it in the follower's
    /// progress. Returns the follower's send mode, `None` if it is gone.
    fn send_entries(
        &mut self,
        peer: &ServerId,
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Log>,
    ) -> Option<SendMode> {
        let Role::Leader(leader) = &mut self.role else { return None };
        let p = leader.peers.get_mut(peer)?;
        let sent_last = prev_log_index + entries.len() as u64;
        p.sent(sent_last);
        let mode = p.mode;
        let req = AppendEntriesRequest {
            term: self.hard.term,
            leader_id: self.id.clone(),
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.commit,
            round: leader.round,
            cluster_id: None,
        };
        self.send(peer.clone(), Body::AppendEntries(req));
        Some(mode)
    }

    /// (Leader) hands back the entries read from the log store for `fetch`
    /// (requested through [`Ready::fetches`](super::Ready::fetches)), or why
    /// the read failed. If this node still leads, the follower still needs
    /// exactly these entries and every entry's term matches the log, they
    /// go out in an AppendEntries (and replication to the follower goes
    /// on); otherwise they are dropped. A failed read is logged and retried
    /// at the next heartbeat interval; if the range was compacted
    /// meanwhile, the follower gets a snapshot instead.
    pub fn entries_fetched(&mut self, fetch: LogFetch, result: Result<Vec<Log>, String>) {
        let max_inflight = self.cfg.max_inflight;
        let Role::Leader(leader) = &mut self.role else {
            tracing::debug!(peer = %fetch.peer, lo = fetch.lo, hi = fetch.hi, "entries read for a follower arrived after this node stopped leading; dropped");
            return;
        };
        let Some(p) = leader.peers.get_mut(&fetch.peer) else {
            tracing::debug!(peer = %fetch.peer, "entries read for a server that is no longer a follower; dropped");
            return;
        };
        if p.fetching != Some((fetch.lo, fetch.hi)) {
            tracing::debug!(peer = %fetch.peer, lo = fetch.lo, hi = fetch.hi, "entries read for a follower that asked for another range; dropped");
            return;
        }
        p.fetching = None;
        let entries = match result {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(
                    peer = %fetch.peer,
                    lo = fetch.lo,
                    hi = fetch.hi,
                    %error,
                    "reading log entries {}..={} for follower {} from the log store failed: {error}; retrying at the next heartbeat (the follower gets a snapshot if they were compacted)",
                    fetch.lo, fetch.hi, fetch.peer
                );
                p.fetch_paused = true;
                return;
            }
        };
        let wanted = p.next == fetch.lo && p.can_send(max_inflight);
        if !wanted {
            tracing::debug!(peer = %fetch.peer, lo = fetch.lo, next = p.next, "entries read for a follower that moved on meanwhile; dropped");
            self.send_append(&fetch.peer);
            return;
        }
        let matches = !entries.is_empty()
            && entries.iter().enumerate().all(|(i, e)| {
                e.index == fetch.lo + i as u64
                    && e.index <= fetch.hi
                    && self.log.term(e.index) == Some(e.term)
            });
        let prev_log_index = fetch.lo - 1;
        let prev_log_term = self.log.term(prev_log_index);
        let (true, Some(prev_log_term)) = (matches, prev_log_term) else {
            if prev_log_term.is_some() {
                tracing::warn!(
                    peer = %fetch.peer,
                    lo = fetch.lo,
                    hi = fetch.hi,
                    returned = entries.len(),
                    "the log store returned entries that do not match the log for {}..={} (missing, out of order or of another term); retrying at the next heartbeat",
                    fetch.lo, fetch.hi
                );
                if let Role::Leader(leader) = &mut self.role {
                    if let Some(p) = leader.peers.get_mut(&fetch.peer) {
                        p.fetch_paused = true;
                    }
                }
            } else {
                // Compacted meanwhile: the next attempt sends a snapshot.
                tracing::debug!(peer = %fetch.peer, lo = fetch.lo, "entries read for a follower were compacted meanwhile");
                self.send_append(&fetch.peer);
            }
            return;
        };
        if self.send_entries(&fetch.peer, prev_log_index, prev_log_term, entries) == Some(SendMode::Replicate)
        {
            self.send_append(&fetch.peer);
        }
    }

    /// (Leader) sends a heartbeat to every follower now, e.g. so they learn
    /// a new commit index without waiting for the next heartbeat.
    pub fn send_heartbeats(&mut self) {
        self.broadcast_heartbeat();
    }

    /// Starts a new read round (see `lease`) and sends an empty
    /// AppendEntries carrying it to every follower; commits only up to what
    /// each follower is known to match.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let round = self.start_read_round();
        let Role::Leader(leader) = &self.role else { return };
        let targets: Vec<(ServerId, u64)> = leader
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), p.matched.max(self.log.snapshot_index())))
            .collect();
        for (peer, matched) in targets {
            let prev_log_term = self.log.term(matched).unwrap_or(0);
            let req = AppendEntriesRequest {
                term: self.hard.term,
                leader_id: self.id.clone(),
                prev_log_index: matched,
                prev_log_term,
                entries: Vec::new(),
                leader_commit: self.commit.min(matched),
                round,
                cluster_id: None,
            };
            self.send(peer, Body::AppendEntries(req));
        }
    }

    pub(crate) fn handle_append_entries(&mut self, from: ServerId, rpc_id: u64, req: AppendEntriesRequest) {
        if self.is_leader() {
            tracing::error!(id = %self.id, from = %from, term = req.term, "two leaders in one term; ignoring");
            return;
        }
        if !matches!(self.role, Role::Follower) || self.leader.as_ref() != Some(&from) {
            self.role = Role::Follower;
            self.leader = Some(from.clone());
        }
        self.election_elapsed = 0;
        self.heard_from_leader();
        let term = self.hard.term;
        let round = req.round;
        let reject = |core: &Core, conflict_term: u64, conflict_index: u64| {
            Body::AppendEntriesResponse(AppendEntriesResponse {
                term,
                success: false,
                last_log_index: core.log.last_index(),
                conflict_term,
                conflict_index,
                round,
            })
        };

        // Entries at or below our compaction point are committed and
        // therefore identical to the leader's: skip them.
        let mut prev_index = req.prev_log_index;
        let mut entries = req.entries;
        let snapshot_index = self.log.snapshot_index();
        if prev_index < snapshot_index {
            let skip = ((snapshot_index - prev_index) as usize).min(entries.len());
            entries.drain(..skip);
            prev_index = snapshot_index;
            if entries.first().is_some_and(|e| e.index != prev_index + 1) {
                let body = reject(self, 0, self.log.last_index() + 1);
                self.reply(from, rpc_id, body, false);
                return;
            }
        } else {
            match self.log.term(prev_index) {
                Some(t) if t == req.prev_log_term => {}
                Some(t) => {
                    let body = reject(self, t, self.log.first_index_of_term_at(prev_index));
                    self.reply(from, rpc_id, body, false);
                    return;
                }
                None => {
                    let body = reject(self, 0, self.log.last_index() + 1);
                    self.reply(from, rpc_id, body, false);
                    return;
                }
            }
        }
        if entries.iter().enumerate().any(|(i, e)| e.index != prev_index + 1 + i as u64) {
            tracing::warn!(from = %from, "AppendEntries with non-contiguous entries; ignoring");
            return;
        }

        // Find the first entry we do not already have (§5.3 step 3-4).
        let new_last = prev_index + entries.len() as u64;
        let mut first_new = entries.len();
        for (i, e) in entries.iter().enumerate() {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    if e.index <= self.commit {
                        tracing::error!(index = e.index, "leader conflicts with a committed entry; ignoring");
                        return;
                    }
                    self.truncate_local(e.index);
                    first_new = i;
                    break;
                }
                None => {
                    first_new = i;
                    break;
                }
            }
        }
        if first_new < entries.len() {
            entries.drain(..first_new);
            self.append_local(entries);
        }
        let commit = req.leader_commit.min(new_last);
        if commit > self.commit {
            self.commit = commit;
            self.check_removal(req.leader_commit);
        }
        let body = Body::AppendEntriesResponse(AppendEntriesResponse {
            term,
            success: true,
            last_log_index: new_last,
            conflict_term: 0,
            conflict_index: 0,
            round,
        });
        // The acknowledgement promises the entries are durable here.
        let must_wait = new_last > self.persisted;
        self.reply(from, rpc_id, body, must_wait);
    }

    pub(crate) fn handle_append_response(&mut self, from: ServerId, resp: AppendEntriesResponse) {
        let last = self.log.last_index();
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(p) = leader.peers.get_mut(&from) else {
            self.departing_answered(&from, &resp);
            return;
        };
        p.recent_active = true;
        p.ticks_since_contact = 0;
        p.acked_round = p.acked_round.max(resp.round);
        if p.mode == SendMode::Snapshot {
            // Only the snapshot's outcome moves this follower forward.
            self.advance_reads();
            return;
        }
        if resp.success {
            if p.acknowledge(resp.last_log_index.min(last)) {
                self.maybe_commit();
            }
        } else {
            self.handle_rejection(&from, &resp);
        }
        self.advance_reads();
        self.on_peer_progress(&from);
        self.send_append(&from);
    }

    /// A follower refused an AppendEntries: probe further back. If its hint
    /// points at or below what it acknowledged before, its log lost entries
    /// it had (a replaced disk, a cut-off tail): believe it, reset its
    /// progress and re-replicate (HashiCorp: `next = min(next - 1, last + 1)`).
    ///
    /// The rejection may also be a delayed answer to a request sent before
    /// the follower acknowledged `matched` (the network reorders). Resetting
    /// on it costs a resend and nothing else: a lower `matched` only makes
    /// the leader count fewer copies, the commit index never moves back, and
    /// the next acknowledgement restores it. Never resetting (clamping the
    /// probe at `matched + 1`) is what left a wiped follower stranded for
    /// good: every probe was refused again.
    fn handle_rejection(&mut self, from: &ServerId, resp: &AppendEntriesResponse) {
        let next = self.next_after_rejection(resp);
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(p) = leader.peers.get_mut(from) else { return };
        if next > p.matched {
            p.probe_from(next);
            return;
        }
        let matched = p.matched;
        let last = resp.last_log_index;
        tracing::warn!(
            peer = %from,
            matched,
            follower_last_index = last,
            next,
            "follower {from} acknowledged the log up to index {matched} but now reports its log ends at {last}: \
             its disk was replaced or wiped, its log tail was cut off, or this is a delayed answer; resetting \
             its progress and re-replicating to it from index {next} (with a snapshot if those entries were \
             compacted)"
        );
        p.reset(next);
        self.ready.log_resets.push(super::LogReset {
            peer: from.clone(),
            matched,
            last_log_index: resp.last_log_index,
        });
    }

    /// Where to probe next after a rejection, using the follower's hint to
    /// skip a whole conflicting term at once.
    fn next_after_rejection(&self, resp: &AppendEntriesResponse) -> u64 {
        let hint = if resp.conflict_term != 0 {
            match self.log.last_index_of_term(resp.conflict_term) {
                Some(i) => i + 1,
                None => resp.conflict_index,
            }
        } else if resp.conflict_index != 0 {
            resp.conflict_index
        } else {
            resp.last_log_index + 1
        };
        hint.clamp(1, self.log.last_index() + 1)
    }

    /// Advances the commit index to the highest index durable on a quorum of
    /// voters, but only if that entry is from the current term (Figure 8).
    pub(crate) fn maybe_commit(&mut self) {
        let Role::Leader(leader) = &self.role else { return };
        // Joint configurations: a majority of the old and of the new voters.
        let quorum_index = self.membership.quorum().committed_index(|id| {
            if *id == self.id {
                Some(self.persisted)
            } else {
                leader.peers.get(id).map(|p| p.matched)
            }
        });
        if quorum_index > self.commit && self.log.term(quorum_index) == Some(self.hard.term) {
            self.commit = quorum_index;
            self.on_commit_advanced();
        }
    }

    /// Called whenever the commit index moves on the leader.
    fn on_commit_advanced(&mut self) {
        self.advance_reads();
        if self.maybe_leave_joint() {
            return;
        }
        if self.hand_off_if_not_voter() && self.membership.latest().0.server(&self.id).is_some() {
            // Demoted: a voter of the committed configuration takes over.
            tracing::info!(id = %self.id, "demoted to non-voter; stepping down");
            self.broadcast_heartbeat();
            let term = self.hard.term;
            self.become_follower(term, None);
            return;
        }
        let (latest, _) = self.membership.latest();
        let (committed, committed_index) = self.membership.committed(self.commit);
        let removed = !latest.servers.iter().any(|s| s.id == self.id);
        if removed && committed == latest && committed_index <= self.commit {
            // We committed our own removal: let followers learn the commit
            // index first (so they elect a new leader without waiting for a
            // stale view to expire), then leave the cluster for good.
            tracing::info!(id = %self.id, "removed from the configuration; stepping down");
            self.broadcast_heartbeat();
            self.become_removed("this leader committed its own removal");
            return;
        }
        self.retire_departed_peers();
    }

    /// Keeps the leader's follower set in line with the latest configuration.
    pub(crate) fn on_configuration_changed(&mut self) {
        let next = self.log.last_index() + 1;
        // Borrowed, not cloned: this runs on every append.
        let config = self.membership.latest().0;
        let Role::Leader(leader) = &mut self.role else { return };
        for s in &config.servers {
            // A server added back while still being told of its removal
            // is a follower again.
            leader.departing.remove(&s.id);
            if s.id != self.id && !leader.peers.contains_key(&s.id) {
                let mut p = Progress::new(next);
                p.recent_active = true;
                leader.peers.insert(s.id.clone(), p);
            }
        }
        // Servers the new configuration drops are replicated to until their
        // removal commits (see `removal`).
        self.retire_departed_peers();
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod window_tests;
