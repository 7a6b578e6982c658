//! What to connect to: the deployment's topology and URLs, TLS roots and
//! timeouts, and the redis-rs clients and connection settings built from
//! them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, IntoConnectionInfo, TlsCertificates};

/// How the Redis deployment is organised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a proxy in front of several).
    Standalone,
    /// The URLs are Sentinels; connect to the master they name.
    Sentinel { master: String },
    /// The URLs are seed nodes of a Redis Cluster.
    Cluster,
}

/// Where Redis is and how to talk to it. `Debug` hides passwords.
#[derive(Clone)]
pub struct RedisTarget {
    /// One URL (standalone), the Sentinels, or cluster seed nodes.
    /// `redis://`, `rediss://` (TLS), `redis+unix://`, `unix://`.
    pub urls: Vec<String>,
    pub topology: Topology,
    /// PEM file of the CA that signed the servers' certificates (TLS), when
    /// the system trust store should not be used.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("nodes", &self.urls.len())
            .field("topology", &self.topology)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl RedisTarget {
    /// A standalone server at `url` (a comma-separated list is split).
    pub fn standalone(url: &str) -> Self {
        Self {
            urls: split_urls(url),
            topology: Topology::Standalone,
            ca_file: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
        }
    }

    pub(super) fn certs(&self) -> redis::RedisResult<Option<TlsCertificates>> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "cannot read redis.ca_file",
                format!("{}: {e}", path.display()),
            ))
        })?;
        Ok(Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }

    pub(super) fn standalone_client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        match self.certs()? {
            Some(certs) => redis::Client::build_with_tls(url, certs),
            None => redis::Client::open(url),
        }
    }

    /// A Sentinel client for `master`; credentials, db and TLS of the first
    /// URL apply to the master too.
    pub(super) fn sentinel_client(&self, master: &str) -> redis::RedisResult<SentinelClient> {
        let first = self.urls.first().cloned().unwrap_or_default();
        let info = first.as_str().into_connection_info()?;
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(info.redis_settings().clone());
        if first.starts_with("rediss://") {
            node = node.set_tls_mode(redis::TlsMode::Secure);
        }
        SentinelClient::build(
            self.urls.clone(),
            master,
            Some(node),
            SentinelServerType::Master,
        )
    }

    pub(super) fn conn_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }
}

/// Splits `a,b,c` into URLs, trimming blanks.
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}
