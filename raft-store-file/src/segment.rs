//! One segment file of the log: its name, its header, creating it, and
//! scanning it on open.
//!
//! ```text
//! <first index, 20 digits>.wal
//! header  = magic "RAFTSEG\0" | version: u32 LE | reserved: u32 | first_index: u64 LE
//!           | crc: u32 LE (CRC32C of the 24 bytes before it) | padding: u32   (32 bytes)
//! records = record*   (see the `record` module)
//! ```
//!
//! A segment is created under a temporary name, its header fsync'd, then
//! renamed into place and the directory fsync'd: a segment file with a final
//! name always has a complete header. A segment installed from a prepared
//! (zero-filled) file (see the `prealloc` module) has zeros after its last
//! record; zeros up to the end of the file are its clean end.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use raft::StorageError;

use crate::entries::EntryIndex;
use crate::fsutil;
use crate::record::{self, FRAME_HEADER};

/// Size of the segment header in bytes.
pub(crate) const HEADER_LEN: usize = 32;
const MAGIC: &[u8; 8] = b"RAFTSEG\0";
const VERSION: u32 = 1;
const EXT: &str = ".wal";

/// The file name of the segment whose first entry is `first_index`.
pub(crate) fn file_name(first_index: u64) -> String {
    format!("{first_index:020}{EXT}")
}

/// The first index encoded in a segment file name, if `name` is one.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(first_index: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { path: path.display().to_string(), offset, reason: reason.into() }
}

/// Checks the header of a segment read into `buf` and returns its first index.
fn check_header(path: &Path, buf: &[u8]) -> Result<u64, StorageError> {
    if buf.len() < HEADER_LEN {
        return Err(corrupt(path, 0, format!("segment is {} bytes, shorter than its header", buf.len())));
    }
    if &buf[0..8] != MAGIC {
        return Err(corrupt(path, 0, "bad segment magic"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[24..28]);
    if u32::from_le_bytes(crc) != crc32c::crc32c(&buf[0..24]) {
        return Err(corrupt(path, 0, "segment header checksum mismatch"));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&buf[8..12]);
    let version = u32::from_le_bytes(version);
    if version != VERSION {
        return Err(corrupt(path, 8, format!("unsupported segment format version {version}")));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&buf[16..24]);
    Ok(u64::from_le_bytes(first))
}

/// Creates the segment for entries from `first_index` in `dir` durably and
/// returns its path and a read-write handle.
pub(crate) fn create(dir: &Path, first_index: u64) -> Result<(PathBuf, File), StorageError> {
    let path = dir.join(file_name(first_index));
    let tmp = fsutil::tmp_path(&path);
    let io = |op: &str, e| StorageError::io(format!("{op} {}", tmp.display()), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    file.write_all(&encode_header(first_index)).map_err(|e| io("write header of", e))?;
    file.sync_all().map_err(|e| io("fsync", e))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| StorageError::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    fsutil::sync_dir(dir)?;
    tracing::debug!(path = %path.display(), first_index, "created log segment");
    Ok((path, file))
}

/// Installs a prepared, zero-filled file as the segment for entries from
/// `first_index`: writes and syncs its header, renames it into place and
/// syncs the directory. Returns its path and handle.
pub(crate) fn install(
    dir: &Path,
    first_index: u64,
    prepared: crate::prealloc::Prepared,
) -> Result<(PathBuf, File), StorageError> {
    let crate::prealloc::Prepared { path: tmp, file } = prepared;
    let path = dir.join(file_name(first_index));
    let io = |op: &str, e| StorageError::io(format!("{op} {}", tmp.display()), e);
    std::os::unix::fs::FileExt::write_all_at(&file, &encode_header(first_index), 0)
        .map_err(|e| io("write header of", e))?;
    file.sync_data().map_err(|e| io("fdatasync", e))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| StorageError::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    fsutil::sync_dir(dir)?;
    tracing::debug!(path = %path.display(), first_index, "installed a preallocated log segment");
    Ok((path, file))
}

/// The valid records of a segment, as found by [`scan`].
#[derive(Debug)]
pub(crate) struct Scan {
    /// First index from the header.
    pub first_index: u64,
    /// The valid records (offset, term, type); entry `first_index + i` is
    /// at position `i`.
    pub entries: EntryIndex,
    /// Byte offset just past the last valid record.
    pub end: u64,
    /// Where a torn tail starts, if the valid records stop before the end
    /// of the file, with the reason.
    pub torn: Option<(u64, String)>,
}

/// Scans a segment's bytes.
///
/// Stops at the first position that is not a valid record. If that is the
/// end of the file, or only zeros follow (preallocated space never written:
/// a record's length field is never zero), the segment is clean. Otherwise
/// the rest is a torn tail
/// (reported in [`Scan::torn`]) only if no valid record of a *later* sync
/// group follows it; if one does, the bad record had been made durable
/// before that group was written, so the damage is to durable history and
/// this returns [`StorageError::Corrupt`]. Records out of sequence are
/// always corruption.
pub(crate) fn scan(path: &Path, buf: &[u8], expected_first: u64) -> Result<Scan, StorageError> {
    let first_index = check_header(path, buf)?;
    if first_index != expected_first {
        return Err(corrupt(
            path,
            16,
            format!("header says first index {first_index} but the file name says {expected_first}"),
        ));
    }
    let mut entries = EntryIndex::new();
    let mut pos = HEADER_LEN;
    let mut group: Option<u64> = None;
    let mut expect = first_index;
    while pos < buf.len() {
        match record::check(&buf[pos..]) {
            Ok(info) => {
                let group_ok = match group {
                    None => info.group <= info.index,
                    Some(g) => info.group == g || info.group == info.index,
                };
                if info.index != expect || !group_ok {
                    return Err(corrupt(
                        path,
                        pos as u64,
                        format!(
                            "record out of sequence: index {} group {} where index {expect} was expected",
                            info.index, info.group
                        ),
                    ));
                }
                entries
                    .push(pos as u64, info.term, info.log_type)
                    .map_err(|e| corrupt(path, pos as u64, e.to_string()))?;
                group = Some(info.group);
                expect += 1;
                pos += info.len;
            }
            Err(_) if buf[pos..].iter().all(|&b| b == 0) => {
                return Ok(Scan { first_index, entries, end: pos as u64, torn: None });
            }
            Err(err) => {
                if let Some(later) = later_group_after(buf, pos + 1, expect) {
                    return Err(corrupt(
                        path,
                        pos as u64,
                        format!(
                            "bad record ({err}) followed by a valid record of a later write at offset {later}: \
                             durable history is damaged"
                        ),
                    ));
                }
                return Ok(Scan {
                    first_index,
                    entries,
                    end: pos as u64,
                    torn: Some((pos as u64, err.to_string())),
                });
            }
        }
    }
    Ok(Scan { first_index, entries, end: pos as u64, torn: None })
}

/// Offset of the first valid record at or after `from` that belongs to a
/// sync group starting after index `damaged` (the index the bad record
/// should have had), if any. Every byte offset is tried, since the damage
/// may have hit a length field.
fn later_group_after(buf: &[u8], from: usize, damaged: u64) -> Option<u64> {
    let mut pos = from;
    while pos + FRAME_HEADER <= buf.len() {
        match record::check(&buf[pos..]) {
            Ok(info) if info.group > damaged => return Some(pos as u64),
            Ok(info) => pos += info.len,
            Err(_) => pos += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("42.wal"), None);
        assert_eq!(parse_name("00000000000000000042.wal.tmp"), None);
    }

    #[test]
    fn an_installed_prepared_file_is_an_empty_clean_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut preparer = crate::prealloc::Preparer::new(dir.path(), 8192);
        preparer.ensure_started();
        let prepared = loop {
            if let Some(p) = preparer.take_ready() {
                break p;
            }
            std::thread::yield_now();
        };
        let tmp = prepared.path.clone();
        let (path, _file) = install(dir.path(), 77, prepared).expect("install");
        assert!(!tmp.exists(), "the temporary name is gone");
        assert_eq!(path, dir.path().join(file_name(77)));
        let buf = std::fs::read(&path).expect("read");
        assert_eq!(buf.len(), 8192, "the preallocated size is kept");
        let scan = scan(&path, &buf, 77).expect("scan");
        assert_eq!((scan.first_index, scan.end, scan.torn), (77, HEADER_LEN as u64, None));
        assert!(scan.entries.is_empty());
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header(9);
        assert_eq!(check_header(Path::new("x"), &h).unwrap(), 9);
        for i in 0..28 {
            let mut bad = h;
            bad[i] ^= 1;
            assert!(check_header(Path::new("x"), &bad).is_err(), "flip at {i}");
        }
    }
}
