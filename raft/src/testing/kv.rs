//! The key-value model, once: the requests and responses of a key-value
//! store ([`KvInput`], [`KvOutput`]) and what each request does to the
//! value of its key ([`KvInput::apply`]). The linearizability checker's
//! sequential specification ([`KvModel`](super::linearizability::KvModel)),
//! the simulation's state machine and the tests' reference store all apply
//! requests through it, so put, delete, compare-and-swap and get mean the
//! same thing everywhere.
//!
//! The example service's state machine (`raft_examples::kv::KvFsm`) keeps
//! its own `apply`: an example must not depend on test helpers (this module
//! needs the `testing` feature), and its commands answer more than a
//! [`KvOutput`] (the previous value, a node directory). The runtime
//! simulations check it against this model: their histories of its
//! answers go through [`check_kv`](super::linearizability::check_kv).

use std::collections::BTreeMap;

/// A request to a key-value store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Set `key` to `new` if its current value is `expected` (`None`: absent).
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold for the swap to happen.
        expected: Option<String>,
        /// The value written if the swap happens.
        new: String,
    },
}

impl KvInput {
    /// The key the request acts on.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Put { key, .. }
            | KvInput::Get { key }
            | KvInput::Delete { key }
            | KvInput::Cas { key, .. } => key,
        }
    }
}

/// A response from a key-value store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The put was applied.
    Put,
    /// The value read (`None`: absent).
    Get(Option<String>),
    /// The delete was applied.
    Delete,
    /// Whether the compare-and-swap happened.
    Cas(bool),
}

/// What a request does to the value of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvChange {
    /// The value stays as it is (a read, a compare-and-swap that failed).
    Keep,
    /// The key now holds this value.
    Set(String),
    /// The key is removed.
    Remove,
}

impl KvInput {
    /// Applies the request to `current`, the value its key holds (`None`:
    /// absent): returns what the client is answered and what becomes of the
    /// value. A put sets, a delete removes, a compare-and-swap sets `new`
    /// only if the value is `expected` (absence matches `None`), a get
    /// reads.
    pub fn apply(&self, current: Option<&String>) -> (KvOutput, KvChange) {
        match self {
            KvInput::Put { value, .. } => (KvOutput::Put, KvChange::Set(value.clone())),
            KvInput::Get { .. } => (KvOutput::Get(current.cloned()), KvChange::Keep),
            KvInput::Delete { .. } => (KvOutput::Delete, KvChange::Remove),
            KvInput::Cas { expected, new, .. } if current == expected.as_ref() => {
                (KvOutput::Cas(true), KvChange::Set(new.clone()))
            }
            KvInput::Cas { .. } => (KvOutput::Cas(false), KvChange::Keep),
        }
    }
}

impl KvChange {
    /// The value after the change, given the value before.
    pub fn applied_to(self, current: Option<String>) -> Option<String> {
        match self {
            KvChange::Keep => current,
            KvChange::Set(value) => Some(value),
            KvChange::Remove => None,
        }
    }

    /// Makes the change to `key` of `store`.
    pub fn write(self, store: &mut BTreeMap<String, String>, key: &str) {
        match self {
            KvChange::Keep => {}
            KvChange::Set(value) => {
                store.insert(key.to_owned(), value);
            }
            KvChange::Remove => {
                store.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cas(expected: Option<&str>, new: &str) -> KvInput {
        KvInput::Cas { key: "k".into(), expected: expected.map(String::from), new: new.into() }
    }

    #[test]
    fn every_request_answers_and_changes_the_value_as_specified() {
        let a = Some("a".to_owned());
        let cases = [
            (KvInput::Put { key: "k".into(), value: "b".into() }, None, KvOutput::Put, Some("b")),
            (KvInput::Put { key: "k".into(), value: "b".into() }, a.clone(), KvOutput::Put, Some("b")),
            (KvInput::Get { key: "k".into() }, a.clone(), KvOutput::Get(a.clone()), Some("a")),
            (KvInput::Get { key: "k".into() }, None, KvOutput::Get(None), None),
            (KvInput::Delete { key: "k".into() }, a.clone(), KvOutput::Delete, None),
            (KvInput::Delete { key: "k".into() }, None, KvOutput::Delete, None),
            (cas(Some("a"), "b"), a.clone(), KvOutput::Cas(true), Some("b")),
            (cas(Some("x"), "b"), a.clone(), KvOutput::Cas(false), Some("a")),
            (cas(None, "b"), None, KvOutput::Cas(true), Some("b")),
            (cas(None, "b"), a.clone(), KvOutput::Cas(false), Some("a")),
            (cas(Some("a"), "b"), None, KvOutput::Cas(false), None),
        ];
        for (input, before, output, after) in cases {
            let (got, change) = input.apply(before.as_ref());
            assert_eq!(got, output, "{input:?} on {before:?}");
            let mut store = BTreeMap::new();
            if let Some(v) = &before {
                store.insert("k".to_owned(), v.clone());
            }
            change.clone().write(&mut store, "k");
            assert_eq!(store.get("k").map(String::as_str), after, "{input:?} on {before:?}");
            assert_eq!(change.applied_to(before.clone()).as_deref(), after, "{input:?} on {before:?}");
        }
    }
}
