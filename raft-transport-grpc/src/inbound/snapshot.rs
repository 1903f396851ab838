//! Receiving side of InstallSnapshot: checks the header message, then
//! exposes the remaining data chunks as a [`SnapshotReader`] the node reads
//! at its own pace (HTTP/2 flow control pushes back on the sender, so the
//! snapshot is never buffered whole).
//!
//! The data is checked as it streams: a second header, an empty message,
//! more bytes than `meta.size` or fewer (the stream ending early) make the
//! reader fail with an I/O error and are recorded in a [`DataError`], which
//! the handler reports as `INVALID_ARGUMENT` whatever the node answered.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use raft::message::InstallSnapshotRequest;
use raft::SnapshotReader;
use tokio_util::io::StreamReader;
use tonic::{Status, Streaming};

use crate::pb;
use crate::pb::install_snapshot_chunk::Payload;
use crate::validate::{self, Invalid};

/// Reads and validates the first message of the stream.
pub(super) async fn read_header(
    stream: &mut Streaming<pb::InstallSnapshotChunk>,
) -> Result<InstallSnapshotRequest, Status> {
    let first = match stream.message().await? {
        Some(first) => first,
        None => return Err(super::refuse("InstallSnapshot", Invalid("empty stream".into()))),
    };
    match first.payload {
        Some(Payload::Header(header)) => {
            validate::snapshot_header(header).map_err(|e| super::refuse("InstallSnapshot", e))
        }
        _ => Err(super::refuse("InstallSnapshot", Invalid("the first message must be the header".into()))),
    }
}

/// Where a malformed data stream is recorded for the handler.
#[derive(Clone, Debug, Default)]
pub(super) struct DataError(Arc<Mutex<Option<Invalid>>>);

impl DataError {
    fn set(&self, err: Invalid) -> io::Error {
        let io_err = io::Error::new(io::ErrorKind::InvalidData, err.0.clone());
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(err);
        io_err
    }

    /// The recorded error, if the data stream was malformed.
    pub(super) fn take(&self) -> Option<Invalid> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

struct State {
    stream: Streaming<pb::InstallSnapshotChunk>,
    remaining: u64,
    errors: DataError,
    done: bool,
}

/// Turns the data messages following the header into a reader yielding
/// exactly `size` bytes.
pub(super) fn reader(stream: Streaming<pb::InstallSnapshotChunk>, size: u64) -> (SnapshotReader, DataError) {
    let errors = DataError::default();
    let state = State { stream, remaining: size, errors: errors.clone(), done: false };
    let chunks = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let item = next_chunk(&mut st).await;
        if !matches!(item, Some(Ok(_))) {
            st.done = true;
        }
        item.map(|item| (item, st))
    });
    (SnapshotReader::new(StreamReader::new(Box::pin(chunks))), errors)
}

async fn next_chunk(st: &mut State) -> Option<io::Result<Bytes>> {
    match st.stream.next().await {
        Some(Ok(pb::InstallSnapshotChunk { payload: Some(Payload::Data(data)) })) => {
            let len = data.len() as u64;
            if len > st.remaining {
                let err =
                    Invalid(format!("snapshot data exceeds the declared size by {}", len - st.remaining));
                return Some(Err(st.errors.set(err)));
            }
            st.remaining -= len;
            Some(Ok(data))
        }
        Some(Ok(_)) => Some(Err(st.errors.set(Invalid("a data message carries no data".into())))),
        Some(Err(status)) => Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("snapshot stream failed: {}", status.message()),
        ))),
        None if st.remaining > 0 => {
            let err =
                Invalid(format!("snapshot data ended {} bytes short of the declared size", st.remaining));
            let io_err = st.errors.set(err);
            Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, io_err.to_string())))
        }
        None => None,
    }
}
