//! WeChat's code exchanges (`sns/*`, rules in `state/login.rs`): a mini
//! program's session and a web page's user access token, in WeChat's
//! shapes. Codes come from `/__admin/login_code`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::errcode::WxError;
use crate::shared::SimState;
use crate::state::{CodeRequest, Exchange};

use super::{Params, param, require_get, wx_error, wx_json};

pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route(
            "/sns/jscode2session",
            get(jscode2session).fallback(require_get),
        )
        .route(
            "/sns/oauth2/access_token",
            get(oauth2_access_token).fallback(require_get),
        )
        .route(
            "/sns/oauth2/refresh_token",
            get(oauth2_refresh).fallback(require_get),
        )
}

fn reply(result: Result<Exchange, WxError>) -> Response {
    match result {
        Ok(Exchange::Session {
            openid,
            session_key,
        }) => wx_json(
            StatusCode::OK,
            json!({"session_key": session_key, "openid": openid}).to_string(),
        ),
        Ok(Exchange::Oauth {
            access_token,
            refresh_token,
            openid,
        }) => wx_json(
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "expires_in": 7200,
                "refresh_token": refresh_token,
                "openid": openid,
                "scope": "snsapi_base",
            })
            .to_string(),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

/// The exchange a query asks for; `code_name` is `js_code` or `code`.
fn request<'a>(q: &'a Params, code_name: &str) -> CodeRequest<'a> {
    CodeRequest {
        appid: param(q, "appid"),
        secret: param(q, "secret"),
        code: param(q, code_name),
        grant_type: param(q, "grant_type"),
    }
}

async fn jscode2session(State(state): State<SimState>, q: Params) -> Response {
    reply(state.with_world(|w| w.jscode2session(request(&q, "js_code"))))
}

async fn oauth2_access_token(State(state): State<SimState>, q: Params) -> Response {
    reply(state.with_world(|w| w.oauth2_access_token(request(&q, "code"))))
}

async fn oauth2_refresh(State(state): State<SimState>, q: Params) -> Response {
    reply(state.with_world(|w| {
        w.oauth2_refresh(
            param(&q, "appid"),
            param(&q, "refresh_token"),
            param(&q, "grant_type"),
        )
    }))
}
