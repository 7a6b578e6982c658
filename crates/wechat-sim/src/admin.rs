//! The `/__admin/*` endpoints a test (in this process or another) uses to
//! read and steer the simulator:
//!
//! | method + path | effect |
//! |---|---|
//! | `GET /__admin/stats` | [`Stats`](crate::Stats) as JSON |
//! | `GET /__admin/faults` | the faults in force |
//! | `POST /__admin/faults` | replace them with the JSON [`Faults`] body (400 if invalid) |
//! | `POST /__admin/reset` | forget tokens, counters, quotas, faults |
//! | `POST /__admin/external_refresh?appid=A` | a third party calls `cgi-bin/token`: `{"access_token","expires_in"}` |
//! | `POST /__admin/clear_quota[?appid=A]` | clear today's quotas of A (or all apps) |
//! | `POST /__admin/revoke?access_token=T` | revoke T at once (WeChat/WeCom cutting a token early) |
//! | `GET /__admin/token_state?access_token=T` | `{"state":"valid"\|"invalid"\|"expired"\|"unknown"}`, not counted as a use |
//!
//! Admin failures use WeChat's `{"errcode","errmsg"}` body with a meaningful
//! HTTP status (400 bad input, 404 unknown app or token, 429 quota). Faults
//! never apply here. No rule lives in this module.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::errcode::WxError;
use crate::faults::Faults;
use crate::routes::{token_body, wx_error, wx_json};
use crate::shared::SimState;

pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/__admin/stats", get(stats))
        .route("/__admin/faults", get(get_faults).post(set_faults))
        .route("/__admin/reset", post(reset))
        .route("/__admin/external_refresh", post(external_refresh))
        .route("/__admin/clear_quota", post(clear_quota))
        .route("/__admin/revoke", post(revoke))
        .route("/__admin/token_state", get(token_state))
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a Params, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|s| !s.is_empty())
}

fn ok() -> Response {
    Json(json!({"ok": true})).into_response()
}

async fn stats(State(state): State<SimState>) -> Response {
    Json(state.stats()).into_response()
}

async fn get_faults(State(state): State<SimState>) -> Response {
    Json(state.faults()).into_response()
}

async fn set_faults(State(state): State<SimState>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(&format!("faults body: {e}")),
    };
    if let Err(e) = faults.validate() {
        return bad_request(&e);
    }
    state.set_faults(faults.clone());
    Json(faults).into_response()
}

fn bad_request(detail: &str) -> Response {
    let body = json!({
        "errcode": WxError::DataFormat.code(),
        "errmsg": format!("{}: {detail}", WxError::DataFormat.message()),
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn reset(State(state): State<SimState>) -> Response {
    state.reset();
    ok()
}

async fn external_refresh(State(state): State<SimState>, q: Params) -> Response {
    let Some(appid) = param(&q, "appid") else {
        return wx_error(StatusCode::BAD_REQUEST, WxError::AppidMissing);
    };
    match state.try_external_refresh(appid) {
        Ok(grant) => wx_json(StatusCode::OK, token_body(&grant)),
        Err(e @ WxError::InvalidAppid) => wx_error(StatusCode::NOT_FOUND, e),
        Err(e) => wx_error(StatusCode::TOO_MANY_REQUESTS, e),
    }
}

async fn clear_quota(State(state): State<SimState>, q: Params) -> Response {
    if state.clear_quota(param(&q, "appid")) {
        ok()
    } else {
        wx_error(StatusCode::NOT_FOUND, WxError::InvalidAppid)
    }
}

async fn revoke(State(state): State<SimState>, q: Params) -> Response {
    let Some(token) = param(&q, "access_token") else {
        return wx_error(StatusCode::BAD_REQUEST, WxError::AccessTokenMissing);
    };
    if state.revoke(token) {
        ok()
    } else {
        wx_error(StatusCode::NOT_FOUND, WxError::InvalidCredential)
    }
}

async fn token_state(State(state): State<SimState>, q: Params) -> Response {
    let Some(token) = param(&q, "access_token") else {
        return wx_error(StatusCode::BAD_REQUEST, WxError::AccessTokenMissing);
    };
    Json(json!({ "state": state.token_state(token) })).into_response()
}
