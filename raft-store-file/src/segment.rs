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
use crate::record::{self, DecodeError, FRAME_HEADER};

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
    let crate::prealloc::Prepared { path: tmp, file, .. } = prepared;
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
#[cfg(test)]
pub(crate) fn scan(path: &Path, buf: &[u8], expected_first: u64) -> Result<Scan, StorageError> {
    let mut s = Scanner::new(path, check_first(path, buf, expected_first)?);
    let mut pos = HEADER_LEN;
    while pos < buf.len() {
        match record::check(&buf[pos..]) {
            Ok(info) => {
                s.accept(pos as u64, &info)?;
                pos += info.len;
            }
            Err(_) => return s.bad_tail(&buf[pos..], pos as u64),
        }
    }
    Ok(s.clean(pos as u64))
}

/// Bytes read at a time by [`scan_file`] (more for a larger record).
const SCAN_CHUNK: usize = 1 << 20;

/// [`scan`] of the segment file `file`, read in pieces of [`SCAN_CHUNK`]
/// bytes (or one record, if larger) into `buf`, so the memory used does not
/// depend on the segment's size. Only when the valid records stop before
/// the end of the file and more than zeros follow (a torn tail or damage,
/// rare) is the rest of the file read whole, to be judged as [`scan`] does.
pub(crate) fn scan_file(
    path: &Path,
    file: &File,
    expected_first: u64,
    buf: &mut Vec<u8>,
) -> Result<Scan, StorageError> {
    let io = |op: &str, e| StorageError::io(format!("{op} {}", path.display()), e);
    let len = file.metadata().map_err(|e| io("stat", e))?.len();
    let header_len = len.min(HEADER_LEN as u64) as usize;
    read_into(file, 0, header_len, buf).map_err(|e| io("read", e))?;
    let mut s = Scanner::new(path, check_first(path, &buf[..header_len], expected_first)?);
    let mut pos = HEADER_LEN as u64;
    // `buf[..filled]` holds the file's bytes from offset `base`.
    let (mut base, mut filled) = (pos, 0usize);
    while pos < len {
        let have = &buf[(pos - base) as usize..filled];
        match record::check(have) {
            Ok(info) => {
                s.accept(pos, &info)?;
                pos += info.len as u64;
                continue;
            }
            // The record goes on past what was read, and the file holds it.
            Err(DecodeError::Truncated { need, .. }) if pos + need as u64 <= len && have.len() < need => {
                let want = need.max(SCAN_CHUNK).min(usize::try_from(len - pos).unwrap_or(usize::MAX));
                read_into(file, pos, want, buf).map_err(|e| io("read", e))?;
                (base, filled) = (pos, want);
                continue;
            }
            Err(_) => {}
        }
        // Not a valid record at `pos`: zeros to the end are a clean end;
        // anything else is judged on the whole rest of the file.
        if zeros_to_end(file, pos, len, buf).map_err(|e| io("read", e))? {
            return Ok(s.clean(pos));
        }
        let rest = usize::try_from(len - pos).map_err(|_| corrupt(path, pos, "segment too large"))?;
        read_into(file, pos, rest, buf).map_err(|e| io("read", e))?;
        return s.bad_tail(&buf[..rest], pos);
    }
    Ok(s.clean(pos))
}

/// Reads `n` bytes of `file` at `offset` into `buf[..n]` (growing `buf`
/// if needed, never shrinking it).
fn read_into(file: &File, offset: u64, n: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..n], offset)
}

/// Whether the bytes of `file` from `from` to `len` are all zero.
fn zeros_to_end(file: &File, from: u64, len: u64, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut at = from;
    while at < len {
        let n = (len - at).min(SCAN_CHUNK as u64) as usize;
        read_into(file, at, n, buf)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Checks the header in `buf` and that it names `expected_first` (the
/// first index in the file name); returns it.
fn check_first(path: &Path, buf: &[u8], expected_first: u64) -> Result<u64, StorageError> {
    let first_index = check_header(path, buf)?;
    if first_index != expected_first {
        return Err(corrupt(
            path,
            16,
            format!("header says first index {first_index} but the file name says {expected_first}"),
        ));
    }
    Ok(first_index)
}

/// The state of a scan: the valid records so far and what comes next.
struct Scanner<'a> {
    path: &'a Path,
    first_index: u64,
    entries: EntryIndex,
    group: Option<u64>,
    expect: u64,
}

impl<'a> Scanner<'a> {
    fn new(path: &'a Path, first_index: u64) -> Self {
        Self { path, first_index, entries: EntryIndex::new(), group: None, expect: first_index }
    }

    /// Takes the valid record `info` at `pos`, refusing one out of sequence.
    fn accept(&mut self, pos: u64, info: &record::RecordInfo) -> Result<(), StorageError> {
        let group_ok = match self.group {
            None => info.group <= info.index,
            Some(g) => info.group == g || info.group == info.index,
        };
        if info.index != self.expect || !group_ok {
            return Err(corrupt(
                self.path,
                pos,
                format!(
                    "record out of sequence: index {} group {} where index {} was expected",
                    info.index, info.group, self.expect
                ),
            ));
        }
        self.entries
            .push(pos, info.term, info.log_type)
            .map_err(|e| corrupt(self.path, pos, e.to_string()))?;
        self.group = Some(info.group);
        self.expect += 1;
        Ok(())
    }

    /// The scan of a segment whose valid records end at `end`, followed by
    /// nothing or zeros.
    fn clean(self, end: u64) -> Scan {
        Scan { first_index: self.first_index, entries: self.entries, end, torn: None }
    }

    /// The scan of a segment whose bytes from `pos` on, `rest` (to the end
    /// of the file), do not start with a valid record.
    fn bad_tail(self, rest: &[u8], pos: u64) -> Result<Scan, StorageError> {
        let err = match record::check(rest) {
            Ok(_) => return Err(corrupt(self.path, pos, "scan stopped at a valid record")),
            Err(err) => err,
        };
        if rest.iter().all(|&b| b == 0) {
            return Ok(self.clean(pos));
        }
        if let Some(later) = later_group_after(rest, 1, self.expect) {
            return Err(corrupt(
                self.path,
                pos,
                format!(
                    "bad record ({err}) followed by a valid record of a later write at offset {}: \
                     durable history is damaged",
                    pos + later
                ),
            ));
        }
        Ok(Scan {
            first_index: self.first_index,
            entries: self.entries,
            end: pos,
            torn: Some((pos, err.to_string())),
        })
    }
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
        let mut preparer = crate::prealloc::Preparer::new(dir.path());
        preparer.ensure_started(8192);
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

    /// `scan_file` of `bytes` written to a file, and `scan` of the bytes,
    /// as comparable strings.
    fn both_scans(bytes: &[u8], first: u64) -> (String, String) {
        fn show(r: Result<Scan, StorageError>) -> String {
            match r {
                Ok(s) => format!("ok {} {:?} {} {:?}", s.first_index, s.entries, s.end, s.torn),
                Err(e) => format!("err {e}"),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name(first));
        std::fs::write(&path, bytes).expect("write");
        let file = File::open(&path).expect("open");
        let mut buf = Vec::new();
        (show(scan_file(&path, &file, first, &mut buf)), show(scan(&path, bytes, first)))
    }

    /// A segment from index 5: records of the given payload sizes, the
    /// last two in a second sync group.
    fn segment_of(sizes: &[usize]) -> Vec<u8> {
        use raft::{Log, LogType};
        let mut seg = encode_header(5).to_vec();
        let n = sizes.len() as u64;
        for (i, &size) in (5u64..).zip(sizes) {
            let group = if i + 2 < 5 + n { 5 } else { 5 + n - 2 };
            let log =
                Log::new(i, 2, if i == 7 { LogType::Noop } else { LogType::Command }, vec![i as u8; size]);
            record::encode(&log, group, &mut seg).expect("encode");
        }
        seg
    }

    #[test]
    fn scanning_the_file_in_pieces_agrees_with_scanning_it_whole() {
        let seg = segment_of(&[10, 300, 0, 100, 7]);
        let records_end = seg.len();
        let (piecewise, whole) = both_scans(&seg, 5);
        assert!(piecewise.starts_with("ok 5"), "{piecewise}");
        assert_eq!(piecewise, whole, "clean segment");
        // Zeros after the records (a preallocated segment), longer than a piece.
        let mut zeros = seg.clone();
        zeros.resize(records_end + SCAN_CHUNK + 3, 0);
        assert_eq!(both_scans(&zeros, 5).0, whole, "zeros are the clean end");
        // Cuts and flips: torn tails, and damage before a later group,
        // judged the same way.
        let mut cases = Vec::new();
        for cut in (HEADER_LEN - 3..records_end).step_by(11) {
            cases.push(seg[..cut].to_vec());
        }
        for at in (HEADER_LEN..records_end).step_by(13) {
            let mut bad = seg.clone();
            bad[at] ^= 0x21;
            cases.push(bad);
        }
        let mut bad_then_zeros = zeros.clone();
        bad_then_zeros[records_end - 3] ^= 0x21;
        cases.push(bad_then_zeros);
        let mut garbage_in_zeros = zeros.clone();
        garbage_in_zeros[records_end + SCAN_CHUNK] = 1;
        cases.push(garbage_in_zeros);
        for (n, case) in cases.iter().enumerate() {
            let (piecewise, whole) = both_scans(case, 5);
            assert_eq!(piecewise, whole, "case {n}");
        }
        assert!(both_scans(&seg, 6).0.starts_with("err"), "a file name that disagrees with the header");
    }

    #[test]
    fn a_record_larger_than_a_scan_piece_is_read_whole() {
        let seg = segment_of(&[10, SCAN_CHUNK + SCAN_CHUNK / 2, 5, 6]);
        let (piecewise, whole) = both_scans(&seg, 5);
        assert!(piecewise.starts_with("ok 5") && piecewise.contains("None"), "{piecewise}");
        assert_eq!(piecewise, whole);
        let mut bad = seg.clone();
        bad[HEADER_LEN + 8 + 25 + 10 + SCAN_CHUNK] ^= 1;
        let (piecewise, whole) = both_scans(&bad, 5);
        assert!(piecewise.starts_with("err"), "damage before a later group: {piecewise}");
        assert_eq!(piecewise, whole);
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
