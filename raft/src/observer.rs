//! Observers: a service can watch what a node goes through (role and leader
//! changes, membership changes, peers that stop or resume answering, vote
//! requests) by registering an [`Observer`] with
//! [`Raft::register_observer`](crate::Raft::register_observer).
//!
//! ```
//! # async fn demo<F: raft::Fsm>(raft: raft::Raft<F>) {
//! use raft::observer::{Observation, Observer};
//! let (tx, mut rx) = tokio::sync::mpsc::channel(64);
//! let only_leaders = |o: &Observation| matches!(o, Observation::LeaderChanged(_));
//! let id = raft.register_observer(Observer::new(tx, false, Some(std::sync::Arc::new(only_leaders))));
//! if let Some(Observation::LeaderChanged(leader)) = rx.recv().await {
//!     tracing::info!(?leader, "new leader");
//! }
//! raft.deregister_observer(id);
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::types::{RaftState, Server, ServerAddress, ServerId};

/// Something a node went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The node's role changed. `StateChanged(RaftState::Removed)` tells
    /// that this server learned it was removed from the cluster (terminal:
    /// stop it, or wipe its data and join it as a new server).
    StateChanged(RaftState),
    /// The leader this node knows of changed.
    LeaderChanged(Option<(ServerId, ServerAddress)>),
    /// A server joined the configuration, or its suffrage or address changed.
    PeerChanged(Server),
    /// A server left the configuration.
    PeerRemoved(ServerId),
    /// (Leader) a peer stopped answering.
    FailedHeartbeat {
        /// The peer.
        peer: ServerId,
        /// How long ago it last answered, if ever.
        last_contact: Option<Duration>,
    },
    /// (Leader) a peer answers again after failures.
    ResumedHeartbeat {
        /// The peer.
        peer: ServerId,
    },
    /// A vote (not pre-vote) was requested from this node.
    RequestVote {
        /// The candidate.
        candidate: ServerId,
        /// The term it campaigns in.
        term: u64,
    },
    /// (Leader) a follower's log no longer holds entries it had
    /// acknowledged (its disk was replaced or wiped, or the tail of its log
    /// was cut off after damage): the leader reset its progress and is
    /// re-replicating the missing entries (or a snapshot) to it.
    FollowerLogReset {
        /// The follower.
        peer: ServerId,
        /// The index the follower had acknowledged before.
        matched: u64,
        /// The follower's last log index according to its answer.
        last_log_index: u64,
    },
    /// A server of another cluster was met: this node refused its requests,
    /// or it refused this node's. Reported at most every 30 seconds per
    /// peer.
    ClusterMismatch {
        /// The other server.
        peer: ServerId,
        /// This node's cluster id.
        ours: crate::types::ClusterId,
        /// The other server's cluster id.
        theirs: crate::types::ClusterId,
    },
}

/// Decides which observations an observer receives.
pub type ObservationFilter = Arc<dyn Fn(&Observation) -> bool + Send + Sync>;

/// A registration: where observations go and how.
///
/// A *non-blocking* observer gets each observation with `try_send`; when its
/// channel is full the observation is dropped and counted
/// ([`Observer::dropped`]). A *blocking* observer never loses observations:
/// they queue (unbounded) in front of its channel until it has room. The
/// node itself never waits for an observer either way.
#[derive(Clone)]
pub struct Observer {
    sender: mpsc::Sender<Observation>,
    blocking: bool,
    filter: Option<ObservationFilter>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("blocking", &self.blocking)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Observer {
    /// Creates an observer sending to `sender`, optionally filtered.
    pub fn new(sender: mpsc::Sender<Observation>, blocking: bool, filter: Option<ObservationFilter>) -> Self {
        Self { sender, blocking, filter, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Observations dropped because a non-blocking observer's channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Identifies a registered observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObserverId(u64);

enum Delivery {
    Direct(mpsc::Sender<Observation>, Arc<AtomicU64>),
    Queued(mpsc::UnboundedSender<Observation>),
}

struct Registration {
    filter: Option<ObservationFilter>,
    delivery: Delivery,
}

/// The registered observers of one node.
#[derive(Default)]
pub(crate) struct Observers {
    inner: Mutex<(u64, BTreeMap<u64, Registration>)>,
}

impl Observers {
    pub(crate) fn register(&self, observer: Observer) -> ObserverId {
        let delivery = match (observer.blocking, tokio::runtime::Handle::try_current()) {
            (true, Ok(handle)) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<Observation>();
                let sender = observer.sender.clone();
                handle.spawn(async move {
                    while let Some(o) = rx.recv().await {
                        if sender.send(o).await.is_err() {
                            return;
                        }
                    }
                });
                Delivery::Queued(tx)
            }
            _ => Delivery::Direct(observer.sender.clone(), observer.dropped.clone()),
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += 1;
        let id = inner.0;
        inner.1.insert(id, Registration { filter: observer.filter, delivery });
        ObserverId(id)
    }

    pub(crate) fn deregister(&self, id: ObserverId) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1.remove(&id.0).is_some()
    }

    pub(crate) fn notify(&self, observation: Observation) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for reg in inner.1.values() {
            if reg.filter.as_ref().is_some_and(|f| !f(&observation)) {
                continue;
            }
            match &reg.delivery {
                Delivery::Direct(tx, dropped) => {
                    if tx.try_send(observation.clone()).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Delivery::Queued(tx) => {
                    let _ = tx.send(observation.clone());
                }
            }
        }
    }
}
