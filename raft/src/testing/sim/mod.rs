//! Deterministic simulation of a cluster of protocol cores.
//!
//! [`run`] drives 3 or 5 cores in one thread from a `u64` seed, with
//! everything that makes distributed systems hard made explicit and random:
//!
//! - **time**: a simulated clock in units of `1 / TICK_UNITS` of a tick;
//!   every node's own clock runs at a rate of its own within the drift bound
//!   leases rely on (the `clocks` module), and its core is ticked for every
//!   tick its clock passes, the nodes in a random order;
//! - **network**: each message is lost, delayed by a random time (which
//!   reorders messages) or duplicated; partitions block links symmetrically
//!   or one way and heal later;
//! - **storage**: what a core hands out in a `Ready` becomes durable only
//!   when its simulated fsync completes, a random time later; messages that
//!   promise durable state wait for it; a **crash** loses every write not yet
//!   synced, and the node restarts from its durable state: its newest durable
//!   snapshot (the state machine restored from it) plus the durable log
//!   after it, which the state machine replays;
//! - **snapshots** (in most seeds): nodes snapshot their state machine every
//!   few entries and compact their logs; leaders send snapshots to followers
//!   that need compacted entries, over the same faulty network, and
//!   followers install them (the `snapshot` module);
//! - **lifecycle** (the `lifecycle` module): a restarting node sometimes
//!   comes back with an empty disk under its old id, or with the last few
//!   entries of its durable log cut off (a torn tail), whenever that cannot
//!   lose acknowledged data; some seeds are bootstrapped on one server only,
//!   the other members starting empty;
//! - **long tails** (the `tails` module): some messages are held back for
//!   one to five maximum election timeouts before they are delivered (half
//!   of them also on time, so a late duplicate arrives long after the
//!   original); a node sometimes pauses for as long, like a stopped process
//!   or a paused VM (no ticks, deliveries, fsync completions or sends; it
//!   resumes with its memory and everything that queued up for it); and an
//!   fsync sometimes stalls for as long, the node's later writes waiting
//!   behind it (one node's syncs complete in order, as the runtime's writer
//!   guarantees), so a log can be truncated and rewritten in memory while
//!   the write of the replaced entries is still being synced;
//! - **clients** run a key-value workload (put, delete, compare-and-swap,
//!   ReadIndex reads and lease reads, see [`SimConfig::lease_read_rate`])
//!   against whichever node they think leads, retrying elsewhere when
//!   refused; every operation's invocation and response is recorded, with
//!   unknown outcomes recorded as such.
//!
//! After **every** step (one delivered message, tick, completed fsync, client
//! request, crash or restart) the properties in the `checks` module are verified:
//! Raft's safety properties, and what each node believes: the configuration
//! it acts on is the latest one its log holds, its commit index is durable
//! on a quorum of that configuration, a leader was elected by a quorum of
//! votes of its term and its view of each follower's log (the match index)
//! was acknowledged durably and is still held there, a read index
//! covers every entry committed before the read was requested, and a lease
//! read is answered only while enough voters refuse votes to block any
//! rival leader (the `leases` module). At
//! the end the client history must be linearizable
//! ([`check_kv`]) and no read may
//! observe state older than a write acknowledged before it began. Finally the
//! faults stop: within [`SimConfig::liveness_ticks`] a leader must be elected,
//! a fresh write must commit and be applied on every node, and every member
//! of the leader's configuration must catch up (its log and its state
//! machine reach the leader's commit index).
//!
//! A failure is a [`SimFailure`] naming the seed, the violated property and
//! the last events; running the same seed with the same [`SimConfig`]
//! replays it exactly.
//!
//! ```
//! use raft::testing::sim::{run, SimConfig};
//!
//! let report = run(7, &SimConfig::default()).unwrap_or_else(|f| panic!("{f}"));
//! assert!(report.leaders_elected > 0);
//! ```

mod checks;
mod client;
mod clocks;
mod drive;
mod figure8;
mod joint;
mod kv;
mod leases;
mod lifecycle;
mod network;
mod rng;
mod snapshot;
mod storage;
mod tails;
mod trace;
mod window;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::Rc;

pub use self::clocks::safe_drift;

use self::checks::{violation, Check, FollowerDisk, Monitor, Safety};
use self::client::{Client, History, PendingOp, Stage};
use self::clocks::Clocks;
use self::drive::Driving;
use self::figure8::Figure8;
use self::kv::KvFsm;
use self::network::Network;
use self::rng::SimRng;
use self::snapshot::{SnapshotPolicy, Transfer};
use self::storage::{PendingWrite, Snapshot, Storage};
use self::trace::{MsgSummary, Trace, TraceKind};
use self::window::WindowPolicy;
use crate::core::harness::{self, MemLog};
use crate::core::{Body, Core, CoreConfig, InitialState, InstalledSnapshot, LogFetch, Message, Refusal};
use crate::testing::linearizability::{check_kv, CheckResult, KvInput, KvOutput};
use crate::types::{Configuration, HardState, Log, LogType, Server, ServerId, SnapshotPosition, Suffrage};

/// Simulated time units per tick: message and fsync delays are measured in
/// these, so they can be shorter than a tick.
pub const TICK_UNITS: u64 = 10;

/// Settings of a simulation run. Rates are probabilities in `0.0..=1.0`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Cluster size; 0 picks 3 or 5 from the seed.
    pub nodes: usize,
    /// Length of the fault phase, in ticks.
    pub ticks: u64,
    /// Ticks allowed, after the faults stop, for a leader to be elected and
    /// a fresh write to be applied on every node.
    pub liveness_ticks: u64,
    /// Number of concurrent clients.
    pub clients: usize,
    /// Number of distinct keys the clients use.
    pub keys: usize,
    /// Ticks after which a client gives up on an operation.
    pub op_timeout_ticks: u64,
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice.
    pub dup_rate: f64,
    /// Maximum message delay, in [`TICK_UNITS`] (minimum 1).
    pub max_delay: u64,
    /// Maximum time an fsync takes, in [`TICK_UNITS`] (minimum 1).
    pub max_sync_delay: u64,
    /// Per-tick probability that some node crashes.
    pub crash_rate: f64,
    /// Maximum ticks a crashed node stays down.
    pub max_down_ticks: u64,
    /// Per-tick probability that a partition starts (when none is active).
    pub partition_rate: f64,
    /// Maximum ticks a partition lasts.
    pub max_partition_ticks: u64,
    /// Per-tick probability that the leader is asked to transfer leadership.
    pub transfer_rate: f64,
    /// Per-tick probability that the leader proposes a membership change
    /// (add, promote, demote or remove one server). With 5 nodes and a
    /// non-zero rate, half the seeds start with 3 voters and 2 empty spare
    /// servers that can be added later.
    pub membership_rate: f64,
    /// Pick pre-vote, check-quorum, batch and pipeline sizes from the seed
    /// instead of using the test defaults.
    pub randomize_protocol: bool,
    /// Share of seeds whose nodes take snapshots and compact their logs
    /// (each such seed picks a snapshot threshold of 5..=40 applied entries
    /// and keeps 0..=10 trailing entries). Snapshot decisions draw from
    /// their own random source, so with 0 a seed runs exactly as it did
    /// before snapshots were simulated.
    pub snapshot_rate: f64,
    /// Share of seeds that also cut leaders off at the moments that matter
    /// for Raft's Figure 8 (right when a new leader is seen, and right after
    /// its commit index first advances in its term).
    pub figure8_rate: f64,
    /// Probability that a node restarting during the faults comes back with
    /// an empty disk under its old id (log, term, vote and snapshots gone),
    /// if that cannot lose acknowledged data (see the `lifecycle` module:
    /// everything it held is on a quorum of the other voters, and its lost
    /// vote can no longer decide an election). Drawn from a random source of
    /// its own, so a seed without such a restart runs as it did before.
    pub disk_loss_rate: f64,
    /// Probability that a node restarting during the faults (and not drawn
    /// to lose its disk) comes back with its last 1 to 3 durable log entries
    /// cut off (a torn tail), under the same rule. A node drawn to lose its
    /// disk whose loss the rule forbids tries a torn tail instead.
    pub torn_tail_rate: f64,
    /// Share of seeds bootstrapped on one server only: n1 starts with the
    /// configuration naming every member as a voter, the other members
    /// start empty (term 0, no log) and learn it from the leader.
    pub one_server_bootstrap_rate: f64,
    /// Per-message probability (during the faults) that a message is held
    /// back for one to five maximum election timeouts before it is
    /// delivered; half of the held messages are also delivered on time (the
    /// held copy is then a late duplicate). Default 0.01. See the `tails`
    /// module; drawn from a random source of its own.
    pub hold_rate: f64,
    /// Per-tick probability (during the faults) that a random node pauses
    /// for one to five maximum election timeouts, like a `SIGSTOP`ped
    /// process or a paused VM: no ticks, no deliveries, no fsync
    /// completions, nothing sent; it resumes with its memory intact and
    /// everything that queued up for it. Default 0.01. Own random source.
    pub pause_rate: f64,
    /// Per-write probability (during the faults) that its fsync stalls for
    /// one to five maximum election timeouts (the node's later writes wait
    /// behind it: syncs complete in order). Default 0.01. Own random source.
    pub stall_rate: f64,
    /// Share of seeds whose cores hold a tiny log window (0 to 300 bytes of
    /// durable entries), so leaders replicate mostly from the node's
    /// durable log and restarts apply from it; such seeds also pick small
    /// byte budgets for flow control. See the `window` module; own random
    /// source. Default 0.6.
    pub window_rate: f64,
    /// Probability that a read of the durable log for a follower fails.
    /// Default 0.05.
    pub fetch_fail_rate: f64,
    /// Share of membership changes that are joint changes (two or three
    /// servers in and out at once through C_old,new, possibly the leader;
    /// see the `joint` module). Default 0.5; own random source.
    pub joint_rate: f64,
    /// How far each node's clock rate may be from the nominal one: rates
    /// are drawn from `[1 - d, 1 + d]` (see the `clocks` module). `None`
    /// (the default): the largest drift under which the seed's lease is
    /// safe ([`safe_drift`]). Beyond it, lease reads may be stale.
    pub clock_drift: Option<f64>,
    /// Share of client reads that ask for a lease read
    /// (`Core::lease_read`: answered at once while the leader's lease
    /// holds, else through a ReadIndex round); the others are ReadIndex
    /// reads. Default 0.5; own random source.
    pub lease_read_rate: f64,
    /// The clock model from before clocks drifted: every node is ticked once
    /// per tick, except that during the faults its clock sometimes stalls
    /// for a tick or runs double, and a paused node's clock does not see
    /// the pause. Both are far beyond any drift bound, so lease reads are
    /// unsafe under it (use it with `lease_read_rate: 0.0`). For regression
    /// seeds that must replay as when their bugs were found. Default false.
    pub legacy_clock_skew: bool,
    /// Check each read as it is confirmed and served (its read index covers
    /// every earlier commit; it sees every write acknowledged before it
    /// began; a lease read is answered only while enough voters refuse
    /// votes to block any rival, see the `leases` module) besides checking
    /// the whole history for linearizability at the end. Default true; off,
    /// only the history checker judges reads.
    pub direct_read_checks: bool,
    /// Clock rates chosen by an adversary instead of at random: while a
    /// node leads its clock runs at the slowest rate the drift bound allows
    /// (its lease lasts longest in real time), every other node's at the
    /// fastest (their stickiness ends soonest). Default false.
    pub adversarial_clocks: bool,
    /// Every partition cuts the current leader (if any) off, both ways,
    /// instead of a random one: the network adversary to go with
    /// [`SimConfig::adversarial_clocks`]. Default false.
    pub isolate_leaders: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 0,
            ticks: 250,
            liveness_ticks: 200,
            clients: 3,
            keys: 3,
            op_timeout_ticks: 40,
            drop_rate: 0.05,
            dup_rate: 0.03,
            max_delay: 15,
            max_sync_delay: 8,
            crash_rate: 0.02,
            max_down_ticks: 40,
            partition_rate: 0.03,
            max_partition_ticks: 60,
            transfer_rate: 0.005,
            membership_rate: 0.02,
            randomize_protocol: true,
            snapshot_rate: 0.85,
            figure8_rate: 0.3,
            disk_loss_rate: 0.25,
            torn_tail_rate: 0.25,
            one_server_bootstrap_rate: 0.1,
            hold_rate: 0.01,
            pause_rate: 0.01,
            stall_rate: 0.01,
            window_rate: 0.6,
            fetch_fail_rate: 0.05,
            joint_rate: 0.5,
            clock_drift: None,
            lease_read_rate: 0.5,
            legacy_clock_skew: false,
            direct_read_checks: true,
            adversarial_clocks: false,
            isolate_leaders: false,
        }
    }
}

/// Counters describing a successful run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed that was run.
    pub seed: u64,
    /// Cluster size and the protocol switches the seed picked.
    pub setup: String,
    /// Cluster size.
    pub nodes: usize,
    /// Ticks simulated (fault phase plus the time liveness took).
    pub ticks: u64,
    /// Client operations that completed with a known outcome.
    pub ops_completed: u64,
    /// Client operations whose outcome is unknown.
    pub ops_unknown: u64,
    /// Completed reads.
    pub reads: u64,
    /// Acknowledged writes.
    pub writes: u64,
    /// Requests refused and retried elsewhere.
    pub retries: u64,
    /// Distinct (term, leader) pairs seen.
    pub leaders_elected: u64,
    /// Highest term any node reached.
    pub max_term: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Unsynced writes lost in crashes.
    pub writes_lost: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Leadership transfers started.
    pub transfers: u64,
    /// Membership changes proposed (and accepted by a leader).
    pub config_changes: u64,
    /// Joint changes whose C_old,new a leader appended.
    pub joint_changes: u64,
    /// Joint changes that removed or demoted the leader appending them.
    pub joint_leader_out: u64,
    /// Messages handed to the network.
    pub messages_sent: u64,
    /// Messages lost (dropped, partitioned, or addressed to a crashed node).
    pub messages_dropped: u64,
    /// Messages delivered twice.
    pub messages_duplicated: u64,
    /// Messages delivered to a core.
    pub messages_delivered: u64,
    /// Completed fsyncs.
    pub syncs: u64,
    /// Length of the committed log at the end.
    pub committed: u64,
    /// Snapshots nodes took of their own state machines (and stored).
    pub snapshots_taken: u64,
    /// Log compactions after a stored snapshot.
    pub compactions: u64,
    /// Snapshot transfers leaders started.
    pub snapshots_sent: u64,
    /// Snapshots installed by followers (`install_snapshot` returned true).
    pub snapshots_installed: u64,
    /// Restarts from a durable snapshot.
    pub snapshot_restarts: u64,
    /// Ticks from the end of the faults until the liveness write was
    /// applied everywhere.
    pub liveness_ticks: u64,
    /// Restarts with an empty disk.
    pub disks_lost: u64,
    /// Restarts with the tail of the durable log cut off.
    pub tails_torn: u64,
    /// Times a leader found a follower's log missing entries it had
    /// acknowledged and reset its progress (`Ready::log_resets`).
    pub log_resets: u64,
    /// Whether only n1 was bootstrapped.
    pub one_server_bootstrap: bool,
    /// Nodes that learned they were removed from the configuration.
    pub removed: u64,
    /// Messages held back for several election timeouts.
    pub messages_held: u64,
    /// Held messages that were also delivered on time.
    pub messages_held_duplicated: u64,
    /// Node pauses (a stopped process that later resumes).
    pub pauses: u64,
    /// Writes whose fsync stalled for several election timeouts.
    pub disk_stalls: u64,
    /// Whether the cores ran with a small log window (see
    /// [`SimConfig::window_rate`]).
    pub small_window: bool,
    /// Reads of the durable log for followers that completed
    /// (`Ready::fetches`), failed ones included.
    pub fetches: u64,
    /// Reads of the durable log that failed on purpose.
    pub fetch_failures: u64,
    /// Entries sent in AppendEntries requests.
    pub entries_replicated: u64,
    /// Entries sent in AppendEntries requests built from reads of the
    /// durable log.
    pub entries_from_store: u64,
    /// Committed entries applied from the durable log
    /// (`Ready::apply_from_store`).
    pub applied_from_store: u64,
    /// The most entry bytes any core held in memory (`Core::held_bytes`).
    pub max_held_bytes: u64,
    /// Lease reads asked of a node that led.
    pub lease_reads: u64,
    /// Lease reads a leader answered at once, under its lease.
    pub lease_reads_leased: u64,
}

/// Why a run failed: the seed to replay, the violated property, and the
/// events leading up to it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed of the failed run.
    pub seed: u64,
    /// The tick at which the violation was detected.
    pub tick: u64,
    /// Cluster size and the protocol switches the seed picked.
    pub setup: String,
    /// The property that does not hold.
    pub property: String,
    /// What exactly was observed.
    pub details: String,
    /// The last events before the failure, one per line, oldest first.
    pub trace: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation seed {} ({}) failed at tick {}: {}: {}\nlast events (oldest first):\n{}",
            self.seed, self.setup, self.tick, self.property, self.details, self.trace
        )
    }
}

impl std::error::Error for SimFailure {}

/// Runs one simulation. The same `seed` and `config` always produce the same
/// run.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(seed, config).map_err(|(property, details)| SimFailure {
        seed,
        setup: String::new(),
        tick: 0,
        property: property.to_owned(),
        details,
        trace: String::new(),
    })?;
    match sim.run() {
        Ok(()) => Ok(sim.report()),
        Err(v) => Err(SimFailure {
            seed,
            setup: sim.report.setup.clone(),
            tick: sim.now / TICK_UNITS,
            property: v.property.to_owned(),
            details: v.details,
            trace: sim.trace.render(),
        }),
    }
}

/// Something scheduled to happen at a simulated time.
#[derive(Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        msg: Message,
    },
    Synced {
        node: usize,
        life: u64,
    },
    /// Crashes `node`; while it has no unsynced write, waits up to
    /// `patience` more time units for one (so crashes often hit a sync).
    Crash {
        node: usize,
        patience: u64,
    },
    /// A snapshot write of `node` completes: its own snapshot, or one
    /// received in `transfer`.
    SnapshotStored {
        node: usize,
        life: u64,
        snapshot: Rc<Snapshot>,
        transfer: Option<Transfer>,
    },
    /// A snapshot transfer reaches its follower.
    SnapshotArrive {
        transfer: Transfer,
    },
    /// The leader learns the outcome of a snapshot transfer.
    SnapshotResult {
        transfer: Transfer,
        index: u64,
        term: u64,
        success: bool,
    },
    /// A read of `node`'s durable log for a follower completes (or fails,
    /// with `fail`).
    Fetched {
        node: usize,
        life: u64,
        fetch: LogFetch,
        fail: bool,
    },
}

#[derive(Debug)]
struct Scheduled {
    time: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    // Reversed, so the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// One simulated server.
struct Node {
    id: ServerId,
    /// `None` while crashed.
    core: Option<Core>,
    /// Incremented by every crash; stale completions carry an old life.
    life: u64,
    storage: Storage,
    fsm: KvFsm,
    /// The index the state machine was last restored at (from a snapshot,
    /// in this life); 0 if it started empty.
    applied_base: u64,
    /// Term of every entry applied since `applied_base`.
    applied_terms: Vec<u64>,
    /// Index of the newest snapshot taken, being taken or installed.
    last_snapshot: u64,
    /// A snapshot of its own is being written.
    snapshotting: bool,
    /// Per peer: a snapshot transfer to it is in flight.
    sending: Vec<bool>,
    restart_at: Option<u64>,
    /// (role, term, commit) last written to the trace.
    traced: (&'static str, u64, u64),
    /// The node learned it was removed (terminal; like the runtime, it
    /// records that durably and restarts removed). A removed server's id is
    /// never added back: an operator joins a wiped server under a new id.
    removed: bool,
    /// A leader proposed removing it: its id is never added back.
    retired: bool,
    /// Paused until this tick (see the `tails` module).
    paused_until: Option<u64>,
    /// Events for it that arrived while it was paused, oldest first.
    held: Vec<Event>,
    /// The highest term any node had reached when this node last lost
    /// durable data (an empty disk or a torn tail); 0 if it never did.
    lost_data_at_term: u64,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    core_cfg: CoreConfig,
    rng: SimRng,
    /// Randomness for snapshot decisions only.
    snap_rng: SimRng,
    /// Randomness for lifecycle faults only (lost disks, torn tails,
    /// one-server bootstrap).
    life_rng: SimRng,
    /// Randomness for held messages only.
    hold_rng: SimRng,
    /// Randomness for node pauses only.
    pause_rng: SimRng,
    /// Randomness for disk stalls only.
    stall_rng: SimRng,
    /// Randomness for joint membership changes only.
    joint_rng: SimRng,
    /// The joint change under way, if any.
    joint_job: Option<joint::JointJob>,
    /// Randomness for choosing lease reads only.
    lease_rng: SimRng,
    /// Every node's clock.
    clocks: Clocks,
    snapshots: SnapshotPolicy,
    /// The log window the seed picked, with its own random source.
    window: WindowPolicy,
    figure8: Figure8,
    now: u64,
    tick: u64,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    nodes: Vec<Node>,
    monitors: Vec<Monitor>,
    net: Network,
    clients: Vec<Client>,
    history: History,
    safety: Safety,
    trace: Trace,
    report: SimReport,
    next_read_id: u64,
    /// Fault phase: crashes, partitions, transfers and new client operations.
    faults: bool,
    heal_at: Option<u64>,
    /// The liveness write's entry, once acknowledged.
    liveness_entry: Option<(u64, u64)>,
}

impl<'a> Sim<'a> {
    fn new(seed: u64, cfg: &'a SimConfig) -> Result<Self, (&'static str, String)> {
        let mut rng = SimRng::new(seed);
        let n = match cfg.nodes {
            0 => {
                if rng.chance(0.5) {
                    3
                } else {
                    5
                }
            }
            n => n,
        };
        let mut core_cfg = CoreConfig::for_tests();
        if cfg.randomize_protocol {
            core_cfg.pre_vote = rng.chance(0.8);
            core_cfg.check_quorum = rng.chance(0.8);
            core_cfg.max_append_entries = [1, 2, 3, 64][rng.index(4)];
            // One entry at a time with a window of one makes catching up a
            // long log so slow that liveness would need a far larger bound.
            let min_inflight = if core_cfg.max_append_entries == 1 { 2 } else { 1 };
            core_cfg.max_inflight = rng.between(min_inflight, 4) as usize;
        }
        let mut figure8 = Figure8::new(seed, cfg.figure8_rate, n);
        if figure8.enabled && cfg.randomize_protocol {
            // The window in which Figure 8 matters opens when a new leader
            // replicates its older entries in several messages.
            core_cfg.max_append_entries = figure8.pick_batch();
            core_cfg.max_inflight = core_cfg.max_inflight.max(2);
        }
        if cfg.randomize_protocol {
            // Byte budgets around the size of a few commands (each counts
            // as its data plus the 64-byte entry overhead), so requests are
            // cut by bytes as well as by count. Taken from the seed, not the
            // generator, so every other choice of a seed stays as it was.
            core_cfg.max_append_bytes = [1 << 20, 150, 400][(seed % 3) as usize];
        }
        let window = WindowPolicy::pick(seed, cfg.window_rate, &mut core_cfg);
        let ids: Vec<ServerId> = (1..=n).map(|i| ServerId::from(format!("n{i}"))).collect();
        // Members at bootstrap; the rest are empty spares that may join later.
        let members = if n == 5 && cfg.membership_rate > 0.0 && rng.chance(0.5) { 3 } else { n };
        let conf = Configuration {
            servers: ids[..members].iter().map(|id| Server::voter(id.clone(), id.as_str())).collect(),
        };
        let data = crate::codec::encode(&conf).map_err(|e| ("setup", e.to_string()))?;
        let first = Log::new(1, 1, LogType::Configuration, data);
        let hard = HardState { term: 1, vote: None };
        let mut life_rng = SimRng::new(seed ^ 0x11FE_C7C1_E000_0000);
        let one_server_bootstrap = life_rng.chance(cfg.one_server_bootstrap_rate);
        let bootstrapped = if one_server_bootstrap { 1 } else { members };
        let mut nodes = Vec::with_capacity(n);
        for (i, id) in ids.into_iter().enumerate() {
            let (init, storage) = if i < bootstrapped {
                let init = InitialState {
                    hard_state: hard.clone(),
                    entries: vec![first.clone()],
                    ..Default::default()
                };
                let disk = MemLog { hard: hard.clone(), log: vec![first.clone()], ..MemLog::default() };
                (init, Storage { disk, ..Storage::default() })
            } else {
                (InitialState::default(), Storage::default())
            };
            let core = Core::new(id.clone(), core_cfg.clone(), rng.next_u64(), init)
                .map_err(|e| ("setup", e.to_string()))?;
            nodes.push(Node {
                id,
                core: Some(core),
                life: 0,
                storage,
                fsm: KvFsm::default(),
                applied_base: 0,
                applied_terms: Vec::new(),
                last_snapshot: 0,
                snapshotting: false,
                sending: vec![false; n],
                restart_at: None,
                traced: ("", 0, 0),
                removed: false,
                retired: false,
                paused_until: None,
                held: Vec::new(),
                lost_data_at_term: 0,
            });
        }
        let clients = (0..=cfg.clients).map(|c| Client::new(c as u64, rng.index(members))).collect();
        let mut snap_rng = SimRng::new(seed ^ 0x5EED_0F5A_A500_0000);
        let snapshots = SnapshotPolicy::pick(cfg.snapshot_rate, &mut snap_rng);
        let snapshot_setup = if snapshots.enabled {
            format!("snapshot every {} entries, trailing {}", snapshots.threshold + 1, snapshots.trailing)
        } else {
            "no snapshots".to_owned()
        };
        let snapshot_setup =
            if figure8.enabled { format!("{snapshot_setup}, figure 8 schedule") } else { snapshot_setup };
        let snapshot_setup = if one_server_bootstrap {
            format!("{snapshot_setup}, bootstrapped on n1 only")
        } else {
            snapshot_setup
        };
        let setup = format!(
            "{n} nodes, {members} members at start, pre_vote={}, check_quorum={}, max_append_entries={}, \
             max_append_bytes={}, max_inflight={}, {snapshot_setup}{}",
            core_cfg.pre_vote,
            core_cfg.check_quorum,
            core_cfg.max_append_entries,
            core_cfg.max_append_bytes,
            core_cfg.max_inflight,
            window.describe(&core_cfg)
        );
        let drift = cfg.clock_drift.unwrap_or_else(|| safe_drift(&core_cfg));
        let clocks = Clocks::new(n, drift, &mut SimRng::new(seed ^ 0xC10C_4000_0000_0005));
        let setup = match (cfg.legacy_clock_skew, cfg.adversarial_clocks) {
            (true, _) => setup,
            (false, false) => format!("{setup}, {}", clocks.describe()),
            (false, true) => format!("{setup}, leaders' clocks {:.3} slow, others' as fast", clocks.drift),
        };
        let small_window = window.small;
        let safety = Safety::new(nodes.iter().map(|node| node.id.clone()).collect());
        Ok(Self {
            cfg,
            core_cfg,
            rng,
            snap_rng,
            life_rng,
            hold_rng: SimRng::new(seed ^ 0x401D_0000_0000_0001),
            pause_rng: SimRng::new(seed ^ 0x9A05_E000_0000_0002),
            stall_rng: SimRng::new(seed ^ 0x57A1_1000_0000_0003),
            joint_rng: SimRng::new(seed ^ 0x7017_7000_0000_0004),
            joint_job: None,
            lease_rng: SimRng::new(seed ^ 0x1EA5_E000_0000_0006),
            clocks,
            snapshots,
            window,
            figure8,
            now: 0,
            tick: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            monitors: (0..n).map(|_| Monitor::default()).collect(),
            nodes,
            net: Network::new(n, cfg.drop_rate, cfg.dup_rate, cfg.max_delay),
            clients,
            history: History::default(),
            safety,
            trace: Trace::default(),
            report: SimReport {
                seed,
                setup,
                nodes: n,
                one_server_bootstrap,
                small_window,
                ..Default::default()
            },
            next_read_id: 0,
            faults: true,
            heal_at: None,
            liveness_entry: None,
        })
    }

    fn run(&mut self) -> Check {
        let end = self.cfg.ticks + self.cfg.liveness_ticks;
        let mut live = false;
        for tick in 0..end {
            self.tick = tick;
            self.now = tick * TICK_UNITS;
            if tick == self.cfg.ticks {
                self.stop_faults()?;
            }
            self.on_tick()?;
            let horizon = (tick + 1) * TICK_UNITS;
            while self.queue.peek().is_some_and(|s| s.time < horizon) {
                let Some(s) = self.queue.pop() else { break };
                self.now = s.time;
                self.handle(s.event)?;
            }
            if !self.faults && self.liveness_done() {
                self.report.liveness_ticks = tick + 1 - self.cfg.ticks;
                live = true;
                break;
            }
        }
        self.report.ticks = self.tick + 1;
        if !live {
            let states: Vec<String> = (0..self.nodes.len()).map(|n| self.describe(n)).collect();
            let commit = self.leader().and_then(|l| self.nodes[l].core.as_ref()).map(|c| c.commit_index());
            let target = self.liveness_entry.map_or(0, |(i, _)| i).max(commit.unwrap_or(0));
            let behind: Vec<String> = self
                .lagging_members(target, &self.members().unwrap_or_default())
                .iter()
                .map(|n| format!("n{}", n + 1))
                .collect();
            return Err(violation(
                "liveness",
                format!(
                    "{} ticks after the faults stopped, no fresh write was applied on every node, or not \
                     every member caught up (liveness write: {:?}; leader commit: {commit:?}; members behind \
                     it: [{}]); nodes: {}",
                    self.cfg.liveness_ticks,
                    self.liveness_entry,
                    behind.join(" "),
                    states.join("; ")
                ),
            ));
        }
        self.final_checks()
    }

    fn describe(&self, n: usize) -> String {
        let node = &self.nodes[n];
        match &node.core {
            None => format!("n{} down", n + 1),
            Some(c) => {
                let (conf, conf_index) = c.configuration();
                let members: Vec<String> = conf
                    .servers
                    .iter()
                    .map(|s| match s.suffrage {
                        Suffrage::Voter => s.id.to_string(),
                        other => format!("{}({other})", s.id),
                    })
                    .collect();
                format!(
                    "n{} {:?} t{} snapshot={} last={} commit={} applied={} config@{conf_index}=[{}]",
                    n + 1,
                    c.state(),
                    c.term(),
                    c.snapshot_index(),
                    c.last_index(),
                    c.commit_index(),
                    node.fsm.applied,
                    members.join(" ")
                )
            }
        }
    }

    fn schedule(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled { time, seq: self.seq, event });
    }

    fn node_index(&self, id: &ServerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == *id)
    }

    // ---- the tick -------------------------------------------------------

    fn on_tick(&mut self) -> Check {
        self.trace.push(self.now, TraceKind::Tick);
        let nodes = &self.nodes;
        let leads = |n: usize| nodes[n].core.as_ref().is_some_and(|c| c.is_leader());
        self.clocks.advance(self.cfg.adversarial_clocks, leads);
        for n in 0..self.nodes.len() {
            if self.nodes[n].restart_at.is_some_and(|t| t <= self.tick) {
                self.restart(n)?;
            }
        }
        self.resume_paused(false)?;
        if self.faults {
            self.inject_faults()?;
            self.maybe_pause();
        }
        self.run_clients()?;
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.index(i + 1));
        }
        for n in order {
            let ticks = self.ticks_due(n);
            for _ in 0..ticks {
                if self.is_paused(n) {
                    break;
                }
                if let Some(core) = self.nodes[n].core.as_mut() {
                    core.tick();
                    self.after_step(n)?;
                }
            }
        }
        Ok(())
    }

    /// The ticks node `n`'s core gets now: those its clock passed (none
    /// while it is paused: it gets them when it resumes). Under
    /// [`SimConfig::legacy_clock_skew`], one, except that during the faults
    /// its clock sometimes stalls or runs at double speed.
    fn ticks_due(&mut self, n: usize) -> u64 {
        if self.cfg.legacy_clock_skew {
            return match self.faults.then(|| self.rng.index(40)) {
                Some(0) => 0,
                Some(1) => 2,
                _ => 1,
            };
        }
        if self.is_paused(n) {
            return 0;
        }
        self.clocks.take_due(n)
    }

    /// Ticks node `n` for every tick its clock passed while it was paused
    /// (a monotonic clock sees a pause), before it handles anything else.
    fn catch_up_clock(&mut self, n: usize) -> Check {
        if self.cfg.legacy_clock_skew {
            return Ok(());
        }
        for _ in 0..self.clocks.take_due(n) {
            let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
            core.tick();
            self.after_step(n)?;
        }
        Ok(())
    }

    fn inject_faults(&mut self) -> Check {
        if self.rng.chance(self.cfg.crash_rate) {
            let n = self.rng.index(self.nodes.len());
            if self.nodes[n].core.is_some() {
                let at = self.now + self.rng.between(0, TICK_UNITS - 1);
                let patience = if self.rng.chance(0.7) { 3 * TICK_UNITS } else { 0 };
                self.schedule(at, Event::Crash { node: n, patience });
            }
        }
        if self.heal_at.is_some_and(|t| t <= self.tick) {
            self.net.heal();
            self.heal_at = None;
            self.trace.push(self.now, TraceKind::Network("healed".into()));
        } else if self.heal_at.is_none() && self.rng.chance(self.cfg.partition_rate) {
            self.partition();
            let duration = self.rng.between(3, self.cfg.max_partition_ticks.max(3));
            self.heal_at = Some(self.tick + duration);
            self.report.partitions += 1;
            let description = self.net.describe();
            self.trace.push(self.now, TraceKind::Network(description));
        }
        if self.cfg.joint_rate > 0.0 {
            self.advance_joint_change()?;
        }
        if self.rng.chance(self.cfg.membership_rate) {
            if self.cfg.joint_rate > 0.0 && self.joint_rng.chance(self.cfg.joint_rate) {
                self.start_joint_change()?;
            } else {
                self.change_membership()?;
            }
        }
        if self.rng.chance(self.cfg.transfer_rate) {
            if let Some(n) = self.leader().filter(|&n| !self.is_paused(n)) {
                let target = if self.rng.chance(0.5) {
                    None
                } else {
                    Some(self.nodes[self.rng.index(self.nodes.len())].id.clone())
                };
                if let Some(core) = self.nodes[n].core.as_mut().filter(|c| !c.transfer_in_progress()) {
                    if core.transfer_leadership(target).is_ok() {
                        self.report.transfers += 1;
                        self.trace
                            .push(self.now, TraceKind::Network(format!("n{} transfers leadership", n + 1)));
                    }
                }
                self.after_step(n)?;
            }
        }
        Ok(())
    }

    /// Asks the leader (if any) to add, promote, demote or remove a server,
    /// keeping at least three voters.
    fn change_membership(&mut self) -> Check {
        let Some(n) = self.leader().filter(|&n| !self.is_paused(n)) else { return Ok(()) };
        let Some(core) = self.nodes[n].core.as_ref() else { return Ok(()) };
        let mut conf = core.configuration().0.clone();
        let voters = conf.voters().count();
        let outsiders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| conf.server(&self.nodes[i].id).is_none() && !self.nodes[i].retired)
            .collect();
        let pick = self.rng.index(conf.servers.len());
        let what = match self.rng.index(4) {
            0 | 1 if !outsiders.is_empty() => {
                let id = self.nodes[outsiders[self.rng.index(outsiders.len())]].id.clone();
                let server = if self.rng.chance(0.5) {
                    Server::voter(id.clone(), id.as_str())
                } else {
                    Server::nonvoter(id.clone(), id.as_str())
                };
                let what = format!("add {id} as {:?}", server.suffrage);
                conf.servers.push(server);
                what
            }
            2 => {
                let s = &mut conf.servers[pick];
                if s.suffrage == Suffrage::Voter {
                    if voters <= 3 {
                        return Ok(());
                    }
                    s.suffrage = Suffrage::Nonvoter;
                } else {
                    s.suffrage = Suffrage::Voter;
                }
                format!("make {} a {:?}", s.id, s.suffrage)
            }
            _ => {
                if conf.servers[pick].suffrage == Suffrage::Voter && voters <= 3 {
                    return Ok(());
                }
                let removed = conf.servers.remove(pick);
                if let Some(node) = self.nodes.iter_mut().find(|node| node.id == removed.id) {
                    node.retired = true;
                }
                format!("remove {}", removed.id)
            }
        };
        let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
        if core.propose_configuration(conf).is_ok() {
            self.report.config_changes += 1;
            self.trace.push(self.now, TraceKind::Network(format!("n{} proposes: {what}", n + 1)));
        }
        self.after_step(n)
    }

    /// A node that currently believes it leads, in the highest term.
    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].core.as_ref().is_some_and(|c| c.is_leader()))
            .max_by_key(|&n| self.nodes[n].core.as_ref().map_or(0, |c| c.term()))
    }

    /// Nodes in the latest configuration of the current leader.
    fn members(&self) -> Option<Vec<usize>> {
        let core = self.nodes[self.leader()?].core.as_ref()?;
        let conf = core.configuration().0;
        Some((0..self.nodes.len()).filter(|&i| conf.server(&self.nodes[i].id).is_some()).collect())
    }

    fn partition(&mut self) {
        let n = self.nodes.len();
        let victim = self.rng.index(n);
        let kind = self.rng.index(5);
        if let Some(leader) = self.leader().filter(|_| self.cfg.isolate_leaders) {
            // The adversary cuts the leader off, both ways.
            (0..n).for_each(|o| {
                self.net.set_blocked(leader, o, true);
                self.net.set_blocked(o, leader, true);
            });
            return;
        }
        match kind {
            // One node cut off both ways.
            0 => (0..n).for_each(|o| {
                self.net.set_blocked(victim, o, true);
                self.net.set_blocked(o, victim, true);
            }),
            // Two random sides.
            1 => {
                let side: Vec<bool> = (0..n).map(|_| self.rng.chance(0.5)).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.net.set_blocked(a, b, true);
                        }
                    }
                }
            }
            // One way: the victim can receive but not send.
            2 => (0..n).for_each(|o| self.net.set_blocked(victim, o, true)),
            // One way: the victim can send but not receive.
            3 => (0..n).for_each(|o| self.net.set_blocked(o, victim, true)),
            // Random directed links.
            _ => {
                for a in 0..n {
                    for b in 0..n {
                        if self.rng.chance(0.3) {
                            self.net.set_blocked(a, b, true);
                        }
                    }
                }
            }
        }
    }

    /// Ends the fault phase: heal, restart everyone, stop losing messages,
    /// let the clients give up, and start the liveness write.
    fn stop_faults(&mut self) -> Check {
        self.faults = false;
        self.net.heal();
        self.net.drop_rate = 0.0;
        self.net.dup_rate = 0.0;
        self.heal_at = None;
        self.trace.push(self.now, TraceKind::Network("faults stop; healed".into()));
        self.queue.retain(|s| !matches!(s.event, Event::Crash { .. }));
        self.resume_paused(true)?;
        for n in 0..self.nodes.len() {
            if self.nodes[n].core.is_none() {
                self.restart(n)?;
            }
        }
        for c in 0..self.clients.len() {
            self.give_up(c);
        }
        Ok(())
    }

    /// Whether the liveness write is applied on every member, and every
    /// member in the leader's configuration has caught up: its log reaches
    /// the leader's commit index and its state machine applied it.
    fn liveness_done(&self) -> bool {
        let Some((index, _)) = self.liveness_entry else { return false };
        let Some(members) = self.members() else { return false };
        let Some(commit) = self.leader().and_then(|l| self.nodes[l].core.as_ref()).map(|c| c.commit_index())
        else {
            return false;
        };
        self.lagging_members(index.max(commit), &members).is_empty()
    }

    /// The members of `members` whose log or applied index is below `index`
    /// (or that are down).
    fn lagging_members(&self, index: u64, members: &[usize]) -> Vec<usize> {
        members
            .iter()
            .copied()
            .filter(|&n| {
                let node = &self.nodes[n];
                node.core.as_ref().is_none_or(|c| c.last_index() < index) || node.fsm.applied < index
            })
            .collect()
    }

    // ---- events ---------------------------------------------------------

    fn handle(&mut self, event: Event) -> Check {
        if let Some(n) = self.paused_target(&event) {
            self.nodes[n].held.push(event);
            return Ok(());
        }
        match event {
            Event::Deliver { from, to, msg } => {
                let summary = MsgSummary::of(&msg.body);
                let blocked = self.net.is_blocked(from, to);
                let Some(core) = self.nodes[to].core.as_mut().filter(|_| !blocked) else {
                    self.net.dropped += 1;
                    return Ok(());
                };
                self.report.messages_delivered += 1;
                self.trace.push(self.now, TraceKind::Deliver { from, to, msg: summary });
                let answer_term = match &msg.body {
                    Body::AppendEntriesResponse(r) => Some(r.term),
                    Body::RequestVoteResponse(r) if !r.removed => Some(r.term),
                    _ => None,
                };
                core.step(msg);
                // Figure 2: a response with a higher term makes its
                // receiver a follower of that term.
                if let Some(t) = answer_term.filter(|&t| t > core.term() && !core.is_removed()) {
                    return Err(violation(
                        "a higher term in a response is adopted",
                        format!(
                            "n{} handled a response of term {t} and stayed in term {}",
                            to + 1,
                            core.term()
                        ),
                    ));
                }
                self.after_step(to)
            }
            Event::Synced { node, life } => self.synced(node, life),
            Event::Crash { node, patience } => {
                if patience > 0 && self.nodes[node].storage.pending.is_empty() {
                    self.schedule(self.now + 1, Event::Crash { node, patience: patience - 1 });
                } else {
                    // A paused process can be killed: what queued up for
                    // it meets a crashed node.
                    let queued = self.crash(node);
                    for event in queued {
                        self.handle(event)?;
                    }
                }
                Ok(())
            }
            Event::SnapshotStored { node, life, snapshot, transfer } => {
                self.snapshot_stored(node, life, snapshot, transfer)
            }
            Event::SnapshotArrive { transfer } => self.snapshot_arrived(transfer),
            Event::SnapshotResult { transfer, index, term, success } => {
                self.snapshot_result(transfer, index, term, success)
            }
            Event::Fetched { node, life, fetch, fail } => self.fetched(node, life, fetch, fail),
        }
    }

    fn send(&mut self, from: usize, msg: Message) -> Check {
        let Some(to) = self.node_index(&msg.to) else {
            return Err(violation(
                "addressing",
                format!("n{} sent a message to unknown {}", from + 1, msg.to),
            ));
        };
        match &msg.body {
            Body::RequestVoteResponse(r) if r.granted => self.safety.on_vote_granted(from, r.term, to)?,
            Body::AppendEntriesResponse(r) if r.success => self.ack_sent(from, r.term, r.last_log_index),
            Body::AppendEntries(a) => self.report.entries_replicated += a.entries.len() as u64,
            _ => {}
        }
        let delays = self.net.route(from, to, &mut self.rng);
        let delays = self.hold(from, to, delays);
        if delays.len() != 1 {
            let summary = MsgSummary::of(&msg.body);
            self.trace.push(self.now, TraceKind::Send { from, to, msg: summary, copies: delays.len() });
        }
        for d in delays {
            self.schedule(self.now + d, Event::Deliver { from, to, msg: msg.clone() });
        }
        Ok(())
    }

    /// Node `n` acknowledges its log up to `index` in `term`: records what
    /// its disk holds there now (see `Safety::check_matches`).
    fn ack_sent(&mut self, n: usize, term: u64, index: u64) {
        let durable = self.nodes[n].storage.term_at(index, self.safety.committed_terms());
        self.safety.on_ack_sent(n, term, index, durable);
    }

    fn synced(&mut self, n: usize, life: u64) -> Check {
        if self.nodes[n].life != life || self.nodes[n].core.is_none() {
            return Ok(());
        }
        let write = match self.nodes[n].storage.complete_oldest() {
            None => return Ok(()),
            Some(Err(e)) => {
                return Err(violation("storage writes are well formed", format!("n{}: {e}", n + 1)))
            }
            Some(Ok(w)) => w,
        };
        self.report.syncs += 1;
        {
            let Self { nodes, safety, .. } = self;
            let storage = &nodes[n].storage;
            if let Some(c) = write.compact {
                let what = || format!("the durable log of n{} (compacted)", n + 1);
                safety.check_covered(&what, c.through, c.term)?;
            }
            for e in &write.entries {
                let prev = storage.log_term(e.index - 1).unwrap_or(0);
                let where_ = || format!("durable log of n{}", n + 1);
                safety.check_entry(&where_, e.index, e.term, prev, e.log_type, &e.data)?;
            }
        }
        let last = self.nodes[n].storage.last_index();
        self.trace.push(self.now, TraceKind::Synced { node: n, last, sent: write.persisted_messages.len() });
        for m in write.completed(self.nodes[n].core.as_mut()) {
            self.send(n, m)?;
        }
        self.after_step(n)
    }

    /// Crashes node `n`; returns the events that queued up for it while it
    /// was paused (to be handled now that it is down).
    fn crash(&mut self, n: usize) -> Vec<Event> {
        if !self.faults || self.nodes[n].core.is_none() {
            return Vec::new();
        }
        let node = &mut self.nodes[n];
        node.core = None;
        node.paused_until = None;
        let queued = std::mem::take(&mut node.held);
        node.life += 1;
        node.snapshotting = false;
        node.sending.iter_mut().for_each(|s| *s = false);
        let lost = node.storage.crash();
        let down = self.rng.between(1, self.cfg.max_down_ticks.max(1));
        node.restart_at = Some(self.tick + down);
        self.report.crashes += 1;
        self.report.writes_lost += lost as u64;
        self.trace.push(self.now, TraceKind::Crash { node: n, lost_writes: lost });
        for c in 0..self.clients.len() {
            match self.clients[c].stage {
                Stage::Write { node, .. } if node == n => self.write_unknown(c),
                Stage::Read { node, .. } if node == n => self.clients[c].stage = Stage::Submit,
                _ => {}
            }
        }
        queued
    }

    fn restart(&mut self, n: usize) -> Check {
        let seed = self.rng.next_u64();
        self.lifecycle_fault(n);
        let node = &mut self.nodes[n];
        node.restart_at = None;
        let recovered = node
            .storage
            .recover()
            .map_err(|e| violation("restart from durable state", format!("n{}: {e}", n + 1)))?;
        let mut init = InitialState {
            hard_state: node.storage.hard.clone(),
            entries: recovered.entries,
            removed: node.removed,
            ..Default::default()
        };
        node.fsm = KvFsm::default();
        if let Some(s) = &recovered.snapshot {
            let (configuration_index, configuration) = s.state.conf.clone();
            init.snapshot =
                Some(SnapshotPosition { index: s.index, term: s.term, configuration, configuration_index });
            init.applied = s.index;
            node.fsm = KvFsm::restored(s.index, s.term, s.state.clone());
            self.report.snapshot_restarts += 1;
        }
        let core = Core::new(node.id.clone(), self.core_cfg.clone(), seed, init)
            .map_err(|e| violation("restart from durable state", format!("n{}: {e}", n + 1)))?;
        let (term, last) = (core.term(), core.last_index());
        node.core = Some(core);
        node.applied_base = node.fsm.applied;
        node.applied_terms.clear();
        node.last_snapshot = node.fsm.applied;
        if let Some(s) = &recovered.snapshot {
            let what = || format!("the snapshot n{} restarts from", n + 1);
            self.safety.check_snapshot_state(&what, s.index, s.term, &s.state)?;
        }
        self.monitors[n] = Monitor::default();
        self.trace.push(self.now, TraceKind::Restart { node: n, term, last });
        self.after_step(n)
    }

    // ---- driving a core ---------------------------------------------------

    /// Checks safety after a step of node `n` (before its committed entries
    /// are applied, so the commit is on record first), executes its work,
    /// settles its clients, and checks again (a truncation reported in the
    /// `Ready` makes the second check re-verify the rewritten log suffix).
    fn after_step(&mut self, n: usize) -> Check {
        self.after_install(n, None)
    }

    /// [`Sim::after_step`] after node `n` installed snapshot `installed`
    /// (if any), which is executed ahead of its next `Ready`.
    fn after_install(&mut self, n: usize, installed: Option<(Rc<Snapshot>, InstalledSnapshot)>) -> Check {
        self.check(n)?;
        self.drive(n, installed)?;
        self.settle_clients(n)?;
        self.check(n)?;
        self.figure8_step(n);
        Ok(())
    }

    /// Executes every `Ready` of node `n` in the documented order, with the
    /// core harness's executor (see [`drive`](self::drive)); the first one
    /// after the snapshot install `installed` (if any).
    fn drive(&mut self, n: usize, mut installed: Option<(Rc<Snapshot>, InstalledSnapshot)>) -> Check {
        loop {
            let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
            if !core.has_ready() && installed.is_none() {
                return Ok(());
            }
            let ready = core.take_ready();
            let (snapshot, install) = installed.take().unzip();
            harness::execute(ready, install, &mut Driving { sim: self, n, snapshot })?;
        }
    }

    /// Queues a durable write of node `n`, completing after a random sync
    /// delay (and after the writes ahead of it).
    fn queue_write(&mut self, n: usize, mut write: PendingWrite) {
        let delay = self.rng.between(1, self.cfg.max_sync_delay.max(1));
        let delay = self.stall(n, delay);
        let storage = &mut self.nodes[n].storage;
        write.done_at = storage.completion_time(self.now, delay);
        let done_at = write.done_at;
        storage.pending.push_back(write);
        let life = self.nodes[n].life;
        self.schedule(done_at, Event::Synced { node: n, life });
    }

    fn apply(&mut self, n: usize, e: Log) -> Check {
        let node = &mut self.nodes[n];
        let previous = node.fsm.applied;
        node.applied_terms.push(e.term);
        node.fsm.applied = e.index;
        node.fsm.applied_term = e.term;
        let output = match e.log_type {
            LogType::Command => {
                let input = kv::decode(&e.data)
                    .map_err(|err| violation("commands survive replication", format!("n{}: {err}", n + 1)))?;
                Some(node.fsm.apply(e.index, &input))
            }
            LogType::Configuration => {
                let conf = crate::codec::decode::<Configuration>(&e.data).map_err(|err| {
                    violation("configurations survive replication", format!("n{}: {err}", n + 1))
                })?;
                node.fsm.apply_configuration(e.index, conf);
                None
            }
            _ => None,
        };
        self.safety.on_apply(n, previous, e.index, e.term, &e.data, &self.nodes[n].fsm.state)?;
        let life = self.nodes[n].life;
        for c in 0..self.clients.len() {
            let Stage::Write { node, life: l, index, term } = self.clients[c].stage else { continue };
            if node != n || l != life || index != e.index {
                continue;
            }
            match (&output, term == e.term) {
                (Some(out), true) => self.write_done(c, out.clone(), index, term)?,
                _ => self.write_unknown(c),
            }
        }
        Ok(())
    }

    fn check(&mut self, n: usize) -> Check {
        let Self { nodes, monitors, safety, trace, now, report, core_cfg, .. } = self;
        let Some(core) = nodes[n].core.as_ref() else { return Ok(()) };
        // The log window is bounded: beyond the entries not yet durable,
        // the core holds at most `max_window_bytes` of payloads.
        let unpersisted: usize = (core.persisted_index() + 1..=core.last_index())
            .filter_map(|i| core.entry(i))
            .map(|e| e.data.len() + crate::transport::ENTRY_OVERHEAD)
            .sum();
        let held = core.held_bytes();
        if held > core_cfg.max_window_bytes + unpersisted {
            return Err(violation(
                "the log window is bounded",
                format!(
                    "n{} holds {held} bytes of entries, {unpersisted} of them not yet durable, with a window of {} bytes",
                    n + 1,
                    core_cfg.max_window_bytes
                ),
            ));
        }
        report.max_held_bytes = report.max_held_bytes.max(held as u64);
        // Removal is terminal, and a removed server stays quiet.
        let (is_removed, noisy) =
            (core.is_removed(), !core.ready.messages.is_empty() || !core.ready.persisted_messages.is_empty());
        if is_removed {
            if !nodes[n].removed {
                nodes[n].removed = true;
                report.removed += 1;
                trace.push(*now, TraceKind::Network(format!("n{} learns it was removed", n + 1)));
            } else if noisy {
                // (The step that removed it may still answer or send a
                // last heartbeat; every later one must not.)
                return Err(violation("removed stays quiet", format!("n{} sends after its removal", n + 1)));
            }
        } else if nodes[n].removed {
            return Err(violation(
                "removed is terminal",
                format!("n{} is active again after its removal", n + 1),
            ));
        }
        let Some(core) = nodes[n].core.as_ref() else { return Ok(()) };
        let durable_count = |conf: &Configuration, index: u64, term: u64, committed: &[u64]| {
            let voters = conf.voters().count();
            let durable = nodes
                .iter()
                .filter(|node| {
                    conf.is_voter(&node.id) && node.storage.term_at(index, committed) == Some(term)
                })
                .count();
            (durable, voters / 2 + 1)
        };
        safety.check_node(n, core, &nodes[n].storage, &mut monitors[n], &durable_count)?;
        if core.is_leader() {
            let term = core.term();
            let committed = safety.committed_terms();
            let follower = |id: &ServerId, index: u64| {
                let f = nodes.iter().position(|node| node.id == *id)?;
                let node = &nodes[f];
                let its_term = node.storage.hard.term.max(node.core.as_ref().map_or(0, |c| c.term()));
                Some(FollowerDisk {
                    node: f,
                    durable_term: node.storage.term_at(index, committed),
                    kept: its_term <= term && node.lost_data_at_term < term,
                })
            };
            safety.check_matches(n, core, &follower)?;
        }
        let committed = safety.committed_terms();
        if core.id() != &nodes[n].id {
            return Err(violation("identity", format!("n{} reports id {}", n + 1, core.id())));
        }
        // The core must never believe more of its log is durable than is.
        // Past its own compaction point that is the durable log itself: a
        // snapshot received but refused (from a stale term) may be stored,
        // yet it is not part of the running node's log.
        let persisted = core.persisted_index();
        let durable_term = |index: u64| {
            if index <= core.snapshot_index() {
                nodes[n].storage.term_at(index, committed)
            } else {
                nodes[n].storage.log_term(index)
            }
        };
        if persisted > 0 && durable_term(persisted) != core.term_at(persisted) {
            return Err(violation(
                "persisted means durable",
                format!(
                    "n{} believes its log is durable up to {persisted} (t{:?}) but its disk holds {:?} there",
                    n + 1,
                    core.term_at(persisted),
                    durable_term(persisted)
                ),
            ));
        }
        if core.commit_index() > core.last_index() {
            return Err(violation("commit within log", format!("n{} commit beyond last index", n + 1)));
        }
        for (i, node) in nodes.iter().enumerate() {
            if let Some(c) = node.core.as_ref().filter(|c| c.is_leader()) {
                safety.check_leader(i, c)?;
            }
        }
        let role = match core.state() {
            crate::types::RaftState::Leader => "leader",
            crate::types::RaftState::Candidate => "candidate",
            _ => "follower",
        };
        let state = (role, core.term(), core.commit_index());
        let (last, applied) = (core.last_index(), nodes[n].fsm.applied);
        if nodes[n].traced != state {
            nodes[n].traced = state;
            let (role, term, commit) = state;
            trace.push(*now, TraceKind::State { node: n, role, term, last, commit, applied });
        }
        Ok(())
    }

    // ---- clients ----------------------------------------------------------

    fn run_clients(&mut self) -> Check {
        for c in 0..self.clients.len() {
            let liveness_client = c == self.cfg.clients;
            if let Some(op) = &self.clients[c].op {
                if self.tick > op.deadline {
                    self.give_up(c);
                }
            }
            match self.clients[c].stage {
                Stage::Idle { next_at } if next_at <= self.tick => {
                    let input = if liveness_client {
                        if self.faults || self.liveness_entry.is_some() {
                            continue;
                        }
                        KvInput::Put { key: "live".into(), value: format!("live.{}", self.tick) }
                    } else {
                        if !self.faults {
                            continue;
                        }
                        let keys = self.cfg.keys;
                        let Self { clients, rng, .. } = self;
                        clients[c].next_input(keys, rng)
                    };
                    let call = self.history.now();
                    let deadline = self.tick + self.cfg.op_timeout_ticks;
                    self.clients[c].op = Some(PendingOp { input, call, deadline });
                    self.clients[c].stage = Stage::Submit;
                    self.submit(c)?;
                }
                Stage::Submit => self.submit(c)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn submit(&mut self, c: usize) -> Check {
        let Some(op) = self.clients[c].op.clone() else { return Ok(()) };
        let n = self.clients[c].guess;
        if self.is_paused(n) {
            // The request waits unanswered, as at a stopped process (the
            // client gives up at its deadline).
            return Ok(());
        }
        let life = self.nodes[n].life;
        let Some(core) = self.nodes[n].core.as_mut() else {
            self.refused(c, &Refusal::NotLeader(None));
            return Ok(());
        };
        let client_id = self.clients[c].id;
        let mut leased_now = false;
        let result = match kv::encode(&op.input) {
            None => {
                self.next_read_id += 1;
                let id = self.next_read_id;
                let committed = self.safety.committed_len();
                let lease = self.cfg.lease_read_rate > 0.0 && self.lease_rng.chance(self.cfg.lease_read_rate);
                let asked = if lease {
                    if core.is_leader() {
                        self.report.lease_reads += 1;
                    }
                    if core.lease_remaining_ticks().is_some_and(|t| t > 0) {
                        self.report.lease_reads_leased += 1;
                        leased_now = true;
                    }
                    core.lease_read(id)
                } else {
                    core.read_index(id)
                };
                asked.map(|()| Stage::Read { node: n, life, id, confirmed: None, committed, lease })
            }
            Some(data) => {
                let term = core.term();
                core.propose([(LogType::Command, data)]).map(|index| Stage::Write {
                    node: n,
                    life,
                    index,
                    term,
                })
            }
        };
        if leased_now && self.cfg.direct_read_checks {
            self.check_lease_blocks_rivals(n)?;
        }
        match result {
            Ok(stage) => {
                let what = match &stage {
                    Stage::Write { index, term, .. } => format!("proposed at {index}/t{term}"),
                    Stage::Read { lease: true, confirmed: Some(i), .. } => format!("lease read at {i}"),
                    Stage::Read { lease: true, .. } => "lease read requested (no lease: a round)".to_owned(),
                    _ => "read index requested".to_owned(),
                };
                self.trace.push(
                    self.now,
                    TraceKind::Client(format!("c{client_id} {:?} on n{}: {what}", op.input, n + 1)),
                );
                self.clients[c].stage = stage;
                self.after_step(n)
            }
            Err(why) => {
                self.refused(c, &why);
                Ok(())
            }
        }
    }

    /// The request was refused (no effect): retry, at the hinted leader if any.
    fn refused(&mut self, c: usize, why: &Refusal) {
        self.history.retries += 1;
        let hint = match why {
            Refusal::NotLeader(Some(l)) => self.node_index(l),
            _ => None,
        };
        let guess = hint.unwrap_or_else(|| self.rng.index(self.nodes.len()));
        let client = &mut self.clients[c];
        client.guess = guess;
        client.stage = Stage::Submit;
    }

    fn write_done(&mut self, c: usize, output: KvOutput, index: u64, term: u64) -> Check {
        self.safety.on_ack(index, term)?;
        let Some(op) = self.clients[c].op.take() else { return Ok(()) };
        let client = self.clients[c].id;
        self.history.complete(client, &op, output.clone(), Some((index, term)));
        self.trace.push(self.now, TraceKind::Client(format!("c{client} acked {index}/t{term}: {output:?}")));
        if c == self.cfg.clients {
            self.liveness_entry = Some((index, term));
        }
        self.finish(c, &op.input, &output);
        Ok(())
    }

    fn write_unknown(&mut self, c: usize) {
        let Some(op) = self.clients[c].op.take() else { return };
        let client = self.clients[c].id;
        self.history.unknown(client, &op);
        self.trace.push(self.now, TraceKind::Client(format!("c{client} {:?}: outcome unknown", op.input)));
        let next_at = self.tick + 1;
        self.clients[c].stage = Stage::Idle { next_at };
        self.clients[c].guess = self.rng.index(self.nodes.len());
    }

    /// Abandons the client's operation (timeout or end of the fault phase).
    fn give_up(&mut self, c: usize) {
        if self.clients[c].op.is_some() {
            self.write_unknown(c);
        }
    }

    fn finish(&mut self, c: usize, input: &KvInput, output: &KvOutput) {
        let pause = self.rng.between(0, 2);
        let client = &mut self.clients[c];
        client.observe(input, output);
        client.stage = Stage::Idle { next_at: self.tick + pause };
    }

    /// After node `n` stepped: resolve writes it can no longer answer and
    /// serve reads whose read index it has applied.
    fn settle_clients(&mut self, n: usize) -> Check {
        let life = self.nodes[n].life;
        for c in 0..self.clients.len() {
            match self.clients[c].stage {
                Stage::Write { node, life: l, term, .. } if node == n && l == life => {
                    let leads = self.nodes[n]
                        .core
                        .as_ref()
                        .is_some_and(|core| core.is_leader() && core.term() == term);
                    if !leads {
                        self.write_unknown(c);
                    }
                }
                Stage::Read { node, life: l, confirmed: Some(index), .. }
                    if node == n && l == life && self.nodes[n].fsm.applied >= index =>
                {
                    self.serve_read(c, n)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn serve_read(&mut self, c: usize, n: usize) -> Check {
        let Some(op) = self.clients[c].op.take() else { return Ok(()) };
        let key = op.input.key().to_owned();
        let (value, changed_at) = self.nodes[n].fsm.get(&key);
        let must_see = self.history.last_acked_change_before(&key, op.call);
        if self.cfg.direct_read_checks && changed_at < must_see {
            return Err(violation(
                "no stale reads",
                format!(
                    "client {} read {key:?} on n{} and saw the state last changed at index {changed_at}, but a \
                     write at index {must_see} was acknowledged before the read began",
                    self.clients[c].id,
                    n + 1
                ),
            ));
        }
        let client = self.clients[c].id;
        let output = KvOutput::Get(value);
        self.history.complete(client, &op, output.clone(), None);
        self.trace
            .push(self.now, TraceKind::Client(format!("c{client} read {key:?} on n{}: {output:?}", n + 1)));
        self.finish(c, &op.input, &output);
        Ok(())
    }

    // ---- the end ----------------------------------------------------------

    fn final_checks(&mut self) -> Check {
        for c in 0..self.clients.len() {
            self.give_up(c);
        }
        // Every acknowledged write is applied, unchanged, on every member.
        let members = self.members().unwrap_or_default();
        // Entries a node's restored snapshot covers are reflected in its
        // state (the snapshot was checked against the state after applying
        // the committed log up to its index).
        for &(index, term) in &self.history.acked_writes {
            for &n in &members {
                let node = &self.nodes[n];
                let applied = match index.checked_sub(node.applied_base + 1) {
                    Some(i) => node.applied_terms.get(i as usize).copied(),
                    None => self.safety.committed_terms().get(index as usize - 1).copied(),
                };
                if applied != Some(term) {
                    return Err(violation(
                        "acknowledged writes are never lost",
                        format!(
                            "write {index}/t{term} was acknowledged but n{} applied {applied:?} there",
                            n + 1
                        ),
                    ));
                }
            }
        }
        // Full log-matching pass over every log, durable and in memory.
        for n in 0..self.nodes.len() {
            self.monitors[n].mem_verified = 0;
            self.check(n)?;
            let Self { nodes, safety, .. } = self;
            let storage = &nodes[n].storage;
            let log = &storage.log;
            for (i, e) in log.iter().enumerate() {
                let prev = if i == 0 { storage.log_start_term } else { log[i - 1].term };
                let where_ = || format!("durable log of n{}", n + 1);
                safety.check_entry(&where_, e.index, e.term, prev, e.log_type, &e.data)?;
            }
        }
        match check_kv(&self.history.ops) {
            CheckResult::Ok => Ok(()),
            CheckResult::Illegal { partition, details } => Err(violation(
                "linearizability",
                format!("the client history of key {partition} is not linearizable:\n{details}"),
            )),
            CheckResult::Unknown { reason } => {
                Err(violation("linearizability", format!("the checker could not decide: {reason}")))
            }
        }
    }

    fn report(&self) -> SimReport {
        let mut r = self.report.clone();
        r.ops_completed = self.history.completed;
        r.ops_unknown = self.history.unknown;
        r.reads = self.history.reads;
        r.writes = self.history.writes;
        r.retries = self.history.retries;
        r.leaders_elected = self.safety.leaders_elected;
        r.max_term = self.safety.max_term;
        r.messages_sent = self.net.sent;
        r.messages_dropped = self.net.dropped;
        r.messages_duplicated = self.net.duplicated;
        r.committed = self.safety.committed_len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_replays_exactly_from_its_seed() {
        let cfg = SimConfig { ticks: 120, ..SimConfig::default() };
        let a = run(3, &cfg).unwrap_or_else(|f| panic!("{f}"));
        let b = run(3, &cfg).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(a, b);
        assert!(a.ops_completed > 0, "{a:?}");
    }

    #[test]
    fn a_few_seeds_pass() {
        for seed in 0..20 {
            let report = run(seed, &SimConfig::default()).unwrap_or_else(|f| panic!("{f}"));
            assert!(report.leaders_elected >= 1);
        }
    }
}
