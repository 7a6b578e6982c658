//! What a simulated WeChat looks like: its apps (Official Accounts / Mini
//! Programs), token lifetime, overlap, ticket life and quotas
//! ([`SimConfig`]), with WeChat's real numbers as defaults and a builder for
//! tests that scale time down. WeCom corps and their agents are described in
//! `config/corp.rs` ([`SimCorp`], [`SimAgent`]).
//!
//! This module only describes; it enforces nothing. The rules that use these
//! numbers live in `state` and `quota`; fault injection is configured at run
//! time through `faults`, not here. Open Platform components and their
//! numbers are in `config/component.rs` ([`SimComponent`]).

use std::fmt;
use std::time::Duration;

mod component;
mod corp;

pub use component::SimComponent;
pub(crate) use corp::agent_key;
pub use corp::{SimAgent, SimCorp};

/// One Official Account / Mini Program the simulator knows, served by
/// `cgi-bin/token`, `stable_token` and `getticket`. WeCom corps are separate
/// ([`SimConfig::corps`]): an appid is never accepted as a corpid.
#[derive(Clone, PartialEq, Eq)]
pub struct SimApp {
    /// The appid (`wx…`).
    pub appid: String,
    /// The app secret the fetch endpoints compare against.
    pub secret: String,
}

impl fmt::Debug for SimApp {
    // Secrets never reach Debug output, even a simulator's (SPEC §4.3).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimApp")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The simulator's configuration. `Default` is WeChat's production numbers
/// with no apps; tests usually start from [`SimConfig::new`] and shrink time.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Apps the simulator accepts on the WeChat (api.weixin.qq.com) endpoints.
    pub apps: Vec<SimApp>,
    /// WeCom corps and their agents, served under `/qyapi`. Their corpids
    /// (and `corpid:agentid` stats keys) never collide with an appid.
    pub corps: Vec<SimCorp>,
    /// Lifetime of every issued token (WeChat and WeCom). WeChat: 7200 s.
    /// `expires_in` in replies is this (or what remains of it) in whole
    /// seconds, at least 1; WeCom always reports the full life.
    pub token_ttl: Duration,
    /// How long a superseded token keeps working after its successor was
    /// issued (or until its own expiry, if sooner). WeChat: about 5 minutes.
    pub overlap: Duration,
    /// `cgi-bin/token` calls per app per quota day (WeChat: 2000; 200 for test
    /// accounts). External refreshes count too.
    pub daily_quota: u32,
    /// `stable_token` calls per app per quota day (WeChat: 500 000).
    pub stable_daily_quota: u32,
    /// `stable_token` calls per app in any sliding 60 s window (WeChat: 10 000),
    /// beyond which the reply is 45011.
    pub stable_per_minute: u32,
    /// `force_refresh=true` calls per app per quota day (WeChat: 20).
    pub force_refresh_daily: u32,
    /// Minimum time between two force refreshes of one app (WeChat: 30 s).
    pub force_refresh_spacing: Duration,
    /// `cgi-bin/get_api_domain_ip` calls per app per quota day, beyond which
    /// the reply is 45009. WeChat publishes no number; its community answers
    /// say 1000, the harsher reading of "limited".
    pub domain_ip_daily_quota: u32,
    /// Lifetime of every ticket (jsapi, wx_card, WeCom jsapi, agent_config).
    /// WeChat and WeCom: 7200 s. `expires_in` is always this full life, never
    /// what remains: a client must count a ticket's life from when it first
    /// saw the value.
    pub ticket_ttl: Duration,
    /// `getticket` calls per app, per ticket type, per Asia/Shanghai day,
    /// beyond which the reply is 45009. WeChat only says "very limited"; 200
    /// is a harsh reading (a fleet needs about 12 a day).
    pub ticket_daily_quota: u32,
    /// WeCom ticket calls per agent, per ticket type, in any sliding window
    /// of `wecom_ticket_window` (WeCom: "单个应用不能超过100次" an hour).
    pub wecom_ticket_agent_hourly: u32,
    /// WeCom ticket calls per corp (all agents together), per ticket type, in
    /// any sliding window of `wecom_ticket_window` (WeCom: 400 an hour).
    pub wecom_ticket_corp_hourly: u32,
    /// The window of the WeCom ticket caps. WeCom documents "一小时内" and
    /// probably counts clock hours; a SLIDING 60-minute window is the harsher
    /// reading (no burst of 2 × cap across an hour boundary). Tests shrink it
    /// to see the window slide.
    pub wecom_ticket_window: Duration,
    /// Open Platform components (third-party platforms), served under
    /// `cgi-bin/component/*` on the WeChat host. Their appids never collide
    /// with an appid or corpid.
    pub components: Vec<SimComponent>,
    /// How often each component is pushed a new `component_verify_ticket`
    /// (WeChat: every 10 minutes); the first push goes out at start.
    pub ticket_interval: Duration,
    /// How long a pushed verify ticket buys component tokens (WeChat: 12
    /// hours; 61005 after). Only the latest two pushed tickets are accepted
    /// at all (61006 for older ones): see `state/component`.
    pub verify_ticket_ttl: Duration,
    /// Lifetime of component access tokens (WeChat: 7200 s). A new one
    /// supersedes the previous, which keeps working for `overlap`.
    pub component_token_ttl: Duration,
    /// Lifetime of authorizer access tokens (WeChat: 7200 s), with the same
    /// overlap rule per authorizer.
    pub authorizer_token_ttl: Duration,
    /// `api_component_token` calls per component in any sliding 60 s
    /// window, beyond which the reply is 45011. WeChat publishes no number;
    /// 100 is the simulator's (a fleet needs about one an hour).
    pub component_token_per_minute: u32,
    /// `api_component_token` calls per component per quota day (WeChat:
    /// 2000), beyond which the reply is 45009.
    pub component_token_daily_quota: u32,
    /// `api_authorizer_token` calls per component, all its authorizers
    /// together, in any sliding 60 s window, beyond which the reply is
    /// 45011. WeChat publishes no number; 10 000 (stable_token's) is the
    /// simulator's: 100 000 authorizers must be paced over 10 minutes.
    pub authorizer_token_per_minute: u32,
    /// Life of authorization codes (`AuthorizationCode`) and pre-auth codes
    /// (WeChat: 10 minutes).
    pub auth_code_ttl: Duration,
    /// Whether every reply carrying `authorizer_refresh_token` carries a
    /// NEW one (the two most recent stay accepted). WeChat documents that
    /// the refresh token does not change; the harsher reading, "persist
    /// whatever comes back", is the default. `false`: the same refresh
    /// token until the authorizer re-authorizes.
    pub refresh_token_rotation: bool,
    /// Seed for fault decisions, so a chaos run can be replayed. `None` seeds
    /// from the OS. Tokens themselves are always OS-random.
    pub seed: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            apps: Vec::new(),
            corps: Vec::new(),
            token_ttl: Duration::from_secs(7200),
            overlap: Duration::from_secs(300),
            daily_quota: 2000,
            stable_daily_quota: 500_000,
            stable_per_minute: 10_000,
            force_refresh_daily: 20,
            force_refresh_spacing: Duration::from_secs(30),
            domain_ip_daily_quota: 1000,
            ticket_ttl: Duration::from_secs(7200),
            ticket_daily_quota: 200,
            wecom_ticket_agent_hourly: 100,
            wecom_ticket_corp_hourly: 400,
            wecom_ticket_window: Duration::from_secs(3600),
            components: Vec::new(),
            ticket_interval: Duration::from_secs(600),
            verify_ticket_ttl: Duration::from_secs(12 * 3600),
            component_token_ttl: Duration::from_secs(7200),
            authorizer_token_ttl: Duration::from_secs(7200),
            component_token_per_minute: 100,
            component_token_daily_quota: 2000,
            authorizer_token_per_minute: 10_000,
            auth_code_ttl: Duration::from_secs(600),
            refresh_token_rotation: true,
            seed: None,
        }
    }
}

/// Why a [`SimConfig`] cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `token_ttl` was zero.
    #[error("token_ttl must be greater than zero")]
    ZeroTtl,
    /// `ticket_ttl` or `wecom_ticket_window` was zero.
    #[error("ticket_ttl and wecom_ticket_window must be greater than zero")]
    ZeroTicketTtl,
    /// `overlap` was not shorter than `token_ttl`: stable_token would rotate
    /// on every call.
    #[error("overlap ({overlap:?}) must be shorter than token_ttl ({ttl:?})")]
    OverlapNotShorterThanTtl { overlap: Duration, ttl: Duration },
    /// The same appid was configured twice.
    #[error("appid {0:?} is configured more than once")]
    DuplicateApp(String),
    /// An appid or secret was empty.
    #[error("app #{0} has an empty appid or secret")]
    EmptyApp(usize),
    /// A corpid or agent secret was empty, or the corpid contains `:` (the
    /// separator of the `corpid:agentid` stats key).
    #[error("corp #{0} has an empty corpid or secret, or a ':' in its corpid")]
    EmptyCorp(usize),
    /// The same corpid was listed twice in `corps`.
    #[error("corpid {0:?} is configured more than once")]
    DuplicateCorp(String),
    /// Two agents of one corp share an agentid (or both have none).
    #[error("corp {corpid:?} has agentid {agentid:?} more than once")]
    DuplicateAgent {
        corpid: String,
        agentid: Option<u64>,
    },
    /// Two agents of one corp share a secret: one (corp, secret) is one token.
    #[error("corp {0:?} has the same secret on two agents")]
    DuplicateCorpSecret(String),
    /// A corpid (or a `corpid:agentid` stats key) is also an appid.
    #[error("corpid {0:?} collides with an appid")]
    CorpCollidesWithApp(String),
    /// A component has an empty appid, secret or message token, or an
    /// EncodingAESKey that is not 43 characters of base64.
    #[error("component #{0} has an empty appid, secret or token, or a bad encoding_aes_key")]
    BadComponent(usize),
    /// The same component appid was configured twice.
    #[error("component appid {0:?} is configured more than once")]
    DuplicateComponent(String),
    /// A component appid is also an appid or corpid.
    #[error("component appid {0:?} collides with an appid or corpid")]
    ComponentCollides(String),
    /// A component duration (ticket interval, ticket life, token lives,
    /// code life) was zero.
    #[error("component durations must be greater than zero")]
    ZeroComponentDuration,
}

impl SimConfig {
    /// WeChat's defaults with no apps; add them with [`SimConfig::app`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an app with its secret.
    pub fn app(mut self, appid: impl Into<String>, secret: impl Into<String>) -> Self {
        self.apps.push(SimApp {
            appid: appid.into(),
            secret: secret.into(),
        });
        self
    }

    /// Sets the lifetime of issued tokens.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Sets how long a superseded token keeps working.
    pub fn overlap(mut self, overlap: Duration) -> Self {
        self.overlap = overlap;
        self
    }

    /// Sets the `cgi-bin/token` daily quota per app.
    pub fn daily_quota(mut self, calls: u32) -> Self {
        self.daily_quota = calls;
        self
    }

    /// Sets the `stable_token` daily quota per app.
    pub fn stable_daily_quota(mut self, calls: u32) -> Self {
        self.stable_daily_quota = calls;
        self
    }

    /// Sets the `stable_token` per-minute limit per app.
    pub fn stable_per_minute(mut self, calls: u32) -> Self {
        self.stable_per_minute = calls;
        self
    }

    /// Sets the number of force refreshes allowed per app per day.
    pub fn force_refresh_daily(mut self, calls: u32) -> Self {
        self.force_refresh_daily = calls;
        self
    }

    /// Sets the minimum spacing between force refreshes.
    pub fn force_refresh_spacing(mut self, spacing: Duration) -> Self {
        self.force_refresh_spacing = spacing;
        self
    }

    /// Sets the `get_api_domain_ip` daily quota per app.
    pub fn domain_ip_daily_quota(mut self, calls: u32) -> Self {
        self.domain_ip_daily_quota = calls;
        self
    }

    /// Sets the lifetime of tickets.
    pub fn ticket_ttl(mut self, ttl: Duration) -> Self {
        self.ticket_ttl = ttl;
        self
    }

    /// Sets the `getticket` quota per app, per type, per day.
    pub fn ticket_daily_quota(mut self, calls: u32) -> Self {
        self.ticket_daily_quota = calls;
        self
    }

    /// Seeds the fault-decision RNG.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks that the numbers make a simulator that can behave like WeChat.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.token_ttl.is_zero() {
            return Err(ConfigError::ZeroTtl);
        }
        if self.ticket_ttl.is_zero() || self.wecom_ticket_window.is_zero() {
            return Err(ConfigError::ZeroTicketTtl);
        }
        if self.overlap >= self.token_ttl {
            return Err(ConfigError::OverlapNotShorterThanTtl {
                overlap: self.overlap,
                ttl: self.token_ttl,
            });
        }
        for (i, app) in self.apps.iter().enumerate() {
            if app.appid.is_empty() || app.secret.is_empty() {
                return Err(ConfigError::EmptyApp(i));
            }
            if self.apps[..i].iter().any(|a| a.appid == app.appid) {
                return Err(ConfigError::DuplicateApp(app.appid.clone()));
            }
        }
        self.validate_corps()?;
        self.validate_components()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_wechat_numbers() {
        let c = SimConfig::default();
        assert_eq!(c.token_ttl, Duration::from_secs(7200));
        assert_eq!(c.overlap, Duration::from_secs(300));
        assert_eq!(c.daily_quota, 2000);
        assert_eq!(c.stable_daily_quota, 500_000);
        assert_eq!(c.stable_per_minute, 10_000);
        assert_eq!(c.force_refresh_daily, 20);
        assert_eq!(c.force_refresh_spacing, Duration::from_secs(30));
        assert_eq!(c.ticket_ttl, Duration::from_secs(7200));
        assert_eq!(c.ticket_daily_quota, 200);
        assert_eq!(c.wecom_ticket_agent_hourly, 100);
        assert_eq!(c.wecom_ticket_corp_hourly, 400);
        assert_eq!(c.wecom_ticket_window, Duration::from_secs(3600));
        assert!(c.apps.is_empty() && c.corps.is_empty());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_overlap_not_shorter_than_ttl_and_duplicates() {
        let c = SimConfig::new()
            .token_ttl(Duration::from_secs(2))
            .overlap(Duration::from_secs(2));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OverlapNotShorterThanTtl { .. })
        ));
        let c = SimConfig::new().app("wx1", "s").app("wx1", "t");
        assert_eq!(c.validate(), Err(ConfigError::DuplicateApp("wx1".into())));
        let c = SimConfig::new().app("wx1", "");
        assert_eq!(c.validate(), Err(ConfigError::EmptyApp(0)));
    }

    #[test]
    fn debug_redacts_secret() {
        let c = SimConfig::new().app("wx1", "topsecret");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("wx1"));
        assert!(!dbg.contains("topsecret"));
    }
}
