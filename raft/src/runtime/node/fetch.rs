//! Reads of stored entries for lagging followers (the core's
//! [`Ready::fetches`](crate::core::Ready::fetches)): the entries a
//! follower needs that the core no longer holds in memory are read from the
//! log store in a task of their own, never on the main task, and handed
//! back to the core with `Core::entries_fetched` when they arrive.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
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

/// How long one read for a follower may take before it counts as failed
/// (and the core retries it at a later heartbeat). A store call that never
/// returns would otherwise leave the follower waiting for its entries for
/// the rest of the term, with nothing in the logs or metrics.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// [`read`], bounded by [`FETCH_TIMEOUT`], with a panic in the store turned
/// into a failed read: every read reports back, so the core never waits for
/// one that will not come.
async fn read_bounded(logs: &dyn LogStore, fetch: &LogFetch) -> Result<Vec<Log>, String> {
    match tokio::time::timeout(FETCH_TIMEOUT, AssertUnwindSafe(read(logs, fetch)).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err("the log store panicked while reading".to_owned()),
        Err(_elapsed) => Err(format!("the log store did not answer within {FETCH_TIMEOUT:?}")),
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
            self.fetches.tasks.spawn(crate::telemetry::polls::counted(
                crate::telemetry::polls::TaskKind::Call,
                async move {
                    let result = read_bounded(&*logs, &fetch).await;
                    let _ = events.send(PeerEvent::Fetched { fetch, result });
                },
            ));
        }
    }

    /// A read finished: counts it and hands the outcome to the core (which
    /// logs a failure and retries it later).
    pub(super) fn on_fetched(&mut self, fetch: LogFetch, result: Result<Vec<Log>, String>) {
        // Reap the finished tasks (their results were sent as events).
        while self.fetches.tasks.try_join_next().is_some() {}
        match &result {
            Ok(entries) => {
                self.fetches.done += 1;
                self.fetches.bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
            }
            Err(_) => self.fetches.failed += 1,
        }
        self.core.entries_fetched(fetch, result);
    }
}
