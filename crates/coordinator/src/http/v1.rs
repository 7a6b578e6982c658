//! The JSON token API: `GET /v1/apps`, `GET /v1/apps/{id}/access_token`,
//! `POST /v1/apps/{id}/access_token/invalidate`. Bearer API key first, then
//! the id is validated, then (only then) Redis is asked.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use wxtoken_client::{ClientError, Invalidation, Token, Verdict};
use wxtoken_common::CredentialId;
use wxtoken_common::wire::{AccessTokenResponse, AppStatus};

use super::HttpState;
use super::auth::ApiKey;
use super::error::ApiFailure;
use crate::config::AppConfig;

/// Validates the path id and finds its app, before any Redis call.
pub(super) fn resolve(
    state: &HttpState,
    id: Result<Path<String>, PathRejection>,
) -> Result<Arc<AppConfig>, ApiFailure> {
    let Path(raw) = id.map_err(|e| ApiFailure::InvalidId(e.body_text()))?;
    // A configured id is a valid one: found as given, there is nothing to
    // check and nothing to allocate. Anything else is parsed for its error.
    if let Some(app) = state.apps.iter().find(|a| a.id.as_str() == raw) {
        return Ok(app.clone());
    }
    let id = CredentialId::parse(&raw).map_err(|e| ApiFailure::InvalidId(e.to_string()))?;
    state
        .app(&id)
        .ok_or_else(|| ApiFailure::AppNotFound(id.to_string()))
}

fn token_failure(e: ClientError) -> ApiFailure {
    match e {
        ClientError::InvalidId(e) => ApiFailure::InvalidId(e.to_string()),
        other => ApiFailure::TokenUnavailable(other.to_string()),
    }
}

/// `(expires_in, expires_at)`: whole seconds left, Unix ms of expiry.
fn expiry(token: &Token) -> (u64, u64) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let ttl = token.ttl();
    let expires_at = u64::try_from(now_ms + ttl.as_millis()).unwrap_or(u64::MAX);
    (ttl.as_secs(), expires_at)
}

pub(super) fn token_body(token: &Token) -> AccessTokenResponse {
    let (expires_in, expires_at) = expiry(token);
    AccessTokenResponse {
        access_token: token.value().to_owned(),
        expires_in,
        expires_at,
        generation: token.generation(),
    }
}

/// [`AccessTokenResponse`] borrowing the token, for the read path.
#[derive(Serialize)]
struct TokenJson<'a> {
    access_token: &'a str,
    expires_in: u64,
    expires_at: u64,
    generation: u64,
}

/// Room for the three numbers and the JSON around them.
const TOKEN_JSON_OVERHEAD: usize = 128;

/// True when serde_json writes `s` as a JSON string verbatim (no escapes).
/// No early exit, so the loop vectorizes.
fn json_verbatim(s: &str) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// Appends `n` in decimal (what serde_json writes for a `u64`).
fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[start..]);
}

/// The body of `GET /v1/apps/{id}/access_token`, written straight from the
/// cache entry into one right-sized buffer: byte for byte what serde_json
/// makes of [`AccessTokenResponse`] (`token_json_is_the_wire_type` checks),
/// without its per-byte escaping pass when the token needs no escapes (WeChat
/// tokens are `[A-Za-z0-9_-]`).
fn token_json(token: &Token) -> Result<Vec<u8>, ApiFailure> {
    let (expires_in, expires_at) = expiry(token);
    write_token_json(token.value(), expires_in, expires_at, token.generation())
}

fn write_token_json(
    value: &str,
    expires_in: u64,
    expires_at: u64,
    generation: u64,
) -> Result<Vec<u8>, ApiFailure> {
    let mut buf = Vec::with_capacity(value.len() + TOKEN_JSON_OVERHEAD);
    if json_verbatim(value) {
        buf.extend_from_slice(b"{\"access_token\":\"");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\",\"expires_in\":");
        push_u64(&mut buf, expires_in);
        buf.extend_from_slice(b",\"expires_at\":");
        push_u64(&mut buf, expires_at);
        buf.extend_from_slice(b",\"generation\":");
        push_u64(&mut buf, generation);
        buf.push(b'}');
        return Ok(buf);
    }
    let body = TokenJson {
        access_token: value,
        expires_in,
        expires_at,
        generation,
    };
    serde_json::to_writer(&mut buf, &body).map_err(|e| ApiFailure::Internal(e.to_string()))?;
    Ok(buf)
}

pub async fn access_token(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiFailure> {
    let app = resolve(&state, id)?;
    let token = state
        .client
        .access_token(app.id.as_str())
        .await
        .map_err(token_failure)?;
    let body = token_json(&token)?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct InvalidateBody {
    access_token: String,
}

#[derive(Deserialize, Default)]
pub struct InvalidateQuery {
    #[serde(default)]
    wait: bool,
}

pub async fn invalidate(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<InvalidateQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiFailure> {
    let app = resolve(&state, id)?;
    let Query(query) =
        query.map_err(|e| ApiFailure::InvalidRequest(format!("query: {}", e.body_text())))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiFailure::PayloadTooLarge
        } else {
            ApiFailure::InvalidJson(e.body_text())
        }
    })?;
    let body: InvalidateBody = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiFailure::InvalidRequest(format!("expected {{\"access_token\": \"…\"}}: {e}"))
        }
        _ => ApiFailure::InvalidJson(format!("body is not JSON: {e}")),
    })?;
    if body.access_token.is_empty() || body.access_token.len() > 2048 {
        return Err(ApiFailure::InvalidRequest(
            "access_token must be 1-2048 characters".into(),
        ));
    }
    let id = app.id.as_str();
    let done = state
        .client
        .invalidate(id, &body.access_token)
        .await
        .map_err(token_failure)?;
    let (result, generation) = match done {
        Invalidation::Reported { generation } => ("reported", generation),
        Invalidation::TokenValid { generation } => {
            crate::metrics::report_refused(&app.id, "token_valid_cached");
            ("token_valid", generation)
        }
        Invalidation::AlreadyReplaced { generation } => ("already_replaced", generation),
        _ => ("reported", 0),
    };
    crate::metrics::invalidation(&app.id, result);
    if !query.wait {
        let body = serde_json::json!({ "result": result, "generation": generation });
        return Ok((StatusCode::OK, Json(body)));
    }
    // A report is judged by one coordinator: a check with WeChat, then (only
    // if WeChat rejects the token) a fetch. Wait for both.
    let (result, token) = match done {
        Invalidation::Reported { generation } => {
            let wait = state.token_wait + state.refresh.upstream_timeout * 2;
            match state.client.wait_for_verdict(id, generation, wait).await {
                Ok(Verdict::Replaced(t)) => ("invalidated", t),
                Ok(Verdict::Refused {
                    reason,
                    token: Some(t),
                }) => (refusal_result(&reason), t),
                // No verdict yet (or no token left): answer what is stored.
                _ => (
                    result,
                    state.client.access_token(id).await.map_err(token_failure)?,
                ),
            }
        }
        _ => (
            result,
            state.client.access_token(id).await.map_err(token_failure)?,
        ),
    };
    let mut body = serde_json::to_value(token_body(&token))
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    body["result"] = serde_json::Value::from(result);
    Ok((StatusCode::OK, Json(body)))
}

/// The `result` of a refused report, from the reason in its event.
fn refusal_result(reason: &str) -> &'static str {
    match reason {
        "token_valid" => "token_valid",
        "reserve" => "reserve",
        _ => "refused",
    }
}

pub async fn list_apps(
    State(state): State<HttpState>,
    _: ApiKey,
) -> Result<Json<Vec<AppStatus>>, ApiFailure> {
    let mut out = Vec::with_capacity(state.apps.len());
    for app in state.apps.iter() {
        let status = crate::status::app_status(&state.store, app, state.daily_budget)
            .await
            .map_err(|e| ApiFailure::RedisUnavailable(e.to_string()))?;
        out.push(status);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(value: &str, expires_in: u64, expires_at: u64, generation: u64) -> Vec<u8> {
        serde_json::to_vec(&AccessTokenResponse {
            access_token: value.to_owned(),
            expires_in,
            expires_at,
            generation,
        })
        .unwrap()
    }

    #[test]
    fn token_json_is_the_wire_type() {
        for value in [
            "",
            "ACCESS_TOKEN_1",
            "85_1k27AOtWdQrEeVmU2EAq9nSeRUUE2IZQ5eTZKqCq-48iv8N_nE99I07HB",
            "a\"b",
            "a\\b",
            "a/b~\u{7f}",
            "\u{1}\n\t\u{1f}",
            "é\u{2028}\u{1F600}",
        ] {
            for n in [0, 1, 7199, 1_795_223_964_406, u64::MAX] {
                assert_eq!(
                    write_token_json(value, n, n, n).unwrap(),
                    wire(value, n, n, n),
                    "{value:?} {n}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn token_json_matches_serde(value in any::<String>(), a in any::<u64>(), b in any::<u64>(), g in any::<u64>()) {
            prop_assert_eq!(write_token_json(&value, a, b, g).unwrap(), wire(&value, a, b, g));
        }

        #[test]
        fn token_json_matches_serde_ascii(value in "[ -~]{0,200}", a in any::<u64>(), g in any::<u64>()) {
            prop_assert_eq!(write_token_json(&value, a, a, g).unwrap(), wire(&value, a, a, g));
        }
    }
}
