//! Snapshot transfers of a peer task: the core asked (through
//! `Ready::snapshots_to_send`) that a follower be sent the newest stored
//! snapshot; its peer task streams it in the background once the peer's
//! back-off allows, and reports the outcome to the main task as
//! [`PeerEvent::SnapshotSent`], which the core waits for.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::PeerEvent;
use crate::error::{Error, StorageError};
use crate::message::{InstallSnapshotRequest, InstallSnapshotResponse};
use crate::snapshot::SnapshotStore;
use crate::transport::Transport;
use crate::types::{ClusterId, ServerAddress, ServerId};

/// What the leader puts in the InstallSnapshot header, fixed when the core
/// asked for the transfer.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotOffer {
    /// The leader's term.
    pub(crate) term: u64,
    /// The leader's cluster, stamped on the request (`None`: not known yet).
    pub(crate) cluster_id: Option<ClusterId>,
}

/// The outcome of one transfer: the index the snapshot covered and the
/// follower's answer.
pub(super) type StreamResult = Result<(u64, InstallSnapshotResponse), Error>;

/// Where a transfer stands.
enum Stage {
    /// Waiting for the peer's back-off to end.
    Waiting,
    /// Streaming in its own task (so appends and heartbeats to the same
    /// peer never wait behind it).
    Streaming(JoinHandle<StreamResult>),
}

/// A snapshot transfer the core is waiting for. The main task is told how
/// it ended exactly once: by [`Transfer::report`], or, if the transfer is
/// dropped unfinished (its peer task was stopped because the peer left the
/// configuration or moved), as a failure so the core asks again.
pub(super) struct Transfer {
    /// The header to send.
    pub(super) offer: SnapshotOffer,
    stage: Stage,
    /// The follower, for the report.
    peer: ServerId,
    /// The main task; `None` once the outcome was reported.
    events: Option<tokio::sync::mpsc::UnboundedSender<PeerEvent>>,
}

impl Transfer {
    /// A transfer to `peer` waiting for the back-off to end.
    pub(super) fn new(
        peer: ServerId,
        offer: SnapshotOffer,
        events: tokio::sync::mpsc::UnboundedSender<PeerEvent>,
    ) -> Self {
        Self { offer, stage: Stage::Waiting, peer, events: Some(events) }
    }

    /// Whether it still waits for the back-off.
    pub(super) fn waiting(&self) -> bool {
        matches!(self.stage, Stage::Waiting)
    }

    /// Starts streaming the newest stored snapshot. `quiet`: the peer is
    /// known to be unreachable (its earlier attempts failed and were
    /// reported), so this retry logs at debug instead of info.
    pub(super) fn start(
        &mut self,
        local: ServerId,
        addr: ServerAddress,
        transport: Arc<dyn Transport>,
        snaps: Arc<dyn SnapshotStore>,
        quiet: bool,
    ) {
        let offer = self.offer.clone();
        let peer = self.peer.clone();
        self.stage = Stage::Streaming(crate::telemetry::polls::spawn(
            crate::telemetry::polls::TaskKind::Call,
            async move { stream(&*snaps, &*transport, &peer, &addr, offer, local, quiet).await },
        ));
    }

    /// Waits for the stream to end; never ends while waiting for the
    /// back-off.
    pub(super) async fn finished(&mut self) -> StreamResult {
        match &mut self.stage {
            Stage::Streaming(handle) => match handle.await {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(error = %e, "the snapshot stream task failed");
                    Err(Error::Shutdown)
                }
            },
            Stage::Waiting => std::future::pending().await,
        }
    }

    /// Tells the main task how the transfer ended.
    pub(super) fn report(mut self, index: u64, term: u64, success: bool) {
        if let Some(events) = self.events.take() {
            let peer = self.peer.clone();
            let _ = events.send(PeerEvent::SnapshotSent { peer, index, term, success });
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Stage::Streaming(handle) = &self.stage {
            handle.abort();
        }
        if let Some(events) = self.events.take() {
            tracing::debug!(peer = %self.peer, "snapshot transfer stopped unfinished");
            let peer = self.peer.clone();
            let term = self.offer.term;
            let _ = events.send(PeerEvent::SnapshotSent { peer, index: 0, term, success: false });
        }
    }
}

/// When a waiting transfer may start: waits until `at`, or forever when
/// there is nothing to wait for.
pub(super) async fn resume_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for the transfer's stream to end, or forever when there is none.
pub(super) async fn stream_end(transfer: &mut Option<Transfer>) -> StreamResult {
    match transfer {
        Some(t) => t.finished().await,
        None => std::future::pending().await,
    }
}

/// Opens the newest stored snapshot and streams it to a follower.
async fn stream(
    snaps: &dyn SnapshotStore,
    transport: &dyn Transport,
    peer: &ServerId,
    addr: &ServerAddress,
    offer: SnapshotOffer,
    leader_id: ServerId,
    quiet: bool,
) -> StreamResult {
    let newest = snaps
        .list()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Storage(StorageError::SnapshotNotFound("no snapshot to send".into())))?;
    let (meta, reader) = snaps.open(&newest.id).await?;
    let index = meta.index;
    if quiet {
        tracing::debug!(peer = %peer, index, size = meta.size, "streaming snapshot (retry to an unreachable peer)");
    } else {
        tracing::info!(peer = %peer, index, size = meta.size, "streaming snapshot");
    }
    let SnapshotOffer { term, cluster_id } = offer;
    let req = InstallSnapshotRequest { term, leader_id, meta, cluster_id };
    let resp = transport.install_snapshot(peer, addr, req, reader).await?;
    Ok((index, resp))
}
