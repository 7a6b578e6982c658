//! Bad input (issue 7): a hostile upstream over real HTTP, a foreign writer's
//! junk in our Redis keys, and random requests against the HTTP router. The
//! WeChat reply parser's property test lives next to it, in `upstream.rs`.
//!
//! Everything is real: redis-server (testkit), wechat-sim, a raw TCP server
//! for the hostile upstream. "No panic" covers spawned tasks too: a panic
//! hook records every panic raised outside test code ([`library_panics`]).

pub mod attacks;
mod hostile;
mod junk;
mod junk_calls;
mod routes;

use std::sync::{Mutex, Once};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts recording panics raised in library code (anything outside a
/// `tests/` directory), including those in spawned tasks that would
/// otherwise only end the task.
pub fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if !at.contains("/tests/")
                && !at.contains("proptest")
                && let Ok(mut p) = PANICS.lock()
            {
                p.push(format!("{at}: {info}"));
            }
            previous(info);
        }));
    });
}

/// Panics recorded by [`watch_panics`] so far.
pub fn library_panics() -> Vec<String> {
    PANICS.lock().map(|p| p.clone()).unwrap_or_default()
}

/// Sends `req` through the router; status and raw body.
pub async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body");
    (status, bytes.to_vec())
}

/// True when `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}
