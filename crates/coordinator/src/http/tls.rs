//! The API listener's TLS (SPEC §10): the rustls configuration in force,
//! swapped whole when `[http] tls_cert`, `tls_key` or `tls_client_ca`
//! change on disk (see [`super::reload`]), so a renewed certificate is
//! served to new connections without a restart and open ones keep theirs.
//! With `tls_client_ca`, the handshake demands a client certificate signed
//! by that CA, and its subject CN ([`client_cn`]) names the key the
//! connection stands for.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::reload::{Reloadable, modified};
use crate::config::ConfigError;
use crate::config::tls::TlsFiles;

/// The TLS configuration of one listener, reloadable.
pub struct TlsListener {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Reads the files (errors name the `[http]` key at fault).
    pub fn new(files: TlsFiles) -> Result<Self, ConfigError> {
        let config = files.server_config()?;
        Ok(Self {
            files,
            current: ArcSwap::new(config),
        })
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

impl Reloadable for TlsListener {
    fn what(&self) -> &'static str {
        "TLS certificate"
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        let f = &self.files;
        let mut out = vec![modified(&f.cert), modified(&f.key)];
        if let Some(ca) = &f.client_ca {
            out.push(modified(ca));
        }
        out
    }

    fn reload(&self) -> Result<(), ConfigError> {
        self.current.store(self.files.server_config()?);
        Ok(())
    }
}

/// The subject CN of the certificate a client was verified with, if any.
pub fn client_cn(conn: &rustls::ServerConnection) -> Option<Arc<str>> {
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(Arc::from(cn))
}
