//! What one status page shows, gathered: the credentials matching the
//! search (configured ones, then kept authorizers, by id), counts over all
//! of them from the refresh loops' in-memory book (no Redis call per
//! credential), and the full status of one page of rows (two round trips
//! each, as `GET /v1/credentials`). It formats nothing as HTML (`page`).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::AppStatus;

use super::super::HttpState;
use crate::kind::Credential;

/// Rows on one page.
pub const PAGE_SIZE: usize = 50;

/// A row's state, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowState {
    /// Its status could not be read (Redis down, junk in its keys).
    Unreadable,
    /// The last attempt failed after the last success.
    Failing,
    /// No value stored, and no failure recorded.
    NoToken,
    /// A replica holds the refresh lock now.
    Refreshing,
    Healthy,
}

impl RowState {
    pub const ALL: [Self; 5] = [
        Self::Healthy,
        Self::Refreshing,
        Self::Failing,
        Self::NoToken,
        Self::Unreadable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Failing => "failing",
            Self::NoToken => "no token",
            Self::Refreshing => "refreshing",
            Self::Healthy => "healthy",
        }
    }

    /// The CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Self::NoToken => "no-token",
            other => other.name(),
        }
    }

    pub fn of(s: &AppStatus) -> Self {
        let failed_since_success = s
            .last_error
            .as_ref()
            .is_some_and(|e| e.at_ms >= s.fetched_at_ms.unwrap_or(0));
        if failed_since_success {
            Self::Failing
        } else if s.locked_by.is_some() {
            Self::Refreshing
        } else if !s.has_token {
            Self::NoToken
        } else {
            Self::Healthy
        }
    }
}

/// One credential's row.
#[derive(Debug)]
pub struct Row {
    /// `shop`, `shop/jsapi`, `open1.wx…`.
    pub id: String,
    pub kind: String,
    pub state: RowState,
    pub status: Option<AppStatus>,
    /// First 8 hex digits of the SHA-256 of the value, never the value.
    pub fingerprint: Option<String>,
    /// Why the status could not be read.
    pub unreadable: Option<String>,
}

impl Row {
    /// The value's whole life (for the TTL bar), when known.
    pub fn lifetime_ms(&self) -> Option<u64> {
        let s = self.status.as_ref()?;
        let life = s.expires_at_ms?.checked_sub(s.fetched_at_ms?)?;
        (life > 0).then_some(life)
    }
}

/// Counts over every matching credential, from what the refresh loops of
/// this replica know (in memory).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub matched: usize,
    pub with_token: usize,
    pub without_token: usize,
    /// Not turned by a loop of this replica yet.
    pub unknown: usize,
}

#[derive(Debug)]
pub struct View {
    pub query: String,
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    pub counts: Counts,
    pub rows: Vec<Row>,
    /// Authorizers this replica keeps (they are paged, never listed whole).
    pub authorizers: usize,
    pub config_generation: Option<u64>,
}

impl View {
    /// How many rows of this page are in each state.
    pub fn page_states(&self) -> Vec<(RowState, usize)> {
        RowState::ALL
            .iter()
            .map(|s| (*s, self.rows.iter().filter(|r| r.state == *s).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// The credentials whose id starts with `prefix`: configured ones in
/// catalog order, then authorizers by id.
fn matching(state: &HttpState, prefix: &str) -> Vec<Arc<Credential>> {
    let mut out: Vec<Arc<Credential>> = state
        .catalog
        .iter()
        .filter(|c| c.cref.to_string().starts_with(prefix))
        .collect();
    out.extend(state.catalog.authorizers_with_prefix(prefix));
    out
}

pub async fn gather(
    state: &HttpState,
    prefix: &str,
    page: usize,
    config_generation: Option<u64>,
) -> View {
    let all = matching(state, prefix);
    let mut counts = Counts {
        matched: all.len(),
        ..Counts::default()
    };
    for cred in &all {
        match state.ttls.ttl(&cred.cref) {
            Some(Some(_)) => counts.with_token += 1,
            Some(None) => counts.without_token += 1,
            None => counts.unknown += 1,
        }
    }
    let pages = all.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let mut rows = Vec::with_capacity(PAGE_SIZE);
    for cred in all.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE) {
        rows.push(row(state, cred).await);
    }
    View {
        query: prefix.to_owned(),
        page,
        pages,
        counts,
        rows,
        authorizers: state.catalog.authorizer_count(),
        config_generation,
    }
}

async fn row(state: &HttpState, cred: &Credential) -> Row {
    let id = cred.cref.to_string();
    let kind = cred.kind.name().to_owned();
    match crate::status::credential_status(&state.store, cred, &state.refresh).await {
        Ok(status) => {
            let fingerprint = if status.has_token {
                fingerprint(state, &cred.cref).await
            } else {
                None
            };
            Row {
                id,
                kind,
                state: RowState::of(&status),
                status: Some(status),
                fingerprint,
                unreadable: None,
            }
        }
        Err(e) => Row {
            id,
            kind,
            state: RowState::Unreadable,
            status: None,
            fingerprint: None,
            unreadable: Some(e.to_string()),
        },
    }
}

/// The value's fingerprint, from the replica's cache or (not cached) one
/// read of Redis that asks for no refresh. The value is hashed here and
/// dropped; only the 8 hex digits leave.
pub async fn fingerprint(state: &HttpState, cref: &CredentialRef) -> Option<String> {
    if let Some(token) = state.client.cached_value(cref) {
        return Some(short_sha256(token.value()));
    }
    let stored = state.store.read_value(cref).await.ok()??;
    Some(short_sha256(&stored.value))
}

/// The first 8 hex digits of the SHA-256 of `value`.
pub fn short_sha256(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `2026-12-01T22:14:03Z`.
pub fn stamp(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `22:14:03Z` (the time of day of [`stamp`]).
pub fn clock(ms: u64) -> String {
    let s = stamp(ms);
    s.get(11..).unwrap_or(&s).to_owned()
}

/// A generation as people read it: the 16-digit fence is seeded from
/// Redis' clock in µs and counts up, so its last 4 digits tell commits
/// apart; shown after the commit time (`22:14:03Z ·0042`).
pub fn generation_label(generation: u64, committed_ms: Option<u64>) -> String {
    let suffix = format!("·{:04}", generation % 10_000);
    match committed_ms {
        Some(ms) => format!("{} {suffix}", clock(ms)),
        None => suffix,
    }
}

/// `1h 59m`, `42s`, `850ms`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_well() {
        assert_eq!(short_sha256("abc"), "ba7816bf");
        assert_eq!(clock(1_764_627_243_000), "22:14:03Z");
        assert_eq!(
            generation_label(1_764_627_243_000_042, Some(1_764_627_243_000)),
            "22:14:03Z ·0042"
        );
        assert_eq!(span(7_140_000), "1h 59m");
        assert_eq!(span(42_000), "42s");
        assert_eq!(span(90_000), "1m 30s");
    }
}
