//! Who may see the status page: a key with `status:read`, sent as
//! `Authorization: Bearer` (scripts, tests) or held by a login session
//! (people). The session cookie carries a random id only; the key stays in
//! this process, and is checked again against the key set in force on
//! every request, so a removed key ends its sessions at once.
//!
//! Sessions live in the replica that opened them (a load balancer without
//! affinity asks people to log in again on another replica). It does not
//! render anything but the refusals ([`Denied`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::super::HttpState;
use super::super::error::ApiFailure;
use super::super::keys::{Need, bearer};

/// The cookie's name.
pub const COOKIE: &str = "wxtoken_ui";
/// How long a session lasts without logging in again.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most per replica (a login flood evicts the oldest).
const MAX_SESSIONS: usize = 10_000;
/// The header that expires the cookie (logout).
pub const CLEAR_COOKIE: &str = "wxtoken_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0";

/// `Set-Cookie` for session `sid`.
pub fn set_cookie(sid: &str) -> String {
    format!(
        "{COOKIE}={sid}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

struct Session {
    key: SecretString,
    opened: Instant,
}

/// Open sessions by the SHA-256 of their id (a lookup leaks nothing about
/// ids by timing). A std `Mutex`: never held across an `.await`.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Sessions({n})")
    }
}

fn digest(sid: &str) -> [u8; 32] {
    Sha256::digest(sid.as_bytes()).into()
}

impl Sessions {
    /// A new session for `key`; returns its id (256 random bits, hex).
    pub fn open(&self, key: SecretString) -> String {
        let sid: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, s| s.opened.elapsed() < LIFETIME);
            if m.len() >= MAX_SESSIONS
                && let Some(oldest) = m.iter().min_by_key(|(_, s)| s.opened).map(|(k, _)| *k)
            {
                m.remove(&oldest);
            }
            m.insert(
                digest(&sid),
                Session {
                    key,
                    opened: Instant::now(),
                },
            );
        }
        sid
    }

    /// The key of a live session.
    fn key_of(&self, sid: &str) -> Option<SecretString> {
        let m = self.0.lock().ok()?;
        m.get(&digest(sid))
            .filter(|s| s.opened.elapsed() < LIFETIME)
            .map(|s| s.key.clone())
    }

    pub fn close(&self, sid: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&digest(sid));
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id of the request's cookie.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The name of `key` if it may read the status.
pub fn admit(state: &HttpState, key: &str) -> Result<String, ApiFailure> {
    state
        .keys
        .current()
        .admit(key, Need::Op("status:read"), None)
        .map(|name| name.to_string())
}

/// Extractor: the request may see the status page. Holds the key's name.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
}

/// Why not: 401 shows the login form, anything else the error table's
/// code and message as a page.
#[derive(Debug)]
pub struct Denied(pub ApiFailure);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, code, message) = self.0.parts();
        let body = if status == axum::http::StatusCode::UNAUTHORIZED {
            super::page::login(Some(&message))
        } else {
            super::page::refused(status, code, &message)
        };
        super::html(status, body)
    }
}

impl FromRequestParts<HttpState> for Viewer {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Denied> {
        if let Some(given) = bearer(&parts.headers) {
            return admit(state, given)
                .map(|name| Viewer { name })
                .map_err(Denied);
        }
        let Some(key) = cookie(&parts.headers).and_then(|sid| state.ui.sessions.key_of(sid)) else {
            return Err(Denied(ApiFailure::Unauthorized));
        };
        match admit(state, key.expose_secret()) {
            Ok(name) => Ok(Viewer { name }),
            // The session's key was removed since: log in again.
            Err(ApiFailure::Forbidden) => Err(Denied(ApiFailure::Unauthorized)),
            Err(other) => Err(Denied(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_close_and_the_cookie_holds_only_the_id() {
        let s = Sessions::default();
        let sid = s.open(SecretString::from("the-key"));
        assert_eq!(sid.len(), 64);
        assert!(!set_cookie(&sid).contains("the-key"));
        assert!(
            set_cookie(&sid).contains("HttpOnly") && set_cookie(&sid).contains("SameSite=Strict")
        );
        assert_eq!(
            s.key_of(&sid).map(|k| k.expose_secret().to_owned()),
            Some("the-key".into())
        );
        assert!(s.key_of("other").is_none());
        s.close(&sid);
        assert!(s.key_of(&sid).is_none() && s.is_empty());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; wxtoken_ui=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&h), Some("abc"));
        h.insert(header::COOKIE, "wxtoken_uix=abc".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }
}
