//! The JSON API for JS-SDK tickets (SPEC §8): `GET /v1/apps/{id}/tickets/{type}`,
//! its `invalidate`, and `POST /v1/apps/{id}/jsapi_signature`, which signs a
//! page URL for `wx.config` (and WeCom's `wx.agentConfig`) so the ticket
//! itself never has to leave the coordinator.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use wxtoken_common::jsapi;
use wxtoken_common::wire::{AgentConfig, JsapiConfig, SignatureResponse};
use wxtoken_common::{Slot, TicketType};

use super::HttpState;
use super::error::ApiFailure;
use super::json::{Field, value_json};
use super::keys::ApiKey;
use super::v1::{WaitQuery, json_body, report, reported_value, resolve, value_failure};
use crate::kind::{Credential, Family};

/// The ticket type in a path, checked against the id's family: `wx_card` is
/// an official account's, `agent_config` a WeCom agent's.
pub(super) fn ticket_of(state: &HttpState, id: &str, raw: &str) -> Result<TicketType, ApiFailure> {
    let ticket: TicketType = raw
        .parse()
        .map_err(|e: wxtoken_common::UnknownTicketType| {
            ApiFailure::InvalidTicketType(e.to_string())
        })?;
    let family = state.catalog.family(id);
    let fits = !matches!(
        (family, ticket),
        (Some(Family::App), TicketType::AgentConfig) | (Some(Family::Wecom), TicketType::WxCard)
    );
    if !fits {
        return Err(ApiFailure::WrongKind(format!(
            "`{ticket}` is not a ticket of {id} ({}): official accounts have jsapi and wx_card, WeCom agents jsapi and agent_config",
            match family {
                Some(Family::Wecom) => "a WeCom agent",
                _ => "an official account",
            }
        )));
    }
    Ok(ticket)
}

fn path_pair(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiFailure> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiFailure::InvalidId(e.body_text()))
}

pub async fn ticket(
    State(state): State<HttpState>,
    _: ApiKey,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiFailure> {
    let (id, raw) = path_pair(path)?;
    let t = ticket_of(&state, &id, &raw)?;
    let cred = resolve(&state, &id, Slot::Ticket(t))?;
    let token = state
        .client
        .ticket(cred.cref.id.as_str(), t)
        .await
        .map_err(|e| value_failure(&cred, e))?;
    Ok(json_body(value_json(Field::Ticket, &token)?))
}

pub async fn invalidate(
    State(state): State<HttpState>,
    _: ApiKey,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiFailure> {
    let (id, raw) = path_pair(path)?;
    let t = ticket_of(&state, &id, &raw)?;
    let cred = resolve(&state, &id, Slot::Ticket(t))?;
    let Query(query) =
        query.map_err(|e| ApiFailure::InvalidRequest(format!("query: {}", e.body_text())))?;
    let value = reported_value(body, Field::Ticket)?;
    report(&state, &cred, Field::Ticket, &value, query.wait).await
}

#[derive(Deserialize, Default)]
pub struct SignatureQuery {
    #[serde(default)]
    agent_config: bool,
}

#[derive(Deserialize)]
struct SignatureBody {
    url: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs `url` with `cred`'s current ticket.
async fn sign(
    state: &HttpState,
    cred: &Credential,
    url: &str,
    now: u64,
) -> Result<jsapi::Signed, ApiFailure> {
    let ticket = state
        .client
        .value(&cred.cref)
        .await
        .map_err(|e| value_failure(cred, e))?;
    Ok(jsapi::sign(ticket.value(), now, url))
}

pub async fn signature(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<SignatureQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SignatureResponse>, ApiFailure> {
    let Path(id) = id.map_err(|e| ApiFailure::InvalidId(e.body_text()))?;
    let Query(query) =
        query.map_err(|e| ApiFailure::InvalidRequest(format!("query: {}", e.body_text())))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiFailure::PayloadTooLarge
        } else {
            ApiFailure::InvalidJson(e.body_text())
        }
    })?;
    let body: SignatureBody = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiFailure::InvalidRequest(format!("expected {{\"url\": \"https://…\"}}: {e}"))
        }
        _ => ApiFailure::InvalidJson(format!("body is not JSON: {e}")),
    })?;
    if !jsapi::plausible_url(&body.url) {
        return Err(ApiFailure::InvalidRequest(
            "url must be the page's absolute http(s) URL, at most 2048 characters".into(),
        ));
    }
    let jsapi_cred = resolve(&state, &id, Slot::Ticket(TicketType::Jsapi))?;
    let about = jsapi_cred.kind.describe();
    if query.agent_config && about.family != Family::Wecom {
        return Err(ApiFailure::WrongKind(format!(
            "{id} is an official account: agent_config signatures are WeCom's (wx.agentConfig)"
        )));
    }
    let now = now_secs();
    let signed = sign(&state, &jsapi_cred, &body.url, now).await?;
    let agent_config = if query.agent_config {
        let agent = resolve(&state, &id, Slot::Ticket(TicketType::AgentConfig))?;
        let signed = sign(&state, &agent, &body.url, now).await?;
        Some(AgentConfig {
            corpid: about.owner.clone(),
            agentid: agent.kind.describe().agentid.unwrap_or_default(),
            timestamp: signed.timestamp,
            nonce_str: signed.nonce_str,
            signature: signed.signature,
        })
    } else {
        None
    };
    Ok(Json(SignatureResponse {
        config: JsapiConfig {
            app_id: about.owner,
            timestamp: signed.timestamp,
            nonce_str: signed.nonce_str,
            signature: signed.signature,
        },
        agent_config,
    }))
}
