//! Open Platform (第三方平台) components as the simulator knows them
//! ([`SimComponent`]): a component appid with its secret, its message token
//! and EncodingAESKey (what pushes are sealed with), and where its pushes
//! go. Plus the builders for the component-wide numbers and the checks that
//! keep component appids apart from apps and corps.
//!
//! Like the rest of `config`, this only describes; the component rules
//! live in `state/component`, the pushes in `push`.

use std::fmt;
use std::time::Duration;

use wxtoken_msgcrypt::MsgCrypt;

use super::{ConfigError, SimConfig};

/// One third-party platform (component).
#[derive(Clone, PartialEq, Eq)]
pub struct SimComponent {
    /// The component appid (`wx…`), the `component_appid` of every
    /// `cgi-bin/component/*` call.
    pub component_appid: String,
    /// The component appsecret `api_component_token` and
    /// `api_start_push_ticket` compare against.
    pub secret: String,
    /// The message verification token: the secret input of
    /// `msg_signature` on every push.
    pub token: String,
    /// The 43-character EncodingAESKey pushes are encrypted with.
    pub encoding_aes_key: String,
    /// The authorization event URL pushes are POSTed to; `None`: tickets
    /// are still issued on schedule, but delivered nowhere (read them with
    /// `SimHandle::verify_ticket`).
    pub event_url: Option<String>,
}

impl SimComponent {
    /// A component without an event URL.
    pub fn new(
        component_appid: impl Into<String>,
        secret: impl Into<String>,
        token: impl Into<String>,
        encoding_aes_key: impl Into<String>,
    ) -> Self {
        Self {
            component_appid: component_appid.into(),
            secret: secret.into(),
            token: token.into(),
            encoding_aes_key: encoding_aes_key.into(),
            event_url: None,
        }
    }

    /// Sets where pushes go.
    pub fn event_url(mut self, url: impl Into<String>) -> Self {
        self.event_url = Some(url.into());
        self
    }
}

impl fmt::Debug for SimComponent {
    // The secret, the message token and the AES key never reach Debug
    // output (SPEC §4.3): any of them lets a reader forge or read pushes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimComponent")
            .field("component_appid", &self.component_appid)
            .field("secret", &"<redacted>")
            .field("token", &"<redacted>")
            .field("encoding_aes_key", &"<redacted>")
            .field("event_url", &self.event_url)
            .finish()
    }
}

impl SimConfig {
    /// Adds a component.
    pub fn component(mut self, component: SimComponent) -> Self {
        self.components.push(component);
        self
    }

    /// Sets the verify-ticket push period (WeChat: 10 minutes).
    pub fn ticket_interval(mut self, interval: Duration) -> Self {
        self.ticket_interval = interval;
        self
    }

    /// Sets how long a pushed verify ticket buys component tokens.
    pub fn verify_ticket_ttl(mut self, ttl: Duration) -> Self {
        self.verify_ticket_ttl = ttl;
        self
    }

    /// Sets the lifetime of component access tokens.
    pub fn component_token_ttl(mut self, ttl: Duration) -> Self {
        self.component_token_ttl = ttl;
        self
    }

    /// Sets the lifetime of authorizer access tokens.
    pub fn authorizer_token_ttl(mut self, ttl: Duration) -> Self {
        self.authorizer_token_ttl = ttl;
        self
    }

    /// Sets the `api_component_token` per-minute limit per component.
    pub fn component_token_per_minute(mut self, calls: u32) -> Self {
        self.component_token_per_minute = calls;
        self
    }

    /// Sets the `api_component_token` daily quota per component.
    pub fn component_token_daily_quota(mut self, calls: u32) -> Self {
        self.component_token_daily_quota = calls;
        self
    }

    /// Sets the `api_authorizer_token` per-minute limit per component (all
    /// its authorizers together).
    pub fn authorizer_token_per_minute(mut self, calls: u32) -> Self {
        self.authorizer_token_per_minute = calls;
        self
    }

    /// Sets the life of authorization codes and pre-auth codes.
    pub fn auth_code_ttl(mut self, ttl: Duration) -> Self {
        self.auth_code_ttl = ttl;
        self
    }

    /// Sets whether every refresh-token reply carries a new refresh token.
    pub fn refresh_token_rotation(mut self, rotate: bool) -> Self {
        self.refresh_token_rotation = rotate;
        self
    }

    /// Components: non-empty names and secrets, a key MsgCrypt accepts, no
    /// duplicate, no name shared with an app or a corp, lifetimes longer
    /// than the overlap.
    pub(super) fn validate_components(&self) -> Result<(), ConfigError> {
        if self.components.is_empty() {
            // Without components these numbers are unused: an app-only
            // config with a long overlap must keep working.
            return Ok(());
        }
        let lives = [
            self.ticket_interval,
            self.verify_ticket_ttl,
            self.component_token_ttl,
            self.authorizer_token_ttl,
            self.auth_code_ttl,
        ];
        if lives.iter().any(Duration::is_zero) {
            return Err(ConfigError::ZeroComponentDuration);
        }
        for ttl in [self.component_token_ttl, self.authorizer_token_ttl] {
            if self.overlap >= ttl {
                return Err(ConfigError::OverlapNotShorterThanTtl {
                    overlap: self.overlap,
                    ttl,
                });
            }
        }
        let taken = |name: &str| {
            self.apps.iter().any(|a| a.appid == name) || self.corps.iter().any(|c| c.corpid == name)
        };
        for (i, c) in self.components.iter().enumerate() {
            let id = &c.component_appid;
            let bad_key = MsgCrypt::new(&c.token, &c.encoding_aes_key, id).is_err();
            if id.is_empty() || c.secret.is_empty() || c.token.is_empty() || bad_key {
                return Err(ConfigError::BadComponent(i));
            }
            if self.components[..i]
                .iter()
                .any(|o| o.component_appid == *id)
            {
                return Err(ConfigError::DuplicateComponent(id.clone()));
            }
            if taken(id) {
                return Err(ConfigError::ComponentCollides(id.clone()));
            }
        }
        if self.components.len() > usize::from(u16::MAX) {
            return Err(ConfigError::BadComponent(usize::from(u16::MAX)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn comp(appid: &str) -> SimComponent {
        SimComponent::new(appid, "csecret", "msgtoken", KEY)
    }

    #[test]
    fn defaults_are_wechat_numbers() {
        let c = SimConfig::default();
        assert_eq!(c.ticket_interval, Duration::from_secs(600));
        assert_eq!(c.verify_ticket_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.component_token_ttl, Duration::from_secs(7200));
        assert_eq!(c.authorizer_token_ttl, Duration::from_secs(7200));
        assert_eq!(c.component_token_daily_quota, 2000);
        assert_eq!(c.auth_code_ttl, Duration::from_secs(600));
        assert!(c.refresh_token_rotation);
        assert_eq!(c.component(comp("wxc1")).validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_bad_keys_duplicates_and_collisions() {
        let mut bad = comp("wxc1");
        bad.encoding_aes_key = "short".into();
        let c = SimConfig::new().component(bad);
        assert_eq!(c.validate(), Err(ConfigError::BadComponent(0)));
        let c = SimConfig::new()
            .component(comp("wxc1"))
            .component(comp("wxc1"));
        assert_eq!(
            c.validate(),
            Err(ConfigError::DuplicateComponent("wxc1".into()))
        );
        let c = SimConfig::new().app("wxc1", "s").component(comp("wxc1"));
        assert_eq!(
            c.validate(),
            Err(ConfigError::ComponentCollides("wxc1".into()))
        );
        let c = SimConfig::new()
            .component(comp("wxc1"))
            .component_token_ttl(Duration::from_secs(300));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OverlapNotShorterThanTtl { .. })
        ));
        let c = SimConfig::new()
            .component(comp("wxc1"))
            .ticket_interval(Duration::ZERO);
        assert_eq!(c.validate(), Err(ConfigError::ZeroComponentDuration));
    }

    #[test]
    fn debug_redacts_secret_token_and_key() {
        let c = SimConfig::new().component(comp("wxc1").event_url("http://x/e"));
        let dbg = format!("{c:?}");
        assert!(dbg.contains("wxc1") && dbg.contains("http://x/e"));
        for secret in ["csecret", "msgtoken", KEY] {
            assert!(!dbg.contains(secret), "{secret} leaked");
        }
    }
}
