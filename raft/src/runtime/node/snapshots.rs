//! Snapshot transfer for the main task: streaming the newest snapshot to
//! followers that need one, receiving a leader's snapshot into the local
//! store and installing it, and the snapshots the snapshot task takes
//! (their callers are answered once the log is compacted behind them).

use super::*;
use crate::core::InstalledSnapshot;
use crate::runtime::peer::SnapshotOffer;

/// The main task's snapshot task and snapshot transfers.
pub(super) struct Snapshots {
    /// The snapshot store.
    pub(super) store: Arc<dyn SnapshotStore>,
    /// The snapshot task.
    pub(super) task: Worker<SnapshotCmd>,
    /// Snapshots it took.
    pub(super) taken: mpsc::UnboundedReceiver<SnapshotTaken>,
    /// Background snapshot receptions and restores, aborted on shutdown
    /// (transfers to followers run in their peer tasks).
    pub(super) transfers: Vec<JoinHandle<()>>,
    /// User snapshot requests waiting for the log to be compacted behind
    /// their snapshot.
    pub(super) replies: Vec<SnapshotWaiter>,
}

/// A user snapshot request answered once a compaction is done.
pub(super) struct SnapshotWaiter {
    /// The persist sequence number of the compaction.
    seq: u64,
    /// The caller and its snapshot.
    pub(super) reply: SnapshotReply,
}

impl Snapshots {
    pub(super) fn new(
        store: Arc<dyn SnapshotStore>,
        task: Worker<SnapshotCmd>,
        taken: mpsc::UnboundedReceiver<SnapshotTaken>,
    ) -> Self {
        Self { store, task, taken, transfers: Vec::new(), replies: Vec::new() }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Receives a streamed snapshot into the local store in the background.
    pub(super) fn receive_snapshot(
        &mut self,
        req: InstallSnapshotRequest,
        data: SnapshotReader,
        reply: RpcReply,
    ) {
        if let Err(current) = self.core.snapshot_offered(&req.leader_id, req.term) {
            reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse {
                term: current,
                success: false,
            })));
            return;
        }
        if req.meta.index <= self.core.commit_index() {
            // Already covered (e.g. a newer snapshot came from an earlier
            // leader): nothing to install, as the core would say. Storing
            // it would not only be wasted: a store that keeps only its
            // newest snapshots drops it at once, the read-back check fails,
            // and the leader would resend it forever.
            tracing::debug!(index = req.meta.index, "offered snapshot already covered; not storing it");
            let term = self.core.term();
            let handle = tokio::spawn(async move {
                let mut data = data;
                if let Err(e) = tokio::io::copy(&mut data, &mut tokio::io::sink()).await {
                    tracing::debug!(error = %e, "draining a covered snapshot failed");
                }
                let resp = InstallSnapshotResponse { term, success: true };
                reply.send(Ok(RpcResponse::InstallSnapshot(resp)));
            });
            self.snapshots.transfers.push(handle);
            return;
        }
        let snaps = self.snapshots.store.clone();
        let events = self.peers.events_tx.clone();
        let telemetry = self.telemetry.install();
        let handle = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let result = store_snapshot(&*snaps, &req.meta, data).await.map_err(|e| e.to_string());
            if let Ok(meta) = &result {
                telemetry.received(started.elapsed(), meta.size);
            }
            let _ = events.send(PeerEvent::SnapshotReceived {
                leader: req.leader_id,
                term: req.term,
                result,
                reply,
            });
        });
        self.snapshots.transfers.push(handle);
    }

    /// A leader's snapshot is in the local store: the core decides whether
    /// to install it, and the leader is answered.
    pub(super) fn snapshot_received(
        &mut self,
        leader: ServerId,
        term: u64,
        result: Result<SnapshotMeta, String>,
        reply: RpcReply,
    ) {
        let meta = match result {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(leader = %leader, error = %e, "receiving a snapshot failed");
                reply.send(Err(TransportError::Other(format!("snapshot not installed: {e}"))));
                return;
            }
        };
        let (term, success) = match self.core.install_snapshot(&leader, term, meta.position()) {
            Err(current) => (current, false),
            Ok(installed) => {
                if let Some(installed) = installed {
                    self.telemetry.snapshot_installed();
                    self.execute_install(meta.id, installed);
                }
                (self.core.term(), true)
            }
        };
        reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse { term, success })));
    }

    /// Executes a snapshot install (or restore) the core accepted, ahead of
    /// the work of its next `Ready`: the stored log is deleted as instructed
    /// before entries appended after the snapshot are written, and the state
    /// machine is restored from stored snapshot `id` before anything after
    /// it is applied.
    pub(super) fn execute_install(&mut self, id: String, installed: InstalledSnapshot) {
        let InstalledSnapshot { position, discard_log } = installed;
        let through = if discard_log { u64::MAX } else { position.index };
        self.queue_compaction(through, position.index);
        self.note_snapshot(position.index, position.term);
        let _ = self.apply.tx.send(ApplyMsg::Restore { id, position });
    }

    /// Has each follower that needs one sent the newest stored snapshot, by
    /// its peer task.
    pub(super) fn send_snapshots(&mut self, peers: Vec<ServerId>) {
        let offer = SnapshotOffer { term: self.core.term(), cluster_id: self.cluster.id.clone() };
        for peer in peers {
            if let Some(p) = self.peer_task(&peer) {
                p.send_snapshot(offer.clone());
            }
        }
        self.snapshots.transfers.retain(|h| !h.is_finished());
    }

    /// A new local snapshot: remembers it, compacts the log behind it if
    /// the store kept it, and answers the user who asked for it once the
    /// compaction is done.
    pub(super) fn on_snapshot_taken(&mut self, taken: SnapshotTaken) {
        self.note_snapshot(taken.index, taken.term);
        let queued = if taken.retained { self.compact(taken.index) } else { None };
        match (taken.reply, queued) {
            (Some(reply), Some(seq)) => self.snapshots.replies.push(SnapshotWaiter { seq, reply }),
            (Some((tx, handle)), None) => {
                self.publish(true);
                let _ = tx.send(Ok(handle));
            }
            (None, _) => self.publish(true),
        }
    }

    /// Answers the snapshot requests whose compaction is among the persist
    /// jobs up to `seq`.
    pub(super) fn snapshot_replies_due(&mut self, seq: u64) {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.snapshots.replies).into_iter().partition(|w| w.seq <= seq);
        self.snapshots.replies = waiting;
        for w in ready {
            let (tx, handle) = w.reply;
            let _ = tx.send(Ok(handle));
        }
    }
}

/// Copies a streamed snapshot into the local store, finalizes it, and
/// reads the stored copy back to its end ([`verify_stored`]): a snapshot
/// damaged in transit (its stream failed a checksum) or at rest is refused
/// (as [`StorageError::Corrupt`]) before anything trusts it.
pub(super) async fn store_snapshot(
    snaps: &dyn SnapshotStore,
    meta: &SnapshotMeta,
    mut data: SnapshotReader,
) -> Result<SnapshotMeta, StorageError> {
    let sink = snaps.create(meta.index, meta.term, &meta.configuration, meta.configuration_index).await?;
    let mut writer = SnapshotWriter::new(sink);
    let copied = tokio::io::copy(&mut data, &mut writer).await;
    let id = writer.id().to_owned();
    let flushed = match copied {
        Ok(n) if n == meta.size || meta.size == 0 => tokio::io::AsyncWriteExt::flush(&mut writer)
            .await
            .map_err(|e| StorageError::io(format!("write snapshot {id}"), e)),
        Ok(n) => Err(StorageError::Corrupt {
            path: format!("incoming snapshot {id}"),
            offset: n.min(meta.size),
            reason: format!("snapshot truncated: got {n} of {} bytes", meta.size),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(StorageError::Corrupt {
            path: format!("incoming snapshot {id}"),
            offset: writer.written(),
            reason: e.to_string(),
        }),
        Err(e) => Err(StorageError::io(format!("receive snapshot {id}"), e)),
    };
    if let Err(e) = flushed {
        let _ = writer.cancel().await;
        return Err(e);
    }
    let stored = writer.finalize().await?;
    match crate::runtime::verify::verify_stored(snaps, &stored.id).await {
        Ok(_) => Ok(stored),
        Err(e) => {
            tracing::error!(snapshot = %stored.id, index = stored.index, error = %e,
                "the stored copy of a received snapshot is damaged; refusing it (check the disk)");
            // Nothing relies on it: it must not be listed as the newest.
            match snaps.delete(&stored.id).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(snapshot = %stored.id,
                    "the snapshot store cannot delete the damaged snapshot; it stays listed"),
                Err(d) => tracing::error!(snapshot = %stored.id, error = %d,
                    "deleting the damaged snapshot failed; it stays listed"),
            }
            Err(e)
        }
    }
}
