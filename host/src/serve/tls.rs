//! HTTPS on the listener: the certificate chain and key read from PEM files,
//! and the handshake that comes before a connection is served.
//!
//! TLS 1.2 and 1.3 (rustls' defaults, ring's ciphers), `http/1.1` by ALPN. A
//! client gets as long to finish its handshake as it gets to send a request's
//! headers; one that is slower, or speaks plain HTTP to the port, is closed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

/// What the listener needs to speak TLS.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

/// Why the certificate or key cannot be used. Never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("TLS certificate {path}: {why}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The key file is unreadable or holds no private key.
    #[error("TLS key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the pair (the key does not match the certificate, or
    /// is of a kind it does not take).
    #[error("TLS certificate {cert} and key {key} cannot be used together: {why}")]
    Pair {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        why: String,
    },
}

impl Tls {
    /// Reads the chain (leaf first) from `cert` and the key (PKCS#8, PKCS#1
    /// or SEC1) from `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let certificate = |why: String| TlsError::Certificate { path: cert.display().to_string(), why };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| certificate(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(certificate("holds no PEM certificate".into()));
        }
        // The parser's own error may quote the file's bytes: say only what kind of failure it was.
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            why: match e {
                rustls_pki_types::pem::Error::NoItemsFound => "holds no PEM private key".into(),
                rustls_pki_types::pem::Error::Io(e) => e.to_string(),
                _ => "is not a readable PEM private key".into(),
            },
        })?;
        let pair =
            |why: String| TlsError::Pair { cert: cert.display().to_string(), key: key.display().to_string(), why };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| pair(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| pair(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    /// The handshake on an accepted connection, within `patience`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        patience: Duration,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
        match tokio::time::timeout(patience, self.0.accept(stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err(format!("TLS handshake not finished within {patience:?}")),
        }
    }
}
