//! [`KvNode`]: one node of the key-value service: a [`Raft`] over a
//! [`KvFsm`] with a [`FileStore`], a [`FileSnapshotStore`] and a
//! [`GrpcTransport`] (admin service attached), plus the HTTP API.
//!
//! Data directory layout: `raft/` (the write-ahead log and stable store)
//! and `snapshots/`. A node with state in its directory restarts from it:
//! `bootstrap` and `join` only act on an empty directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raft::{Config, Configuration, Raft, RaftState, Server, ServerId};
use raft_store_file::{FileSnapshotStore, FileStore};
use raft_transport_grpc::{GrpcConfig, GrpcTransport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api::{self, ApiSettings, ApiState, JoinRequest};
use super::client::ApiClient;
use super::error::NodeError;
use super::https::HttpsConfig;
use super::tls::load_tls_dir;
use crate::kv::KvFsm;

/// Snapshots kept on disk.
const SNAPSHOTS_RETAINED: usize = 2;
/// How long a graceful shutdown waits for in-flight HTTP requests.
const HTTP_DRAIN: Duration = Duration::from_secs(3);
/// First wait between join attempts; doubles up to [`JOIN_MAX_RETRY`].
const JOIN_FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between join attempts.
const JOIN_MAX_RETRY: Duration = Duration::from_secs(5);
/// After this long without joining, every failed attempt logs at WARN.
const JOIN_WARN_AFTER: Duration = Duration::from_secs(10);

/// How to start a [`KvNode`].
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The raft server id (unique for all time).
    pub id: String,
    /// Address the raft gRPC transport (and admin service) binds; port 0
    /// picks a free port. It is also the address peers use, so bind a
    /// reachable address, not `0.0.0.0`.
    pub raft_addr: String,
    /// Address the HTTP API binds; port 0 picks a free port.
    pub api_addr: String,
    /// Directory of the log, stable store and snapshots.
    pub data_dir: PathBuf,
    /// On an empty data directory, bootstrap a one-node cluster of this node.
    pub bootstrap: bool,
    /// On an empty data directory, ask the member whose HTTP API is at this
    /// address to add this node as a voter.
    pub join: Option<String>,
    /// Directory with `ca.pem`, `node.pem` and `node-key.pem`: mutual TLS on
    /// the raft port, and HTTPS on the API port (client certificates asked
    /// for, not required; one that verifies against `ca.pem` authenticates
    /// cluster requests instead of the join token, see
    /// [`api`](super::api#authentication-of-cluster-changes)). The node's
    /// own calls to other nodes' APIs (joining, registering, forwarding)
    /// then use HTTPS and present `node.pem`: every node of a cluster needs
    /// it, or none.
    pub tls_dir: Option<PathBuf>,
    /// Cluster id checked on every raft and admin RPC (by the gRPC layer),
    /// and the raft cluster id ([`raft::Config::cluster_id`]). Without it the
    /// raft cluster id is derived at bootstrap and adopted by joiners.
    pub cluster_id: Option<String>,
    /// HTTP API limits and timeouts.
    pub api: ApiSettings,
    /// Raft heartbeat and election timeout (the leader lease is half).
    pub election_timeout: Duration,
    /// How long `join` keeps trying.
    pub join_timeout: Duration,
    /// With `join`: if this node's id is already a member at another raft
    /// address (the node moved, or replaces a lost machine), move the
    /// member to this node's address instead of being refused. Without it
    /// such a join fails with `409 server_exists`.
    pub replace_address: bool,
    /// How often raft checks whether to take a snapshot
    /// ([`raft::Config::snapshot_interval`]).
    pub snapshot_interval: Duration,
    /// Log entries since the last snapshot that make raft take one
    /// ([`raft::Config::snapshot_threshold`]).
    pub snapshot_threshold: u64,
}

impl NodeOptions {
    /// Options with defaults: no bootstrap, no join, no TLS, no join token
    /// (cluster changes through the API are refused), 1 MiB values, 5 s
    /// requests, 1 s election timeout, raft's default snapshot interval
    /// and threshold.
    pub fn new(
        id: impl Into<String>,
        raft_addr: impl Into<String>,
        api_addr: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            id: id.into(),
            raft_addr: raft_addr.into(),
            api_addr: api_addr.into(),
            data_dir: data_dir.into(),
            bootstrap: false,
            join: None,
            tls_dir: None,
            cluster_id: None,
            api: ApiSettings::default(),
            election_timeout: Duration::from_secs(1),
            join_timeout: Duration::from_secs(30),
            replace_address: false,
            snapshot_interval: Config::default().snapshot_interval,
            snapshot_threshold: Config::default().snapshot_threshold,
        }
    }
}

/// A running node. Stop it with [`KvNode::shutdown`].
pub struct KvNode {
    id: String,
    raft: Raft<KvFsm>,
    fsm: KvFsm,
    raft_addr: String,
    api_addr: SocketAddr,
    /// The API serves HTTPS.
    https: bool,
    /// The client for other nodes' APIs (HTTPS with the node certificate
    /// when TLS is on).
    client: ApiClient,
    restarted: bool,
    http_stop: Option<oneshot::Sender<()>>,
    http_task: JoinHandle<()>,
    register_task: JoinHandle<()>,
}

impl KvNode {
    /// Opens the stores, binds the transport and the API, starts raft and
    /// bootstraps or joins if asked to (and the data directory is empty).
    /// Returns once the node serves requests (and, with `join`, once it is
    /// a member).
    pub async fn start(opts: NodeOptions) -> Result<Self, NodeError> {
        if opts.id.is_empty() {
            return Err(NodeError::Options("the node id must not be empty".into()));
        }
        if opts.bootstrap && opts.join.is_some() {
            return Err(NodeError::Options("use either bootstrap (first node) or join, not both".into()));
        }
        if let Some(token) = &opts.api.join_token {
            api::check_join_token(token).map_err(|e| NodeError::Options(format!("--join-token: {e}")))?;
        } else if opts.join.is_some() && opts.tls_dir.is_none() {
            return Err(NodeError::Options(
                "joining needs the cluster's join token: pass --join-token TOKEN (or set KV_JOIN_TOKEN), \
                 or run the cluster with --tls-dir (nodes then authenticate by certificate)"
                    .into(),
            ));
        }
        // Before anything is bound: a bad certificate file is named at once.
        let https = opts.tls_dir.as_deref().map(HttpsConfig::load).transpose()?;
        let client = match &https {
            Some(https) => ApiClient::with_tls(https.client_config()),
            None => ApiClient::new(),
        };
        let log_dir = opts.data_dir.join("raft");
        let snap_dir = opts.data_dir.join("snapshots");
        for dir in [&log_dir, &snap_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| NodeError::io(format!("creating {}", dir.display()), e))?;
        }
        let listener = tokio::net::TcpListener::bind(&opts.api_addr)
            .await
            .map_err(|e| NodeError::io(format!("binding the API address {}", opts.api_addr), e))?;
        let api_addr =
            listener.local_addr().map_err(|e| NodeError::io("reading the API listener address", e))?;

        let grpc = GrpcConfig {
            tls: opts.tls_dir.as_deref().map(load_tls_dir).transpose()?,
            cluster_id: opts.cluster_id.clone(),
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(2),
            backoff_max: Duration::from_millis(200),
            shutdown_grace: Duration::from_millis(500),
            ..GrpcConfig::default()
        };
        let transport = GrpcTransport::bind(opts.raft_addr.as_str(), grpc).await?;
        let raft_addr = raft::Transport::local_addr(&transport).to_string();
        let admin = transport.admin();

        let store = FileStore::open(&log_dir).await?;
        let snaps = FileSnapshotStore::new(&snap_dir, SNAPSHOTS_RETAINED).await?;
        let restarted = raft::has_existing_state(&store, &store, &snaps).await?;

        let config = Config {
            local_id: ServerId::from(opts.id.as_str()),
            heartbeat_timeout: opts.election_timeout,
            election_timeout: opts.election_timeout,
            leader_lease_timeout: opts.election_timeout / 2,
            commit_timeout: Duration::from_millis(20),
            snapshot_interval: opts.snapshot_interval,
            snapshot_threshold: opts.snapshot_threshold,
            // The same id names the raft cluster: stored in the data
            // directory and required of every raft RPC by the node itself.
            cluster_id: opts
                .cluster_id
                .as_deref()
                .map(str::parse::<raft::ClusterId>)
                .transpose()
                .map_err(|e| NodeError::Options(format!("--cluster-id: {e}")))?,
            ..Config::default()
        };
        let fsm = KvFsm::new();
        let raft = Raft::new(config, fsm.clone(), store.clone(), store, snaps, transport).await?;
        admin.attach(raft.clone());
        let cluster = raft.cluster_id().map(|c| c.to_string()).unwrap_or_else(|| "(adopted on join)".into());
        tracing::info!(id = %opts.id, %raft_addr, %api_addr, restarted, %cluster, "node started");
        if let Some(max) = raft.max_command_size().filter(|&max| opts.api.max_value_bytes >= max) {
            tracing::warn!(
                max_value_bytes = opts.api.max_value_bytes,
                max_command_bytes = max,
                "values near --max-value-bytes do not fit in one raft message and get 413; lower it"
            );
        }

        if restarted {
            if opts.bootstrap || opts.join.is_some() {
                tracing::info!("the data directory has state: ignoring --bootstrap/--join");
            }
        } else if opts.bootstrap {
            let me = Server::voter(opts.id.as_str(), raft_addr.as_str());
            raft.bootstrap_cluster(Configuration::new(vec![me])).await?;
            tracing::info!("bootstrapped a one-node cluster");
        }

        if opts.api.join_token.is_none() && https.is_some() {
            tracing::info!(
                "no --join-token: /cluster/join and /cluster/nodes accept only clients presenting a \
                 certificate signed by the cluster CA (nodes use their node.pem)"
            );
        } else if opts.api.join_token.is_none() {
            tracing::warn!(
                "no --join-token: this node refuses /cluster/join and /cluster/nodes (no node can join \
                 through it); start every node with --join-token TOKEN (or KV_JOIN_TOKEN) to allow them"
            );
        }
        let state =
            ApiState::with_client(opts.id.clone(), raft.clone(), &fsm, opts.api.clone(), client.clone());
        let (http_stop, stopped) = oneshot::channel::<()>();
        let app = api::router(state.clone());
        let http_task = tokio::spawn(super::server::serve_with_tls(
            listener,
            app,
            opts.api.header_read_timeout,
            https.as_ref().map(HttpsConfig::server_config),
            stopped,
        ));
        let register_task = tokio::spawn(register_loop(state, raft.clone(), opts.id.clone(), api_addr));

        let node = KvNode {
            id: opts.id.clone(),
            raft,
            fsm,
            raft_addr,
            api_addr,
            https: https.is_some(),
            client,
            restarted,
            http_stop: Some(http_stop),
            http_task,
            register_task,
        };
        if !restarted {
            if let Some(member) = &opts.join {
                let token = opts.api.join_token.as_deref();
                if let Err(e) = node.join(member, token, opts.join_timeout, opts.replace_address).await {
                    let _ = node.shutdown(false).await;
                    return Err(e);
                }
            }
        }
        Ok(node)
    }

    /// Asks the member whose API is at `member` to add this node (sending
    /// the join `token` if any, and over HTTPS the node certificate),
    /// retrying until `timeout`.
    async fn join(
        &self,
        member: &str,
        token: Option<&str>,
        timeout: Duration,
        replace_address: bool,
    ) -> Result<(), NodeError> {
        let client = &self.client;
        let path = if replace_address { "/cluster/join?replace_address=true" } else { "/cluster/join" };
        let request = JoinRequest {
            id: self.id.clone(),
            raft_addr: self.raft_addr.clone(),
            api_addr: self.api_addr.to_string(),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| NodeError::Join(format!("encoding the request: {e}")))?;
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        if let Some((name, value)) = token.and_then(api::auth_header) {
            headers.insert(name, value);
        }
        let started = Instant::now();
        let deadline = started + timeout;
        let mut backoff = JOIN_FIRST_RETRY;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let sent = client
                .send(axum::http::Method::POST, member, path, headers.clone(), body.clone().into(), remaining)
                .await;
            let last = match sent {
                Ok(resp) if resp.status.is_success() => {
                    tracing::info!(%member, "joined the cluster");
                    return Ok(());
                }
                Ok(resp) if resp.status.is_client_error() => {
                    let hint = if resp.json()["code"] == "server_exists" {
                        "; if this node replaces that member, start it with --replace-address"
                    } else {
                        ""
                    };
                    return Err(NodeError::Join(format!(
                        "{member} refused: {} {}{hint}",
                        resp.status,
                        resp.text()
                    )));
                }
                Ok(resp) => format!("{} {}", resp.status, resp.text()),
                Err(e) => e.to_string(),
            };
            if Instant::now() + backoff >= deadline {
                return Err(NodeError::Join(format!("gave up after {timeout:?}: {last}")));
            }
            if started.elapsed() >= JOIN_WARN_AFTER {
                tracing::warn!(
                    %member,
                    error = %last,
                    waited = ?started.elapsed(),
                    retry_in = ?backoff,
                    "still not joined: check that the member is up, reachable at this address and a member of the cluster"
                );
            } else {
                tracing::info!(%member, error = %last, retry_in = ?backoff, "join not accepted yet; retrying");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(JOIN_MAX_RETRY);
        }
    }

    /// The server id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raft handle.
    pub fn raft(&self) -> &Raft<KvFsm> {
        &self.raft
    }

    /// The state machine (for local, possibly stale, reads).
    pub fn fsm(&self) -> &KvFsm {
        &self.fsm
    }

    /// The raft transport's address (also where the admin service listens).
    pub fn raft_addr(&self) -> &str {
        &self.raft_addr
    }

    /// The HTTP API's bound address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The HTTP API's URL: `https://ADDR` with TLS on, else `http://ADDR`.
    /// (The cluster's node directory holds bare `host:port` addresses; the
    /// scheme follows from every node running with `--tls-dir` or none.)
    pub fn api_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.api_addr)
    }

    /// True if the node started from existing state in its data directory.
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    /// Stops the node: the HTTP API stops accepting and drains (up to 3 s);
    /// with `transfer_leadership` a leader first hands leadership to a
    /// follower (bounded, best effort) so the cluster does not wait for an
    /// election timeout; then raft shuts down and its stores are closed.
    pub async fn shutdown(mut self, transfer_leadership: bool) -> Result<(), NodeError> {
        self.register_task.abort();
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(HTTP_DRAIN, &mut self.http_task).await.is_err() {
            tracing::warn!("HTTP requests still running after {HTTP_DRAIN:?}; closing them");
            self.http_task.abort();
        }
        if transfer_leadership && self.raft.state() == RaftState::Leader {
            match tokio::time::timeout(Duration::from_secs(2), self.raft.leadership_transfer()).await {
                Ok(Ok(())) => tracing::info!("handed leadership over before stopping"),
                Ok(Err(e)) => tracing::info!(error = %e, "leadership transfer failed; stopping anyway"),
                Err(_) => tracing::info!("leadership transfer timed out; stopping anyway"),
            }
        }
        self.raft.shutdown().await?;
        tracing::info!(id = %self.id, "node stopped");
        Ok(())
    }
}

/// Why a node ended on its own, without this process asking (see
/// [`KvNode::stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeExit {
    /// Raft stopped by itself: a fatal error, such as a failed disk write
    /// (raft logged the cause). The data it serves is frozen.
    Failed,
    /// This server was removed from the cluster configuration: it no
    /// longer takes part and every request fails.
    Removed,
}

impl KvNode {
    /// Resolves when the raft node stops or is removed without
    /// [`KvNode::shutdown`] being called, so the process can exit and a
    /// supervisor can see it (instead of serving frozen data).
    pub async fn stopped(&self) -> NodeExit {
        let mut metrics = self.raft.metrics();
        let ended = metrics.wait_for(|m| matches!(m.state, RaftState::Shutdown | RaftState::Removed)).await;
        match ended {
            Ok(m) if m.state == RaftState::Removed => NodeExit::Removed,
            _ => NodeExit::Failed,
        }
    }
}

/// First pause between failed registrations of the API address.
const REGISTER_BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest pause between failed registrations of the API address.
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Failed registrations logged at debug before they are logged at warn.
const REGISTER_QUIET_FAILURES: u32 = 4;

/// The pause after `failures` failed registrations in a row: doubling from
/// [`REGISTER_BACKOFF_MIN`] up to [`REGISTER_BACKOFF_MAX`].
fn register_backoff(failures: u32) -> Duration {
    REGISTER_BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(REGISTER_BACKOFF_MAX)
}

/// Keeps this node's API address registered in the replicated node
/// directory: once the node is a member and a leader is known, registers
/// it (through the leader) unless it is already current, retrying with a
/// growing pause until it succeeds (failures are logged, at warn once
/// they persist).
async fn register_loop(state: ApiState, raft: Raft<KvFsm>, id: String, api_addr: SocketAddr) {
    let api_addr = api_addr.to_string();
    let mut metrics = raft.metrics();
    let mut failures = 0u32;
    loop {
        let member = {
            let m = metrics.borrow();
            m.current_leader.is_some() && m.configuration.servers.iter().any(|s| s.id.as_str() == id)
        };
        if member {
            match state.register(&id, &api_addr).await {
                Ok(()) => {
                    tracing::debug!(%api_addr, failures, "API address registered");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let pause = register_backoff(failures);
                    if failures > REGISTER_QUIET_FAILURES {
                        tracing::warn!(
                            %api_addr, failures, error = %e, retry_in = ?pause,
                            "registering this node's API address keeps failing: followers cannot forward \
                             requests to it while it leads; check that every node has the same --join-token"
                        );
                    } else {
                        tracing::debug!(%api_addr, failures, error = %e, retry_in = ?pause, "registering the API address failed; retrying");
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
        }
        // Look again on the next change, and at least every half second.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(500), metrics.changed()).await {
            return; // the node shut down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_backs_off_doubling_up_to_a_cap() {
        let pauses: Vec<Duration> = (1..=8).map(register_backoff).collect();
        assert_eq!(pauses[0], REGISTER_BACKOFF_MIN);
        assert_eq!(pauses[1], REGISTER_BACKOFF_MIN * 2);
        assert_eq!(pauses[2], REGISTER_BACKOFF_MIN * 4);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(pauses[7], REGISTER_BACKOFF_MAX);
        assert_eq!(register_backoff(u32::MAX), REGISTER_BACKOFF_MAX);
    }
}
