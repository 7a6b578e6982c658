//! The WeCom (qyapi.weixin.qq.com) endpoints, under `/qyapi`: `gettoken`
//! (also at the root `/cgi-bin/gettoken`, an alias kept for old clients),
//! `get_jsapi_ticket`, `ticket/get?type=agent_config`, `getcallbackip` and
//! `get_api_domain_ip`. These know only WeCom tokens (an app token here is
//! 40014), and answer in WeCom's shape: errors `{"errcode","errmsg"}`,
//! successes with `"errcode":0,"errmsg":"ok"`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::errcode::WecomError;
use crate::shared::SimState;
use crate::state::{Grant, Host};
use crate::ticket::TicketKind;
use crate::token::whole_seconds;

use super::{Params, body_of, param, require_get, serve_faulted, ticket_body, to_json, wx_json};

/// The path prefix WeCom is served under; `SimHandle::wecom_base_url` ends
/// with it.
pub(crate) const WECOM_PREFIX: &str = "/qyapi";

/// WeCom's callback IP ranges, as its `getcallbackip` lists them.
const CALLBACK_IPS: [&str; 3] = ["101.226.129.166", "101.226.103.0/25", "183.3.234.0/24"];

/// WeCom's API domain IPs, as its `get_api_domain_ip` lists them.
const API_DOMAIN_IPS: [&str; 2] = ["182.254.11.176", "182.254.78.66"];

pub(super) fn routes() -> Router<SimState> {
    let p = |path: &str| format!("{WECOM_PREFIX}{path}");
    Router::new()
        .route(&p("/cgi-bin/gettoken"), get(gettoken).fallback(require_get))
        .route("/cgi-bin/gettoken", get(gettoken).fallback(require_get))
        .route(
            &p("/cgi-bin/get_jsapi_ticket"),
            get(get_jsapi_ticket).fallback(require_get),
        )
        .route(
            &p("/cgi-bin/ticket/get"),
            get(ticket_get).fallback(require_get),
        )
        .route(
            &p("/cgi-bin/getcallbackip"),
            get(getcallbackip).fallback(require_get),
        )
        .route(
            &p("/cgi-bin/get_api_domain_ip"),
            get(get_api_domain_ip).fallback(require_get),
        )
}

/// WeCom's gettoken success shape.
#[derive(Serialize)]
struct TokenReply<'a> {
    errcode: i64,
    errmsg: &'a str,
    access_token: &'a str,
    expires_in: u64,
}

fn token_body(g: &Grant) -> String {
    to_json(&TokenReply {
        errcode: 0,
        errmsg: "ok",
        access_token: &g.token,
        expires_in: whole_seconds(g.remaining),
    })
}

async fn gettoken(State(state): State<SimState>, q: Params) -> Response {
    let corpid = param(&q, "corpid");
    let corpsecret = param(&q, "corpsecret");
    let entry = state.begin_wecom_fetch(corpid, corpsecret);
    serve_faulted::<WecomError>(&state, entry, |guard, garbage| {
        let result = state.fetch(guard, garbage, |world, now| {
            world.wecom_token(corpid, corpsecret, now)
        });
        body_of(result, token_body)
    })
    .await
}

async fn get_jsapi_ticket(State(state): State<SimState>, q: Params) -> Response {
    wecom_ticket(&state, &q, Ok(TicketKind::WecomJsapi)).await
}

async fn ticket_get(State(state): State<SimState>, q: Params) -> Response {
    let kind = match param(&q, "type") {
        Some("agent_config") => Ok(TicketKind::AgentConfig),
        _ => Err(WecomError::InvalidParameter),
    };
    wecom_ticket(&state, &q, kind).await
}

async fn wecom_ticket(
    state: &SimState,
    q: &Params,
    kind: Result<TicketKind, WecomError>,
) -> Response {
    let token = param(q, "access_token");
    let entry = state.begin_ticket(token, Host::Wecom, kind.ok());
    serve_faulted::<WecomError>(state, entry, |guard, garbage| {
        body_of(state.wecom_ticket(guard, garbage, token, kind), ticket_body)
    })
    .await
}

/// `{"ip_list":[…],"errcode":0,"errmsg":"ok"}`.
#[derive(Serialize)]
struct IpList<'a> {
    ip_list: &'a [&'static str],
    errcode: i64,
    errmsg: &'a str,
}

fn ip_reply(result: Result<(), WecomError>, ips: &[&'static str]) -> Response {
    let body = match result {
        Ok(()) => to_json(&IpList {
            ip_list: ips,
            errcode: 0,
            errmsg: "ok",
        }),
        Err(e) => e.body(),
    };
    wx_json(StatusCode::OK, body)
}

async fn getcallbackip(State(state): State<SimState>, q: Params) -> Response {
    let result = state.use_token::<WecomError>(param(&q, "access_token"), Host::Wecom);
    ip_reply(result, &CALLBACK_IPS)
}

async fn get_api_domain_ip(State(state): State<SimState>, q: Params) -> Response {
    ip_reply(
        state.wecom_domain_ip(param(&q, "access_token")),
        &API_DOMAIN_IPS,
    )
}
