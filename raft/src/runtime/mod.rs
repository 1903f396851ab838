//! The tokio shell around the protocol core.
//!
//! # Layout
//! - `node`: the main task. Owns the [`Core`](crate::core::Core), feeds it
//!   client requests (batched), inbound RPCs, ticks and completions, and
//!   executes the work it returns.
//! - `writer`: the log writer, driven by the main task's own loop (no task
//!   of its own). Persists hard state and entries in FIFO order, merging
//!   queued jobs into one `store_logs` (group commit), then releases the
//!   messages that promised that durability.
//! - `peer`: one task per peer (`PeerTask`), sending RPCs and streaming
//!   snapshots; AppendEntries with entries go through an ordered pipeline,
//!   heartbeats and votes never queue behind them nor behind a snapshot;
//!   a failing peer is backed off, with one back-off for every kind of send.
//!
//! How a write, a read and a snapshot travel through these tasks:
//! [`crate::architecture`].
//! - `apply`: the FSM task. Applies committed entries in batches and
//!   resolves the callers' futures.
//! - `snapshot`: the snapshot task. Decides when to snapshot, persists FSM
//!   snapshots concurrently with applies, and triggers log compaction.
//! - `startup`: loading durable state, bootstrap and recovery helpers.
//! - `identity`: the node and cluster ids kept in the stable store.

pub(crate) mod apply;
pub(crate) mod follower_reads;
pub(crate) mod identity;
pub(crate) mod lease;
pub(crate) mod node;
pub(crate) mod peer;
pub(crate) mod reads;
pub(crate) mod snapshot;
pub(crate) mod startup;
pub(crate) mod verify;
pub(crate) mod writer;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::types::{Configuration, LogType, ServerAddress, ServerId};

/// Stable-store key of the encoded [`HardState`](crate::HardState).
pub(crate) const HARD_STATE_KEY: &[u8] = b"raft/hard_state";
/// Stable-store key recording that this server learned it was removed from
/// the cluster (a non-empty value): it restarts in the terminal removed
/// state. `recover_cluster` clears it.
pub(crate) const REMOVED_KEY: &[u8] = b"raft/removed";
/// Stable-store key of the highest index this node knows is committed (a
/// big-endian u64), written now and then, never ahead of the truth: a
/// restarted node applies its log up to it without waiting for a leader.
pub(crate) const COMMIT_KEY: &[u8] = b"raft/commit";

/// The outcome of a successful [`Raft::apply`](crate::Raft::apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<R> {
    /// Log index the command was committed at.
    pub index: u64,
    /// What the FSM returned.
    pub response: R,
}

/// Who is waiting for an entry to be applied.
pub(crate) enum Waiter<R> {
    Apply(oneshot::Sender<Result<Applied<R>, Error>>),
    Index(oneshot::Sender<Result<u64, Error>>),
}

impl<R> Waiter<R> {
    pub(crate) fn fail(self, err: Error) {
        match self {
            Waiter::Apply(tx) => {
                let _ = tx.send(Err(err));
            }
            Waiter::Index(tx) => {
                let _ = tx.send(Err(err));
            }
        }
    }
}

/// A membership change request.
#[derive(Debug, Clone)]
pub(crate) enum MembershipChange {
    AddVoter(ServerId, ServerAddress),
    AddNonvoter(ServerId, ServerAddress),
    DemoteVoter(ServerId),
    RemoveServer(ServerId),
    /// Moves an existing member to a new address, keeping its suffrage.
    UpdateAddress(ServerId, ServerAddress),
}

/// A user restore: the snapshot to install and who waits for it.
pub(crate) struct RestoreRequest {
    pub(crate) meta: crate::types::SnapshotMeta,
    pub(crate) reader: crate::snapshot::SnapshotReader,
    pub(crate) tx: oneshot::Sender<Result<u64, Error>>,
}

/// A request from the [`Raft`](crate::Raft) handle to the main task.
pub(crate) enum Request<R> {
    Apply {
        log_type: LogType,
        data: Bytes,
        waiter: Waiter<R>,
        /// When the caller stops waiting (the main task answers
        /// [`Error::Timeout`] then); `None`: no limit.
        deadline: Option<tokio::time::Instant>,
    },
    /// Start a ReadIndex round for a batch of reads.
    ReadIndex {
        ticket: reads::ReadTicket,
    },
    Bootstrap {
        configuration: Configuration,
        tx: oneshot::Sender<Result<(), Error>>,
    },
    GetConfiguration {
        tx: oneshot::Sender<Result<(Configuration, u64), Error>>,
    },
    ChangeMembership {
        change: MembershipChange,
        prev_index: u64,
        /// When the caller stops waiting: the main task answers then (a
        /// promotion ends with [`Error::CatchUpTimeout`], a change not yet
        /// committed with [`Error::Timeout`]); `None`: no limit.
        deadline: Option<tokio::time::Instant>,
        tx: oneshot::Sender<Result<u64, Error>>,
    },
    /// A joint change ([`Raft::change_membership`](crate::Raft::change_membership)):
    /// answered with the index of C_new once it is committed.
    ChangeMembershipJoint {
        changes: Vec<crate::core::ConfChange>,
        prev_index: u64,
        /// When the caller stops waiting (`None`: no limit).
        deadline: Option<tokio::time::Instant>,
        tx: oneshot::Sender<Result<u64, Error>>,
    },
    TransferLeadership {
        target: Option<ServerId>,
        tx: oneshot::Sender<Result<(), Error>>,
    },
    Snapshot {
        tx: oneshot::Sender<Result<snapshot::SnapshotHandle, Error>>,
    },
    // The rare, large requests are boxed so the hot ones (`Apply`,
    // `ReadIndex`) stay small to move through the queue.
    Reload {
        config: Box<crate::config::Config>,
    },
    Restore(Box<RestoreRequest>),
    Shutdown {
        tx: oneshot::Sender<()>,
    },
    /// Start a lease read for a batch of reads (answered at once while the
    /// leader's lease holds).
    LeaseRead {
        ticket: reads::ReadTicket,
    },
}
