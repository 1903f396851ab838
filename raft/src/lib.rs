//! An async, batteries-included Raft consensus framework.
//!
//! A service implements one trait, [`Fsm`], picks a log store, a stable
//! store, a snapshot store and a [`Transport`], and calls [`Raft::new`]. It
//! gets a replicated state machine that survives crashes, partitions and
//! membership changes, with a future for every operation.
//!
//! # Getting started
//! A one-node cluster with an in-memory log ([`raft-store-mem`]) and the
//! in-memory transport: implement [`Fsm`], start the node with
//! [`Raft::new`], bootstrap it, wait for it to lead, write with
//! [`Raft::apply`] and read linearizably with [`Raft::read`]. A real
//! service swaps in `raft-store-file` and `raft-transport-grpc`, and
//! bootstraps every server with the same [`Configuration`] (see the
//! `examples` crate's `kv` service).
//!
//! [`raft-store-mem`]: https://docs.rs/raft-store-mem
//!
//! ```
//! use std::time::Duration;
//!
//! use raft::transport::inmem::InmemNetwork;
//! use raft::{async_trait, BoxError, Config, Configuration, Fsm, FsmSnapshot, Log};
//! use raft::{Raft, ReadPolicy, Server, SnapshotReader, SnapshotWriter};
//! use raft_store_mem::{InmemSnapshotStore, InmemStore};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! /// The replicated state: a sum of the commands' first bytes.
//! #[derive(Clone, Default)]
//! struct Sum(std::sync::Arc<std::sync::atomic::AtomicU64>);
//!
//! #[async_trait]
//! impl Fsm for Sum {
//!     type Response = u64;
//!     async fn apply(&mut self, log: &Log) -> u64 {
//!         let add = u64::from(log.data.first().copied().unwrap_or(0));
//!         self.0.fetch_add(add, std::sync::atomic::Ordering::SeqCst) + add
//!     }
//!     async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
//!         Ok(Box::new(SumSnapshot(self.0.load(std::sync::atomic::Ordering::SeqCst))))
//!     }
//!     async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
//!         self.0.store(snapshot.read_u64().await?, std::sync::atomic::Ordering::SeqCst);
//!         Ok(())
//!     }
//! }
//!
//! struct SumSnapshot(u64);
//!
//! #[async_trait]
//! impl FsmSnapshot for SumSnapshot {
//!     async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
//!         sink.write_u64(self.0).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let net = InmemNetwork::new();
//! let (store, sum) = (InmemStore::new(), Sum::default());
//! let raft = Raft::new(
//!     Config::new("n1"),
//!     sum.clone(),
//!     store.clone(),          // the log store
//!     store,                  // the stable store (term, vote)
//!     InmemSnapshotStore::new(),
//!     net.transport("n1"),
//! )
//! .await?;
//! raft.bootstrap_cluster(Configuration::new(vec![Server::voter("n1", "n1")])).await?;
//!
//! // Wait (bounded) until the node has elected itself.
//! let mut leading = raft.leader_watch();
//! tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|is_leader| *is_leader)).await??;
//!
//! let applied = raft.apply(vec![7u8], Duration::from_secs(5)).await?;
//! assert_eq!(applied.response, 7);
//! // Linearizable: a quorum confirms the leadership, then the FSM catches up.
//! let read_point = raft.read(ReadPolicy::ReadIndex).await?;
//! assert!(read_point >= applied.index);
//! raft.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`architecture`]: how a node works inside (its tasks and channels, and
//!   the path of a write, a read and a snapshot through them).
//! - [`types`]: ids, addresses, configurations, log entries, states.
//! - [`message`]: the RPCs nodes exchange.
//! - [`config`]: [`Config`] and its validation.
//! - [`error`]: [`Error`], [`StorageError`], [`TransportError`].
//! - [`fsm`]: the [`Fsm`] and [`FsmSnapshot`] traits a service implements.
//! - [`storage`]: the [`LogStore`] and [`StableStore`] traits.
//! - [`log_cache`]: [`LogCache`], a recent-entries cache around any log store.
//! - [`snapshot`]: the [`SnapshotStore`] trait and snapshot byte streams.
//! - [`transport`]: the [`Transport`] trait and the in-memory network.
//! - [`metrics`]: [`Metrics`] published by every node.
//! - [`observer`]: [`Observer`]s notified of leader, state and peer changes.
//! - [`telemetry`]: the series every node emits through the `metrics`
//!   crate facade (a table of names, types, labels and meanings) and the
//!   `tracing` spans and events of the write path.
//! - `raft` (private): the [`Raft`] handle.
//! - [`codec`]: the one serializer used for anything written to disk.
//! - `core` (private): the pure, deterministic protocol state machine;
//!   its seeded generator is public as [`Rng`], the one the whole
//!   workspace uses (runtime jitter, simulations, tests, benchmark).
//! - `runtime` (private): the tokio tasks that drive the core.
//! - `testing` (feature `testing`): store conformance suite, simulation
//!   harness and linearizability checker.
//!
//! # Design choices worth knowing
//! - The protocol core keeps the log since the last compaction in memory
//!   (entries are [`Bytes`], so copies are reference counts) and builds
//!   AppendEntries from it without reading the store. It holds what was
//!   written between two snapshots plus `trailing_logs`: a snapshot is
//!   taken every `snapshot_interval` (if `snapshot_threshold` entries were
//!   applied) and, beyond HashiCorp's policy, as soon as
//!   [`Config::snapshot_log_limit`] entries were (default 1,048,576), which
//!   bounds the log under a high write rate. With [`DiscardSnapshotStore`]
//!   the log is never compacted, because no stored snapshot could replace
//!   the compacted entries, so it grows with the log.
//! - [`Raft::apply`]'s `timeout` bounds the wait for room in the queue and
//!   for the commit; the node's main task enforces it with one timer for
//!   every pending write (no timer per call). A write committed in time is
//!   answered when the FSM has applied it, however long that takes.
//! - Concurrent [`Raft::read_index`] calls share ReadIndex rounds: reads
//!   that arrive while a round's request is still queued join it, and one
//!   quorum round is in flight at a time. Each read's round still starts
//!   after the read arrived.
//! - Heartbeats go down a peer's AppendEntries pipeline when it is idle
//!   (cheaper than a call of their own) and as separate calls otherwise,
//!   so they never wait behind bulk data.
//! - [`Config::batch_apply`] defaults to true (HashiCorp defaults to false):
//!   committed commands reach [`Fsm::apply_batch`] in batches.
//! - Every cluster has a [`ClusterId`], stored in each node's stable store
//!   and carried by every RPC; the runtime refuses RPCs of another cluster
//!   (on every transport). Unless [`Config::cluster_id`] names it, the id is
//!   derived from the bootstrap configuration ([`ClusterId::derive`]), so
//!   servers that all bootstrap with the same configuration agree without a
//!   shared random value (etcd derives its cluster id from the initial
//!   members the same way); a new node adopts the id of the first leader
//!   that contacts it, durably, before answering it. A node whose store
//!   predates ids adopts its leader's, and a leader without one derives it
//!   from its committed configuration. Requests without an id (older nodes)
//!   are accepted. The stable store also records the node id:
//!   [`Raft::new`] refuses a data directory of another node
//!   ([`Error::NodeIdMismatch`]) and a log whose stable store was lost.
//! - Runtime-level tests are reproducible under tokio's paused clock but not
//!   bit-exact: `tokio::select!` picks among ready events at random. The
//!   protocol core's simulation (feature `testing`) is fully deterministic.
//!
//! # Reads: a policy per call
//! [`Raft::read`] takes a [`ReadPolicy`]: `Stale` (the local state, no
//! check), `Lease` (on the leader, no round trip while its lease holds),
//! or `ReadIndex` (a quorum round that starts after the call); on a
//! follower, `Lease` and `ReadIndex` are linearizable follower reads (a
//! read index from the leader, then served locally once applied).
//! [`Raft::read_index`] and [`Raft::linearizable_read`] remain. Leases
//! assume clock *rates* differ by less than [`Config::max_clock_drift`] and
//! need check-quorum. From LeaseGuard (Davis et al., arXiv 2512.15659) we
//! took "the log is the lease" (every AppendEntries carries the read round,
//! so replication itself keeps the lease alive), the lease anchored at the
//! *send* time of the round a quorum acknowledged, and deferred commit
//! after failover, which here follows from the followers' stickiness (a new
//! leader cannot be elected before the old lease ran out). Not taken:
//! LeaseGuard's reads during a new leader's "limbo" period (they need
//! synchronized clocks and per-key knowledge of the state machine): a new
//! leader answers no read until its FSM applied the first entry of its
//! term. The full statement is on [`ReadPolicy::Lease`].
//!
//! # Membership changes: single-server and joint
//! Two ways to change the cluster, behind one handle:
//! - **Single-server changes** ([`Raft::add_voter`], [`Raft::add_nonvoter`],
//!   [`Raft::demote_voter`], [`Raft::remove_server`],
//!   [`Raft::update_address`]) keep HashiCorp's semantics: one server at a
//!   time (Raft thesis §4.1), each change taking effect as soon as it is
//!   appended, the next one refused until it commits. A new voter catches
//!   up as a non-voter first.
//! - **Joint changes** ([`Raft::change_membership`] with a set of
//!   [`ConfChange`]s) apply any number of adds, removals, promotions and
//!   demotions atomically (Raft paper §6, thesis §4.3), for example
//!   replacing a rack or a zone in one step. New voters are added as
//!   non-voters and caught up first; then the leader appends the joint
//!   configuration C_old,new, in which every decision (commit, election,
//!   pre-vote, ReadIndex, leader lease, check-quorum) needs a majority of
//!   the old voters *and* of the new ones, and leaves it for C_new by
//!   itself once the joint entry commits. A leader that is not a voter of
//!   C_new hands leadership to one that is. The joint state is the
//!   configuration itself ([`Suffrage::IncomingVoter`],
//!   [`Suffrage::DemotingVoter`], [`Suffrage::LeavingVoter`]), carried by
//!   log entries and snapshots, so a node restarted mid-change, or caught
//!   up by a snapshot, resumes it.
//!
//! Both kinds share one set of rules (the core's configuration-change
//! functions) and one change at a time: a change of either kind is
//! refused with [`Error::ConfigurationChangeInProgress`] while another is
//! under way. A refused joint change is a typed error:
//! [`Error::UnknownServer`], [`Error::ServerExists`],
//! [`Error::StalePrevIndex`], [`Error::NotLeader`] (naming the leader) or
//! [`Error::MembershipChangeRefused`] with the [`ConfChangeError`]. With
//! the gRPC transport, the admin method `ChangeMembership` and
//! `raftctl members change --add ID=ADDR --remove ID ...` make joint
//! changes over the network.
//!
//! # API changes: autopilot
//! - [`Config::autopilot`] ([`AutopilotConfig`], module [`autopilot`]) is
//!   new (default `None`: no change in behaviour); code that builds
//!   [`Config`] with a struct literal needs `..Config::default()`.
//! - [`PeerMetrics`] gained `healthy`, `healthy_for` and `lag` (struct
//!   literals name them); [`CatchUp::Stabilizing`] is a new variant
//!   (exhaustive matches on [`CatchUp`] need an arm); [`Raft::stats`] has
//!   `autopilot_healthy`, `autopilot_failure_tolerance`, `peer.<id>.healthy`
//!   and `peer.<id>.lag` on the leader.
//!
//! # API changes: joint consensus
//! - [`Raft::change_membership`], [`ConfChange`] (also named
//!   [`MembershipChange`]), [`ConfChangeError`] and [`CatchUp`] are new; [`Error::MembershipChangeRefused`] is a new
//!   variant (exhaustive matches on [`Error`] need an arm), and so are the
//!   three joint [`Suffrage`] variants (matches on [`Suffrage`] need arms;
//!   [`Suffrage::Voter`] and [`Suffrage::Nonvoter`] encode as before).
//! - `raft_transport_grpc::admin::AdminBackend` gained
//!   `change_membership`, with a default that refuses, so other backends
//!   still compile. `raftctl members` lists members as before;
//!   `raftctl members change` is new.
//!
//! # API changes: membership and the errors callers tell apart
//! - [`Raft::leader`] returns `(ServerId, ServerAddress)`, the order used
//!   everywhere else (it returned `(address, id)`).
//! - [`Error::ConfigurationChangeInProgress`] carries `{ pending }`, a
//!   description of the change in progress (it had no fields): match it
//!   with `Error::ConfigurationChangeInProgress { .. }`.
//! - A stale `prev_index` is [`Error::StalePrevIndex`] (was
//!   `InvalidConfig`); a leadership transfer to a non-voter is
//!   [`Error::NotAVoter`] (was `InvalidConfig`), to an id not in the
//!   configuration [`Error::UnknownServer`].
//! - [`Raft::add_voter`] promotes only a server that acknowledged the log
//!   and answered within the last election timeout; if that does not happen
//!   within its timeout it fails with [`Error::CatchUpTimeout`] and the
//!   server stays a non-voter (later changes are not blocked).
//! - Adding an id that is a member at another address is refused with
//!   [`Error::ServerExists`]; [`Raft::update_address`] moves a member.
//! - [`Raft::leadership_transfer`] resolves once [`Raft::state`] no longer
//!   says `Leader`.
//!
//! # API changes: lifecycle, limits and integrity
//! - [`RaftState::Removed`] is new (terminal): exhaustive matches on
//!   [`RaftState`] need an arm; calls on a removed node fail with
//!   [`Error::Removed`].
//! - The request messages gained `cluster_id` and the vote responses
//!   `removed` (both `#[serde(default)]`): code that builds them with struct
//!   literals names the new fields.
//! - [`Transport::max_message_size`] (default `None`) and
//!   [`SnapshotStore::delete`] (default:
//!   keep) have defaults, so existing implementations compile unchanged.
//! - [`Raft::apply`] refuses a command no message could carry with
//!   [`Error::CommandTooLarge`]; AppendEntries are cut by
//!   [`Config::max_append_entries_bytes`] as well as by entry count.
//! - A damaged snapshot given to [`Raft::restore`] (or received from a
//!   leader) fails as `Error::Storage(StorageError::Corrupt { .. })` (was
//!   `Error::Fsm`); a restore that fails after the snapshot was verified
//!   stops the node, with the reason in [`Metrics::fatal_error`].
//! - [`Metrics`] gained `last_snapshot_index`/`last_snapshot_term` (the
//!   newest snapshot), `first_index`/`log_compacted_through` (the
//!   compaction point), `cluster_id` and `fatal_error`;
//!   `stats()["last_snapshot_index"]` is now the newest snapshot
//!   (HashiCorp's meaning), and [`Raft::snapshot`] answers once the log is
//!   compacted behind it.
//!
//! # API changes: errors keep their causes, one random generator
//! - An error the user's FSM returns from [`Fsm::snapshot`],
//!   [`FsmSnapshot::persist`] or [`Fsm::restore`] comes back as the new
//!   [`Error::FsmFailed`] `{ operation, source }` ([`FsmOperation`] names
//!   the call), keeping the FSM's error whole: `source()` returns it and it
//!   downcasts to the FSM's own type. It was `Error::Fsm(String)`, its text
//!   only; `Error::Fsm(String)` remains for failures without an error value.
//! - A failure of the snapshot store under the FSM (its sink failing while
//!   the FSM persists, or its reader while the FSM restores) is
//!   `Error::Storage` (`StorageError::Io`, or `Corrupt` for damage), even
//!   when the FSM passed the error on; it was `Error::Fsm`. Flushing the
//!   sink after `persist` likewise fails as `Error::Storage`.
//! - [`Raft::snapshot`] before anything was applied fails with the new
//!   [`Error::NothingToSnapshot`] (was `InvalidConfig`); the gRPC admin
//!   service still answers it `FAILED_PRECONDITION`.
//! - Exhaustive matches on [`Error`] need arms for the two new variants.
//! - [`Rng`] is new: the seeded SplitMix64 generator the core, the runtime's
//!   jitter, the in-memory network, the simulations, the tests and the
//!   benchmark share (before, each had its own copy, several with other
//!   algorithms, so some test seeds now draw other sequences).
//! - `raft::testing::kv` (feature `testing`) is new and holds `KvInput`,
//!   `KvOutput` and their semantics (`KvInput::apply`, `KvChange`);
//!   `raft::testing::linearizability::{KvInput, KvOutput}` still name them.
//!
//! # API changes: the operator's toolkit
//! - The free functions [`bootstrap_cluster`] and [`recover_cluster`] no
//!   longer take a `&dyn Transport` (they never used it): drop that
//!   argument, e.g. `recover_cluster(&config, fsm, &logs, &stable, &snaps,
//!   configuration)`. The same names could not keep the old signature.
//! - [`stored_node_id`] is new: the node id a data directory records, for
//!   offline tools.
//! - With the gRPC transport, the admin service gained `Members` (per-member
//!   match index, lag, last contact, catching up, from the leader's
//!   [`Metrics`]), `DownloadSnapshot` and `RestoreSnapshot` (streams over
//!   [`Raft::snapshot`] and [`Raft::restore`]);
//!   `raft_transport_grpc::admin::AdminBackend` gained `metrics`,
//!   `latest_snapshot` and `restore`, with defaults, so other backends still
//!   compile. A cluster-id refusal names both ids plainly (it printed
//!   `Some("x")`). `raftctl` gained `members` progress columns,
//!   `status --watch`, `snapshot save|restore` and `recover`.
//!
//! # API changes: session 9
//! - [`Error::ServerRemoved`] is new (exhaustive matches on [`Error`] need
//!   an arm): [`Raft::add_voter`] or [`Raft::change_membership`] adding a
//!   server that was removed earlier and kept its data directory fails
//!   with it as soon as the server answers, instead of
//!   [`Error::CatchUpTimeout`] at the timeout. A removed node's refusal of
//!   a request now says it was removed (it said "request ignored by the
//!   receiver").
//! - A lease read on the leader ([`Raft::read`] with
//!   [`ReadPolicy::Lease`]) is answered by its caller without a request to
//!   the node's task while the lease holds (see the
//!   [`architecture`] page); what it returns and when it falls back to a
//!   quorum round are unchanged.
//! - [`recover_cluster`] falls back past a damaged newest snapshot the way
//!   a start does (it failed before).

pub mod architecture;
pub mod autopilot;
pub mod codec;
pub mod config;
mod core;
#[cfg(test)]
mod core_purity;
pub mod error;
pub mod fsm;
pub mod log_cache;
pub mod message;
pub mod metrics;
pub mod observer;
mod raft;
pub mod read_policy;
mod runtime;
pub mod snapshot;
pub mod storage;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
pub mod types;

pub use async_trait::async_trait;
pub use autopilot::AutopilotConfig;
pub use bytes::Bytes;
pub use config::{Config, ReloadableConfig};
pub use core::rng::Rng;
/// The change type of [`Raft::change_membership`] under the name the design
/// gives it: the same type as [`ConfChange`].
pub use core::ConfChange as MembershipChange;
pub use core::{CatchUp, ConfChange, ConfChangeError};
pub use error::{BoxError, Error, FsmOperation, Result, StorageError, TransportError};
pub use fsm::{Fsm, FsmSnapshot};
pub use log_cache::LogCache;
pub use metrics::{Metrics, PeerMetrics, ReadMetrics};
pub use observer::{Observation, Observer, ObserverId};
pub use raft::Raft;
pub use read_policy::{ReadPolicy, UnknownReadPolicy};
pub use runtime::snapshot::SnapshotHandle;
pub use runtime::startup::{bootstrap_cluster, has_existing_state, recover_cluster, stored_node_id};
pub use runtime::Applied;
pub use snapshot::{DiscardSnapshotStore, SnapshotReader, SnapshotSink, SnapshotStore, SnapshotWriter};
pub use storage::{LogStore, StableStore};
pub use transport::Transport;
pub use types::{
    ClusterId, Configuration, HardState, Log, LogEntryMeta, LogType, RaftState, Server, ServerAddress,
    ServerId, SnapshotMeta, SnapshotPosition, Suffrage,
};
