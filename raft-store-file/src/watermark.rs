//! The log's durable low watermark: `<dir>/log.meta`, holding the first
//! index still part of the log after head compaction. Entries below it that
//! remain in a kept segment are invisible, also after a restart.
//!
//! ```text
//! log.meta = magic "RAFTLOGM" | version: u32 LE | first_index: u64 LE | crc: u32 LE (CRC32C of the 20 bytes before)
//! ```
//!
//! Replaced atomically (temporary file, fsync, rename, directory fsync).

use std::io;
use std::path::{Path, PathBuf};

use raft::StorageError;

use crate::fsutil;

const MAGIC: &[u8; 8] = b"RAFTLOGM";
const VERSION: u32 = 1;
const LEN: usize = 24;

fn path(dir: &Path) -> PathBuf {
    dir.join("log.meta")
}

/// Reads the watermark; 0 if it was never written.
pub(crate) fn read(dir: &Path) -> Result<u64, StorageError> {
    let path = path(dir);
    let buf = match std::fs::read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StorageError::io(format!("read {}", path.display()), e)),
    };
    let corrupt = |offset, reason: &str| StorageError::Corrupt {
        path: path.display().to_string(),
        offset,
        reason: reason.to_owned(),
    };
    if buf.len() != LEN {
        return Err(corrupt(0, "log meta file has the wrong length"));
    }
    if &buf[0..8] != MAGIC {
        return Err(corrupt(0, "bad log meta magic"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[20..24]);
    if u32::from_le_bytes(crc) != crc32c::crc32c(&buf[0..20]) {
        return Err(corrupt(20, "log meta checksum mismatch"));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&buf[8..12]);
    if u32::from_le_bytes(version) != VERSION {
        return Err(corrupt(8, "unsupported log meta version"));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&buf[12..20]);
    Ok(u64::from_le_bytes(first))
}

/// Durably records `first_index` as the watermark.
pub(crate) fn write(dir: &Path, first_index: u64) -> Result<(), StorageError> {
    let mut buf = Vec::with_capacity(LEN);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    fsutil::write_atomic(&path(dir), &buf)
}
