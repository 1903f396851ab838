//! `kv serve --metrics-addr`: the series every raft node emits (see
//! [`raft::telemetry`] for the table) exported for Prometheus at
//! `GET /metrics` on an address of their own, in the Prometheus text
//! format, through `metrics-exporter-prometheus`.
//!
//! The exporter is installed as the process's `metrics` recorder before the
//! raft node starts (a node registers its series when it starts). Timings,
//! sizes and counts are exported as Prometheus histograms with the buckets
//! below; everything else as counters and gauges.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::NodeError;

/// How often histogram samples are folded into the exported buckets (a
/// scrape also folds them).
const UPKEEP: Duration = Duration::from_secs(5);
/// How long a scraper may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bucket bounds of the `_seconds` histograms: 50 µs to 60 s.
const SECONDS: [f64; 19] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];
/// Bucket bounds of the `_bytes` histograms: 64 B to 4 GiB.
const BYTES: [f64; 14] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];
/// Bucket bounds of the count histograms (`_entries`, `_writes`): 1 to 65,536.
const COUNTS: [f64; 17] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
    32768.0, 65536.0,
];

/// The running exporter: stops serving when dropped or stopped.
pub struct MetricsServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Stops the HTTP server.
    stop: Option<oneshot::Sender<()>>,
    /// The HTTP server.
    server: JoinHandle<()>,
    /// Folds histogram samples into buckets now and then.
    upkeep: JoinHandle<()>,
}

impl MetricsServer {
    /// Installs the Prometheus recorder as this process's `metrics`
    /// recorder and serves `GET /metrics` on `addr` (`HOST:PORT`; port 0
    /// picks a free one, see [`local_addr`](Self::local_addr)).
    ///
    /// Fails if `addr` cannot be bound or another recorder is already
    /// installed in this process (there can be one only).
    pub async fn start(addr: &str) -> Result<Self, NodeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| NodeError::io(format!("binding the metrics address {addr}"), e))?;
        let local = listener.local_addr().map_err(|e| NodeError::io("reading the metrics address", e))?;
        let handle = install().map_err(|e| NodeError::Options(format!("--metrics-addr: {e}")))?;
        let upkeep = {
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(UPKEEP);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            })
        };
        let app = Router::new().route("/metrics", get(move || render(handle.clone())));
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(super::server::serve(listener, app, HEADER_TIMEOUT, stopped));
        Ok(Self { addr: local, stop: Some(stop), server, upkeep })
    }

    /// The address it serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for open scrapes to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.upkeep.abort();
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = server.await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.upkeep.abort();
        self.server.abort();
    }
}

/// Builds the Prometheus recorder (histogram buckets by name suffix) and
/// installs it as the process's recorder.
fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES)?
        .set_buckets_for_metric(Matcher::Suffix("_entries".into()), &COUNTS)?
        .set_buckets_for_metric(Matcher::Suffix("_writes".into()), &COUNTS)?
        .install_recorder()
}

/// The `/metrics` page: every series in the Prometheus text format.
async fn render(handle: PrometheusHandle) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}
