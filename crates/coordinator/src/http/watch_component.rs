//! `GET /v1/components/{id}/watch` (SPEC §12): a component's token and
//! every one of its authorizers' tokens in one server-sent event stream, so
//! a follower fleet keeps a third-party platform of thousands of merchants
//! over one connection and without a refresh token or a secret.
//!
//! On connect: for the component and each active authorizer, an
//! `access_token` event with its current value; each registered authorizer
//! as an `authorizer` event (`active` or `revoked`); then `synced` (the
//! snapshot is whole: what the follower holds and this did not list is
//! gone). After it, one event per new generation or registry change, as the
//! replica hears them on Redis. A follower that falls behind (or
//! reconnects) gets the snapshot again; its fence (the generation) makes
//! repeats harmless, so the stream has no `Last-Event-ID`.
//!
//! Behind `token:read` on the component id and on its authorizers' ids
//! (`{id}.*`). Values never reach a log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use wxtoken_client::keyspace::StoredToken;
use wxtoken_common::{CredentialId, CredentialRef, Slot};

use super::HttpState;
use super::error::ApiFailure;
use super::keys::{ApiKey, ClientCert, Need};
use super::v1::path_id;
use super::watch::{WatchQuery, keep_alive, sent_at_ms};
use crate::store::ACTIVE;

/// HSCAN page of the snapshot.
const PAGE: usize = 1000;
/// Events buffered for a slow follower before the producer waits.
const BUFFER: usize = 256;
/// Values of the snapshot read at once.
const READ_AHEAD: usize = 32;

pub async fn component(
    State(state): State<HttpState>,
    _: ApiKey,
    cert: Option<Extension<ClientCert>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let raw = path_id(id)?;
    let component = state
        .catalog
        .component(&raw)
        .ok_or(ApiFailure::ComponentNotFound(raw))?;
    // The key covered the component's id; the stream carries its
    // authorizers' tokens too.
    let authorizers = format!("{}.*", component.id);
    ApiKey::admit(
        &state,
        &headers,
        cert.as_ref().map(|Extension(c)| c),
        Need::Op("token:read"),
        Some(&authorizers),
    )?;
    let Query(q) =
        query.map_err(|e| ApiFailure::InvalidRequest(format!("query: {}", e.body_text())))?;
    let interval = keep_alive(&q)?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(produce(state, component.id, tx));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(interval))
        .into_response())
}

/// Fills `tx` until the watcher leaves or the replica stops.
async fn produce(state: HttpState, component: CredentialId, tx: mpsc::Sender<SseEvent>) {
    let mut closed = state.ui.timeline.closed();
    // Subscribed before the snapshot: nothing committed meanwhile is missed.
    let mut live = state.ui.timeline.subscribe();
    let prefix = format!("{component}.");
    let mut sent: HashMap<CredentialId, u64> = HashMap::new();
    let mut snapshot = true;
    loop {
        if snapshot {
            snapshot = false;
            if snapshot_of(&state, &component, &tx, &mut sent)
                .await
                .is_err()
            {
                return;
            }
        }
        let entry = tokio::select! {
            e = live.recv() => e,
            _ = closed.wait_for(|c| *c) => return,
            _ = tx.closed() => return,
        };
        let entry = match entry {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                snapshot = true;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let id = &entry.cref.id;
        let ours = id == &component || id.as_str().starts_with(&prefix);
        if !ours || entry.cref.slot != Slot::AccessToken {
            continue;
        }
        let result = match entry.event {
            "refreshed" => send_value(&state, &entry.cref, &tx, &mut sent).await,
            // Published on the component's channel: the entry names the
            // component, its detail the authorizer (`appid state`).
            "authorizer" if id == &component => {
                let (appid, st) = entry
                    .detail
                    .as_deref()
                    .and_then(|d| d.split_once(' '))
                    .unwrap_or(("", ""));
                match crate::kind::authorizer_id(&component, appid) {
                    Ok(aid) => send_authorizer(&state, &aid, appid, st, &tx, &mut sent).await,
                    Err(_) => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if result.is_err() {
            return;
        }
    }
}

/// The watcher is gone.
struct Gone;

async fn snapshot_of(
    state: &HttpState,
    component: &CredentialId,
    tx: &mpsc::Sender<SseEvent>,
    sent: &mut HashMap<CredentialId, u64>,
) -> Result<(), Gone> {
    sent.clear();
    send_value(state, &CredentialRef::token(component.clone()), tx, sent).await?;
    let mut cursor = 0;
    let mut active = 0u64;
    loop {
        let Ok(page) = state.store.registry_page(component, cursor, PAGE).await else {
            // Redis is away: the follower keeps what it holds; no `synced`,
            // so it drops nothing. It reconnects when the stream ends.
            return Err(Gone);
        };
        active += page.entries.iter().filter(|(_, st)| st == ACTIVE).count() as u64;
        // The values are read ahead, in order (one by one, a snapshot of
        // 10 000 waited for 10 000 round trips).
        let mut reads = Vec::with_capacity(page.entries.len());
        for (appid, st) in &page.entries {
            if let Ok(id) = crate::kind::authorizer_id(component, appid) {
                reads.push(read_entry(state, id, appid, st));
            }
        }
        let mut reads = futures_util::stream::iter(reads).buffered(READ_AHEAD);
        while let Some((id, appid, st, stored)) = reads.next().await {
            emit_authorizer(&id, appid, st, stored, tx, sent).await?;
        }
        cursor = page.cursor;
        if cursor == 0 {
            break;
        }
    }
    let data = serde_json::json!({ "authorizers": active });
    send(
        tx,
        SseEvent::default().event("synced").data(data.to_string()),
    )
    .await
}

/// An authorizer's registry entry and (when active) its value, as the
/// replica hears of a change.
async fn send_authorizer(
    state: &HttpState,
    id: &CredentialId,
    appid: &str,
    st: &str,
    tx: &mpsc::Sender<SseEvent>,
    sent: &mut HashMap<CredentialId, u64>,
) -> Result<(), Gone> {
    let stored = read_active(state, id, st).await;
    emit_authorizer(id, appid, st, stored, tx, sent).await
}

/// A registry entry of the snapshot with its value.
async fn read_entry<'a>(
    state: &HttpState,
    id: CredentialId,
    appid: &'a str,
    st: &'a str,
) -> (CredentialId, &'a str, &'a str, Option<StoredToken>) {
    let stored = read_active(state, &id, st).await;
    (id, appid, st, stored)
}

/// The stored value of an authorizer whose registry state is `st`, when
/// it is active and has one.
async fn read_active(state: &HttpState, id: &CredentialId, st: &str) -> Option<StoredToken> {
    if st != ACTIVE {
        return None;
    }
    let cref = CredentialRef::token(id.clone());
    state.store.read_value(&cref).await.ok().flatten()
}

async fn emit_authorizer(
    id: &CredentialId,
    appid: &str,
    st: &str,
    stored: Option<StoredToken>,
    tx: &mpsc::Sender<SseEvent>,
    sent: &mut HashMap<CredentialId, u64>,
) -> Result<(), Gone> {
    let data = serde_json::json!({ "id": id.as_str(), "appid": appid, "state": st });
    send(
        tx,
        SseEvent::default()
            .event("authorizer")
            .data(data.to_string()),
    )
    .await?;
    match stored {
        Some(stored) => emit_value(id, stored, tx, sent).await,
        None if st == ACTIVE => Ok(()),
        None => {
            sent.remove(id);
            Ok(())
        }
    }
}

/// The stored value of `cref`, when it is newer than the one sent.
async fn send_value(
    state: &HttpState,
    cref: &CredentialRef,
    tx: &mpsc::Sender<SseEvent>,
    sent: &mut HashMap<CredentialId, u64>,
) -> Result<(), Gone> {
    match state.store.read_value(cref).await {
        Ok(Some(stored)) => emit_value(&cref.id, stored, tx, sent).await,
        _ => Ok(()),
    }
}

/// `stored` as an `access_token` event, when it is newer than the one sent.
async fn emit_value(
    id: &CredentialId,
    stored: StoredToken,
    tx: &mpsc::Sender<SseEvent>,
    sent: &mut HashMap<CredentialId, u64>,
) -> Result<(), Gone> {
    let newer = sent.get(id).is_none_or(|g| stored.generation > *g);
    if stored.generation == 0 || stored.ttl < Duration::from_secs(1) || !newer {
        return Ok(());
    }
    sent.insert(id.clone(), stored.generation);
    let data = serde_json::json!({
        "id": id.as_str(),
        "access_token": stored.value,
        "expires_in": stored.ttl.as_secs(),
        "generation": stored.generation,
        "sent_at": sent_at_ms(),
    });
    send(
        tx,
        SseEvent::default()
            .event("access_token")
            .data(data.to_string()),
    )
    .await
}

async fn send(tx: &mpsc::Sender<SseEvent>, event: SseEvent) -> Result<(), Gone> {
    tx.send(event).await.map_err(|_| Gone)
}
