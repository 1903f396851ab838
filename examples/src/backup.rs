//! The snapshot backup file `raftctl snapshot save` writes and
//! `raftctl snapshot restore` reads: a node's snapshot with its metadata
//! and a checksum, so a damaged or truncated backup is refused before
//! anything is sent to the cluster.
//!
//! # Format (version 1)
//!
//! All integers are big-endian.
//!
//! | offset      | size       | content                                              |
//! |-------------|------------|------------------------------------------------------|
//! | 0           | 8          | magic `RAFTSNAP`                                     |
//! | 8           | 4          | format version (`1`)                                 |
//! | 12          | 4          | `M`: length of the metadata                          |
//! | 16          | `M`        | metadata: [`raft::SnapshotMeta`] as JSON (`id`, `index`, `term`, `configuration`, `configuration_index`, `size`) |
//! | 16+M        | 8          | `N`: length of the snapshot data (equals `size`)     |
//! | 24+M        | `N`        | the snapshot data, as the FSM wrote it               |
//! | 24+M+N      | 4          | CRC-32C (Castagnoli) of every byte before it         |
//!
//! The file ends right after the checksum. [`verify`] checks all of it:
//! magic, version, metadata, lengths, the checksum and that nothing
//! follows.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft::SnapshotMeta;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"RAFTSNAP";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Longest metadata accepted (a configuration of many thousand servers).
pub const MAX_META_BYTES: u32 = 16 * 1024 * 1024;

/// Why a backup could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with [`MAGIC`].
    #[error("{0}: not a raftctl snapshot backup (wrong magic bytes)")]
    NotABackup(PathBuf),
    /// Written by a format this code does not read.
    #[error(
        "{path}: backup format version {version} is not supported (this raftctl reads version {VERSION})"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: u32,
    },
    /// The file is shorter or longer than its header says, or its lengths
    /// disagree with each other.
    #[error("{path}: damaged backup: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checksum does not match the content.
    #[error("{path}: damaged backup: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of its content.
        computed: u32,
    },
    /// Reading the file failed midway.
    #[error("reading the backup failed: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the file failed.
    #[error("writing the backup failed: {0}")]
    Write(#[source] std::io::Error),
    /// Writing: the data does not add up to the metadata's size.
    #[error("the snapshot data is {got} bytes but its metadata says {expected}")]
    SizeMismatch {
        /// Bytes the metadata announced.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
}

/// Writes a backup: the header on creation, the data as it arrives, the
/// checksum on [`finish`](BackupWriter::finish).
pub struct BackupWriter<W: Write> {
    out: W,
    crc: u32,
    expected: u64,
    written: u64,
}

impl<W: Write> BackupWriter<W> {
    /// Writes the header for a snapshot described by `meta` (its `size` is
    /// the number of data bytes that must follow).
    pub fn new(mut out: W, meta: &SnapshotMeta) -> std::io::Result<Self> {
        let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        let meta_len = u32::try_from(json.len())
            .ok()
            .filter(|&len| len <= MAX_META_BYTES)
            .ok_or_else(|| std::io::Error::other("the snapshot metadata is too large for a backup"))?;
        let mut header = Vec::with_capacity(json.len() + 24);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_be_bytes());
        header.extend_from_slice(&meta_len.to_be_bytes());
        header.extend_from_slice(&json);
        header.extend_from_slice(&meta.size.to_be_bytes());
        out.write_all(&header)?;
        Ok(Self { out, crc: crc32c::crc32c(&header), expected: meta.size, written: 0 })
    }

    /// Appends snapshot data; refuses more than the metadata announced.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), BackupError> {
        let got = self.written + data.len() as u64;
        if got > self.expected {
            return Err(BackupError::SizeMismatch { expected: self.expected, got });
        }
        self.out.write_all(data).map_err(BackupError::Write)?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.written = got;
        Ok(())
    }

    /// Writes the checksum once all the data was written; returns the
    /// output and the number of data bytes.
    pub fn finish(mut self) -> Result<(W, u64), BackupError> {
        if self.written != self.expected {
            return Err(BackupError::SizeMismatch { expected: self.expected, got: self.written });
        }
        self.out
            .write_all(&self.crc.to_be_bytes())
            .and_then(|()| self.out.flush())
            .map_err(BackupError::Write)?;
        Ok((self.out, self.written))
    }
}

/// Where the parts of a verified backup are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
    /// Offset of the first data byte in the file.
    pub data_offset: u64,
    /// Number of data bytes.
    pub data_len: u64,
}

/// Checks the whole backup at `path` (magic, version, metadata, lengths,
/// checksum, nothing after it) and returns what it holds.
pub fn verify(path: &Path) -> Result<BackupInfo, BackupError> {
    let io = |source| BackupError::Io { path: path.to_owned(), source };
    let damaged = |reason: String| BackupError::Damaged { path: path.to_owned(), reason };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut input = BufReader::with_capacity(256 * 1024, file);
    let mut fixed = [0u8; 16];
    let got = read_up_to(&mut input, &mut fixed).map_err(io)?;
    if got < MAGIC.len() || &fixed[..8] != MAGIC {
        return Err(BackupError::NotABackup(path.to_owned()));
    }
    if got < fixed.len() {
        return Err(damaged(format!("only {file_len} bytes, too short for a header")));
    }
    let version = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    if version != VERSION {
        return Err(BackupError::Version { path: path.to_owned(), version });
    }
    let meta_len = u32::from_be_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
    if meta_len > MAX_META_BYTES || u64::from(meta_len) + 28 > file_len {
        return Err(damaged(format!("metadata length {meta_len} does not fit in a {file_len}-byte file")));
    }
    let mut meta_json = vec![0u8; meta_len as usize];
    read_exact_or(&mut input, &mut meta_json, || damaged("truncated in the metadata".into()))?;
    let mut data_len = [0u8; 8];
    read_exact_or(&mut input, &mut data_len, || damaged("truncated before the data length".into()))?;
    let data_len = u64::from_be_bytes(data_len);
    let data_offset = 24 + u64::from(meta_len);
    let expected_len = data_offset.checked_add(data_len).and_then(|n| n.checked_add(4));
    if expected_len != Some(file_len) {
        return Err(damaged(format!(
            "the header announces {data_len} data bytes, so {} bytes in all, but the file has {file_len}",
            expected_len.map_or_else(|| "more than 2^64".to_owned(), |n| n.to_string())
        )));
    }
    let mut crc = crc32c::crc32c(&fixed);
    crc = crc32c::crc32c_append(crc, &meta_json);
    crc = crc32c::crc32c_append(crc, &data_len.to_be_bytes());
    let mut left = data_len;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        read_exact_or(&mut input, &mut buf[..want], || damaged("truncated in the data".into()))?;
        crc = crc32c::crc32c_append(crc, &buf[..want]);
        left -= want as u64;
    }
    let mut stored = [0u8; 4];
    read_exact_or(&mut input, &mut stored, || damaged("the checksum is missing".into()))?;
    let stored = u32::from_be_bytes(stored);
    if stored != crc {
        return Err(BackupError::Checksum { path: path.to_owned(), stored, computed: crc });
    }
    // The metadata is parsed only once the checksum vouches for it.
    let meta: SnapshotMeta = serde_json::from_slice(&meta_json)
        .map_err(|e| damaged(format!("the metadata is not a snapshot description: {e}")))?;
    if meta.size != data_len {
        return Err(damaged(format!("the metadata says {} data bytes, the header {data_len}", meta.size)));
    }
    Ok(BackupInfo { meta, data_offset, data_len })
}

/// Fills `buf` as far as the input goes; returns how many bytes it read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Fills `buf`, or fails with `short()` at the end of the input.
fn read_exact_or(
    input: &mut impl Read,
    buf: &mut [u8],
    short: impl FnOnce() -> BackupError,
) -> Result<(), BackupError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(short()),
        Err(source) => Err(BackupError::Read(source)),
    }
}

/// Opens the data of a backup [`verify`] checked: a reader of exactly its
/// `data_len` bytes.
pub fn open_data(path: &Path, info: &BackupInfo) -> Result<impl Read + Send + 'static, BackupError> {
    let io = |source| BackupError::Io { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(info.data_offset)).map_err(io)?;
    Ok(BufReader::with_capacity(256 * 1024, file).take(info.data_len))
}

#[cfg(test)]
mod tests {
    use raft::{Configuration, Server};

    use super::*;

    fn meta(size: u64) -> SnapshotMeta {
        SnapshotMeta {
            id: "5-100-1".into(),
            index: 100,
            term: 5,
            configuration: Configuration::new(vec![Server::voter("n1", "127.0.0.1:7001")]),
            configuration_index: 3,
            size,
        }
    }

    fn write(dir: &Path, data: &[u8]) -> PathBuf {
        let path = dir.join("backup.snap");
        let file = File::create(&path).expect("create");
        let mut w = BackupWriter::new(file, &meta(data.len() as u64)).expect("header");
        for chunk in data.chunks(7) {
            w.write_data(chunk).expect("data");
        }
        w.finish().expect("finish");
        path
    }

    #[test]
    fn a_written_backup_verifies_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let path = write(dir.path(), &data);
        let info = verify(&path).expect("verify");
        assert_eq!(info.meta, meta(1000));
        let mut back = Vec::new();
        open_data(&path, &info).expect("open").read_to_end(&mut back).expect("read");
        assert_eq!(back, data);
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), b"some snapshot data, long enough to damage");
        let good = std::fs::read(&path).expect("read");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).expect("write");
            assert!(verify(&path).is_err(), "a flipped byte at {at} went unnoticed");
        }
        // The data region specifically fails on the checksum.
        let mut bad = good.clone();
        let at = good.len() - 10;
        bad[at] ^= 1;
        std::fs::write(&path, &bad).expect("write");
        assert!(matches!(verify(&path), Err(BackupError::Checksum { .. })), "{:?}", verify(&path));
    }

    #[test]
    fn truncated_extended_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), b"0123456789");
        let good = std::fs::read(&path).expect("read");
        std::fs::write(&path, &good[..good.len() - 1]).expect("write");
        assert!(matches!(verify(&path), Err(BackupError::Damaged { .. })), "truncated");
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).expect("write");
        assert!(matches!(verify(&path), Err(BackupError::Damaged { .. })), "extended");
        std::fs::write(&path, b"{\"not\": \"a backup at all\"}").expect("write");
        assert!(matches!(verify(&path), Err(BackupError::NotABackup(_))), "foreign");
        let mut v2 = good.clone();
        v2[11] = 2;
        std::fs::write(&path, &v2).expect("write");
        assert!(matches!(verify(&path), Err(BackupError::Version { version: 2, .. })), "version");
    }

    #[test]
    fn the_writer_refuses_data_that_does_not_match_the_size() {
        let mut w = BackupWriter::new(Vec::new(), &meta(4)).expect("header");
        assert!(matches!(w.write_data(b"12345"), Err(BackupError::SizeMismatch { expected: 4, got: 5 })));
        w.write_data(b"123").expect("fits");
        assert!(matches!(w.finish(), Err(BackupError::SizeMismatch { expected: 4, got: 3 })));
    }
}
