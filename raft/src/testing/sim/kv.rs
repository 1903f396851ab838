//! The in-simulation key-value state machine: commands encoded into log
//! entry bytes, and a per-node [`KvFsm`] that applies them with the shared
//! model's semantics ([`crate::testing::kv`]). Its
//! [`KvState`] (the data plus the configuration applied last) is what a
//! snapshot captures and restores.
//!
//! A command is one line of text, fields separated by `\x1f`:
//! `P key value` (put), `D key` (delete), `C key expected new` (compare and
//! swap; `expected` is `-` for "absent" or `=value`).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::testing::kv::{KvChange, KvInput, KvOutput};
use crate::types::Configuration;

const SEP: char = '\x1f';

/// Encodes a write request as command bytes. Reads are never encoded: they
/// go through ReadIndex.
pub(crate) fn encode(input: &KvInput) -> Option<Bytes> {
    let text = match input {
        KvInput::Put { key, value } => format!("P{SEP}{key}{SEP}{value}"),
        KvInput::Delete { key } => format!("D{SEP}{key}"),
        KvInput::Cas { key, expected, new } => {
            let expected = expected.as_ref().map_or_else(|| "-".to_owned(), |v| format!("={v}"));
            format!("C{SEP}{key}{SEP}{expected}{SEP}{new}")
        }
        KvInput::Get { .. } => return None,
    };
    Some(Bytes::from(text))
}

/// Decodes command bytes produced by [`encode`].
pub(crate) fn decode(data: &[u8]) -> Result<KvInput, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("command is not UTF-8: {e}"))?;
    let fields: Vec<&str> = text.split(SEP).collect();
    match fields.as_slice() {
        ["P", key, value] => Ok(KvInput::Put { key: (*key).into(), value: (*value).into() }),
        ["D", key] => Ok(KvInput::Delete { key: (*key).into() }),
        ["C", key, expected, new] => {
            let expected = match *expected {
                "-" => None,
                e => {
                    Some(e.strip_prefix('=').ok_or_else(|| format!("bad CAS expectation {e:?}"))?.to_owned())
                }
            };
            Ok(KvInput::Cas { key: (*key).into(), expected, new: (*new).into() })
        }
        _ => Err(format!("undecodable command {text:?}")),
    }
}

/// The replicated state: what a snapshot captures and what two nodes that
/// applied the same prefix of the log must agree on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KvState {
    /// Key -> (value, index of the entry that last changed the key).
    data: BTreeMap<String, (String, u64)>,
    /// Index of the entry that last deleted each absent key.
    deleted_at: BTreeMap<String, u64>,
    /// The newest configuration applied, and the index of its entry.
    pub(crate) conf: (u64, Configuration),
}

/// One node's key-value state machine.
#[derive(Debug, Default)]
pub(crate) struct KvFsm {
    pub(crate) state: KvState,
    /// Last applied log index.
    pub(crate) applied: u64,
    /// Term of the entry at `applied` (0 if none).
    pub(crate) applied_term: u64,
}

impl KvFsm {
    /// A state machine restored from a snapshot covering `index`/`term`.
    pub(crate) fn restored(index: u64, term: u64, state: KvState) -> Self {
        Self { state, applied: index, applied_term: term }
    }

    /// Applies a write at `index` and returns the output a client sees.
    /// The semantics are the shared model's ([`KvInput::apply`]); this
    /// adds which entry last changed each key.
    pub(crate) fn apply(&mut self, index: u64, input: &KvInput) -> KvOutput {
        let s = &mut self.state;
        let key = input.key();
        let (output, change) = input.apply(s.data.get(key).map(|(v, _)| v));
        match change {
            KvChange::Keep => {}
            KvChange::Set(value) => {
                s.data.insert(key.to_owned(), (value, index));
            }
            KvChange::Remove => {
                s.data.remove(key);
                s.deleted_at.insert(key.to_owned(), index);
            }
        }
        output
    }

    /// Applies a configuration entry at `index`.
    pub(crate) fn apply_configuration(&mut self, index: u64, conf: Configuration) {
        self.state.conf = (index, conf);
    }

    /// The value of `key` and the index of the entry that last changed it
    /// (0 if never).
    pub(crate) fn get(&self, key: &str) -> (Option<String>, u64) {
        match self.state.data.get(key) {
            Some((v, i)) => (Some(v.clone()), *i),
            None => (None, self.state.deleted_at.get(key).copied().unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let inputs = [
            KvInput::Put { key: "k".into(), value: "v".into() },
            KvInput::Delete { key: "k".into() },
            KvInput::Cas { key: "k".into(), expected: None, new: "n".into() },
            KvInput::Cas { key: "k".into(), expected: Some("-".into()), new: "n".into() },
        ];
        for input in inputs {
            let bytes = encode(&input).expect("writes encode");
            assert_eq!(decode(&bytes).expect("decodes"), input);
        }
        assert!(encode(&KvInput::Get { key: "k".into() }).is_none());
        assert!(decode(b"X").is_err());
    }

    #[test]
    fn fsm_applies_cas_and_tracks_last_change() {
        let mut fsm = KvFsm::default();
        let cas = |expected: Option<&str>, new: &str| KvInput::Cas {
            key: "k".into(),
            expected: expected.map(String::from),
            new: new.into(),
        };
        assert_eq!(fsm.apply(1, &cas(None, "a")), KvOutput::Cas(true));
        assert_eq!(fsm.apply(2, &cas(None, "b")), KvOutput::Cas(false));
        assert_eq!(fsm.get("k"), (Some("a".into()), 1));
        assert_eq!(fsm.apply(3, &KvInput::Delete { key: "k".into() }), KvOutput::Delete);
        assert_eq!(fsm.get("k"), (None, 3));
    }
}
