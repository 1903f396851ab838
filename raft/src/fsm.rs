//! The user's replicated state machine: [`Fsm`] and [`FsmSnapshot`].

use async_trait::async_trait;

use crate::error::BoxError;
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::types::Log;

/// The replicated state machine a service implements.
///
/// The runtime calls it from one task, in log order, with every committed
/// [`LogType::Command`](crate::LogType::Command) entry exactly once per
/// process lifetime (after a restart the log is replayed from the last
/// snapshot, or from [`Fsm::last_applied`] if the FSM reports one).
///
/// # To be correct
/// - `apply` must be deterministic: the same entries in the same order must
///   produce the same state on every node.
/// - `snapshot` must be cheap: it runs on the apply task. Capture a
///   point-in-time view (clone, copy-on-write) and do the slow work in
///   [`FsmSnapshot::persist`], which runs concurrently with later applies.
/// - `restore` must replace the whole state with the snapshot's.
///
/// ```
/// use raft::{async_trait, BoxError, Fsm, FsmSnapshot, Log, SnapshotReader, SnapshotWriter};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// #[derive(Default)]
/// struct Counter(u64);
///
/// struct CounterSnapshot(u64);
///
/// #[async_trait]
/// impl FsmSnapshot for CounterSnapshot {
///     async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError> {
///         sink.write_all(&self.0.to_le_bytes()).await?;
///         Ok(())
///     }
/// }
///
/// #[async_trait]
/// impl Fsm for Counter {
///     type Response = u64;
///     async fn apply(&mut self, _log: &Log) -> u64 {
///         self.0 += 1;
///         self.0
///     }
///     async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError> {
///         Ok(Box::new(CounterSnapshot(self.0)))
///     }
///     async fn restore(&mut self, mut snapshot: SnapshotReader) -> Result<(), BoxError> {
///         let mut buf = [0u8; 8];
///         snapshot.read_exact(&mut buf).await?;
///         self.0 = u64::from_le_bytes(buf);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Fsm: Send + 'static {
    /// What applying a command returns to the caller of [`Raft::apply`](crate::Raft::apply).
    type Response: Send + 'static;

    /// Applies one committed command.
    async fn apply(&mut self, log: &Log) -> Self::Response;

    /// Applies several committed commands in order; must return one response
    /// per entry. The default calls [`Fsm::apply`] for each.
    async fn apply_batch(&mut self, logs: &[Log]) -> Vec<Self::Response> {
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            out.push(self.apply(log).await);
        }
        out
    }

    /// Captures a point-in-time snapshot. Must be quick; see the trait docs.
    async fn snapshot(&mut self) -> Result<Box<dyn FsmSnapshot>, BoxError>;

    /// Replaces the whole state with the snapshot's contents.
    async fn restore(&mut self, snapshot: SnapshotReader) -> Result<(), BoxError>;

    /// For an FSM that keeps its state on disk: the index of the last entry
    /// already applied to that state, so a restart does not replay it.
    /// Default `None` (in-memory FSMs replay from the last snapshot).
    fn last_applied(&self) -> Option<u64> {
        None
    }
}

/// A point-in-time snapshot produced by [`Fsm::snapshot`].
#[async_trait]
pub trait FsmSnapshot: Send + 'static {
    /// Writes the snapshot to `sink`. Return `Ok` only when everything is
    /// written; the runtime then finalizes the sink, or cancels it on `Err`.
    async fn persist(self: Box<Self>, sink: &mut SnapshotWriter) -> Result<(), BoxError>;
}
