//! Snapshot transfer for the main task: streaming the newest snapshot to
//! followers that need one, receiving a leader's snapshot into the local
//! store and installing it, and the snapshots the snapshot task takes
//! (their callers are answered once the log is compacted behind them).

use super::*;
use crate::core::InstalledSnapshot;

/// The main task's snapshot task and snapshot transfers.
pub(super) struct Snapshots {
    /// The snapshot store.
    pub(super) store: Arc<dyn SnapshotStore>,
    /// The snapshot task.
    pub(super) task: Worker<SnapshotCmd>,
    /// Snapshots it took.
    pub(super) taken: mpsc::UnboundedReceiver<SnapshotTaken>,
    /// Peers a snapshot is being streamed to.
    sending: HashSet<ServerId>,
    /// Consecutive failed snapshot transfers per peer, for back-off.
    failures: HashMap<ServerId, u32>,
    /// A received (or restored) snapshot being installed: its local copy.
    pub(super) installing: Option<SnapshotMeta>,
    /// Background snapshot transfers and restores, aborted on shutdown.
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
        Self {
            store,
            task,
            taken,
            sending: HashSet::new(),
            failures: HashMap::new(),
            installing: None,
            transfers: Vec::new(),
            replies: Vec::new(),
        }
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
        let snaps = self.snapshots.store.clone();
        let events = self.peers.events_tx.clone();
        let handle = tokio::spawn(async move {
            let result = store_snapshot(&*snaps, &req.meta, data).await.map_err(|e| e.to_string());
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
        let outcome = self.core.install_snapshot(
            &leader,
            term,
            meta.index,
            meta.term,
            meta.configuration.clone(),
            meta.configuration_index,
        );
        let (term, success) = match outcome {
            Err(current) => (current, false),
            Ok(installed) => {
                if installed {
                    self.snapshots.installing = Some(meta);
                }
                (self.core.term(), true)
            }
        };
        reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse { term, success })));
    }

    /// The core installed a snapshot (received or restored): the stored
    /// log behind it goes, and the FSM restores it.
    pub(super) fn snapshot_installed(&mut self, installed: InstalledSnapshot) {
        let through = if installed.discard_log { u64::MAX } else { installed.index };
        self.queue_compaction(through, installed.index);
        self.note_snapshot(installed.index, installed.term);
        if let Some(meta) = self.snapshots.installing.take() {
            let _ = self.apply.tx.send(ApplyMsg::Restore {
                id: meta.id,
                index: installed.index,
                term: installed.term,
                configuration: meta.configuration,
                configuration_index: meta.configuration_index,
            });
        }
    }

    /// Streams the newest stored snapshot to each follower that needs one.
    pub(super) fn send_snapshots(&mut self, peers: Vec<ServerId>) {
        for peer in peers {
            if !self.snapshots.sending.insert(peer.clone()) {
                continue;
            }
            let Some(addr) = self.address_of(&peer) else {
                self.snapshots.sending.remove(&peer);
                continue;
            };
            let snaps = self.snapshots.store.clone();
            let transport = self.transport.clone();
            let events = self.peers.events_tx.clone();
            let term = self.core.term();
            let leader_id = self.id().clone();
            let cluster_id = self.cluster.id.clone();
            // A peer that keeps failing is retried with exponential back-off.
            let failures = self.snapshots.failures.get(&peer).copied().unwrap_or(0);
            let backoff = (self.config.heartbeat_timeout / 10).saturating_mul(1 << failures.min(6));
            let handle =
                tokio::spawn(async move {
                    let (index, term, success) =
                        match send_snapshot(&*snaps, &*transport, &peer, &addr, term, leader_id, cluster_id)
                            .await
                        {
                            Ok((index, resp)) => (index, resp.term, resp.success),
                            Err(e) => {
                                super::super::peer::report_refusal(&events, &peer, &e);
                                tracing::warn!(peer = %peer, error = %e, "sending a snapshot failed");
                                (0, term, false)
                            }
                        };
                    if !success {
                        tokio::time::sleep(backoff).await;
                    }
                    let _ = events.send(PeerEvent::SnapshotSent { peer, index, term, success });
                });
            self.snapshots.transfers.push(handle);
        }
        self.snapshots.transfers.retain(|h| !h.is_finished());
    }

    /// A snapshot transfer to `peer` ended: its back-off is updated and the
    /// core told.
    pub(super) fn snapshot_sent(&mut self, peer: ServerId, index: u64, term: u64, success: bool) {
        self.snapshots.sending.remove(&peer);
        if success {
            self.snapshots.failures.remove(&peer);
        } else {
            *self.snapshots.failures.entry(peer.clone()).or_default() += 1;
        }
        self.core.snapshot_sent(&peer, index, term, success);
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

/// Opens the newest stored snapshot and streams it to a follower.
pub(super) async fn send_snapshot(
    snaps: &dyn SnapshotStore,
    transport: &dyn Transport,
    peer: &ServerId,
    addr: &ServerAddress,
    term: u64,
    leader_id: ServerId,
    cluster_id: Option<crate::types::ClusterId>,
) -> Result<(u64, InstallSnapshotResponse), Error> {
    let newest = snaps
        .list()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Storage(StorageError::SnapshotNotFound("no snapshot to send".into())))?;
    let (meta, reader) = snaps.open(&newest.id).await?;
    let index = meta.index;
    tracing::info!(peer = %peer, index, size = meta.size, "streaming snapshot");
    let resp = transport
        .install_snapshot(peer, addr, InstallSnapshotRequest { term, leader_id, meta, cluster_id }, reader)
        .await?;
    Ok((index, resp))
}
