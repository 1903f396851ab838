//! [`AdminBackend`]: the operations the admin service performs on a node,
//! implemented for [`raft::Raft`]; and [`AdminSlot`], the late-bound place a
//! transport's admin service finds its node.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use raft::{
    ConfChange, Configuration, Fsm, Metrics, Raft, RaftState, ServerAddress, ServerId, SnapshotMeta,
    SnapshotReader,
};

/// A node's role, leader and log indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's role.
    pub state: RaftState,
    /// The leader it knows of.
    pub leader: Option<(ServerId, ServerAddress)>,
    /// Index of the last entry applied to the FSM.
    pub applied_index: u64,
    /// Last index in the node's log.
    pub last_index: u64,
    /// First index in the node's log: entries before it were compacted
    /// away behind a snapshot. See [`Raft::first_index`].
    pub first_index: u64,
}

/// What the admin service needs from a node. Implemented for every
/// [`Raft<F>`]; implement it yourself to put the service in front of
/// something else (a proxy, a test double).
#[async_trait]
pub trait AdminBackend: Send + Sync + 'static {
    /// The latest configuration and the index of the entry that carried it.
    async fn get_configuration(&self) -> raft::Result<(Configuration, u64)>;
    /// See [`Raft::add_voter`].
    async fn add_voter(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> raft::Result<u64>;
    /// See [`Raft::add_nonvoter`].
    async fn add_nonvoter(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> raft::Result<u64>;
    /// See [`Raft::demote_voter`].
    async fn demote_voter(&self, id: ServerId, prev_index: u64, timeout: Duration) -> raft::Result<u64>;
    /// See [`Raft::remove_server`].
    async fn remove_server(&self, id: ServerId, prev_index: u64, timeout: Duration) -> raft::Result<u64>;
    /// See [`Raft::change_membership`]: applies `changes` atomically
    /// through a joint configuration and answers C_new's index.
    ///
    /// The default refuses with [`raft::Error::InvalidConfig`] saying the
    /// backend does not support joint changes, so backends written before
    /// this method existed still compile; [`Raft`] implements it.
    async fn change_membership(
        &self,
        changes: Vec<ConfChange>,
        prev_index: u64,
        timeout: Duration,
    ) -> raft::Result<u64> {
        let _ = (prev_index, timeout);
        tracing::warn!(
            count = changes.len(),
            "joint membership change refused: this admin backend does not support it"
        );
        Err(raft::Error::InvalidConfig("this admin backend does not support joint membership changes".into()))
    }
    /// Hands leadership to `target`, or to the best follower when `None`.
    async fn leadership_transfer(&self, target: Option<(ServerId, ServerAddress)>) -> raft::Result<()>;
    /// Takes a snapshot now and compacts the log behind it; returns what
    /// the snapshot holds once the compaction is done (the log's new start
    /// is then [`NodeStatus::first_index`]). See [`Raft::snapshot`].
    async fn snapshot(&self) -> raft::Result<SnapshotMeta>;
    /// Commits a barrier and waits until everything before it is applied;
    /// returns its index. See [`Raft::barrier`].
    async fn barrier(&self, timeout: Duration) -> raft::Result<u64>;
    /// Confirms with a quorum that this node still leads. See
    /// [`Raft::verify_leader`].
    async fn verify_leader(&self) -> raft::Result<()>;
    /// HashiCorp-style statistics.
    fn stats(&self) -> BTreeMap<String, String>;
    /// Role, leader and indexes.
    fn status(&self) -> NodeStatus;
    /// The node's current [`Metrics`] (per-follower progress on the
    /// leader), for the `Members` call. The default (`None`) makes
    /// `Members` answer the configuration without progress, so backends
    /// written before this method existed still compile.
    fn metrics(&self) -> Option<Metrics> {
        None
    }
    /// Opens the node's latest snapshot, taking one first if anything was
    /// applied since the last (see [`Raft::snapshot`]), for the
    /// `DownloadSnapshot` call. The default refuses with
    /// [`raft::Error::InvalidConfig`].
    async fn latest_snapshot(&self) -> raft::Result<(SnapshotMeta, SnapshotReader)> {
        tracing::warn!("snapshot download refused: this admin backend does not support it");
        Err(raft::Error::InvalidConfig("this admin backend does not support snapshot downloads".into()))
    }
    /// Replaces the cluster's state with a snapshot (see [`Raft::restore`]),
    /// for the `RestoreSnapshot` call. The default refuses with
    /// [`raft::Error::InvalidConfig`].
    async fn restore(
        &self,
        meta: SnapshotMeta,
        reader: SnapshotReader,
        timeout: Duration,
    ) -> raft::Result<()> {
        let _ = (reader, timeout);
        tracing::warn!(size = meta.size, "snapshot restore refused: this admin backend does not support it");
        Err(raft::Error::InvalidConfig("this admin backend does not support snapshot restores".into()))
    }
}

#[async_trait]
impl<F: Fsm> AdminBackend for Raft<F>
where
    Raft<F>: Send + Sync,
{
    async fn get_configuration(&self) -> raft::Result<(Configuration, u64)> {
        Raft::get_configuration(self).await
    }

    async fn add_voter(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> raft::Result<u64> {
        Raft::add_voter(self, id, addr, prev_index, timeout).await
    }

    async fn add_nonvoter(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> raft::Result<u64> {
        Raft::add_nonvoter(self, id, addr, prev_index, timeout).await
    }

    async fn demote_voter(&self, id: ServerId, prev_index: u64, timeout: Duration) -> raft::Result<u64> {
        Raft::demote_voter(self, id, prev_index, timeout).await
    }

    async fn remove_server(&self, id: ServerId, prev_index: u64, timeout: Duration) -> raft::Result<u64> {
        Raft::remove_server(self, id, prev_index, timeout).await
    }

    async fn change_membership(
        &self,
        changes: Vec<ConfChange>,
        prev_index: u64,
        timeout: Duration,
    ) -> raft::Result<u64> {
        Raft::change_membership(self, changes, prev_index, timeout).await
    }

    async fn leadership_transfer(&self, target: Option<(ServerId, ServerAddress)>) -> raft::Result<()> {
        match target {
            None => Raft::leadership_transfer(self).await,
            Some((id, addr)) => Raft::leadership_transfer_to_server(self, id, addr).await,
        }
    }

    async fn snapshot(&self) -> raft::Result<SnapshotMeta> {
        let handle = Raft::snapshot(self).await?;
        Ok(handle.meta().clone())
    }

    async fn barrier(&self, timeout: Duration) -> raft::Result<u64> {
        Raft::barrier(self, timeout).await
    }

    async fn verify_leader(&self) -> raft::Result<()> {
        Raft::verify_leader(self).await
    }

    fn stats(&self) -> BTreeMap<String, String> {
        Raft::stats(self)
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            state: Raft::state(self),
            leader: Raft::leader(self),
            applied_index: Raft::applied_index(self),
            last_index: Raft::last_index(self),
            first_index: Raft::first_index(self),
        }
    }

    fn metrics(&self) -> Option<Metrics> {
        let metrics = Raft::metrics(self).borrow().clone();
        Some(metrics)
    }

    async fn latest_snapshot(&self) -> raft::Result<(SnapshotMeta, SnapshotReader)> {
        let handle = Raft::snapshot(self).await?;
        handle.open().await
    }

    async fn restore(
        &self,
        meta: SnapshotMeta,
        reader: SnapshotReader,
        timeout: Duration,
    ) -> raft::Result<()> {
        Raft::restore(self, meta, reader, timeout).await
    }
}

/// Where a transport's admin service finds its node. Cheap to clone; get it
/// from [`GrpcTransport::admin`](crate::GrpcTransport::admin) before handing
/// the transport to [`Raft::new`], then [`attach`](AdminSlot::attach) the
/// node. Until then admin calls fail with `UNAVAILABLE`.
#[derive(Clone, Default)]
pub struct AdminSlot(Arc<RwLock<Option<Arc<dyn AdminBackend>>>>);

impl AdminSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves admin calls from `backend` (typically a [`Raft`] handle),
    /// replacing any earlier one.
    pub fn attach(&self, backend: impl AdminBackend) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(backend));
    }

    /// Stops serving admin calls; later calls fail with `UNAVAILABLE`.
    pub fn detach(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The attached backend, if any.
    pub(crate) fn get(&self) -> Option<Arc<dyn AdminBackend>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::fmt::Debug for AdminSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSlot").field("attached", &self.get().is_some()).finish()
    }
}
