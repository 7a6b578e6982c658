//! What the simulator saw, as plain serializable data: per-app call counters,
//! concurrency high-water marks and every issued token ([`Stats`],
//! [`AppStats`], [`IssuedToken`]). `GET /__admin/stats` returns exactly this
//! JSON, so a test in another process deserializes it with the same types.
//!
//! The counters are bumped by `shared` (which knows requests and faults);
//! token records come from `state`. This module holds no locks and applies
//! no rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::token::TokenSource;

/// A snapshot of everything counted since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Per configured app (every configured app has an entry, even if idle).
    pub apps: BTreeMap<String, AppStats>,
    /// Fetch requests in flight now, across all apps (including requests that
    /// named no known app).
    pub concurrent_fetches: u64,
    /// High-water mark of `concurrent_fetches`.
    pub max_concurrent_fetches: u64,
    /// Use-endpoint calls without an `access_token` (41001). Counted here, not
    /// per app: such a call names no app.
    pub uses_missing: u64,
    /// Use-endpoint calls with a token this simulator never issued (40001).
    pub uses_unknown_token: u64,
}

impl Stats {
    /// The stats of one app, if configured.
    pub fn app(&self, appid: &str) -> Option<&AppStats> {
        self.apps.get(appid)
    }

    /// Finds an issued token and its app.
    pub fn find_token(&self, token: &str) -> Option<(&str, &IssuedToken)> {
        self.apps.iter().find_map(|(appid, app)| {
            app.issued
                .iter()
                .find(|t| t.token == token)
                .map(|t| (appid.as_str(), t))
        })
    }
}

/// One app's counters.
///
/// `fetch_ok = token_fetch_ok + stable_fetch_ok + force_refreshes +
/// wecom_fetch_ok`; outcomes are counted when the simulator decides them,
/// before any delay fault postpones the reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStats {
    /// Every request to a fetch endpoint (`cgi-bin/token`, `stable_token`,
    /// WeCom `gettoken`) that named this app, faults and errors included.
    pub fetch_calls: u64,
    /// Fetches answered with a token (garbage replies excluded: the client
    /// never got it).
    pub fetch_ok: u64,
    /// Failed fetches by cause: the errcode as a string (`"-1"`, `"40125"`,
    /// `"45009"`, …) or `"http_502"`, `"garbage"`, `"hang"`.
    pub fetch_failed: BTreeMap<String, u64>,
    /// Successful `cgi-bin/token` fetches.
    pub token_fetch_ok: u64,
    /// Successful normal-mode `stable_token` fetches (same token or new).
    pub stable_fetch_ok: u64,
    /// Successful `stable_token` fetches with `force_refresh=true`.
    pub force_refreshes: u64,
    /// Successful WeCom `gettoken` fetches.
    pub wecom_fetch_ok: u64,
    /// Fetch requests for this app in flight now.
    pub concurrent_fetches: u64,
    /// High-water mark of truly concurrent in-flight fetch requests: counted
    /// from handler entry until the handler finishes or is dropped (client
    /// gone), so hung and cancelled requests are accounted for.
    pub max_concurrent_fetches: u64,
    /// Use-endpoint calls with a valid token of this app.
    pub uses_ok: u64,
    /// Use-endpoint calls with a revoked or superseded token (40001).
    pub uses_invalid: u64,
    /// Use-endpoint calls with an expired token (42001).
    pub uses_expired: u64,
    /// Always 0: a call without a token names no app. Kept for the agreed
    /// shape; see [`Stats::uses_missing`].
    pub uses_missing: u64,
    /// Successful `getticket` calls.
    pub tickets_ok: u64,
    /// Every `get_api_domain_ip` call with this app's token (the cheap call
    /// wxtoken shows a reported token to), whatever the answer.
    pub domain_ip_calls: u64,
    /// `get_api_domain_ip` quota used on the current quota day.
    pub domain_ip_used_today: u64,
    /// `cgi-bin/token` quota used on the current quota day (fleet and
    /// external calls).
    pub quota_used_today: u64,
    /// `stable_token` quota used on the current quota day.
    pub stable_quota_used_today: u64,
    /// Force refreshes used on the current quota day.
    pub force_refresh_used_today: u64,
    /// Every token issued for this app, oldest first, all lineages.
    pub issued: Vec<IssuedToken>,
}

/// One issued token and its life so far. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The token itself (tests compare it with what the fleet handed out).
    pub token: String,
    /// Which call issued it.
    pub source: TokenSource,
    /// When it was issued.
    pub issued_at_ms: u64,
    /// Its natural expiry (42001 from then on).
    pub expires_at_ms: u64,
    /// When a newer token of the same lineage was issued.
    pub superseded_at_ms: Option<u64>,
    /// When it was cut off before its overlap ended: a force refresh, a
    /// second successor inside the overlap (`cgi-bin/token`), or an admin
    /// revoke.
    pub revoked_at_ms: Option<u64>,
    /// From when it answers 40001 (superseded + overlap, or revoked),
    /// if that comes before its natural expiry.
    pub invalid_from_ms: Option<u64>,
}

impl IssuedToken {
    /// The first moment (unix ms) at which the token no longer works,
    /// whichever way it dies.
    pub fn dead_from_ms(&self) -> u64 {
        self.invalid_from_ms
            .map_or(self.expires_at_ms, |t| t.min(self.expires_at_ms))
    }

    /// True if a use at `unix_ms` would be accepted.
    pub fn usable_at(&self, unix_ms: u64) -> bool {
        unix_ms >= self.issued_at_ms && unix_ms < self.dead_from_ms()
    }
}
