//! WeCom's own endpoints, so WeCom SDKs pointed at a coordinator work
//! unchanged: `GET /cgi-bin/gettoken?corpid=&corpsecret=` (authenticated by
//! the agent's secret, guesses rate-limited), `GET /cgi-bin/get_jsapi_ticket`
//! and `GET /cgi-bin/ticket/get?type=agent_config` (the caller's proof is the
//! WeCom token the fleet stores for it), in WeCom's shapes and codes, served
//! from the shared values.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use wxtoken_common::{CredentialRef, Slot, TicketType};

use super::{cache_for, holder_of, secret_matches, ticket_reply, whole_seconds, wx};
use crate::http::{Admission, HttpState, Peer};
use crate::kind::Family;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn param<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

pub async fn wecom_gettoken(
    State(state): State<HttpState>,
    Peer(peer): Peer,
    query: Params,
) -> Response {
    let Ok(Query(q)) = query else {
        return wx(47001, "data format error");
    };
    let Some(corpid) = param(&q, "corpid") else {
        return wx(41002, "corpid missing");
    };
    let Some(secret) = param(&q, "corpsecret") else {
        return wx(41004, "corpsecret missing");
    };
    let ip = peer.map(|p: SocketAddr| p.ip());
    if let Admission::Refused { scope } = state.guess.admit(ip, corpid) {
        crate::metrics::secret_guess_limited(scope);
        return wx(45009, "api freq out of limit");
    }
    if !state.wecom.load().iter().any(|w| w.corpid == corpid) {
        state.guess.failed(ip, None);
        return wx(40013, "invalid corpid");
    }
    // Compare with every agent of the corp (constant time each, all of them).
    let matched = state
        .wecom
        .load()
        .iter()
        .filter(|w| w.corpid == corpid)
        .fold(None, |found, w| {
            if w.secret.as_ref().is_some_and(|s| secret_matches(secret, s)) {
                Some(w.clone())
            } else {
                found
            }
        });
    let Some(agent) = matched else {
        state.guess.failed(ip, Some(corpid));
        return wx(40001, "invalid credential, corpsecret is invalid");
    };
    let cref = CredentialRef::token(agent.id.clone());
    match state.client.value(&cref).await {
        Ok(t) => Json(serde_json::json!({
            "errcode": 0,
            "errmsg": "ok",
            "access_token": t.value(),
            "expires_in": whole_seconds(cache_for(t.ttl(), std::time::Duration::ZERO)),
        }))
        .into_response(),
        Err(_) => wx(-1, "system busy"),
    }
}

/// A ticket of the agent whose stored token the caller presents.
async fn agent_ticket(
    state: &HttpState,
    q: &HashMap<String, String>,
    ticket: TicketType,
) -> Response {
    let Some(token) = param(q, "access_token") else {
        return wx(41001, "access_token missing");
    };
    let Some(agent) = holder_of(state, token, Family::Wecom).await else {
        return wx(40014, "invalid access_token");
    };
    let cref = CredentialRef {
        id: agent.cref.id.clone(),
        slot: Slot::Ticket(ticket),
    };
    if state.catalog.get(&cref).is_none() {
        return wx(
            40058,
            &format!(
                "invalid parameter: the fleet keeps no {ticket} ticket for this agent (add it to `tickets`)"
            ),
        );
    }
    match state.client.value(&cref).await {
        Ok(t) => ticket_reply(&t),
        Err(_) => wx(-1, "system busy"),
    }
}

pub async fn wecom_jsapi_ticket(State(state): State<HttpState>, query: Params) -> Response {
    let Ok(Query(q)) = query else {
        return wx(47001, "data format error");
    };
    agent_ticket(&state, &q, TicketType::Jsapi).await
}

pub async fn wecom_agent_ticket(State(state): State<HttpState>, query: Params) -> Response {
    let Ok(Query(q)) = query else {
        return wx(47001, "data format error");
    };
    if param(&q, "type") != Some("agent_config") {
        return wx(40058, "invalid parameter: type must be agent_config");
    }
    agent_ticket(&state, &q, TicketType::AgentConfig).await
}
