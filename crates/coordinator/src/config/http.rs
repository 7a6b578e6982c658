//! `[http]`: the API listener, its keys, TLS and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::formats::humantime_str;
use super::{ConfigError, Env, SecretRef, keys};

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Where the bearer API keys are; read on demand by [`HttpConfig::api_keys`]
    /// so a rotated key file is picked up without reloading the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<SecretRef>,
    /// `[[http.keys]]`: scoped keys (ids, operations, API paths).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<keys::KeyEntry>,
    /// A TOML file of `[[keys]]` entries, re-read on SIGHUP and when it
    /// changes (rotation without a restart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_file: Option<PathBuf>,
    /// A separate listener for `/metrics`, when it must not share `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain: `listen` serves HTTPS (re-read when it changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate signed by
    /// one of them (mTLS); a key with `client_cn` is the certificate's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    #[serde(with = "humantime_str")]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long `GET …/access_token` waits for a refresh when there is no token yet.
    #[serde(with = "humantime_str")]
    pub token_wait: Duration,
    /// A client must send a complete request head within this, both on a
    /// new connection and between requests on a kept-alive one (so it is
    /// also the idle keep-alive timeout); slow or idle clients are cut off.
    #[serde(with = "humantime_str")]
    pub header_read_timeout: Duration,
    /// Connections open at once per listener; beyond, new clients wait in
    /// the kernel's accept backlog until one closes.
    pub max_connections: usize,
    /// Threads serving the API listener's connections, each with a runtime
    /// of its own (`crate::workers`): a request, its handler and the
    /// gateway's upstream call stay on one thread. Default: one per CPU;
    /// 0 serves them on the main runtime.
    pub workers: usize,
    /// Failed secret checks on `/cgi-bin/token` and `/cgi-bin/stable_token`
    /// one client address may make a minute (IPv6: per /64); beyond, it is
    /// answered 45011 without its secret being checked.
    pub secret_failures_per_minute: u32,
    /// Failed secret checks for one appid a minute, from all addresses
    /// together; beyond, addresses that failed recently are refused for that
    /// appid (callers that never fail are still served).
    pub secret_failures_per_minute_per_app: u32,
    /// Metrics carry per-credential series (the `app` label, token TTL and
    /// quota gauges) only while the replica serves at most this many
    /// credentials; above, counters are summed as `app="_all"`.
    pub per_app_metrics_limit: usize,
}

impl HttpConfig {
    /// The connection limits of the API listener.
    pub fn conn_limits(&self) -> crate::http::ConnLimits {
        crate::http::ConnLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            name: "api",
            workers: self.workers,
        }
    }

    /// The limits of the separate `/metrics` listener: served on the main
    /// runtime (a scrape every few seconds needs no worker of its own).
    pub fn metrics_conn_limits(&self) -> crate::http::ConnLimits {
        crate::http::ConnLimits {
            name: "metrics",
            workers: 0,
            ..self.conn_limits()
        }
    }

    /// Reads the API keys now (one per non-empty line of a file, comma-separated
    /// in an env var); empty when `api_keys` is not set.
    pub fn api_keys(&self) -> Result<Vec<SecretString>, ConfigError> {
        self.api_keys_in(&Env::process())
    }

    /// [`HttpConfig::api_keys`] with env references looked up in `env`.
    pub fn api_keys_in(&self, env: &Env) -> Result<Vec<SecretString>, ConfigError> {
        let Some(source) = &self.api_keys else {
            return Ok(Vec::new());
        };
        source
            .resolve_list(env)
            .map_err(|m| ConfigError::new("http.api_keys", m))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8088)),
            api_keys: None,
            keys: Vec::new(),
            keys_file: None,
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            request_timeout: Duration::from_secs(5),
            body_limit: 64 * 1024,
            token_wait: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            workers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::workers::MAX_WORKERS),
            secret_failures_per_minute: 10,
            secret_failures_per_minute_per_app: 60,
            per_app_metrics_limit: 1000,
        }
    }
}
