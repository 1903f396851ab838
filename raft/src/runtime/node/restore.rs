//! A user restore in the main task ([`Raft::restore`](crate::Raft::restore)):
//! the leader stores the user's snapshot as a new local snapshot past its
//! last entry (client requests wait meanwhile), then the core restores it
//! and the caller waits for the no-op entry that follows it.

use super::*;

impl<R: Send + 'static> Node<R> {
    /// Starts storing a user's snapshot in the background.
    pub(super) fn on_restore(&mut self, restore: RestoreRequest) {
        let RestoreRequest { meta, reader, tx } = restore;
        if !self.core.is_leader() {
            let _ = tx.send(Err(self.refusal(Refusal::NotLeader(self.core.leader().cloned()))));
            return;
        }
        let (configuration, _) = self.core.configuration();
        let Some(index) = meta.index.max(self.core.last_index()).checked_add(1) else {
            let _ = tx.send(Err(Error::InvalidConfig("snapshot index out of range".into())));
            return;
        };
        let local = SnapshotMeta {
            id: String::new(),
            index,
            term: self.core.term(),
            configuration: configuration.clone(),
            configuration_index: index,
            size: meta.size,
        };
        // Client requests wait while the snapshot is stored, so the
        // log cannot grow past the restore point meanwhile.
        self.clients.restoring = true;
        let snaps = self.snapshots.store.clone();
        let events = self.peers.events_tx.clone();
        let handle = tokio::spawn(async move {
            let result = store_snapshot(&*snaps, &local, reader).await;
            let _ = events.send(PeerEvent::RestoreStored { result, tx });
        });
        self.snapshots.transfers.push(handle);
    }

    /// The user's snapshot is stored (or storing it failed): the core
    /// restores it, and the caller waits for the entry that follows it.
    pub(super) fn restore_stored(
        &mut self,
        result: Result<SnapshotMeta, StorageError>,
        tx: oneshot::Sender<Result<u64, Error>>,
    ) {
        self.clients.restoring = false;
        let meta = match result {
            Ok(meta) => meta,
            Err(e) => {
                tracing::error!(error = %e, "restore refused: storing or verifying the snapshot failed");
                let _ = tx.send(Err(Error::Storage(e)));
                return;
            }
        };
        match self.core.restore_snapshot(meta.index) {
            Ok((noop, installed)) => {
                // Entries up to the snapshot are gone: their outcome
                // is unknown to whoever proposed them.
                self.clients.fail_through(meta.index);
                let term = self.core.term();
                self.clients.waiters.insert(noop, Pending::new(term, Waiter::Index(tx)));
                self.execute_install(meta.id, installed);
            }
            Err(r) => {
                let _ = tx.send(Err(self.refusal(r)));
            }
        }
    }
}
