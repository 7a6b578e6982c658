//! The client's error type: what went wrong and what the caller can do.

use std::time::Duration;

/// Why no token could be handed out.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No valid token is available now: none is stored and none arrived
    /// within the wait, or Redis is unreachable and the cached token expired.
    /// Retry later; the fleet refills by itself.
    #[error("no valid token for {id}: {reason}")]
    Unavailable { id: String, reason: String },
    /// The id is not a valid credential id.
    #[error(transparent)]
    InvalidId(#[from] wxtoken_common::InvalidId),
    /// Nothing newer than the given generation arrived in time.
    #[error("no token newer than generation {generation} for {id} within {waited:?}")]
    NoNewerToken {
        id: String,
        generation: u64,
        waited: Duration,
    },
    /// Redis answered something this client cannot use (e.g. a foreign writer).
    #[error("redis: {0}")]
    Redis(String),
}

impl ClientError {
    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::NoNewerToken { .. } | Self::Redis(_)
        )
    }
}
