//! Removal from the cluster (Raft thesis §4.2.2, etcd's StepDownOnRemoval,
//! HashiCorp's "leader shuts down"): a server that learns it is no longer in
//! the configuration moves to the terminal [`Role::Removed`] state instead
//! of campaigning forever with a configuration nobody else uses.
//!
//! A server learns it was removed in one of four ways:
//!
//! 1. **From its own log, on the leader's word** (followers and
//!    non-voters): on a heartbeat (an AppendEntries without entries), the
//!    configuration covered by its commit index excludes it, it was a
//!    member of an earlier configuration, no later entry in its log adds it
//!    back, and its log (as matched by the heartbeat) reaches the commit
//!    index the heartbeat carries. A server catching up from far behind, or
//!    added back under the same id after its disk was wiped, holds its old
//!    removal, committed, before the entry that re-added it, and that entry
//!    may not even be committed yet: it cannot tell from its log. The
//!    leader can: it sends a commit index covering what a follower holds
//!    only to a follower that holds its latest configuration or that the
//!    latest configuration excludes (heartbeats to a member still missing
//!    the latest configuration carry none), and requests carrying entries
//!    never trigger the rule. To make this the usual path, a leader keeps
//!    replicating to a server it removes until the removal commits, then
//!    sends it a final heartbeat carrying that commit index, repeated every
//!    heartbeat interval until the server accepts it (or for at most two
//!    election timeouts). A server being removed that reports an empty or
//!    shorter log (its disk was wiped or replaced, typically to add it
//!    again as a new server) is dropped instead: it holds nothing of the
//!    cluster and cannot campaign, and replicating the log to it would
//!    only tell the new server it was removed.
//! 2. **As the leader that committed its own removal**: it first sends every
//!    follower a heartbeat with the new commit index (so the remaining
//!    servers learn the removal committed and can elect a new leader at
//!    once), then becomes removed.
//! 3. **From the cluster, when it missed the removal entry** (partitioned
//!    during the removal, or the leader that removed it crashed or handed
//!    leadership off before telling it): once its election timer fires it
//!    asks for (pre-)votes; a leader, or a follower that hears from a live
//!    leader, whose latest *and* committed configurations both exclude it
//!    answers `removed: true`
//!    with a proof: its commit index and that entry's term
//!    (`removal_index`, `removal_term`), an entry committed under the
//!    configuration that excludes the candidate. The candidate trusts the
//!    answer only if its own log confirms the proof
//!    ([`Core::removal_proven`]), whatever the answer's term, also if it
//!    has become leader meanwhile (its old configuration's other voters may
//!    have been wiped since, and an empty log grants any vote). Followers
//!    answer too because the candidate's (old) configuration may hold no
//!    current leader at all (a joint change replaced the leader and left
//!    the candidate asking only servers that now follow a new one), and
//!    the term does not matter because the answering server never adopts
//!    the candidate's term: a server that missed its removal may have
//!    raised its term above every member's (campaigning, or hearing a
//!    higher term from another removed server), and would otherwise
//!    campaign alone forever. A follower cut off from the leader keeps
//!    quiet: it may lack the entry that adds the candidate back, and a
//!    server added back that is still catching up (its log ending with its
//!    old removal) must not be told it was removed when its leader is
//!    merely out of reach.
//!
//! 4. **By asking, when its own log excludes it** (a server that holds the
//!    configuration removing it but never learned that it committed: the
//!    leader's final heartbeats were lost, or the leader that removed it
//!    left the cluster too). Not a voter of its latest configuration, it
//!    never campaigns, so rule 3 never fires. Instead, each time its
//!    election timer fires without a leader, it sends a pre-vote request
//!    to the voters of that configuration, as a question only: it stays a
//!    follower, ignores grants and never starts an election; a server for
//!    which its removal committed answers `removed: true` as in rule 3.
//!    Pre-vote requests change no one's term or vote, so the question
//!    cannot disturb the cluster.
//!
//! Safety. A "removed" answer is a fact about the cluster's history, not a
//! guess from a lagging view: the answering server's committed
//! configuration excludes the candidate, and committed entries are never
//! undone. What an answer can get wrong is only whether the removal is
//! still the last word: the answering server may be behind (a deposed
//! leader, a lagging follower), and a newer leader may have added the
//! candidate back under the same id, with an entry `j` after the removal.
//! The proof guards against that. Entry `p` (the answerer's commit index)
//! is committed, and no configuration lies between the removal and `p` in
//! the answerer's log, so an entry `j` adding the server back comes after
//! `p`. A server added back becomes a voter only once it caught up (thesis
//! §4.2.1: staged as a non-voter, promoted after acknowledging at least
//! `j`, once `j` committed), and a committed entry it acknowledged stays
//! in its log (a snapshot covering it counts as holding it). So:
//!
//! - if the candidate's log does not hold `(p, t)` (it ends before `p` or
//!   conflicts there), it never acknowledged `j` (acknowledging `j` means
//!   holding the committed prefix up to `j`, `p` included): it was not
//!   promoted after `j`, and being told it was removed costs at most a
//!   failed catch-up, which the change that re-added it reports
//!   ([`crate::Error::CatchUpTimeout`]);
//! - if it holds `(p, t)`, its log and the answerer's agree up to `p`, and
//!   it trusts the answer only if neither the configuration in force at
//!   `p` nor any later one in its log includes it: any `j` it acknowledged
//!   would be in its log.
//!
//! The answering server neither adopts the candidate's term nor grants it
//! anything, which is always safe (refusing a vote never breaks election
//! safety). The removed state changes nothing in the log or the term, so it
//! cannot affect election safety, log matching or leader completeness; it
//! only stops a server that no quorum counts.
//!
//! Bootstrap is unaffected: an empty configuration means "not configured
//! yet", never "removed", and a server being added (whose log does not yet
//! hold a configuration naming it) was never a member, so rule 1 cannot
//! fire for it.

use super::{Body, Core, Refusal, Role};
use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, RequestPreVoteRequest, RequestPreVoteResponse,
    RequestVoteResponse,
};
use crate::types::ServerId;

impl Core {
    /// Whether the committed configuration says this node was removed:
    /// the newest configuration covered by the commit index is a real one
    /// (not the empty "unconfigured" state) that excludes us, an earlier
    /// configuration included us, and no later (uncommitted) entry in our
    /// log adds us back.
    pub(crate) fn removal_committed(&self) -> bool {
        let (committed, index) = self.membership.committed(self.commit);
        if index == 0 || committed.servers.is_empty() || committed.server(&self.id).is_some() {
            return false;
        }
        if self.membership.latest().0.server(&self.id).is_some() {
            return false;
        }
        self.membership.member_before(index, &self.id)
    }

    /// Rule 1 (followers): on a heartbeat (an AppendEntries without
    /// entries) whose sender's commit index our log, as matched by it,
    /// reaches (our commit index was just raised to at most that).
    pub(crate) fn check_removal(&mut self, leader_commit: u64) {
        if leader_commit > 0 && self.commit >= leader_commit && self.removal_committed() {
            self.become_removed("the committed configuration no longer includes this server");
        }
    }

    /// Moves to the terminal removed state.
    pub(crate) fn become_removed(&mut self, why: &str) {
        if self.is_removed() {
            return;
        }
        if self.is_leader() {
            self.fail_pending_reads(Refusal::Removed);
        }
        tracing::warn!(
            id = %self.id,
            term = self.hard.term,
            reason = why,
            "this server was removed from the cluster; it stops taking part. Stop it, or wipe its \
             data directory and join it again as a new server"
        );
        self.role = Role::Removed;
        self.leader = None;
    }

    /// The refusal for a request that needs a leader.
    pub(crate) fn not_leader_refusal(&self) -> Refusal {
        if self.is_removed() {
            Refusal::Removed
        } else {
            Refusal::NotLeader(self.leader.clone())
        }
    }

    /// Whether `from` is out of the cluster as far as our committed log
    /// shows: both our latest and our committed configurations (real ones,
    /// not the empty "unconfigured" state) exclude it.
    pub(crate) fn sender_removed(&self, from: &ServerId) -> bool {
        let (latest, _) = self.membership.latest();
        let (committed, committed_index) = self.membership.committed(self.commit);
        committed_index > 0
            && !committed.servers.is_empty()
            && !latest.servers.is_empty()
            && latest.server(from).is_none()
            && committed.server(from).is_none()
    }

    /// (Leader, or a follower hearing from a live leader) answers a
    /// (pre-)vote request from a server our latest and committed
    /// configurations exclude with `removed: true` and the proof of
    /// [`Core::removal_proof`], without adopting its term or counting it.
    /// Returns whether the message was such a request (and is now
    /// answered).
    pub(crate) fn refuse_removed_candidate(&mut self, from: &ServerId, rpc_id: u64, body: &Body) -> bool {
        // Only (pre-)vote requests qualify: check the kind first, so the
        // hot AppendEntries traffic never scans the configurations.
        if !matches!(body, Body::RequestVote(_) | Body::RequestPreVote(_))
            || !self.leader_is_live()
            || !self.sender_removed(from)
        {
            return false;
        }
        let term = self.hard.term;
        let (removal_index, removal_term) = self.removal_proof();
        let reply = match body {
            Body::RequestVote(_) => Body::RequestVoteResponse(RequestVoteResponse {
                term,
                granted: false,
                removed: true,
                removal_index,
                removal_term,
            }),
            _ => Body::RequestPreVoteResponse(RequestPreVoteResponse {
                term,
                granted: false,
                removed: true,
                removal_index,
                removal_term,
            }),
        };
        tracing::info!(
            id = %self.id,
            from = %from,
            removal_index,
            "refusing a vote request from a removed server; telling it so"
        );
        self.reply(from.clone(), rpc_id, reply, false);
        true
    }

    /// Rule 4: whether our latest configuration (a real one) excludes us
    /// although an earlier one included us: we hold our removal and wait
    /// to learn whether it committed.
    pub(crate) fn excluded_by_own_log(&self) -> bool {
        let (latest, index) = self.membership.latest();
        index > 0
            && !latest.servers.is_empty()
            && latest.server(&self.id).is_none()
            && self.membership.member_before(index, &self.id)
    }

    /// Rule 4: asks the voters of our latest configuration, with a pre-vote
    /// request that starts no campaign, whether our removal committed.
    pub(crate) fn probe_removal(&mut self) {
        let (last_log_index, last_log_term) = self.last_log();
        let peers = self.voter_peers();
        tracing::info!(
            id = %self.id,
            term = self.hard.term,
            "this server's log holds a configuration without it and no leader told it the change \
             committed; asking the cluster whether it was removed"
        );
        for peer in peers {
            let req = RequestPreVoteRequest {
                term: self.hard.term + 1,
                candidate_id: self.id.clone(),
                last_log_index,
                last_log_term,
                cluster_id: None,
            };
            self.send(peer, Body::RequestPreVote(req));
        }
    }

    /// The proof sent with a "removed" answer: our commit index and its
    /// term. Every entry from our committed configuration's up to the
    /// commit index is committed under that configuration, which excludes
    /// the candidate. `(0, 0)` if we have none.
    fn removal_proof(&self) -> (u64, u64) {
        match self.log.term(self.commit) {
            Some(term) if self.commit > 0 => (self.commit, term),
            _ => (0, 0),
        }
    }

    /// (Candidate, a leader it just made, or a server that asked under
    /// rule 4) a server says we were removed: trusted only if our log
    /// confirms its proof ([`Core::removal_proven`]), whatever its term.
    /// A leader counts: a removed server can win an election among servers
    /// of its old configuration that were wiped since (an empty log grants
    /// any vote) before the answer to its campaign arrives, and a real
    /// leader never sees its log confirm a proof (it holds every committed
    /// entry, and its latest configuration includes it).
    pub(crate) fn on_removed_answer(
        &mut self,
        from: &ServerId,
        term: u64,
        removal_index: u64,
        removal_term: u64,
    ) {
        let campaigning =
            matches!(self.role, Role::PreCandidate { .. } | Role::Candidate { .. } | Role::Leader(_));
        // A server its own log excludes asks under rule 4.
        let asked = self.excluded_by_own_log();
        if !(campaigning || asked) {
            tracing::debug!(id = %self.id, from = %from, term, "ignoring a 'removed' answer: not asking");
        } else if self.removal_proven(removal_index, removal_term) {
            let why = format!(
                "{from} (term {term}) says this server is no longer in the configuration committed at its \
                 entry {removal_index} (term {removal_term}), and this server's log holds no configuration \
                 from that entry on that includes it"
            );
            self.become_removed(&why);
        } else {
            tracing::debug!(
                id = %self.id,
                from = %from,
                term,
                removal_index,
                removal_term,
                "ignoring a 'removed' answer that this server's log does not confirm"
            );
        }
    }

    /// Rule 3: whether our log confirms the proof of a "removed" answer,
    /// the entry `(index, term)` committed in the answering server's log
    /// under a configuration that excludes us. Either
    /// our log does not hold that entry (it ends before it or conflicts
    /// with it: then none of our entries from there on is committed, and
    /// we never acknowledged an entry adding us back after it), or it holds
    /// it and neither the configuration in force there nor a later one in
    /// our log includes us.
    pub(crate) fn removal_proven(&self, index: u64, term: u64) -> bool {
        if index == 0 {
            return false;
        }
        // Entries our snapshot covers are committed, hence the answerer's.
        let holds = index < self.log.snapshot_index() || self.log.term(index) == Some(term);
        !holds || !self.membership.member_since(index, &self.id)
    }

    /// (Leader) drops followers that neither the latest nor the committed
    /// configuration includes, once they hold the removal entry, and moves
    /// them to the departing set, which tells each one its removal
    /// committed (see [`Core::remind_departing_peers`]). Runs when the
    /// configuration or the commit index changes, and on heartbeats.
    pub(crate) fn retire_departed_peers(&mut self) {
        let commit = self.commit;
        let snapshot_index = self.log.snapshot_index();
        let (latest, _) = self.membership.latest();
        let (committed, removal_index) = self.membership.committed(commit);
        let give_up = 2 * self.cfg.follower_timeout_ticks;
        let Role::Leader(leader) = &mut self.role else { return };
        // Keep replicating until the follower holds the removal entry (so
        // the final heartbeat can tell it the entry committed), unless it
        // has not answered for two election timeouts: then it is down, and
        // if it was a voter it will learn from a vote refusal instead.
        let departed: Vec<(ServerId, u64)> = leader
            .peers
            .iter()
            .filter(|(id, _)| latest.server(id).is_none() && committed.server(id).is_none())
            .filter(|(_, p)| p.matched >= removal_index || p.ticks_since_contact >= give_up)
            .map(|(id, p)| (id.clone(), p.matched.max(snapshot_index)))
            .collect();
        for (peer, matched) in &departed {
            tracing::info!(id = %self.id, peer = %peer, "removal committed; stopping replication to the removed server");
            leader.peers.remove(peer);
            leader.departing.insert(peer.clone(), Departing { matched: *matched, ticks: 0 });
        }
        for (peer, matched) in departed {
            self.tell_departing(&peer, matched);
        }
    }

    /// (Leader, on every heartbeat interval) repeats the final heartbeat to
    /// each departing server that has not answered it, for at most two
    /// election timeouts. One heartbeat is not enough: if it is lost, a
    /// removed non-voter (which never campaigns, so never hears a vote
    /// refusal) would wait for a leader forever.
    pub(crate) fn remind_departing_peers(&mut self) {
        let give_up = 2 * self.cfg.follower_timeout_ticks;
        let step = self.cfg.heartbeat_ticks.max(1);
        let Role::Leader(leader) = &mut self.role else { return };
        let mut due = Vec::new();
        leader.departing.retain(|id, d| {
            d.ticks += step;
            if d.ticks >= give_up {
                tracing::warn!(
                    peer = %id,
                    "removed server {id} never confirmed it learned of its removal; giving up on it (if it \
                     still runs, stop it: it is no longer part of the cluster)"
                );
                return false;
            }
            due.push((id.clone(), d.matched));
            true
        });
        for (peer, matched) in due {
            self.tell_departing(&peer, matched);
        }
    }

    /// (Leader) the heartbeat that tells a departing server its removal
    /// committed: an empty AppendEntries at its match index carrying the
    /// commit index (capped at what it holds).
    fn tell_departing(&mut self, peer: &ServerId, matched: u64) {
        let Role::Leader(leader) = &self.role else { return };
        let req = AppendEntriesRequest {
            cluster_id: None,
            term: self.hard.term,
            leader_id: self.id.clone(),
            prev_log_index: matched,
            prev_log_term: self.log.term(matched).unwrap_or(0),
            entries: Vec::new(),
            leader_commit: self.commit.min(matched),
            round: leader.round,
        };
        self.send(peer.clone(), Body::AppendEntries(req));
    }

    /// (Leader) an answer from a server that is no longer a follower: a
    /// departing server that accepted its final heartbeat has learned its
    /// removal committed, and is forgotten.
    pub(crate) fn departing_answered(&mut self, from: &ServerId, resp: &AppendEntriesResponse) {
        let Role::Leader(leader) = &mut self.role else { return };
        if resp.success && leader.departing.remove(from).is_some() {
            tracing::debug!(peer = %from, "removed server confirmed its final heartbeat");
        }
    }

    /// (Leader) the servers being told that their removal committed: the
    /// driver keeps its connections to them open until they leave this set.
    pub fn departing_peers(&self) -> Vec<ServerId> {
        match &self.role {
            Role::Leader(l) => l.departing.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// (Leader) a server whose removal committed, still being told so.
#[derive(Debug)]
pub(crate) struct Departing {
    /// Its match index: the final heartbeat's previous entry.
    matched: u64,
    /// Ticks since it left the follower set.
    ticks: u64,
}

#[cfg(test)]
mod tests;
