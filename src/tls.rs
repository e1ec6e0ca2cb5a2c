//! TLS for the SCIM listener: a certificate chain and key read from PEM files, swapped on
//! SIGHUP without touching open connections (each connection keeps the configuration it
//! shook hands with; only new handshakes see the new certificate).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read certificate chain: {message}")]
    Certificates { path: PathBuf, message: String },
    #[error("{path}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)")]
    NoCertificate { path: PathBuf },
    #[error(
        "{path}: cannot read private key (expected one PEM PKCS#8, PKCS#1 or SEC1 key): {message}"
    )]
    Key { path: PathBuf, message: String },
    #[error("{cert} / {key}: the certificate and key do not form a usable pair: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The server's TLS configuration, replaceable while serving.
pub struct ReloadableTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableTls {
    /// Reads both files; an error here stops start-up.
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<ReloadableTls, TlsError> {
        let config = server_config(&cert_file, &key_file)?;
        Ok(ReloadableTls {
            cert_file,
            key_file,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-reads both files. On error the certificate in use stays, so a botched renewal
    /// never takes the endpoint down.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.cert_file, &self.key_file)?);
        match self.current.write() {
            Ok(mut current) => *current = config,
            // A poisoned lock only means a panic elsewhere while holding it; the Arc inside
            // is still whole, so replace it all the same.
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// An acceptor for one new connection, with the certificate current right now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }
}

fn server_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert_file.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
        path: key_file.to_path_buf(),
        message: e.to_string(),
    })?;
    let pair = |source| TlsError::Pair {
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(pair)?;
    // The server speaks HTTP/1.1 only; saying so lets clients skip an h2 attempt.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
