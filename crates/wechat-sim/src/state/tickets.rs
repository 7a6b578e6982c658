//! The Official Account ticket rule (`getticket`: per-type daily quota, one
//! current ticket per (app, type)), for apps and for Open Platform
//! authorizers alike, and the lookup of the ticket a JS-SDK signature must
//! use, for apps, authorizers and WeCom.
//!
//! The token is judged before any of this (`shared`): a ticket call only
//! reaches these rules with a valid token of the owner.

use crate::errcode::WxError;
use crate::ticket::{TicketGrant, TicketKind, TicketUnusable};
use crate::token::Now;

use super::World;

/// Whose ticket a signature check names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketOwner<'a> {
    /// An Official Account / Mini Program (`jsapi`, `wx_card`).
    App(&'a str),
    /// A WeCom agent (`wecom_jsapi`: its corp's ticket; `agent_config`).
    Agent {
        corpid: &'a str,
        agentid: Option<u64>,
    },
}

impl World {
    /// `getticket` for `appid`, whose token was valid: 45009 once this
    /// type's daily quota is spent; else the current ticket, minted anew only
    /// when there is none or it expired. A new access token does not change
    /// the ticket.
    pub(crate) fn app_ticket(
        &mut self,
        appid: &str,
        kind: TicketKind,
        now: Now,
    ) -> Result<TicketGrant, WxError> {
        let (ttl, limits) = (self.ticket_rules.ttl, self.limits);
        let book = self.apps.get_mut(appid).ok_or(WxError::InvalidCredential)?;
        book.quota.take_ticket(now, kind.type_name(), limits)?;
        let slot = match kind {
            TicketKind::WxCard => &mut book.wx_card,
            _ => &mut book.jsapi,
        };
        let grant = slot.get_or_mint(kind, now, ttl);
        if let Some(minted) = &grant.minted {
            self.record_ticket(appid, minted);
        }
        Ok(grant)
    }

    /// `getticket` for authorizer `key`, whose token was valid: the same
    /// rule as an app's, on the authorizer's own quota and slots. Its
    /// minted tickets are not kept in `issued_tickets` (100 000
    /// authorizers).
    pub(crate) fn authorizer_ticket(
        &mut self,
        key: super::AuthKey,
        kind: TicketKind,
        now: Now,
    ) -> Result<TicketGrant, WxError> {
        let (ttl, limits) = (self.ticket_rules.ttl, self.limits);
        let side = self
            .authorizer_app_side(key)
            .ok_or(WxError::InvalidCredential)?;
        side.quota.take_ticket(now, kind.type_name(), limits)?;
        let slot = match kind {
            TicketKind::WxCard => &mut side.wx_card,
            _ => &mut side.jsapi,
        };
        Ok(slot.get_or_mint(kind, now, ttl))
    }

    /// The ticket a signature of `kind` by `owner` must be made with at
    /// `now`, and the stats key to count the check under. `None` when the
    /// owner is not configured or does not have tickets of that kind.
    pub(crate) fn signing_ticket(
        &self,
        kind: TicketKind,
        owner: TicketOwner<'_>,
        now: Now,
    ) -> Option<(String, Result<&str, TicketUnusable>)> {
        match (kind, owner) {
            (TicketKind::Jsapi | TicketKind::WxCard, TicketOwner::App(appid)) => {
                let (jsapi, wx_card) = match self.apps.get(appid) {
                    Some(book) => (&book.jsapi, &book.wx_card),
                    None => {
                        let side = self.authorizer_app_side_by_appid(appid)?;
                        (&side.jsapi, &side.wx_card)
                    }
                };
                let slot = if kind == TicketKind::WxCard {
                    wx_card
                } else {
                    jsapi
                };
                Some((appid.to_owned(), slot.usable(now)))
            }
            (
                TicketKind::WecomJsapi | TicketKind::AgentConfig,
                TicketOwner::Agent { corpid, agentid },
            ) => self.wecom_signing_ticket(kind, corpid, agentid, now),
            _ => None,
        }
    }
}
