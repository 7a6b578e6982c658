//! The `/__admin/components/*` endpoints: merchants acting on a component,
//! pushes on demand, and one authorizer's entry. Every one names the
//! component with `?component_appid=C`:
//!
//! | method + path | effect |
//! |---|---|
//! | `POST …/authorize?authorizer_appid=A[&push=false]` | A authorizes C (new or revoked: `authorized`; still authorized: `updateauthorized`): `{component_appid, authorizer_appid, info_type, authorization_code, code_expires_at, refresh_token, create_time, push}` |
//! | `POST …/update_authorize?authorizer_appid=A[&push=false]` | A re-authorizes: same reply, `updateauthorized`; 404 unless A is authorized |
//! | `POST …/unauthorize?authorizer_appid=A[&push=false]` | A revokes: `{"ok":true,"push"}` |
//! | `POST …/bulk_authorize?count=N` | N authorizers without codes or pushes: `{"created":N}` |
//! | `POST …/push_ticket` | a new verify ticket, pushed now: `{"push"}` |
//! | `POST …/push_forged?kind=bad_signature\|wrong_appid\|stale_timestamp\|oversized` | a push a receiver must refuse: `{"push"}` |
//! | `POST …/replay` | the last genuine push again, byte for byte: `{"push"}` (404 if none) |
//! | `GET …/verify_ticket` | `{"component_verify_ticket"}`, the latest |
//! | `GET …/authorizer?authorizer_appid=A` | [`AuthorizerStats`](crate::AuthorizerStats) of A |
//!
//! `push` is a [`PushOutcome`] (`{"outcome":"success","status":200}`, …),
//! `null` with `push=false`. Failures: 400 bad input, 404 unknown
//! component or authorizer, in WeChat's `{"errcode","errmsg"}` shape.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::errcode::WxError;
use crate::routes::wx_error;
use crate::shared::{Forgery, PushOutcome, SimState};
use crate::state::{Authorization, ComponentError};

use super::{Params, bad_request, param};

/// More than this many authorizers in one bulk call is refused (400).
const MAX_BULK: usize = 10_000_000;

pub(super) fn routes() -> Router<SimState> {
    let p = |name: &str| format!("/__admin/components/{name}");
    Router::new()
        .route(&p("authorize"), post(authorize))
        .route(&p("update_authorize"), post(update_authorize))
        .route(&p("unauthorize"), post(unauthorize))
        .route(&p("bulk_authorize"), post(bulk_authorize))
        .route(&p("push_ticket"), post(push_ticket))
        .route(&p("push_forged"), post(push_forged))
        .route(&p("replay"), post(replay))
        .route(&p("verify_ticket"), get(verify_ticket))
        .route(&p("authorizer"), get(authorizer))
}

fn refused(e: &ComponentError) -> Response {
    match e {
        ComponentError::BadAppid(_) => bad_request(&e.to_string()),
        ComponentError::UnknownComponent(_) => {
            wx_error(StatusCode::NOT_FOUND, WxError::InvalidComponent)
        }
        _ => {
            let body = json!({"errcode": 404, "errmsg": e.to_string()});
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
    }
}

/// `component_appid` and `authorizer_appid` (empty unless `authorizer`),
/// or what is missing (a 400).
fn names(q: &Params, authorizer: bool) -> Result<(String, String), &'static str> {
    let component = param(q, "component_appid").ok_or("component_appid missing")?;
    let appid = match param(q, "authorizer_appid") {
        Some(a) => a.to_owned(),
        None if !authorizer => String::new(),
        None => return Err("authorizer_appid missing"),
    };
    Ok((component.to_owned(), appid))
}

fn wants_push(q: &Params) -> bool {
    param(q, "push") != Some("false")
}

fn authorization_reply(
    result: Result<(Authorization, Option<PushOutcome>), ComponentError>,
) -> Response {
    match result {
        Ok((auth, push)) => {
            let mut v = json!(auth);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("push".to_owned(), json!(push));
            }
            Json(v).into_response()
        }
        Err(e) => refused(&e),
    }
}

fn push_reply(result: Result<PushOutcome, ComponentError>) -> Response {
    match result {
        Ok(push) => Json(json!({ "push": push })).into_response(),
        Err(e) => refused(&e),
    }
}

async fn authorize(State(state): State<SimState>, q: Params) -> Response {
    let (c, a) = match names(&q, true) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    authorization_reply(state.authorize(&c, &a, wants_push(&q)).await)
}

async fn update_authorize(State(state): State<SimState>, q: Params) -> Response {
    let (c, a) = match names(&q, true) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    authorization_reply(state.update_authorize(&c, &a, wants_push(&q)).await)
}

async fn unauthorize(State(state): State<SimState>, q: Params) -> Response {
    let (c, a) = match names(&q, true) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    match state.unauthorize(&c, &a, wants_push(&q)).await {
        Ok(push) => Json(json!({"ok": true, "push": push})).into_response(),
        Err(e) => refused(&e),
    }
}

async fn bulk_authorize(State(state): State<SimState>, q: Params) -> Response {
    let (c, _) = match names(&q, false) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    let count = param(&q, "count").and_then(|n| n.parse::<usize>().ok());
    let Some(count) = count.filter(|n| *n <= MAX_BULK) else {
        return bad_request("count must be a number up to 10000000");
    };
    match state.bulk_authorize(&c, count) {
        Ok(created) => Json(json!({ "created": created })).into_response(),
        Err(e) => refused(&e),
    }
}

async fn push_ticket(State(state): State<SimState>, q: Params) -> Response {
    match names(&q, false) {
        Ok((c, _)) => push_reply(state.push_verify_ticket(&c).await),
        Err(why) => bad_request(why),
    }
}

async fn push_forged(State(state): State<SimState>, q: Params) -> Response {
    let (c, _) = match names(&q, false) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    let Some(kind) = param(&q, "kind").and_then(Forgery::from_name) else {
        return bad_request(
            "kind must be bad_signature, wrong_appid, stale_timestamp or oversized",
        );
    };
    push_reply(state.push_forged(&c, kind).await)
}

async fn replay(State(state): State<SimState>, q: Params) -> Response {
    match names(&q, false) {
        Ok((c, _)) => push_reply(state.replay_last_push(&c).await),
        Err(why) => bad_request(why),
    }
}

async fn verify_ticket(State(state): State<SimState>, q: Params) -> Response {
    let (c, _) = match names(&q, false) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    match state.verify_ticket(&c) {
        Some(t) => Json(json!({ "component_verify_ticket": t })).into_response(),
        None => wx_error(StatusCode::NOT_FOUND, WxError::InvalidComponent),
    }
}

async fn authorizer(State(state): State<SimState>, q: Params) -> Response {
    let (c, a) = match names(&q, true) {
        Ok(n) => n,
        Err(why) => return bad_request(why),
    };
    match state.authorizer_stats(&c, &a) {
        Some(stats) => Json(stats).into_response(),
        None => refused(&ComponentError::UnknownAuthorizer(a)),
    }
}
