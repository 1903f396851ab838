//! The `meta` file beside each snapshot's data: the [`SnapshotMeta`] plus
//! the data's size and CRC32C, encoded with [`raft::codec`] and followed by
//! a CRC32C of the encoded bytes.

use std::path::Path;

use raft::{SnapshotMeta, StorageError};
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// What `meta` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MetaFile {
    /// Format version.
    pub version: u32,
    /// The snapshot's description; `meta.size` is the data length.
    pub meta: SnapshotMeta,
    /// CRC32C of the data file.
    pub checksum: u32,
}

impl MetaFile {
    /// Describes finished data.
    pub fn new(meta: SnapshotMeta, checksum: u32) -> Self {
        Self { version: VERSION, meta, checksum }
    }

    /// The bytes of the file.
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let mut buf = raft::codec::encode(self)?;
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok(buf)
    }

    /// Reads and checks the file at `path`. Blocking.
    pub fn read(path: &Path) -> Result<Self, StorageError> {
        let buf = std::fs::read(path).map_err(|e| StorageError::io(format!("read {}", path.display()), e))?;
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
            path: path.display().to_string(),
            offset: offset as u64,
            reason,
        };
        if buf.len() < 4 {
            return Err(corrupt(0, "snapshot meta file too short".into()));
        }
        let body = buf.len() - 4;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&buf[body..]);
        if u32::from_le_bytes(crc) != crc32c::crc32c(&buf[..body]) {
            return Err(corrupt(body, "snapshot meta checksum mismatch".into()));
        }
        let file: MetaFile = raft::codec::decode(&buf[..body])
            .map_err(|e| corrupt(0, format!("undecodable snapshot meta: {e}")))?;
        if file.version != VERSION {
            return Err(corrupt(0, format!("unsupported snapshot meta version {}", file.version)));
        }
        Ok(file)
    }
}
