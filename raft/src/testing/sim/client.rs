//! Simulated clients and the history they record.
//!
//! Each client runs one operation at a time against the node it believes is
//! the leader: writes through `propose`, reads through `read_index` or
//! `lease_read`. A
//! refused request (the node is not the leader, or is down) had no effect,
//! so the client retries it elsewhere under the same invocation time. A write
//! whose node crashed, lost leadership or timed out before answering has an
//! unknown outcome and is recorded as such.

use std::collections::BTreeMap;

use super::rng::SimRng;
use crate::testing::linearizability::{KvInput, KvOperation, KvOutput, Operation};

/// Where a client's current operation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// No operation; the next one starts at this tick.
    Idle { next_at: u64 },
    /// The operation must be (re)submitted to `guess`.
    Submit,
    /// A write was appended at `index` in `term` by `node` (in its life `life`).
    Write { node: usize, life: u64, index: u64, term: u64 },
    /// A read was accepted by `node`; `confirmed` is its read index once a
    /// quorum confirmed it. `committed` is the length of the committed log
    /// (as far as any node knew) when the read was requested. `lease`: it
    /// asked for a lease read.
    Read { node: usize, life: u64, id: u64, confirmed: Option<u64>, committed: u64, lease: bool },
}

/// The operation a client is running.
#[derive(Clone, Debug)]
pub(crate) struct PendingOp {
    pub(crate) input: KvInput,
    /// History time of the invocation.
    pub(crate) call: u64,
    /// Tick after which the client gives up.
    pub(crate) deadline: u64,
}

/// One simulated client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    /// The node this client believes is the leader.
    pub(crate) guess: usize,
    pub(crate) op: Option<PendingOp>,
    pub(crate) stage: Stage,
    seq: u64,
    /// Last value this client saw per key (to make CAS succeed sometimes).
    seen: BTreeMap<String, Option<String>>,
}

impl Client {
    pub(crate) fn new(id: u64, guess: usize) -> Self {
        Self { id, guess, op: None, stage: Stage::Idle { next_at: 0 }, seq: 0, seen: BTreeMap::new() }
    }

    /// Picks a random operation on one of `keys` keys.
    pub(crate) fn next_input(&mut self, keys: usize, rng: &mut SimRng) -> KvInput {
        self.seq += 1;
        let key = format!("k{}", rng.index(keys.max(1)));
        let value = format!("c{}.{}", self.id, self.seq);
        match rng.index(20) {
            0..=7 => KvInput::Get { key },
            8..=13 => KvInput::Put { key, value },
            14..=16 => {
                let expected = self.seen.get(&key).cloned().unwrap_or(None);
                KvInput::Cas { key, expected, new: value }
            }
            _ => KvInput::Delete { key },
        }
    }

    /// Remembers what this client last observed of a key.
    pub(crate) fn observe(&mut self, input: &KvInput, output: &KvOutput) {
        let key = input.key().to_owned();
        match (input, output) {
            (KvInput::Get { .. }, KvOutput::Get(v)) => {
                self.seen.insert(key, v.clone());
            }
            (KvInput::Put { value, .. }, _) => {
                self.seen.insert(key, Some(value.clone()));
            }
            (KvInput::Cas { new, .. }, KvOutput::Cas(true)) => {
                self.seen.insert(key, Some(new.clone()));
            }
            (KvInput::Delete { .. }, _) => {
                self.seen.insert(key, None);
            }
            _ => {}
        }
    }
}

/// The recorded history plus what the direct stale-read check needs.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) ops: Vec<KvOperation>,
    /// Logical clock: every invocation and response gets its own instant.
    clock: u64,
    /// Per key: (response time, log index) of acknowledged writes that
    /// changed the key, in response order, with a running maximum index.
    acked_changes: BTreeMap<String, Vec<(u64, u64)>>,
    /// (index, term) of every acknowledged write.
    pub(crate) acked_writes: Vec<(u64, u64)>,
    pub(crate) completed: u64,
    pub(crate) unknown: u64,
    pub(crate) reads: u64,
    pub(crate) writes: u64,
    pub(crate) retries: u64,
}

impl History {
    /// A fresh instant.
    pub(crate) fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records a completed operation. For writes, `index`/`term` name the
    /// entry that carried it.
    pub(crate) fn complete(
        &mut self,
        client: u64,
        op: &PendingOp,
        output: KvOutput,
        entry: Option<(u64, u64)>,
    ) -> u64 {
        let ret = self.now();
        self.completed += 1;
        if let Some((index, term)) = entry {
            self.writes += 1;
            self.acked_writes.push((index, term));
            let changed = !matches!(output, KvOutput::Cas(false));
            if changed {
                let list = self.acked_changes.entry(op.input.key().to_owned()).or_default();
                let running = list.last().map_or(index, |(_, m)| (*m).max(index));
                list.push((ret, running));
            }
        } else {
            self.reads += 1;
        }
        self.ops.push(Operation::completed(client, op.input.clone(), output, op.call, ret));
        ret
    }

    /// Records an operation whose outcome is unknown.
    pub(crate) fn unknown(&mut self, client: u64, op: &PendingOp) {
        self.unknown += 1;
        self.ops.push(Operation::unknown(client, op.input.clone(), op.call));
    }

    /// The highest log index of a write to `key` acknowledged before `call`.
    pub(crate) fn last_acked_change_before(&self, key: &str, call: u64) -> u64 {
        let Some(list) = self.acked_changes.get(key) else { return 0 };
        let n = list.partition_point(|(ret, _)| *ret < call);
        if n == 0 {
            0
        } else {
            list[n - 1].1
        }
    }
}
