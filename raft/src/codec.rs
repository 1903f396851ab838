//! The one place that serializes values to bytes (configurations inside log
//! entries, hard state in the stable store, snapshot metadata). Everything
//! goes through [`encode`] and [`decode`], so the format can be swapped in one
//! file. Backed by bincode 2 (pinned: bincode 3 is deliberately broken).

use serde::{de::DeserializeOwned, Serialize};

use crate::error::StorageError;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encodes a value.
///
/// ```
/// let bytes = raft::codec::encode(&(1u64, "a".to_string())).unwrap();
/// let back: (u64, String) = raft::codec::decode(&bytes).unwrap();
/// assert_eq!(back, (1, "a".to_string()));
/// ```
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StorageError::Codec(e.to_string()))
}

/// Decodes a value, rejecting trailing bytes and oversized lengths.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| StorageError::Codec(e.to_string()))?;
    if read != bytes.len() {
        return Err(StorageError::Codec(format!("{} trailing bytes after value", bytes.len() - read)));
    }
    Ok(value)
}
