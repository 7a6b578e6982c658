//! The access token of an official account or mini program (`[[apps]]`):
//! `cgi-bin/token` (every call a new token; the previous one dies five
//! minutes later) or `cgi-bin/stable_token` (the same token until its last
//! five minutes; `force_refresh` for a token WeChat cut off).
//!
//! The only kind that sends an appsecret: an errmsg that echoes the request
//! is withheld ([`withhold_echo`]).

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use wxtoken_common::{CredentialRef, Window, is_token_rejected};

use super::{
    CheckBy, Credential, Describe, Digest, Family, FetchCx, FetchQuota, Fetched, Judgement, Kind,
    Limits, sha1_hex,
};
use crate::config::{Config, RefreshConfig, UpstreamApi};
use crate::upstream::{FetchError, Upstream, parse_reply, withhold_echo};

/// An `[[apps]]` entry's access token.
#[derive(Debug)]
pub struct AppToken {
    appid: String,
    /// `None` for a followed app configured without it: never fetched.
    secret: Option<SecretString>,
    api: UpstreamApi,
    base_url: String,
}

pub(super) fn from_config(config: &Config) -> Vec<Credential> {
    config
        .apps
        .iter()
        .map(|app| {
            Credential::new(
                CredentialRef::token(app.id.clone()),
                AppToken {
                    appid: app.appid.clone(),
                    secret: app.secret.clone(),
                    api: app.api,
                    base_url: config.upstream.base_url.clone(),
                },
            )
            .followed(app.follow.as_ref())
        })
        .collect()
}

impl Kind for AppToken {
    fn api_base(&self) -> Option<&str> {
        Some(&self.base_url)
    }

    fn name(&self) -> &'static str {
        "app_token"
    }

    fn api(&self) -> &'static str {
        api_name(self.api)
    }

    fn lead(&self, s: &RefreshConfig) -> Duration {
        s.lead_for(self.api)
    }

    fn limits(&self, s: &RefreshConfig) -> Limits {
        Limits {
            window: Window::Day,
            budget: s.daily_budget,
            shared: None,
        }
    }

    fn check(&self) -> CheckBy {
        CheckBy::Call {
            url: format!("{}/cgi-bin/get_api_domain_ip", self.base_url),
            rejects: is_token_rejected,
        }
    }

    fn supersedes(&self) -> bool {
        self.api == UpstreamApi::Token
    }

    fn describe(&self) -> Describe {
        Describe {
            family: Family::App,
            owner: self.appid.clone(),
            api: api_name(self.api),
            agentid: None,
        }
    }

    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        async move {
            let secret = self.secret.as_ref().ok_or(FetchError::NoSecret)?;
            let (reply, source) = match self.api {
                UpstreamApi::Token => (
                    cx.upstream
                        .get(
                            &format!("{}/cgi-bin/token", self.base_url),
                            &[
                                ("grant_type", "client_credential"),
                                ("appid", self.appid.as_str()),
                                ("secret", secret.expose_secret()),
                            ],
                        )
                        .await?,
                    "token",
                ),
                UpstreamApi::StableToken => (
                    cx.upstream
                        .post_json(
                            &format!("{}/cgi-bin/stable_token", self.base_url),
                            &serde_json::json!({
                                "grant_type": "client_credential",
                                "appid": self.appid,
                                "secret": secret.expose_secret(),
                                "force_refresh": cx.force,
                            }),
                        )
                        .await?,
                    if cx.force {
                        "stable_token_force"
                    } else {
                        "stable_token"
                    },
                ),
            };
            let (status, body) = reply;
            let grant = parse_reply(status, &body).map_err(|e| withhold_echo(e, &body, secret))?;
            Ok(Fetched::new(grant.token, grant.expires_in, source))
        }
        .boxed()
    }

    fn fetch_quota(&self) -> Option<FetchQuota<'_>> {
        (self.api == UpstreamApi::Token).then_some(FetchQuota {
            base_url: &self.base_url,
            cgi_path: "/cgi-bin/token",
        })
    }

    fn clear_quota<'a>(
        &'a self,
        upstream: &'a Upstream,
    ) -> Option<BoxFuture<'a, Result<(), FetchError>>> {
        Some(
            async move {
                let secret = self.secret.as_ref().ok_or(FetchError::NoSecret)?;
                let (status, body) = upstream
                    .post_json(
                        &format!("{}/cgi-bin/clear_quota/v2", self.base_url),
                        &serde_json::json!({
                            "appid": self.appid,
                            "appsecret": secret.expose_secret(),
                        }),
                    )
                    .await?;
                parse_ack(status, &body).map_err(|e| withhold_echo(e, &body, secret))
            }
            .boxed(),
        )
    }

    fn judges(&self) -> bool {
        self.api == UpstreamApi::StableToken
    }

    /// `stable_token` normal mode returns the stored token until WeChat's
    /// renew window opens, and keeps returning a token WeChat cut off: only
    /// `force_refresh` replaces that one (SPEC §5).
    fn judge(&self, fetched: &Fetched, stored: &Digest) -> Judgement {
        let sha = sha1_hex(fetched.value.expose_secret());
        if stored.invalidated_sha1.as_deref() == Some(sha.as_str()) {
            Judgement::Force
        } else if stored.stored_sha1.as_deref() == Some(sha.as_str()) {
            Judgement::Unchanged
        } else {
            Judgement::Commit
        }
    }
}

/// `token` / `stable_token`.
pub fn api_name(api: UpstreamApi) -> &'static str {
    match api {
        UpstreamApi::Token => "token",
        UpstreamApi::StableToken => "stable_token",
    }
}

/// A reply that carries only `{"errcode","errmsg"}`: errcode 0 is success.
fn parse_ack(status: u16, body: &[u8]) -> Result<(), FetchError> {
    let reply = crate::upstream::json_reply(status, body)?;
    match reply.get("errcode").and_then(serde_json::Value::as_i64) {
        Some(0) => Ok(()),
        Some(errcode) => Err(crate::upstream::wechat_error(
            &reply,
            errcode,
            wxtoken_common::classify_fetch_errcode(errcode),
        )),
        None => Err(FetchError::Body("no errcode".into())),
    }
}
