//! JSON shapes that cross process boundaries: pub/sub events, the HTTP API,
//! and WeChat's own reply shapes.
//!
//! Events are read by non-Rust services too, so their field names are part of
//! the public contract (SPEC §3). No type here ever carries a secret; only
//! [`AccessTokenResponse`] and [`WechatToken`] carry a token, and their
//! `Debug` output redacts it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ErrorClass, Slot};

/// A message on `P:{ID}:events`. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A commit stored a new token with this generation.
    Refreshed {
        generation: u64,
        #[serde(default)]
        expires_at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fetched_by: Option<String>,
        /// The token's life when it was stored (0: not said, older
        /// coordinators): replicas plan their next refresh from it without
        /// asking Redis.
        #[serde(default)]
        ttl_ms: u64,
        /// Stored where none was (an import, a refill after data loss):
        /// kinds that spread such fills plan the next refresh at a point of
        /// the second half-life derived from the generation, the same on
        /// every replica.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        filled: bool,
    },
    /// A coordinator found that WeChat rejects the stored token of this
    /// generation (a verified report, or an upstream call that said
    /// 40001/40014/42001): it was deleted and a refresh follows.
    Invalidated { generation: u64 },
    /// A reader reported the stored token of this generation as rejected by
    /// WeChat. Nothing is deleted: a coordinator checks the token with WeChat
    /// first (a token WeChat accepts is not invalid) and answers with
    /// `invalidated` (then `refreshed`) or `report_refused`.
    Reported { generation: u64 },
    /// A report of this generation led to no refresh: `reason` is
    /// `token_valid` (WeChat accepts the token: keep using it), `spacing` (a
    /// report-triggered refresh happened too recently; one follows when the
    /// spacing ends) or `reserve` (the rest of today's budget is kept for
    /// scheduled refreshes).
    ReportRefused {
        generation: u64,
        #[serde(default)]
        reason: String,
    },
    /// Someone needs a token now (none stored, or an operator asked).
    RefreshRequested {
        #[serde(default)]
        generation: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// An operator asked for a refresh even of a fresh token. Only a
        /// force request recorded in the meta hash by a coordinator-side
        /// tool (`wxtoken refresh --force`) is honoured; the flag only wakes
        /// the replicas, so a forged event costs no upstream call.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// A component's authorizer was registered, re-authorized or revoked
    /// (published on the component's channel, SPEC §9). A hint: replicas
    /// read the registry before acting on it.
    Authorizer {
        appid: String,
        #[serde(default)]
        state: String,
    },
    /// An event kind this build does not know; ignored, never an error.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// Parses a pub/sub payload; anything unparsable is `None` (a foreign
    /// publisher must not break readers).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The payload for `slot`'s credential: `to_json` plus `"slot"` unless it
    /// is the access token (whose events stay byte for byte Part I's).
    pub fn to_json_in(&self, slot: Slot) -> String {
        let Some(name) = slot.name() else {
            return self.to_json();
        };
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert("slot".into(), serde_json::Value::from(name));
                serde_json::Value::Object(map).to_string()
            }
            _ => self.to_json(),
        }
    }

    /// The slot a payload names (`"slot"`; absent: the access token).
    /// `None` for a slot this build does not know.
    pub fn slot_of(payload: &[u8]) -> Option<Slot> {
        #[derive(Deserialize)]
        struct SlotField {
            #[serde(default)]
            slot: Option<String>,
        }
        let field: SlotField = serde_json::from_slice(payload).ok()?;
        Slot::parse(field.slot.as_deref())
    }
}

/// `GET /v1/apps/{id}/access_token` reply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenResponse {
    pub access_token: String,
    /// Whole seconds left, rounded down (WeChat's convention).
    pub expires_in: u64,
    /// Unix ms of expiry.
    pub expires_at: u64,
    pub generation: u64,
}

impl fmt::Debug for AccessTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .finish()
    }
}

/// `GET /v1/apps/{id}/tickets/{type}` reply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketResponse {
    pub ticket: String,
    /// Whole seconds left, rounded down.
    pub expires_in: u64,
    /// Unix ms of expiry.
    pub expires_at: u64,
    pub generation: u64,
}

impl fmt::Debug for TicketResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketResponse")
            .field("ticket", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("generation", &self.generation)
            .finish()
    }
}

/// A JS-SDK config signature as `wx.config` (and `wx.agentConfig`) takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsapiConfig {
    /// The appid (WeCom: the corpid) the page passes to `wx.config`.
    pub app_id: String,
    pub timestamp: u64,
    pub nonce_str: String,
    pub signature: String,
}

/// `wx.agentConfig`'s fields (WeCom): the corp, the agent and a signature
/// made with the agent's `agent_config` ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub corpid: String,
    pub agentid: u64,
    pub timestamp: u64,
    pub nonce_str: String,
    pub signature: String,
}

/// `POST /v1/apps/{id}/jsapi_signature` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureResponse {
    #[serde(flatten)]
    pub config: JsapiConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_config: Option<AgentConfig>,
}

/// Every API error body: `{"error":{"code":"snake_case","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// The last upstream error of a credential, as `status` and `GET /v1/apps` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
}

/// One credential's status, without its value (`wxtoken status --json`,
/// `GET /v1/apps`, `GET /v1/credentials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub id: String,
    /// The appid (WeCom: the corpid).
    pub appid: String,
    /// The upstream API (`token`, `stable_token`, `getticket`, `gettoken`, …).
    pub api: String,
    /// `app_token`, `jsapi_ticket`, `wx_card_ticket`, `wecom_token`,
    /// `wecom_jsapi_ticket`, `wecom_agent_config_ticket`.
    #[serde(default = "app_token")]
    pub kind: String,
    /// Absent for an access token; `ticket:jsapi`, … for a ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The WeCom agent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
    /// Whether a token is stored now.
    pub has_token: bool,
    pub generation: Option<u64>,
    /// Milliseconds the stored token has left (`PTTL`).
    pub ttl_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    pub fetched_at_ms: Option<u64>,
    pub fetched_by: Option<String>,
    pub source: Option<String>,
    pub last_error: Option<LastError>,
    /// Upstream calls in the current quota period (`quota_window`: a quota
    /// day, or for WeCom tickets the last two clock hours).
    pub quota_used_today: u64,
    /// The budget of that period.
    pub daily_budget: u64,
    #[serde(default = "day")]
    pub quota_window: String,
    /// Replica id of the refresh in progress, if any.
    pub locked_by: Option<String>,
    /// What became of readers' reports of rejected tokens (invariant 7).
    #[serde(default)]
    pub reports: ReportStatus,
    /// Operator force requests (`wxtoken refresh --force`) so far.
    #[serde(default)]
    pub force_requests: u64,
    /// Today's quota reconciliation with WeChat's own count, for
    /// credentials whose fetch endpoint has one (`cgi-bin/token` apps);
    /// absent before the first check of the quota day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_check: Option<QuotaCheck>,
    /// Present when the credential is taken from another fleet (SPEC §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed: Option<Followed>,
}

/// What WeChat's `openapi/quota/get` said about a credential's fetch
/// endpoint, against the fleet's own count of the same quota day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCheck {
    /// Calls WeChat counted that the fleet did not make: someone else
    /// fetches tokens with this appsecret (each such `cgi-bin/token` call
    /// cuts the fleet's token off five minutes later). 0 when none.
    pub foreign_fetches: u64,
    /// WeChat's `quota.used`.
    pub upstream_used: u64,
    /// The fleet's count when WeChat answered.
    pub fleet_used: u64,
    /// When the check ran (unix ms, Redis time).
    pub checked_at_ms: u64,
}

fn app_token() -> String {
    "app_token".into()
}

fn day() -> String {
    "day".into()
}

/// Reports that led to no refresh, as `status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReportStatus {
    /// Reports refused so far (WeChat accepted the token, or the rest of
    /// the day's budget is the scheduled refreshes' reserve).
    pub refused: u64,
    /// `token_valid` or `reserve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refusal_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refusal_at_ms: Option<u64>,
    /// While set, reports of the stored token are answered `token_valid`
    /// without asking WeChat again (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_until_ms: Option<u64>,
}

/// WeChat's error reply, `{"errcode":N,"errmsg":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatError {
    pub errcode: i64,
    pub errmsg: String,
}

impl WechatError {
    pub fn new(errcode: i64, errmsg: impl Into<String>) -> Self {
        Self {
            errcode,
            errmsg: errmsg.into(),
        }
    }
}

/// WeChat's token reply, `{"access_token":"…","expires_in":N}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatToken {
    pub access_token: String,
    pub expires_in: i64,
}

impl fmt::Debug for WechatToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_public_shape() {
        let e = Event::Refreshed {
            generation: 7,
            expires_at_ms: 1000,
            fetched_by: Some("r1".into()),
            ttl_ms: 7_200_000,
            filled: false,
        };
        assert_eq!(
            e.to_json(),
            r#"{"event":"refreshed","generation":7,"expires_at_ms":1000,"fetched_by":"r1","ttl_ms":7200000}"#
        );
        assert_eq!(Event::parse(e.to_json().as_bytes()), Some(e));
        // Events of coordinators that did not send `ttl_ms` still parse.
        assert!(matches!(
            Event::parse(br#"{"event":"refreshed","generation":7,"expires_at_ms":1000}"#),
            Some(Event::Refreshed { ttl_ms: 0, .. })
        ));
        assert_eq!(
            Event::parse(br#"{"event":"invalidated","generation":3}"#),
            Some(Event::Invalidated { generation: 3 })
        );
        assert_eq!(
            Event::parse(br#"{"event":"reported","generation":4}"#),
            Some(Event::Reported { generation: 4 })
        );
        assert_eq!(
            Event::parse(br#"{"event":"report_refused","generation":4,"reason":"token_valid"}"#),
            Some(Event::ReportRefused {
                generation: 4,
                reason: "token_valid".into()
            })
        );
        assert_eq!(
            Event::parse(br#"{"event":"refresh_requested"}"#),
            Some(Event::RefreshRequested {
                generation: 0,
                reason: None,
                force: false
            })
        );
    }

    #[test]
    fn ticket_events_say_their_slot() {
        let e = Event::Invalidated { generation: 3 };
        let json = e.to_json_in(Slot::Ticket(crate::TicketType::Jsapi));
        assert_eq!(
            json,
            r#"{"event":"invalidated","generation":3,"slot":"ticket:jsapi"}"#
        );
        assert_eq!(Event::parse(json.as_bytes()), Some(e.clone()));
        assert_eq!(
            Event::slot_of(json.as_bytes()),
            Some(Slot::Ticket(crate::TicketType::Jsapi))
        );
        assert_eq!(e.to_json_in(Slot::AccessToken), e.to_json());
        assert_eq!(
            Event::slot_of(e.to_json().as_bytes()),
            Some(Slot::AccessToken)
        );
        assert_eq!(
            Event::slot_of(br#"{"event":"x","slot":"ticket:nope"}"#),
            None
        );
    }

    #[test]
    fn unknown_and_junk_events_do_not_break_readers() {
        assert_eq!(
            Event::parse(br#"{"event":"party","x":1}"#),
            Some(Event::Unknown)
        );
        assert_eq!(Event::parse(b"not json"), None);
        assert_eq!(Event::parse(br#"{"generation":1}"#), None);
    }

    #[test]
    fn lua_encoded_numbers_parse() {
        // cjson in Redis may encode integers like 7 or 1.7e+12; the commit
        // script formats integers itself, but be sure plain integers parse.
        assert!(matches!(
            Event::parse(br#"{"event":"refreshed","generation":12,"expires_at_ms":1700000000000}"#),
            Some(Event::Refreshed { generation: 12, .. })
        ));
    }

    #[test]
    fn debug_redacts_tokens() {
        let r = AccessTokenResponse {
            access_token: "SECRET_TOKEN_VALUE".into(),
            expires_in: 1,
            expires_at: 2,
            generation: 3,
        };
        assert!(!format!("{r:?}").contains("SECRET_TOKEN_VALUE"));
        let w = WechatToken {
            access_token: "SECRET_TOKEN_VALUE".into(),
            expires_in: 7200,
        };
        assert!(!format!("{w:?}").contains("SECRET_TOKEN_VALUE"));
    }
}

/// A followed credential's state, as the replica following it last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    /// The primary's URL (never the key).
    pub from: String,
    /// `connected`, `disconnected: <why>`, or `not followed yet`.
    pub state: String,
    /// The last value's lag, ms: the primary's send to the commit here, by
    /// the two machines' clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// When the state was written (Unix ms, Redis' clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}
