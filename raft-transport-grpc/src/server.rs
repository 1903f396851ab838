//! Starting and stopping a node's tonic server: binds the listener (so port
//! 0 resolves to a real port before `bind` returns), applies TLS, the
//! message size limit and the cluster id check, and serves until the
//! shutdown signal.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::admin::{admin_routes, AdminSlot};
use crate::cluster_id::ClusterIdCheck;
use crate::config::GrpcConfig;
use crate::error::GrpcError;
use crate::inbound::RaftRpcService;
use crate::pb::raft_service_server::RaftServiceServer;

/// A running server.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    grace: Duration,
}

impl ServerHandle {
    /// Signals shutdown without waiting: the listener closes at once and
    /// open connections are drained in the background, cut after the grace
    /// period if a runtime is still around to do it.
    pub(crate) fn signal(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let grace = self.grace;
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let abort = task.abort_handle();
                        if tokio::time::timeout(grace, task).await.is_err() {
                            abort.abort();
                        }
                    });
                }
                Err(_) => task.abort(),
            }
        }
    }

    /// Signals shutdown and waits until the server has stopped (at most the
    /// grace period, then open connections are cut).
    pub(crate) async fn stop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            match tokio::time::timeout(self.grace, task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "grpc server task failed"),
                Err(_) => {
                    tracing::debug!("grpc server did not drain in time; cutting connections");
                    abort.abort();
                }
            }
        }
    }
}

/// The TLS settings of the server side, if any.
fn server_tls(config: &GrpcConfig) -> Option<ServerTlsConfig> {
    let tls = config.tls.as_ref()?;
    let identity = Identity::from_pem(&tls.server_identity.cert_pem, &tls.server_identity.key_pem);
    let mut server = ServerTlsConfig::new().identity(identity);
    if tls.require_client_cert {
        server = server.client_ca_root(Certificate::from_pem(&tls.ca_cert_pem)).client_auth_optional(false);
    }
    Some(server)
}

/// Binds `addr` and serves the raft service, the admin service over `admin`
/// and any `extra` routes until shutdown. Returns the bound address.
pub(crate) async fn start(
    addr: SocketAddr,
    config: &GrpcConfig,
    service: RaftRpcService,
    extra: Option<Routes>,
    admin: Option<AdminSlot>,
    shutdown: (watch::Sender<bool>, watch::Receiver<bool>),
) -> Result<(SocketAddr, ServerHandle), GrpcError> {
    let (shutdown_tx, mut shutdown_rx) = shutdown;
    let mut builder = Server::builder().tcp_nodelay(true);
    if let Some(tls) = server_tls(config) {
        builder = builder.tls_config(tls).map_err(|e| GrpcError::Tls(format!("server tls: {e}")))?;
    }
    let listener =
        TcpListener::bind(addr).await.map_err(|source| GrpcError::Bind { addr: addr.to_string(), source })?;
    let local = listener.local_addr().map_err(|source| GrpcError::Bind { addr: addr.to_string(), source })?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let limit = config.max_message_size;
    let raft =
        RaftServiceServer::new(service).max_decoding_message_size(limit).max_encoding_message_size(limit);
    let check = ClusterIdCheck::new(config.cluster_id.as_deref());
    let raft = InterceptedService::new(raft, check);
    let routes = match extra {
        Some(routes) => routes.add_service(raft),
        None => Routes::new(raft),
    };
    let routes = match admin {
        Some(slot) => routes.add_service(admin_routes(slot, config)),
        None => routes,
    };
    let router = builder.add_routes(routes);
    let signal = async move {
        let _ = shutdown_rx.wait_for(|down| *down).await;
    };
    let task = tokio::spawn(async move {
        if let Err(err) = router.serve_with_incoming_shutdown(incoming, signal).await {
            tracing::error!(error = %err, "grpc server stopped with an error");
        }
    });
    tracing::info!(addr = %local, tls = config.tls.is_some(), "raft grpc transport listening");
    Ok((local, ServerHandle { shutdown: shutdown_tx, task: Some(task), grace: config.shutdown_grace }))
}
