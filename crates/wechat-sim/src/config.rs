//! What a simulated WeChat looks like: its apps, token lifetime, overlap and
//! quotas ([`SimConfig`]), with WeChat's real numbers as defaults and a
//! builder for tests that scale time down.
//!
//! This module only describes; it enforces nothing. The rules that use these
//! numbers live in `state` and `quota`; fault injection is configured at run
//! time through `faults`, not here.

use std::fmt;
use std::time::Duration;

/// One app (or, for the WeCom endpoint, one corp) the simulator knows.
///
/// The same list serves `cgi-bin/token` / `stable_token` (appid + secret) and
/// WeCom `gettoken` (corpid + corpsecret).
#[derive(Clone, PartialEq, Eq)]
pub struct SimApp {
    /// The appid (`wx…`), also accepted as a WeCom corpid.
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
    /// Apps (and WeCom corps) the simulator accepts.
    pub apps: Vec<SimApp>,
    /// Lifetime of every issued token. WeChat: 7200 s. `expires_in` in replies
    /// is this (or what remains of it) in whole seconds, at least 1.
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
    /// Seed for fault decisions, so a chaos run can be replayed. `None` seeds
    /// from the OS. Tokens themselves are always OS-random.
    pub seed: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            apps: Vec::new(),
            token_ttl: Duration::from_secs(7200),
            overlap: Duration::from_secs(300),
            daily_quota: 2000,
            stable_daily_quota: 500_000,
            stable_per_minute: 10_000,
            force_refresh_daily: 20,
            force_refresh_spacing: Duration::from_secs(30),
            domain_ip_daily_quota: 1000,
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
}

impl SimConfig {
    /// WeChat's defaults with no apps; add them with [`SimConfig::app`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an app (and WeCom corp) with its secret.
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
        Ok(())
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
        assert!(c.apps.is_empty());
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
