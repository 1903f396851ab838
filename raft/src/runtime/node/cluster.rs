//! Cluster identity in the main task: every request this node sends is
//! stamped with its cluster id ([`Node::stamp`]), and every request it
//! receives, whatever the transport, passes [`Node::admit`] first, which
//! refuses requests of another cluster.
//!
//! A node without a cluster id adopts the id of the first leader that
//! contacts it (AppendEntries or InstallSnapshot): the id is made durable
//! through the log writer before that request, or any later one, is
//! handled. A node whose store predates cluster ids and that becomes leader
//! derives one from its committed configuration the same way, so an
//! upgraded cluster gets an id without operator action.

use tokio::time::{Duration, Instant};

use super::*;
use crate::runtime::identity::mismatch_message;
use crate::types::ClusterId;

/// How often a refusal involving the same peer is logged at warn level
/// (and reported to observers); the others are logged at debug level.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The main task's cluster-identity bookkeeping.
pub(super) struct ClusterGuard {
    /// The cluster this node belongs to (`None`: it adopts the first
    /// leader's).
    pub(super) id: Option<ClusterId>,
    /// A cluster id being made durable, and the requests waiting for it.
    adopting: Option<Adoption>,
    /// When a mismatch with each peer was last reported at warn level.
    warned: PeerWarnings,
    /// When each peer's refusal as a removed server was last reported at
    /// warn level (see `Node::peer_says_removed`).
    pub(super) removed_peers: PeerWarnings,
}

/// When a refusal by each peer was last reported at warn level.
#[derive(Default)]
pub(super) struct PeerWarnings(HashMap<ServerId, Instant>);

impl PeerWarnings {
    /// Whether a refusal by `peer` should be reported loudly now (at most
    /// every [`WARN_EVERY`] per peer).
    pub(super) fn due(&mut self, peer: &ServerId) -> bool {
        let now = Instant::now();
        match self.0.get(peer) {
            Some(at) if now.duration_since(*at) < WARN_EVERY => false,
            _ => {
                if self.0.len() > 1024 {
                    self.0.retain(|_, at| now.duration_since(*at) < WARN_EVERY);
                }
                self.0.insert(peer.clone(), now);
                true
            }
        }
    }
}

struct Adoption {
    id: ClusterId,
    /// The persist job recording it.
    seq: u64,
    /// Requests received meanwhile, handled in order once it is durable.
    queued: Vec<InboundRpc>,
}

impl ClusterGuard {
    pub(super) fn new(id: Option<ClusterId>) -> Self {
        Self { id, adopting: None, warned: PeerWarnings::default(), removed_peers: PeerWarnings::default() }
    }

    /// Whether a mismatch with `peer` should be reported loudly now.
    fn should_warn(&mut self, peer: &ServerId) -> bool {
        self.warned.due(peer)
    }
}

/// The sender, its cluster id, and whether only a leader sends this request.
fn sender_of(request: &InboundRequest) -> (ServerId, Option<ClusterId>, bool) {
    match request {
        InboundRequest::Rpc(RpcRequest::AppendEntries(r)) => {
            (r.leader_id.clone(), r.cluster_id.clone(), true)
        }
        InboundRequest::Rpc(RpcRequest::RequestVote(r)) => {
            (r.candidate_id.clone(), r.cluster_id.clone(), false)
        }
        InboundRequest::Rpc(RpcRequest::RequestPreVote(r)) => {
            (r.candidate_id.clone(), r.cluster_id.clone(), false)
        }
        InboundRequest::Rpc(RpcRequest::TimeoutNow(r)) => (r.leader_id.clone(), r.cluster_id.clone(), false),
        InboundRequest::Rpc(RpcRequest::ReadIndex(r)) => (r.requester.clone(), r.cluster_id.clone(), false),
        InboundRequest::InstallSnapshot(r, _) => (r.leader_id.clone(), r.cluster_id.clone(), true),
    }
}

impl<R: Send + 'static> Node<R> {
    /// Lets an inbound request through if it is of this node's cluster (or
    /// carries no id). Refuses one of another cluster, answering
    /// [`TransportError::Rejected`] naming both ids. Holds it back (returns
    /// `None`) while a cluster id is being adopted.
    pub(super) fn admit(&mut self, rpc: InboundRpc) -> Option<InboundRpc> {
        let (from, theirs, from_leader) = sender_of(&rpc.request);
        if let Some(adopting) = &mut self.cluster.adopting {
            match &theirs {
                Some(theirs) if theirs != &adopting.id => {
                    let ours = adopting.id.clone();
                    let theirs = theirs.clone();
                    self.refuse(rpc, from, ours, theirs);
                }
                _ => adopting.queued.push(rpc),
            }
            return None;
        }
        let Some(theirs) = theirs else { return Some(rpc) };
        match &self.cluster.id {
            Some(ours) if *ours == theirs => Some(rpc),
            Some(ours) => {
                let ours = ours.clone();
                self.refuse(rpc, from, ours, theirs);
                None
            }
            None if from_leader => {
                tracing::info!(leader = %from, cluster = %theirs, "joining the cluster of the first leader to contact this node");
                self.adopt(theirs, vec![rpc]);
                None
            }
            None => Some(rpc),
        }
    }

    /// Answers a request of another cluster with a refusal the sender can
    /// read, and says so (loudly at most every [`WARN_EVERY`] per sender).
    fn refuse(&mut self, rpc: InboundRpc, from: ServerId, ours: ClusterId, theirs: ClusterId) {
        if self.cluster.should_warn(&from) {
            tracing::warn!(
                sender = %from,
                ours = %ours,
                theirs = %theirs,
                "refusing requests from a server of another cluster: it lists this node's address in \
                 its configuration; fix that cluster's configuration or this node's address"
            );
            let observation =
                Observation::ClusterMismatch { peer: from, ours: ours.clone(), theirs: theirs.clone() };
            self.shared.observers.notify(observation);
        } else {
            tracing::debug!(sender = %from, ours = %ours, theirs = %theirs, "refused a request of another cluster");
        }
        rpc.reply.send(Err(TransportError::Rejected(mismatch_message(&ours, &theirs))));
    }

    /// Starts recording `id` as this node's cluster id; `queued` requests
    /// are handled once it is durable.
    fn adopt(&mut self, id: ClusterId, queued: Vec<InboundRpc>) {
        self.persist(PersistJob { cluster_id: Some(id.clone()), ..PersistJob::default() });
        let seq = self.store.last_seq();
        self.cluster.adopting = Some(Adoption { id, seq, queued });
    }

    /// Called when persist jobs up to `seq` are durable: completes an
    /// adoption they recorded and handles the requests that waited for it.
    pub(super) fn adoption_persisted(&mut self, seq: u64) {
        if self.cluster.adopting.as_ref().is_none_or(|a| a.seq > seq) {
            return;
        }
        let Some(Adoption { id, queued, .. }) = self.cluster.adopting.take() else { return };
        tracing::info!(cluster = %id, "cluster id recorded");
        self.set_cluster_id(id);
        for rpc in queued {
            self.on_rpc(rpc);
        }
    }

    fn set_cluster_id(&mut self, id: ClusterId) {
        self.shared.set_cluster_id(Some(id.clone()));
        self.cluster.id = Some(id);
    }

    /// A node bootstrapping in place records the cluster id: its explicit
    /// or stored id, else the one derived from `configuration`. The id is
    /// queued for the writer before the bootstrap entry, so it is durable
    /// whenever that entry is.
    pub(super) fn bootstrap_cluster_id(&mut self, configuration: &Configuration) {
        if self.cluster.id.is_some() {
            return;
        }
        let id = ClusterId::derive(configuration);
        tracing::info!(cluster = %id, "bootstrapping a new cluster");
        self.persist(PersistJob { cluster_id: Some(id.clone()), ..PersistJob::default() });
        self.set_cluster_id(id);
    }

    /// A leader without a cluster id (its store predates them) derives one
    /// from its committed configuration; its followers adopt it.
    pub(super) fn assign_legacy_cluster_id(&mut self) {
        if self.cluster.id.is_some() || self.cluster.adopting.is_some() || !self.core.is_leader() {
            return;
        }
        let id = ClusterId::derive(self.core.committed_configuration().0);
        tracing::info!(cluster = %id, "this cluster has no id yet (its stores predate cluster ids): assigning one");
        self.adopt(id, Vec::new());
    }

    /// Stamps an outbound request with this node's cluster id.
    pub(super) fn stamp(&self, body: &mut Body) {
        let Some(id) = &self.cluster.id else { return };
        let slot = match body {
            Body::AppendEntries(r) => &mut r.cluster_id,
            Body::RequestVote(r) => &mut r.cluster_id,
            Body::RequestPreVote(r) => &mut r.cluster_id,
            Body::TimeoutNow(r) => &mut r.cluster_id,
            _ => return,
        };
        *slot = Some(id.clone());
    }

    /// A peer refused this node's requests as of another cluster.
    pub(super) fn peer_in_other_cluster(&mut self, peer: ServerId, theirs: ClusterId, ours: ClusterId) {
        if self.cluster.should_warn(&peer) {
            let address = self.address_of(&peer).map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(
                peer = %peer,
                address = %address,
                ours = %ours,
                theirs = %theirs,
                "the server at this peer's address belongs to another cluster and refuses this \
                 node's requests: fix the peer's address or remove it from the configuration"
            );
            self.shared.observers.notify(Observation::ClusterMismatch { peer, ours, theirs });
        }
    }
}
