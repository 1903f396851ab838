//! The main task once the core is removed from the cluster (terminal):
//! peer tasks stop after sending what is queued (a removed leader's last
//! heartbeat tells followers its removal committed), everything waiting
//! on the node's membership fails, and every later request fails at once
//! with [`Error::Removed`]. Committed entries keep being applied, and
//! [`Raft::shutdown`](crate::Raft::shutdown) still works.

use super::*;

impl<R: Send + 'static> Node<R> {
    /// Runs once, when the core first reports the removed state.
    pub(super) fn on_removed(&mut self) {
        tracing::error!(
            id = %self.id(),
            "this server was removed from the cluster configuration; every request now fails with \
             `Removed`. Stop it, or wipe its data directory and join it again as a new server"
        );
        // Restarting on this data directory must not bring it back.
        self.persist(PersistJob { mark_removed: true, ..PersistJob::default() });
        // Dropping a handle closes its queue: the task sends what is queued
        // (the removed leader's last heartbeat) and ends.
        self.peers.handles.clear();
        for p in self.membership.promotions.drain(..) {
            let _ = p.tx.send(Err(Error::Removed));
        }
        // A joint change that removed this leader is answered with C_new's
        // index if C_new is committed, else it fails.
        self.answer_joint_if_done();
        self.fail_joint(Error::Removed);
        if let Some(tx) = self.clients.transfer.take() {
            let _ = tx.send(Err(Error::Removed));
        }
        self.clients.fail_after(self.core.commit_index());
        let failure = self.read_failure(Refusal::Removed);
        self.reads.fail_all(&failure);
    }

    /// (Leader) a peer answered that it was removed from the cluster. For a
    /// server on its way out that is expected. For a member of the latest
    /// configuration (added back under the same id without wiping its
    /// data) it means the server can never catch up: say so, and end any
    /// `add_voter` or joint change waiting for it with
    /// [`Error::ServerRemoved`] instead of letting it time out.
    pub(super) fn peer_says_removed(&mut self, peer: ServerId) {
        if !self.core.is_leader() || self.core.configuration().0.server(&peer).is_none() {
            return;
        }
        if self.cluster.removed_peers.due(&peer) {
            let address = self.address_of(&peer).map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(
                peer = %peer,
                address = %address,
                "this member was removed from the cluster earlier and its data directory still says so: \
                 it ignores every request and cannot catch up. Stop it, wipe its data directory and start \
                 it again (it then catches up as a new server), or remove it from the configuration"
            );
        }
        let (refused, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.membership.promotions).into_iter().partition(|p| p.id == peer);
        self.membership.promotions = waiting;
        for p in refused {
            let _ = p.tx.send(Err(Error::ServerRemoved { id: p.id }));
        }
        self.fail_joint_staging(&peer);
    }

    /// Answers a request on a removed node. Returns `Flow::Stop` only for
    /// a shutdown request.
    pub(super) fn refuse_removed(&mut self, req: Request<R>) -> Flow {
        match req {
            Request::Apply { waiter, .. } => waiter.fail(Error::Removed),
            Request::ReadIndex { ticket } => {
                self.shared.reads.close(&ticket);
                ticket.resolve(Err(self.read_failure(Refusal::Removed)));
            }
            Request::LeaseRead { ticket } => {
                self.shared.lease_reads.close(&ticket);
                ticket.resolve(Err(self.read_failure(Refusal::Removed)));
            }
            Request::Bootstrap { tx, .. } => {
                let _ = tx.send(Err(Error::Removed));
            }
            Request::GetConfiguration { tx } => {
                let _ = tx.send(Err(Error::Removed));
            }
            Request::ChangeMembership { tx, .. } => {
                let _ = tx.send(Err(Error::Removed));
            }
            Request::ChangeMembershipJoint { tx, .. } => {
                let _ = tx.send(Err(Error::Removed));
            }
            Request::TransferLeadership { tx, .. } => {
                let _ = tx.send(Err(Error::Removed));
            }
            Request::Snapshot { tx } => {
                let _ = tx.send(Err(Error::Removed));
            }
            Request::Restore(restore) => {
                let _ = restore.tx.send(Err(Error::Removed));
            }
            // Local settings and shutdown still work.
            other @ (Request::Reload { .. } | Request::Shutdown { .. }) => return self.on_request(other),
        }
        Flow::Continue
    }
}
