//! Coalesced ReadIndex requests.
//!
//! Every [`Raft::read_index`](crate::Raft::read_index) call that arrives
//! while no request is waiting in the main task's queue opens a
//! [`ReadBatch`] and sends one request for it; calls arriving after that,
//! until the main task picks the request up, join the same batch. The main
//! task closes the batch when it takes the request and only then starts the
//! core's ReadIndex round, so the round (the commit index it records and
//! the quorum it confirms leadership with) begins after every member
//! arrived: each of them gets a linearizable read point.
//!
//! This takes the per-read oneshot channel, queue slot and main-task work
//! off the read path: under load, a hundred concurrent readers cost the
//! main task one request.
//!
//! The gate is sharded by worker thread, so readers on different threads
//! do not bounce one lock and one batch between their caches; the main
//! task receives one request per shard with readers.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::core::Refusal;
use crate::error::{Error, StorageError, TransportError};
use crate::message::ReadIndexRefusal;
use crate::metrics::ReadMetrics;
use crate::types::{ServerAddress, ServerId};

/// Why a read batch failed; cheap to hand to every member.
#[derive(Debug, Clone)]
pub(crate) enum ReadFailure {
    /// The core refused the read; `leader` is the leader it knows of.
    Refused { refusal: Refusal, leader: Option<(ServerId, ServerAddress)> },
    /// The node shut down first.
    Shutdown,
    /// The node stopped after a storage failure.
    StorageFailed(String),
    /// (Follower read) the leader could not be asked.
    Transport(TransportError),
    /// (Follower read) the leader refused; `asked` is the leader asked.
    Remote { refusal: ReadIndexRefusal, asked: (ServerId, ServerAddress) },
    /// (Follower read) no read point within the follower-read timeout.
    Timeout,
}

impl From<ReadFailure> for Error {
    fn from(failure: ReadFailure) -> Self {
        match failure {
            ReadFailure::Refused { refusal, leader } => refusal_error(refusal, leader),
            ReadFailure::Shutdown => Error::Shutdown,
            ReadFailure::StorageFailed(msg) => Error::Storage(StorageError::Failed(msg)),
            ReadFailure::Transport(e) => Error::Transport(e),
            ReadFailure::Remote { refusal, asked } => match refusal {
                // The server asked does not lead (any more): name the leader
                // it knows of, which the caller may retry.
                ReadIndexRefusal::NotLeader { leader } => Error::NotLeader { leader },
                ReadIndexRefusal::TransferInProgress => Error::LeadershipTransferInProgress,
                ReadIndexRefusal::LeadershipLost => Error::LeadershipLost,
                ReadIndexRefusal::ShuttingDown => Error::Transport(TransportError::Unreachable(
                    asked.1,
                    format!("leader {} is shutting down", asked.0),
                )),
            },
            ReadFailure::Timeout => Error::Timeout,
        }
    }
}

/// The public error for a core refusal; `leader` (id and address) is used
/// for [`Refusal::NotLeader`].
pub(crate) fn refusal_error(refusal: Refusal, leader: Option<(ServerId, ServerAddress)>) -> Error {
    match refusal {
        Refusal::NotLeader(_) => Error::NotLeader { leader },
        Refusal::TransferInProgress => Error::LeadershipTransferInProgress,
        Refusal::LeadershipLost => Error::LeadershipLost,
        Refusal::ConfigurationChangeInProgress => Error::ConfigurationChangeInProgress {
            pending: "a configuration entry is not committed yet".into(),
        },
        Refusal::Invalid(invalid) => Error::InvalidConfig(invalid.to_string()),
        Refusal::UnknownServer(id) => Error::UnknownServer(id),
        Refusal::NotAVoter(id) => Error::NotAVoter(id),
        Refusal::Removed => Error::Removed,
        // The runtime holds such requests until commits make room; one
        // still refused when its time is up could not be queued in time.
        Refusal::UncommittedLimit { .. } => Error::EnqueueTimeout,
        Refusal::Membership(e) => membership_error(e),
    }
}

/// The public error for a refused configuration change.
pub(crate) fn membership_error(e: crate::core::ConfChangeError) -> Error {
    use crate::core::ConfChangeError as E;
    match e {
        E::UnknownServer(id) => Error::UnknownServer(id),
        E::ServerExists { id, address } => Error::ServerExists { id, address },
        E::JointInProgress => Error::ConfigurationChangeInProgress {
            pending: "a joint configuration change is not finished yet".into(),
        },
        other => Error::InvalidConfig(other.to_string()),
    }
}

/// The answer owed to a follower's read-index request for a failed read.
pub(crate) fn remote_refusal(failure: &ReadFailure) -> ReadIndexRefusal {
    match failure {
        ReadFailure::Refused { refusal, leader } => match refusal {
            Refusal::NotLeader(_) => ReadIndexRefusal::NotLeader { leader: leader.clone() },
            Refusal::Removed => ReadIndexRefusal::NotLeader { leader: None },
            Refusal::TransferInProgress => ReadIndexRefusal::TransferInProgress,
            _ => ReadIndexRefusal::LeadershipLost,
        },
        ReadFailure::Shutdown | ReadFailure::StorageFailed(_) => ReadIndexRefusal::ShuttingDown,
        ReadFailure::Transport(_) | ReadFailure::Remote { .. } | ReadFailure::Timeout => {
            ReadIndexRefusal::LeadershipLost
        }
    }
}

/// Read counters shared by the handle and the main task, published in
/// [`Metrics::reads`](crate::Metrics::reads).
#[derive(Debug, Default)]
pub(crate) struct ReadCounts {
    pub(crate) stale: AtomicU64,
    pub(crate) lease: AtomicU64,
    pub(crate) read_index: AtomicU64,
    pub(crate) lease_served: AtomicU64,
    pub(crate) lease_fallbacks: AtomicU64,
    pub(crate) follower_reads: AtomicU64,
    pub(crate) follower_read_failures: AtomicU64,
    pub(crate) read_index_requests_answered: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ReadCounts {
    /// The counters' current values.
    pub(crate) fn snapshot(&self) -> ReadMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReadMetrics {
            stale: get(&self.stale),
            lease: get(&self.lease),
            read_index: get(&self.read_index),
            lease_served: get(&self.lease_served),
            lease_fallbacks: get(&self.lease_fallbacks),
            follower_reads: get(&self.follower_reads),
            follower_read_failures: get(&self.follower_read_failures),
            read_index_requests_answered: get(&self.read_index_requests_answered),
        }
    }
}

/// Reads that share one ReadIndex round.
#[derive(Debug, Default)]
pub(crate) struct ReadBatch {
    outcome: OnceLock<Result<u64, ReadFailure>>,
    done: Notify,
}

impl ReadBatch {
    /// Settles the batch (the first outcome wins) and wakes its members.
    pub(crate) fn resolve(&self, outcome: Result<u64, ReadFailure>) {
        if self.outcome.set(outcome).is_ok() {
            self.done.notify_waiters();
        }
    }

    /// Waits for the batch's outcome.
    pub(crate) async fn outcome(&self) -> Result<u64, Error> {
        loop {
            // Registered before the check, so a resolve in between is not
            // missed (`notify_waiters` wakes every `Notified` created
            // before it, polled or not).
            let done = self.done.notified();
            if let Some(outcome) = self.outcome.get() {
                return outcome.clone().map_err(Error::from);
            }
            done.await;
        }
    }
}

/// The main task's claim on a batch. Dropping it unresolved (a request
/// discarded with the queue at shutdown) fails the batch with
/// [`Error::Shutdown`], so no reader waits forever.
#[derive(Debug)]
pub(crate) struct ReadTicket {
    batch: Arc<ReadBatch>,
    /// The gate shard the batch is open in.
    shard: usize,
}

impl ReadTicket {
    /// Settles the batch.
    pub(crate) fn resolve(self, outcome: Result<u64, ReadFailure>) {
        self.batch.resolve(outcome);
    }
}

impl Drop for ReadTicket {
    fn drop(&mut self) {
        self.batch.resolve(Err(ReadFailure::Shutdown));
    }
}

/// One shard's open batch, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    open: Mutex<Option<Arc<ReadBatch>>>,
}

/// The batches currently open to new readers, shared by the handles and
/// the main task.
#[derive(Debug)]
pub(crate) struct ReadGate {
    shards: Box<[Shard]>,
}

impl Default for ReadGate {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { shards: (0..threads.clamp(1, 64)).map(|_| Shard::default()).collect() }
    }
}

/// A small number per thread, handed out in order, to pick a shard.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: Cell<Option<usize>> = const { Cell::new(None) };
    }
    NUMBER.with(|n| match n.get() {
        Some(v) => v,
        None => {
            let v = NEXT.fetch_add(1, Ordering::Relaxed);
            n.set(Some(v));
            v
        }
    })
}

impl ReadGate {
    /// Joins the calling thread's open batch, or opens one. With a new
    /// batch comes the ticket the caller must send to the main task.
    pub(crate) fn join(&self) -> (Arc<ReadBatch>, Option<ReadTicket>) {
        let shard = thread_number() % self.shards.len();
        let mut open = self.shards[shard].open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(batch) = open.as_ref() {
            return (batch.clone(), None);
        }
        let batch = Arc::new(ReadBatch::default());
        *open = Some(batch.clone());
        (batch.clone(), Some(ReadTicket { batch, shard }))
    }

    /// Closes `ticket`'s batch to new readers (the main task, before it
    /// starts the batch's round).
    pub(crate) fn close(&self, ticket: &ReadTicket) {
        let Some(shard) = self.shards.get(ticket.shard) else { return };
        let mut open = shard.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.as_ref().is_some_and(|b| Arc::ptr_eq(b, &ticket.batch)) {
            *open = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_joining_an_open_batch_share_its_outcome() {
        let gate = ReadGate::default();
        let (first, ticket) = gate.join();
        let ticket = ticket.expect("the first reader opens a batch");
        let (second, none) = gate.join();
        assert!(none.is_none(), "a second reader joins the open batch");
        assert!(Arc::ptr_eq(&first, &second));
        gate.close(&ticket);
        let (third, next) = gate.join();
        assert!(next.is_some(), "after the close a new batch opens");
        assert!(!Arc::ptr_eq(&first, &third));
        ticket.resolve(Ok(7));
        assert_eq!(first.outcome().await.ok(), Some(7));
        assert_eq!(second.outcome().await.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_dropped_ticket_fails_its_batch_with_shutdown() {
        let gate = ReadGate::default();
        let (batch, ticket) = gate.join();
        drop(ticket);
        assert!(matches!(batch.outcome().await, Err(Error::Shutdown)));
    }

    #[tokio::test]
    async fn a_refusal_names_the_leader() {
        let batch = ReadBatch::default();
        let leader = (ServerId::new("n2"), ServerAddress::new("addr2"));
        let refusal = Refusal::NotLeader(Some(leader.0.clone()));
        batch.resolve(Err(ReadFailure::Refused { refusal, leader: Some(leader.clone()) }));
        match batch.outcome().await {
            Err(Error::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}
