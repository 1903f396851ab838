//! [`connect`]: an admin client for tools, speaking TLS and sending the
//! cluster id exactly as a peer transport with the same [`GrpcConfig`] would.

use raft::ServerAddress;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::pb::raft_admin_client::RaftAdminClient;
use crate::cluster_id::ClusterIdStamp;
use crate::config::GrpcConfig;
use crate::error::GrpcError;
use crate::pool::{client_tls, endpoint};

/// The generated admin client over a channel that stamps the cluster id.
pub type AdminClient = RaftAdminClient<InterceptedService<Channel, ClusterIdStamp>>;

/// Connects to the admin service of the node at `addr` (`host:port`), using
/// the TLS settings, timeouts and cluster id of `config`. The client side of
/// `config.tls` is used: its CA to verify the node and, for mutual TLS, its
/// `client_identity`.
pub async fn connect(addr: &str, config: &GrpcConfig) -> Result<AdminClient, GrpcError> {
    config.validate()?;
    let tls = client_tls(config)?;
    let addr = ServerAddress::new(addr);
    let endpoint = endpoint(&addr, config, tls.as_ref())
        .map_err(|e| GrpcError::InvalidAddress(format!("{addr}: {e}")))?;
    let channel = endpoint.connect().await.map_err(|e| GrpcError::Connect(format!("{addr}: {e}")))?;
    let limit = config.max_message_size;
    Ok(RaftAdminClient::with_interceptor(channel, ClusterIdStamp::new(config.cluster_id.as_deref())?)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit))
}
