//! An authorizer's access token (SPEC §9): an account that authorized a
//! component, registered at run time (no config entry). Its id is
//! `{component id}.{authorizer appid}`.
//!
//! `cgi-bin/component/api_authorizer_token` with the component's current
//! token (the parent) and the authorizer's refresh token (from the vault).
//! The reply's refresh token — a new one when WeChat rotates — is stored
//! with the access token in the same fenced commit. 40001 / 40014 / 42001 /
//! 61014 blame the component token (replaced, retried once); 61023 means
//! the merchant revoked the authorization ([`FetchError::Revoked`]). The
//! component's per-minute limit is a [`SharedLimit`] over all its
//! authorizers.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use wxtoken_common::{CredentialId, CredentialRef, ErrorClass, Window, is_token_rejected};

use super::js_ticket::parent_rejected;
use super::{CheckBy, Credential, Describe, Family, FetchCx, Fetched, Kind, Limits, SharedLimit};
use crate::config::{ComponentConfig, RefreshConfig, UpstreamApi};
use crate::upstream::{FetchError, parse_value};

/// `{component id}.{authorizer appid}`, or why it is not an id.
pub fn authorizer_id(component: &CredentialId, appid: &str) -> Result<CredentialId, String> {
    let plausible =
        (2..=32).contains(&appid.len()) && appid.chars().all(|c| c.is_ascii_alphanumeric());
    if !plausible {
        return Err(format!("`{appid}` is not an appid (letters and digits)"));
    }
    CredentialId::parse(&format!("{component}.{appid}")).map_err(|e| e.to_string())
}

/// One authorizer's access token.
#[derive(Debug)]
pub struct AuthorizerToken {
    component: CredentialId,
    component_appid: String,
    appid: String,
    id: CredentialId,
    calls_per_minute: u64,
    base_url: String,
}

impl AuthorizerToken {
    /// The credential of `appid` under `component`.
    pub fn credential(
        component: &ComponentConfig,
        appid: &str,
        base_url: &str,
    ) -> Result<Credential, String> {
        let id = authorizer_id(&component.id, appid)?;
        Ok(Credential::new(
            CredentialRef::token(id.clone()),
            AuthorizerToken {
                component: component.id.clone(),
                component_appid: component.component_appid.clone(),
                appid: appid.to_owned(),
                id,
                calls_per_minute: component.authorizer_calls_per_minute,
                base_url: base_url.to_owned(),
            },
        )
        .followed(component.follow.as_ref()))
    }
}

/// What api_authorizer_token's errcodes mean.
fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        61023 => ErrorClass::Fatal,
        61004 | 61011 => ErrorClass::Fatal,
        other => wxtoken_common::classify_fetch_errcode(other),
    }
}

/// The component token is the one WeChat blames.
fn blames_component_token(errcode: i64) -> bool {
    is_token_rejected(errcode) || errcode == 61014
}

impl Kind for AuthorizerToken {
    fn api_base(&self) -> Option<&str> {
        Some(&self.base_url)
    }

    fn name(&self) -> &'static str {
        "authorizer_token"
    }

    fn api(&self) -> &'static str {
        "api_authorizer_token"
    }

    fn lead(&self, s: &RefreshConfig) -> Duration {
        s.lead_for(UpstreamApi::Token)
    }

    fn limits(&self, s: &RefreshConfig) -> Limits {
        Limits {
            window: Window::Day,
            budget: s.daily_budget,
            shared: Some(SharedLimit {
                tag: self.component.as_str().to_owned(),
                name: "authorizer_token".into(),
                window: Window::Minute,
                budget: self.calls_per_minute,
                what: format!("component {}'s authorizers", self.component),
                code: "component_rate",
                // ≤ 1/64 of the limit idle per replica and minute.
                reserve: (self.calls_per_minute / 64).clamp(1, 64),
            }),
        }
    }

    fn parent(&self) -> Option<CredentialRef> {
        Some(CredentialRef::token(self.component.clone()))
    }

    fn check(&self) -> CheckBy {
        CheckBy::Call {
            url: format!("{}/cgi-bin/get_api_domain_ip", self.base_url),
            rejects: is_token_rejected,
        }
    }

    fn supersedes(&self) -> bool {
        true
    }

    fn spreads_after_fill(&self) -> bool {
        true
    }

    fn needs_refresh_token(&self) -> bool {
        true
    }

    fn describe(&self) -> Describe {
        Describe {
            family: Family::Authorizer,
            owner: self.appid.clone(),
            api: "api_authorizer_token",
            agentid: None,
        }
    }

    fn authorizer_of(&self) -> Option<(&CredentialId, &str)> {
        Some((&self.component, &self.appid))
    }

    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        async move {
            let component_token = cx
                .parent
                .ok_or_else(|| FetchError::ParentUnavailable("no component token".into()))?;
            let vault = cx
                .vault
                .ok_or_else(|| FetchError::Body("no vault for the refresh token".into()))?;
            let refresh_token = match vault.refresh_token(&self.id).await {
                Ok(Some(rt)) => rt,
                Ok(None) => return Err(FetchError::NoRefreshToken),
                Err(e) => return Err(FetchError::Body(format!("refresh token: {e}"))),
            };
            let url = format!(
                "{}/cgi-bin/component/api_authorizer_token?component_access_token={}",
                self.base_url,
                component_token.expose_secret()
            );
            let (status, body) = cx
                .upstream
                .post_json(
                    &url,
                    &serde_json::json!({
                        "component_appid": self.component_appid,
                        "authorizer_appid": self.appid,
                        "authorizer_refresh_token": refresh_token.expose_secret(),
                    }),
                )
                .await?;
            let grant = match parse_value(status, &body, "authorizer_access_token", classify) {
                Ok(g) => g,
                Err(FetchError::Wechat { errcode: 61023, .. }) => {
                    return Err(FetchError::Revoked { errcode: 61023 });
                }
                Err(e) => return Err(parent_rejected(e, blames_component_token)),
            };
            let mut fetched = Fetched::new(grant.token, grant.expires_in, "api_authorizer_token");
            fetched.refresh_token = returned_refresh_token(&body, "authorizer_refresh_token");
            Ok(fetched)
        }
        .boxed()
    }
}

/// The refresh token in a reply, if it carries one (persist whatever comes
/// back, SPEC §9).
pub(crate) fn returned_refresh_token(body: &[u8], field: &str) -> Option<SecretString> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.trim().is_empty() && t.len() <= 512)
        .map(|t| SecretString::from(t.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_join_component_and_appid_and_refuse_junk() {
        let c = CredentialId::parse("open1").unwrap();
        assert_eq!(
            authorizer_id(&c, "wx1234567890abcdef").unwrap().as_str(),
            "open1.wx1234567890abcdef"
        );
        for bad in ["", "w", "wx 12", "wx/../x", "wx{1}", &"a".repeat(33)] {
            assert!(authorizer_id(&c, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reply_refresh_token_is_read_only_when_it_is_plausible() {
        let rt = returned_refresh_token(
            br#"{"authorizer_refresh_token":"r1"}"#,
            "authorizer_refresh_token",
        );
        assert_eq!(rt.unwrap().expose_secret(), "r1");
        for body in [
            &br#"{"authorizer_refresh_token":""}"#[..],
            b"{}",
            b"junk",
            br#"{"authorizer_refresh_token":7}"#,
        ] {
            assert!(returned_refresh_token(body, "authorizer_refresh_token").is_none());
        }
        assert!(blames_component_token(61014) && blames_component_token(42001));
        assert!(!blames_component_token(61023));
    }
}
