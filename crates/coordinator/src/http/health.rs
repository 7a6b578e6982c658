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
            serde_json::json!({ "status": "ready", "apps": state.apps.len() }),
        )),
        Ok(Err(e)) => Err(ApiFailure::RedisUnavailable(e.to_string())),
        Err(_) => Err(ApiFailure::RedisUnavailable("ping timed out".into())),
    }
}

pub async fn metrics(State(state): State<HttpState>) -> Response {
    let apps = if crate::metrics::per_app() {
        &state.apps[..]
    } else {
        &[]
    };
    for app in apps {
        // From memory: the read cache, else what the refresh loop knows.
        // Redis only for a credential no loop has looked at yet (start-up).
        let ttl = match state.client.cached(app.id.as_str()) {
            Some(t) => Some(t.ttl()),
            None => match state.ttls.ttl(&app.id) {
                Some(known) => known,
                None => tokio::time::timeout(Duration::from_millis(500), state.store.peek(&app.id))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|p| p.token_ttl),
            },
        };
        crate::metrics::token_ttl(&app.id, ttl);
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
