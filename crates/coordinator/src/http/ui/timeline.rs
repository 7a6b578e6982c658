//! The fleet's refresh timeline: every event on the credentials' channels
//! (`refreshed`, `invalidated`, reports and their verdicts, refresh
//! requests), as this replica's one event subscription receives them — an
//! [`EventSink`] beside the cache and the schedule, so the page costs no
//! Redis polling. Recent entries are kept for the page; `GET /ui/events`
//! streams new ones as server-sent events (id = sequence number, so a
//! reconnecting browser resumes with `Last-Event-ID`; keep-alive comments).
//!
//! An entry carries the credential id, the event, its generation, time and
//! replica (a streamed refresh also the new value's fingerprint, hashed
//! here). Events never hold a value, and neither does an entry.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use wxtoken_client::events::{ConnectionState, EventSink};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::Event;

use super::super::HttpState;
use super::session::{Denied, Viewer};

/// Entries kept for a page load (and a reconnect's replay).
const KEPT: usize = 200;
/// Entries a slow stream may fall behind before it skips some.
const CHANNEL: usize = 1024;
/// Keep-alive comment interval: below common proxies' idle timeouts.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    #[serde(skip)]
    pub cref: CredentialRef,
    pub seq: u64,
    /// When it happened (a refresh: its commit; else when it was received).
    pub at_ms: u64,
    /// The credential (`shop`, `shop/jsapi`, `open1.wx…`).
    pub id: String,
    /// `refreshed`, `invalidated`, `reported`, `report_refused`,
    /// `refresh_requested`, `authorizer`.
    pub event: &'static str,
    pub generation: u64,
    /// The replica that committed (refreshes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// A refusal's reason, a request's reason, an authorizer's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A refresh: the new value's life, for the page's TTL bar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// Recent entries and the channel to live streams. The ring is a std
/// `Mutex`: held for a push or a copy, never across an `.await`.
#[derive(Debug)]
pub struct Timeline {
    recent: Mutex<(u64, VecDeque<Arc<Entry>>)>,
    tx: broadcast::Sender<Arc<Entry>>,
    /// Turns true when the replica stops: open streams end, so graceful
    /// shutdown does not wait on them.
    closed: watch::Sender<bool>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            recent: Mutex::new((0, VecDeque::with_capacity(KEPT))),
            tx: broadcast::channel(CHANNEL).0,
            closed: watch::channel(false).0,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Timeline {
    /// Newest first.
    pub fn recent(&self) -> Vec<Arc<Entry>> {
        self.recent
            .lock()
            .map(|r| r.1.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The sequence number of the newest entry (0: none yet).
    pub fn latest(&self) -> u64 {
        self.recent.lock().map(|r| r.0).unwrap_or(0)
    }

    fn push(&self, mut entry: Entry) {
        let Ok(mut r) = self.recent.lock() else {
            return;
        };
        r.0 += 1;
        entry.seq = r.0;
        let entry = Arc::new(entry);
        if r.1.len() == KEPT {
            r.1.pop_front();
        }
        r.1.push_back(entry.clone());
        // Sent under the lock, so streams see entries in sequence order;
        // no receiver is not an error.
        let _ = self.tx.send(entry);
    }

    /// Ends every stream (the replica is stopping).
    /// Turns true when the replica stops: long-lived streams (the
    /// timeline, the watch endpoints) end then.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Every entry from now on (a follower's component watch).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.tx.subscribe()
    }

    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Kept entries after `since` (oldest first) and the live ones after them.
    fn follow(&self, since: u64) -> (Vec<Arc<Entry>>, broadcast::Receiver<Arc<Entry>>) {
        let rx = self.tx.subscribe();
        let backlog = self
            .recent
            .lock()
            .map(|r| r.1.iter().filter(|e| e.seq > since).cloned().collect())
            .unwrap_or_default();
        (backlog, rx)
    }
}

fn entry_of(cref: &CredentialRef, event: Event) -> Option<Entry> {
    let mut e = Entry {
        cref: cref.clone(),
        seq: 0,
        at_ms: now_ms(),
        id: cref.to_string(),
        event: "",
        generation: 0,
        replica: None,
        detail: None,
        ttl_ms: None,
    };
    match event {
        Event::Refreshed {
            generation,
            expires_at_ms,
            fetched_by,
            ttl_ms,
            ..
        } => {
            e.event = "refreshed";
            e.generation = generation;
            e.replica = fetched_by;
            if ttl_ms > 0 && expires_at_ms > ttl_ms {
                e.at_ms = expires_at_ms - ttl_ms;
                e.ttl_ms = Some(ttl_ms);
            }
        }
        Event::Invalidated { generation } => {
            e.event = "invalidated";
            e.generation = generation;
        }
        Event::Reported { generation } => {
            e.event = "reported";
            e.generation = generation;
        }
        Event::ReportRefused { generation, reason } => {
            e.event = "report_refused";
            e.generation = generation;
            e.detail = Some(reason);
        }
        Event::RefreshRequested {
            generation,
            reason,
            force,
        } => {
            e.event = "refresh_requested";
            e.generation = generation;
            e.detail = match (reason, force) {
                (Some(r), true) => Some(format!("{r} (forced)")),
                (None, true) => Some("forced".into()),
                (r, false) => r,
            };
        }
        Event::Authorizer { appid, state } => {
            e.event = "authorizer";
            e.detail = Some(format!("{appid} {state}"));
        }
        _ => return None,
    }
    Some(e)
}

impl EventSink for Timeline {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        if let Some(entry) = entry_of(cref, event) {
            self.push(entry);
        }
    }

    fn on_connection(&self, _state: ConnectionState) {}
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Resume after this sequence number (the page's newest entry).
    #[serde(default)]
    since: Option<u64>,
}

/// `GET /ui/events?since=N`: the timeline as server-sent events.
pub async fn events(
    State(state): State<HttpState>,
    viewer: Result<Viewer, Denied>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    if let Err(Denied(failure)) = viewer {
        return failure.into_response();
    }
    let Query(q) = query.unwrap_or_default();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let since = resume
        .or(q.since)
        .unwrap_or_else(|| state.ui.timeline.latest());
    Sse::new(stream_of(state.clone(), since))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// What a stream sends: the entry, and for a refresh the new value's
/// fingerprint (hashed here, as on the page).
#[derive(Serialize)]
struct Sent<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
}

fn stream_of(
    state: HttpState,
    since: u64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let (backlog, rx) = state.ui.timeline.follow(since);
    let mut closed = state.ui.timeline.closed.subscribe();
    let end = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    let last = backlog.last().map_or(since, |e| e.seq);
    let live = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                // A slow reader skips what it missed; the page stays usable.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |e| std::future::ready(e.seq > last));
    stream::iter(backlog)
        .chain(live)
        .take_until(end)
        .then(move |e| {
            let state = state.clone();
            async move {
                let fingerprint = match e.event {
                    "refreshed" => super::view::fingerprint(&state, &e.cref).await,
                    _ => None,
                };
                let sent = Sent {
                    entry: &e,
                    fingerprint,
                };
                let data = serde_json::to_string(&sent).unwrap_or_default();
                Ok(SseEvent::default().id(e.seq.to_string()).data(data))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cref(id: &str) -> CredentialRef {
        CredentialRef::token(wxtoken_common::CredentialId::parse(id).unwrap())
    }

    #[test]
    fn a_refresh_entry_has_its_commit_time_replica_and_no_more() {
        let t = Timeline::default();
        t.on_event(
            &cref("shop"),
            Event::Refreshed {
                generation: 1_733_090_000_000_042,
                expires_at_ms: 10_000_000,
                fetched_by: Some("r2".into()),
                ttl_ms: 7_200_000,
                filled: false,
            },
        );
        t.on_event(&cref("shop"), Event::Invalidated { generation: 7 });
        let recent = t.recent();
        assert_eq!(recent.len(), 2);
        assert_eq!((recent[0].event, recent[0].seq), ("invalidated", 2));
        let r = &recent[1];
        assert_eq!(
            (r.event, r.at_ms, r.replica.as_deref()),
            ("refreshed", 2_800_000, Some("r2"))
        );
        assert_eq!(t.latest(), 2);
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let t = Timeline::default();
        for g in 0..(KEPT as u64 + 5) {
            t.on_event(&cref("shop"), Event::Reported { generation: g });
        }
        let recent = t.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].generation, KEPT as u64 + 4);
        let (backlog, _) = t.follow(KEPT as u64 + 3);
        assert_eq!(backlog.len(), 2);
    }
}
