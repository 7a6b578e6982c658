//! JS-SDK tickets of an official account (`[[apps]] tickets = ["jsapi",
//! "wx_card"]`): `GET cgi-bin/ticket/getticket?access_token=&type=`, fetched
//! with the app's current token (SPEC §8).
//!
//! WeChat hands out the same ticket while it is valid, always with
//! `expires_in` 7200: a ticket's life counts from when the fleet first
//! stored it ([`Life::FirstStored`]), it cannot be renewed ahead (lead 0),
//! and a reported ticket is judged by fetching again ([`CheckBy::Fetch`]).
//! A getticket that says 40001/40014/42001 blames the parent token
//! ([`FetchError::ParentRejected`]); the refresher replaces it and retries.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use wxtoken_common::{CredentialId, CredentialRef, ErrorClass, TicketType, Window};

use super::{CheckBy, Credential, Describe, Family, FetchCx, Fetched, Kind, Life, Limits};
use crate::config::{Config, RefreshConfig};
use crate::upstream::{FetchError, parse_value};

/// One ticket type of one app.
#[derive(Debug)]
pub struct JsTicket {
    id: CredentialId,
    appid: String,
    ticket: TicketType,
    base_url: String,
}

pub(super) fn from_config(config: &Config) -> Vec<Credential> {
    config
        .apps
        .iter()
        .flat_map(|app| {
            app.tickets.iter().map(|&ticket| {
                Credential::new(
                    CredentialRef::ticket(app.id.clone(), ticket),
                    JsTicket {
                        id: app.id.clone(),
                        appid: app.appid.clone(),
                        ticket,
                        base_url: config.upstream.base_url.clone(),
                    },
                )
                .followed(app.follow.as_ref())
            })
        })
        .collect()
}

/// getticket's errcodes (its token errors are the parent's, see [`parent_rejected`]).
fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        45009 => ErrorClass::QuotaExhausted,
        45011 => ErrorClass::RateLimited,
        40097 | 40013 | 40164 | 40243 => ErrorClass::Fatal,
        _ => ErrorClass::Retryable,
    }
}

/// A ticket endpoint's error that blames the token it was given.
pub(super) fn parent_rejected(e: FetchError, rejects: fn(i64) -> bool) -> FetchError {
    match e {
        FetchError::Wechat { errcode, .. } if rejects(errcode) => {
            FetchError::ParentRejected { errcode }
        }
        other => other,
    }
}

impl Kind for JsTicket {
    fn name(&self) -> &'static str {
        match self.ticket {
            TicketType::WxCard => "wx_card_ticket",
            _ => "jsapi_ticket",
        }
    }

    fn api(&self) -> &'static str {
        "getticket"
    }

    fn lead(&self, _: &RefreshConfig) -> Duration {
        Duration::ZERO
    }

    fn limits(&self, s: &RefreshConfig) -> Limits {
        Limits {
            window: Window::Day,
            budget: s.ticket_daily_budget,
            shared: None,
        }
    }

    fn parent(&self) -> Option<CredentialRef> {
        Some(CredentialRef::token(self.id.clone()))
    }

    fn life(&self) -> Life {
        Life::FirstStored
    }

    fn check(&self) -> CheckBy {
        CheckBy::Fetch
    }

    fn describe(&self) -> Describe {
        Describe {
            family: Family::App,
            owner: self.appid.clone(),
            api: "getticket",
            agentid: None,
        }
    }

    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        async move {
            let token = cx
                .parent
                .ok_or_else(|| FetchError::ParentUnavailable("no access token".into()))?;
            let (status, body) = cx
                .upstream
                .get(
                    &format!("{}/cgi-bin/ticket/getticket", self.base_url),
                    &[
                        ("access_token", token.expose_secret()),
                        ("type", self.ticket.as_str()),
                    ],
                )
                .await?;
            let grant = parse_value(status, &body, "ticket", classify)
                .map_err(|e| parent_rejected(e, wxtoken_common::is_token_rejected))?;
            Ok(Fetched::new(grant.token, grant.expires_in, "getticket"))
        }
        .boxed()
    }
}
