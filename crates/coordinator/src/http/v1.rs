//! The JSON token API: `GET /v1/apps`, `GET /v1/apps/{id}/access_token`,
//! `POST /v1/apps/{id}/access_token/invalidate`. Bearer API key first, then
//! the id is validated, then (only then) Redis is asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use wxtoken_client::{ClientError, Invalidation, Token};
use wxtoken_common::CredentialId;
use wxtoken_common::wire::{AccessTokenResponse, AppStatus};

use super::HttpState;
use super::auth::check_bearer;
use super::error::ApiFailure;
use crate::config::AppConfig;
use std::sync::Arc;

/// Validates the path id and finds its app, before any Redis call.
pub(super) fn resolve(
    state: &HttpState,
    id: Result<Path<String>, PathRejection>,
) -> Result<Arc<AppConfig>, ApiFailure> {
    let Path(raw) = id.map_err(|e| ApiFailure::InvalidId(e.body_text()))?;
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

pub(super) fn token_body(token: &Token) -> AccessTokenResponse {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let ttl = token.ttl();
    AccessTokenResponse {
        access_token: token.value().to_owned(),
        expires_in: ttl.as_secs(),
        expires_at: u64::try_from(now_ms + ttl.as_millis()).unwrap_or(u64::MAX),
        generation: token.generation(),
    }
}

pub async fn access_token(
    State(state): State<HttpState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<AccessTokenResponse>, ApiFailure> {
    check_bearer(&headers, &state.api_keys)?;
    let app = resolve(&state, id)?;
    let token = state
        .client
        .access_token(app.id.as_str())
        .await
        .map_err(token_failure)?;
    Ok(Json(token_body(&token)))
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
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<InvalidateQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiFailure> {
    check_bearer(&headers, &state.api_keys)?;
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
        Invalidation::Invalidated { generation } => ("invalidated", generation),
        Invalidation::AlreadyReplaced { generation } => ("already_replaced", generation),
    };
    crate::metrics::invalidation(&app.id, result);
    if !query.wait {
        let body = serde_json::json!({ "result": result, "generation": generation });
        return Ok((StatusCode::OK, Json(body)));
    }
    let fresh = match done {
        Invalidation::Invalidated { generation } => {
            state
                .client
                .wait_for_newer(id, generation, state.token_wait)
                .await
        }
        Invalidation::AlreadyReplaced { .. } => state.client.access_token(id).await,
    }
    .map_err(token_failure)?;
    let mut body = serde_json::to_value(token_body(&fresh))
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    body["result"] = serde_json::Value::from(result);
    Ok((StatusCode::OK, Json(body)))
}

pub async fn list_apps(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Json<Vec<AppStatus>>, ApiFailure> {
    check_bearer(&headers, &state.api_keys)?;
    let mut out = Vec::with_capacity(state.apps.len());
    for app in state.apps.iter() {
        let status = crate::status::app_status(&state.store, app, state.daily_budget)
            .await
            .map_err(|e| ApiFailure::RedisUnavailable(e.to_string()))?;
        out.push(status);
    }
    Ok(Json(out))
}
