//! The HTTP face of the simulator: [`router`] and WeChat's endpoints, with
//! WeChat's exact reply shapes. Every WeChat error is HTTP 200 with
//! `{"errcode","errmsg"}`, as in production; unknown paths get HTTP 404 with
//! errcode 40066 ("invalid url"); a wrong method gets 43001 / 43002.
//!
//! Handlers parse the request, run one rule from `state` through `shared`
//! and render the result; the fetch endpoints also carry out the fault
//! decision (hang, postpone, truncate). No rule is decided here. The admin
//! API lives in `admin`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::errcode::WxError;
use crate::faults::FaultKind;
use crate::shared::{SimState, UseKind, until_shutdown};
use crate::state::{Grant, StableRequest, TokenRequest, World};
use crate::token::{Now, random_ticket, whole_seconds};

/// WeChat's callback IP ranges, as `getcallbackip` lists them.
const CALLBACK_IPS: [&str; 4] = [
    "101.226.103.0/25",
    "101.226.233.128/25",
    "58.247.206.128/25",
    "182.254.86.128/25",
];

const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The whole simulator as an axum router: WeChat endpoints, `/__admin/*`,
/// and a 404 fallback. Serve it yourself, or call it in-process in tests.
pub fn router(state: SimState) -> Router {
    Router::new()
        .route("/cgi-bin/token", get(token).fallback(require_get))
        .route(
            "/cgi-bin/stable_token",
            post(stable_token).fallback(require_post),
        )
        .route(
            "/cgi-bin/gettoken",
            get(wecom_gettoken).fallback(require_get),
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
        .merge(crate::admin::routes())
        .fallback(not_found)
        .with_state(state)
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

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

fn to_json(value: &impl Serialize) -> String {
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

/// WeCom's success shape.
#[derive(Serialize)]
struct WecomReply<'a> {
    errcode: i64,
    errmsg: &'a str,
    access_token: &'a str,
    expires_in: u64,
}

fn wecom_body(g: &Grant) -> String {
    to_json(&WecomReply {
        errcode: 0,
        errmsg: "ok",
        access_token: &g.token,
        expires_in: whole_seconds(g.remaining),
    })
}

fn param<'a>(q: &'a Params, name: &str) -> Option<&'a str> {
    q.as_ref()
        .ok()
        .and_then(|Query(m)| m.get(name))
        .map(String::as_str)
}

/// Runs one fetch call through the fault decision: count it, maybe hang,
/// maybe answer busy/502, else run the rule (truncating the reply for
/// garbage), then maybe postpone the reply.
async fn serve_fetch(
    state: &SimState,
    named: Option<&str>,
    render: fn(&Grant) -> String,
    rule: impl FnOnce(&mut World, Now) -> Result<Grant, WxError>,
) -> Response {
    let (guard, decision) = state.begin_fetch(named);
    let reply = match decision.kind {
        Some(FaultKind::Hang) => {
            state.fetch_failed(&guard, "hang");
            tracing::debug!(appid = named, "fault: holding fetch without answer");
            // Held until the client goes away (hyper drops this future, and
            // the guard with it) or the simulator shuts down.
            until_shutdown(state.shutdown_signal()).await;
            return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
        }
        Some(FaultKind::Busy) => {
            state.fetch_failed(&guard, "-1");
            tracing::debug!(appid = named, "fault: system busy");
            wx_error(StatusCode::OK, WxError::SystemBusy)
        }
        Some(FaultKind::Http502) => {
            state.fetch_failed(&guard, "http_502");
            tracing::debug!(appid = named, "fault: http 502");
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                BAD_GATEWAY_HTML,
            )
                .into_response()
        }
        kind => {
            let garbage = kind == Some(FaultKind::Garbage);
            let body = match state.fetch(&guard, garbage, rule) {
                Ok(grant) => render(&grant),
                Err(e) => e.body(),
            };
            if garbage {
                tracing::debug!(appid = named, "fault: reply truncated after processing");
                wx_json(StatusCode::OK, truncate(body))
            } else {
                wx_json(StatusCode::OK, body)
            }
        }
    };
    if let Some(delay) = decision.delay {
        tracing::debug!(appid = named, ?delay, "fault: reply postponed");
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

async fn token(State(state): State<SimState>, q: Params) -> Response {
    let appid = param(&q, "appid");
    serve_fetch(&state, appid, token_body, |world, now| {
        world.token(
            TokenRequest {
                grant_type: param(&q, "grant_type"),
                appid,
                secret: param(&q, "secret"),
            },
            now,
        )
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
    serve_fetch(&state, appid, token_body, |world, now| {
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
    })
    .await
}

async fn wecom_gettoken(State(state): State<SimState>, q: Params) -> Response {
    let corpid = param(&q, "corpid");
    serve_fetch(&state, corpid, wecom_body, |world, now| {
        world.wecom_token(corpid, param(&q, "corpsecret"), now)
    })
    .await
}

#[derive(Serialize)]
struct CallbackIps {
    ip_list: [&'static str; 4],
}

async fn getcallbackip(State(state): State<SimState>, q: Params) -> Response {
    match state.use_token(param(&q, "access_token"), UseKind::Call) {
        Ok(()) => wx_json(
            StatusCode::OK,
            to_json(&CallbackIps {
                ip_list: CALLBACK_IPS,
            }),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

/// WeChat's API domain IPs, as `get_api_domain_ip` lists them.
const API_DOMAIN_IPS: [&str; 3] = ["101.89.47.18", "101.91.34.103", "101.91.37.74"];

#[derive(Serialize)]
struct DomainIps {
    ip_list: [&'static str; 3],
}

async fn get_api_domain_ip(State(state): State<SimState>, q: Params) -> Response {
    match state.domain_ip(param(&q, "access_token")) {
        Ok(()) => wx_json(
            StatusCode::OK,
            to_json(&DomainIps {
                ip_list: API_DOMAIN_IPS,
            }),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

#[derive(Serialize)]
struct TicketReply<'a> {
    errcode: i64,
    errmsg: &'a str,
    ticket: &'a str,
    expires_in: u64,
}

async fn getticket(State(state): State<SimState>, q: Params) -> Response {
    let type_ok = matches!(param(&q, "type"), Some("jsapi" | "wx_card"));
    let kind = if type_ok {
        UseKind::Ticket
    } else {
        UseKind::Call
    };
    if let Err(e) = state.use_token(param(&q, "access_token"), kind) {
        return wx_error(StatusCode::OK, e);
    }
    if !type_ok {
        return wx_error(StatusCode::OK, WxError::InvalidArgs);
    }
    let ticket = random_ticket();
    wx_json(
        StatusCode::OK,
        to_json(&TicketReply {
            errcode: 0,
            errmsg: "ok",
            ticket: &ticket,
            expires_in: whole_seconds(state.ticket_ttl()),
        }),
    )
}

async fn require_get() -> Response {
    wx_error(StatusCode::OK, WxError::RequireGet)
}

async fn require_post() -> Response {
    wx_error(StatusCode::OK, WxError::RequirePost)
}

async fn not_found() -> Response {
    wx_error(StatusCode::NOT_FOUND, WxError::InvalidUrl)
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::SimConfig;

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
