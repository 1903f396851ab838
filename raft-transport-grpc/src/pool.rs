//! The outbound connection pool: per peer address, two lazily connected
//! HTTP/2 channels and a reconnect [`Backoff`].
//!
//! The two channels are separate TCP connections so latency-critical traffic
//! never queues behind bulk traffic in HTTP/2 flow control or the TCP send
//! buffer: [`Lane::Control`] carries heartbeats, votes, pre-votes and
//! TimeoutNow; [`Lane::Bulk`] carries AppendEntries with entries, pipelines
//! and snapshot streams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use raft::{ServerAddress, TransportError};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::backoff::{Backoff, Jitter};
use crate::cluster_id::ClusterIdStamp;
use crate::config::GrpcConfig;
use crate::error::{is_connection_failure, status_to_error, GrpcError};
use crate::pb::raft_service_client::RaftServiceClient;

/// The generated client over a pooled channel, stamping the cluster id.
pub(crate) type RaftClient = RaftServiceClient<InterceptedService<Channel, ClusterIdStamp>>;

/// Which of a peer's two connections a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Small, latency-critical RPCs.
    Control,
    /// Entries and snapshots.
    Bulk,
}

#[derive(Debug)]
struct Peer {
    control: Option<Channel>,
    bulk: Option<Channel>,
    backoff: Backoff,
}

/// Channels to every peer this node has called.
#[derive(Debug)]
pub(crate) struct Pool {
    config: GrpcConfig,
    tls: Option<ClientTlsConfig>,
    stamp: ClusterIdStamp,
    jitter: Jitter,
    closed: AtomicBool,
    peers: Mutex<HashMap<ServerAddress, Peer>>,
}

impl Pool {
    /// Creates an empty pool, checking the client TLS material eagerly so a
    /// bad certificate fails at bind time rather than on the first call.
    pub(crate) fn new(config: &GrpcConfig) -> Result<Self, GrpcError> {
        Ok(Self {
            config: config.clone(),
            tls: client_tls(config)?,
            stamp: ClusterIdStamp::new(config.cluster_id.as_deref())?,
            jitter: Jitter::new(),
            closed: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// A client for `addr` on `lane`, connecting lazily. Fails fast with
    /// [`TransportError::Unreachable`] while the peer is backed off and with
    /// [`TransportError::Closed`] after [`Pool::close`].
    pub(crate) fn client(&self, addr: &ServerAddress, lane: Lane) -> Result<RaftClient, TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let mut peers = self.lock();
        let peer = peers.entry(addr.clone()).or_insert_with(|| Peer {
            control: None,
            bulk: None,
            backoff: Backoff::new(self.config.backoff_initial, self.config.backoff_max),
        });
        if let Err(remaining) = peer.backoff.check(Instant::now()) {
            return Err(TransportError::Unreachable(
                addr.clone(),
                format!("backing off for {remaining:?} after {} failures", peer.backoff.failures()),
            ));
        }
        let slot = match lane {
            Lane::Control => &mut peer.control,
            Lane::Bulk => &mut peer.bulk,
        };
        let channel = match slot {
            Some(channel) => channel.clone(),
            None => {
                let channel = endpoint(addr, &self.config, self.tls.as_ref())?.connect_lazy();
                tracing::debug!(peer = %addr, ?lane, "opened lazy channel");
                *slot = Some(channel.clone());
                channel
            }
        };
        let limit = self.config.max_message_size;
        Ok(RaftServiceClient::with_interceptor(channel, self.stamp.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit))
    }

    /// Records that a call to `addr` got an answer.
    pub(crate) fn succeeded(&self, addr: &ServerAddress) {
        if let Some(peer) = self.lock().get_mut(addr) {
            peer.backoff.succeeded();
        }
    }

    /// Records that `addr` could not be reached (or did not answer in time).
    /// With `reset`, the peer's channels are dropped so the next call dials
    /// a fresh connection.
    pub(crate) fn failed(&self, addr: &ServerAddress, reset: bool) {
        let mut peers = self.lock();
        if let Some(peer) = peers.get_mut(addr) {
            let delay = peer.backoff.failed(Instant::now(), &self.jitter);
            if reset {
                peer.control = None;
                peer.bulk = None;
            }
            tracing::debug!(peer = %addr, failures = peer.backoff.failures(), ?delay, reset, "peer failed; backing off");
        }
    }

    /// Converts a failed call's status into the caller's error and feeds it
    /// into the peer's back-off: timeouts back off, connection failures also
    /// drop the peer's channels, answers from a live peer (even refusals)
    /// leave it healthy.
    pub(crate) fn on_status(&self, addr: &ServerAddress, status: &tonic::Status) -> TransportError {
        let err = status_to_error(addr, status);
        if matches!(err, TransportError::Timeout(_)) {
            self.failed(addr, false);
        } else if is_connection_failure(status) {
            self.failed(addr, true);
        }
        err
    }

    /// Drops every channel; later calls fail with [`TransportError::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerAddress, Peer>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single assignment.
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The client TLS settings of `config`, with the PEMs parsed eagerly.
pub(crate) fn client_tls(config: &GrpcConfig) -> Result<Option<ClientTlsConfig>, GrpcError> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca_cert_pem));
    if let Some(id) = &t.client_identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    if let Some(name) = &t.domain_name {
        tls = tls.domain_name(name.clone());
    }
    // Parse the PEMs now by building a throwaway endpoint.
    Endpoint::from_static("https://localhost:1")
        .tls_config(tls.clone())
        .map_err(|e| GrpcError::Tls(format!("client tls: {e}")))?;
    Ok(Some(tls))
}

/// The endpoint for a peer address (`host:port`, or a full `http(s)://` URI).
pub(crate) fn endpoint(
    addr: &ServerAddress,
    config: &GrpcConfig,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, TransportError> {
    let raw = addr.as_str();
    let uri = if raw.contains("://") {
        raw.to_owned()
    } else if tls.is_some() {
        format!("https://{raw}")
    } else {
        format!("http://{raw}")
    };
    let bad =
        |e: tonic::transport::Error| TransportError::Unreachable(addr.clone(), format!("bad address: {e}"));
    let mut endpoint =
        Endpoint::from_shared(uri).map_err(bad)?.connect_timeout(config.connect_timeout).tcp_nodelay(true);
    if let Some(interval) = config.keepalive_interval {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(config.rpc_timeout)
            .keep_alive_while_idle(true);
    }
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(bad)?;
    }
    Ok(endpoint)
}
