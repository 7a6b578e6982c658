//! The drop-in API base (SPEC §10): an SDK whose API base is the
//! coordinator keeps its paths (`/cgi-bin/message/custom/send`, `/wxa/…`)
//! and its own `access_token=T`. `T` must be a token the fleet stored for
//! some credential — that is the caller's proof, as it is on WeChat — and
//! the call goes through the gateway with that credential's *current*
//! token, so an SDK holding a stale `T` never sees 40001.
//!
//! Tokens are recognised by their SHA-1 in a per-replica [`TokenIndex`],
//! filled from the values this replica's cache holds. An unknown `T`
//! triggers one scan of the catalog's current values (at most one at a
//! time; a credential not cached is read from Redis only while the catalog
//! has at most [`SCAN_READS`] of them); a `T` still unknown gets WeChat's
//! own 40001, so the SDK fetches a token again — from this coordinator.
//! Limit: a stale `T` this replica never saw (handed out by another
//! replica before a refresh) is refused the same way, once.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use dashmap::DashMap;
use wxtoken_common::CredentialRef;

use super::HttpState;
use super::compat::wx;
use super::error::ApiFailure;
use super::gateway::forward;
use crate::kind::Credential;

/// Credentials read from Redis in a scan at most (beyond this, only cached
/// values are compared: 100 000 authorizers are not read for one request).
pub const SCAN_READS: usize = 2_000;

/// Values remembered at most; past this the index starts over.
const MAX_VALUES: usize = 200_000;

/// SHA-1 of a value the fleet stored → its credential.
#[derive(Debug, Default)]
pub struct TokenIndex {
    values: DashMap<[u8; 20], CredentialRef>,
    scan: tokio::sync::Mutex<()>,
}

fn digest(value: &str) -> [u8; 20] {
    sha1_smol::Sha1::from(value).digest().bytes()
}

impl TokenIndex {
    fn get(&self, value: &str) -> Option<CredentialRef> {
        self.values.get(&digest(value)).map(|c| c.clone())
    }

    fn note(&self, value: &str, cref: &CredentialRef) {
        if self.values.len() >= MAX_VALUES {
            self.values.clear();
        }
        self.values.insert(digest(value), cref.clone());
    }
}

/// `ANY /cgi-bin/{*rest}`, `/wxa/{*rest}`, …: the drop-in form.
pub async fn drop_in(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let given = request.uri().query().and_then(|q| {
        url_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v)
    });
    let Some(given) = given.filter(|t| !t.is_empty() && t.len() <= 2048) else {
        return Ok(wx(41001, "access_token missing"));
    };
    let Some(cred) = find(&state, &given).await else {
        return Ok(wx(
            40001,
            "invalid credential, access_token is invalid or not latest",
        ));
    };
    forward(&state, &cred, "access_token", &path, request).await
}

/// The query's pairs, decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let Ok(mut u) = reqwest::Url::parse("http://q/") else {
        return Vec::new();
    };
    u.set_query(Some(query));
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The credential `value` is (or was) a token of, if the fleet stored it.
async fn find(state: &HttpState, value: &str) -> Option<Arc<Credential>> {
    let index = &state.tokens;
    if let Some(cref) = index.get(value) {
        return state.catalog.get(&cref);
    }
    // One scan at a time; a caller that waited looks again first.
    let _scan = index.scan.lock().await;
    if let Some(cref) = index.get(value) {
        return state.catalog.get(&cref);
    }
    let proxied: Vec<Arc<Credential>> = state
        .catalog
        .iter()
        .filter(|c| c.kind.api_base().is_some())
        .collect();
    let read = proxied.len() <= SCAN_READS;
    let mut found = None;
    for cred in proxied {
        let token = match state.client.cached_value(&cred.cref) {
            Some(t) => Some(t),
            None if read => state.client.value(&cred.cref).await.ok(),
            None => None,
        };
        if let Some(t) = token {
            index.note(t.value(), &cred.cref);
            if t.value() == value {
                found = Some(cred.clone());
            }
        }
    }
    found
}
