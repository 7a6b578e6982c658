//! Connections of the coordinator: the shared [`RedisPool`] of the client
//! crate (any topology, explicit timeouts), built from `[redis]`, plus the
//! error type every store call returns.

use std::time::Duration;

use wxtoken_client::connect::{PoolError, RedisPool, RedisTarget, Topology, split_urls};

use crate::config::{RedisConfig, RedisMode};

/// Why a store call failed. None of these carry a token, secret or password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(String),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

impl StoreError {
    /// True when the call may succeed if retried later (Redis down, slow, failing over).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Redis(e) => {
                e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_io_error()
            }
            Self::Pool(_) => true,
            Self::Reply(_) => false,
        }
    }
}

impl From<redis::ParsingError> for StoreError {
    fn from(e: redis::ParsingError) -> Self {
        Self::Reply(e.to_string())
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Redis(e) => Self::Redis(e),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// The Redis deployment `[redis]` describes.
pub fn target(r: &RedisConfig) -> RedisTarget {
    RedisTarget {
        urls: split_urls(r.url.expose_secret()),
        topology: match r.mode {
            RedisMode::Standalone => Topology::Standalone,
            RedisMode::Sentinel => Topology::Sentinel {
                master: r.sentinel_master.clone().unwrap_or_default(),
            },
            RedisMode::Cluster => Topology::Cluster,
        },
        ca_file: r.ca_file.clone(),
        connect_timeout: r.connect_timeout,
        response_timeout: r.command_timeout,
    }
}

/// Builds the pool (connects lazily).
pub fn connect_pool(r: &RedisConfig) -> Result<RedisPool, StoreError> {
    let wait: Duration = r.pool_wait_timeout;
    Ok(RedisPool::new(target(r), r.pool_size, wait)?)
}
