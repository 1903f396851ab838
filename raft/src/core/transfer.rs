//! Leadership transfer (Raft thesis §3.10): the leader stops accepting
//! writes, brings the target up to date, then sends it TimeoutNow so it
//! starts an election at once; the transfer is abandoned if the target has
//! not taken over within an election timeout.

use super::{Body, Core, InvalidRequest, Refusal, Role};
use crate::message::{TimeoutNowRequest, TimeoutNowResponse};
use crate::types::ServerId;

/// A transfer in progress.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    pub(crate) target: ServerId,
    pub(crate) elapsed: u64,
    pub(crate) timeout_now_sent: bool,
}

impl Core {
    /// Starts handing leadership to `target`, or to the most up-to-date
    /// voter if `None`. Returns the chosen target.
    pub fn transfer_leadership(&mut self, target: Option<ServerId>) -> Result<ServerId, Refusal> {
        let Role::Leader(leader) = &self.role else {
            return Err(self.not_leader_refusal());
        };
        if leader.transfer.is_some() {
            return Err(Refusal::TransferInProgress);
        }
        let config = self.membership.latest().0;
        let target = match target {
            Some(t) => {
                if t == self.id {
                    return Err(InvalidRequest::TransferToSelf.into());
                }
                if config.server(&t).is_none() {
                    return Err(Refusal::UnknownServer(t));
                }
                if !config.is_voter(&t) {
                    return Err(Refusal::NotAVoter(t));
                }
                t
            }
            None => leader
                .peers
                .iter()
                .filter(|(id, _)| config.is_voter(id))
                .max_by_key(|(_, p)| p.matched)
                .map(|(id, _)| id.clone())
                .ok_or(InvalidRequest::NoVoterToTransferTo)?,
        };
        tracing::info!(id = %self.id, target = %target, "starting leadership transfer");
        self.fail_pending_reads(Refusal::TransferInProgress);
        self.give_up_lease();
        if let Role::Leader(leader) = &mut self.role {
            leader.transfer = Some(Transfer { target: target.clone(), elapsed: 0, timeout_now_sent: false });
        }
        self.on_peer_progress(&target);
        self.send_append(&target);
        Ok(target)
    }

    /// Sends TimeoutNow once the transfer target has caught up.
    pub(crate) fn on_peer_progress(&mut self, peer: &ServerId) {
        let last = self.log.last_index();
        let term = self.hard.term;
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(t) = &mut leader.transfer else { return };
        if &t.target != peer || t.timeout_now_sent {
            return;
        }
        if leader.peers.get(peer).is_some_and(|p| p.matched >= last) {
            t.timeout_now_sent = true;
            let req = TimeoutNowRequest { term, leader_id: self.id.clone(), cluster_id: None };
            self.send(peer.clone(), Body::TimeoutNow(req));
        }
    }

    pub(crate) fn tick_transfer(&mut self) {
        let limit = self.cfg.candidate_timeout_ticks * 2;
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(t) = &mut leader.transfer else { return };
        t.elapsed += 1;
        if t.elapsed >= limit {
            tracing::warn!(target = %t.target, "leadership transfer timed out");
            leader.transfer = None;
            self.ready.transfer_aborted = true;
        }
    }

    pub(crate) fn handle_timeout_now(&mut self, from: ServerId, rpc_id: u64, _req: TimeoutNowRequest) {
        let body = Body::TimeoutNowResponse(TimeoutNowResponse { term: self.hard.term });
        self.reply(from.clone(), rpc_id, body, false);
        if self.is_leader() || !self.is_voter() {
            return;
        }
        tracing::info!(id = %self.id, from = %from, "TimeoutNow received; starting election");
        self.start_election(true);
    }
}

#[cfg(test)]
mod tests;
