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
    let channel =
        endpoint.connect().await.map_err(|e| GrpcError::Connect(format!("{addr}: {}", error_chain(&e))))?;
    let limit = config.max_message_size;
    Ok(RaftAdminClient::with_interceptor(channel, ClusterIdStamp::new(config.cluster_id.as_deref())?)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit))
}

/// `err` and its causes, joined with ": " (tonic's transport errors say
/// only "transport error" at the top; the cause is below).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_names_the_address_and_the_cause() {
        // A port nothing listens on: bind one, then free it.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
        let err = connect(&addr.to_string(), &GrpcConfig::default()).await.expect_err("nothing listens");
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.to_lowercase().contains("refused"), "the cause is named: {text}");
    }
}
