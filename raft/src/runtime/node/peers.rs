//! Peers in the main task: one peer task per server this node sends to,
//! started when the first message for it is routed and stopped when the
//! server leaves the configuration; and the reports those tasks (and
//! background transfers) send back.

use super::*;

/// The main task's peer tasks and their reports.
pub(super) struct Peers {
    /// The running peer tasks, by server.
    pub(super) handles: HashMap<ServerId, PeerHandle>,
    /// Where peer tasks and background transfers report (cloned into each).
    pub(super) events_tx: mpsc::UnboundedSender<PeerEvent>,
    /// Their reports.
    pub(super) events: mpsc::UnboundedReceiver<PeerEvent>,
}

impl Peers {
    pub(super) fn new(
        events_tx: mpsc::UnboundedSender<PeerEvent>,
        events: mpsc::UnboundedReceiver<PeerEvent>,
    ) -> Self {
        Self { handles: HashMap::new(), events_tx, events }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Handles a report of a peer task or a background transfer.
    pub(super) fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Response(msg) => self.core.step(msg),
            PeerEvent::Unreachable(peer) => {
                if self.core.is_leader() {
                    let tick = self.config.tick_interval();
                    let last_contact = self
                        .core
                        .peer_progress()
                        .into_iter()
                        .find(|p| p.id == peer)
                        .map(|p| tick * p.ticks_since_contact.min(u32::MAX as u64) as u32);
                    self.shared.observers.notify(Observation::FailedHeartbeat { peer, last_contact });
                }
            }
            PeerEvent::RestoreStored { result, tx } => self.restore_stored(result, tx),
            PeerEvent::ClusterMismatch { peer, theirs, ours } => {
                self.peer_in_other_cluster(peer, theirs, ours)
            }
            PeerEvent::PeerRemoved(peer) => self.peer_says_removed(peer),
            PeerEvent::Reachable(peer) => {
                if self.core.is_leader() {
                    self.shared.observers.notify(Observation::ResumedHeartbeat { peer });
                }
            }
            PeerEvent::SnapshotSent { peer, index, term, success } => {
                self.core.snapshot_sent(&peer, index, term, success)
            }
            PeerEvent::SnapshotReceived { leader, term, result, reply } => {
                self.snapshot_received(leader, term, result, reply)
            }
            PeerEvent::Fetched { fetch, result } => self.on_fetched(fetch, result),
        }
    }

    /// Sends a message: an answer to an inbound RPC, or a request to a peer.
    pub(super) fn route(&mut self, msg: Message) {
        if msg.rpc_id != 0 {
            self.answer(msg);
            return;
        }
        let mut msg = msg;
        self.stamp(&mut msg.body);
        if let Some(p) = self.peer_task(&msg.to) {
            p.send(msg);
        }
    }

    /// The task sending to peer `to`, started if there is none (`None`:
    /// the peer's address is unknown).
    pub(super) fn peer_task(&mut self, to: &ServerId) -> Option<&PeerHandle> {
        if !self.peers.handles.contains_key(to) {
            let Some(addr) = self.address_of(to) else {
                tracing::debug!(peer = %to, "no address for peer; dropping message");
                return None;
            };
            let handle = peer::spawn(
                self.id().clone(),
                to.clone(),
                addr,
                self.transport.clone(),
                self.snapshots.store.clone(),
                self.peers.events_tx.clone(),
            );
            self.peers.handles.insert(to.clone(), handle);
        }
        self.peers.handles.get(to)
    }

    /// Stops peer tasks for servers no longer in the configuration (or
    /// whose address changed).
    pub(super) fn prune_peers(&mut self) {
        let config = self.core.configuration().0;
        // A leader keeps replicating to a server it removes until the
        // removal commits: keep that peer task too.
        // So does a server being told its removal committed.
        let tracked: HashSet<ServerId> =
            self.core.peer_progress().into_iter().map(|p| p.id).chain(self.core.departing_peers()).collect();
        let stale: Vec<ServerId> = self
            .peers
            .handles
            .iter()
            .filter(|(id, p)| match config.server(id) {
                Some(s) => s.address != p.addr,
                None => !tracked.contains(*id),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(p) = self.peers.handles.remove(&id) {
                p.task.abort();
            }
        }
    }
}
