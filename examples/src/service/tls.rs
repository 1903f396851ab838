//! Loading a TLS directory: `ca.pem` (the CA that signs every node),
//! `node.pem` (this node's certificate chain) and `node-key.pem` (its key).
//! The same certificate serves the raft port and authenticates the node to
//! its peers (mutual TLS); `raftctl` presents it too. The HTTP API uses the
//! same files for HTTPS ([`super::https`]).

use std::path::Path;

use raft_transport_grpc::{PemIdentity, TlsConfig};

use super::error::NodeError;

/// File name of the CA certificate in a TLS directory.
pub const CA_FILE: &str = "ca.pem";
/// File name of the node certificate in a TLS directory.
pub const CERT_FILE: &str = "node.pem";
/// File name of the node private key in a TLS directory.
pub const KEY_FILE: &str = "node-key.pem";

/// Reads `dir` into a mutual-TLS configuration.
pub fn load_tls_dir(dir: &Path) -> Result<TlsConfig, NodeError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| NodeError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let ca = read(CA_FILE)?;
    let identity = PemIdentity::new(read(CERT_FILE)?, read(KEY_FILE)?);
    Ok(TlsConfig::mutual(ca, identity))
}
