//! [`GrpcConfig`]: timeouts, limits, back-off, cluster id and TLS settings of
//! a [`GrpcTransport`](crate::GrpcTransport), with HashiCorp-like defaults and
//! [`GrpcConfig::validate`].

use std::path::Path;
use std::time::Duration;

use raft::ServerAddress;

use crate::error::GrpcError;

/// Room left in a message for everything but a snapshot chunk's payload.
const CHUNK_OVERHEAD: usize = 1024;

/// Settings of a [`GrpcTransport`](crate::GrpcTransport).
///
/// ```
/// use std::time::Duration;
/// use raft_transport_grpc::GrpcConfig;
///
/// let config = GrpcConfig {
///     rpc_timeout: Duration::from_secs(2),
///     cluster_id: Some("orders-prod".into()),
///     ..GrpcConfig::default()
/// };
/// config.validate().expect("valid");
/// ```
#[derive(Clone, Debug)]
pub struct GrpcConfig {
    /// The address peers reach this node at, returned by
    /// [`local_addr`](raft::Transport::local_addr). `None` means the bound
    /// socket address, which is what you want unless you bind `0.0.0.0` or
    /// sit behind NAT.
    pub advertise_addr: Option<ServerAddress>,
    /// How long establishing a TCP (and TLS) connection to a peer may take.
    pub connect_timeout: Duration,
    /// Deadline of every unary RPC (AppendEntries, votes, TimeoutNow), and
    /// the longest a pipelined AppendEntries may wait for its response.
    pub rpc_timeout: Duration,
    /// Deadline of an InstallSnapshot stream, measured separately for the
    /// stream opening, each chunk sent and the final response, so large
    /// snapshots are not cut short while a stuck peer still fails.
    pub snapshot_timeout: Duration,
    /// Largest encoded message accepted or sent, in bytes. Larger inbound
    /// messages are refused by the server (`OUT_OF_RANGE` from the codec);
    /// larger outbound ones fail locally. The node learns it through
    /// [`Transport::max_message_size`](raft::Transport::max_message_size):
    /// it cuts AppendEntries to fit and refuses larger commands with
    /// [`Error::CommandTooLarge`](raft::Error::CommandTooLarge), so this
    /// bounds the largest command (a little under it, see
    /// [`Raft::max_command_size`](raft::Raft::max_command_size)). Every node
    /// of a cluster should use the same value. Default 64 MiB.
    pub max_message_size: usize,
    /// Size of the data chunks an outbound snapshot is cut into. Must leave
    /// room for framing below `max_message_size`.
    pub snapshot_chunk_size: usize,
    /// Capacity of the channel of inbound RPCs handed to the node.
    pub inbound_queue: usize,
    /// How many requests a pipeline queues before `send` waits.
    pub pipeline_depth: usize,
    /// First delay before reconnecting to a peer that failed.
    pub backoff_initial: Duration,
    /// Cap on the reconnect delay; it doubles per consecutive failure up to
    /// this, with random jitter of up to half the delay.
    pub backoff_max: Duration,
    /// HTTP/2 keep-alive ping interval on client connections; `None` disables pings.
    pub keepalive_interval: Option<Duration>,
    /// Shared cluster name sent as `x-raft-cluster-id` metadata on every RPC.
    /// A server refuses a caller whose id differs from its own (including
    /// one side having an id and the other none) with `PERMISSION_DENIED`, so
    /// two clusters on one network cannot talk to each other by mistake.
    pub cluster_id: Option<String>,
    /// TLS settings; `None` means plaintext HTTP/2.
    pub tls: Option<TlsConfig>,
    /// How long [`GrpcTransport::shutdown`](crate::GrpcTransport::shutdown)
    /// waits for open connections to finish before cutting them.
    pub shutdown_grace: Duration,
    /// Serve the [admin service](crate::admin) on the transport's port
    /// (behind the same TLS and cluster id check). Default on.
    pub admin_service: bool,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            advertise_addr: None,
            connect_timeout: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(5),
            snapshot_timeout: Duration::from_secs(30),
            max_message_size: 64 * 1024 * 1024,
            snapshot_chunk_size: 1024 * 1024,
            inbound_queue: 256,
            pipeline_depth: 128,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            keepalive_interval: Some(Duration::from_secs(10)),
            cluster_id: None,
            tls: None,
            shutdown_grace: Duration::from_secs(2),
            admin_service: true,
        }
    }
}

impl GrpcConfig {
    /// Checks that the settings are usable together.
    pub fn validate(&self) -> Result<(), GrpcError> {
        let invalid = |msg: &str| Err(GrpcError::InvalidConfig(msg.to_owned()));
        if self.connect_timeout.is_zero() || self.rpc_timeout.is_zero() || self.snapshot_timeout.is_zero() {
            return invalid("timeouts must be greater than zero");
        }
        if self.max_message_size < 4096 {
            return invalid("max_message_size must be at least 4096 bytes");
        }
        if self.snapshot_chunk_size == 0 || self.snapshot_chunk_size + CHUNK_OVERHEAD > self.max_message_size
        {
            return invalid("snapshot_chunk_size must be non-zero and at least 1 KiB below max_message_size");
        }
        if self.inbound_queue == 0 || self.pipeline_depth == 0 {
            return invalid("inbound_queue and pipeline_depth must be non-zero");
        }
        if self.backoff_initial > self.backoff_max {
            return invalid("backoff_initial must not exceed backoff_max");
        }
        if let Some(id) = &self.cluster_id {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return invalid("cluster_id must be non-empty printable ASCII");
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }
}

/// A PEM-encoded certificate chain and its private key.
#[derive(Clone)]
pub struct PemIdentity {
    /// The certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The private key of the leaf certificate.
    pub key_pem: Vec<u8>,
}

impl PemIdentity {
    /// Wraps PEM bytes already in memory.
    pub fn new(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self { cert_pem: cert_pem.into(), key_pem: key_pem.into() }
    }

    /// Reads the certificate chain and key from PEM files.
    pub fn from_files(cert_path: impl AsRef<Path>, key_path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Self { cert_pem: std::fs::read(cert_path)?, key_pem: std::fs::read(key_path)? })
    }
}

impl std::fmt::Debug for PemIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("PemIdentity").field("cert_pem_len", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

/// TLS (rustls) settings. One node usually plays both roles: it serves with
/// `server_identity` and, under mutual TLS, calls peers with `client_identity`.
///
/// ```
/// # fn load() -> std::io::Result<()> {
/// use raft_transport_grpc::{PemIdentity, TlsConfig};
///
/// let ca = std::fs::read("ca.pem")?;
/// let node = PemIdentity::from_files("node1.pem", "node1.key")?;
/// let tls = TlsConfig::mutual(ca, node);
/// # let _ = tls; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// The certificate and key this node's server presents.
    pub server_identity: PemIdentity,
    /// The certificate and key this node presents when calling a peer
    /// (mutual TLS). Required when the peers set `require_client_cert`.
    pub client_identity: Option<PemIdentity>,
    /// PEM bundle of the CA certificates to trust: peers' server certificates
    /// are verified against it and, with `require_client_cert`, so are
    /// callers' client certificates.
    pub ca_cert_pem: Vec<u8>,
    /// Refuse callers that do not present a certificate signed by the CA.
    pub require_client_cert: bool,
    /// Name expected in peers' server certificates. `None` uses the host part
    /// of the peer's address (a DNS name or an IP address SAN).
    pub domain_name: Option<String>,
}

impl TlsConfig {
    /// Server-authenticated TLS: peers verify this node's certificate, callers
    /// are not asked for one.
    pub fn server_only(ca_cert_pem: impl Into<Vec<u8>>, server_identity: PemIdentity) -> Self {
        Self {
            server_identity,
            client_identity: None,
            ca_cert_pem: ca_cert_pem.into(),
            require_client_cert: false,
            domain_name: None,
        }
    }

    /// Mutual TLS with one certificate per node used for both roles: the node
    /// serves with `identity`, calls peers with it, and refuses callers
    /// without a certificate signed by the CA.
    pub fn mutual(ca_cert_pem: impl Into<Vec<u8>>, identity: PemIdentity) -> Self {
        Self {
            server_identity: identity.clone(),
            client_identity: Some(identity),
            ca_cert_pem: ca_cert_pem.into(),
            require_client_cert: true,
            domain_name: None,
        }
    }

    fn validate(&self) -> Result<(), GrpcError> {
        let bad = |msg: &str| Err(GrpcError::Tls(msg.to_owned()));
        if self.ca_cert_pem.is_empty() {
            return bad("ca_cert_pem is empty");
        }
        if self.server_identity.cert_pem.is_empty() || self.server_identity.key_pem.is_empty() {
            return bad("server certificate or key is empty");
        }
        if let Some(client) = &self.client_identity {
            if client.cert_pem.is_empty() || client.key_pem.is_empty() {
                return bad("client certificate or key is empty");
            }
        }
        Ok(())
    }
}
