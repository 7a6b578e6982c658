//! The Open Platform endpoints on the WeChat host, `POST
//! /cgi-bin/component/*` with JSON bodies, in WeChat's exact shapes (as
//! WxJava's `WxOpenComponentServiceImpl` and wechatpy's `component.py`
//! send and read them):
//!
//! | endpoint | body → reply |
//! |---|---|
//! | `api_component_token` | `{component_appid, component_appsecret, component_verify_ticket}` → `{component_access_token, expires_in}` |
//! | `api_start_push_ticket` | `{component_appid, component_secret}` → `{errcode:0, errmsg:"ok"}`, then a push |
//! | `api_create_preauthcode?component_access_token=` | `{component_appid}` → `{pre_auth_code, expires_in}` |
//! | `api_query_auth?component_access_token=` | `{component_appid, authorization_code}` → `{authorization_info:{authorizer_appid, authorizer_access_token, expires_in, authorizer_refresh_token, func_info}}` |
//! | `api_authorizer_token?component_access_token=` | `{component_appid, authorizer_appid, authorizer_refresh_token}` → `{authorizer_access_token, expires_in, authorizer_refresh_token}` |
//! | `api_get_authorizer_list?component_access_token=` | `{component_appid, offset, count}` → `{total_count, list:[{authorizer_appid, refresh_token, auth_time}]}` |
//!
//! Errors are WeChat's `{"errcode","errmsg"}` with HTTP 200: 47001 body not
//! JSON, 41001 no token, 40001 / 42001 bad / expired component token, 61014
//! not a component token, 41002 / 41004 missing appid / secret, 61011
//! unknown component, 40125 bad secret, 61005 / 61006 ticket expired /
//! invalid, 45009 / 45011 daily / minute limit, 61009 / 61010 code invalid
//! / expired, 61023 refresh token invalid, 40097 bad `count`. Faults apply
//! to every one of them. No rule is decided here.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::errcode::WxError;
use crate::shared::{ComponentCall, SimState};
use crate::state::{
    AuthorizationInfo, AuthorizerGrant, AuthorizerPage, ComponentTokenRequest, Grant,
};
use crate::token::whole_seconds;

use super::{Params, body_of, param, require_post, serve_faulted, to_json};

/// The permission sets an authorization grants (`func_info`), as in
/// WeChat's documentation example.
const FUNC_SCOPES: [u32; 6] = [1, 2, 3, 4, 6, 7];

pub(super) fn routes() -> Router<SimState> {
    let p = |name: &str| format!("/cgi-bin/component/{name}");
    Router::new()
        .route(
            &p("api_component_token"),
            post(component_token).fallback(require_post),
        )
        .route(
            &p("api_start_push_ticket"),
            post(start_push_ticket).fallback(require_post),
        )
        .route(
            &p("api_create_preauthcode"),
            post(create_preauthcode).fallback(require_post),
        )
        .route(
            &p("api_query_auth"),
            post(query_auth).fallback(require_post),
        )
        .route(
            &p("api_authorizer_token"),
            post(authorizer_token).fallback(require_post),
        )
        .route(
            &p("api_get_authorizer_list"),
            post(authorizer_list).fallback(require_post),
        )
}

/// Every field any component endpoint reads; anything that is not a JSON
/// object of these types is 47001.
#[derive(Debug, Default, Deserialize)]
struct Body {
    component_appid: Option<String>,
    component_appsecret: Option<String>,
    component_secret: Option<String>,
    component_verify_ticket: Option<String>,
    authorization_code: Option<String>,
    authorizer_appid: Option<String>,
    authorizer_refresh_token: Option<String>,
    offset: Option<Value>,
    count: Option<Value>,
}

type Parsed = Result<Body, WxError>;

fn parse(body: &Bytes) -> Parsed {
    serde_json::from_slice::<Body>(body).map_err(|_| WxError::DataFormat)
}

fn field(parsed: &Parsed, pick: fn(&Body) -> &Option<String>) -> Option<&str> {
    parsed.as_ref().ok().and_then(|b| pick(b).as_deref())
}

/// A JSON number (or numeric string) as `u64`; absent is `default`.
fn number(v: Option<&Value>, default: u64) -> Result<u64, WxError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_u64().ok_or(WxError::InvalidArgs),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| WxError::InvalidArgs),
        Some(_) => Err(WxError::InvalidArgs),
    }
}

/// Runs `rule` for one component request through faults and counting.
async fn handle<T>(
    state: SimState,
    call: ComponentCall,
    parsed: Parsed,
    rule: impl FnOnce(&mut crate::state::World, crate::token::Now, &Body) -> Result<T, WxError>,
    render: fn(&T) -> String,
) -> Response {
    let component = field(&parsed, |b| &b.component_appid);
    let authorizer = field(&parsed, |b| &b.authorizer_appid);
    let entry = state.begin_component(call, component, authorizer);
    serve_faulted::<WxError>(&state, entry, |guard, garbage| {
        let result = state.component_call(guard, garbage, |world, now| {
            let body = parsed.as_ref().map_err(|e| *e)?;
            rule(world, now, body)
        });
        body_of(result, render)
    })
    .await
}

#[derive(Serialize)]
struct ComponentTokenReply<'a> {
    component_access_token: &'a str,
    expires_in: u64,
}

fn component_token_body(g: &Grant) -> String {
    to_json(&ComponentTokenReply {
        component_access_token: &g.token,
        expires_in: whole_seconds(g.remaining),
    })
}

async fn component_token(State(state): State<SimState>, body: Bytes) -> Response {
    let parsed = parse(&body);
    let rule = |world: &mut crate::state::World, now, b: &Body| {
        let req = ComponentTokenRequest {
            component_appid: b.component_appid.as_deref(),
            component_appsecret: b.component_appsecret.as_deref(),
            component_verify_ticket: b.component_verify_ticket.as_deref(),
        };
        world.component_token(req, now)
    };
    handle(
        state,
        ComponentCall::Token,
        parsed,
        rule,
        component_token_body,
    )
    .await
}

async fn start_push_ticket(State(state): State<SimState>, body: Bytes) -> Response {
    let parsed = parse(&body);
    let component = field(&parsed, |b| &b.component_appid);
    let entry = state.begin_component(ComponentCall::StartPushTicket, component, None);
    serve_faulted::<WxError>(&state, entry, |guard, garbage| {
        let result = state.component_call(guard, garbage, |world, _now| {
            let b = parsed.as_ref().map_err(|e| *e)?;
            world.check_component(b.component_appid.as_deref(), b.component_secret.as_deref())
        });
        if let Ok(c) = result {
            // WeChat pushes a new ticket after answering; the push never
            // holds the reply (the receiver may be the caller's process).
            let pusher = state.clone();
            tokio::spawn(async move { pusher.push_ticket_step(c, true).await });
        }
        body_of(result, |_| {
            json!({"errcode": 0, "errmsg": "ok"}).to_string()
        })
    })
    .await
}

async fn create_preauthcode(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    let token = param(&q, "component_access_token").map(str::to_owned);
    let rule = move |world: &mut crate::state::World, now, b: &Body| {
        world.judge_component(token.as_deref(), b.component_appid.as_deref(), now)?;
        Ok(world.create_preauthcode())
    };
    let render = |(code, ttl): &(String, std::time::Duration)| {
        json!({"pre_auth_code": code, "expires_in": whole_seconds(*ttl)}).to_string()
    };
    handle(
        state,
        ComponentCall::CreatePreauthcode,
        parse(&body),
        rule,
        render,
    )
    .await
}

fn grant_json(g: &AuthorizerGrant) -> Value {
    json!({
        "authorizer_access_token": g.access_token,
        "expires_in": whole_seconds(g.expires_in),
        "authorizer_refresh_token": g.refresh_token,
    })
}

fn query_auth_body(info: &AuthorizationInfo) -> String {
    let mut inner = grant_json(&info.grant);
    if let Some(obj) = inner.as_object_mut() {
        obj.insert("authorizer_appid".to_owned(), json!(info.authorizer_appid));
        let scopes: Vec<Value> = FUNC_SCOPES
            .iter()
            .map(|id| json!({"funcscope_category": {"id": id}}))
            .collect();
        obj.insert("func_info".to_owned(), Value::Array(scopes));
    }
    json!({ "authorization_info": inner }).to_string()
}

async fn query_auth(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    let token = param(&q, "component_access_token").map(str::to_owned);
    let rule = move |world: &mut crate::state::World, now, b: &Body| {
        let c = world.judge_component(token.as_deref(), b.component_appid.as_deref(), now)?;
        world.query_auth(c, b.authorization_code.as_deref(), now)
    };
    handle(
        state,
        ComponentCall::QueryAuth,
        parse(&body),
        rule,
        query_auth_body,
    )
    .await
}

async fn authorizer_token(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    let token = param(&q, "component_access_token").map(str::to_owned);
    let rule = move |world: &mut crate::state::World, now, b: &Body| {
        let c = world.judge_component(token.as_deref(), b.component_appid.as_deref(), now)?;
        let refresh = b.authorizer_refresh_token.as_deref();
        world.authorizer_token(c, b.authorizer_appid.as_deref(), refresh, now)
    };
    let render = |g: &AuthorizerGrant| grant_json(g).to_string();
    handle(
        state,
        ComponentCall::AuthorizerToken,
        parse(&body),
        rule,
        render,
    )
    .await
}

fn list_body(page: &AuthorizerPage) -> String {
    let list: Vec<Value> = page
        .list
        .iter()
        .map(|(appid, refresh, auth_time)| {
            json!({"authorizer_appid": appid, "refresh_token": refresh, "auth_time": auth_time})
        })
        .collect();
    json!({"total_count": page.total_count, "list": list}).to_string()
}

async fn authorizer_list(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    let token = param(&q, "component_access_token").map(str::to_owned);
    let rule = move |world: &mut crate::state::World, now, b: &Body| {
        let c = world.judge_component(token.as_deref(), b.component_appid.as_deref(), now)?;
        let offset = number(b.offset.as_ref(), 0)?;
        let count = number(b.count.as_ref(), 0)?;
        world.authorizer_list(c, offset, count)
    };
    handle(
        state,
        ComponentCall::AuthorizerList,
        parse(&body),
        rule,
        list_body,
    )
    .await
}
