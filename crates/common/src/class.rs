//! WeChat error classes (SPEC §1): what the coordinator does about a failed fetch.
//!
//! This module maps an `errcode` from a token fetch to an [`ErrorClass`]; the
//! coordinator's policy loop turns classes into back-off. Transport failures
//! (timeouts, 5xx, unparsable bodies) are classified by the caller as
//! [`ErrorClass::Retryable`]; this module only knows WeChat's numbers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What to do after a token fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// Transient (-1 busy, 5xx, timeout, garbage): back off exponentially with jitter.
    Retryable,
    /// 45011 per-minute limit: wait for the next minute.
    RateLimited,
    /// 45009 daily quota gone: no more calls until the next quota day.
    QuotaExhausted,
    /// Configuration is wrong (bad secret, IP not whitelisted, …): one try per `fatal_cooldown`.
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Fatal => "fatal",
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a non-zero `errcode` returned by `cgi-bin/token`, `stable_token`
/// or WeCom `gettoken`.
///
/// Codes SPEC §1 does not list are treated as retryable: back-off (capped at
/// 60 s) bounds their cost, while calling them fatal could leave a fleet
/// without a token for a transient condition WeChat added later.
pub fn classify_fetch_errcode(errcode: i64) -> ErrorClass {
    match errcode {
        -1 => ErrorClass::Retryable,
        45011 => ErrorClass::RateLimited,
        45009 => ErrorClass::QuotaExhausted,
        40001 | 40002 | 40013 | 40125 | 40164 | 40243 | 41002 | 41004 | 43002 => ErrorClass::Fatal,
        89500..=89599 => ErrorClass::Fatal,
        _ => ErrorClass::Retryable,
    }
}

/// True when an API call's `errcode` says the token it carried is no good:
/// 40001 / 40014 (invalid or not latest) and 42001 (expired). The remedy is
/// invalidate-by-value and a retry with the newer token.
pub fn is_token_rejected(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table() {
        assert_eq!(classify_fetch_errcode(-1), ErrorClass::Retryable);
        assert_eq!(classify_fetch_errcode(45011), ErrorClass::RateLimited);
        assert_eq!(classify_fetch_errcode(45009), ErrorClass::QuotaExhausted);
        for fatal in [
            40001, 40002, 40013, 40125, 40164, 40243, 41002, 41004, 43002, 89503, 89506,
        ] {
            assert_eq!(classify_fetch_errcode(fatal), ErrorClass::Fatal, "{fatal}");
        }
        assert_eq!(classify_fetch_errcode(12345), ErrorClass::Retryable);
    }

    #[test]
    fn token_rejections() {
        for code in [40001, 40014, 42001] {
            assert!(is_token_rejected(code));
        }
        for code in [0, -1, 41001, 45009, 40125] {
            assert!(!is_token_rejected(code));
        }
    }

    #[test]
    fn class_names_are_snake_case_in_json() {
        assert_eq!(
            serde_json::to_string(&ErrorClass::QuotaExhausted).unwrap(),
            "\"quota_exhausted\""
        );
        assert_eq!(ErrorClass::RateLimited.to_string(), "rate_limited");
    }
}
