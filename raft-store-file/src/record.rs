//! Framing of one log entry inside a segment file.
//!
//! ```text
//! record  = len: u32 LE | crc: u32 LE | payload (len bytes)
//! payload = index: u64 LE | term: u64 LE | group: u64 LE | log_type: u8 | data
//! crc     = CRC32C over the 4 length bytes followed by the payload
//! ```
//!
//! `group` is the index of the first entry written by the same fdatasync
//! (the "sync group"). Recovery uses it to tell a torn, never-acknowledged
//! tail from damage to durable history: a valid record of a *later* group
//! behind a bad record proves the bad record had been synced.

use bytes::Bytes;
use raft::{Log, LogType};

/// Bytes before the payload: length and checksum.
pub(crate) const FRAME_HEADER: usize = 8;
/// Fixed part of the payload: index, term, group, type.
pub(crate) const PAYLOAD_FIXED: usize = 8 + 8 + 8 + 1;
/// Largest payload accepted (1 GiB); anything longer is treated as garbage
/// when reading and refused when writing.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// The parts of a record recovery and the read path look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordInfo {
    /// Log index of the entry.
    pub index: u64,
    /// Term of the entry.
    pub term: u64,
    /// First index of the sync group the entry was written in.
    pub group: u64,
    /// Type of the entry.
    pub log_type: LogType,
    /// Total length of the record including its frame header.
    pub len: usize,
}

/// Why bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The buffer ends before the record does (a torn write, or the end).
    #[error("record truncated: need {need} bytes, {have} available")]
    Truncated {
        /// Bytes the record claims to need.
        need: usize,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// The length field is impossible.
    #[error("invalid record length {0}")]
    BadLength(usize),
    /// The checksum does not match.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC in the frame.
        stored: u32,
        /// The CRC of the bytes read.
        computed: u32,
    },
    /// The checksum matched but the log type byte is unknown.
    #[error("unknown log type {0}")]
    BadType(u8),
}

fn type_to_byte(t: LogType) -> u8 {
    match t {
        LogType::Command => 0,
        LogType::Noop => 1,
        LogType::Barrier => 2,
        LogType::Configuration => 3,
    }
}

fn byte_to_type(b: u8) -> Result<LogType, DecodeError> {
    Ok(match b {
        0 => LogType::Command,
        1 => LogType::Noop,
        2 => LogType::Barrier,
        3 => LogType::Configuration,
        other => return Err(DecodeError::BadType(other)),
    })
}

/// Length of the record `log` encodes to.
pub(crate) fn encoded_len(log: &Log) -> usize {
    FRAME_HEADER + PAYLOAD_FIXED + log.data.len()
}

/// Appends the record for `log`, written in the sync group starting at
/// `group`, to `out`. Fails only if the entry is larger than [`MAX_PAYLOAD`].
pub(crate) fn encode(log: &Log, group: u64, out: &mut Vec<u8>) -> Result<(), raft::StorageError> {
    let payload_len = PAYLOAD_FIXED + log.data.len();
    if payload_len > MAX_PAYLOAD {
        return Err(raft::StorageError::Codec(format!(
            "log entry {} is {} bytes, more than the {} byte limit",
            log.index,
            log.data.len(),
            MAX_PAYLOAD - PAYLOAD_FIXED
        )));
    }
    let start = out.len();
    let len_bytes = (payload_len as u32).to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&log.index.to_le_bytes());
    out.extend_from_slice(&log.term.to_le_bytes());
    out.extend_from_slice(&group.to_le_bytes());
    out.push(type_to_byte(log.log_type));
    out.extend_from_slice(&log.data);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Checks the record at the start of `buf` and returns its header fields.
pub(crate) fn check(buf: &[u8]) -> Result<RecordInfo, DecodeError> {
    if buf.len() < FRAME_HEADER {
        return Err(DecodeError::Truncated { need: FRAME_HEADER, have: buf.len() });
    }
    let payload_len = u32_at(buf, 0) as usize;
    if !(PAYLOAD_FIXED..=MAX_PAYLOAD).contains(&payload_len) {
        return Err(DecodeError::BadLength(payload_len));
    }
    let total = FRAME_HEADER + payload_len;
    if buf.len() < total {
        return Err(DecodeError::Truncated { need: total, have: buf.len() });
    }
    let stored = u32_at(buf, 4);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), &buf[FRAME_HEADER..total]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let log_type = byte_to_type(buf[FRAME_HEADER + 24])?;
    Ok(RecordInfo {
        index: u64_at(buf, FRAME_HEADER),
        term: u64_at(buf, FRAME_HEADER + 8),
        group: u64_at(buf, FRAME_HEADER + 16),
        log_type,
        len: total,
    })
}

/// Decodes the record at the start of `buf`, whose bytes are shared with the
/// returned entry's data (no copy).
pub(crate) fn decode(buf: &Bytes) -> Result<(Log, usize), DecodeError> {
    let info = check(buf)?;
    let p = FRAME_HEADER;
    let log = Log {
        index: info.index,
        term: info.term,
        log_type: info.log_type,
        data: buf.slice(p + PAYLOAD_FIXED..info.len),
    };
    Ok((log, info.len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_flips() {
        let log = Log::new(7, 3, LogType::Configuration, &b"hello"[..]);
        let mut buf = Vec::new();
        encode(&log, 5, &mut buf).unwrap();
        assert_eq!(buf.len(), encoded_len(&log));
        let bytes = Bytes::from(buf.clone());
        let (back, len) = decode(&bytes).unwrap();
        assert_eq!(back, log);
        assert_eq!(len, buf.len());
        let info = check(&buf).unwrap();
        assert_eq!((info.index, info.term, info.group, info.log_type), (7, 3, 5, LogType::Configuration));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(check(&bad).is_err(), "flip at byte {i} not detected");
        }
        for cut in 0..buf.len() {
            assert!(check(&buf[..cut]).is_err(), "truncation at {cut} not detected");
        }
    }
}
