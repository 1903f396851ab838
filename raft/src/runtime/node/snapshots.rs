//! Snapshot transfer for the main task: streaming the newest snapshot to
//! followers that need one, receiving a leader's snapshot into the local
//! store, and compacting the log behind a new local snapshot.

use super::*;
use crate::core::InstalledSnapshot;

impl<R: Send + 'static> Node<R> {
    /// Receives a streamed snapshot into the local store in the background.
    pub(super) fn receive_snapshot(
        &mut self,
        req: InstallSnapshotRequest,
        data: SnapshotReader,
        reply: RpcReply,
    ) {
        if let Err(current) = self.t.core.snapshot_offered(&req.leader_id, req.term) {
            reply.send(Ok(RpcResponse::InstallSnapshot(InstallSnapshotResponse {
                term: current,
                success: false,
            })));
            return;
        }
        let snaps = self.t.snaps.clone();
        let events = self.t.peer_events_tx.clone();
        let handle = tokio::spawn(async move {
            let result = store_snapshot(&*snaps, &req.meta, data).await.map_err(|e| e.to_string());
            let _ = events.send(PeerEvent::SnapshotReceived {
                leader: req.leader_id,
                term: req.term,
                result,
                reply,
            });
        });
        self.transfers.push(handle);
    }

    /// Streams the newest stored snapshot to each follower that needs one.
    pub(super) fn send_snapshots(&mut self, peers: Vec<ServerId>) {
        for peer in peers {
            if !self.sending_snapshots.insert(peer.clone()) {
                continue;
            }
            let Some(addr) = self.address_of(&peer) else {
                self.sending_snapshots.remove(&peer);
                continue;
            };
            let snaps = self.t.snaps.clone();
            let transport = self.t.transport.clone();
            let events = self.t.peer_events_tx.clone();
            let term = self.t.core.term();
            let leader_id = self.id().clone();
            let cluster_id = self.t.cluster_id.clone();
            // A peer that keeps failing is retried with exponential back-off.
            let failures = self.snapshot_failures.get(&peer).copied().unwrap_or(0);
            let backoff = (self.t.config.heartbeat_timeout / 10).saturating_mul(1 << failures.min(6));
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
            self.transfers.push(handle);
        }
        self.transfers.retain(|h| !h.is_finished());
    }

    /// A new local snapshot: remembers it, compacts the log behind it if
    /// the store kept it, and answers the user who asked for it once the
    /// compaction is done.
    pub(super) fn on_snapshot_taken(&mut self, taken: SnapshotTaken) {
        self.note_snapshot(taken.index, taken.term);
        let queued = if taken.retained { self.compact(taken.index) } else { None };
        match (taken.reply, queued) {
            (Some(reply), Some(seq)) => self.snapshot_replies.push((seq, reply)),
            (Some((tx, handle)), None) => {
                self.publish(true);
                let _ = tx.send(Ok(handle));
            }
            (None, _) => self.publish(true),
        }
    }

    /// Executes a snapshot install (or restore) the core accepted, ahead of
    /// the work of its next `Ready`: the stored log is deleted as instructed
    /// before entries appended after the snapshot are written, and the state
    /// machine is restored from stored snapshot `id` before anything after
    /// it is applied.
    pub(super) fn execute_install(&mut self, id: String, installed: InstalledSnapshot) {
        let InstalledSnapshot { position, discard_log } = installed;
        let through = if discard_log { u64::MAX } else { position.index };
        let job = PersistJob { compact_through: Some(through), ..PersistJob::default() };
        self.persist(job);
        self.compactions.push_back((self.persist_seq, position.index));
        self.note_snapshot(position.index, position.term);
        let _ = self.t.apply_tx.send(ApplyMsg::Restore { id, position });
    }

    /// Remembers the newest snapshot taken, installed or restored.
    pub(super) fn note_snapshot(&mut self, index: u64, term: u64) {
        if index >= self.t.last_snapshot.0 {
            self.t.last_snapshot = (index, term);
        }
    }

    /// Forgets log entries a new snapshot made redundant, keeping
    /// `trailing_logs` entries for slightly lagging followers: in memory
    /// past the core's current start, and in the log store from the first
    /// entry it actually holds (after a restart that is below the restored
    /// snapshot). Returns the persist sequence number of the store deletion
    /// if one was queued.
    pub(super) fn compact(&mut self, snapshot_index: u64) -> Option<u64> {
        let target = snapshot_index.saturating_sub(self.t.config.trailing_logs);
        if target > self.t.core.snapshot_index() {
            if let Err(e) = self.t.core.compact(target) {
                tracing::debug!(error = %e, "compaction skipped");
                return None;
            }
        }
        let queued = self.compactions.back().map_or(self.t.compacted_through, |(_, through)| *through);
        if target <= queued.max(self.t.compacted_through) {
            return None;
        }
        let job = PersistJob { compact_through: Some(target), ..PersistJob::default() };
        self.persist(job);
        self.compactions.push_back((self.persist_seq, target));
        tracing::debug!(from = self.t.compacted_through + 1, through = target, "compacting the log");
        Some(self.persist_seq)
    }

    /// The writer finished every job up to `seq`: records the compactions
    /// among them and answers the snapshot requests that waited for them.
    /// `store_first` is what the store reported as its first index after
    /// the last of them: the log starts there (a store left empty, e.g. by
    /// an installed snapshot, continues after the compaction point).
    pub(super) fn compactions_done(&mut self, seq: u64, store_first: Option<u64>) {
        let mut through = None;
        while let Some(&(s, t)) = self.compactions.front() {
            if s > seq {
                break;
            }
            self.compactions.pop_front();
            through = Some(through.map_or(t, |max: u64| max.max(t)));
        }
        let Some(through) = through else { return };
        self.t.compacted_through = match store_first {
            Some(first) if first > 0 => first - 1,
            _ => self.t.compacted_through.max(through),
        };
        self.t.shared.first_index.store(self.t.compacted_through + 1, Ordering::Release);
        tracing::debug!(first_index = self.t.compacted_through + 1, "log compacted");
        self.publish(true);
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.snapshot_replies).into_iter().partition(|(s, _)| *s <= seq);
        self.snapshot_replies = waiting;
        for (_, (tx, handle)) in ready {
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
