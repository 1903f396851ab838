//! A replicated key-value store: [`KvFsm`] applies [`KvCommand`]s and
//! answers with a [`KvResponse`]. Reads go to [`KvFsm::handle`], a shared
//! view of the map, after [`raft::Raft::linearizable_read`].
//!
//! Besides the user's keys the FSM keeps a second, replicated map: the
//! directory of nodes ([`KvFsm::nodes`], server id to HTTP API address),
//! written by [`KvCommand::RegisterNode`]. The `kv serve` service uses it to
//! forward a request reaching a follower to the leader's API: the raft
//! configuration only holds transport addresses, and every node learns the
//! API addresses through the log, so they survive restarts and snapshots.
//!
//! Put, delete and compare-and-swap mean what the test model
//! `raft::testing::kv` says they mean; the runtime simulations check this
//! FSM against it. It keeps its own `apply` because an example does not
//! depend on test helpers and its answers carry more (previous values).
//!
//! Snapshot format: `u64` key count, then `(key, value)` pairs; then `u64`
//! node count and `(id, api address)` pairs. Strings are a `u32` length
//! and UTF-8 bytes. A snapshot written before the node directory existed
//! (no second section) restores with an empty directory.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft::{async_trait, BoxError, Fsm, FsmSnapshot, Log, SnapshotReader, SnapshotWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A write to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCommand {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Set `key` to `new` only if its current value is `expected`.
    Cas {
        /// The key.
        key: String,
        /// The value it must have now (`None`: must be absent).
        expected: Option<String>,
        /// The new value.
        new: String,
    },
    /// Records (or replaces) the HTTP API address of a server, in the node
    /// directory ([`KvFsm::nodes`]), not in the user's keys. Answers
    /// [`KvResponse::Previous`] with the address it replaces.
    RegisterNode {
        /// The raft server id.
        id: String,
        /// Its HTTP API address (`host:port`).
        api_addr: String,
    },
}

/// What applying a [`KvCommand`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvResponse {
    /// The previous value of the key.
    Previous(Option<String>),
    /// Whether a compare-and-swap succeeded, and the value it found.
    Cas {
        /// True if the swap happened.
        swapped: bool,
        /// The value before the command.
        current: Option<String>,
    },
    /// The command bytes could not be decoded (never produced by [`KvCommand::encode`]).
    Invalid(String),
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Result<String, String> {
    if buf.remaining() < 4 {
        return Err("truncated length".into());
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err("truncated string".into());
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|e| e.to_string())
}

impl KvCommand {
    /// Encodes the command as log entry data.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            KvCommand::Put { key, value } => {
                buf.put_u8(1);
                put_str(&mut buf, key);
                put_str(&mut buf, value);
            }
            KvCommand::Delete { key } => {
                buf.put_u8(2);
                put_str(&mut buf, key);
            }
            KvCommand::Cas { key, expected, new } => {
                buf.put_u8(3);
                put_str(&mut buf, key);
                match expected {
                    Some(e) => {
                        buf.put_u8(1);
                        put_str(&mut buf, e);
                    }
                    None => buf.put_u8(0),
                }
                put_str(&mut buf, new);
            }
            KvCommand::RegisterNode { id, api_addr } => {
                buf.put_u8(4);
                put_str(&mut buf, id);
                put_str(&mut buf, api_addr);
            }
        }
        buf.freeze()
    }

    /// Decodes log entry data.
    pub fn decode(mut data: Bytes) -> Result<Self, String> {
        if !data.has_remaining() {
            return Err("empty command".into());
        }
        let cmd = match data.get_u8() {
            1 => KvCommand::Put { key: get_str(&mut data)?, value: get_str(&mut data)? },
            2 => KvCommand::Delete { key: get_str(&mut data)? },
            3 => {
                let key = get_str(&mut data)?;
                if !data.has_remaining() {
                    return Err("truncated cas".into());
                }
                let expected = match data.get_u8() {
                    0 => None,
                    _ => Some(get_str(&mut data)?),
                };
                KvCommand::Cas { key, expected, new: get_str(&mut data)? }
            }
            4 => KvCommand::RegisterNode { id: get_str(&mut data)?, api_addr: get_str(&mut data)? },
            op => return Err(format!("unknown op {op}")),
        };
        if data.has_remaining() {
            return Err("trailing bytes".into());
        }
        Ok(cmd)
    }
}

/// The shared map behind a [`KvFsm`].
pub type KvMap = Arc<RwLock<BTreeMap<String, String>>>;

/// The key-value state machine.
#[derive(Clone, Default)]
pub struct KvFsm {
    map: KvMap,
    /// Server id to HTTP API address; see the module docs.
    nodes: KvMap,
}

impl KvFsm {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle to read the map (after a linearizable read, for fresh data).
    pub fn handle(&self) -> KvMap {
        self.map.clone()
    }

    /// A handle to the node directory: server id to HTTP API address, as
    /// registered with [`KvCommand::RegisterNode`].
    pub fn nodes(&self) -> KvMap {
        self.nodes.clone()
    }
}

/// Write access to a map, ignoring poisoning (a panicking writer cannot
/// leave a `BTreeMap` half-updated in a way that matters here).
fn write(map: &KvMap) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, String>> {
    map.write().unwrap_or_else(|e| e.into_inner())
}

struct KvSnapshot {
    map: BTreeMap<String, String>,
    nodes: BTreeMap<String, String>,
}

fn put_map(buf: &mut BytesMut, map: &BTreeMap<String, String>) {
    buf.put_u64(map.len() as u64);
    for (k, v) in map {
        put_str(buf, k);
        put_str(buf, v);
    }
}

fn get_map(buf: &mut Bytes) -> Result<BTreeMap<String, String>, String> {
    if buf.remaining() < 8 {
        return Err("snapshot too short".into());
    }
    let n = buf.get_u64();
    let mut map = BTreeMap::new();
    for _ in 0..n {
        let k = get_str(buf)?;
        let v = get_str(buf)?;
        map.insert(k, v);
    }
    Ok(map)
}

#[async_trait]
impl FsmSnapshot for KvSnapshot {
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
        let mut buf = BytesMut::new();
        buf.put_u64(self.map.len() as u64);
        for (k, v) in &self.map {
            put_str(&mut buf, k);
            put_str(&mut buf, v);
            if buf.len() > 64 * 1024 {
                sink.write_all(&buf.split()).await?;
            }
        }
        put_map(&mut buf, &self.nodes);
        sink.write_all(&buf).await?;
        Ok(())
    }
}

#[async_trait]
impl Fsm for KvFsm {
    type Response = KvResponse;

    async fn apply(&mut self, log: &Log) -> KvResponse {
        let cmd = match KvCommand::decode(log.data.clone()) {
            Ok(c) => c,
            Err(e) => return KvResponse::Invalid(e),
        };
        match cmd {
            KvCommand::Put { key, value } => KvResponse::Previous(write(&self.map).insert(key, value)),
            KvCommand::Delete { key } => KvResponse::Previous(write(&self.map).remove(&key)),
            KvCommand::Cas { key, expected, new } => {
                let mut map = write(&self.map);
                let current = map.get(&key).cloned();
                let swapped = current == expected;
                if swapped {
                    map.insert(key, new);
                }
                KvResponse::Cas { swapped, current }
            }
            KvCommand::RegisterNode { id, api_addr } => {
                KvResponse::Previous(write(&self.nodes).insert(id, api_addr))
            }
        }
    }

    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Box::new(KvSnapshot { map, nodes }))
    }

    async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
        let mut data = Vec::new();
        snapshot.read_to_end(&mut data).await?;
        let mut buf = Bytes::from(data);
        let map = get_map(&mut buf)?;
        // Snapshots from before the node directory end here.
        let nodes = if buf.has_remaining() { get_map(&mut buf)? } else { BTreeMap::new() };
        if buf.has_remaining() {
            return Err("trailing bytes in snapshot".into());
        }
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = map;
        *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = nodes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_garbage_is_rejected() {
        let cmds = [
            KvCommand::Put { key: "a".into(), value: "1".into() },
            KvCommand::Delete { key: "a".into() },
            KvCommand::Cas { key: "a".into(), expected: None, new: "2".into() },
            KvCommand::Cas { key: "a".into(), expected: Some("2".into()), new: "3".into() },
            KvCommand::RegisterNode { id: "n1".into(), api_addr: "127.0.0.1:8001".into() },
        ];
        for c in cmds {
            assert_eq!(KvCommand::decode(c.encode()), Ok(c));
        }
        assert!(KvCommand::decode(Bytes::from_static(&[9, 0])).is_err());
        assert!(KvCommand::decode(Bytes::from_static(&[1, 0, 0, 0, 9])).is_err());
    }
}
