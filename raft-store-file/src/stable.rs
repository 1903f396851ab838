//! The stable store: a small key-value map kept in memory and persisted
//! whole to `<dir>/stable.dat` on every `set`, replaced atomically
//! (temporary file, fsync, rename, directory fsync). After a crash the file
//! holds either the old or the new map, never a mix.
//!
//! ```text
//! stable.dat = magic "RAFTKV\0\0" | version: u32 LE | count: u32 LE
//!              | (key_len: u32 LE | key | value_len: u32 LE | value) * count
//!              | crc: u32 LE (CRC32C of everything before it)
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use raft::StorageError;

use crate::fsutil;

const MAGIC: &[u8; 8] = b"RAFTKV\0\0";

/// The stored map.
type Map = BTreeMap<Vec<u8>, Vec<u8>>;
const VERSION: u32 = 1;

/// The key-value map and its file.
#[derive(Debug)]
pub(crate) struct StableFile {
    path: PathBuf,
    /// The durable contents; also serializes writers.
    map: Mutex<Map>,
}

fn encode(map: &Map) -> Result<Vec<u8>, StorageError> {
    let len32 = |n: usize| {
        u32::try_from(n)
            .map_err(|_| StorageError::Codec(format!("stable store item of {n} bytes is too large")))
    };
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&len32(map.len())?.to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&len32(k.len())?.to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&len32(v.len())?.to_le_bytes());
        out.extend_from_slice(v);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn decode(path: &Path, buf: &[u8]) -> Result<Map, StorageError> {
    let corrupt = |offset: usize, reason: &str| StorageError::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        reason: reason.to_owned(),
    };
    if buf.len() < 20 {
        return Err(corrupt(0, "stable store file too short"));
    }
    let body = buf.len() - 4;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[body..]);
    if u32::from_le_bytes(crc) != crc32c::crc32c(&buf[..body]) {
        return Err(corrupt(body, "stable store checksum mismatch"));
    }
    if &buf[0..8] != MAGIC {
        return Err(corrupt(0, "bad stable store magic"));
    }
    let mut pos = 8;
    let mut take = |n: usize| -> Result<&[u8], StorageError> {
        if pos + n > body {
            return Err(corrupt(pos, "stable store record runs past the end"));
        }
        let s = &buf[pos..pos + n];
        pos += n;
        Ok(s)
    };
    let read_u32 = |s: &[u8]| {
        let mut b = [0u8; 4];
        b.copy_from_slice(s);
        u32::from_le_bytes(b)
    };
    let version = read_u32(take(4)?);
    if version != VERSION {
        return Err(corrupt(8, "unsupported stable store version"));
    }
    let count = read_u32(take(4)?);
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let klen = read_u32(take(4)?) as usize;
        let key = take(klen)?.to_vec();
        let vlen = read_u32(take(4)?) as usize;
        let value = take(vlen)?.to_vec();
        map.insert(key, value);
    }
    Ok(map)
}

impl StableFile {
    /// Loads `<dir>/stable.dat` (empty if it does not exist). Blocking.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join("stable.dat");
        let map = match std::fs::read(&path) {
            Ok(buf) => decode(&path, &buf)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(StorageError::io(format!("read {}", path.display()), e)),
        };
        Ok(Self { path, map: Mutex::new(map) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Map>, StorageError> {
        self.map.lock().map_err(|_| StorageError::Failed("stable store lock poisoned".into()))
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock()?.get(key).cloned())
    }

    /// Durably sets `key`. Blocking. The in-memory map changes only once
    /// the file is durable.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let mut map = self.lock()?;
        let mut next = map.clone();
        next.insert(key.to_vec(), value.to_vec());
        fsutil::write_atomic(&self.path, &encode(&next)?)?;
        *map = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut map = BTreeMap::new();
        map.insert(b"term".to_vec(), 5u64.to_be_bytes().to_vec());
        map.insert(b"vote".to_vec(), b"node-1".to_vec());
        let buf = encode(&map).unwrap();
        assert_eq!(decode(Path::new("x"), &buf).unwrap(), map);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 4;
            assert!(decode(Path::new("x"), &bad).is_err(), "flip at {i}");
        }
    }
}
