//! `[gateway]`: the reverse proxy through which services call WeChat with
//! no token of their own (SPEC §10, `gateway`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, humantime_str};

/// `[gateway]`. Every timeout is explicit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// A request body up to this size (bytes) is kept, so a call WeChat
    /// refuses for its token (40001 / 40014 / 42001) is retried once with
    /// the newer token; a larger one is streamed and WeChat's reply returned
    /// unchanged.
    pub retry_body_limit: usize,
    /// The largest request body passed on (bytes).
    pub max_body: usize,
    /// Connecting to WeChat.
    #[serde(with = "humantime_str")]
    pub connect_timeout: Duration,
    /// A whole proxied call, body upload and download included.
    #[serde(with = "humantime_str")]
    pub timeout: Duration,
    /// Idle pooled connections kept per WeChat host.
    pub pool_idle_per_host: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            retry_body_limit: 64 << 10,
            max_body: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            pool_idle_per_host: 64,
        }
    }
}

impl GatewayConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let refuse = |key: &str, m: &str| Err(ConfigError::new(format!("gateway.{key}"), m));
        if self.max_body == 0 {
            return refuse("max_body", "must be greater than zero");
        }
        if self.retry_body_limit > self.max_body {
            return refuse("retry_body_limit", "must not exceed gateway.max_body");
        }
        if self.connect_timeout.is_zero() {
            return refuse("connect_timeout", "must be greater than zero");
        }
        if self.timeout < self.connect_timeout {
            return refuse("timeout", "must be at least gateway.connect_timeout");
        }
        Ok(())
    }
}
