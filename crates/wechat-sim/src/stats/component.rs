//! What the simulator saw of Open Platform components: per component
//! ([`ComponentStats`]) its pushes, its calls by endpoint, its token and
//! authorizer limits, and its population; per authorizer
//! ([`AuthorizerStats`]) its token fetches and refusals.
//!
//! Kept small at 100 000 authorizers: a component's entry carries
//! aggregates, and only the authorizers with an anomaly (more than one
//! fetch in flight at once, or a 61023 refusal) in
//! [`ComponentStats::anomalies`], at most [`MAX_ANOMALIES`] of them. Any one
//! authorizer's full entry is `GET /__admin/components/authorizer` (or
//! `SimHandle::authorizer_stats`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IssuedToken;

/// The most authorizers listed in [`ComponentStats::anomalies`].
pub const MAX_ANOMALIES: usize = 1000;

/// The endpoint names [`ComponentStats::calls`] and friends are keyed by.
pub mod endpoint {
    pub const COMPONENT_TOKEN: &str = "api_component_token";
    pub const START_PUSH_TICKET: &str = "api_start_push_ticket";
    pub const CREATE_PREAUTHCODE: &str = "api_create_preauthcode";
    pub const QUERY_AUTH: &str = "api_query_auth";
    pub const AUTHORIZER_TOKEN: &str = "api_authorizer_token";
    pub const GET_AUTHORIZER_LIST: &str = "api_get_authorizer_list";
}

/// One component's counters.
///
/// Push causes (`pushes_failed`): `"http_NNN"` (a non-2xx status),
/// `"not_success"` (2xx whose body is not `success`), `"timeout"` (no
/// answer within 5 s), `"connect"` (no connection), `"client"` (no HTTP
/// client). Call causes are as in `AppStats::fetch_failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentStats {
    /// Verify tickets minted (one per push period, one per
    /// `api_start_push_ticket`, one per admin push), delivered or not.
    pub verify_tickets_issued: u64,
    /// The latest verify ticket (what a receiver should hold now).
    pub verify_ticket: Option<String>,
    /// Genuine pushes attempted, by `InfoType` (`component_verify_ticket`,
    /// `authorized`, `updateauthorized`, `unauthorized`).
    pub pushes: BTreeMap<String, u64>,
    /// Genuine pushes answered 2xx with the body `success`.
    pub pushes_ok: u64,
    /// Genuine pushes that failed, by cause.
    pub pushes_failed: BTreeMap<String, u64>,
    /// Forged pushes sent (admin), by kind (`bad_signature`,
    /// `wrong_appid`, `stale_timestamp`, `oversized`).
    pub forged_pushes: BTreeMap<String, u64>,
    /// Forged pushes the receiver answered `success` to (a receiver bug).
    pub forged_accepted: u64,
    /// Replays of the last push sent (admin), and how many the receiver
    /// answered `success` to (it may, WeChat itself retries).
    pub replays: u64,
    pub replays_accepted: u64,
    /// Calls by endpoint (see [`endpoint`]), faults and errors included.
    pub calls: BTreeMap<String, u64>,
    /// Successful calls by endpoint (garbage replies excluded).
    pub ok: BTreeMap<String, u64>,
    /// Failed calls by endpoint, then cause.
    pub failed: BTreeMap<String, BTreeMap<String, u64>>,
    /// `api_component_token` requests in flight now.
    pub concurrent_token_fetches: u64,
    /// High-water mark of `concurrent_token_fetches`.
    pub max_concurrent_token_fetches: u64,
    /// `api_component_token` quota used on the current quota day.
    pub token_quota_used_today: u64,
    /// The most `api_component_token` calls admitted in one minute.
    pub max_token_calls_per_minute: u64,
    /// Every component token issued, oldest first.
    pub issued: Vec<IssuedToken>,
    /// `api_authorizer_token` calls admitted in the minute ending now, all
    /// authorizers together.
    pub authorizer_calls_last_minute: u64,
    /// The most admitted in any one minute so far (never above the cap).
    pub max_authorizer_calls_per_minute: u64,
    /// 45011 answers to `api_authorizer_token`: the minute window was full.
    pub authorizer_minute_refusals: u64,
    /// 61023 answers to `api_authorizer_token`, all authorizers together.
    pub refresh_token_refusals: u64,
    /// `api_authorizer_token` requests in flight now, all authorizers.
    pub concurrent_authorizer_fetches: u64,
    /// High-water mark of `concurrent_authorizer_fetches`.
    pub max_concurrent_authorizer_fetches: u64,
    /// The highest `max_concurrent_fetches` of any one authorizer (1 is
    /// single-flight; above 1 the authorizer is in `anomalies`).
    pub max_concurrent_fetches_per_authorizer: u64,
    /// Authorizers ever authorized (bulk-created included), and how many
    /// of them revoked since.
    pub authorizers: u64,
    pub authorizers_revoked: u64,
    /// Authorizer access tokens issued, all authorizers.
    pub authorizer_tokens_issued: u64,
    /// Bytes the authorizers and their tokens take in the simulator (an
    /// estimate from table capacities).
    pub authorizer_bytes: u64,
    /// Authorizers with an anomaly, by appid, at most [`MAX_ANOMALIES`].
    pub anomalies: BTreeMap<String, AuthorizerStats>,
    /// Authorizers with an anomaly left out of `anomalies`.
    pub anomalies_omitted: u64,
}

impl ComponentStats {
    /// Calls to `endpoint` (0 if none).
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Successful calls to `endpoint`.
    pub fn ok(&self, endpoint: &str) -> u64 {
        self.ok.get(endpoint).copied().unwrap_or(0)
    }

    /// Failed calls to `endpoint` with `cause` (an errcode, `"-1"`,
    /// `"http_502"`, `"garbage"`, `"hang"`).
    pub fn failed(&self, endpoint: &str, cause: &str) -> u64 {
        self.failed
            .get(endpoint)
            .and_then(|m| m.get(cause))
            .copied()
            .unwrap_or(0)
    }
}

/// One authorizer's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthorizerStats {
    pub authorizer_appid: String,
    /// Unauthorized: refresh tokens refused, out of the lists.
    pub revoked: bool,
    /// Unix seconds of the latest authorization.
    pub auth_time: u64,
    /// The refresh token `api_get_authorizer_list` shows now.
    pub refresh_token: String,
    /// `api_authorizer_token` requests naming this authorizer.
    pub fetch_calls: u64,
    /// Those answered with a token (garbage replies excluded).
    pub fetch_ok: u64,
    /// Those that failed, by cause.
    pub fetch_failed: BTreeMap<String, u64>,
    /// In flight now, and the high-water mark.
    pub concurrent_fetches: u64,
    pub max_concurrent_fetches: u64,
    /// 61023 answers (a refresh token not accepted, or revoked).
    pub refresh_token_refusals: u64,
    /// App-endpoint calls with this authorizer's tokens: accepted, 40001,
    /// 42001; and `get_api_domain_ip` calls whatever the answer.
    pub uses_ok: u64,
    pub uses_invalid: u64,
    pub uses_expired: u64,
    pub domain_ip_calls: u64,
    /// The latest access token and the one before it (older ones are
    /// dead), oldest first.
    pub access_tokens: Vec<IssuedToken>,
}

impl AuthorizerStats {
    /// True when the authorizer belongs in [`ComponentStats::anomalies`].
    pub fn is_anomaly(&self) -> bool {
        self.max_concurrent_fetches > 1 || self.refresh_token_refusals > 0
    }
}
