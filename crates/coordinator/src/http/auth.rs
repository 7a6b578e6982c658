//! The app's own secret for the WeChat-compatible endpoints, compared in
//! constant time and never logged or echoed (bearer keys: `keys.rs`).

use subtle::ConstantTimeEq;

/// Constant-time equality of two secrets (length leaks, content does not).
pub fn secret_eq(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Whether `given` is `app`'s secret or its stand-in `compat_secret` (both
/// compared in constant time, both always).
pub fn app_accepts(app: &crate::config::AppConfig, given: &str) -> bool {
    use secrecy::ExposeSecret;
    // A followed app without its secret accepts only the stand-in (an
    // empty string must never match an absent secret).
    let real = app
        .secret()
        .is_some_and(|s| secret_eq(given, s.expose_secret()));
    let stand_in = app
        .compat_secret
        .as_ref()
        .is_some_and(|c| secret_eq(given, c.expose_secret()));
    real | stand_in
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(secret_eq("abc", "abc") && !secret_eq("abc", "abd") && !secret_eq("abc", "abcd"));
    }
}
