//! `raftctl snapshot save FILE` and `raftctl snapshot restore FILE`: a
//! leader's latest snapshot streamed into a backup file
//! ([`raft_examples::backup`]: metadata, data, CRC-32C), and a verified
//! backup streamed into `Raft::restore` on the leader.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use raft::SnapshotMeta;
use raft_examples::backup::{self, BackupWriter};
use raft_transport_grpc::admin::pb;
use raft_transport_grpc::admin::pb::restore_snapshot_chunk::Item as UploadItem;
use raft_transport_grpc::admin::pb::snapshot_chunk::Item as DownloadItem;
use serde_json::{json, Value};

use super::{Conn, Ctl, CtlError};

/// Data bytes per uploaded message.
const CHUNK_BYTES: usize = 256 * 1024;

fn meta_from_pb(m: &pb::SnapshotMetadata) -> SnapshotMeta {
    let servers = m
        .configuration
        .iter()
        .map(|s| {
            let suffrage = match pb::MemberSuffrage::try_from(s.suffrage) {
                Ok(pb::MemberSuffrage::Nonvoter) => raft::Suffrage::Nonvoter,
                Ok(pb::MemberSuffrage::IncomingVoter) => raft::Suffrage::IncomingVoter,
                Ok(pb::MemberSuffrage::DemotingVoter) => raft::Suffrage::DemotingVoter,
                Ok(pb::MemberSuffrage::LeavingVoter) => raft::Suffrage::LeavingVoter,
                _ => raft::Suffrage::Voter,
            };
            raft::Server { id: s.id.as_str().into(), address: s.address.as_str().into(), suffrage }
        })
        .collect();
    SnapshotMeta {
        id: m.id.clone(),
        index: m.index,
        term: m.term,
        configuration: raft::Configuration::new(servers),
        configuration_index: m.configuration_index,
        size: m.size,
    }
}

fn meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMetadata {
    let configuration = meta
        .configuration
        .servers
        .iter()
        .map(|s| pb::Member {
            id: s.id.to_string(),
            address: s.address.to_string(),
            suffrage: match s.suffrage {
                raft::Suffrage::Voter => pb::MemberSuffrage::Voter,
                raft::Suffrage::Nonvoter => pb::MemberSuffrage::Nonvoter,
                raft::Suffrage::IncomingVoter => pb::MemberSuffrage::IncomingVoter,
                raft::Suffrage::DemotingVoter => pb::MemberSuffrage::DemotingVoter,
                raft::Suffrage::LeavingVoter => pb::MemberSuffrage::LeavingVoter,
            } as i32,
        })
        .collect();
    pb::SnapshotMetadata {
        id: meta.id.clone(),
        index: meta.index,
        term: meta.term,
        size: meta.size,
        configuration,
        configuration_index: meta.configuration_index,
    }
}

fn meta_json(meta: &SnapshotMeta) -> Value {
    json!({ "id": meta.id, "index": meta.index, "term": meta.term, "size": meta.size,
            "configuration_index": meta.configuration_index })
}

/// Streams the latest snapshot of the node at `conn` (the leader) into
/// `file`: written to `FILE.partial` and renamed once complete, so a failed
/// save never leaves a file that looks like a backup.
pub(crate) async fn save(conn: &mut Conn, file: &Path) -> Result<(Value, String), CtlError> {
    let mut stream = conn
        .client
        .download_snapshot(pb::DownloadSnapshotRequest {})
        .await
        .map_err(|s| Ctl::rpc_error("snapshot save", conn, s))?
        .into_inner();
    let first = stream.message().await.map_err(|s| Ctl::rpc_error("snapshot save", conn, s))?;
    let Some(pb::SnapshotChunk { item: Some(DownloadItem::Meta(meta)) }) = first else {
        return Err(CtlError::Other(format!("{} sent no snapshot metadata first", conn.addr)));
    };
    let meta = meta_from_pb(&meta);
    let partial = file.with_extension(match file.extension() {
        Some(ext) => format!("{}.partial", ext.to_string_lossy()),
        None => "partial".to_owned(),
    });
    let io = |e: std::io::Error| CtlError::Other(format!("{}: {e}", partial.display()));
    let out = std::fs::File::create(&partial).map_err(io)?;
    let result = async {
        let mut writer = BackupWriter::new(std::io::BufWriter::new(out), &meta).map_err(io)?;
        while let Some(chunk) =
            stream.message().await.map_err(|s| Ctl::rpc_error("snapshot save", conn, s))?
        {
            match chunk.item {
                Some(DownloadItem::Data(data)) => {
                    writer.write_data(&data).map_err(|e| CtlError::Other(e.to_string()))?
                }
                _ => return Err(CtlError::Other(format!("{} sent a second metadata message", conn.addr))),
            }
        }
        let (out, _) = writer.finish().map_err(|e| CtlError::Other(format!("incomplete snapshot: {e}")))?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, file).map_err(|e| CtlError::Other(format!("{}: {e}", file.display())))?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let value = json!({ "file": file, "file_bytes": bytes, "snapshot": meta_json(&meta), "from": conn.addr });
    let human = format!(
        "saved snapshot {} (index {}, term {}, {} bytes of data) from {} to {} ({bytes} bytes, checksummed)",
        meta.id,
        meta.index,
        meta.term,
        meta.size,
        conn.addr,
        file.display()
    );
    Ok((value, human))
}

/// Streams the backup at `file`, which [`backup::verify`] checked (`info`),
/// into a restore on the leader at `conn`.
pub(crate) async fn restore(
    conn: &mut Conn,
    file: &Path,
    info: &backup::BackupInfo,
    timeout_ms: u64,
) -> Result<(Value, String), CtlError> {
    let mut data = backup::open_data(file, info).map_err(|e| CtlError::Other(e.to_string()))?;
    let header = pb::RestoreSnapshotChunk {
        item: Some(UploadItem::Header(pb::RestoreSnapshotHeader {
            meta: Some(meta_to_pb(&info.meta)),
            timeout_ms,
        })),
    };
    // The file is read as the upload goes; a read failure ends the upload
    // short (the leader refuses it) and is reported here.
    let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let failed = read_error.clone();
    let mut done = false;
    let chunks = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut got = 0;
        while got < buf.len() {
            match data.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    done = true;
                    return None;
                }
            }
        }
        if got == 0 {
            done = true;
            return None;
        }
        buf.truncate(got);
        Some(pb::RestoreSnapshotChunk { item: Some(UploadItem::Data(buf.into())) })
    });
    let upload = futures::stream::iter(std::iter::once(header).chain(chunks));
    let answer = conn.client.restore_snapshot(upload).await;
    if let Some(e) = read_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(CtlError::Other(format!("reading {} failed during the restore: {e}", file.display())));
    }
    let applied = answer.map_err(|s| Ctl::rpc_error("snapshot restore", conn, s))?.into_inner().applied_index;
    let value = json!({ "file": file, "snapshot": meta_json(&info.meta), "leader": conn.addr,
                        "applied_index": applied });
    let human = format!(
        "restored {} (snapshot {}, index {}, term {}, {} bytes) on the leader at {}; applied index now {applied}",
        file.display(),
        info.meta.id,
        info.meta.index,
        info.meta.term,
        info.meta.size,
        conn.addr
    );
    Ok((value, human))
}
