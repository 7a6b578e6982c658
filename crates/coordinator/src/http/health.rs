//! `/healthz` (the process is up), `/readyz` (Redis answers, config loaded)
//! and `/metrics` (Prometheus text). No authentication: they expose no token,
//! secret or key.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::ApiFailure;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<HttpState>) -> Result<Json<serde_json::Value>, ApiFailure> {
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(
            serde_json::json!({ "status": "ready", "credentials": state.catalog.len() }),
        )),
        Ok(Err(e)) => Err(ApiFailure::RedisUnavailable(e.to_string())),
        Err(_) => Err(ApiFailure::RedisUnavailable("ping timed out".into())),
    }
}

pub async fn metrics(State(state): State<HttpState>) -> Response {
    if crate::metrics::per_app() {
        for cred in state.catalog.iter() {
            // From memory: the read cache, else what the refresh loop knows.
            // Redis only for a credential no loop has looked at yet (start-up).
            let ttl = match state.client.cached_value(&cred.cref) {
                Some(t) => Some(t.ttl()),
                None => match state.ttls.ttl(&cred.cref) {
                    Some(known) => known,
                    None => tokio::time::timeout(
                        Duration::from_millis(500),
                        state.store.peek(&cred.cref),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|p| p.token_ttl),
                },
            };
            crate::metrics::token_ttl(&cred, ttl);
            crate::metrics::refresh_lead(&cred, cred.kind.lead(&state.refresh));
            crate::metrics::quota_budget(&cred, cred.kind.limits(&state.refresh).budget);
        }
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
