//! One ticket's life and what it signs: the ticket kinds ([`TicketKind`]),
//! the current ticket of one (owner, kind) ([`TicketSlot`]: the same value
//! while it is valid, a new one only after it expired), and the JS-SDK
//! signature a browser's `wx.config` / `wx.agentConfig` checks
//! ([`jsapi_signature`]).
//!
//! Who owns a slot (an app, a corp, an agent) and what budget a call spends
//! is `state`'s business; this module never reads a clock of its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::IssuedTicket;
use crate::token::{Now, random_ticket};

/// Every kind of ticket the simulator hands out. The wire names (`kind` of
/// `/__admin/jsapi_check`) are `jsapi`, `wx_card`, `wecom_jsapi`,
/// `agent_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TicketKind {
    /// Official Account `getticket?type=jsapi`, per app.
    Jsapi,
    /// Official Account `getticket?type=wx_card`, per app.
    WxCard,
    /// WeCom `get_jsapi_ticket`: the corp's ticket (`wx.config`), per corp.
    WecomJsapi,
    /// WeCom `ticket/get?type=agent_config` (`wx.agentConfig`), per agent.
    AgentConfig,
}

impl TicketKind {
    /// The `type` name used in stats keys (`ticket_calls["jsapi"]`): WeCom's
    /// corp ticket is `jsapi` too, on a WeCom agent's entry.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            TicketKind::Jsapi | TicketKind::WecomJsapi => "jsapi",
            TicketKind::WxCard => "wx_card",
            TicketKind::AgentConfig => "agent_config",
        }
    }

    /// The kind of an Official Account `getticket?type=…`.
    pub(crate) fn from_getticket(ty: Option<&str>) -> Option<Self> {
        match ty {
            Some("jsapi") => Some(TicketKind::Jsapi),
            Some("wx_card") => Some(TicketKind::WxCard),
            _ => None,
        }
    }
}

/// A ticket handed out by a ticket endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TicketGrant {
    pub(crate) ticket: String,
    /// `expires_in` to report: always the full ticket life.
    pub(crate) expires_in: Duration,
    /// The record, when this call minted a new value.
    pub(crate) minted: Option<IssuedTicket>,
}

/// Why a ticket cannot sign now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketUnusable {
    /// None issued yet (or forgotten by a reset).
    NoTicket,
    /// The current one is past its life.
    Expired,
}

impl TicketUnusable {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TicketUnusable::NoTicket => "no ticket issued",
            TicketUnusable::Expired => "ticket expired",
        }
    }
}

#[derive(Debug, Clone)]
struct TicketRecord {
    value: String,
    expires: Now,
}

/// The current ticket of one (owner, kind).
#[derive(Debug, Clone, Default)]
pub(crate) struct TicketSlot {
    current: Option<TicketRecord>,
}

impl TicketSlot {
    /// The current ticket while it is valid at `now`, else a new one living
    /// `ttl`. Either way `expires_in` is the full `ttl` (WeChat and WeCom
    /// both report 7200 for a re-fetched ticket).
    pub(crate) fn get_or_mint(&mut self, kind: TicketKind, now: Now, ttl: Duration) -> TicketGrant {
        if let Some(rec) = &self.current
            && now.at < rec.expires.at
        {
            return TicketGrant {
                ticket: rec.value.clone(),
                expires_in: ttl,
                minted: None,
            };
        }
        let value = random_ticket();
        let expires = now.after(ttl);
        self.current = Some(TicketRecord {
            value: value.clone(),
            expires,
        });
        TicketGrant {
            ticket: value.clone(),
            expires_in: ttl,
            minted: Some(IssuedTicket {
                ticket: value,
                kind: kind.type_name().to_owned(),
                issued_at_ms: now.unix_ms,
                expires_at_ms: expires.unix_ms,
            }),
        }
    }

    /// The ticket a signature must use at `now`.
    pub(crate) fn usable(&self, now: Now) -> Result<&str, TicketUnusable> {
        match &self.current {
            None => Err(TicketUnusable::NoTicket),
            Some(rec) if now.at >= rec.expires.at => Err(TicketUnusable::Expired),
            Some(rec) => Ok(&rec.value),
        }
    }
}

/// The JS-SDK signature: lowercase hex
/// `sha1("jsapi_ticket=T&noncestr=N&timestamp=S&url=U")`, over exactly the
/// strings given. `url` must already be without its `#fragment` (see
/// [`url_without_fragment`]); the same formula signs `wx.config` (jsapi
/// ticket) and `wx.agentConfig` (agent_config ticket).
pub fn jsapi_signature(ticket: &str, noncestr: &str, timestamp: &str, url: &str) -> String {
    let plain =
        format!("jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}");
    sha1_smol::Sha1::from(plain).digest().to_string()
}

/// The page URL as the signature covers it: everything before the first `#`.
pub fn url_without_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(before, _)| before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_wechats_published_example() {
        let sig = jsapi_signature(
            "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            "Wm3WZYTPz0wzccnW",
            "1414587457",
            "http://mp.weixin.qq.com?params=value",
        );
        assert_eq!(sig, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }

    #[test]
    fn fragment_is_cut_at_the_first_hash() {
        assert_eq!(
            url_without_fragment("https://a/b?c=d#e#f"),
            "https://a/b?c=d"
        );
        assert_eq!(url_without_fragment("https://a/b"), "https://a/b");
    }

    #[test]
    fn slot_returns_same_ticket_while_valid_full_expires_in_new_after_expiry() {
        let ttl = Duration::from_secs(10);
        let t0 = Now::current();
        let mut slot = TicketSlot::default();
        assert_eq!(slot.usable(t0), Err(TicketUnusable::NoTicket));
        let a = slot.get_or_mint(TicketKind::Jsapi, t0, ttl);
        let minted = a.minted.clone().unwrap();
        assert_eq!(minted.kind, "jsapi");
        assert_eq!(minted.expires_at_ms - minted.issued_at_ms, 10_000);
        assert_eq!(a.ticket.len(), 86);
        let b = slot.get_or_mint(TicketKind::Jsapi, t0.after(Duration::from_secs(9)), ttl);
        assert_eq!(
            (b.ticket.as_str(), b.expires_in, b.minted),
            (a.ticket.as_str(), ttl, None)
        );
        let at_expiry = t0.after(ttl);
        assert_eq!(slot.usable(at_expiry), Err(TicketUnusable::Expired));
        let c = slot.get_or_mint(TicketKind::Jsapi, at_expiry, ttl);
        assert_ne!(c.ticket, a.ticket);
        assert_eq!(slot.usable(at_expiry), Ok(c.ticket.as_str()));
    }
}
