//! Secret custody for login services (SPEC §10): the code exchanges that
//! need the appsecret, made here so the services that log users in never
//! hold it. `POST /v1/apps/{id}/jscode2session` `{"js_code"}`,
//! `POST /v1/apps/{id}/oauth2/access_token` `{"code"}` and
//! `…/oauth2/refresh_token` `{"refresh_token"}` (key operation `login`);
//! the compatible `GET /sns/jscode2session`, `/sns/oauth2/access_token`
//! (the app's `compat_secret` stands in for its secret) and
//! `/sns/oauth2/refresh_token`. WeChat's reply is passed on as it is, its
//! errors (40029, 40163, 40226, 45011, …) in WeChat's shape; the log line
//! names the app and the errcode, never a code, a session key or a token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tracing::info;

use super::compat::wx;
use super::error::ApiFailure;
use super::keys::ApiKey;
use super::{Admission, HttpState, Peer};
use crate::config::AppConfig;
use crate::upstream::proxy::errcode_of;

/// One exchange: the endpoint and its parameters (the secret added here).
struct Exchange<'a> {
    api: &'static str,
    params: Vec<(&'static str, &'a str)>,
    with_secret: bool,
}

impl Exchange<'_> {
    fn path(&self) -> String {
        format!("/sns/{}", self.api)
    }
}

fn jscode<'a>(code: &'a str) -> Exchange<'a> {
    Exchange {
        api: "jscode2session",
        params: vec![("js_code", code), ("grant_type", "authorization_code")],
        with_secret: true,
    }
}

fn oauth<'a>(code: &'a str) -> Exchange<'a> {
    Exchange {
        api: "oauth2/access_token",
        params: vec![("code", code), ("grant_type", "authorization_code")],
        with_secret: true,
    }
}

fn oauth_refresh<'a>(refresh_token: &'a str) -> Exchange<'a> {
    Exchange {
        api: "oauth2/refresh_token",
        params: vec![
            ("refresh_token", refresh_token),
            ("grant_type", "refresh_token"),
        ],
        with_secret: false,
    }
}

/// Calls WeChat; its JSON reply, or `None` when there is none to pass on.
async fn exchange(state: &HttpState, app: &AppConfig, ex: &Exchange<'_>) -> Option<Bytes> {
    let url = format!("{}{}", state.catalog.base_url(), ex.path());
    let mut query: Vec<(&str, &str)> = vec![("appid", app.appid.as_str())];
    if ex.with_secret {
        let Some(secret) = app.secret() else {
            info!(app = %app.id, api = ex.api, "code exchange: no secret configured (a followed app): exchange codes at the primary");
            return None;
        };
        query.push(("secret", secret.expose_secret()));
    }
    query.extend(ex.params.iter().copied());
    let reply = state.upstream.get(&url, &query).await;
    let body = match reply {
        Ok((200, body))
            if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object()) =>
        {
            Bytes::from(body)
        }
        Ok((status, _)) => {
            info!(app = %app.id, api = ex.api, status, "code exchange: unusable reply from WeChat");
            return None;
        }
        Err(e) => {
            info!(app = %app.id, api = ex.api, error = %e, "code exchange: WeChat unreachable");
            return None;
        }
    };
    info!(app = %app.id, api = ex.api, errcode = errcode_of(&body), "code exchange");
    Some(body)
}

fn json(body: Bytes) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; encoding=utf-8")],
        body,
    )
        .into_response()
}

fn app_of(state: &HttpState, id: &str) -> Result<Arc<AppConfig>, ApiFailure> {
    state
        .apps
        .load()
        .iter()
        .find(|a| a.id.as_str() == id)
        .cloned()
        .ok_or_else(|| ApiFailure::AppNotFound(id.to_owned()))
}

/// The one string field of a JSON body.
fn field(body: Result<Bytes, BytesRejection>, name: &str) -> Result<String, ApiFailure> {
    let body = body.map_err(|e| ApiFailure::InvalidJson(e.body_text()))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::InvalidJson(format!("body is not JSON: {e}")))?;
    match v.get(name).and_then(serde_json::Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= 512 => Ok(s.to_owned()),
        _ => Err(ApiFailure::InvalidRequest(format!(
            "expected {{\"{name}\": \"…\"}} (1-512 characters)"
        ))),
    }
}

async fn json_api(
    state: &HttpState,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
    name: &str,
    make: for<'a> fn(&'a str) -> Exchange<'a>,
) -> Result<Response, ApiFailure> {
    let id = super::v1::path_id(id)?;
    let app = app_of(state, &id)?;
    let value = field(body, name)?;
    match exchange(state, &app, &make(&value)).await {
        Some(body) => Ok(json(body)),
        None => Err(ApiFailure::UpstreamUnavailable("code exchange".into())),
    }
}

pub async fn jscode2session(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiFailure> {
    json_api(&state, id, body, "js_code", jscode).await
}

pub async fn oauth2_access_token(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiFailure> {
    json_api(&state, id, body, "code", oauth).await
}

pub async fn oauth2_refresh_token(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiFailure> {
    json_api(&state, id, body, "refresh_token", oauth_refresh).await
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn get<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// The compatible form: WeChat's query, the secret (or the stand-in)
/// checked like `/cgi-bin/token`'s (guesses rate-limited).
async fn compat(
    state: &HttpState,
    peer: Option<std::net::SocketAddr>,
    q: Params,
    code_name: &str,
    make: for<'a> fn(&'a str) -> Exchange<'a>,
    needs_secret: bool,
) -> Response {
    let Ok(Query(q)) = q else {
        return wx(47001, "data format error");
    };
    let Some(appid) = get(&q, "appid") else {
        return wx(41002, "appid missing");
    };
    let ip = peer.map(|p| p.ip());
    if let Admission::Refused { scope } = state.guess.admit(ip, appid) {
        crate::metrics::secret_guess_limited(scope);
        return wx(45011, "api minute-quota reach limit");
    }
    let Some(app) = state.apps.load().iter().find(|a| a.appid == appid).cloned() else {
        state.guess.failed(ip, None);
        return wx(40013, "invalid appid");
    };
    if needs_secret {
        let Some(secret) = get(&q, "secret") else {
            return wx(41004, "appsecret missing");
        };
        if !crate::http::auth::app_accepts(&app, secret) {
            state.guess.failed(ip, Some(appid));
            return wx(40125, "invalid appsecret");
        }
    }
    let Some(value) = get(&q, code_name) else {
        return match code_name {
            "refresh_token" => wx(40030, "invalid refresh_token"),
            _ => wx(41008, "missing code"),
        };
    };
    match exchange(state, &app, &make(value)).await {
        Some(body) => json(body),
        None => wx(-1, "system error"),
    }
}

pub async fn sns_jscode2session(
    State(state): State<HttpState>,
    Peer(peer): Peer,
    q: Params,
) -> Response {
    compat(&state, peer, q, "js_code", jscode, true).await
}

pub async fn sns_oauth2_access_token(
    State(state): State<HttpState>,
    Peer(peer): Peer,
    q: Params,
) -> Response {
    compat(&state, peer, q, "code", oauth, true).await
}

pub async fn sns_oauth2_refresh_token(
    State(state): State<HttpState>,
    Peer(peer): Peer,
    q: Params,
) -> Response {
    compat(&state, peer, q, "refresh_token", oauth_refresh, false).await
}
