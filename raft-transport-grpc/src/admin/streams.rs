//! The snapshot streams of the admin service: `DownloadSnapshot` sends a
//! node's latest snapshot as a metadata message and data chunks;
//! `RestoreSnapshot` reads a header and data chunks into
//! [`AdminBackend::restore`](super::AdminBackend::restore).

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use raft::{Configuration, Server, ServerAddress, ServerId, SnapshotMeta, SnapshotReader, Suffrage};
use tokio_util::io::{ReaderStream, StreamReader};
use tonic::{Status, Streaming};

use super::backend::AdminBackend;
use super::pb;
use super::pb::restore_snapshot_chunk::Item as UploadItem;
use super::pb::snapshot_chunk::Item as DownloadItem;

/// Data bytes per streamed message (well under any message size limit).
pub(crate) const CHUNK_BYTES: usize = 256 * 1024;

/// The stream a `DownloadSnapshot` answers with.
pub(crate) type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

/// `meta` as its protobuf message.
pub(crate) fn meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMetadata {
    pb::SnapshotMetadata {
        id: meta.id.clone(),
        index: meta.index,
        term: meta.term,
        size: meta.size,
        configuration: super::service::members(&meta.configuration),
        configuration_index: meta.configuration_index,
    }
}

/// The snapshot metadata of a protobuf message; refuses members without an
/// id or with an unknown suffrage.
pub(crate) fn meta_from_pb(meta: pb::SnapshotMetadata) -> Result<SnapshotMeta, Status> {
    let servers = meta
        .configuration
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            if m.id.is_empty() {
                return Err(Status::invalid_argument(format!("meta.configuration[{i}]: id is required")));
            }
            let suffrage = match pb::MemberSuffrage::try_from(m.suffrage) {
                Ok(pb::MemberSuffrage::Voter) => Suffrage::Voter,
                Ok(pb::MemberSuffrage::Nonvoter) => Suffrage::Nonvoter,
                Ok(pb::MemberSuffrage::IncomingVoter) => Suffrage::IncomingVoter,
                Ok(pb::MemberSuffrage::DemotingVoter) => Suffrage::DemotingVoter,
                Ok(pb::MemberSuffrage::LeavingVoter) => Suffrage::LeavingVoter,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "meta.configuration[{i}]: unknown suffrage {}",
                        m.suffrage
                    )))
                }
            };
            Ok(Server { id: ServerId::new(m.id), address: ServerAddress::new(m.address), suffrage })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(SnapshotMeta {
        id: meta.id,
        index: meta.index,
        term: meta.term,
        configuration: Configuration::new(servers),
        configuration_index: meta.configuration_index,
        size: meta.size,
    })
}

/// The metadata message, then the data of `reader` in chunks of
/// [`CHUNK_BYTES`]; a read error ends the stream with `DATA_LOSS`.
pub(crate) fn download_stream(meta: SnapshotMeta, reader: SnapshotReader) -> SnapshotStream {
    let id = meta.id.clone();
    let head = pb::SnapshotChunk { item: Some(DownloadItem::Meta(meta_to_pb(&meta))) };
    let data = ReaderStream::with_capacity(reader, CHUNK_BYTES).map(move |chunk| match chunk {
        Ok(data) => Ok(pb::SnapshotChunk { item: Some(DownloadItem::Data(data)) }),
        Err(e) => {
            tracing::error!(snapshot = %id, error = %e, "reading a snapshot for download failed");
            Err(Status::data_loss(format!("reading snapshot {id} failed: {e}")))
        }
    });
    Box::pin(futures::stream::iter([Ok(head)]).chain(data))
}

/// Reads a `RestoreSnapshot` upload (a header, then data chunks) and
/// restores it through `backend`; answers the leader's applied index once
/// done.
pub(crate) async fn restore_upload(
    backend: Arc<dyn AdminBackend>,
    mut upload: Streaming<pb::RestoreSnapshotChunk>,
) -> Result<pb::RestoreSnapshotResponse, Status> {
    let refuse = |why: &str| {
        tracing::warn!(reason = why, "refusing a malformed snapshot restore upload");
        Status::invalid_argument(why.to_owned())
    };
    let header = match upload.message().await?.and_then(|m| m.item) {
        Some(UploadItem::Header(header)) => header,
        Some(UploadItem::Data(_)) => return Err(refuse("the first message of a restore must be the header")),
        None => return Err(refuse("empty restore upload: the header is required")),
    };
    let meta = meta_from_pb(header.meta.ok_or_else(|| refuse("header.meta is required"))?)?;
    if meta.size == 0 {
        return Err(refuse("header.meta.size is required (the number of data bytes that follow)"));
    }
    let data = upload.map(|message| match message {
        Ok(pb::RestoreSnapshotChunk { item: Some(UploadItem::Data(data)) }) => {
            Ok::<Bytes, std::io::Error>(data)
        }
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a restore upload may carry only one header, then data",
        )),
        Err(status) => Err(std::io::Error::other(format!("the upload failed: {}", status.message()))),
    });
    let reader = SnapshotReader::new(StreamReader::new(data));
    tracing::warn!(size = meta.size, index = meta.index, "restoring a snapshot through the admin service");
    backend
        .restore(meta, reader, super::service::timeout(header.timeout_ms))
        .await
        .map_err(super::service::to_status)?;
    let applied_index = backend.status().applied_index;
    tracing::warn!(applied_index, "snapshot restored through the admin service");
    Ok(pb::RestoreSnapshotResponse { applied_index })
}
