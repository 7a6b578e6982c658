//! The `/__admin/*` endpoints a test (in this process or another) uses to
//! read and steer the simulator:
//!
//! | method + path | effect |
//! |---|---|
//! | `GET /__admin/stats` | [`Stats`](crate::Stats) as JSON (apps, WeCom agents as `corpid:agentid`, corps) |
//! | `GET /__admin/faults` | the faults in force |
//! | `POST /__admin/faults` | replace them with the JSON [`Faults`] body (400 if invalid) |
//! | `POST /__admin/reset` | forget tokens, tickets, counters, quotas, windows, faults |
//! | `POST /__admin/external_refresh?appid=A` | a third party calls `cgi-bin/token`: `{"access_token","expires_in"}` |
//! | `POST /__admin/clear_quota[?appid=A]` | clear today's quotas of app A (or empty the ticket windows of corp A), or of all |
//! | `POST /__admin/revoke?access_token=T` | revoke T (app or WeCom token) at once (WeChat/WeCom cutting a token early) |
//! | `GET /__admin/token_state?access_token=T` | `{"state":"valid"\|"invalid"\|"expired"\|"unknown"}`, not counted as a use |
//! | `POST /__admin/jsapi_check` | JSON `{"kind","appid"\|"corpid"+"agentid","url","noncestr","timestamp","signature"}`: `{"ok":true}` or `{"ok":false,"reason"}` (what `wx.config` / `wx.agentConfig` would verify) |
//!
//! `jsapi_check` kinds: `jsapi` / `wx_card` name an `appid`; `wecom_jsapi`
//! (the corp's ticket) and `agent_config` (the agent's) name a `corpid` and
//! an `agentid` (number or string; absent for a secret without one). The
//! signature must be lowercase hex
//! `sha1("jsapi_ticket=T&noncestr=N&timestamp=S&url=U")` with the CURRENT,
//! still-valid ticket T and U the url without its `#fragment`; `timestamp`
//! may be a number or a string and is signed as written. Refusals (unknown
//! owner, no ticket, expired ticket, signature mismatch) are HTTP 200.
//!
//! Admin failures use WeChat's `{"errcode","errmsg"}` body with a meaningful
//! HTTP status (400 bad input, 404 unknown app or token, 429 quota). Faults
//! never apply here. No rule lives in this module. The Open Platform's
//! admin endpoints (`/__admin/components/*`: authorize, unauthorize, bulk
//! create, pushes on demand, one authorizer's entry) are in
//! `admin/component.rs`.
//!
//! `GET /__admin/stats` stays small at 100 000 authorizers: per component
//! aggregates and at most 1000 authorizers with anomalies; any other one
//! is `GET /__admin/components/authorizer`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::errcode::WxError;
use crate::faults::Faults;
use crate::routes::{token_body, wx_error, wx_json};
use crate::shared::{CheckRequest, SimState};
use crate::state::TicketOwner;
use crate::ticket::TicketKind;

mod component;

pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .merge(component::routes())
        .route("/__admin/stats", get(stats))
        .route("/__admin/faults", get(get_faults).post(set_faults))
        .route("/__admin/reset", post(reset))
        .route("/__admin/external_refresh", post(external_refresh))
        .route("/__admin/clear_quota", post(clear_quota))
        .route("/__admin/revoke", post(revoke))
        .route("/__admin/login_code", post(login_code))
        .route("/__admin/token_state", get(token_state))
        .route("/__admin/jsapi_check", post(jsapi_check))
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

/// `POST /__admin/login_code?appid=&openid=[&risky=true]`: the code a
/// user's `wx.login` (or OAuth redirect) would get, single-use, 5 minutes.
async fn login_code(State(state): State<SimState>, q: Params) -> Response {
    let Some(appid) = param(&q, "appid") else {
        return wx_error(StatusCode::BAD_REQUEST, WxError::AppidMissing);
    };
    let openid = param(&q, "openid").unwrap_or("oSimUser");
    let risky = param(&q, "risky") == Some("true");
    match state.login_code(appid, openid, risky) {
        Some(code) => Json(json!({ "code": code })).into_response(),
        None => wx_error(StatusCode::NOT_FOUND, WxError::InvalidAppid),
    }
}

async fn token_state(State(state): State<SimState>, q: Params) -> Response {
    let Some(token) = param(&q, "access_token") else {
        return wx_error(StatusCode::BAD_REQUEST, WxError::AccessTokenMissing);
    };
    Json(json!({ "state": state.token_state(token) })).into_response()
}

/// The `jsapi_check` body (see the module table).
#[derive(Deserialize)]
struct CheckBody {
    kind: TicketKind,
    appid: Option<String>,
    corpid: Option<String>,
    agentid: Option<Value>,
    url: String,
    noncestr: String,
    timestamp: Value,
    signature: String,
}

/// A JSON string or number as the text a signature covers.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn jsapi_check(State(state): State<SimState>, body: Bytes) -> Response {
    let b = match serde_json::from_slice::<CheckBody>(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("jsapi_check body: {e}")),
    };
    let Some(timestamp) = scalar_text(&b.timestamp) else {
        return bad_request("timestamp must be a string or a number");
    };
    let agentid = match &b.agentid {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => match scalar_text(v).and_then(|t| t.parse::<u64>().ok()) {
            Some(id) => Some(id),
            None => return bad_request("agentid must be a number"),
        },
    };
    let owner = match (b.kind, b.appid.as_deref(), b.corpid.as_deref()) {
        (TicketKind::Jsapi | TicketKind::WxCard, Some(appid), _) => TicketOwner::App(appid),
        (TicketKind::WecomJsapi | TicketKind::AgentConfig, _, Some(corpid)) => {
            TicketOwner::Agent { corpid, agentid }
        }
        _ => return bad_request("jsapi/wx_card need appid; wecom_jsapi/agent_config need corpid"),
    };
    let req = CheckRequest {
        kind: b.kind,
        owner,
        url: &b.url,
        noncestr: &b.noncestr,
        timestamp: &timestamp,
        signature: &b.signature,
    };
    match state.jsapi_check(&req) {
        Ok(()) => ok(),
        Err(reason) => Json(json!({"ok": false, "reason": reason})).into_response(),
    }
}
