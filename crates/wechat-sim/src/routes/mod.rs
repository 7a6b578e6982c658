//! The HTTP face of the simulator: [`router`] and the endpoints of both
//! hosts, with their exact reply shapes. WeChat (api.weixin.qq.com) is
//! served at the root (`wechat.rs`, and the Open Platform's
//! `cgi-bin/component/*` in `component.rs`); WeCom (qyapi.weixin.qq.com) under
//! `/qyapi` (`wecom.rs`), with `/cgi-bin/gettoken` at the root kept as an
//! alias of `/qyapi/cgi-bin/gettoken`. Every API error is HTTP 200 with
//! `{"errcode","errmsg"}`, as in production; unknown paths get HTTP 404 with
//! errcode 40066 ("invalid url"); a wrong method gets 43001 / 43002.
//!
//! Handlers parse the request, run one rule from `state` through `shared`
//! and render the result; the fetch and ticket endpoints also carry out the
//! fault decision ([`serve_faulted`]: hang, 502, busy, postpone, truncate).
//! No rule is decided here. The admin API lives in `admin`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::errcode::{ApiError, WxError};
use crate::faults::{FaultDecision, FaultKind};
use crate::shared::{FlightGuard, SimState, until_shutdown};
use crate::state::Grant;
use crate::ticket::TicketGrant;
use crate::token::whole_seconds;

mod business;
mod component;
mod openapi;
mod sns;
mod wechat;
mod wecom;

pub use business::wxacode_image;
pub(crate) use wecom::WECOM_PREFIX;

const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The whole simulator as an axum router: WeChat endpoints, WeCom under
/// `/qyapi`, `/__admin/*`, and a 404 fallback. Serve it yourself, or call it
/// in-process in tests.
pub fn router(state: SimState) -> Router {
    Router::new()
        .merge(wechat::routes())
        .merge(business::routes())
        .merge(sns::routes())
        .merge(openapi::routes())
        .merge(component::routes())
        .merge(wecom::routes())
        .merge(crate::admin::routes())
        .route("/healthz", axum::routing::get(healthz))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /healthz`: the simulator answers (for compose healthchecks and
/// test harnesses; WeChat has no such path, so nothing real is shadowed).
async fn healthz() -> Response {
    wx_json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

pub(crate) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// A JSON reply with the content type WeChat sends.
pub(crate) fn wx_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; encoding=utf-8")],
        body,
    )
        .into_response()
}

pub(crate) fn wx_error(status: StatusCode, e: WxError) -> Response {
    wx_json(status, e.body())
}

pub(crate) fn to_json(value: &impl Serialize) -> String {
    // Serializing these plain structs cannot fail; an empty object is a safe
    // fallback that a client will reject loudly.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// `{"access_token","expires_in"}`: cgi-bin/token and stable_token success.
#[derive(Serialize)]
struct TokenReply<'a> {
    access_token: &'a str,
    expires_in: u64,
}

pub(crate) fn token_body(g: &Grant) -> String {
    to_json(&TokenReply {
        access_token: &g.token,
        expires_in: whole_seconds(g.remaining),
    })
}

/// `{"errcode":0,"errmsg":"ok","ticket","expires_in"}`: every ticket
/// endpoint's success, on both hosts.
#[derive(Serialize)]
struct TicketReply<'a> {
    errcode: i64,
    errmsg: &'a str,
    ticket: &'a str,
    expires_in: u64,
}

fn ticket_body(g: &TicketGrant) -> String {
    to_json(&TicketReply {
        errcode: 0,
        errmsg: "ok",
        ticket: &g.ticket,
        expires_in: whole_seconds(g.expires_in),
    })
}

/// A rule's result as a reply body.
fn body_of<T, E: ApiError>(result: Result<T, E>, render: fn(&T) -> String) -> String {
    match result {
        Ok(v) => render(&v),
        Err(e) => e.reply_body(),
    }
}

pub(crate) fn param<'a>(q: &'a Params, name: &str) -> Option<&'a str> {
    q.as_ref()
        .ok()
        .and_then(|Query(m)| m.get(name))
        .map(String::as_str)
}

/// Runs one request through its fault decision: maybe hang, maybe answer
/// busy (in `E`'s shape) or 502, else `process` it (the flag says the reply
/// will be truncated: garbage), then maybe postpone the reply. The guard
/// keeps the request counted in flight until the reply is handed over.
pub(crate) async fn serve_faulted<E: ApiError>(
    state: &SimState,
    (guard, decision): (FlightGuard, FaultDecision),
    process: impl FnOnce(&FlightGuard, bool) -> String,
) -> Response {
    let label = guard.label().map(str::to_owned);
    let label = label.as_deref();
    let reply = match decision.kind {
        Some(FaultKind::Hang) => {
            state.flight_failed(&guard, "hang");
            tracing::debug!(appid = label, "fault: holding request without answer");
            // Held until the client goes away (hyper drops this future, and
            // the guard with it) or the simulator shuts down.
            until_shutdown(state.shutdown_signal()).await;
            return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
        }
        Some(FaultKind::Busy) => {
            state.flight_failed(&guard, "-1");
            tracing::debug!(appid = label, "fault: system busy");
            wx_json(StatusCode::OK, E::busy().reply_body())
        }
        Some(FaultKind::Http502) => {
            state.flight_failed(&guard, "http_502");
            tracing::debug!(appid = label, "fault: http 502");
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                BAD_GATEWAY_HTML,
            )
                .into_response()
        }
        kind => {
            let garbage = kind == Some(FaultKind::Garbage);
            let body = process(&guard, garbage);
            if garbage {
                tracing::debug!(appid = label, "fault: reply truncated after processing");
                wx_json(StatusCode::OK, truncate(body))
            } else {
                wx_json(StatusCode::OK, body)
            }
        }
    };
    if let Some(delay) = decision.delay {
        tracing::debug!(appid = label, ?delay, "fault: reply postponed");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = until_shutdown(state.shutdown_signal()) => {}
        }
    }
    drop(guard);
    reply
}

/// The first half of a reply: what a client sees when the connection dies
/// mid-body. Never valid JSON.
fn truncate(mut body: String) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body.truncate(cut);
    body
}

pub(crate) async fn require_get() -> Response {
    wx_error(StatusCode::OK, WxError::RequireGet)
}

pub(crate) async fn require_post() -> Response {
    wx_error(StatusCode::OK, WxError::RequirePost)
}

async fn not_found() -> Response {
    wx_error(StatusCode::NOT_FOUND, WxError::InvalidUrl)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::SimConfig;
    use axum::body::Body;

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn router_serves_in_process_without_a_socket() {
        let state = SimState::new(SimConfig::new().app("wxA", "sA")).unwrap();
        let app = router(state.clone());
        let uri = "/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=sA";
        let (status, v) = call(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let token = v["access_token"].as_str().unwrap().to_owned();
        assert_eq!(v["expires_in"], 7200);

        let body = r#"{"grant_type":"client_credential","appid":"wxA","secret":"sA"}"#;
        let req = Request::post("/cgi-bin/stable_token")
            .body(Body::from(body))
            .unwrap();
        let (_, v) = call(&app, req).await;
        assert_ne!(v["access_token"].as_str().unwrap(), token);

        let uri = format!("/cgi-bin/getcallbackip?access_token={token}");
        let (_, v) = call(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert!(v["ip_list"].is_array());
        assert_eq!(state.stats().app("wxA").unwrap().uses_ok, 1);

        let (status, v) = call(&app, Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v["errcode"], 40066);
    }

    #[test]
    fn truncated_reply_is_never_json() {
        let body = r#"{"access_token":"abc","expires_in":7200}"#.to_owned();
        let cut = truncate(body.clone());
        assert!(body.starts_with(&cut) && cut.len() < body.len());
        assert!(serde_json::from_str::<serde_json::Value>(&cut).is_err());
    }
}
