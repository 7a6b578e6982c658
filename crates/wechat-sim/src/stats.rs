//! What the simulator saw, as plain serializable data: per-app (and per
//! WeCom agent) call counters, concurrency high-water marks, every issued
//! token and ticket, and the WeCom hourly ticket windows ([`Stats`],
//! [`AppStats`], [`IssuedToken`], [`IssuedTicket`], [`CorpStats`],
//! [`AgentTicketStats`]). `GET /__admin/stats` returns exactly this JSON, so
//! a test in another process deserializes it with the same types; every
//! struct is `#[serde(default)]`, so older JSON still parses.
//!
//! Open Platform components and their authorizers are in
//! `stats/component.rs` ([`ComponentStats`], [`AuthorizerStats`]).
//!
//! The counters are bumped by `shared` (which knows requests and faults);
//! token records come from `state`. This module holds no locks and applies
//! no rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::token::TokenSource;

mod component;

pub use component::{AuthorizerStats, ComponentStats, MAX_ANOMALIES, endpoint};

/// A snapshot of everything counted since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Per configured app (every configured app has an entry, even if idle),
    /// and per WeCom agent under `"{corpid}:{agentid}"` (`"{corpid}:"` for a
    /// secret without agentid).
    pub apps: BTreeMap<String, AppStats>,
    /// Per configured WeCom corp: gettoken calls and the hourly ticket
    /// windows, corp-wide and per agent.
    pub corps: BTreeMap<String, CorpStats>,
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
    /// Per configured Open Platform component, by component appid. Its
    /// authorizers are counted there, not in `apps`.
    pub components: BTreeMap<String, ComponentStats>,
    /// Business calls answered with success (a valid token and a
    /// well-formed request), by path (`/cgi-bin/message/custom/send`, …).
    pub business_ok: BTreeMap<String, u64>,
    /// The last media uploads received (at most 64, oldest first).
    pub uploads: Vec<Upload>,
}

/// One media upload as the simulator received it, so a test can tell that
/// every byte went through a proxy unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Upload {
    pub media_id: String,
    /// Bytes of the `media` part.
    pub bytes: u64,
    /// SHA-1 (hex) of the `media` part.
    pub sha1: String,
}

impl Stats {
    /// The stats of one app, if configured.
    pub fn app(&self, appid: &str) -> Option<&AppStats> {
        self.apps.get(appid)
    }

    /// The stats of one WeCom agent (`agentid` `None`: a secret without one).
    pub fn agent(&self, corpid: &str, agentid: Option<u64>) -> Option<&AppStats> {
        self.apps.get(&crate::config::agent_key(corpid, agentid))
    }

    /// The WeCom stats of one corp, if configured.
    pub fn corp(&self, corpid: &str) -> Option<&CorpStats> {
        self.corps.get(corpid)
    }

    /// The stats of one Open Platform component, if configured.
    pub fn component(&self, component_appid: &str) -> Option<&ComponentStats> {
        self.components.get(component_appid)
    }

    /// Finds an issued token and its app (or `corpid:agentid`).
    pub fn find_token(&self, token: &str) -> Option<(&str, &IssuedToken)> {
        self.apps.iter().find_map(|(appid, app)| {
            app.issued
                .iter()
                .find(|t| t.token == token)
                .map(|t| (appid.as_str(), t))
        })
    }
}

/// One app's (or WeCom agent's) counters.
///
/// `fetch_ok = token_fetch_ok + stable_fetch_ok + force_refreshes +
/// wecom_fetch_ok`; outcomes are counted when the simulator decides them,
/// before any delay fault postpones the reply. Ticket maps are keyed by
/// ticket type: `jsapi` / `wx_card` for apps, `jsapi` (the corp ticket) /
/// `agent_config` for WeCom agents.
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
    /// Successful ticket calls (`getticket`, WeCom `get_jsapi_ticket` and
    /// `ticket/get`): a ticket reached the client (garbage replies excluded).
    pub tickets_ok: u64,
    /// Every ticket call naming a valid token of this app at arrival, by
    /// type, faults and refusals included.
    pub ticket_calls: BTreeMap<String, u64>,
    /// New ticket values minted by this app's calls, by type (a re-fetch of
    /// a still-valid ticket mints nothing). For the WeCom corp ticket: on
    /// the agent whose call minted it.
    pub tickets_issued: BTreeMap<String, u64>,
    /// Failed ticket calls by cause, as `fetch_failed` (`"45009"`,
    /// `"40097"`, `"-1"`, `"http_502"`, `"garbage"`, `"hang"`, …).
    pub ticket_failed: BTreeMap<String, u64>,
    /// Ticket calls with this app's token in flight now, by type.
    pub concurrent_ticket_fetches: BTreeMap<String, u64>,
    /// High-water mark of in-flight ticket calls, by type, counted like
    /// `max_concurrent_fetches` (handler entry until finished or dropped);
    /// every call naming a token of this app with a known type counts.
    pub max_concurrent_ticket_fetches: BTreeMap<String, u64>,
    /// `getticket` quota used on the current quota day, by type (apps only;
    /// WeCom caps are in [`CorpStats`]).
    pub ticket_quota_used_today: BTreeMap<String, u64>,
    /// Every ticket this app's calls minted, oldest first.
    pub issued_tickets: Vec<IssuedTicket>,
    /// `/__admin/jsapi_check` calls whose signature matched the current,
    /// valid ticket.
    pub signatures_ok: u64,
    /// `/__admin/jsapi_check` calls refused (no ticket, expired ticket,
    /// signature mismatch).
    pub signatures_bad: u64,
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
    /// `openapi/quota/get` calls with a token of this app, whatever the answer.
    pub quota_get_calls: u64,
    /// Successful `clear_quota/v2` calls naming this app.
    pub quota_clears: u64,
    /// Refused `clear_quota/v2` calls naming this app (48006, bad secret).
    pub quota_clears_refused: u64,
    /// `clear_quota` resets used this calendar month (Asia/Shanghai; 10 allowed).
    pub clears_used_this_month: u64,
}

/// One minted ticket. Times are unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IssuedTicket {
    /// The ticket itself.
    pub ticket: String,
    /// Its type: `jsapi`, `wx_card` or `agent_config`.
    pub kind: String,
    /// When it was minted.
    pub issued_at_ms: u64,
    /// When it stops being handed out (a new one is minted from then on)
    /// and stops signing.
    pub expires_at_ms: u64,
}

/// One WeCom corp: its gettoken calls and its hourly ticket windows.
///
/// Windows are sliding (`wecom_ticket_window`, default 60 min) and count
/// only admitted calls (valid token, under both caps): refused calls use no
/// budget. Maps are keyed by ticket type, `jsapi` and `agent_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorpStats {
    /// Every gettoken call naming this corpid, whatever its secret.
    pub fetch_calls: u64,
    /// Failed gettoken calls naming this corp, by cause (a secret no agent
    /// has is `"40001"` here and nowhere else).
    pub fetch_failed: BTreeMap<String, u64>,
    /// The per-agent cap in force (`wecom_ticket_agent_hourly`).
    pub agent_hourly_cap: u64,
    /// The corp-wide cap in force (`wecom_ticket_corp_hourly`).
    pub corp_hourly_cap: u64,
    /// Ticket calls admitted in the window ending now, all agents together.
    pub ticket_calls_last_hour: BTreeMap<String, u64>,
    /// The most admitted in any one window so far (never above the cap).
    pub max_ticket_calls_per_hour: BTreeMap<String, u64>,
    /// 45009 answers to this corp's ticket calls, whichever cap was full.
    pub ticket_cap_refusals: BTreeMap<String, u64>,
    /// The same, per agent, keyed by agentid (`""` for none).
    pub agents: BTreeMap<String, AgentTicketStats>,
}

/// One WeCom agent's hourly ticket window (see [`CorpStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentTicketStats {
    /// Ticket calls admitted in the window ending now.
    pub ticket_calls_last_hour: BTreeMap<String, u64>,
    /// The most admitted in any one window so far.
    pub max_ticket_calls_per_hour: BTreeMap<String, u64>,
    /// 45009 answers to this agent's ticket calls, whichever cap was full.
    pub ticket_cap_refusals: BTreeMap<String, u64>,
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
