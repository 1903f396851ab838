//! Process-wide counts of how often the tasks of every node in this process
//! were polled, by kind of task: a diagnostic of the hand-offs on the write
//! path. Every poll of a task follows a wake-up (the first follows its
//! spawn), so polls per write count the wake-ups a write costs; on a busy
//! machine each wake-up may wait for a time slice, which is why they are
//! worth counting.
//!
//! Counting is one relaxed atomic addition per poll (no allocation, no
//! lock). The bench (`examples/src/bin/bench.rs`) prints the counts per
//! write.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinHandle;

/// The kinds of task a node runs (and the in-memory transport's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// A node's main task (the core's owner).
    Main = 0,
    /// A node's FSM task.
    Apply = 1,
    /// A node's snapshot task.
    Snapshot = 2,
    /// A peer task (one per peer of a leader).
    Peer = 3,
    /// A peer's AppendEntries pipeline reader.
    PipelineReader = 4,
    /// A call in the background: a vote, a heartbeat, TimeoutNow, a
    /// snapshot stream, a log read for a follower.
    Call = 5,
    /// A task of the in-memory transport ([`crate::transport::inmem`]).
    InmemTransport = 6,
}

/// How many kinds there are.
const KINDS: usize = 7;

/// The polls counted so far, by [`TaskKind`].
static POLLS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

/// How often the tasks of every node in this process were polled since the
/// process started, by kind of task. Subtract two readings to count a
/// window; divide by the writes made in it for polls (wake-ups) per write.
///
/// ```
/// let before = raft::telemetry::task_polls();
/// // ... run a workload ...
/// let polls = raft::telemetry::task_polls().since(&before);
/// assert!(polls.total() >= polls.main);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskPolls {
    /// Nodes' main tasks (protocol core, client batching, log writes).
    pub main: u64,
    /// FSM tasks (applying committed entries, answering writers).
    pub apply: u64,
    /// Snapshot tasks.
    pub snapshot: u64,
    /// Peer tasks (a leader's senders, one per follower).
    pub peer: u64,
    /// AppendEntries pipeline readers (answers back to the main task).
    pub pipeline_reader: u64,
    /// Calls in the background: votes, lone heartbeats, TimeoutNow,
    /// snapshot streams, log reads for followers.
    pub calls: u64,
    /// Tasks of the in-memory transport (message delivery between nodes
    /// in one process).
    pub inmem_transport: u64,
}

impl TaskPolls {
    /// Every poll counted.
    pub fn total(&self) -> u64 {
        self.main
            + self.apply
            + self.snapshot
            + self.peer
            + self.pipeline_reader
            + self.calls
            + self.inmem_transport
    }

    /// The polls counted after `earlier` was read.
    pub fn since(&self, earlier: &TaskPolls) -> TaskPolls {
        TaskPolls {
            main: self.main.saturating_sub(earlier.main),
            apply: self.apply.saturating_sub(earlier.apply),
            snapshot: self.snapshot.saturating_sub(earlier.snapshot),
            peer: self.peer.saturating_sub(earlier.peer),
            pipeline_reader: self.pipeline_reader.saturating_sub(earlier.pipeline_reader),
            calls: self.calls.saturating_sub(earlier.calls),
            inmem_transport: self.inmem_transport.saturating_sub(earlier.inmem_transport),
        }
    }
}

/// Reads the poll counts of every node in this process so far.
pub fn task_polls() -> TaskPolls {
    let get = |k: TaskKind| POLLS[k as usize].load(Ordering::Relaxed);
    TaskPolls {
        main: get(TaskKind::Main),
        apply: get(TaskKind::Apply),
        snapshot: get(TaskKind::Snapshot),
        peer: get(TaskKind::Peer),
        pipeline_reader: get(TaskKind::PipelineReader),
        calls: get(TaskKind::Call),
        inmem_transport: get(TaskKind::InmemTransport),
    }
}

/// Wraps `fut` so that each of its polls is counted under `kind`.
pub(crate) async fn counted<F: Future>(kind: TaskKind, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        POLLS[kind as usize].fetch_add(1, Ordering::Relaxed);
        fut.as_mut().poll(cx)
    })
    .await
}

/// `tokio::spawn`s `fut`, counting its polls under `kind`.
pub(crate) fn spawn<F>(kind: TaskKind, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(counted(kind, fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task woken twice after its first poll is counted three times.
    #[tokio::test]
    async fn every_poll_of_a_counted_task_is_counted() {
        let before = task_polls();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let task = spawn(TaskKind::Snapshot, async move {
            let mut got = 0;
            while rx.recv().await.is_some() {
                got += 1;
            }
            got
        });
        tokio::task::yield_now().await;
        tx.send(()).expect("send");
        tokio::task::yield_now().await;
        tx.send(()).expect("send");
        drop(tx);
        assert_eq!(task.await.expect("task"), 2);
        let polls = task_polls().since(&before);
        // Other tests in this process may run snapshot tasks too.
        assert!(polls.snapshot >= 2, "{polls:?}");
    }
}
