//! `ui`: the live status page (SPEC §11) — `GET /ui`, server-rendered HTML
//! (`page`) of what `status` reports per credential, with a refresh
//! timeline kept live over server-sent events (`timeline`,
//! `GET /ui/events`); its login (`session`) and its two assets, embedded
//! in the binary.
//!
//! It reads what the JSON status routes read (`crate::status`) and never
//! a value onto the page: a credential shows a fingerprint (the first 8 hex
//! digits of the SHA-256 of its value, computed in this process). It
//! decides nothing and calls nothing upstream; paging and search keep a
//! page to [`view::PAGE_SIZE`] rows with 100 000 authorizers.

pub mod demo;
mod page;
mod session;
mod timeline;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Admission, HttpState, Peer};
pub use session::{Denied, Sessions, Viewer};
pub use timeline::{Entry, Timeline};

/// What the status page keeps per replica.
#[derive(Debug)]
pub struct UiState {
    /// Logged-in people, by session id (the cookie holds only the id).
    pub sessions: Sessions,
    /// The fleet's recent refresh events, fed by the replica's one event
    /// subscription (not by polling Redis).
    pub timeline: Arc<Timeline>,
}

impl UiState {
    pub fn new(timeline: Arc<Timeline>) -> Self {
        Self {
            sessions: Sessions::default(),
            timeline,
        }
    }
}

/// The page's routes (merged into [`super::router`]).
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/ui", get(status_page))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/events", get(timeline::events))
        .route("/ui/assets/{name}", get(asset))
}

/// The config generation this replica runs (1 at start, one more per
/// applied reload); shown in the page's header.
fn config_generation(state: &HttpState) -> Option<u64> {
    Some(
        state
            .config_generation
            .load(std::sync::atomic::Ordering::Acquire),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// Credential id prefix to search for.
    #[serde(default)]
    q: String,
    /// 1-based page number.
    #[serde(default)]
    page: usize,
}

/// The headers of every HTML answer: no caching, no framing, scripts and
/// styles from this origin only (no inline script can run).
fn html(status: StatusCode, body: maud::Markup) -> Response {
    let mut r = (status, body.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /ui`.
async fn status_page(
    State(state): State<HttpState>,
    viewer: Result<Viewer, Denied>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let viewer = match viewer {
        Ok(v) => v,
        Err(denied) => return denied.into_response(),
    };
    let Query(q) = query.unwrap_or_default();
    let prefix: String = q.q.trim().chars().take(128).collect();
    let view = view::gather(&state, &prefix, q.page.max(1), config_generation(&state)).await;
    let recent = state.ui.timeline.recent();
    html(StatusCode::OK, page::status(&view, &recent, &viewer.name))
}

/// `GET /ui/login`.
async fn login_form() -> Response {
    html(StatusCode::OK, page::login(None))
}

/// `POST /ui/login` with the form field `key`: a key with `status:read`
/// opens a session (HttpOnly, SameSite=Strict cookie holding a random id);
/// failed attempts count against the same guess limit as app secrets.
async fn login(State(state): State<HttpState>, Peer(peer): Peer, body: Bytes) -> Response {
    let ip = peer.map(|p| p.ip());
    if let Admission::Refused { scope } = state.guess.admit(ip, "ui-login") {
        crate::metrics::secret_guess_limited(scope);
        let form = page::login(Some("too many failed attempts: wait a minute"));
        return html(StatusCode::TOO_MANY_REQUESTS, form);
    }
    let key = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    if key.is_empty() {
        return html(StatusCode::UNAUTHORIZED, page::login(Some("enter a key")));
    }
    match session::admit(&state, &key) {
        Ok(_) => {
            let sid = state.ui.sessions.open(key.into());
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response();
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&sid)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(super::error::ApiFailure::Forbidden) => {
            state.guess.failed(ip, None);
            let form = page::login(Some("that key is not accepted"));
            html(StatusCode::UNAUTHORIZED, form)
        }
        Err(other) => Denied(other).into_response(),
    }
}

/// `POST /ui/logout`: forgets the session and clears the cookie.
async fn logout(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(sid) = session::cookie(&headers) {
        state.ui.sessions.close(sid);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/login"),
            (header::SET_COOKIE, session::CLEAR_COOKIE),
        ],
    )
        .into_response()
}

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// `GET /ui/assets/{name}`: the stylesheet and the script (no secrets, no
/// key needed).
async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "ui.css" => (CSS, "text/css; charset=utf-8"),
        "ui.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return super::error::ApiFailure::NotFound.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
