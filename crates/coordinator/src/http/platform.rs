//! The open platform's routes (SPEC §9):
//!
//! - `POST /wechat/components/{id}/events` — WeChat's pushes (no API key:
//!   the message signature is the proof); answers the plain text `success`.
//! - `POST /v1/components/{id}/authorizers` `{"authorization_code":"…"}` —
//!   registers one account (through `api_query_auth`).
//! - `POST /v1/components/{id}/authorizers/import` — pages
//!   `api_get_authorizer_list` and registers every account in it.
//! - `GET /v1/components/{id}/authorizers?cursor=&state=&count=` — the
//!   registry, one HSCAN page at a time (appids and states, never a token).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use wxtoken_common::CredentialId;

use super::HttpState;
use super::error::ApiFailure;
use super::keys::ApiKey;
use crate::platform::{Platform, PushQuery, Refused, RegistryError};

fn platform<'a>(
    state: &'a HttpState,
    id: &str,
) -> Result<(&'a Platform, CredentialId), ApiFailure> {
    let found = state
        .platform
        .as_ref()
        .filter(|_| state.catalog.component(id).is_some());
    match (found, CredentialId::parse(id)) {
        (Some(p), Ok(cid)) => Ok((p, cid)),
        _ => Err(ApiFailure::ComponentNotFound(id.chars().take(64).collect())),
    }
}

fn registry_failure(e: RegistryError) -> ApiFailure {
    match e {
        RegistryError::UnknownComponent(id) => ApiFailure::ComponentNotFound(id),
        RegistryError::Refused(crate::upstream::FetchError::Wechat { errcode, .. }) => {
            ApiFailure::AuthorizationRefused(format!(
                "WeChat refused the authorization (errcode {errcode})"
            ))
        }
        RegistryError::BadAuthorizer(m) => ApiFailure::AuthorizationRefused(m),
        e @ RegistryError::Followed(..) => ApiFailure::AuthorizationRefused(e.to_string()),
        RegistryError::Refused(other) => ApiFailure::UpstreamUnavailable(other.to_string()),
        RegistryError::NoComponentToken(m) => ApiFailure::UpstreamUnavailable(m),
        RegistryError::Store(e) => ApiFailure::RedisUnavailable(e.to_string()),
    }
}

/// `POST /wechat/components/{id}/events`.
pub async fn events(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    query: Result<Query<PushQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiFailure> {
    let (platform, _) = platform(&state, &id)?;
    let body = body.map_err(|_| ApiFailure::PayloadTooLarge)?;
    let Ok(Query(q)) = query else {
        return Err(ApiFailure::PushRefused(Refused::MissingField.as_str()));
    };
    match platform.pushes.receive(&id, &q, &body).await {
        Ok(answer) => Ok(([(CONTENT_TYPE, "text/plain")], answer).into_response()),
        Err(Refused::Unavailable) => Err(ApiFailure::RedisUnavailable(
            "push could not be recorded".into(),
        )),
        Err(why) => Err(ApiFailure::PushRefused(why.as_str())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    authorization_code: String,
}

#[derive(Debug, Serialize)]
pub struct Registered {
    pub authorizer_appid: String,
    /// The credential id services read its token by.
    pub id: String,
}

/// `POST /v1/components/{id}/authorizers`.
pub async fn register(
    State(state): State<HttpState>,
    _: ApiKey,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Registered>, ApiFailure> {
    let (platform, cid) = platform(&state, &id)?;
    let body = body.map_err(|_| ApiFailure::PayloadTooLarge)?;
    let req: Register = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::InvalidJson(format!("expected {{\"authorization_code\": \"…\"}}: {e}"))
    })?;
    let code = req.authorization_code.trim();
    if code.is_empty() || code.len() > 512 {
        return Err(ApiFailure::InvalidRequest(
            "authorization_code must be 1 to 512 characters".into(),
        ));
    }
    let appid = platform
        .registry
        .authorize(&cid, code)
        .await
        .map_err(registry_failure)?;
    Ok(Json(Registered {
        id: format!("{cid}.{appid}"),
        authorizer_appid: appid,
    }))
}

#[derive(Debug, Serialize)]
pub struct Imported {
    pub imported: u64,
}

/// `POST /v1/components/{id}/authorizers/import`.
pub async fn import(
    State(state): State<HttpState>,
    _: ApiKey,
    Path(id): Path<String>,
) -> Result<Json<Imported>, ApiFailure> {
    let (platform, cid) = platform(&state, &id)?;
    let imported = platform
        .registry
        .import(&cid)
        .await
        .map_err(registry_failure)?;
    Ok(Json(Imported { imported }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    cursor: u64,
    state: Option<String>,
    count: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Listed {
    pub authorizer_appid: String,
    pub id: String,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct ListPage {
    /// Pass it back as `cursor`; `0`: the listing is complete.
    pub cursor: u64,
    pub total: u64,
    pub authorizers: Vec<Listed>,
}

/// `GET /v1/components/{id}/authorizers`.
pub async fn list(
    State(state): State<HttpState>,
    _: ApiKey,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage>, ApiFailure> {
    let (_, cid) = platform(&state, &id)?;
    let Query(q) = query.map_err(|e| ApiFailure::InvalidRequest(e.body_text()))?;
    if let Some(s) = q.state.as_deref()
        && s != crate::store::ACTIVE
        && s != crate::store::REVOKED
    {
        return Err(ApiFailure::InvalidRequest(
            "state must be `active` or `revoked`".into(),
        ));
    }
    let count = q.count.unwrap_or(500).clamp(1, 5000);
    let redis = |e: crate::store::StoreError| ApiFailure::RedisUnavailable(e.to_string());
    let page = state
        .store
        .registry_page(&cid, q.cursor, count)
        .await
        .map_err(redis)?;
    let total = state.store.registry_len(&cid).await.map_err(redis)?;
    let authorizers = page
        .entries
        .into_iter()
        .filter(|(_, s)| q.state.as_deref().is_none_or(|want| want == s))
        .map(|(appid, s)| Listed {
            id: format!("{cid}.{appid}"),
            authorizer_appid: appid,
            state: s,
        })
        .collect();
    Ok(Json(ListPage {
        cursor: page.cursor,
        total,
        authorizers,
    }))
}
