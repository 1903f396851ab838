//! Elections: the logical clock, term handling for every inbound message,
//! pre-vote (Raft thesis §9.6), RequestVote (§5.2, §5.4.1), and the role
//! transitions follower → pre-candidate → candidate → leader.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::progress::Progress;
use super::quorum::VoteResult;
use super::read::ReadQueue;
use super::{Body, Core, LeaderState, Message, Refusal, Role};
use crate::message::{
    RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest, RequestVoteResponse,
};
use crate::types::{Log, LogType, ServerId};

impl Core {
    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        if self.is_removed() {
            // Removed for good: never campaign again.
            return;
        }
        self.tick_clocks();
        if self.is_leader() {
            self.tick_leader();
            return;
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.is_voter() {
                if self.cfg.pre_vote {
                    self.start_pre_vote();
                } else {
                    self.start_election(false);
                }
            } else {
                // Not a voter (as far as our log knows): never campaign, but
                // stop treating a leader we have not heard from for a whole
                // timeout as live, or we would keep refusing the votes of
                // the nodes that count us as a voter.
                self.leader = None;
                self.reset_election_timer();
                if self.excluded_by_own_log() {
                    self.probe_removal();
                }
            }
        }
    }

    /// Handles a message from a peer. An inbound request with a non-zero
    /// `rpc_id` is either answered (a message carrying its `rpc_id`) or
    /// listed in [`Ready::declined`](super::Ready::declined).
    pub fn step(&mut self, msg: Message) {
        let request = (msg.rpc_id != 0 && msg.body.is_request()).then_some(msg.rpc_id);
        self.handle_message(msg);
        if let Some(rpc_id) = request {
            if !self.answered(rpc_id) {
                self.ready.declined.push(rpc_id);
            }
        }
    }

    fn handle_message(&mut self, msg: Message) {
        if self.is_removed() {
            tracing::debug!(id = %self.id, from = %msg.from, "removed from the cluster; ignoring message");
            return;
        }
        // A removed server asking for votes learns its fate from any server
        // whose committed log excludes it, which does not adopt its term
        // (it cannot win anyway).
        if self.refuse_removed_candidate(&msg.from, msg.rpc_id, &msg.body) {
            return;
        }
        // Checked before any term handling: adopting the leader's (higher)
        // term would end the campaign the answer belongs to.
        let removed_answer = match &msg.body {
            Body::RequestVoteResponse(r) if r.removed => Some((r.term, r.removal_index, r.removal_term)),
            Body::RequestPreVoteResponse(r) if r.removed => Some((r.term, r.removal_index, r.removal_term)),
            _ => None,
        };
        if let Some((term, removal_index, removal_term)) = removed_answer {
            self.on_removed_answer(&msg.from, term, removal_index, removal_term);
            return;
        }
        let term = msg.body.term();
        match &msg.body {
            // A pre-vote request carries the term the candidate *would* use;
            // it never changes our term.
            Body::RequestPreVote(_) => {}
            Body::RequestPreVoteResponse(r) if r.granted => {}
            Body::RequestVote(req) if term > self.hard.term => {
                if self.cfg.check_quorum && self.leader_is_live() && !req.leadership_transfer {
                    // Leader stickiness (§4.2.3): ignore a disruptive candidate
                    // while we still hear from a leader.
                    tracing::debug!(from = %msg.from, term, "ignoring vote request: leader is live");
                    let body = Body::RequestVoteResponse(RequestVoteResponse {
                        term: self.hard.term,
                        granted: false,
                        removed: false,
                        removal_index: 0,
                        removal_term: 0,
                    });
                    self.reply(msg.from, msg.rpc_id, body, false);
                    return;
                }
                // Adopt the new term but keep the election timer running: only
                // granting the vote resets it (Figure 2). Otherwise candidates
                // whose logs are too stale to win keep resetting the timers of
                // the nodes that could, and no leader is elected for a long time.
                let timer = (!self.is_leader()).then_some((self.election_elapsed, self.election_timeout));
                self.become_follower(term, None);
                if let Some((elapsed, timeout)) = timer {
                    self.election_elapsed = elapsed;
                    self.election_timeout = timeout;
                }
            }
            _ if term > self.hard.term => {
                let leader = matches!(msg.body, Body::AppendEntries(_) | Body::TimeoutNow(_))
                    .then(|| msg.from.clone());
                self.become_follower(term, leader);
            }
            _ => {}
        }
        if term < self.hard.term {
            self.reject_stale(msg);
            return;
        }
        let Message { from, rpc_id, body, .. } = msg;
        match body {
            Body::AppendEntries(req) => self.handle_append_entries(from, rpc_id, req),
            Body::AppendEntriesResponse(resp) => self.handle_append_response(from, resp),
            Body::RequestVote(req) => self.handle_request_vote(from, rpc_id, req),
            Body::RequestVoteResponse(resp) => self.handle_vote_response(from, resp),
            Body::RequestPreVote(req) => self.handle_pre_vote(from, rpc_id, req),
            Body::RequestPreVoteResponse(resp) => self.handle_pre_vote_response(from, resp),
            Body::TimeoutNow(req) => self.handle_timeout_now(from, rpc_id, req),
            Body::TimeoutNowResponse(_) => {}
        }
    }

    /// Answers a request from an older term so its sender learns the new one.
    fn reject_stale(&mut self, msg: Message) {
        let term = self.hard.term;
        let body = match msg.body {
            // No round is echoed (0 confirms none): the request's round
            // belongs to a term this node has left, and its sender may lead
            // this node's term by the time the answer arrives, where round
            // numbers started again and the same number names another
            // round (a read or lease it would confirm unheard).
            Body::AppendEntries(_) => Body::AppendEntriesResponse(crate::message::AppendEntriesResponse {
                term,
                success: false,
                last_log_index: self.log.last_index(),
                conflict_term: 0,
                conflict_index: 0,
                round: 0,
            }),
            Body::RequestVote(_) => Body::RequestVoteResponse(RequestVoteResponse {
                term,
                granted: false,
                removed: false,
                removal_index: 0,
                removal_term: 0,
            }),
            Body::RequestPreVote(_) => Body::RequestPreVoteResponse(RequestPreVoteResponse {
                term,
                granted: false,
                removed: false,
                removal_index: 0,
                removal_term: 0,
            }),
            Body::TimeoutNow(_) => Body::TimeoutNowResponse(crate::message::TimeoutNowResponse { term }),
            // Stale responses are simply dropped.
            _ => return,
        };
        self.reply(msg.from, msg.rpc_id, body, false);
    }

    /// Whether we heard from a leader within the minimum election timeout
    /// (with check-quorum also: within it, whatever term we adopted since,
    /// or we (re)started within it; see `lease`).
    pub(crate) fn leader_is_live(&self) -> bool {
        match self.role {
            Role::Leader(_) => true,
            _ => {
                (self.leader.is_some() && self.election_elapsed < self.cfg.follower_timeout_ticks)
                    || self.lease_stickiness()
            }
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = match self.role {
            Role::Candidate { .. } => self.cfg.candidate_timeout_ticks,
            _ => self.cfg.follower_timeout_ticks,
        };
        self.election_timeout = self.rng.range(base, 2 * base);
    }

    /// Moves to follower in `term` (which must be >= the current term). A
    /// leader handing over leadership reports the transfer completed.
    pub(crate) fn become_follower(&mut self, term: u64, leader: Option<ServerId>) {
        let was_leader = self.is_leader();
        if term > self.hard.term {
            self.hard.term = term;
            self.hard.vote = None;
            self.persist_hard_state();
        }
        if was_leader {
            self.fail_pending_reads(Refusal::LeadershipLost);
            tracing::info!(id = %self.id, term, "stepping down from leader");
            if self.transfer_in_progress() {
                self.ready.transfer_completed = true;
            }
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    pub(crate) fn last_log(&self) -> (u64, u64) {
        (self.log.last_index(), self.log.last_term())
    }

    pub(crate) fn voter_peers(&self) -> Vec<ServerId> {
        self.membership.latest().0.voters().filter(|id| **id != self.id).cloned().collect()
    }

    fn start_pre_vote(&mut self) {
        let (last_log_index, last_log_term) = self.last_log();
        self.role = Role::PreCandidate { granted: vec![self.id.clone()] };
        self.leader = None;
        self.reset_election_timer();
        tracing::debug!(id = %self.id, term = self.hard.term + 1, "starting pre-vote");
        for peer in self.voter_peers() {
            let req = RequestPreVoteRequest {
                term: self.hard.term + 1,
                candidate_id: self.id.clone(),
                last_log_index,
                last_log_term,
                cluster_id: None,
            };
            self.send(peer, Body::RequestPreVote(req));
        }
        self.check_pre_vote_quorum();
    }

    pub(crate) fn start_election(&mut self, leadership_transfer: bool) {
        self.hard.term += 1;
        self.hard.vote = Some(self.id.clone());
        self.persist_hard_state();
        self.role = Role::Candidate { granted: vec![self.id.clone()] };
        self.leader = None;
        self.reset_election_timer();
        tracing::info!(id = %self.id, term = self.hard.term, "starting election");
        let (last_log_index, last_log_term) = self.last_log();
        for peer in self.voter_peers() {
            let req = RequestVoteRequest {
                term: self.hard.term,
                candidate_id: self.id.clone(),
                last_log_index,
                last_log_term,
                leadership_transfer,
                cluster_id: None,
            };
            // Our own vote must be durable before we ask for others'.
            let msg = Message { from: self.id.clone(), to: peer, rpc_id: 0, body: Body::RequestVote(req) };
            self.ready.persisted_messages.push(msg);
        }
        self.check_vote_quorum();
    }

    fn handle_pre_vote(&mut self, from: ServerId, rpc_id: u64, req: RequestPreVoteRequest) {
        let granted = req.term > self.hard.term
            && self.log.is_up_to_date(req.last_log_index, req.last_log_term)
            && !self.leader_is_live();
        tracing::debug!(id = %self.id, candidate = %from, granted, "pre-vote request");
        // A grant carries the term it grants (the candidate's next term, as
        // etcd does), not ours: a voter behind the candidate (a server that
        // starts empty, term 0, while another was bootstrapped) would
        // otherwise answer with a term the candidate drops as stale, and no
        // election could ever succeed. A refusal carries our term, so a
        // candidate behind us learns it.
        let term = if granted { req.term } else { self.hard.term };
        let body = Body::RequestPreVoteResponse(RequestPreVoteResponse {
            term,
            granted,
            removed: false,
            removal_index: 0,
            removal_term: 0,
        });
        self.reply(from, rpc_id, body, false);
    }

    fn handle_pre_vote_response(&mut self, from: ServerId, resp: RequestPreVoteResponse) {
        if !resp.granted {
            if resp.term > self.hard.term {
                self.become_follower(resp.term, None);
            }
            return;
        }
        // Only a grant of the term this pre-vote round asks for counts: a
        // late grant from an earlier round may predate a leader the voter
        // has heard from since.
        if resp.term != self.hard.term + 1 {
            return;
        }
        if let Role::PreCandidate { granted } = &mut self.role {
            if !granted.contains(&from) && self.membership.latest().0.is_voter(&from) {
                granted.push(from);
            }
            self.check_pre_vote_quorum();
        }
    }

    fn check_pre_vote_quorum(&mut self) {
        if let Role::PreCandidate { granted } = &self.role {
            if self.membership.quorum().vote_result(|id| granted.contains(id).then_some(true))
                == VoteResult::Won
            {
                self.start_election(false);
            }
        }
    }

    fn handle_request_vote(&mut self, from: ServerId, rpc_id: u64, req: RequestVoteRequest) {
        let can_vote = match &self.hard.vote {
            // Stickiness also holds in a term adopted without a leader (a
            // late answer of a higher term): a leader heard from within
            // the follower timeout may hold a lease.
            None => !self.is_leader() && (req.leadership_transfer || !self.lease_stickiness()),
            Some(v) => *v == req.candidate_id,
        };
        let granted = can_vote && self.log.is_up_to_date(req.last_log_index, req.last_log_term);
        tracing::debug!(id = %self.id, candidate = %from, term = req.term, granted, "vote request");
        if granted {
            if self.hard.vote.is_none() {
                self.hard.vote = Some(req.candidate_id.clone());
                self.persist_hard_state();
            }
            self.reset_election_timer();
        }
        let body = Body::RequestVoteResponse(RequestVoteResponse {
            term: self.hard.term,
            granted,
            removed: false,
            removal_index: 0,
            removal_term: 0,
        });
        // A granted vote promises durable state: send only once persisted.
        self.reply(from, rpc_id, body, granted);
    }

    fn handle_vote_response(&mut self, from: ServerId, resp: RequestVoteResponse) {
        if resp.term != self.hard.term || !resp.granted {
            return;
        }
        if let Role::Candidate { granted } = &mut self.role {
            if !granted.contains(&from) && self.membership.latest().0.is_voter(&from) {
                granted.push(from);
            }
            self.check_vote_quorum();
        }
    }

    fn check_vote_quorum(&mut self) {
        if let Role::Candidate { granted } = &self.role {
            if self.membership.quorum().vote_result(|id| granted.contains(id).then_some(true))
                == VoteResult::Won
            {
                self.become_leader();
            }
        }
    }

    fn become_leader(&mut self) {
        tracing::info!(id = %self.id, term = self.hard.term, "became leader");
        let next = self.log.last_index() + 1;
        let peers: BTreeMap<ServerId, Progress> = self
            .membership
            .latest()
            .0
            .servers
            .iter()
            .filter(|s| s.id != self.id)
            .map(|s| (s.id.clone(), Progress::new(next)))
            .collect();
        self.role = Role::Leader(LeaderState {
            peers,
            term_start: next,
            heartbeat_elapsed: 0,
            lease_elapsed: 0,
            round: 0,
            reads: ReadQueue::default(),
            lease: Default::default(),
            transfer: None,
            departing: BTreeMap::new(),
        });
        self.leader = Some(self.id.clone());
        // A no-op opens the term so earlier entries can commit (Figure 8).
        let noop = Log { index: next, term: self.hard.term, log_type: LogType::Noop, data: Bytes::new() };
        self.append_local(vec![noop]);
        self.broadcast_append();
    }

    fn tick_leader(&mut self) {
        let check_quorum = self.cfg.check_quorum;
        let lease_ticks = self.cfg.lease_ticks;
        let heartbeat_ticks = self.cfg.heartbeat_ticks;
        let stall_limit = 3 * self.cfg.heartbeat_ticks;
        let Role::Leader(leader) = &mut self.role else { return };
        leader.heartbeat_elapsed += 1;
        leader.lease_elapsed += 1;
        for p in leader.peers.values_mut() {
            p.ticks_since_contact += 1;
            if p.mode != super::progress::SendMode::Snapshot && (!p.inflight.is_empty() || p.probe_sent) {
                p.stalled_ticks += 1;
                if p.stalled_ticks >= stall_limit {
                    // Requests were lost: fall back to probing.
                    p.probe_from(p.matched + 1);
                }
            }
        }
        let mut step_down = false;
        if leader.lease_elapsed >= lease_ticks {
            leader.lease_elapsed = 0;
            // Joint configurations: recently active majorities of both halves.
            let active = self
                .membership
                .quorum()
                .is_reached(|id| *id == self.id || leader.peers.get(id).is_some_and(|p| p.recent_active));
            for p in leader.peers.values_mut() {
                p.recent_active = false;
            }
            if check_quorum && !active {
                step_down = true;
            }
        }
        if step_down {
            tracing::warn!(id = %self.id, term = self.hard.term, "lost contact with a quorum; stepping down");
            let term = self.hard.term;
            self.become_follower(term, None);
            return;
        }
        let heartbeat_due = leader.heartbeat_elapsed >= heartbeat_ticks;
        if heartbeat_due {
            leader.heartbeat_elapsed = 0;
            for p in leader.peers.values_mut() {
                // Resume a paused probe once per heartbeat interval.
                if p.mode != super::progress::SendMode::Snapshot {
                    p.probe_sent = false;
                }
                // Retry a failed read from the log store.
                p.fetch_paused = false;
            }
        }
        self.tick_transfer();
        if heartbeat_due {
            // Reminders first: a server retired now has just been sent its
            // final heartbeat.
            self.remind_departing_peers();
            self.retire_departed_peers();
        }
        if heartbeat_due && self.is_leader() {
            self.broadcast_heartbeat();
            self.broadcast_append();
        }
    }
}

#[cfg(test)]
mod tests;
