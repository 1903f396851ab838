//! [`GrpcTransport`]: the [`raft::Transport`] over gRPC. Owns the node's
//! server, the consumer channel of inbound RPCs and the outbound
//! connection pool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use raft::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    ReadIndexRequest, ReadIndexResponse, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use raft::transport::{AppendPipeline, InboundRpc};
use raft::{ServerAddress, ServerId, SnapshotReader, Transport, TransportError};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::admin::AdminSlot;
use crate::config::GrpcConfig;
use crate::convert;
use crate::error::GrpcError;
use crate::inbound::RaftRpcService;
use crate::outbound;
use crate::pool::{Lane, Pool, RaftClient};
use crate::server::{self, ServerHandle};

/// Something [`GrpcTransport::bind`] can listen on: a [`SocketAddr`] or a
/// string such as `"127.0.0.1:0"` or `"localhost:7000"`.
pub trait ListenAddr {
    /// Resolves to one socket address (the first one a host name maps to).
    fn resolve(self) -> impl Future<Output = Result<SocketAddr, GrpcError>> + Send;
}

impl ListenAddr for SocketAddr {
    async fn resolve(self) -> Result<SocketAddr, GrpcError> {
        Ok(self)
    }
}

impl ListenAddr for &str {
    async fn resolve(self) -> Result<SocketAddr, GrpcError> {
        if let Ok(addr) = self.parse() {
            return Ok(addr);
        }
        let mut addrs =
            tokio::net::lookup_host(self).await.map_err(|_| GrpcError::InvalidAddress(self.to_owned()))?;
        addrs.next().ok_or_else(|| GrpcError::InvalidAddress(self.to_owned()))
    }
}

impl ListenAddr for String {
    async fn resolve(self) -> Result<SocketAddr, GrpcError> {
        self.as_str().resolve().await
    }
}

/// A [`raft::Transport`] over gRPC (tonic + prost), optionally secured with
/// TLS or mutual TLS (rustls).
///
/// [`bind`](GrpcTransport::bind) starts the node's server; dropping the
/// transport or calling [`shutdown`](GrpcTransport::shutdown) stops it.
/// Outbound calls go through a pool of lazily connected channels, two per
/// peer (see the crate docs for why).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use raft::Transport;
/// use raft_transport_grpc::{GrpcConfig, GrpcTransport};
///
/// let transport = GrpcTransport::bind("127.0.0.1:0", GrpcConfig::default()).await?;
/// tracing::info!(addr = %transport.local_addr(), "listening");
/// let inbound = transport.take_consumer()?;
/// # drop(inbound); Ok(()) }
/// ```
#[derive(Debug)]
pub struct GrpcTransport {
    local_addr: ServerAddress,
    socket_addr: SocketAddr,
    config: GrpcConfig,
    pool: Arc<Pool>,
    consumer: Mutex<Option<mpsc::Receiver<InboundRpc>>>,
    server: tokio::sync::Mutex<ServerHandle>,
    admin: AdminSlot,
}

impl GrpcTransport {
    /// Validates `config`, binds `addr` (port 0 picks a free port) and starts
    /// serving. Inbound RPCs queue on the consumer channel until
    /// [`take_consumer`](Transport::take_consumer) is called.
    pub async fn bind(addr: impl ListenAddr, config: GrpcConfig) -> Result<Self, GrpcError> {
        Self::bind_with_routes(addr, config, None).await
    }

    /// [`bind`](GrpcTransport::bind), also serving extra gRPC `routes` (say,
    /// the service's own API) on the same port. They get the server's TLS
    /// but not the cluster id check: wrap them in a
    /// [`ClusterIdCheck`](crate::cluster_id::ClusterIdCheck) interceptor if
    /// they need it.
    pub async fn bind_with_routes(
        addr: impl ListenAddr,
        config: GrpcConfig,
        routes: Option<tonic::service::Routes>,
    ) -> Result<Self, GrpcError> {
        config.validate()?;
        let addr = addr.resolve().await?;
        let pool = Arc::new(Pool::new(&config)?);
        let (consumer_tx, consumer_rx) = mpsc::channel(config.inbound_queue);
        let shutdown = watch::channel(false);
        let service = RaftRpcService::new(consumer_tx, shutdown.1.clone(), config.pipeline_depth);
        let admin = AdminSlot::new();
        let admin_route = config.admin_service.then(|| admin.clone());
        let (socket_addr, handle) =
            server::start(addr, &config, service, routes, admin_route, shutdown).await?;
        let local_addr = match &config.advertise_addr {
            Some(advertised) => advertised.clone(),
            None => ServerAddress::new(socket_addr.to_string()),
        };
        Ok(Self {
            local_addr,
            socket_addr,
            config,
            pool,
            consumer: Mutex::new(Some(consumer_rx)),
            server: tokio::sync::Mutex::new(handle),
            admin,
        })
    }

    /// The slot the [admin service](crate::admin) serves from: attach the
    /// node's [`raft::Raft`] handle to it once the node is created.
    pub fn admin(&self) -> AdminSlot {
        self.admin.clone()
    }

    /// The socket address the server is actually bound to.
    pub fn socket_addr(&self) -> SocketAddr {
        self.socket_addr
    }

    /// The configuration the transport runs with.
    pub fn config(&self) -> &GrpcConfig {
        &self.config
    }

    /// Stops the server (waiting up to `shutdown_grace` for open connections
    /// to drain) and closes every outbound connection. Later outbound calls
    /// fail with [`TransportError::Closed`]; the consumer channel ends once
    /// in-flight requests are done. Idempotent.
    pub async fn shutdown(&self) {
        self.admin.detach();
        self.pool.close();
        self.server.lock().await.stop().await;
    }

    /// Runs one unary call on `lane` with the RPC deadline, feeding the
    /// outcome into the peer's back-off.
    async fn unary<T, F, Fut>(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        lane: Lane,
        rpc: &'static str,
        call: F,
    ) -> Result<T, TransportError>
    where
        F: FnOnce(RaftClient, Duration) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let timeout = self.config.rpc_timeout;
        let client = self.pool.client(addr, lane)?;
        match tokio::time::timeout(timeout, call(client, timeout)).await {
            Ok(Ok(response)) => {
                self.pool.succeeded(addr);
                Ok(response.into_inner())
            }
            Ok(Err(status)) => {
                tracing::debug!(peer = %target, %addr, rpc, %status, "rpc failed");
                Err(self.pool.on_status(addr, &status))
            }
            Err(_) => {
                self.pool.failed(addr, false);
                tracing::debug!(peer = %target, %addr, rpc, "rpc timed out");
                Err(TransportError::Timeout(addr.clone()))
            }
        }
    }
}

/// Wraps a message in a request carrying the deadline for the server.
fn with_deadline<T>(msg: T, timeout: Duration) -> Request<T> {
    let mut req = Request::new(msg);
    req.set_timeout(timeout);
    req
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        self.admin.detach();
        self.pool.close();
        self.server.get_mut().signal();
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    fn local_addr(&self) -> ServerAddress {
        self.local_addr.clone()
    }

    fn take_consumer(&self) -> Result<mpsc::Receiver<InboundRpc>, TransportError> {
        self.consumer.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or(TransportError::Closed)
    }

    /// [`GrpcConfig::max_message_size`]: the node cuts AppendEntries to fit
    /// and refuses larger commands.
    fn max_message_size(&self) -> Option<usize> {
        Some(self.config.max_message_size)
    }

    async fn append_entries(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: AppendEntriesRequest,
    ) -> Result<AppendEntriesResponse, TransportError> {
        // Heartbeats take the control connection so they never wait behind
        // entries or snapshots.
        let lane = if req.entries.is_empty() { Lane::Control } else { Lane::Bulk };
        let msg = convert::append_request_to_pb(&req);
        let resp = self
            .unary(target, addr, lane, "AppendEntries", |mut c, t| async move {
                c.append_entries(with_deadline(msg, t)).await
            })
            .await?;
        Ok(convert::append_response_from_pb(resp))
    }

    async fn append_entries_pipeline(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
    ) -> Result<AppendPipeline, TransportError> {
        let client = self.pool.client(addr, Lane::Bulk)?;
        outbound::pipeline::open(
            client,
            self.pool.clone(),
            addr.clone(),
            self.config.pipeline_depth,
            self.config.rpc_timeout,
        )
        .await
    }

    async fn request_vote(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: RequestVoteRequest,
    ) -> Result<RequestVoteResponse, TransportError> {
        let msg = convert::vote_request_to_pb(&req);
        let resp = self
            .unary(target, addr, Lane::Control, "RequestVote", |mut c, t| async move {
                c.request_vote(with_deadline(msg, t)).await
            })
            .await?;
        Ok(convert::vote_response_from_pb(resp))
    }

    async fn request_pre_vote(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: RequestPreVoteRequest,
    ) -> Result<RequestPreVoteResponse, TransportError> {
        let msg = convert::pre_vote_request_to_pb(&req);
        let resp = self
            .unary(target, addr, Lane::Control, "RequestPreVote", |mut c, t| async move {
                c.request_pre_vote(with_deadline(msg, t)).await
            })
            .await?;
        Ok(convert::pre_vote_response_from_pb(resp))
    }

    async fn timeout_now(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: TimeoutNowRequest,
    ) -> Result<TimeoutNowResponse, TransportError> {
        let msg = convert::timeout_now_request_to_pb(&req);
        let resp = self
            .unary(target, addr, Lane::Control, "TimeoutNow", |mut c, t| async move {
                c.timeout_now(with_deadline(msg, t)).await
            })
            .await?;
        Ok(convert::timeout_now_response_from_pb(resp))
    }

    async fn read_index(
        &self,
        target: &ServerId,
        addr: &ServerAddress,
        req: ReadIndexRequest,
    ) -> Result<ReadIndexResponse, TransportError> {
        let msg = convert::read_index_request_to_pb(&req);
        let resp = self
            .unary(target, addr, Lane::Control, "ReadIndex", |mut c, t| async move {
                c.read_index(with_deadline(msg, t)).await
            })
            .await?;
        crate::validate::read_index_response(resp).map_err(|e| {
            tracing::warn!(peer = %target, reason = %e, "malformed ReadIndex response");
            TransportError::Other(format!("malformed ReadIndex response from {target}: {e}"))
        })
    }

    async fn install_snapshot(
        &self,
        _target: &ServerId,
        addr: &ServerAddress,
        req: InstallSnapshotRequest,
        data: SnapshotReader,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        let client = self.pool.client(addr, Lane::Bulk)?;
        outbound::snapshot::send(
            client,
            self.pool.clone(),
            addr.clone(),
            req,
            data,
            self.config.snapshot_chunk_size,
            self.config.snapshot_timeout,
        )
        .await
    }
}
