//! The JSON API for access tokens of any credential id (apps and WeCom
//! agents alike): `GET /v1/apps/{id}/access_token`, its `invalidate`, and
//! the status lists `GET /v1/apps`, `GET /v1/credentials`. Bearer API key
//! first, then the id is resolved against the catalog, then (only then)
//! Redis is asked. Reports of any credential share [`report`].

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use wxtoken_client::{ClientError, Invalidation, Token, Verdict};
use wxtoken_common::{CredentialId, Slot};

use super::HttpState;
use super::error::ApiFailure;
use super::json::{Field, value_json, value_object};
use super::keys::ApiKey;
use crate::kind::{Credential, Family};

/// The credential `raw` names in `slot`, before any Redis call: an unknown
/// id is `app_not_found`, a known id without that slot `ticket_not_configured`.
pub(super) fn resolve(
    state: &HttpState,
    raw: &str,
    slot: Slot,
) -> Result<Arc<Credential>, ApiFailure> {
    // A configured id is a valid one: found as given, there is nothing to
    // check and nothing to allocate. Anything else is parsed for its error.
    if let Some(cred) = state.catalog.find(raw, slot) {
        return Ok(cred.clone());
    }
    let id = CredentialId::parse(raw).map_err(|e| ApiFailure::InvalidId(e.to_string()))?;
    match (state.catalog.family(raw), slot.ticket()) {
        (Some(_), Some(ticket)) => Err(ApiFailure::TicketNotConfigured {
            id: id.to_string(),
            ticket: ticket.to_string(),
        }),
        _ => Err(ApiFailure::AppNotFound(id.to_string())),
    }
}

pub(super) fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiFailure> {
    id.map(|Path(raw)| raw)
        .map_err(|e| ApiFailure::InvalidId(e.body_text()))
}

pub(super) fn token_failure(e: ClientError) -> ApiFailure {
    match e {
        ClientError::InvalidId(e) => ApiFailure::InvalidId(e.to_string()),
        other => ApiFailure::TokenUnavailable(other.to_string()),
    }
}

/// [`token_failure`] for `cred`: a followed credential's names its primary
/// (this fleet never calls WeChat for it, SPEC §12).
pub(super) fn value_failure(cred: &Credential, e: ClientError) -> ApiFailure {
    match (token_failure(e), &cred.follow) {
        (ApiFailure::TokenUnavailable(detail), Some(f)) => ApiFailure::FollowedUnavailable {
            primary: f.url.clone(),
            detail,
        },
        (other, _) => other,
    }
}

/// A body straight from [`value_json`].
pub(super) fn json_body(body: Vec<u8>) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

pub async fn access_token(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiFailure> {
    let raw = path_id(id)?;
    let cred = resolve(&state, &raw, Slot::AccessToken)?;
    let token = state
        .client
        .access_token(cred.cref.id.as_str())
        .await
        .map_err(|e| value_failure(&cred, e))?;
    Ok(json_body(value_json(Field::AccessToken, &token)?))
}

#[derive(Deserialize, Default)]
pub struct WaitQuery {
    #[serde(default)]
    pub(super) wait: bool,
}

/// Reads `{"<field>": "…"}` from a report body.
pub(super) fn reported_value(
    body: Result<Bytes, BytesRejection>,
    field: Field,
) -> Result<String, ApiFailure> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiFailure::PayloadTooLarge
        } else {
            ApiFailure::InvalidJson(e.body_text())
        }
    })?;
    let name = field.name();
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::InvalidJson(format!("body is not JSON: {e}")))?;
    let Some(reported) = value.get(name).and_then(serde_json::Value::as_str) else {
        return Err(ApiFailure::InvalidRequest(format!(
            "expected {{\"{name}\": \"…\"}}"
        )));
    };
    if reported.is_empty() || reported.len() > 2048 {
        return Err(ApiFailure::InvalidRequest(format!(
            "{name} must be 1-2048 characters"
        )));
    }
    Ok(reported.to_owned())
}

pub async fn invalidate(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiFailure> {
    let raw = path_id(id)?;
    let cred = resolve(&state, &raw, Slot::AccessToken)?;
    let Query(query) =
        query.map_err(|e| ApiFailure::InvalidRequest(format!("query: {}", e.body_text())))?;
    let value = reported_value(body, Field::AccessToken)?;
    report(&state, &cred, Field::AccessToken, &value, query.wait).await
}

/// A report of `value` (any credential): the script's answer at once, or
/// with `wait` the fleet's verdict and the value to use now.
pub(super) async fn report(
    state: &HttpState,
    cred: &Credential,
    field: Field,
    value: &str,
    wait: bool,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiFailure> {
    let done = state
        .client
        .report(&cred.cref, value)
        .await
        .map_err(token_failure)?;
    let (result, generation) = match done {
        Invalidation::Reported { generation } => ("reported", generation),
        Invalidation::TokenValid { generation } => {
            crate::metrics::report_refused(cred, "token_valid_cached");
            ("token_valid", generation)
        }
        Invalidation::AlreadyReplaced { generation } => ("already_replaced", generation),
        _ => ("reported", 0),
    };
    crate::metrics::invalidation(cred, result);
    if !wait {
        let body = serde_json::json!({ "result": result, "generation": generation });
        return Ok((StatusCode::OK, Json(body)));
    }
    // A report is judged by one coordinator: a check with WeChat, then (only
    // if WeChat rejects the value) a fetch. Wait for both.
    let current = || async { state.client.value(&cred.cref).await.map_err(token_failure) };
    let (result, token): (&str, Token) = match done {
        Invalidation::Reported { generation } => {
            match await_verdict(state, cred, generation).await {
                Ok(Verdict::Replaced(t)) => ("invalidated", t),
                Ok(Verdict::Refused {
                    reason,
                    token: Some(t),
                }) => (refusal_result(&reason), t),
                // No verdict yet (or no value left): answer what is stored.
                _ => (result, current().await?),
            }
        }
        _ => (result, current().await?),
    };
    let mut body = value_object(field, &token)?;
    body["result"] = serde_json::Value::from(result);
    Ok((StatusCode::OK, Json(body)))
}

/// The fleet's verdict on a report of `generation`: a check with WeChat,
/// then (only if WeChat rejects the value) a fetch; waited for both.
pub(super) async fn await_verdict(
    state: &HttpState,
    cred: &Credential,
    generation: u64,
) -> Result<Verdict, wxtoken_client::ClientError> {
    let wait = state.token_wait + state.refresh.upstream_timeout * 2;
    state
        .client
        .wait_for_verdict_on(&cred.cref, generation, wait)
        .await
}

/// The `result` of a refused report, from the reason in its event.
fn refusal_result(reason: &str) -> &'static str {
    match reason {
        "token_valid" => "token_valid",
        "reserve" => "reserve",
        _ => "refused",
    }
}

/// `GET /v1/apps`: the apps' access tokens (Part I's list).
pub async fn list_apps(
    State(state): State<HttpState>,
    _: ApiKey,
) -> Result<Json<Vec<serde_json::Value>>, ApiFailure> {
    list(&state, |c| {
        c.cref.slot == Slot::AccessToken && c.kind.describe().family == Family::App
    })
    .await
}

/// `GET /v1/credentials`: every credential, all kinds.
pub async fn list_credentials(
    State(state): State<HttpState>,
    _: ApiKey,
) -> Result<Json<Vec<serde_json::Value>>, ApiFailure> {
    list(&state, |_| true).await
}

/// Every kept credential's status. Redis unreachable is a 503; one
/// credential whose keys hold junk (a foreign writer) is listed with
/// `"state": "unreadable"` and an `error`, the others intact.
async fn list(
    state: &HttpState,
    keep: impl Fn(&Credential) -> bool,
) -> Result<Json<Vec<serde_json::Value>>, ApiFailure> {
    let mut out = Vec::new();
    for cred in state.catalog.iter().filter(|c| keep(c)) {
        let entry = match crate::status::credential_status(&state.store, &cred, &state.refresh)
            .await
        {
            Ok(status) => serde_json::to_value(status),
            Err(e) if e.is_unavailable() => {
                return Err(ApiFailure::RedisUnavailable(e.to_string()));
            }
            Err(e) => {
                tracing::warn!(credential = %cred.cref, error = %e, "status unreadable: its Redis keys hold data of the wrong type or shape");
                serde_json::to_value(crate::status::unreadable_status(&cred, &state.refresh)).map(
                    |mut v| {
                        v["state"] = "unreadable".into();
                        v["error"] = serde_json::json!({
                            "code": "unreadable_keys",
                            "message": "its Redis keys hold data of the wrong type or shape (see the coordinator log)",
                        });
                        v
                    },
                )
            }
        };
        out.push(entry.map_err(|e| ApiFailure::Internal(e.to_string()))?);
    }
    Ok(Json(out))
}
