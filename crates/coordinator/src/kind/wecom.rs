//! WeCom (企业微信, `[[wecom]]`): an agent's access token
//! (`GET {wecom_base_url}/cgi-bin/gettoken?corpid=&corpsecret=`) and its
//! JS-SDK tickets — the corp's (`cgi-bin/get_jsapi_ticket`) and the
//! agent's (`cgi-bin/ticket/get?type=agent_config`) — SPEC §8.
//!
//! WeCom hands out the same token (and ticket) while it is valid, so lives
//! count from first storage and nothing is fetched ahead. WeCom may revoke a
//! token early: a report is checked with `cgi-bin/get_api_domain_ip`, whose
//! 40014/42001 mean a bad token (in WeCom 40001 means a bad *secret*).
//! Tickets are capped per hour per agent and per corp across its agents
//! (100 / 400): the corp's cap is a [`SharedLimit`].

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use wxtoken_common::{CredentialId, CredentialRef, ErrorClass, TicketType, Window};

use super::js_ticket::parent_rejected;
use super::{
    CheckBy, Credential, Describe, Family, FetchCx, Fetched, Kind, Life, Limits, SharedLimit,
};
use crate::config::{Config, RefreshConfig, WecomConfig};
use crate::upstream::{FetchError, parse_value, withhold_echo};

/// A `[[wecom]]` entry's access token.
#[derive(Debug)]
pub struct WecomToken {
    corpid: String,
    agentid: Option<u64>,
    /// `None` for a followed agent configured without it: never fetched.
    secret: Option<SecretString>,
    base_url: String,
}

/// A WeCom ticket: the corp's jsapi ticket or an agent's agent_config one.
#[derive(Debug)]
pub struct WecomTicket {
    id: CredentialId,
    corpid: String,
    agentid: Option<u64>,
    ticket: TicketType,
    base_url: String,
    /// The corp's other agents keeping its jsapi ticket: WeCom hands them
    /// all the same one.
    siblings: Vec<CredentialRef>,
    /// The first of them in the config (when it is not this one): it
    /// fetches, this one takes its value.
    leader: Option<CredentialRef>,
}

pub(super) fn tokens_from_config(config: &Config) -> Vec<Credential> {
    config
        .wecom
        .iter()
        .map(|w| {
            Credential::new(
                CredentialRef::token(w.id.clone()),
                WecomToken {
                    corpid: w.corpid.clone(),
                    agentid: w.agentid,
                    secret: w.secret.clone(),
                    base_url: config.upstream.wecom_base_url.clone(),
                },
            )
            .followed(w.follow.as_ref())
        })
        .collect()
}

pub(super) fn tickets_from_config(config: &Config) -> Vec<Credential> {
    config
        .wecom
        .iter()
        .flat_map(|w| {
            w.tickets.iter().map(|&ticket| {
                let sharing: Vec<&WecomConfig> = match ticket {
                    TicketType::Jsapi => config
                        .wecom
                        .iter()
                        .filter(|o| o.corpid == w.corpid)
                        .filter(|o| o.tickets.contains(&TicketType::Jsapi))
                        .collect(),
                    _ => Vec::new(),
                };
                let jsapi =
                    |o: &WecomConfig| CredentialRef::ticket(o.id.clone(), TicketType::Jsapi);
                let siblings = sharing
                    .iter()
                    .filter(|o| o.id != w.id)
                    .map(|o| jsapi(o))
                    .collect();
                let leader = sharing.first().filter(|o| o.id != w.id).map(|o| jsapi(o));
                Credential::new(
                    CredentialRef::ticket(w.id.clone(), ticket),
                    WecomTicket {
                        id: w.id.clone(),
                        corpid: w.corpid.clone(),
                        agentid: w.agentid,
                        ticket,
                        base_url: config.upstream.wecom_base_url.clone(),
                        siblings,
                        leader,
                    },
                )
                .followed(w.follow.as_ref())
            })
        })
        .collect()
}

/// WeCom's errcodes of `gettoken` (SPEC §8).
pub fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        -1 | 45033 => ErrorClass::Retryable,
        // "api freq out of limit": a rate limit, not a daily quota.
        45009 | 45011 => ErrorClass::RateLimited,
        40001 | 40013 | 40056 | 40091 | 60011 | 60020 | 41002 | 41004 => ErrorClass::Fatal,
        _ => ErrorClass::Retryable,
    }
}

/// WeCom's "this token is bad": invalid (40014) or expired (42001).
pub fn rejects(errcode: i64) -> bool {
    matches!(errcode, 40014 | 42001)
}

impl Kind for WecomToken {
    fn api_base(&self) -> Option<&str> {
        Some(&self.base_url)
    }

    fn name(&self) -> &'static str {
        "wecom_token"
    }

    fn api(&self) -> &'static str {
        "gettoken"
    }

    fn lead(&self, _: &RefreshConfig) -> Duration {
        Duration::ZERO
    }

    fn limits(&self, s: &RefreshConfig) -> Limits {
        Limits {
            window: Window::Day,
            budget: s.daily_budget,
            shared: None,
        }
    }

    fn life(&self) -> Life {
        Life::FirstStored
    }

    fn check(&self) -> CheckBy {
        CheckBy::Call {
            url: format!("{}/cgi-bin/get_api_domain_ip", self.base_url),
            rejects,
        }
    }

    fn describe(&self) -> Describe {
        Describe {
            family: Family::Wecom,
            owner: self.corpid.clone(),
            api: "gettoken",
            agentid: self.agentid,
        }
    }

    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        async move {
            let secret = self.secret.as_ref().ok_or(FetchError::NoSecret)?;
            let (status, body) = cx
                .upstream
                .get(
                    &format!("{}/cgi-bin/gettoken", self.base_url),
                    &[
                        ("corpid", self.corpid.as_str()),
                        ("corpsecret", secret.expose_secret()),
                    ],
                )
                .await?;
            let grant = parse_value(status, &body, "access_token", classify)
                .map_err(|e| withhold_echo(e, &body, secret))?;
            Ok(Fetched::new(
                grant.token,
                grant.expires_in,
                "wecom_gettoken",
            ))
        }
        .boxed()
    }
}

impl Kind for WecomTicket {
    fn shares_value_with(&self) -> &[CredentialRef] {
        &self.siblings
    }

    fn follows(&self) -> Option<&CredentialRef> {
        self.leader.as_ref()
    }

    fn name(&self) -> &'static str {
        match self.ticket {
            TicketType::AgentConfig => "wecom_agent_config_ticket",
            _ => "wecom_jsapi_ticket",
        }
    }

    fn api(&self) -> &'static str {
        match self.ticket {
            TicketType::AgentConfig => "ticket_get",
            _ => "get_jsapi_ticket",
        }
    }

    fn lead(&self, _: &RefreshConfig) -> Duration {
        Duration::ZERO
    }

    fn limits(&self, s: &RefreshConfig) -> Limits {
        Limits {
            window: Window::Hour,
            budget: s.wecom_ticket_hourly_per_agent,
            shared: Some(SharedLimit {
                tag: format!("corp.{}", self.corpid),
                name: self.ticket.as_str().to_owned(),
                window: Window::Hour,
                budget: s.wecom_ticket_hourly_per_corp,
                what: format!(
                    "corp {}'s {} tickets (all agents)",
                    self.corpid, self.ticket
                ),
                code: "corp_cap",
                // A small hourly cap: every unit counted as it is used.
                reserve: 1,
            }),
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
            family: Family::Wecom,
            owner: self.corpid.clone(),
            api: self.api(),
            agentid: self.agentid,
        }
    }

    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        async move {
            let token = cx
                .parent
                .ok_or_else(|| FetchError::ParentUnavailable("no access token".into()))?;
            let token = token.expose_secret();
            let reply = match self.ticket {
                TicketType::AgentConfig => {
                    cx.upstream
                        .get(
                            &format!("{}/cgi-bin/ticket/get", self.base_url),
                            &[("access_token", token), ("type", "agent_config")],
                        )
                        .await?
                }
                _ => {
                    cx.upstream
                        .get(
                            &format!("{}/cgi-bin/get_jsapi_ticket", self.base_url),
                            &[("access_token", token)],
                        )
                        .await?
                }
            };
            let (status, body) = reply;
            let grant = parse_value(status, &body, "ticket", classify)
                .map_err(|e| parent_rejected(e, rejects))?;
            Ok(Fetched::new(grant.token, grant.expires_in, self.api()))
        }
        .boxed()
    }
}
