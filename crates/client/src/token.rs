//! [`Token`]: the access token a service is handed, with its expiry and the
//! generation (fence number) of the refresh that produced it.
//!
//! The value is copied inline when it fits 192 bytes (WeChat's tokens are
//! about 140–160 characters today), so handing a cached token to many threads
//! touches no shared counter: two threads reading the same token never
//! contend on a reference count. Longer values (WeChat reserves up to 512)
//! fall back to a shared `Arc<str>`. `Debug` never shows the value.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Inline capacity: covers today's tokens while keeping `Token` small enough
/// that the copies a call makes stay cheap.
const INLINE: usize = 192;

// The size difference is the point: copying 200 bytes is cheaper than two
// threads fighting over one reference count.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Value {
    Inline { len: u16, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Value {
    fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Self::Inline {
                len: s.len() as u16,
                bytes,
            }
        } else {
            Self::Shared(Arc::from(s))
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Built from a `&str` and cut at its length: always valid UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Shared(s) => s,
        }
    }
}

/// A WeChat access token as served by the fleet.
#[derive(Clone)]
pub struct Token {
    value: Value,
    expires_at: Instant,
    generation: u64,
}

impl Token {
    pub(crate) fn new(value: &str, expires_at: Instant, generation: u64) -> Self {
        Self {
            value: Value::new(value),
            expires_at,
            generation,
        }
    }

    /// The token to put in `access_token=`.
    pub fn value(&self) -> &str {
        self.value.as_str()
    }

    /// When the token stops working (measured conservatively from when the
    /// read was sent to Redis).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Time left now.
    pub fn ttl(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }

    /// The fence number of the refresh that stored it: higher is newer.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[redacted]")
            .field("ttl", &self.ttl())
            .field("generation", &self.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_shared_values_round_trip() {
        let at = Instant::now() + Duration::from_secs(5);
        let short = Token::new("ACCESS_TOKEN_1", at, 3);
        assert_eq!(short.value(), "ACCESS_TOKEN_1");
        assert_eq!(short.generation(), 3);
        let long_value = "x".repeat(600);
        let long = Token::new(&long_value, at, 4);
        assert_eq!(long.value(), long_value);
        let exact = "y".repeat(INLINE);
        assert_eq!(Token::new(&exact, at, 5).value(), exact);
        assert!(short.ttl() <= Duration::from_secs(5));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let t = Token::new("SECRET_ACCESS_TOKEN", Instant::now(), 1);
        assert!(!format!("{t:?}").contains("SECRET_ACCESS_TOKEN"));
    }
}
