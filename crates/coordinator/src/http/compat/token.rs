//! `GET /cgi-bin/token` and `POST /cgi-bin/stable_token` in WeChat's shapes
//! and error codes, authenticated by the app's own secret (constant-time,
//! guesses rate-limited), served from the shared token — never one upstream
//! call per request. `force_refresh` records an operator force and waits for
//! the fleet's refresh, within WeChat's limits (20 a day, 30 s apart).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use wxtoken_common::wire::WechatToken;

use super::{cache_for, whole_seconds, wx};
use crate::config::UpstreamApi;
use crate::http::auth::secret_eq;
use crate::http::{Admission, HttpState, Peer};
use crate::store::ForceTake;
use wxtoken_common::CredentialRef;

/// Force refreshes allowed per credential per quota day (WeChat: 20).
pub const FORCE_DAILY: u64 = 20;
/// Minimum spacing of force refreshes (WeChat: 30 s).
pub const FORCE_SPACING: Duration = Duration::from_secs(30);

fn nonempty(map: &HashMap<String, String>, key: &str) -> Option<String> {
    map.get(key).filter(|v| !v.is_empty()).cloned()
}

pub async fn token(
    State(state): State<HttpState>,
    Peer(peer): Peer,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return wx(47001, "data format error");
    };
    if q.get("grant_type").map(String::as_str) != Some("client_credential") {
        return wx(40002, "invalid grant_type");
    }
    let Some(appid) = nonempty(&q, "appid") else {
        return wx(41002, "appid missing");
    };
    let Some(secret) = nonempty(&q, "secret") else {
        return wx(41004, "appsecret missing");
    };
    serve(&state, peer, &appid, &secret, UpstreamApi::Token, false).await
}

#[derive(Deserialize)]
struct StableRequest {
    #[serde(default)]
    grant_type: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    force_refresh: Option<bool>,
}

pub async fn stable_token(
    State(state): State<HttpState>,
    Peer(peer): Peer,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return wx(47001, "data format error");
    };
    let Ok(req) = serde_json::from_slice::<StableRequest>(&body) else {
        return wx(47001, "data format error");
    };
    if req.grant_type.as_deref() != Some("client_credential") {
        return wx(40002, "invalid grant_type");
    }
    let Some(appid) = req.appid.filter(|a| !a.is_empty()) else {
        return wx(41002, "appid missing");
    };
    let Some(secret) = req.secret.filter(|s| !s.is_empty()) else {
        return wx(41004, "appsecret missing");
    };
    serve(
        &state,
        peer,
        &appid,
        &secret,
        UpstreamApi::StableToken,
        req.force_refresh.unwrap_or(false),
    )
    .await
}

pub async fn stable_token_get() -> Response {
    wx(43002, "require POST method")
}

async fn serve(
    state: &HttpState,
    peer: Option<SocketAddr>,
    appid: &str,
    secret: &str,
    prefer: UpstreamApi,
    force: bool,
) -> Response {
    let ip = peer.map(|p| p.ip());
    // Guessers are answered WeChat's per-minute limit without their secret
    // being looked at, so the answer tells them nothing.
    if let Admission::Refused { scope } = state.guess.admit(ip, appid) {
        crate::metrics::secret_guess_limited(scope);
        return wx(45011, "api minute-quota reach limit");
    }
    let Some(app) = state.app_by_appid(appid, prefer) else {
        if let Some(cred) = authorizer_of(state, appid) {
            return serve_authorizer(state, ip, appid, secret, &cred).await;
        }
        state.guess.failed(ip, None);
        return wx(40013, "invalid appid");
    };
    if !crate::http::auth::app_accepts(&app, secret) {
        state.guess.failed(ip, Some(appid));
        return wx(40125, "invalid appsecret");
    }
    let id = app.id.as_str();
    let cref = CredentialRef::token(app.id.clone());
    let Some(cred) = state.catalog.get(&cref) else {
        return wx(-1, "system error");
    };
    if force {
        match state
            .store
            .force_take(&cref, FORCE_DAILY, FORCE_SPACING)
            .await
        {
            Ok(ForceTake::Taken) => {}
            Ok(ForceTake::TooSoon) => return wx(45011, "api minute-quota reach limit"),
            Ok(ForceTake::OverDaily) => return wx(45009, "reach max api daily quota limit"),
            Err(_) => return wx(-1, "system error"),
        }
        let Ok(current) = state.client.access_token(id).await else {
            return wx(-1, "system error");
        };
        // The caller proved the app secret and stays within WeChat's own
        // force limits: an operator's force, recorded where readers cannot
        // forge it.
        if state
            .store
            .force_request(&cref, "stable_token force_refresh (compatible API)")
            .await
            .is_err()
        {
            return wx(-1, "system error");
        }
        crate::metrics::invalidation(&cred, "force_refresh");
        return match state
            .client
            .wait_for_newer(id, current.generation(), state.token_wait)
            .await
        {
            Ok(t) => reply(&t, cred.kind.lead(&state.refresh)),
            Err(_) => wx(-1, "system error"),
        };
    }
    match state.client.access_token(id).await {
        Ok(t) => reply(&t, cred.kind.lead(&state.refresh)),
        Err(_) => wx(-1, "system error"),
    }
}

/// The authorizer credential of `appid` under any configured component.
fn authorizer_of(
    state: &HttpState,
    appid: &str,
) -> Option<std::sync::Arc<crate::kind::Credential>> {
    state.catalog.components().into_iter().find_map(|c| {
        state.catalog.find(
            &format!("{}.{appid}", c.id),
            wxtoken_common::Slot::AccessToken,
        )
    })
}

/// An authorizer has no appsecret of its own: an SDK pointed at wxtoken
/// for an authorizer's appid sends one of the API keys as its `secret`.
/// Served from the fleet's shared token; never a fetch, never a force.
async fn serve_authorizer(
    state: &HttpState,
    ip: Option<std::net::IpAddr>,
    appid: &str,
    secret: &str,
    cred: &crate::kind::Credential,
) -> Response {
    let keys = state.keys.current();
    let accepted = keys
        .all_access()
        .iter()
        .fold(false, |ok, k| ok | secret_eq(secret, k.expose_secret()));
    if !accepted {
        state.guess.failed(ip, Some(appid));
        return wx(40125, "invalid appsecret");
    }
    match state.client.value(&cred.cref).await {
        Ok(t) => reply(&t, cred.kind.lead(&state.refresh)),
        Err(_) => wx(-1, "system error"),
    }
}

fn reply(token: &wxtoken_client::Token, lead: Duration) -> Response {
    Json(WechatToken {
        access_token: token.value().to_owned(),
        expires_in: whole_seconds(cache_for(token.ttl(), lead)),
    })
    .into_response()
}
