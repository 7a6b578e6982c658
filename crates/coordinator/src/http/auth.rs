//! The app's own secret for the WeChat-compatible endpoints, compared in
//! constant time and never logged or echoed (bearer keys: `keys.rs`).

use subtle::ConstantTimeEq;

/// Constant-time equality of two secrets (length leaks, content does not).
pub fn secret_eq(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(secret_eq("abc", "abc") && !secret_eq("abc", "abd") && !secret_eq("abc", "abcd"));
    }
}
