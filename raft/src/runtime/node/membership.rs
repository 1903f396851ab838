//! Membership for the main task: configuration changes with `prev_index`
//! guards, catching a new voter up as a non-voter before promoting it, and
//! telling observers about configuration changes.

use super::*;

/// A server added with `add_voter` that is catching up as a non-voter.
pub(super) struct Promotion {
    pub(super) id: ServerId,
    pub(super) address: ServerAddress,
    /// The configuration that added it as a non-voter; promote only once
    /// this is committed.
    pub(super) after_index: u64,
    pub(super) tx: oneshot::Sender<Result<u64, Error>>,
}

impl<R: Send + 'static> Node<R> {
    /// Handles a membership change request. A server added as a voter is
    /// first added as a non-voter and promoted once it has caught up.
    pub(super) fn on_change_membership(
        &mut self,
        change: MembershipChange,
        prev_index: u64,
        tx: oneshot::Sender<Result<u64, Error>>,
    ) {
        if !self.promotions.is_empty() {
            let _ = tx.send(Err(Error::ConfigurationChangeInProgress));
            return;
        }
        if let MembershipChange::AddVoter(id, address) = &change {
            let existing = self.t.core.configuration().0.server(id).cloned();
            let needs_catch_up = existing.as_ref().is_none_or(|s| s.suffrage == Suffrage::Nonvoter);
            if needs_catch_up && self.t.core.is_leader() {
                let (id, address) = (id.clone(), address.clone());
                let staged = match existing {
                    // Already a non-voter: promote once caught up.
                    Some(_) => self.check_prev_index(prev_index).map(|()| self.t.core.configuration().1),
                    None => {
                        let add = MembershipChange::AddNonvoter(id.clone(), address.clone());
                        self.membership_change(add, prev_index)
                    }
                };
                match staged {
                    Ok(after_index) => {
                        self.promotions.push(Promotion { id, address, after_index, tx });
                        self.advance_promotions();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
                return;
            }
        }
        match self.membership_change(change, prev_index) {
            Ok(index) => {
                let term = self.t.core.term();
                self.waiters.insert(index, Pending::new(term, Waiter::Index(tx)));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    }

    /// Notifies observers of servers added, changed or removed since the
    /// configuration last seen.
    pub(super) fn observe_configuration(&mut self) {
        let (config, index) = self.t.core.configuration();
        if index == self.seen_config.1 {
            return;
        }
        for s in &config.servers {
            if self.seen_config.0.server(&s.id) != Some(s) {
                self.t.shared.observers.notify(Observation::PeerChanged(s.clone()));
            }
        }
        for s in &self.seen_config.0.servers {
            if config.server(&s.id).is_none() {
                self.t.shared.observers.notify(Observation::PeerRemoved(s.id.clone()));
            }
        }
        self.seen_config = (config.clone(), index);
    }

    /// Promotes non-voters that are being added as voters once their log has
    /// caught up with the leader's (within one pipeline window), so adding a
    /// server never stalls commits while it copies the log.
    pub(super) fn advance_promotions(&mut self) {
        if self.promotions.is_empty() {
            return;
        }
        if !self.t.core.is_leader() {
            for p in self.promotions.drain(..) {
                let _ = p.tx.send(Err(Error::LeadershipLost));
            }
            return;
        }
        let margin = (self.t.config.max_append_entries * self.t.config.max_inflight_append_entries) as u64;
        let last = self.t.core.last_index();
        let commit = self.t.core.commit_index();
        let progress = self.t.core.peer_progress();
        let mut waiting = Vec::new();
        for p in std::mem::take(&mut self.promotions) {
            let caught_up = progress.iter().any(|pp| pp.id == p.id && pp.matched + margin >= last);
            if commit < p.after_index || !caught_up {
                waiting.push(p);
                continue;
            }
            let mut next = self.t.core.configuration().0.clone();
            match next.servers.iter_mut().find(|s| s.id == p.id) {
                Some(s) => {
                    s.suffrage = Suffrage::Voter;
                    s.address = p.address.clone();
                }
                None => {
                    let _ = p.tx.send(Err(Error::UnknownServer(p.id)));
                    continue;
                }
            }
            match self.t.core.propose_configuration(next) {
                Ok(index) => {
                    tracing::info!(server = %p.id, index, "caught-up non-voter promoted to voter");
                    let term = self.t.core.term();
                    self.waiters.insert(index, Pending::new(term, Waiter::Index(p.tx)));
                }
                Err(Refusal::ConfigurationChangeInProgress) => waiting.push(p),
                Err(r) => {
                    let _ = p.tx.send(Err(self.refusal(r)));
                }
            }
        }
        self.promotions = waiting;
    }

    pub(super) fn membership_change(
        &mut self,
        change: MembershipChange,
        prev_index: u64,
    ) -> Result<u64, Error> {
        if !self.t.core.is_leader() {
            return Err(self.refusal(Refusal::NotLeader(self.t.core.leader().cloned())));
        }
        self.check_prev_index(prev_index)?;
        let mut next: Configuration = self.t.core.configuration().0.clone();
        match change {
            MembershipChange::AddVoter(id, address) => match next.servers.iter_mut().find(|s| s.id == id) {
                Some(s) => {
                    s.suffrage = Suffrage::Voter;
                    s.address = address;
                }
                None => next.servers.push(Server { suffrage: Suffrage::Voter, id, address }),
            },
            MembershipChange::AddNonvoter(id, address) => {
                match next.servers.iter_mut().find(|s| s.id == id) {
                    Some(s) => s.address = address,
                    None => next.servers.push(Server { suffrage: Suffrage::Nonvoter, id, address }),
                }
            }
            MembershipChange::DemoteVoter(id) => match next.servers.iter_mut().find(|s| s.id == id) {
                Some(s) => s.suffrage = Suffrage::Nonvoter,
                None => return Err(Error::UnknownServer(id)),
            },
            MembershipChange::RemoveServer(id) => {
                if next.server(&id).is_none() {
                    return Err(Error::UnknownServer(id));
                }
                next.servers.retain(|s| s.id != id);
            }
        }
        self.t.core.propose_configuration(next).map_err(|r| self.refusal(r))
    }

    /// Refuses a change based on a stale view of the configuration.
    pub(super) fn check_prev_index(&self, prev_index: u64) -> Result<(), Error> {
        let index = self.t.core.configuration().1;
        if prev_index != 0 && prev_index != index {
            return Err(Error::InvalidConfig(format!(
                "configuration changed since index {prev_index} (latest is {index})"
            )));
        }
        Ok(())
    }
}
