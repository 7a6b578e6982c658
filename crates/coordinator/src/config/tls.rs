//! `[http] tls_cert`, `tls_key`, `tls_client_ca` (SPEC §10): the API
//! listener's TLS. Tokens cross the network on every read, so a listener
//! that is not bound to loopback should serve HTTPS. Read and checked here
//! (at start, so a bad file is exit 2 naming its key, and again on every
//! reload); served and re-read on change by `http::tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::ConfigError;

/// The files of one TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates: when set, every client must present a
    /// certificate signed by one of them (mTLS).
    pub client_ca: Option<PathBuf>,
}

fn unreadable(at: &str, path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(at, format!("cannot read {}: {e}", path.display()))
}

fn certificates(at: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(at, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(at, path, e))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            at,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads the files and builds the listener's rustls configuration
    /// (TLS 1.2 and 1.3, aws-lc-rs, HTTP/1.1 by ALPN). Errors name the
    /// `[http]` key of the file at fault.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ConfigError> {
        let chain = certificates("http.tls_cert", &self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| unreadable("http.tls_key", &self.key, e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|e| ConfigError::new("http.tls_cert", e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in certificates("http.tls_client_ca", path)? {
                    roots.add(ca).map_err(|e| {
                        ConfigError::new("http.tls_client_ca", format!("{}: {e}", path.display()))
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| ConfigError::new("http.tls_client_ca", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        // `with_single_cert` also checks that the key belongs to the
        // certificate, so a half-rotated pair is refused, not served.
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            ConfigError::new(
                "http.tls_key",
                format!(
                    "{} does not fit {}: {e}",
                    self.key.display(),
                    self.cert.display()
                ),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl super::HttpConfig {
    /// The listener's TLS files, if it serves HTTPS (checked by validation).
    pub fn tls(&self) -> Option<TlsFiles> {
        self.tls_files().ok().flatten()
    }

    pub(super) fn tls_files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )
    }
}

/// Checks the `[http]` TLS keys together: a certificate needs its key (and
/// the other way round), a client CA needs both.
fn files(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: client_ca.map(Path::to_owned),
        })),
        (Some(_), None) => Err(ConfigError::new(
            "http.tls_key",
            "tls_cert is set: give its private key too",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "http.tls_cert",
            "tls_key is set: give its certificate too",
        )),
        (None, None) if client_ca.is_some() => Err(ConfigError::new(
            "http.tls_client_ca",
            "client certificates need TLS: set tls_cert and tls_key",
        )),
        (None, None) => Ok(None),
    }
}
