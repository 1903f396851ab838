//! Snapshot integrity checks the runtime applies to every store, whatever
//! the store checks itself: a stored snapshot is read to its end (where a
//! store's reader reports a checksum mismatch) before it is trusted, and a
//! restore drains whatever the FSM did not read, so a store that verifies
//! only at the end of the data still fails a restore whose FSM stops
//! reading early (a length-prefixed body).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::{Error, FsmOperation, StorageError};
use crate::fsm::Fsm;
use crate::snapshot::{SnapshotReader, SnapshotStore};
use crate::types::SnapshotMeta;

/// Maps an error met while reading snapshot `id` at byte `offset`: bad data
/// (the store's checksum said so) is [`StorageError::Corrupt`].
fn read_error(id: &str, offset: u64, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::InvalidData {
        StorageError::Corrupt { path: format!("snapshot {id}"), offset, reason: e.to_string() }
    } else {
        StorageError::io(format!("read snapshot {id}"), e)
    }
}

/// Reads `reader` to its end, returning how many bytes it held.
async fn drain(id: &str, reader: &mut SnapshotReader, mut offset: u64) -> Result<u64, StorageError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return Ok(offset),
            Ok(n) => offset += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(id, offset, e)),
        }
    }
}

/// Opens stored snapshot `id` and reads it to the end: `Ok` only if the
/// store reports no damage (at `open` or at the end of the data) and the
/// data has the size its metadata records (unless that is 0).
pub(crate) async fn verify_stored(snaps: &dyn SnapshotStore, id: &str) -> Result<SnapshotMeta, StorageError> {
    let (meta, mut reader) = snaps.open(id).await?;
    let size = drain(id, &mut reader, 0).await?;
    if meta.size > 0 && size != meta.size {
        return Err(StorageError::Corrupt {
            path: format!("snapshot {id}"),
            offset: size.min(meta.size),
            reason: format!("{size} bytes read, metadata says {}", meta.size),
        });
    }
    Ok(meta)
}

/// What the FSM's reader saw, shared with [`restore_verified`].
struct Seen {
    reader: Option<SnapshotReader>,
    read: u64,
    error: Option<(u64, io::ErrorKind, String)>,
}

/// The reader handed to the FSM: reads through to the store's reader and
/// remembers how far it got and the first error.
struct Tracked(Arc<Mutex<Seen>>);

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Ok(mut seen) = self.0.lock() else {
            return Poll::Ready(Err(io::Error::other("snapshot reader lock poisoned")));
        };
        let seen = &mut *seen;
        let Some(reader) = seen.reader.as_mut() else {
            return Poll::Ready(Err(io::Error::other("snapshot reader already closed")));
        };
        let before = buf.filled().len();
        match Pin::new(reader).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                seen.read += (buf.filled().len() - before) as u64;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                if seen.error.is_none() {
                    seen.error = Some((seen.read, e.kind(), e.to_string()));
                }
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Restores `fsm` from snapshot `id` read through `reader`, then reads
/// whatever the FSM left unread: a read error the FSM met (even one it
/// ignored) or one met while draining fails the restore, as does a size
/// other than `size` (when known and not 0). Corruption comes back as
/// [`Error::Storage`] with [`StorageError::Corrupt`], any other failure of
/// the store's reader as [`Error::Storage`] too (even when the FSM failed
/// because of it), and only a failure of the FSM's own as
/// [`Error::FsmFailed`], keeping the FSM's error. After an `Err` the FSM may
/// hold part of the snapshot: the caller must not trust its state.
pub(crate) async fn restore_verified<F: Fsm>(
    fsm: &mut F,
    id: &str,
    reader: SnapshotReader,
    size: Option<u64>,
) -> Result<(), Error> {
    let seen = Arc::new(Mutex::new(Seen { reader: Some(reader), read: 0, error: None }));
    let restored = fsm.restore(SnapshotReader::new(Tracked(seen.clone()))).await;
    let (rest, read, error) = {
        let mut s = seen.lock().map_err(|_| Error::Fsm("snapshot reader lock poisoned".into()))?;
        (s.reader.take(), s.read, s.error.take())
    };
    if let Some((offset, kind, msg)) = error {
        // The store failed under the FSM: a storage failure, whether the FSM
        // passed it on, wrapped it or ignored it.
        let cause = match restored {
            Err(e) => crate::snapshot::into_io_error(e, kind),
            Ok(()) => io::Error::new(kind, msg),
        };
        return Err(read_error(id, offset, cause).into());
    }
    restored.map_err(|e| Error::fsm(FsmOperation::Restore, e))?;
    let mut rest = rest.ok_or_else(|| Error::Fsm("snapshot reader already closed".into()))?;
    let total = drain(id, &mut rest, read).await?;
    if let Some(size) = size.filter(|&s| s > 0 && s != total) {
        return Err(StorageError::Corrupt {
            path: format!("snapshot {id}"),
            offset: total.min(size),
            reason: format!("{total} bytes read, metadata says {size}"),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::FsmSnapshot;
    use crate::types::Log;
    use crate::BoxError;

    /// Good bytes, then an InvalidData error where the end would be (a
    /// store's checksum failing at the end of the data).
    struct BadAtEnd(io::Cursor<Vec<u8>>);

    impl AsyncRead for BadAtEnd {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            match Pin::new(&mut self.0).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "checksum mismatch")))
                }
                other => other,
            }
        }
    }

    /// Fails every read with a plain I/O error (not damage): a disk that
    /// stopped answering.
    struct Unreadable;

    impl AsyncRead for Unreadable {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "disk timed out")))
        }
    }

    /// The FSM's own error type.
    #[derive(Debug)]
    struct Refused;

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused by the fsm")
        }
    }

    impl std::error::Error for Refused {}

    /// Reads a 4-byte value and stops; optionally swallows read errors, or
    /// refuses the value 13 with its own error.
    #[derive(Default)]
    struct PrefixFsm {
        value: u32,
        swallow: bool,
    }

    #[async_trait::async_trait]
    impl Fsm for PrefixFsm {
        type Response = ();
        async fn apply(&mut self, _log: &Log) {}
        async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
            Err("unused".into())
        }
        async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
            match snapshot.read_u32().await {
                Ok(13) => return Err(Box::new(Refused)),
                Ok(v) => self.value = v,
                Err(_) if self.swallow => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn damage_reported_at_the_end_fails_a_restore_that_never_read_there() {
        let mut fsm = PrefixFsm::default();
        let reader = SnapshotReader::new(BadAtEnd(io::Cursor::new(vec![0, 0, 0, 7, 1, 2, 3])));
        let r = restore_verified(&mut fsm, "s", reader, Some(7)).await;
        assert!(matches!(r, Err(Error::Storage(StorageError::Corrupt { offset: 7, .. }))), "{r:?}");
    }

    #[tokio::test]
    async fn a_read_error_the_fsm_swallowed_still_fails_the_restore() {
        let mut fsm = PrefixFsm { swallow: true, ..PrefixFsm::default() };
        let reader = SnapshotReader::new(BadAtEnd(io::Cursor::new(vec![0, 0])));
        let r = restore_verified(&mut fsm, "s", reader, Some(2)).await;
        assert!(matches!(r, Err(Error::Storage(StorageError::Corrupt { .. }))), "{r:?}");
    }

    #[tokio::test]
    async fn data_of_another_size_than_the_metadata_fails_and_good_data_passes() {
        let mut fsm = PrefixFsm::default();
        let r =
            restore_verified(&mut fsm, "s", SnapshotReader::from_bytes(vec![0, 0, 0, 9, 5]), Some(9)).await;
        assert!(matches!(r, Err(Error::Storage(StorageError::Corrupt { .. }))), "{r:?}");
        let r =
            restore_verified(&mut fsm, "s", SnapshotReader::from_bytes(vec![0, 0, 0, 9, 5]), Some(5)).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(fsm.value, 9);
    }

    #[tokio::test]
    async fn an_fsm_restore_error_is_kept_whole() {
        let mut fsm = PrefixFsm::default();
        let r = restore_verified(&mut fsm, "s", SnapshotReader::from_bytes(vec![0, 0, 0, 13]), Some(4)).await;
        let Err(Error::FsmFailed { operation: FsmOperation::Restore, source }) = r else {
            panic!("expected the fsm's failure, got {r:?}");
        };
        assert!(source.downcast_ref::<Refused>().is_some(), "{source:?}");
    }

    #[tokio::test]
    async fn a_store_read_failure_the_fsm_passed_on_is_a_storage_error() {
        let mut fsm = PrefixFsm::default();
        let r = restore_verified(&mut fsm, "s", SnapshotReader::new(Unreadable), Some(4)).await;
        let Err(Error::Storage(StorageError::Io { source, .. })) = r else {
            panic!("expected a storage error, got {r:?}");
        };
        assert_eq!(source.kind(), io::ErrorKind::TimedOut);
    }
}
