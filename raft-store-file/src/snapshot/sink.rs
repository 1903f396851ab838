//! [`FileSnapshotSink`]: writes a snapshot into `<id>.tmp/data`, hashing as
//! it goes, and on finalize makes it durable and renames the directory into
//! place.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use raft::{async_trait, SnapshotMeta, SnapshotSink, StorageError};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::meta::MetaFile;
use super::FileSnapshotStore;
use crate::fsutil;

/// A snapshot being written by a [`FileSnapshotStore`].
pub(crate) struct FileSnapshotSink {
    pub(super) store: FileSnapshotStore,
    pub(super) meta: SnapshotMeta,
    /// `<dir>/<id>.tmp`.
    pub(super) tmp_dir: PathBuf,
    /// `None` once finalized or cancelled.
    pub(super) file: Option<tokio::fs::File>,
    pub(super) crc: u32,
}

fn closed() -> io::Error {
    io::Error::other("snapshot sink already finished")
}

impl AsyncWrite for FileSnapshotSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(file) = this.file.as_mut() else { return Poll::Ready(Err(closed())) };
        match Pin::new(file).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.crc = crc32c::crc32c_append(this.crc, &buf[..n]);
                this.meta.size += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.file.as_mut() {
            Some(file) => Pin::new(file).poll_flush(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.file.as_mut() {
            Some(file) => Pin::new(file).poll_shutdown(cx),
            None => Poll::Ready(Err(closed())),
        }
    }
}

#[async_trait]
impl SnapshotSink for FileSnapshotSink {
    fn id(&self) -> &str {
        &self.meta.id
    }

    async fn finalize(mut self: Box<Self>) -> Result<SnapshotMeta, StorageError> {
        let tmp = self.tmp_dir.clone();
        let io = |op: &str, e| StorageError::io(format!("{op} {}", tmp.join("data").display()), e);
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::Failed("snapshot sink already finished".into()));
        };
        file.flush().await.map_err(|e| io("flush", e))?;
        file.sync_all().await.map_err(|e| io("fsync", e))?;
        drop(file);
        let meta = self.meta.clone();
        let record = MetaFile::new(meta.clone(), self.crc);
        let store = self.store.clone();
        let tmp_dir = self.tmp_dir.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = record.encode()?;
            let meta_path = tmp_dir.join("meta");
            let io = |op: &str, e| StorageError::io(format!("{op} {}", meta_path.display()), e);
            let mut f = std::fs::File::create(&meta_path).map_err(|e| io("create", e))?;
            std::io::Write::write_all(&mut f, &bytes).map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("fsync", e))?;
            drop(f);
            fsutil::sync_dir(&tmp_dir)?;
            let final_dir = store.dir().join(&record.meta.id);
            std::fs::rename(&tmp_dir, &final_dir).map_err(|e| {
                StorageError::io(format!("rename {} to {}", tmp_dir.display(), final_dir.display()), e)
            })?;
            fsutil::sync_dir(store.dir())?;
            tracing::info!(id = %record.meta.id, index = record.meta.index, size = record.meta.size, "snapshot finalized");
            store.reap()
        })
        .await
        .map_err(|e| StorageError::Failed(format!("snapshot finalize task failed: {e}")))??;
        Ok(meta)
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        drop(self.file.take());
        let tmp_dir = self.tmp_dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::remove_dir_all(&tmp_dir)
                .map_err(|e| StorageError::io(format!("remove {}", tmp_dir.display()), e))
        })
        .await
        .map_err(|e| StorageError::Failed(format!("snapshot cancel task failed: {e}")))??;
        tracing::debug!(id = %self.meta.id, "snapshot cancelled");
        Ok(())
    }
}

impl Drop for FileSnapshotSink {
    fn drop(&mut self) {
        // Dropped without finalize or cancel: remove the partial snapshot in
        // the background if possible; `FileSnapshotStore::new` cleans up
        // whatever is left otherwise.
        if self.file.take().is_some() {
            let tmp_dir = self.tmp_dir.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn_blocking(move || {
                    if let Err(e) = std::fs::remove_dir_all(&tmp_dir) {
                        tracing::warn!(path = %tmp_dir.display(), error = %e, "could not remove abandoned snapshot");
                    }
                });
            }
        }
    }
}
