//! Authentication of the HTTP API: bearer API keys for the JSON API, the
//! app's own secret for the WeChat-compatible endpoints. Both compare in
//! constant time; neither ever logs or echoes what it was given.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::HttpState;
use super::error::ApiFailure;

/// Extractor: the request carries an accepted API key ([`check_bearer`]).
/// Reads the header in place; a `HeaderMap` argument would copy every header
/// of every request.
#[derive(Debug)]
pub struct ApiKey;

impl FromRequestParts<HttpState> for ApiKey {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiFailure> {
        check_bearer(&parts.headers, &state.api_keys).map(|()| ApiKey)
    }
}

/// Constant-time equality of two secrets (length leaks, content does not).
pub fn secret_eq(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Checks `Authorization: Bearer <key>` against the configured keys.
pub fn check_bearer(headers: &HeaderMap, keys: &[SecretString]) -> Result<(), ApiFailure> {
    if keys.is_empty() {
        return Err(ApiFailure::ApiClosed);
    }
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(ApiFailure::Unauthorized)?;
    // Compare against every key, without stopping at the first match.
    let matched = keys.iter().fold(false, |found, key| {
        found | secret_eq(given, key.expose_secret())
    });
    if matched {
        Ok(())
    } else {
        Err(ApiFailure::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_keys() {
        let keys = vec![SecretString::from("k1"), SecretString::from("k2")];
        assert_eq!(check_bearer(&headers("Bearer k2"), &keys), Ok(()));
        assert_eq!(
            check_bearer(&headers("Bearer k3"), &keys),
            Err(ApiFailure::Forbidden)
        );
        assert_eq!(
            check_bearer(&headers("Basic k1"), &keys),
            Err(ApiFailure::Unauthorized)
        );
        assert_eq!(
            check_bearer(&HeaderMap::new(), &keys),
            Err(ApiFailure::Unauthorized)
        );
        assert_eq!(
            check_bearer(&headers("Bearer k1"), &[]),
            Err(ApiFailure::ApiClosed)
        );
        assert!(secret_eq("abc", "abc") && !secret_eq("abc", "abd") && !secret_eq("abc", "abcd"));
    }
}
