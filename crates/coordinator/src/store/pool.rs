//! Connections to Redis: a deadpool of multiplexed connections with explicit
//! timeouts (deadpool waits forever unless told), plus the error type every
//! store call returns.
//!
//! Topology choice (standalone today) lives here and nowhere else.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, PoolError, Runtime};
use redis::AsyncConnectionConfig;

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
            PoolError::Backend(e) => Self::Redis(e),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// Timeouts and size of the pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub wait_timeout: Duration,
}

/// Builds a pool (lazily connecting) and a plain client for pub/sub.
pub fn connect_pool(url: &str, s: &PoolSettings) -> Result<(Pool, redis::Client), StoreError> {
    let client = redis::Client::open(url)?;
    let conn_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(s.connect_timeout))
        .set_response_timeout(Some(s.command_timeout));
    let manager = Manager::new_with_config(url, conn_config)?;
    let pool = Pool::builder(manager)
        .max_size(s.size)
        .wait_timeout(Some(s.wait_timeout))
        .create_timeout(Some(s.connect_timeout))
        .recycle_timeout(Some(s.command_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    Ok((pool, client))
}
