//! Reads of stored entries for lagging followers (the core's
//! [`Ready::fetches`](crate::core::Ready::fetches)): the entries a
//! follower needs that the core no longer holds in memory are read from the
//! log store in a task of their own, never on the main task, and handed
//! back to the core with `Core::entries_fetched` when they arrive.

use tokio::task::JoinSet;

use super::*;
use crate::core::LogFetch;
use crate::storage::LogStore;
use crate::types::Log;

/// The main task's reads of stored entries.
pub(super) struct Fetches {
    /// The log store read from.
    logs: Arc<dyn LogStore>,
    /// Reads under way (aborted at shutdown, so the store is no longer
    /// touched once the node stopped).
    pub(super) tasks: JoinSet<()>,
    /// Reads completed since start.
    pub(super) done: u64,
    /// Reads that failed since start.
    pub(super) failed: u64,
    /// Payload bytes read since start.
    pub(super) bytes: u64,
}

impl Fetches {
    pub(super) fn new(logs: Arc<dyn LogStore>) -> Self {
        Self { logs, tasks: JoinSet::new(), done: 0, failed: 0, bytes: 0 }
    }
}

/// Reads `fetch.lo..=fetch.hi` from `logs`, checking that the store
/// returned exactly those entries.
async fn read(logs: &dyn LogStore, fetch: &LogFetch) -> Result<Vec<Log>, String> {
    if fetch.hi < fetch.lo {
        return Err(format!("empty range {}..={}", fetch.lo, fetch.hi));
    }
    let end = fetch.hi.checked_add(1).ok_or_else(|| format!("range end {} overflows", fetch.hi))?;
    let entries = logs.get_logs(fetch.lo..end).await.map_err(|e| e.to_string())?;
    crate::runtime::apply::check_range(&entries, fetch.lo, fetch.hi)?;
    Ok(entries)
}

impl<R: Send + 'static> Node<R> {
    /// Starts the reads the core asked for; each reports back with
    /// [`PeerEvent::Fetched`].
    pub(super) fn start_fetches(&mut self, fetches: Vec<LogFetch>) {
        for fetch in fetches {
            let logs = self.fetches.logs.clone();
            let events = self.peers.events_tx.clone();
            self.fetches.tasks.spawn(async move {
                let result = read(&*logs, &fetch).await;
                let _ = events.send(PeerEvent::Fetched { fetch, result });
            });
        }
    }

    /// A read finished: counts it, logs a failure, and hands the outcome
    /// to the core (which retries a failed read later).
    pub(super) fn on_fetched(&mut self, fetch: LogFetch, result: Result<Vec<Log>, String>) {
        // Reap the finished tasks (their results were sent as events).
        while self.fetches.tasks.try_join_next().is_some() {}
        match &result {
            Ok(entries) => {
                self.fetches.done += 1;
                self.fetches.bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
            }
            Err(err) => {
                self.fetches.failed += 1;
                tracing::warn!(peer = %fetch.peer, lo = fetch.lo, hi = fetch.hi, error = %err,
                    "reading entries for a follower from the log store failed; the follower waits \
                     until a later read succeeds. Check the log store");
            }
        }
        self.core.entries_fetched(fetch, result);
    }
}
