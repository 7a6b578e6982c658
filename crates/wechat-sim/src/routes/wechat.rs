//! The WeChat (api.weixin.qq.com) endpoints at the root: `cgi-bin/token`,
//! `stable_token`, `getcallbackip`, `get_api_domain_ip` and
//! `ticket/getticket`. These know only app tokens: a WeCom token presented
//! here is unknown (40001), as it would be on the real host.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::errcode::WxError;
use crate::shared::SimState;
use crate::state::{Host, StableRequest, TokenRequest};
use crate::ticket::TicketKind;

use super::{
    Params, body_of, param, require_get, require_post, serve_faulted, ticket_body, to_json,
    token_body, wx_error, wx_json,
};

/// WeChat's callback IP ranges, as `getcallbackip` lists them.
const CALLBACK_IPS: [&str; 4] = [
    "101.226.103.0/25",
    "101.226.233.128/25",
    "58.247.206.128/25",
    "182.254.86.128/25",
];

/// WeChat's API domain IPs, as `get_api_domain_ip` lists them.
const API_DOMAIN_IPS: [&str; 3] = ["101.89.47.18", "101.91.34.103", "101.91.37.74"];

pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route("/cgi-bin/token", get(token).fallback(require_get))
        .route(
            "/cgi-bin/stable_token",
            post(stable_token).fallback(require_post),
        )
        .route(
            "/cgi-bin/getcallbackip",
            get(getcallbackip).fallback(require_get),
        )
        .route(
            "/cgi-bin/get_api_domain_ip",
            get(get_api_domain_ip).fallback(require_get),
        )
        .route(
            "/cgi-bin/ticket/getticket",
            get(getticket).fallback(require_get),
        )
}

async fn token(State(state): State<SimState>, q: Params) -> Response {
    let appid = param(&q, "appid");
    let entry = state.begin_fetch(appid);
    serve_faulted::<WxError>(&state, entry, |guard, garbage| {
        let result = state.fetch(guard, garbage, |world, now| {
            world.token(
                TokenRequest {
                    grant_type: param(&q, "grant_type"),
                    appid,
                    secret: param(&q, "secret"),
                },
                now,
            )
        });
        body_of(result, token_body)
    })
    .await
}

/// The `stable_token` body; anything that does not fit is 47001.
#[derive(Deserialize)]
struct StableBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    force_refresh: Option<bool>,
}

async fn stable_token(State(state): State<SimState>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<StableBody>(&body);
    let appid = parsed.as_ref().ok().and_then(|b| b.appid.as_deref());
    let entry = state.begin_fetch(appid);
    serve_faulted::<WxError>(&state, entry, |guard, garbage| {
        let result = state.fetch(guard, garbage, |world, now| {
            let b = parsed.as_ref().map_err(|_| WxError::DataFormat)?;
            world.stable_token(
                StableRequest {
                    grant_type: b.grant_type.as_deref(),
                    appid: b.appid.as_deref(),
                    secret: b.secret.as_deref(),
                    force_refresh: b.force_refresh.unwrap_or(false),
                },
                now,
            )
        });
        body_of(result, token_body)
    })
    .await
}

/// `{"ip_list":[…]}`: WeChat's success shape for the IP lists.
#[derive(Serialize)]
struct IpList<'a> {
    ip_list: &'a [&'static str],
}

async fn getcallbackip(State(state): State<SimState>, q: Params) -> Response {
    match state.use_token::<WxError>(param(&q, "access_token"), Host::Wechat) {
        Ok(()) => wx_json(
            StatusCode::OK,
            to_json(&IpList {
                ip_list: &CALLBACK_IPS,
            }),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

async fn get_api_domain_ip(State(state): State<SimState>, q: Params) -> Response {
    match state.domain_ip(param(&q, "access_token")) {
        Ok(()) => wx_json(
            StatusCode::OK,
            to_json(&IpList {
                ip_list: &API_DOMAIN_IPS,
            }),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

async fn getticket(State(state): State<SimState>, q: Params) -> Response {
    let token = param(&q, "access_token");
    let kind = TicketKind::from_getticket(param(&q, "type"));
    let entry = state.begin_ticket(token, Host::Wechat, kind);
    serve_faulted::<WxError>(&state, entry, |guard, garbage| {
        body_of(state.app_ticket(guard, garbage, token, kind), ticket_body)
    })
    .await
}
