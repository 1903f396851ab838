//! Test certificates (rcgen): a CA, node certificates for loopback usable
//! as server and client, and `--tls-dir` directories.

use std::path::Path;

/// A certificate authority for tests.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A fresh self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("ca key");
        Self { issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign ca") }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `localhost` and `127.0.0.1` named `name`, usable
    /// as server and client, signed by this CA: `(cert PEM, key PEM)`.
    pub fn issue(&self, name: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("node params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign node cert");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `ca.pem`, `node.pem` and `node-key.pem` (a fresh certificate
    /// of this CA) into `dir`.
    pub fn write_tls_dir(&self, dir: &Path) {
        let (cert, key) = self.issue("kv node");
        std::fs::create_dir_all(dir).expect("tls dir");
        std::fs::write(dir.join("ca.pem"), self.pem()).expect("write ca.pem");
        std::fs::write(dir.join("node.pem"), cert).expect("write node.pem");
        std::fs::write(dir.join("node-key.pem"), key).expect("write node-key.pem");
    }
}

/// Writes a `--tls-dir` (ca.pem, node.pem, node-key.pem: a loopback
/// certificate usable as server and client, of a fresh CA) into `dir`.
pub fn write_tls_dir(dir: &Path) {
    TestCa::new("kv test CA").write_tls_dir(dir);
}
