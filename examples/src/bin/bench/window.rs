//! Samples each node's log window during a run: the payload bytes its
//! protocol core holds in memory (`Metrics::log_window_bytes`), every
//! [`PERIOD`], keeping the largest value seen per node; and, at the end,
//! how often leaders read entries for followers from the log store
//! (`Metrics::log_fetches`, `log_fetched_bytes`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Node;

/// How often the windows are sampled.
const PERIOD: Duration = Duration::from_millis(50);

/// A running sampler.
pub(crate) struct Sampler {
    nodes: Vec<Node>,
    peaks: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the sampler saw.
pub(crate) struct Windows {
    /// Per node, the largest window seen (bytes).
    pub peak: Vec<u64>,
    /// Per node, the window when the run ended (bytes).
    pub end: Vec<u64>,
    /// Reads of entries from the log store for followers, all nodes.
    pub fetches: u64,
    /// Payload bytes those reads returned, all nodes.
    pub fetched_bytes: u64,
}

impl Sampler {
    /// Starts sampling `nodes`.
    pub(crate) fn start(nodes: Vec<Node>) -> Self {
        let peaks: Arc<Vec<AtomicU64>> = Arc::new(nodes.iter().map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (nodes, peaks, stop) = (nodes.clone(), peaks.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    for (node, peak) in nodes.iter().zip(peaks.iter()) {
                        peak.fetch_max(node.metrics().borrow().log_window_bytes, Ordering::Relaxed);
                    }
                    tokio::time::sleep(PERIOD).await;
                }
            }
        });
        Self { nodes, peaks, stop, task }
    }

    /// Stops sampling and returns what was seen (including a last sample).
    pub(crate) async fn finish(self) -> Windows {
        self.stop.store(true, Ordering::Relaxed);
        // The task only loops and sleeps: it ends at its next turn.
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the log window sampler failed; its peaks may be low");
        }
        let mut w = Windows { peak: Vec::new(), end: Vec::new(), fetches: 0, fetched_bytes: 0 };
        for (node, peak) in self.nodes.iter().zip(self.peaks.iter()) {
            let m = node.metrics().borrow().clone();
            w.end.push(m.log_window_bytes);
            w.peak.push(peak.load(Ordering::Relaxed).max(m.log_window_bytes));
            w.fetches += m.log_fetches;
            w.fetched_bytes += m.log_fetched_bytes;
        }
        w
    }
}

/// Bytes as MiB with one decimal, for the JSON arrays.
pub(crate) fn mib_list(bytes: &[u64]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("{:.1}", *b as f64 / (1 << 20) as f64)).collect();
    format!("[{}]", items.join(","))
}
