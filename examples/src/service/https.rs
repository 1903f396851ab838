//! HTTPS for the kv HTTP API of a node started with `--tls-dir`: rustls
//! (the `ring` provider tonic uses for the raft port) server and client
//! configurations built from the same three files as the raft port's
//! mutual TLS (`ca.pem`, `node.pem`, `node-key.pem`, see [`super::tls`]).
//!
//! - The server presents `node.pem` and *asks* every client for a
//!   certificate without requiring one: a client that presents a
//!   certificate must present one that verifies against `ca.pem` (any
//!   other fails the handshake), a client without one still gets in (and
//!   needs the join token for cluster changes). What the handshake proved
//!   reaches the handlers as a [`ClientIdentity`] request extension.
//! - The client (forwarding to the leader, `--join`, registration, `kv
//!   demo`) verifies servers against `ca.pem` (the address's host must be a
//!   name or IP address in the server's certificate) and presents
//!   `node.pem`, so a TLS cluster's nodes authenticate to each other by
//!   certificate and need no join token.
//!
//! Both sides speak HTTP/1.1 only (ALPN `http/1.1`).

use std::path::Path;
use std::sync::Arc;

pub use tokio_rustls::rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::error::NodeError;
use super::tls::{CA_FILE, CERT_FILE, KEY_FILE};

/// The only application protocol spoken: HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// What the connection a request arrived on proved about its client. The
/// server inserts one in every request's extensions; the `/cluster/*`
/// handlers accept [`ClientIdentity::Verified`] instead of the join token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientIdentity {
    /// A plain HTTP connection (the node runs without `--tls-dir`).
    #[default]
    PlainHttp,
    /// An HTTPS connection whose client presented no certificate.
    NoCertificate,
    /// An HTTPS connection whose client presented a certificate that
    /// verified against the cluster CA (`ca.pem`).
    Verified,
}

/// The HTTPS settings of a node, loaded from a `--tls-dir`; cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl HttpsConfig {
    /// Reads `dir`'s `ca.pem`, `node.pem` and `node-key.pem` into a server
    /// configuration (presents `node.pem`, asks for an optional client
    /// certificate verified against `ca.pem`) and a client configuration
    /// (trusts `ca.pem`, presents `node.pem`). Errors name the file at
    /// fault.
    pub fn load(dir: &Path) -> Result<Self, NodeError> {
        let ca_path = dir.join(CA_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let roots = Arc::new(root_store(&ca_path)?);
        let chain = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| {
                NodeError::Tls(format!("{}: cannot verify clients with it: {e}", ca_path.display()))
            })?;
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NodeError::Tls(format!("the TLS provider: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| pair_error(&cert_path, &key_path, e))?;
        server.alpn_protocols = vec![ALPN_HTTP1.to_vec()];

        let client =
            build_client(roots, Some((chain, key))).map_err(|e| pair_error(&cert_path, &key_path, e))?;
        Ok(Self { server: Arc::new(server), client })
    }

    /// The server side: what the node's HTTPS listener accepts with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The client side: trusts the cluster CA and presents the node's
    /// certificate (for [`ApiClient::with_tls`](super::client::ApiClient::with_tls)).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }
}

/// A client configuration for a node's HTTPS API: trusts the CA
/// certificates in the PEM file `ca`, and presents the certificate chain
/// and key in the PEM files `identity` if given (without one, cluster
/// changes need the join token). For tools and tests; nodes use
/// [`HttpsConfig::client_config`].
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, NodeError> {
    let roots = Arc::new(root_store(ca)?);
    match identity {
        Some((cert_path, key_path)) => {
            let pair = (read_certs(cert_path)?, read_key(key_path)?);
            build_client(roots, Some(pair)).map_err(|e| pair_error(cert_path, key_path, e))
        }
        None => build_client(roots, None).map_err(|e| NodeError::Tls(format!("client configuration: {e}"))),
    }
}

fn build_client(
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut client = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    client.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(client))
}

fn pair_error(cert: &Path, key: &Path, e: rustls::Error) -> NodeError {
    NodeError::Tls(format!(
        "{} with {}: {e} (is the key the certificate's, and a PKCS#8, PKCS#1 or SEC1 key?)",
        cert.display(),
        key.display()
    ))
}

fn read_file(path: &Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|e| NodeError::Tls(format!("cannot read {}: {e}", path.display())))
}

/// Every certificate in the PEM file `path` (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NodeError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeError::Tls(format!("{}: not a valid PEM certificate file: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(NodeError::Tls(format!(
            "{}: no certificate in it (expected a PEM `BEGIN CERTIFICATE` block)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in the PEM file `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, NodeError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| NodeError::Tls(format!("{}: no usable PEM private key in it: {e}", path.display())))
}

/// The CA certificates in the PEM file `path` as trust anchors.
fn root_store(path: &Path) -> Result<RootCertStore, NodeError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| NodeError::Tls(format!("{}: not a usable CA certificate: {e}", path.display())))?;
    }
    Ok(roots)
}

/// Whether the server-side TLS connection `conn` verified a client
/// certificate (the verifier refuses the handshake for one that does not
/// verify, so a certificate present here is a verified one).
pub(crate) fn identity_of(conn: &rustls::ServerConnection) -> ClientIdentity {
    match conn.peer_certificates() {
        Some(chain) if !chain.is_empty() => ClientIdentity::Verified,
        _ => ClientIdentity::NoCertificate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_bad_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = HttpsConfig::load(dir.path()).expect_err("empty dir").to_string();
        assert!(err.contains("ca.pem"), "{err}");
        std::fs::write(dir.path().join(CA_FILE), "not pem").expect("write");
        let err = HttpsConfig::load(dir.path()).expect_err("bad ca").to_string();
        assert!(err.contains("ca.pem") && err.contains("no certificate"), "{err}");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join(CA_FILE), garbage).expect("write");
        let err = HttpsConfig::load(dir.path()).expect_err("bad ca").to_string();
        assert!(err.contains("ca.pem"), "{err}");
    }
}
