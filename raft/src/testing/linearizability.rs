//! Linearizability checker for client histories.
//!
//! A history is *linearizable* if every operation can be given a single
//! instant (its *linearization point*) somewhere between its invocation
//! (`call`) and its response (`ret`) such that executing the operations one
//! at a time, in the order of those instants, against a sequential
//! specification (a [`Model`]) produces exactly the outputs the clients
//! observed.
//!
//! # Algorithm
//!
//! The checker is a Wing–Gong search with the refinements popularised by
//! Lowe and by Porcupine:
//!
//! - **Depth-first search with backtracking.** Calls and returns of the
//!   operations are sorted by time into a doubly linked list. An operation
//!   may be linearized next if its call comes before the first return still
//!   in the list (no pending operation finished before it started). The
//!   search applies such an operation to the model state, removes it from
//!   the list and starts over; when no candidate works it undoes the last
//!   choice and tries the next candidate.
//! - **Memoization.** A configuration is the set of operations linearized so
//!   far (a compact bitset) together with the model state. The future of the
//!   search only depends on the configuration, so a configuration that was
//!   seen before is never explored twice.
//! - **Partitioning.** Linearizability is *local*: a history over
//!   independent objects is linearizable iff the sub-history of every object
//!   is. [`check_kv`] therefore checks every key on its own, which turns one
//!   huge search into many small ones. [`check_partitioned`] does the same
//!   for any model.
//! - **Greedy reads.** A legal candidate that the model marks read-only
//!   ([`Model::is_read_only`]) is linearized at once without branching: if
//!   any linearization exists, moving that operation earlier gives another.
//!
//! # Operations with an unknown outcome
//!
//! A client that timed out, or whose leader lost leadership, does not know
//! whether its operation took effect. Such an operation is recorded with
//! `output: None` (its `ret` is then irrelevant and treated as `u64::MAX`): it
//! may take effect at any point after its call, or never. The checker keeps
//! these operations out of the real-time order entirely (they never force
//! another operation to come before them), offers them as candidates at
//! every step after their call, and declares success as soon as every
//! operation *with* a known outcome is linearized; the unknown operations
//! left over are the ones that "never took effect". Known-outcome
//! candidates are tried first, and the memo table treats a configuration as
//! covered by any explored configuration with the same known operations and
//! state that used a *subset* of the unknown operations (having more unknown
//! operations still available can only help). This keeps histories with many
//! timed-out writes cheap to check. Reads with an unknown outcome carry no
//! information; [`check_kv`] drops them.
//!
//! # Example
//!
//! ```
//! use raft::testing::linearizability::{check_kv, KvInput, KvOperation, KvOutput, Operation};
//!
//! let put = |client, value: &str, call, ret| -> KvOperation {
//!     Operation::completed(
//!         client,
//!         KvInput::Put { key: "x".into(), value: value.into() },
//!         KvOutput::Put,
//!         call,
//!         ret,
//!     )
//! };
//! let get = |client, value: Option<&str>, call, ret| -> KvOperation {
//!     Operation::completed(
//!         client,
//!         KvInput::Get { key: "x".into() },
//!         KvOutput::Get(value.map(String::from)),
//!         call,
//!         ret,
//!     )
//! };
//!
//! // Client 1 writes "a"; client 2 reads concurrently and may see either value.
//! let history = vec![put(1, "a", 0, 10), get(2, None, 5, 7), get(2, Some("a"), 11, 12)];
//! assert!(check_kv(&history).is_ok());
//!
//! // Once the write returned, reading the old value is a stale read.
//! let stale = vec![put(1, "a", 0, 10), get(2, None, 11, 12)];
//! let result = check_kv(&stale);
//! assert!(!result.is_ok());
//! // `result.expect_linearizable()` would panic with a readable explanation.
//!
//! // A write that timed out may or may not have happened.
//! let unknown: KvOperation =
//!     Operation::unknown(3, KvInput::Put { key: "x".into(), value: "b".into() }, 20);
//! let history = vec![put(1, "a", 0, 10), unknown, get(2, Some("a"), 21, 22), get(2, Some("b"), 23, 24)];
//! check_kv(&history).expect_linearizable();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::hash::{BuildHasher, Hash, RandomState};

pub use super::kv::{KvInput, KvOutput};

/// A sequential specification of an object, used as the reference behaviour
/// of a history.
pub trait Model {
    /// The state of the object. Compared and hashed for memoization, so it
    /// should be small (the state of one key, not of the whole store).
    type State: Clone + Eq + Hash + fmt::Debug;
    /// The request a client sent.
    type Input: Clone + fmt::Debug;
    /// The response a client observed.
    type Output: Clone + fmt::Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Returns the next state if `output` is a legal result of applying `input` in `state`; `output ==
    /// None` means the outcome is unknown (the operation may or may not have taken effect; any result is
    /// acceptable).
    ///
    /// For an unknown outcome the model returns the state *as if the
    /// operation took effect* here; the checker covers "never took effect"
    /// by not linearizing the operation at all.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Optional hint: returns true if the operation, with this observed
    /// output, leaves the state unchanged in *every* state where it is legal
    /// (a read, a compare-and-swap that reported failure). The checker then
    /// linearizes it as soon as it is legal instead of branching over it,
    /// which makes read-heavy histories much cheaper. The default, `false`,
    /// is always correct; returning `true` for an operation that can change
    /// the state makes the checker unsound.
    fn is_read_only(&self, input: &Self::Input, output: Option<&Self::Output>) -> bool {
        let _ = (input, output);
        false
    }

    /// Optional hint: returns true if applying `input` with an unknown
    /// outcome is legal in every state and always yields the same state,
    /// whatever the state before (a put, a delete). The checker then tries
    /// such an operation with an unknown outcome only directly after a
    /// known-outcome operation, never after another unknown one (where it
    /// could only repeat work). The default, `false`, is always correct;
    /// returning `true` for an operation whose effect depends on the state
    /// makes the checker unsound.
    fn is_blind_write(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }
}

/// One operation of a client history.
///
/// `call` and `ret` are logical times (any monotonic `u64` clock shared by
/// all clients). Two operations are concurrent unless one's `ret` is strictly
/// smaller than the other's `call`, so equal timestamps are treated as
/// concurrent.
///
/// An operation whose outcome is unknown (timed out, leadership lost) has
/// `output: None` and, by convention, `ret: u64::MAX`: it may take effect at
/// any point after `call`, or never. The checker ignores `ret` for such
/// operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued the operation (only used in reports).
    pub client: u64,
    /// The request.
    pub input: I,
    /// The observed response, or `None` if the outcome is unknown.
    pub output: Option<O>,
    /// Logical time at which the client sent the request.
    pub call: u64,
    /// Logical time at which the client received the response (`u64::MAX`
    /// if it never did).
    pub ret: u64,
}

impl<I, O> Operation<I, O> {
    /// An operation that completed with `output`.
    pub fn completed(client: u64, input: I, output: O, call: u64, ret: u64) -> Self {
        Operation { client, input, output: Some(output), call, ret }
    }

    /// An operation whose outcome is unknown: it may take effect at any point
    /// after `call`, or never.
    pub fn unknown(client: u64, input: I, call: u64) -> Self {
        Operation { client, input, output: None, call, ret: u64::MAX }
    }

    /// Whether the outcome of the operation is unknown.
    pub fn is_unknown(&self) -> bool {
        self.output.is_none()
    }
}

/// The verdict of a linearizability check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable.
    Illegal {
        /// The partition (for [`check_kv`], the key) whose sub-history has no
        /// linearization.
        partition: String,
        /// A human-readable explanation: the operations of the partition in
        /// call order, the longest linearizable prefix found, and why each
        /// possible next operation fails.
        details: String,
    },
    /// The checker could not decide (search budget exhausted, malformed
    /// history).
    Unknown {
        /// Why no verdict was reached.
        reason: String,
    },
}

impl CheckResult {
    /// Whether the history was found linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history was found not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal { .. })
    }

    /// Whether the checker could not reach a verdict.
    pub fn is_unknown(&self) -> bool {
        matches!(self, CheckResult::Unknown { .. })
    }

    /// Panics, with the explanation, unless the history was found
    /// linearizable. An undecided check panics too.
    #[track_caller]
    pub fn expect_linearizable(&self) {
        match self {
            CheckResult::Ok => {}
            other => panic!("{other}"),
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => f.write_str("history is linearizable"),
            CheckResult::Illegal { partition, details } => {
                write!(f, "history is not linearizable (partition {partition}):\n{details}")
            }
            CheckResult::Unknown { reason } => {
                write!(f, "linearizability could not be decided: {reason}")
            }
        }
    }
}

/// Limits on the work a check may do before giving up with
/// [`CheckResult::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchBudget {
    /// Maximum number of search steps (candidate operations tried or
    /// backtracks) per partition.
    pub max_steps: u64,
}

impl SearchBudget {
    /// The default step limit: ten million steps per partition.
    pub const DEFAULT_MAX_STEPS: u64 = 10_000_000;
}

impl Default for SearchBudget {
    fn default() -> Self {
        SearchBudget { max_steps: Self::DEFAULT_MAX_STEPS }
    }
}

/// Checks that `history` is linearizable with respect to `model`, as a single
/// partition.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: SearchBudget,
) -> CheckResult {
    let ops: Vec<_> = history.iter().enumerate().collect();
    check_partition(model, "(whole history)", ops, budget)
}

/// Checks `history` partition by partition: operations for which
/// `partition_of` returns the same name form one sub-history, checked on its
/// own against `model` (which starts from [`Model::init`] in every
/// partition). The budget applies to each partition separately.
///
/// This is exact whenever operations of different partitions act on
/// independent objects (linearizability is local). The first partition, in
/// name order, found illegal is reported; otherwise any undecided partition
/// makes the result [`CheckResult::Unknown`].
pub fn check_partitioned<M, F>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    mut partition_of: F,
    budget: SearchBudget,
) -> CheckResult
where
    M: Model,
    F: FnMut(&Operation<M::Input, M::Output>) -> String,
{
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        groups.entry(partition_of(op)).or_default().push((index, op));
    }
    check_groups(model, groups, budget)
}

fn check_groups<M: Model>(
    model: &M,
    groups: BTreeMap<String, Vec<Indexed<'_, M>>>,
    budget: SearchBudget,
) -> CheckResult {
    let mut undecided = Vec::new();
    for (name, ops) in groups {
        match check_partition(model, &name, ops, budget) {
            CheckResult::Ok => {}
            illegal @ CheckResult::Illegal { .. } => return illegal,
            CheckResult::Unknown { reason } => undecided.push(reason),
        }
    }
    if undecided.is_empty() {
        CheckResult::Ok
    } else {
        CheckResult::Unknown { reason: undecided.join("; ") }
    }
}

/// The sequential specification of one key of a key-value store: a register
/// whose state is the current value (`None` when absent). Use it through
/// [`check_kv`], which partitions a history by key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, input: &KvInput, output: Option<&KvOutput>) -> Option<Self::State> {
        // The one definition of the semantics: an observed output is legal
        // only if it is the one the request gives in this state (a response
        // of the wrong kind never is).
        let (expected, change) = input.apply(state.as_ref());
        match output {
            Some(seen) if *seen != expected => None,
            _ => Some(change.applied_to(state.clone())),
        }
    }

    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool {
        matches!(
            (input, output),
            (KvInput::Get { .. }, Some(KvOutput::Get(_))) | (KvInput::Cas { .. }, Some(KvOutput::Cas(false)))
        )
    }

    fn is_blind_write(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Put { .. } | KvInput::Delete { .. })
    }
}

/// An operation of a key-value history.
pub type KvOperation = Operation<KvInput, KvOutput>;

/// Checks a key-value history with the default [`SearchBudget`], key by key.
pub fn check_kv(history: &[KvOperation]) -> CheckResult {
    check_kv_with_budget(history, SearchBudget::default())
}

/// Checks a key-value history key by key against [`KvModel`], with `budget`
/// applying to each key separately. Reads with an unknown outcome are
/// dropped (they constrain nothing). Operations are numbered in reports by
/// their index in `history`.
pub fn check_kv_with_budget(history: &[KvOperation], budget: SearchBudget) -> CheckResult {
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        if op.is_unknown() && matches!(op.input, KvInput::Get { .. }) {
            continue;
        }
        groups.entry(format!("{:?}", op.input.key())).or_default().push((index, op));
    }
    check_groups(&KvModel, groups, budget)
}

// ---------------------------------------------------------------------------
// The search.

/// An operation with its index in the caller's history.
type Indexed<'a, M> = (usize, &'a Operation<<M as Model>::Input, <M as Model>::Output>);

fn check_partition<M: Model>(
    model: &M,
    name: &str,
    mut ops: Vec<Indexed<'_, M>>,
    budget: SearchBudget,
) -> CheckResult {
    ops.sort_by_key(|&(index, op)| (op.call, index));
    if let Some((index, op)) = ops.iter().find(|(_, op)| !op.is_unknown() && op.ret < op.call) {
        return CheckResult::Unknown {
            reason: format!(
                "malformed history: operation #{index} of partition {name} returns at {} before its call at {}",
                op.ret, op.call
            ),
        };
    }
    let mut search = Search::new(model, &ops);
    match search.run(budget.max_steps) {
        Outcome::Linearizable => CheckResult::Ok,
        Outcome::Exhausted => CheckResult::Unknown {
            reason: format!(
                "partition {name}: search budget of {} steps exhausted ({} operations)",
                budget.max_steps,
                ops.len()
            ),
        },
        Outcome::Illegal { prefix } => CheckResult::Illegal {
            partition: name.to_string(),
            details: describe(model, name, &ops, &search, &prefix),
        },
    }
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// A configuration reached at one level of the search: the known
/// operations are those of the level, plus these unknown ones.
struct Node<S> {
    /// The unknown operations linearized so far (bitset by unknown id).
    unknown: Box<[u64]>,
    state: S,
    /// The node of the same level this one was derived from by linearizing
    /// the unknown operation `via` (`NIL` for the level's first node).
    parent: usize,
    via: usize,
}

/// Where the search is within the current node of a level.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Looking for a candidate that leaves the state unchanged.
    Start,
    /// Trying the known-outcome calls of the list from this list node.
    Known(usize),
    /// Deriving nodes by linearizing unknown operations, from this unknown
    /// id on.
    Expand(usize),
    /// The node is fully explored.
    Done,
}

/// One level of the depth-first search: a fixed set of linearized known
/// operations, and a breadth-first queue of the configurations reachable
/// from the level's first one by linearizing unknown operations only.
struct Level<S> {
    /// The known operation linearized to enter this level (`NIL` at the
    /// root).
    via: usize,
    /// Unknown operations called later than this (the earliest pending
    /// return) cannot come next.
    limit: u64,
    nodes: Vec<Node<S>>,
    current: usize,
    phase: Phase,
}

struct CacheEntry<S> {
    known: Box<[u64]>,
    state: S,
    /// Antichain of the unknown-operation sets explored with this
    /// (known set, state).
    unknown_sets: Vec<Box<[u64]>>,
}

enum Outcome {
    Linearizable,
    Exhausted,
    /// Not linearizable; the longest prefix found, as indices into the
    /// partition's sorted operations.
    Illegal {
        prefix: Vec<usize>,
    },
}

struct Search<'s, 'a, M: Model> {
    model: &'s M,
    ops: &'s [Indexed<'a, M>],
    /// Known id -> index in `ops`.
    known: Vec<usize>,
    /// Unknown id -> index in `ops`, in call order.
    unknown: Vec<usize>,
    /// Known id -> whether the model declares the operation read-only.
    read_only: Vec<bool>,
    /// Unknown id -> whether the model declares the operation a blind write.
    blind: Vec<bool>,
    /// Doubly linked list of the known operations' calls and returns in time
    /// order. Node 0 is the head; known id `k` has its call at node `2k + 1`
    /// and its return at node `2k + 2`.
    next: Vec<usize>,
    prev: Vec<usize>,
    known_bits: Vec<u64>,
    /// Scratch bitset of unknown operations, for [`Self::visit`].
    unknown_bits: Vec<u64>,
    cache: HashMap<u64, Vec<CacheEntry<M::State>>>,
    hasher: RandomState,
}

fn words(bits: usize) -> usize {
    bits.div_ceil(64)
}

fn get_bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
}

fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

impl<'s, 'a, M: Model> Search<'s, 'a, M> {
    fn new(model: &'s M, ops: &'s [Indexed<'a, M>]) -> Self {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for (i, (_, op)) in ops.iter().enumerate() {
            if op.is_unknown() {
                unknown.push(i);
            } else {
                known.push(i);
            }
        }
        // (time, is_return, known id): calls sort before returns at equal
        // times, so equal timestamps count as concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * known.len());
        for (k, &i) in known.iter().enumerate() {
            events.push((ops[i].1.call, false, k));
            events.push((ops[i].1.ret, true, k));
        }
        events.sort_unstable();
        let nodes = 2 * known.len() + 1;
        let mut next = vec![NIL; nodes];
        let mut prev = vec![NIL; nodes];
        let mut last = HEAD;
        for &(_, is_return, k) in &events {
            let node = if is_return { 2 * k + 2 } else { 2 * k + 1 };
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        let read_only =
            known.iter().map(|&i| model.is_read_only(&ops[i].1.input, ops[i].1.output.as_ref())).collect();
        let blind = unknown.iter().map(|&i| model.is_blind_write(&ops[i].1.input)).collect();
        Search {
            model,
            ops,
            read_only,
            blind,
            known_bits: vec![0; words(known.len())],
            unknown_bits: vec![0; words(unknown.len())],
            known,
            unknown,
            next,
            prev,
            cache: HashMap::new(),
            hasher: RandomState::new(),
        }
    }

    fn op(&self, index: usize) -> &'a Operation<M::Input, M::Output> {
        self.ops[index].1
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Removes known operation `k` (call and return) from the list.
    fn lift(&mut self, k: usize) {
        self.unlink(2 * k + 1);
        self.unlink(2 * k + 2);
    }

    /// Undoes [`Self::lift`] (must be called in reverse order of lifts).
    fn unlift(&mut self, k: usize) {
        self.relink(2 * k + 2);
        self.relink(2 * k + 1);
    }

    /// The return time of the first return still in the list: operations
    /// called later must wait for that operation.
    fn limit(&self) -> u64 {
        let mut node = self.next[HEAD];
        while node != NIL {
            if node & 1 == 0 {
                return self.op(self.known[(node - 2) / 2]).ret;
            }
            node = self.next[node];
        }
        u64::MAX
    }

    /// Records the configuration (`known_bits`, `unknown_bits`, `state`).
    /// Returns false if it is covered by one recorded before: same known
    /// operations and state, and a subset of the unknown operations (having
    /// more unknown operations available can only help, as they may also
    /// never take effect).
    fn visit(&mut self, state: &M::State) -> bool {
        let hash = self.hasher.hash_one((&self.known_bits[..], state));
        let bucket = self.cache.entry(hash).or_default();
        for entry in bucket.iter_mut() {
            if entry.state == *state && *entry.known == self.known_bits[..] {
                if entry.unknown_sets.iter().any(|seen| is_subset(seen, &self.unknown_bits)) {
                    return false;
                }
                entry.unknown_sets.retain(|seen| !is_subset(&self.unknown_bits, seen));
                entry.unknown_sets.push(self.unknown_bits.clone().into_boxed_slice());
                return true;
            }
        }
        bucket.push(CacheEntry {
            known: self.known_bits.clone().into_boxed_slice(),
            state: state.clone(),
            unknown_sets: vec![self.unknown_bits.clone().into_boxed_slice()],
        });
        true
    }

    /// The first unknown operation at or after `pos`, not in `used` and
    /// called no later than `limit`.
    fn next_unknown(&self, used: &[u64], mut pos: usize, limit: u64) -> Option<usize> {
        while let Some(&i) = self.unknown.get(pos) {
            if self.op(i).call > limit {
                return None;
            }
            if !get_bit(used, pos) {
                return Some(pos);
            }
            pos += 1;
        }
        None
    }

    /// The operations (indices into `ops`) linearized on the way to the
    /// current node of every level.
    fn path(&self, levels: &[Level<M::State>]) -> Vec<usize> {
        let mut path = Vec::new();
        for level in levels {
            if level.via != NIL {
                path.push(self.known[level.via]);
            }
            let start = path.len();
            let mut node = level.current;
            while let Some(n) = level.nodes.get(node) {
                if n.parent == NIL {
                    break;
                }
                path.push(self.unknown[n.via]);
                node = n.parent;
            }
            path[start..].reverse();
        }
        path
    }

    /// Linearizes known operation `k` (which takes `node` to `next_state`)
    /// unless the resulting configuration was covered before. On success the
    /// operation is lifted from the list and the level to continue with is
    /// returned.
    fn enter(&mut self, node: &Node<M::State>, k: usize, next_state: M::State) -> Option<Level<M::State>> {
        set_bit(&mut self.known_bits, k);
        self.unknown_bits.copy_from_slice(&node.unknown);
        if !self.visit(&next_state) {
            clear_bit(&mut self.known_bits, k);
            return None;
        }
        self.lift(k);
        Some(Level {
            via: k,
            limit: self.limit(),
            nodes: vec![Node { unknown: node.unknown.clone(), state: next_state, parent: NIL, via: NIL }],
            current: 0,
            phase: Phase::Start,
        })
    }

    /// The search proper. Each level fixes a set of linearized known
    /// operations; within a level, configurations reached by linearizing
    /// unknown operations are explored breadth first (so smaller sets of
    /// unknown operations come first and prune their supersets), and from
    /// each of them the known candidates are tried depth first.
    ///
    /// A legal candidate the model declares read-only (see
    /// [`Model::is_read_only`]) is linearized greedily, without trying the
    /// alternatives: if the configuration has any linearization, moving that
    /// operation to the front gives another one.
    fn run(&mut self, max_steps: u64) -> Outcome {
        let total_known = self.known.len();
        if total_known == 0 {
            return Outcome::Linearizable;
        }
        let state = self.model.init();
        self.visit(&state);
        let root =
            Node { unknown: self.unknown_bits.clone().into_boxed_slice(), state, parent: NIL, via: NIL };
        let mut levels =
            vec![Level { via: NIL, limit: self.limit(), nodes: vec![root], current: 0, phase: Phase::Start }];
        let mut done_known = 0;
        let mut best: Vec<usize> = Vec::new();
        let mut best_known = 0;
        let mut steps = 0u64;
        loop {
            steps += 1;
            if steps > max_steps {
                return Outcome::Exhausted;
            }
            let Some(level) = levels.last_mut() else {
                return Outcome::Illegal { prefix: best };
            };
            let Some(node) = level.nodes.get(level.current) else {
                // Every configuration of this level failed: backtrack.
                let via = level.via;
                levels.pop();
                if via != NIL {
                    clear_bit(&mut self.known_bits, via);
                    self.unlift(via);
                    done_known -= 1;
                }
                continue;
            };
            let entered = match level.phase {
                Phase::Start => {
                    level.phase = Phase::Known(self.next[HEAD]);
                    let mut list_node = self.next[HEAD];
                    let mut no_op = None;
                    while list_node != NIL && list_node & 1 == 1 {
                        let k = (list_node - 1) / 2;
                        let op = self.op(self.known[k]);
                        if self.read_only[k] {
                            if let Some(next_state) =
                                self.model.step(&node.state, &op.input, op.output.as_ref())
                            {
                                no_op = Some((k, next_state));
                                break;
                            }
                        }
                        list_node = self.next[list_node];
                    }
                    let Some((k, next_state)) = no_op else {
                        continue;
                    };
                    level.phase = Phase::Done;
                    self.enter(node, k, next_state)
                }
                Phase::Known(list_node) if list_node != NIL && list_node & 1 == 1 => {
                    level.phase = Phase::Known(self.next[list_node]);
                    let k = (list_node - 1) / 2;
                    let op = self.op(self.known[k]);
                    let Some(next_state) = self.model.step(&node.state, &op.input, op.output.as_ref()) else {
                        continue;
                    };
                    self.enter(node, k, next_state)
                }
                Phase::Known(_) => {
                    level.phase = Phase::Expand(0);
                    continue;
                }
                Phase::Expand(pos) => {
                    let Some(u) = self.next_unknown(&node.unknown, pos, level.limit) else {
                        level.phase = Phase::Done;
                        continue;
                    };
                    level.phase = Phase::Expand(u + 1);
                    if node.parent != NIL && self.blind[u] {
                        // Covered by applying it to the level's first node.
                        continue;
                    }
                    let op = self.op(self.unknown[u]);
                    let Some(next_state) = self.model.step(&node.state, &op.input, None) else {
                        continue;
                    };
                    self.unknown_bits.copy_from_slice(&node.unknown);
                    set_bit(&mut self.unknown_bits, u);
                    if self.visit(&next_state) {
                        let unknown = self.unknown_bits.clone().into_boxed_slice();
                        let parent = level.current;
                        level.nodes.push(Node { unknown, state: next_state, parent, via: u });
                    }
                    continue;
                }
                Phase::Done => {
                    level.current += 1;
                    level.phase = Phase::Start;
                    continue;
                }
            };
            let Some(next_level) = entered else {
                continue;
            };
            done_known += 1;
            if done_known == total_known {
                return Outcome::Linearizable;
            }
            levels.push(next_level);
            if done_known > best_known {
                best_known = done_known;
                best = self.path(&levels);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting.

fn describe_op<I: fmt::Debug, O: fmt::Debug>(index: usize, op: &Operation<I, O>) -> String {
    let ret = if op.is_unknown() {
        "?".to_string()
    } else if op.ret == u64::MAX {
        "never".to_string()
    } else {
        op.ret.to_string()
    };
    let output = match &op.output {
        Some(output) => format!("{output:?}"),
        None => "<unknown outcome>".to_string(),
    };
    format!("#{index} client {} [call {}, ret {ret}] {:?} -> {output}", op.client, op.call, op.input)
}

fn describe<M: Model>(
    model: &M,
    name: &str,
    ops: &[Indexed<'_, M>],
    search: &Search<'_, '_, M>,
    prefix: &[usize],
) -> String {
    let mut out = String::new();
    let known_total = search.known.len();
    let _ = writeln!(
        out,
        "partition {name}: no linearization exists for these {} operations ({} with a known outcome).",
        ops.len(),
        known_total
    );
    let _ = writeln!(
        out,
        "Operations in call order (#index in the history; an operation with an unknown outcome may take \
         effect at any point after its call, or never):"
    );
    for &(index, op) in ops {
        let _ = writeln!(out, "  {}", describe_op(index, op));
    }

    let mut in_prefix = vec![false; ops.len()];
    let mut state = model.init();
    let prefix_known = prefix.iter().filter(|&&i| !ops[i].1.is_unknown()).count();
    let _ = writeln!(
        out,
        "Longest linearizable prefix found ({prefix_known} of {known_total} known-outcome operations), \
         starting from state {state:?}:"
    );
    if prefix.is_empty() {
        let _ = writeln!(out, "  (empty: no operation can be linearized first)");
    }
    for (position, &i) in prefix.iter().enumerate() {
        in_prefix[i] = true;
        let (index, op) = ops[i];
        match model.step(&state, &op.input, op.output.as_ref()) {
            Some(next) => state = next,
            None => {
                let _ = writeln!(out, "  (model is not deterministic: replaying the prefix failed)");
                break;
            }
        }
        let note = if op.is_unknown() { " (assumed to take effect here)" } else { "" };
        let _ = writeln!(out, "  {:>3}. {}{note} => {state:?}", position + 1, describe_op(index, op));
    }

    // The operations that could come next: those called no later than the
    // earliest return among the known operations still pending.
    let limit = ops
        .iter()
        .enumerate()
        .filter(|&(i, (_, op))| !in_prefix[i] && !op.is_unknown())
        .map(|(_, (_, op))| op.ret)
        .min()
        .unwrap_or(u64::MAX);
    let _ = writeln!(
        out,
        "After this prefix (state {state:?}) no candidate leads to a full linearization; candidates \
         (called no later than {limit}, the earliest pending return):"
    );
    for (i, &(index, op)) in ops.iter().enumerate() {
        if in_prefix[i] || op.call > limit {
            continue;
        }
        let verdict = match model.step(&state, &op.input, op.output.as_ref()) {
            None => "rejected by the model in this state".to_string(),
            Some(next) => format!("legal here (=> {next:?}) but no linearization of the rest follows"),
        };
        let _ = writeln!(out, "  {}: {verdict}", describe_op(index, op));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn put(client: u64, key: &str, value: &str, call: u64, ret: u64) -> KvOperation {
        Operation::completed(
            client,
            KvInput::Put { key: key.into(), value: value.into() },
            KvOutput::Put,
            call,
            ret,
        )
    }

    fn get(client: u64, key: &str, value: Option<&str>, call: u64, ret: u64) -> KvOperation {
        Operation::completed(
            client,
            KvInput::Get { key: key.into() },
            KvOutput::Get(value.map(String::from)),
            call,
            ret,
        )
    }

    fn delete(client: u64, key: &str, call: u64, ret: u64) -> KvOperation {
        Operation::completed(client, KvInput::Delete { key: key.into() }, KvOutput::Delete, call, ret)
    }

    fn cas(
        client: u64,
        key: &str,
        expected: Option<&str>,
        new: &str,
        swapped: bool,
        call: u64,
        ret: u64,
    ) -> KvOperation {
        Operation::completed(
            client,
            KvInput::Cas { key: key.into(), expected: expected.map(String::from), new: new.into() },
            KvOutput::Cas(swapped),
            call,
            ret,
        )
    }

    fn unknown_put(client: u64, key: &str, value: &str, call: u64) -> KvOperation {
        Operation::unknown(client, KvInput::Put { key: key.into(), value: value.into() }, call)
    }

    fn assert_illegal(history: &[KvOperation]) -> (String, String) {
        match check_kv(history) {
            CheckResult::Illegal { partition, details } => (partition, details),
            other => panic!("expected Illegal, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check_kv(&[]), CheckResult::Ok);
        assert!(check(&KvModel, &[], SearchBudget::default()).is_ok());
    }

    #[test]
    fn sequential_put_get() {
        let history = vec![
            get(1, "x", None, 0, 1),
            put(1, "x", "a", 2, 3),
            get(2, "x", Some("a"), 4, 5),
            put(2, "x", "b", 6, 7),
            get(1, "x", Some("b"), 8, 9),
            delete(1, "x", 10, 11),
            get(2, "x", None, 12, 13),
        ];
        check_kv(&history).expect_linearizable();
        check(&KvModel, &history, SearchBudget::default()).expect_linearizable();
    }

    #[test]
    fn stale_read_after_completed_write_is_rejected() {
        let history = vec![put(1, "x", "a", 0, 10), put(1, "x", "b", 11, 20), get(2, "x", Some("a"), 21, 22)];
        let (partition, details) = assert_illegal(&history);
        assert_eq!(partition, "\"x\"");
        assert!(details.contains("Longest linearizable prefix found (2 of 3"), "{details}");
        assert!(details.contains("rejected by the model"), "{details}");
        assert!(details.contains("#2 client 2 [call 21, ret 22]"), "{details}");
    }

    #[test]
    fn concurrent_put_get_either_order() {
        // The read overlaps the write: it may see the old or the new value.
        for seen in [None, Some("a")] {
            let history = vec![put(1, "x", "a", 0, 10), get(2, "x", seen, 5, 15)];
            check_kv(&history).expect_linearizable();
        }
        // Equal timestamps count as concurrent.
        check_kv(&[put(1, "x", "a", 0, 10), get(2, "x", None, 10, 12)]).expect_linearizable();
        // A value nobody wrote is never fine.
        assert_illegal(&[put(1, "x", "a", 0, 10), get(2, "x", Some("z"), 5, 15)]);
    }

    #[test]
    fn classic_non_linearizable_register() {
        // Write b is concurrent with both reads, but the first read, which
        // completed before the second began, already saw b: the second read
        // cannot see a again.
        let history = vec![
            put(1, "x", "a", 0, 10),
            put(1, "x", "b", 20, 50),
            get(2, "x", Some("b"), 25, 30),
            get(3, "x", Some("a"), 35, 40),
        ];
        assert_illegal(&history);
        // With the reads overlapping each other it becomes linearizable.
        let history = vec![
            put(1, "x", "a", 0, 10),
            put(1, "x", "b", 20, 50),
            get(2, "x", Some("b"), 25, 36),
            get(3, "x", Some("a"), 35, 40),
        ];
        check_kv(&history).expect_linearizable();
    }

    #[test]
    fn cas_semantics() {
        let history = vec![
            cas(1, "x", None, "a", true, 0, 1),
            cas(1, "x", None, "b", false, 2, 3),
            cas(2, "x", Some("a"), "c", true, 4, 5),
            get(2, "x", Some("c"), 6, 7),
            cas(1, "x", Some("a"), "d", false, 8, 9),
            get(1, "x", Some("c"), 10, 11),
        ];
        check_kv(&history).expect_linearizable();
        // A swap that reports success although the value did not match.
        assert_illegal(&[put(1, "x", "a", 0, 1), cas(1, "x", Some("b"), "c", true, 2, 3)]);
        // A swap that reports failure although the value matched.
        assert_illegal(&[put(1, "x", "a", 0, 1), cas(1, "x", Some("a"), "c", false, 2, 3)]);
        // A failed swap changes nothing.
        assert_illegal(&[
            put(1, "x", "a", 0, 1),
            cas(1, "x", Some("b"), "c", false, 2, 3),
            get(1, "x", Some("c"), 4, 5),
        ]);
        // Two concurrent swaps from the same value: only one may win.
        let both_win = vec![
            put(1, "x", "a", 0, 1),
            cas(1, "x", Some("a"), "b", true, 2, 10),
            cas(2, "x", Some("a"), "c", true, 3, 9),
        ];
        assert_illegal(&both_win);
        let one_wins = vec![
            put(1, "x", "a", 0, 1),
            cas(1, "x", Some("a"), "b", false, 2, 10),
            cas(2, "x", Some("a"), "c", true, 3, 9),
            get(3, "x", Some("c"), 11, 12),
        ];
        check_kv(&one_wins).expect_linearizable();
    }

    #[test]
    fn unknown_write_observed_later() {
        let history = vec![
            put(1, "x", "a", 0, 5),
            unknown_put(2, "x", "b", 6),
            get(3, "x", Some("a"), 10, 12),
            get(3, "x", Some("b"), 13, 14),
            get(1, "x", Some("b"), 100, 101),
        ];
        check_kv(&history).expect_linearizable();
        // The unknown write takes effect once: a, b, a is impossible.
        let history = vec![
            put(1, "x", "a", 0, 5),
            unknown_put(2, "x", "b", 6),
            get(3, "x", Some("a"), 10, 12),
            get(3, "x", Some("b"), 13, 14),
            get(3, "x", Some("a"), 15, 16),
        ];
        assert_illegal(&history);
        // An unknown CAS can take effect too.
        let history = vec![
            put(1, "x", "a", 0, 5),
            Operation::unknown(
                2,
                KvInput::Cas { key: "x".into(), expected: Some("a".into()), new: "c".into() },
                6,
            ),
            get(3, "x", Some("c"), 10, 12),
        ];
        check_kv(&history).expect_linearizable();
    }

    #[test]
    fn unknown_write_never_observed_is_fine() {
        let history = vec![
            put(1, "x", "a", 0, 5),
            unknown_put(2, "x", "b", 6),
            get(3, "x", Some("a"), 10, 12),
            get(3, "x", Some("a"), 20, 22),
            Operation::unknown(4, KvInput::Delete { key: "x".into() }, 23),
            Operation::unknown(4, KvInput::Get { key: "x".into() }, 24),
            get(3, "x", Some("a"), 30, 32),
        ];
        check_kv(&history).expect_linearizable();
        // An unknown-outcome op whose ret is not u64::MAX is treated the same.
        let mut odd = unknown_put(2, "x", "b", 6);
        odd.ret = 7;
        check_kv(&[
            put(1, "x", "a", 0, 5),
            odd,
            get(3, "x", Some("a"), 10, 12),
            get(3, "x", Some("b"), 13, 14),
        ])
        .expect_linearizable();
    }

    #[test]
    fn unknown_write_cannot_explain_earlier_read() {
        let history = vec![put(1, "x", "a", 0, 5), get(3, "x", Some("b"), 6, 8), unknown_put(2, "x", "b", 9)];
        let (_, details) = assert_illegal(&history);
        assert!(details.contains("<unknown outcome>"), "{details}");
        // Concurrent with the read, it can.
        let history = vec![put(1, "x", "a", 0, 5), get(3, "x", Some("b"), 6, 8), unknown_put(2, "x", "b", 8)];
        check_kv(&history).expect_linearizable();
    }

    #[test]
    fn many_unknown_writes_stay_cheap() {
        // 40 timed-out writes, none observed, interleaved with reads of the
        // last acknowledged value: a naive search would try 2^40 subsets.
        let mut history = vec![put(1, "x", "a", 0, 1)];
        let mut time = 2;
        for i in 0..40 {
            history.push(unknown_put(2 + i % 5, "x", &format!("u{i}"), time));
            history.push(get(10, "x", Some("a"), time + 1, time + 2));
            time += 3;
        }
        let result = check_kv_with_budget(&history, SearchBudget { max_steps: 100_000 });
        assert!(result.is_ok(), "{result}");
        // Observing one of them in the middle is fine too.
        let observed = get(11, "x", Some("u17"), time, time + 1);
        history.push(observed);
        let result = check_kv_with_budget(&history, SearchBudget { max_steps: 100_000 });
        assert!(result.is_ok(), "{result}");
        // But observing a value nobody wrote still fails, cheaply.
        history.push(get(11, "x", Some("nope"), time + 2, time + 3));
        let result = check_kv_with_budget(&history, SearchBudget { max_steps: 1_000_000 });
        assert!(result.is_illegal(), "{result}");
    }

    #[test]
    fn keys_are_independent() {
        // Interleaved in time, each key linearizable on its own.
        let history = vec![
            put(1, "x", "1", 0, 10),
            put(2, "y", "2", 1, 3),
            get(3, "y", Some("2"), 4, 5),
            get(3, "x", None, 6, 7),
            get(2, "x", Some("1"), 11, 12),
            get(1, "y", Some("2"), 13, 14),
        ];
        check_kv(&history).expect_linearizable();
        // A value written to one key does not explain a read of another.
        let (partition, details) = assert_illegal(&[
            put(1, "x", "1", 0, 10),
            get(2, "y", Some("1"), 11, 12),
            get(2, "x", Some("1"), 13, 14),
        ]);
        assert_eq!(partition, "\"y\"");
        assert!(details.contains("#1 client 2"), "{details}");
        // The generic partitioned checker agrees.
        let result = check_partitioned(
            &KvModel,
            &[put(1, "x", "1", 0, 10), get(2, "y", Some("1"), 11, 12)],
            |op| op.input.key().to_string(),
            SearchBudget::default(),
        );
        assert!(matches!(result, CheckResult::Illegal { ref partition, .. } if partition == "y"), "{result}");
    }

    #[test]
    fn budget_exhaustion_is_unknown() {
        let history: Vec<_> = (0..20).map(|i| put(i, "x", &format!("{i}"), 0, 100)).collect();
        let result = check_kv_with_budget(&history, SearchBudget { max_steps: 5 });
        assert!(result.is_unknown(), "{result}");
        assert!(!result.is_ok());
        // A hard illegal history: many concurrent writes, then a read of a
        // value nobody wrote. With a tiny budget the verdict is Unknown.
        let mut history: Vec<_> = (0..12).map(|i| put(i, "x", &format!("{i}"), 0, 100)).collect();
        history.push(get(99, "x", Some("nope"), 50, 60));
        let result = check_kv_with_budget(&history, SearchBudget { max_steps: 1000 });
        assert!(
            matches!(result, CheckResult::Unknown { ref reason } if reason.contains("budget")),
            "{result}"
        );
        assert!(check_kv(&history).is_illegal());
    }

    #[test]
    fn malformed_history_is_unknown() {
        let result = check_kv(&[put(1, "x", "a", 10, 5)]);
        assert!(result.is_unknown(), "{result}");
    }

    #[test]
    #[should_panic(expected = "not linearizable")]
    fn expect_linearizable_panics_with_details() {
        check_kv(&[put(1, "x", "a", 0, 1), get(2, "x", None, 2, 3)]).expect_linearizable();
    }

    // -----------------------------------------------------------------------
    // Randomized histories from a real register.

    use crate::core::rng::Rng;

    fn apply(store: &mut BTreeMap<String, String>, input: &KvInput) -> KvOutput {
        let (output, change) = input.apply(store.get(input.key()));
        change.write(store, input.key());
        output
    }

    struct Pending {
        index: usize,
        /// The output, once the operation took effect.
        applied: Option<KvOutput>,
    }

    /// A linearizable history: clients issue operations against a real
    /// sequential store, each taking effect at a random instant between its
    /// call and return. Some operations time out (unknown outcome) before or
    /// after taking effect; those that had not taken effect may still do so
    /// later, or never.
    fn random_history(
        seed: u64,
        clients: usize,
        keys: usize,
        total: usize,
        timeout_pct: u64,
    ) -> Vec<KvOperation> {
        let mut rng = Rng::new(seed);
        let mut store = BTreeMap::new();
        let mut history: Vec<KvOperation> = Vec::new();
        let mut pending: Vec<Option<Pending>> = (0..clients).map(|_| None).collect();
        let mut orphans: Vec<usize> = Vec::new();
        let mut values = 0u64;
        let mut time = 0u64;
        while history.len() < total || pending.iter().any(Option::is_some) {
            time += 1;
            if !orphans.is_empty() && rng.chance(0.05) {
                let index = orphans.swap_remove(rng.below(orphans.len() as u64) as usize);
                if rng.chance(0.5) {
                    apply(&mut store, &history[index].input);
                }
                continue;
            }
            let client = rng.below(clients as u64) as usize;
            match pending[client].take() {
                None if history.len() < total => {
                    let key = format!("k{}", rng.below(keys as u64));
                    values += 1;
                    let value = format!("v{values}");
                    let input = match rng.below(10) {
                        0..=3 => KvInput::Get { key },
                        4..=6 => KvInput::Put { key, value },
                        7 => KvInput::Delete { key },
                        _ => {
                            let expected = match rng.below(3) {
                                0 => None,
                                1 => store.get(&key).cloned(),
                                _ => Some(format!("v{}", rng.below(values))),
                            };
                            KvInput::Cas { key, expected, new: value }
                        }
                    };
                    pending[client] = Some(Pending { index: history.len(), applied: None });
                    history.push(Operation {
                        client: client as u64,
                        input,
                        output: None,
                        call: time,
                        ret: 0,
                    });
                }
                None => {}
                Some(mut p) => {
                    if rng.chance(timeout_pct as f64 / 100.0) {
                        // Timed out: the client gives up and moves on.
                        history[p.index].ret = u64::MAX;
                        if p.applied.is_none() {
                            orphans.push(p.index);
                        }
                    } else if p.applied.is_none() {
                        p.applied = Some(apply(&mut store, &history[p.index].input));
                        pending[client] = Some(p);
                    } else {
                        history[p.index].output = p.applied;
                        history[p.index].ret = time;
                    }
                }
            }
        }
        history
    }

    #[test]
    fn random_linearizable_histories_pass_and_corrupted_ones_fail() {
        for seed in 0..150u64 {
            let clients = 2 + (seed % 6) as usize;
            let keys = 1 + (seed % 4) as usize;
            let timeout_pct = [0, 2, 10][(seed % 3) as usize];
            let history = random_history(seed, clients, keys, 120, timeout_pct);
            let result = check_kv(&history);
            assert!(result.is_ok(), "seed {seed}: {result}");

            let reads: Vec<usize> = history
                .iter()
                .enumerate()
                .filter(|(_, op)| matches!(op.output, Some(KvOutput::Get(_))))
                .map(|(i, _)| i)
                .collect();
            if reads.is_empty() {
                continue;
            }
            let mut corrupted = history.clone();
            let victim = reads[Rng::new(seed ^ 0xdead).below(reads.len() as u64) as usize];
            corrupted[victim].output = Some(KvOutput::Get(Some("never-written".into())));
            match check_kv(&corrupted) {
                CheckResult::Illegal { partition, details } => {
                    assert_eq!(partition, format!("{:?}", corrupted[victim].input.key()));
                    assert!(details.contains("never-written"), "{details}");
                }
                other => panic!("seed {seed}: corrupted read #{victim} not detected: {other}"),
            }
        }
    }

    /// [`KvModel`] without the read-only hint, to exercise the plain search.
    struct NoHints;

    impl Model for NoHints {
        type State = Option<String>;
        type Input = KvInput;
        type Output = KvOutput;

        fn init(&self) -> Self::State {
            KvModel.init()
        }

        fn step(
            &self,
            state: &Self::State,
            input: &KvInput,
            output: Option<&KvOutput>,
        ) -> Option<Self::State> {
            KvModel.step(state, input, output)
        }
    }

    /// Reference verdict by exhaustive enumeration: some order of all the
    /// known operations and any subset of the unknown ones that respects
    /// real time and the model.
    fn brute_force(history: &[KvOperation]) -> bool {
        fn precedes(a: &KvOperation, b: &KvOperation) -> bool {
            !a.is_unknown() && a.ret < b.call
        }
        fn search(history: &[KvOperation], used: &mut Vec<bool>, state: &Option<String>) -> bool {
            if history.iter().zip(used.iter()).all(|(op, &u)| u || op.is_unknown()) {
                return true;
            }
            for i in 0..history.len() {
                if used[i] {
                    continue;
                }
                // Every operation that must come before `i` is already placed
                // (an unknown one placed "never" does not count: it imposes
                // no order anyway).
                if (0..history.len()).any(|j| !used[j] && j != i && precedes(&history[j], &history[i])) {
                    continue;
                }
                if let Some(next) = KvModel.step(state, &history[i].input, history[i].output.as_ref()) {
                    used[i] = true;
                    let ok = search(history, used, &next);
                    used[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        search(history, &mut vec![false; history.len()], &None)
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let values = [None, Some("a"), Some("b"), Some("c")];
        let (mut legal, mut illegal) = (0, 0);
        for seed in 0..4000u64 {
            let mut rng = Rng::new(seed);
            let len = 1 + rng.below(7) as usize;
            let history: Vec<KvOperation> = (0..len)
                .map(|i| {
                    let call = rng.below(20);
                    let ret = call + rng.below(8);
                    let value = values[rng.below(4) as usize].map(String::from);
                    let written = values[1 + rng.below(3) as usize].unwrap_or_default().to_string();
                    let (input, output) = match rng.below(4) {
                        0 => (KvInput::Put { key: "x".into(), value: written }, KvOutput::Put),
                        1 => (KvInput::Delete { key: "x".into() }, KvOutput::Delete),
                        2 => {
                            let swapped = rng.chance(0.5);
                            (
                                KvInput::Cas { key: "x".into(), expected: value, new: written },
                                KvOutput::Cas(swapped),
                            )
                        }
                        _ => (KvInput::Get { key: "x".into() }, KvOutput::Get(value)),
                    };
                    if rng.chance(0.25) {
                        Operation::unknown(i as u64, input, call)
                    } else {
                        Operation::completed(i as u64, input, output, call, ret)
                    }
                })
                .collect();
            let expected = brute_force(&history);
            let result = check(&KvModel, &history, SearchBudget::default());
            assert!(!result.is_unknown(), "seed {seed}: {result}");
            assert_eq!(result.is_ok(), expected, "seed {seed}: {history:#?}\n{result}");
            let unhinted = check(&NoHints, &history, SearchBudget::default());
            assert_eq!(unhinted.is_ok(), expected, "seed {seed} without hints: {history:#?}\n{unhinted}");
            if expected {
                legal += 1;
            } else {
                illegal += 1;
            }
        }
        assert!(legal > 500 && illegal > 500, "legal {legal}, illegal {illegal}");
    }

    #[test]
    fn large_random_history_is_checked_quickly() {
        for seed in 1000..1003u64 {
            let history = random_history(seed, 20, 20, 3000, 3);
            let result = check_kv(&history);
            assert!(result.is_ok(), "seed {seed}: {result}");
        }
        let history = random_history(7, 10, 10, 3000, 5);
        assert!(check_kv(&history).is_ok());
    }
}
