//! `GET /v1/apps/{id}/access_token/watch` and `…/tickets/{type}/watch`
//! (SPEC §12): a credential's value pushed as server-sent events — the
//! current one at once, then one event per new generation — so a service in
//! any language follows the fleet's tokens over HTTP without Redis access.
//! Behind `token:read`. Resumable: `Last-Event-ID` (or `?since=`) is a
//! generation, and only newer values are sent. Keep-alive comments every
//! 15 s; the stream ends when the replica stops. The event `data` is the
//! body of the matching `GET` endpoint; values never reach a log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use wxtoken_client::{ClientError, Token};
use wxtoken_common::Slot;

use super::HttpState;
use super::error::ApiFailure;
use super::json::{Field, value_json};
use super::keys::ApiKey;
use super::v1::{path_id, resolve};
use crate::kind::Credential;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long one wait for a newer value lasts before it is renewed.
const WAIT: Duration = Duration::from_secs(30);
/// After an error event (no value to be had), the next try.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Deserialize)]
pub struct WatchQuery {
    /// Send only values newer than this generation (`Last-Event-ID` wins).
    #[serde(default)]
    since: Option<u64>,
    /// The keep-alive interval the watcher asks for (1 000–60 000 ms;
    /// default 15 s): a follower detects a dead connection after two.
    #[serde(default)]
    keepalive_ms: Option<u64>,
}

pub async fn access_token(
    State(state): State<HttpState>,
    _: ApiKey,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let raw = path_id(id)?;
    let cred = resolve(&state, &raw, Slot::AccessToken)?;
    watch(state, cred, Field::AccessToken, &headers, query)
}

pub async fn ticket(
    State(state): State<HttpState>,
    _: ApiKey,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let (raw, kind) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiFailure::InvalidId(e.body_text()))?;
    let ticket = super::tickets::ticket_of(&state, &raw, &kind)?;
    let cred = resolve(&state, &raw, Slot::Ticket(ticket))?;
    watch(state, cred, Field::Ticket, &headers, query)
}

fn watch(
    state: HttpState,
    cred: Arc<Credential>,
    field: Field,
    headers: &HeaderMap,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) =
        query.map_err(|e| ApiFailure::InvalidRequest(format!("query: {}", e.body_text())))?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiFailure::InvalidRequest("Last-Event-ID must be a generation".into())
                })?,
        ),
        None => None,
    };
    let since = resume.or(q.since);
    let interval = keep_alive(&q)?;
    Ok(Sse::new(values(state, cred, field, since))
        .keep_alive(KeepAlive::new().interval(interval))
        .into_response())
}

/// The keep-alive interval a watcher asked for.
pub(super) fn keep_alive(q: &WatchQuery) -> Result<Duration, ApiFailure> {
    match q.keepalive_ms {
        None => Ok(KEEP_ALIVE),
        Some(ms @ 1_000..=60_000) => Ok(Duration::from_millis(ms)),
        Some(_) => Err(ApiFailure::InvalidRequest(
            "keepalive_ms must be between 1000 and 60000".into(),
        )),
    }
}

/// The stream: each item is one value newer than the last sent (or an
/// `error` event while none can be had); it ends with the replica.
fn values(
    state: HttpState,
    cred: Arc<Credential>,
    field: Field,
    since: Option<u64>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let mut closed = state.ui.timeline.closed();
    let end = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    stream::unfold((state, since), move |(state, last)| {
        let cred = cred.clone();
        async move {
            loop {
                let next = match last {
                    None => state.client.value(&cred.cref).await,
                    Some(g) => state.client.wait_for_newer_value(&cred.cref, g, WAIT).await,
                };
                match next {
                    Ok(token) => {
                        let event = value_event(field, &token);
                        return Some((Ok(event), (state, Some(token.generation()))));
                    }
                    // Nothing newer yet: wait again (keep-alives flow meanwhile).
                    Err(ClientError::NoNewerToken { .. }) => {}
                    Err(e) => {
                        let (_, _, message) = super::v1::value_failure(&cred, e).parts();
                        let data = serde_json::json!({
                            "error": "token_unavailable",
                            "message": message,
                        });
                        tokio::time::sleep(RETRY).await;
                        let event = SseEvent::default().event("error").data(data.to_string());
                        return Some((Ok(event), (state, last)));
                    }
                }
            }
        }
    })
    .take_until(end)
}

/// The `GET` body plus `sent_at` (Unix ms by this machine's clock: a
/// follower shows its lag from it).
fn value_event(field: Field, token: &Token) -> SseEvent {
    let mut body = value_json(field, token).unwrap_or_default();
    if body.last() == Some(&b'}') {
        let sent_at = sent_at_ms();
        body.pop();
        body.extend_from_slice(format!(",\"sent_at\":{sent_at}}}").as_bytes());
    }
    SseEvent::default()
        .event(field.name())
        .id(token.generation().to_string())
        .data(String::from_utf8_lossy(&body))
}

/// A value event's `sent_at`: now, Unix ms by this machine's clock.
pub(super) fn sent_at_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
