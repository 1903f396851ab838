//! [`Raft`]: the cheap-to-clone handle a service holds. Every method sends a
//! request to the node's main task and awaits the answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::config::ReloadableConfig;
use crate::core::Core;
use crate::error::{Error, Result, StorageError};
use crate::fsm::Fsm;
use crate::metrics::Metrics;
use crate::observer::{Observer, ObserverId, Observers};
use crate::read_policy::ReadPolicy;
use crate::runtime::follower_reads::{FollowerReadContext, FollowerReads};
use crate::runtime::lease::PublishedLease;
use crate::runtime::node::NodeTask;
use crate::runtime::reads::{bump, ReadCounts, ReadGate};
use crate::runtime::snapshot::SnapshotHandle;
use crate::runtime::{
    apply, node, snapshot, startup, writer, Applied, MembershipChange, Request, RestoreRequest, Waiter,
};
use crate::snapshot::{SnapshotReader, SnapshotStore};
use crate::storage::{LogStore, StableStore};
use crate::transport::Transport;
use crate::types::{
    Configuration, LogType, RaftState, ServerAddress, ServerId, SnapshotMeta, SnapshotPosition,
};

/// How much longer than its timeout a membership change waits for the main
/// task's own answer at the deadline (which says what happened, e.g.
/// [`Error::CatchUpTimeout`]) before answering [`Error::Timeout`] itself.
const CHANGE_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// State shared between the handle and the runtime tasks.
pub(crate) struct Shared {
    state: Mutex<(RaftState, Option<(ServerId, ServerAddress)>)>,
    pub(crate) observers: Observers,
    /// The running configuration (reloadable parts may change).
    config: Mutex<Config>,
    pub(crate) leader_tx: watch::Sender<bool>,
    pub(crate) metrics_tx: watch::Sender<Metrics>,
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) applied_tx: watch::Sender<u64>,
    pub(crate) last_index: AtomicU64,
    /// The batch of reads open to new readers.
    pub(crate) reads: ReadGate,
    /// The batch of lease reads open to new readers.
    pub(crate) lease_reads: ReadGate,
    /// Read counters (see [`Metrics::reads`]).
    pub(crate) read_counts: ReadCounts,
    /// The leader's lease as the main task last published it: lease reads
    /// answered without the main task (see `runtime::lease`).
    pub(crate) lease: PublishedLease,
    /// The cluster this node belongs to, once known (see
    /// [`Raft::cluster_id`]); written by the main task.
    pub(crate) cluster_id: Mutex<Option<crate::types::ClusterId>>,
    /// The log's first index (see [`Raft::first_index`]).
    pub(crate) first_index: AtomicU64,
}

impl Shared {
    pub(crate) fn set_state(&self, state: RaftState, leader: Option<(ServerId, ServerAddress)>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (state, leader);
    }

    pub(crate) fn get_state(&self) -> (RaftState, Option<(ServerId, ServerAddress)>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_cluster_id(&self, id: Option<crate::types::ClusterId>) {
        *self.cluster_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    pub(crate) fn get_cluster_id(&self) -> Option<crate::types::ClusterId> {
        self.cluster_id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Inner<R> {
    tx: mpsc::Sender<Request<R>>,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The largest command one message of the transport can carry (`None`:
    /// no limit); larger ones are refused by [`Raft::apply`].
    max_command: Option<usize>,
    /// Asks the leader for read indexes (follower reads).
    follower_reads: FollowerReadContext,
}

/// A Raft node. Create it with [`Raft::new`]; clone the handle freely.
///
/// ```no_run
/// # use raft::*;
/// # async fn demo<F: Fsm>(raft: Raft<F>) -> Result<()> {
/// let applied = raft.apply(&b"set x 1"[..], std::time::Duration::from_secs(1)).await?;
/// tracing::info!(index = applied.index, "committed");
/// raft.linearizable_read().await?; // now read the local FSM
/// # Ok(()) }
/// ```
pub struct Raft<F: Fsm> {
    inner: Arc<Inner<F::Response>>,
}

impl<F: Fsm> Clone for Raft<F> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<F: Fsm> std::fmt::Debug for Raft<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (state, leader) = self.inner.shared.get_state();
        f.debug_struct("Raft").field("state", &state).field("leader", &leader).finish()
    }
}

/// The index the log store is compacted through, from what it actually
/// holds: one before its first entry, or — if it holds none — the index of
/// the snapshot the log continues from.
async fn compacted_through(logs: &dyn LogStore, snapshot_index: u64) -> Result<u64> {
    if logs.last_index().await? == 0 {
        return Ok(snapshot_index);
    }
    Ok(logs.first_index().await?.saturating_sub(1))
}

/// How long a follower read may take, from asking the leader to the local
/// state machine applying the read point: ten election (or heartbeat)
/// timeouts, at least one second.
pub(crate) fn follower_read_timeout(config: &Config) -> Duration {
    (config.election_timeout.max(config.heartbeat_timeout) * 10).max(Duration::from_secs(1))
}

/// A seed for the core's timeout randomization, derived from the node id so
/// runs under a paused clock are reproducible.
pub(crate) fn seed_for(id: &ServerId) -> u64 {
    id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl<F: Fsm> Raft<F> {
    /// Starts a node: restores the newest snapshot (unless
    /// `no_snapshot_restore_on_start`), loads the log and hard state, and
    /// spawns the runtime tasks. A node with no state waits to be
    /// bootstrapped or added to a cluster.
    pub async fn new(
        config: Config,
        mut fsm: F,
        logs: impl LogStore,
        stable: impl StableStore,
        snaps: impl SnapshotStore,
        transport: impl Transport,
    ) -> Result<Self> {
        config.validate()?;
        let logs: Arc<dyn LogStore> = Arc::new(logs);
        let stable: Arc<dyn StableStore> = Arc::new(stable);
        let snaps: Arc<dyn SnapshotStore> = Arc::new(snaps);
        let transport: Arc<dyn Transport> = Arc::new(transport);
        let cluster_id = crate::runtime::identity::check_on_start(&config, &*logs, &*stable).await?;
        let inbound = transport.take_consumer()?;
        let init = startup::load_initial_state(&config, &mut fsm, &*logs, &*stable, &*snaps).await?;
        let applied_start = init.applied;
        let snapshot_index_start = init.snapshot_index();
        let last_snapshot = (init.snapshot_index(), init.snapshot_term());
        let compacted_through = compacted_through(&*logs, init.snapshot_index()).await?;
        let max_message = transport.max_message_size();
        let max_command = max_message.map(|m| crate::transport::max_command_size(m, &config.local_id));
        if let (Some(message), Some(command)) = (max_message, max_command) {
            tracing::info!(
                max_message_bytes = message,
                max_command_bytes = command,
                "the transport limits messages; larger commands are refused"
            );
        }
        let core_config = config.core_config_for_transport(max_message);
        let core = Core::new(config.local_id.clone(), core_config, seed_for(&config.local_id), init)
            .map_err(|e| {
                let reason = e.to_string();
                Error::Storage(StorageError::Corrupt { path: "log store".into(), offset: 0, reason })
            })?;
        tracing::info!(
            id = %config.local_id,
            cluster = cluster_id.as_ref().map_or("(none yet)", |c| c.as_str()),
            term = core.term(),
            last_index = core.last_index(),
            "starting node"
        );

        let applied = Arc::new(AtomicU64::new(applied_start));
        let (applied_tx, _) = watch::channel(applied_start);
        let (leader_tx, _) = watch::channel(false);
        let mut metrics = Metrics::new(config.local_id.clone());
        metrics.applied_index = applied_start;
        metrics.term = core.term();
        metrics.cluster_id = cluster_id.clone();
        metrics.last_log_index = core.last_index();
        metrics.last_log_term = core.last_term();
        metrics.commit_index = core.commit_index();
        metrics.snapshot_index = compacted_through;
        metrics.last_snapshot_index = last_snapshot.0;
        metrics.last_snapshot_term = last_snapshot.1;
        metrics.first_index = compacted_through + 1;
        metrics.log_compacted_through = compacted_through;
        let (configuration, configuration_index) = core.configuration();
        metrics.configuration = configuration.clone();
        metrics.configuration_index = configuration_index;
        let (metrics_tx, _) = watch::channel(metrics);
        let shared = Arc::new(Shared {
            state: Mutex::new((RaftState::Follower, None)),
            observers: Observers::default(),
            config: Mutex::new(config.clone()),
            leader_tx,
            metrics_tx,
            applied: applied.clone(),
            applied_tx: applied_tx.clone(),
            last_index: AtomicU64::new(core.last_index()),
            reads: ReadGate::default(),
            lease_reads: ReadGate::default(),
            read_counts: ReadCounts::default(),
            lease: PublishedLease::new(tokio::time::Instant::now()),
            cluster_id: Mutex::new(cluster_id.clone()),
            first_index: AtomicU64::new(compacted_through + 1),
        });

        let (apply_failures, fsm_failures) = mpsc::unbounded_channel();
        let writer = writer::LogWriter::new(
            logs.clone(),
            stable,
            crate::telemetry::WriterTelemetry::new(&config.local_id),
        );
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let (position_conf, position_conf_index) = core.committed_configuration();
        let position = SnapshotPosition {
            index: applied_start,
            term: core.term_at(applied_start).unwrap_or(0),
            configuration: position_conf.clone(),
            configuration_index: position_conf_index,
        };
        let apply_task = crate::telemetry::polls::spawn(
            crate::telemetry::polls::TaskKind::Apply,
            apply::run(
                apply::ApplyTask {
                    fsm,
                    batch_apply: config.batch_apply,
                    snaps: snaps.clone(),
                    position,
                    applied: applied.clone(),
                    applied_tx,
                    failures: apply_failures,
                    logs: logs.clone(),
                    telemetry: crate::telemetry::ApplyTelemetry::new(&config.local_id),
                },
                apply_rx,
            ),
        );
        let (snapshot_cmds, snapshot_cmds_rx) = mpsc::unbounded_channel();
        let (snapshot_events_tx, snapshot_events) = mpsc::unbounded_channel();
        let snapshot_task = crate::telemetry::polls::spawn(
            crate::telemetry::polls::TaskKind::Snapshot,
            snapshot::run(
                snapshot::SnapshotTask {
                    snaps: snaps.clone(),
                    apply_tx: apply_tx.clone(),
                    applied: applied.clone(),
                    last_snapshot: core.snapshot_index().max(snapshot_index_start),
                    interval: config.snapshot_interval,
                    threshold: config.snapshot_threshold,
                    log_limit: config.snapshot_log_limit,
                    rng: crate::Rng::new(seed_for(&config.local_id)),
                    events: snapshot_events_tx,
                    telemetry: crate::telemetry::SnapshotTelemetry::new(&config.local_id),
                },
                snapshot_cmds_rx,
            ),
        );
        let (peer_events_tx, peer_events) = mpsc::unbounded_channel();
        let (tx, requests) = mpsc::channel(config.max_queued_requests);
        let follower_reads = FollowerReadContext {
            local_id: config.local_id.clone(),
            shared: shared.clone(),
            transport: Arc::downgrade(&transport),
            reads: Arc::new(FollowerReads::default()),
            timeout: follower_read_timeout(&config),
        };
        let task = NodeTask {
            core,
            config,
            transport,
            shared: shared.clone(),
            requests,
            inbound: Some(inbound),
            writer,
            fsm_failures,
            apply_tx,
            apply_task,
            snaps,
            snapshot_cmds,
            snapshot_events,
            snapshot_task,
            peer_events_tx,
            peer_events,
            cluster_id,
            compacted_through,
            last_snapshot,
            logs,
        };
        let span = tracing::info_span!("raft", id = %task.config.local_id);
        let handle = crate::telemetry::polls::spawn(
            crate::telemetry::polls::TaskKind::Main,
            tracing::Instrument::instrument(node::run(task), span),
        );
        let inner = Inner { tx, shared, task: Mutex::new(Some(handle)), max_command, follower_reads };
        Ok(Self { inner: Arc::new(inner) })
    }

    async fn enqueue(&self, req: Request<F::Response>, timeout: Duration) -> Result<()> {
        if timeout.is_zero() {
            return self.inner.tx.send(req).await.map_err(|_| Error::Shutdown);
        }
        match tokio::time::timeout(timeout, self.inner.tx.send(req)).await {
            Err(_) => Err(Error::EnqueueTimeout),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request<F::Response>,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(make(tx), Duration::ZERO).await?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// What is left of `timeout` since `start` (zero stays "no limit").
    fn remaining(timeout: Duration, start: tokio::time::Instant) -> Duration {
        if timeout.is_zero() {
            timeout
        } else {
            timeout.saturating_sub(start.elapsed()).max(Duration::from_nanos(1))
        }
    }

    /// Enqueues a write whose deadline is `deadline` (`None`: no limit) and
    /// awaits its answer on `rx`: [`Error::EnqueueTimeout`] if the queue
    /// stayed full until the deadline; past it, the main task answers
    /// [`Error::Timeout`] if the entry is not committed yet.
    ///
    /// The hot path of `apply`: no timer at all when the queue has room
    /// (the main task keeps one timer for every caller's deadline), and no
    /// wait on the queue's semaphore.
    async fn submit<T>(
        &self,
        req: Request<F::Response>,
        rx: oneshot::Receiver<Result<T>>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<T> {
        match self.inner.tx.try_send(req) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::Shutdown),
            Err(mpsc::error::TrySendError::Full(req)) => match deadline {
                None => self.inner.tx.send(req).await.map_err(|_| Error::Shutdown)?,
                Some(at) => match tokio::time::timeout_at(at, self.inner.tx.send(req)).await {
                    Err(_) => return Err(Error::EnqueueTimeout),
                    Ok(sent) => sent.map_err(|_| Error::Shutdown)?,
                },
            },
        }
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// The deadline `timeout` from now (zero: none).
    fn deadline(timeout: Duration) -> Option<tokio::time::Instant> {
        if timeout.is_zero() {
            None
        } else {
            Some(tokio::time::Instant::now() + timeout)
        }
    }

    async fn await_with_timeout<T>(rx: oneshot::Receiver<Result<T>>, timeout: Duration) -> Result<T> {
        if timeout.is_zero() {
            return rx.await.map_err(|_| Error::Shutdown)?;
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(r)) => r,
        }
    }

    /// Writes the first configuration on a node with no state (HashiCorp's
    /// `BootstrapCluster`). Returns [`Error::CantBootstrap`] if it has state.
    pub async fn bootstrap_cluster(&self, configuration: Configuration) -> Result<()> {
        self.request(|tx| Request::Bootstrap { configuration, tx }).await
    }

    /// Replicates a command and returns what the FSM answered once it is
    /// committed and applied on this (leader) node.
    ///
    /// `timeout` (zero: no limit) bounds the wait for room in the request
    /// queue ([`Error::EnqueueTimeout`]) and for the commit
    /// ([`Error::Timeout`]); a command committed in time is answered once
    /// the FSM has applied it, however long the FSM takes. On
    /// [`Error::Timeout`] or [`Error::LeadershipLost`] the command may
    /// still be applied later.
    ///
    /// Flow control: when the leader already holds
    /// [`Config::max_uncommitted_bytes`] of uncommitted entries (followers
    /// are slow or unreachable), the command waits, in submission order
    /// behind earlier waiting writes, until commits make room; if none is
    /// made before `timeout` it fails with [`Error::EnqueueTimeout`] and is
    /// certainly not in the log. [`Metrics::writes_waiting_for_room`]
    /// counts the writes waiting so.
    ///
    /// A command larger than one message of the transport can carry
    /// ([`Raft::max_command_size`]) is refused at once with
    /// [`Error::CommandTooLarge`]: it could never be replicated.
    pub async fn apply(&self, cmd: impl Into<Bytes>, timeout: Duration) -> Result<Applied<F::Response>> {
        let data = cmd.into();
        self.check_command_size(data.len())?;
        let deadline = Self::deadline(timeout);
        let (tx, rx) = oneshot::channel();
        let req = Request::Apply { log_type: LogType::Command, data, waiter: Waiter::Apply(tx), deadline };
        self.submit(req, rx, deadline).await
    }

    /// The largest command [`Raft::apply`] accepts, in bytes: what fits in
    /// one message of the transport after the framing margin and the
    /// entry's own overhead (see
    /// [`Transport::max_message_size`](crate::Transport::max_message_size)).
    /// `None` when the transport has no limit. With the gRPC transport's
    /// default 64 MiB messages this is a little under 64 MiB.
    pub fn max_command_size(&self) -> Option<usize> {
        self.inner.max_command
    }

    /// Refuses a command that can never be replicated.
    fn check_command_size(&self, size: usize) -> Result<()> {
        match self.inner.max_command {
            Some(max) if size > max => {
                tracing::debug!(size, max, "command refused: larger than one message of the transport");
                Err(Error::CommandTooLarge { size, max })
            }
            _ => Ok(()),
        }
    }

    /// Commits a barrier entry and waits until it and everything before it
    /// is applied. Returns the barrier's index. `timeout` works as in
    /// [`Raft::apply`].
    pub async fn barrier(&self, timeout: Duration) -> Result<u64> {
        let deadline = Self::deadline(timeout);
        let (tx, rx) = oneshot::channel();
        let req = Request::Apply {
            log_type: LogType::Barrier,
            data: Bytes::new(),
            waiter: Waiter::Index(tx),
            deadline,
        };
        self.submit(req, rx, deadline).await
    }

    /// Confirms with a quorum that this node is still the leader.
    pub async fn verify_leader(&self) -> Result<()> {
        self.read_index().await.map(|_| ())
    }

    /// Returns a linearizable read point without writing to the log
    /// (ReadIndex, Raft thesis §6.4): once this node's applied index reaches
    /// it, reading the local FSM is linearizable. See
    /// [`Raft::linearizable_read`], which also waits for that.
    ///
    /// Concurrent calls share one quorum round when they arrive while the
    /// previous round's request is still queued: each still gets a round
    /// that started after it was called.
    pub async fn read_index(&self) -> Result<u64> {
        bump(&self.inner.shared.read_counts.read_index);
        self.leader_read(false).await
    }

    /// A read point from this node as the leader: a ReadIndex round, or
    /// (`lease`) its lease while it holds. Concurrent calls share one
    /// request to the main task.
    async fn leader_read(&self, lease: bool) -> Result<u64> {
        let gate = if lease { &self.inner.shared.lease_reads } else { &self.inner.shared.reads };
        let (batch, ticket) = gate.join();
        if let Some(ticket) = ticket {
            let req = if lease { Request::LeaseRead { ticket } } else { Request::ReadIndex { ticket } };
            match self.inner.tx.try_send(req) {
                // Closed: the request and its ticket are dropped, which
                // fails the batch with `Shutdown`.
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(req)) => {
                    // Others may join this batch: its request must reach the
                    // queue even if this caller gives up waiting.
                    let tx = self.inner.tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(req).await;
                    });
                }
            }
        }
        batch.outcome().await
    }

    /// A read point for reading this node's FSM under `policy`, returned
    /// once the FSM has applied it: read the FSM after this returns.
    ///
    /// - [`ReadPolicy::Stale`]: the applied index now, with no check at all
    ///   (the FSM may be behind the cluster, or this node partitioned).
    /// - [`ReadPolicy::Lease`] on the leader: answered at once, by the
    ///   caller alone (no request to the node's task), while the leader's
    ///   lease holds (a quorum acknowledged a heartbeat round sent
    ///   less than the lease ago; see
    ///   [`Config::max_clock_drift`](crate::Config::max_clock_drift) for
    ///   the clock assumption), else through a ReadIndex round. Leases need
    ///   [`Config::check_quorum`](crate::Config::check_quorum): without it
    ///   every lease read takes a round.
    /// - [`ReadPolicy::ReadIndex`] on the leader: a quorum round that starts
    ///   after the call (shared by concurrent reads), as [`Raft::read_index`].
    /// - `Lease` or `ReadIndex` on a **follower** (or non-voter): a
    ///   linearizable follower read. The follower asks the leader for a read
    ///   index (the leader answers from its lease for `Lease`, else with a
    ///   round), waits until its own FSM has applied it, and serves locally,
    ///   taking that load off the leader. Concurrent follower reads share
    ///   one request, one in flight at a time. If the leader asked no longer
    ///   leads and names another, the request is retried once there.
    ///
    /// A new leader answers no linearizable read until it has committed an
    /// entry of its term, and the read point is then at least that entry's
    /// index: the call returns only once the FSM applied it (a new leader
    /// never serves state its FSM has not caught up with).
    ///
    /// Errors: [`Error::NotLeader`] when this node knows no leader (with
    /// the leader it knows of when the leader asked refused and no retry
    /// was possible); [`Error::LeadershipTransferInProgress`];
    /// [`Error::LeadershipLost`]; [`Error::Transport`] if the leader could
    /// not be reached (or the transport does not implement
    /// [`Transport::read_index`](crate::Transport::read_index));
    /// [`Error::Timeout`] if a follower read took longer than ten election
    /// timeouts (at least one second); [`Error::Shutdown`].
    /// [`Metrics::reads`] counts reads by kind.
    ///
    /// ```no_run
    /// # use raft::*;
    /// # async fn demo<F: Fsm>(raft: Raft<F>) -> Result<()> {
    /// // On any node: once this returns, the local FSM reflects every write
    /// // acknowledged before the call (cheapest on the leader while its
    /// // lease holds).
    /// let index = raft.read(ReadPolicy::Lease).await?;
    /// tracing::info!(index, "read the local FSM now");
    /// // A read that needs no guarantee at all:
    /// raft.read(ReadPolicy::Stale).await?;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, policy: ReadPolicy) -> Result<u64> {
        let counts = &self.inner.shared.read_counts;
        match policy {
            ReadPolicy::Stale => {
                bump(&counts.stale);
                return Ok(self.applied_index());
            }
            ReadPolicy::Lease => {
                bump(&counts.lease);
                if let Some(index) = self.inner.shared.lease.read_point(tokio::time::Instant::now()) {
                    // This node leads and its lease holds: answered here,
                    // without the main task (see `runtime::lease`).
                    bump(&counts.lease_served);
                    // A caller reading in a loop would otherwise never give
                    // its worker back while the lease holds.
                    tokio::task::coop::consume_budget().await;
                    self.wait_applied(index).await?;
                    return Ok(index);
                }
            }
            ReadPolicy::ReadIndex => bump(&counts.read_index),
        }
        let lease = policy == ReadPolicy::Lease;
        let index = match self.state() {
            RaftState::Shutdown => return Err(Error::Shutdown),
            RaftState::Leader => match self.leader_read(lease).await {
                // It stopped leading before the read started: read as a
                // follower of the leader it now knows.
                Err(Error::NotLeader { leader: Some(_) }) => return self.follower_read(lease).await,
                other => other?,
            },
            _ => return self.follower_read(lease).await,
        };
        self.wait_applied(index).await?;
        Ok(index)
    }

    /// A linearizable read on a follower: a read index from the leader,
    /// then the wait until this node's FSM applied it, bounded together.
    async fn follower_read(&self, lease: bool) -> Result<u64> {
        let ctx = &self.inner.follower_reads;
        let read = async {
            let index = ctx.read_index(lease).await?;
            self.wait_applied(index).await?;
            Ok(index)
        };
        let outcome = match tokio::time::timeout(ctx.timeout, read).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(
                    timeout = ?ctx.timeout,
                    "follower read timed out: the leader gave no read index in time, or this node's \
                     state machine did not catch up with it; retry, or read on the leader"
                );
                Err(Error::Timeout)
            }
        };
        let counts = &self.inner.shared.read_counts;
        match &outcome {
            Ok(_) => bump(&counts.follower_reads),
            Err(_) => bump(&counts.follower_read_failures),
        }
        outcome
    }

    /// Waits until reading this node's FSM is linearizable: confirms
    /// leadership with a quorum and waits until the FSM has applied
    /// everything committed before the call.
    pub async fn linearizable_read(&self) -> Result<()> {
        let index = self.read_index().await?;
        self.wait_applied(index).await
    }

    /// Waits until the FSM has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<()> {
        // Fast path (the usual case right after a read index): already
        // applied, no need to subscribe to the watch.
        if self.inner.shared.applied.load(Ordering::Acquire) >= index {
            return Ok(());
        }
        let mut rx = self.inner.shared.applied_tx.subscribe();
        loop {
            if *rx.borrow_and_update() >= index {
                return Ok(());
            }
            if self.state() == RaftState::Shutdown {
                return Err(Error::Shutdown);
            }
            rx.changed().await.map_err(|_| Error::Shutdown)?;
        }
    }

    /// Adds (or promotes) a voting member. `prev_index` guards against
    /// concurrent changes: 0 means any, else it must be the latest
    /// configuration's index ([`Error::StalePrevIndex`] otherwise). Returns
    /// the index of the new configuration.
    ///
    /// A new server is first added as a non-voter and promoted only once it
    /// has caught up: it acknowledged the configuration that added it, is
    /// within one pipeline window (`max_append_entries *
    /// max_inflight_append_entries` entries) of the leader's last index, and
    /// answered within the last election timeout. If that does not happen
    /// within `timeout`, the leader ends the promotion: the server **stays a
    /// non-voter** and the call fails with [`Error::CatchUpTimeout`]; later
    /// changes are not blocked (remove it, or retry once it is reachable).
    /// A server removed earlier that kept its data directory ignores every
    /// request: the call then fails at once with [`Error::ServerRemoved`]
    /// (wipe its data directory, restart it, retry).
    /// With [`Config::autopilot`](crate::Config::autopilot) on, it is
    /// promoted only once it has also been healthy without a break for
    /// [`AutopilotConfig::server_stabilization_time`](crate::AutopilotConfig::server_stabilization_time)
    /// (see [`crate::autopilot`]), within the same `timeout`.
    /// With a zero `timeout` the promotion waits until it succeeds or
    /// leadership changes, and other changes meanwhile fail with
    /// [`Error::ConfigurationChangeInProgress`] naming it.
    ///
    /// An id that is already a member at another address is refused with
    /// [`Error::ServerExists`] (use [`Raft::update_address`] to move a
    /// member on purpose); adding an existing voter at its own address is a
    /// no-op that returns the configuration's index.
    pub async fn add_voter(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> Result<u64> {
        self.change(MembershipChange::AddVoter(id, addr), prev_index, timeout).await
    }

    /// Adds a non-voting member that receives the log but does not vote.
    /// An id that is already a member at another address is refused with
    /// [`Error::ServerExists`]; adding an existing member at its own address
    /// (voter or not) changes nothing and returns the configuration's index.
    pub async fn add_nonvoter(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> Result<u64> {
        self.change(MembershipChange::AddNonvoter(id, addr), prev_index, timeout).await
    }

    /// Turns a voter into a non-voter.
    pub async fn demote_voter(&self, id: ServerId, prev_index: u64, timeout: Duration) -> Result<u64> {
        self.change(MembershipChange::DemoteVoter(id), prev_index, timeout).await
    }

    /// Removes a member. Removing the leader makes it step down once the
    /// change is committed.
    pub async fn remove_server(&self, id: ServerId, prev_index: u64, timeout: Duration) -> Result<u64> {
        self.change(MembershipChange::RemoveServer(id), prev_index, timeout).await
    }

    /// Moves an existing member to a new address, keeping its suffrage:
    /// the explicit way to replace a member's address (for example after
    /// the machine moved), which [`Raft::add_voter`] and
    /// [`Raft::add_nonvoter`] refuse with [`Error::ServerExists`]. The
    /// leader stops talking to the old address once the change is
    /// appended. [`Error::UnknownServer`] if `id` is not a member; moving a
    /// member to the address it has is a no-op that returns the
    /// configuration's index. `prev_index` and `timeout` work as in
    /// [`Raft::add_voter`].
    pub async fn update_address(
        &self,
        id: ServerId,
        addr: ServerAddress,
        prev_index: u64,
        timeout: Duration,
    ) -> Result<u64> {
        self.change(MembershipChange::UpdateAddress(id, addr), prev_index, timeout).await
    }

    async fn change(&self, change: MembershipChange, prev_index: u64, timeout: Duration) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        let start = tokio::time::Instant::now();
        let deadline = Self::deadline(timeout);
        self.enqueue(Request::ChangeMembership { change, prev_index, deadline, tx }, timeout).await?;
        // The main task answers at the deadline itself (a promotion that
        // has not caught up by then ends there, with an error saying so):
        // wait a little longer than the caller's timeout to hear that
        // answer rather than a bare `Timeout`.
        let left = Self::remaining(timeout, start);
        let bound = if timeout.is_zero() { timeout } else { left + CHANGE_ANSWER_GRACE };
        Self::await_with_timeout(rx, bound).await
    }

    /// Applies a set of membership changes atomically through a joint
    /// configuration (Raft paper §6, thesis §4.3): adds (voters or
    /// non-voters), removals, promotions and demotions, in one call.
    /// Returns the index of the resulting configuration (C_new) once it is
    /// committed. Unlike the single-server methods ([`Raft::add_voter`],
    /// [`Raft::remove_server`], ...), any number of voters may change at
    /// once, for example replacing two servers of three.
    ///
    /// How it proceeds on the leader:
    /// 1. Servers that become voters and are not members yet are first
    ///    added as **non-voters** (one configuration entry), and the leader
    ///    waits until each has caught up, by the same rule as
    ///    [`Raft::add_voter`]. If they have not within `timeout`, the call
    ///    fails with [`Error::CatchUpTimeout`]: they **stay non-voters** and
    ///    nothing else changed (remove them, or retry); at once with
    ///    [`Error::ServerRemoved`] if one of them was removed earlier and
    ///    kept its data directory.
    /// 2. The leader appends the joint configuration C_old,new. While it is
    ///    the latest configuration every decision (commit, election,
    ///    pre-vote, ReadIndex, leader lease) needs a majority of the old
    ///    voters **and** a majority of the new ones; servers show the joint
    ///    suffrages ([`Suffrage::IncomingVoter`](crate::Suffrage::IncomingVoter),
    ///    [`Suffrage::DemotingVoter`](crate::Suffrage::DemotingVoter),
    ///    [`Suffrage::LeavingVoter`](crate::Suffrage::LeavingVoter)).
    /// 3. Once the joint entry commits, the leader appends C_new by itself.
    ///    A leader that is not a voter of C_new hands leadership to one that
    ///    is (TimeoutNow) once C_new commits, then steps down (or is
    ///    removed).
    ///
    /// When only non-voters or addresses change, C_new is appended
    /// directly. A set that changes nothing returns the current
    /// configuration's index.
    ///
    /// `prev_index` works as in [`Raft::add_voter`] (0: any, else it must
    /// be the latest configuration's index, [`Error::StalePrevIndex`]
    /// otherwise). `timeout` (zero: no limit) bounds the whole call.
    ///
    /// Errors: [`Error::NotLeader`] naming the leader; [`Error::UnknownServer`]
    /// for a removal, promotion or demotion of a server that is not a
    /// member; [`Error::ServerExists`] for an add of an id that is a member
    /// at another address; [`Error::ConfigurationChangeInProgress`] while
    /// another change (joint or single-server) is under way;
    /// [`Error::MembershipChangeRefused`] for the other rules
    /// ([`ConfChangeError`](crate::ConfChangeError): no change given, one
    /// server named twice, no voter left). [`Error::LeadershipLost`]
    /// and [`Error::Timeout`] leave the outcome unknown: a leader that
    /// holds the joint entry completes the change (also after a restart),
    /// so read the configuration again ([`Raft::get_configuration`]).
    ///
    /// ```no_run
    /// # use raft::*;
    /// # async fn demo<F: Fsm>(raft: Raft<F>) -> Result<()> {
    /// // Replace n2 and n3 by n4 and n5 in one step.
    /// let index = raft
    ///     .change_membership(
    ///         [
    ///             ConfChange::AddVoter("n4".into(), "10.0.0.4:7000".into()),
    ///             ConfChange::AddVoter("n5".into(), "10.0.0.5:7000".into()),
    ///             ConfChange::Remove("n2".into()),
    ///             ConfChange::Remove("n3".into()),
    ///         ],
    ///         0,
    ///         std::time::Duration::from_secs(30),
    ///     )
    ///     .await?;
    /// tracing::info!(index, "n4 and n5 replaced n2 and n3");
    /// # Ok(()) }
    /// ```
    pub async fn change_membership(
        &self,
        changes: impl IntoIterator<Item = crate::ConfChange>,
        prev_index: u64,
        timeout: Duration,
    ) -> Result<u64> {
        let changes: Vec<crate::ConfChange> = changes.into_iter().collect();
        let (tx, rx) = oneshot::channel();
        let start = tokio::time::Instant::now();
        let deadline = Self::deadline(timeout);
        self.enqueue(Request::ChangeMembershipJoint { changes, prev_index, deadline, tx }, timeout).await?;
        // As in `change`: the main task answers at the deadline itself.
        let left = Self::remaining(timeout, start);
        let bound = if timeout.is_zero() { timeout } else { left + CHANGE_ANSWER_GRACE };
        Self::await_with_timeout(rx, bound).await
    }

    /// The latest configuration and the index of the entry that carried it.
    pub async fn get_configuration(&self) -> Result<(Configuration, u64)> {
        self.request(|tx| Request::GetConfiguration { tx }).await
    }

    /// Hands leadership to the most up-to-date follower. Returns once this
    /// node has stepped down: [`Raft::state`] no longer says
    /// [`RaftState::Leader`] when it resolves.
    pub async fn leadership_transfer(&self) -> Result<()> {
        self.request(|tx| Request::TransferLeadership { target: None, tx }).await
    }

    /// Hands leadership to a specific server. [`Error::UnknownServer`] if
    /// it is not in the configuration, [`Error::NotAVoter`] if it is a
    /// non-voter. Returns once this node has stepped down, like
    /// [`Raft::leadership_transfer`].
    pub async fn leadership_transfer_to_server(&self, id: ServerId, _addr: ServerAddress) -> Result<()> {
        self.request(|tx| Request::TransferLeadership { target: Some(id), tx }).await
    }

    /// Takes a snapshot now (regardless of `snapshot_threshold`) and
    /// compacts the log behind it, keeping `trailing_logs` entries. Returns
    /// a handle to open it once the compaction is done: [`Raft::first_index`]
    /// then tells where the log starts. If nothing was applied since the
    /// last snapshot, returns that snapshot.
    pub async fn snapshot(&self) -> Result<SnapshotHandle> {
        self.request(|tx| Request::Snapshot { tx }).await
    }

    /// Registers an observer; see [`crate::observer`].
    pub fn register_observer(&self, observer: Observer) -> ObserverId {
        self.inner.shared.observers.register(observer)
    }

    /// Removes an observer. Returns false if it was not registered.
    pub fn deregister_observer(&self, id: ObserverId) -> bool {
        self.inner.shared.observers.deregister(id)
    }

    /// Changes the reloadable settings of a running node (timeouts, snapshot
    /// policy, memory and flow-control budgets). The whole resulting
    /// configuration is validated first.
    pub fn reload_config(&self, rc: ReloadableConfig) -> Result<()> {
        let mut current = self.inner.shared.config.lock().unwrap_or_else(|e| e.into_inner());
        let next = rc.apply_to(&current);
        next.validate()?;
        self.inner.tx.try_send(Request::Reload { config: Box::new(next.clone()) }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::EnqueueTimeout,
            mpsc::error::TrySendError::Closed(_) => Error::Shutdown,
        })?;
        *current = next;
        Ok(())
    }

    /// The reloadable settings currently in force.
    pub fn reloadable_config(&self) -> ReloadableConfig {
        ReloadableConfig::from_config(&self.inner.shared.config.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// (Leader) replaces the whole cluster's state with a snapshot, e.g. to
    /// restore a backup (HashiCorp's `Restore`). The snapshot is stored
    /// locally at an index past the end of the log, the FSM is restored from
    /// it, every follower installs it, and the current configuration is
    /// kept. Uncommitted writes in flight fail with
    /// [`Error::LeadershipLost`]. Returns once a quorum holds the restored
    /// state and it is applied here; `timeout` bounds the call (zero: none).
    ///
    /// **Use it for disaster recovery into a fresh or quiet cluster, not in
    /// normal operation.** Until a quorum has installed the snapshot the
    /// leader is ahead of everyone else: if it fails in that window, another
    /// node can be elected without the restored state and the cluster's
    /// history diverges from the failed leader's. Check the outcome (for
    /// example with `get_configuration` and a read on the new leader) and
    /// restore again if the call failed.
    pub async fn restore(&self, meta: SnapshotMeta, reader: SnapshotReader, timeout: Duration) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let start = tokio::time::Instant::now();
        self.enqueue(Request::Restore(Box::new(RestoreRequest { meta, reader, tx })), timeout).await?;
        let left = Self::remaining(timeout, start);
        Self::await_with_timeout(rx, left).await.map(|_| ())
    }

    /// The cluster this node belongs to: stored in its stable store, carried
    /// by every RPC it sends, and required of every RPC it accepts. `None`
    /// until the node is bootstrapped or first contacted by a leader (unless
    /// [`Config::cluster_id`] names it).
    pub fn cluster_id(&self) -> Option<crate::types::ClusterId> {
        self.inner.shared.get_cluster_id()
    }

    /// The node's current role.
    pub fn state(&self) -> RaftState {
        self.inner.shared.get_state().0
    }

    /// The current leader's id and address, if known (the same order as
    /// everywhere else, e.g. [`Error::NotLeader`] and
    /// [`Metrics::current_leader`]).
    ///
    /// API change: this used to return `(address, id)`.
    pub fn leader(&self) -> Option<(ServerId, ServerAddress)> {
        self.inner.shared.get_state().1
    }

    /// A watch that is `true` while this node is the leader.
    pub fn leader_watch(&self) -> watch::Receiver<bool> {
        self.inner.shared.leader_tx.subscribe()
    }

    /// A watch of the node's [`Metrics`].
    pub fn metrics(&self) -> watch::Receiver<Metrics> {
        self.inner.shared.metrics_tx.subscribe()
    }

    /// Metrics as string pairs (HashiCorp's `Stats`).
    pub fn stats(&self) -> BTreeMap<String, String> {
        let mut stats = self.inner.shared.metrics_tx.borrow().to_stats();
        stats.insert("applied_index".into(), self.applied_index().to_string());
        stats
    }

    /// Last index in this node's log.
    pub fn last_index(&self) -> u64 {
        self.inner.shared.last_index.load(Ordering::Acquire)
    }

    /// Index of the first entry of this node's log: every entry before it
    /// was deleted from the log store behind a snapshot (or never existed).
    /// Equals the log store's `first_index` while the store holds entries;
    /// on a new node it is 1, and on a node whose whole log a snapshot
    /// replaced it is the snapshot's index + 1. It advances once a
    /// compaction has actually deleted the entries.
    pub fn first_index(&self) -> u64 {
        self.inner.shared.first_index.load(Ordering::Acquire)
    }

    /// Index of the last entry applied to the FSM.
    pub fn applied_index(&self) -> u64 {
        self.inner.shared.applied.load(Ordering::Acquire)
    }

    /// Stops the node. Pending operations fail with [`Error::Shutdown`];
    /// once this returns the stores are no longer used. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Shutdown { tx }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.inner.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        Ok(())
    }
}
