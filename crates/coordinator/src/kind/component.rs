//! A third-party platform's `component_access_token` (`[[components]]`,
//! SPEC §9): `cgi-bin/component/api_component_token` with the component's
//! secret and the latest `component_verify_ticket` WeChat pushed (read from
//! the vault). Every call issues a new token and the previous one dies
//! after the overlap, like `cgi-bin/token`, so it is refreshed ahead.
//!
//! 61005 / 61006 (the ticket expired or is not the latest): the fetch asks
//! WeChat to push one now (`api_start_push_ticket`, at most once a minute
//! per replica) and fails retryably; the push arrives at the event URL and
//! the next attempt uses it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};
use wxtoken_common::{CredentialId, CredentialRef, ErrorClass, Window};

use super::{CheckBy, Credential, Describe, Family, FetchCx, Fetched, Kind, Limits};
use crate::config::{Config, RefreshConfig, UpstreamApi};
use crate::upstream::{FetchError, parse_value, withhold_echo};

/// Asks for a push at most this often (WeChat's push is not instant).
const PUSH_REQUEST_SPACING: Duration = Duration::from_secs(60);

/// A `[[components]]` entry's component access token.
#[derive(Debug)]
pub struct ComponentToken {
    id: CredentialId,
    component_appid: String,
    /// `None` for a followed component configured without it: never fetched.
    secret: Option<SecretString>,
    base_url: String,
    last_push_request: Mutex<Option<Instant>>,
}

pub(super) fn from_config(config: &Config) -> Vec<Credential> {
    config
        .components
        .iter()
        .map(|c| {
            Credential::new(
                CredentialRef::token(c.id.clone()),
                ComponentToken {
                    id: c.id.clone(),
                    component_appid: c.component_appid.clone(),
                    secret: c.secret.clone(),
                    base_url: config.upstream.base_url.clone(),
                    last_push_request: Mutex::new(None),
                },
            )
            .followed(c.follow.as_ref())
        })
        .collect()
}

/// What api_component_token's errcodes mean (SPEC §9).
fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        // The verify ticket expired / is not the latest: a push fixes it.
        61005 | 61006 => ErrorClass::Retryable,
        // IP not whitelisted, invalid component, bad secret.
        61004 | 61011 | 40125 | 41002 | 41004 => ErrorClass::Fatal,
        other => wxtoken_common::classify_fetch_errcode(other),
    }
}

impl ComponentToken {
    /// `api_start_push_ticket`, unless this replica asked within a minute.
    async fn request_push(&self, cx: &FetchCx<'_>) {
        let due = {
            let Ok(mut last) = self.last_push_request.lock() else {
                return;
            };
            let due = last.is_none_or(|t| t.elapsed() >= PUSH_REQUEST_SPACING);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        let Some(secret) = self.secret.as_ref().filter(|_| due) else {
            return;
        };
        let url = format!("{}/cgi-bin/component/api_start_push_ticket", self.base_url);
        let body = serde_json::json!({
            "component_appid": self.component_appid,
            "component_secret": secret.expose_secret(),
        });
        match cx.upstream.post_json(&url, &body).await {
            Ok((status, _)) => {
                info!(component = %self.id, status, "asked WeChat to push a verify ticket now")
            }
            Err(e) => {
                warn!(component = %self.id, error = %e, "could not ask WeChat for a verify ticket")
            }
        }
    }
}

impl Kind for ComponentToken {
    fn name(&self) -> &'static str {
        "component_token"
    }

    fn api(&self) -> &'static str {
        "api_component_token"
    }

    fn lead(&self, s: &RefreshConfig) -> Duration {
        // Like cgi-bin/token: a new token each call, the old one lives on
        // for the overlap.
        s.lead_for(UpstreamApi::Token)
    }

    fn limits(&self, s: &RefreshConfig) -> Limits {
        Limits {
            window: Window::Day,
            budget: s.daily_budget,
            shared: None,
        }
    }

    /// No call shows WeChat a component token without spending something:
    /// a report is judged by fetching again under the report budget and
    /// spacing (every fetch is a new token, so it is the refresh itself).
    fn check(&self) -> CheckBy {
        CheckBy::Fetch
    }

    fn supersedes(&self) -> bool {
        true
    }

    fn describe(&self) -> Describe {
        Describe {
            family: Family::Component,
            owner: self.component_appid.clone(),
            api: "api_component_token",
            agentid: None,
        }
    }

    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        async move {
            let secret = self.secret.as_ref().ok_or(FetchError::NoSecret)?;
            let vault = cx
                .vault
                .ok_or_else(|| FetchError::Body("no vault for the verify ticket".into()))?;
            let ticket = match vault.verify_ticket(&self.id).await {
                Ok(Some(t)) => t,
                Ok(None) => {
                    self.request_push(&cx).await;
                    return Err(FetchError::NoVerifyTicket);
                }
                Err(e) => return Err(FetchError::Body(format!("verify ticket: {e}"))),
            };
            let (status, body) = cx
                .upstream
                .post_json(
                    &format!("{}/cgi-bin/component/api_component_token", self.base_url),
                    &serde_json::json!({
                        "component_appid": self.component_appid,
                        "component_appsecret": secret.expose_secret(),
                        "component_verify_ticket": ticket.expose_secret(),
                    }),
                )
                .await?;
            let grant = parse_value(status, &body, "component_access_token", classify)
                .map_err(|e| withhold_echo(e, &body, secret))
                .map_err(|e| withhold_echo(e, &body, &ticket));
            match grant {
                Ok(g) => Ok(Fetched::new(g.token, g.expires_in, "api_component_token")),
                Err(
                    e @ FetchError::Wechat {
                        errcode: 61005 | 61006,
                        ..
                    },
                ) => {
                    self.request_push(&cx).await;
                    Err(e)
                }
                Err(e) => Err(e),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_errors_retry_and_configuration_errors_are_fatal() {
        assert_eq!(classify(61005), ErrorClass::Retryable);
        assert_eq!(classify(61006), ErrorClass::Retryable);
        for fatal in [61004, 61011, 40125] {
            assert_eq!(classify(fatal), ErrorClass::Fatal, "{fatal}");
        }
        assert_eq!(classify(45009), ErrorClass::QuotaExhausted);
        assert_eq!(classify(-1), ErrorClass::Retryable);
    }
}
