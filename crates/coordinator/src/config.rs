//! The coordinator's configuration (SPEC §6): the TOML file, then
//! `WXTOKEN__SECTION__KEY` env overrides, then validation, into plain data.
//!
//! This module owns the key names (a public contract), their defaults, the
//! cross-field rules (a lock holder that dies must leave another replica time
//! to refresh) and secret resolution: a secret is only ever a reference
//! (`{ env }` / `{ file }`) resolved here into a `SecretString`. It opens no
//! connections, binds no sockets, does not read the API-key file until asked
//! ([`HttpConfig::api_keys`]) and does not choose a replica id.

mod entries;
mod env;
mod follow;
mod formats;
mod gateway;
mod http;
pub mod keys;
mod platform;
mod secret;
#[cfg(test)]
mod tests;
pub mod tls;
mod validate;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use wxtoken_common::{CredentialId, QuotaOffset, TicketType};

pub use env::Env;
pub use follow::{FollowConfig, load_ca};
use formats::{humantime_str, offset_str};
pub use gateway::GatewayConfig;
pub use http::HttpConfig;
pub use platform::{ComponentConfig, SecurityConfig};
pub use secret::{RedisUrl, SecretRef};
use validate::{ConfigFile, syntax_error};

/// Why the configuration was refused; `key` is the dotted path of the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted path, e.g. `refresh.lock_ttl` or `apps[1].secret`; `config` for the file itself.
    pub key: String,
    /// What is wrong and what to write instead; never a secret value.
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole resolved configuration: defaults filled in, secrets resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub redis: RedisConfig,
    pub http: HttpConfig,
    pub refresh: RefreshConfig,
    pub upstream: UpstreamConfig,
    pub apps: Vec<AppConfig>,
    /// `[[wecom]]`: WeCom (企业微信) agents whose tokens the fleet keeps.
    pub wecom: Vec<WecomConfig>,
    /// `[[components]]`: third-party platforms; their authorizers are
    /// registered at run time (SPEC §9).
    pub components: Vec<ComponentConfig>,
    /// `[security]`: the key sealing refresh tokens and verify tickets.
    pub security: SecurityConfig,
    /// `[gateway]`: the reverse proxy to WeChat (SPEC §10).
    pub gateway: GatewayConfig,
    /// `[http] api_keys` read at load time with the same environment as the
    /// app secrets; empty when none are configured (the JSON API is closed).
    #[serde(skip)]
    pub api_keys: Vec<SecretString>,
}

/// `[redis]`. Every timeout is explicit: deadpool waits forever by default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// May carry a password, so `Debug`, `Display` and `redacted_toml` hide it.
    pub url: RedisUrl,
    pub mode: RedisMode,
    /// Validated by [`wxtoken_common::Keys::new`]: braces would break the Cluster hash tags.
    pub key_prefix: String,
    pub pool_size: usize,
    #[serde(with = "humantime_str")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_str")]
    pub command_timeout: Duration,
    /// How long a task waits for a pooled connection before failing.
    #[serde(with = "humantime_str")]
    pub pool_wait_timeout: Duration,
    /// Required in `sentinel` mode: the name of the monitored master.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    /// Extra CA certificate (PEM) for `rediss://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// How the Redis deployment is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

/// `[refresh]`: the timing of SPEC §5.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshConfig {
    /// Refresh this long before expiry; at least `lock_ttl + upstream_timeout`.
    #[serde(with = "humantime_str")]
    pub refresh_ahead: Duration,
    #[serde(with = "humantime_str")]
    pub lock_ttl: Duration,
    /// Below `lock_ttl / 2`, so a fetch finishes while its lock still holds.
    #[serde(with = "humantime_str")]
    pub upstream_timeout: Duration,
    /// Safety net for missed pub/sub events: while the event subscription
    /// is down, every credential is re-read this often.
    #[serde(with = "humantime_str")]
    pub poll_interval: Duration,
    /// How often a replica checks that Redis still holds the fleet's data
    /// (a marker key; one GET). FLUSHALL, a failover to an empty replica or
    /// eviction publish no event and keep connections up: when the marker is
    /// gone every credential is re-read and refilled at once.
    #[serde(with = "humantime_str")]
    pub loss_check_interval: Duration,
    /// How often one replica (under a fleet-wide lease) asks WeChat's
    /// `openapi/quota/get` how many `cgi-bin/token` calls each app made
    /// today and compares with the fleet's own count: a gap is someone else
    /// fetching tokens with the appsecret, and each such fetch kills the
    /// fleet's token five minutes later (`quota_check.rs`).
    #[serde(with = "humantime_str")]
    pub quota_check_interval: Duration,
    /// Upstream calls per credential per quota day for the whole fleet.
    pub daily_budget: u64,
    /// `getticket` calls per app and ticket type per quota day, fleet-wide
    /// (WeChat: "very limited"; the fleet needs about 12).
    pub ticket_daily_budget: u64,
    /// WeCom ticket fetches per agent and ticket type in any hour, fleet-wide
    /// (WeCom: at most 100 per agent).
    pub wecom_ticket_hourly_per_agent: u64,
    /// WeCom ticket fetches per corp and ticket type in any hour, across all
    /// its agents, fleet-wide (WeCom: at most 400 per corp).
    pub wecom_ticket_hourly_per_corp: u64,
    /// The part of `daily_budget` that only scheduled refreshes may spend:
    /// a refresh triggered by a report stops this many calls short, so a
    /// flood of reports can never leave the fleet unable to renew on time.
    /// Default: a tenth of `daily_budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_reserve: Option<u64>,
    /// At most one report-triggered refresh per credential this often,
    /// fleet-wide (a token just fetched is rarely bad twice a minute); a
    /// verified-dead token reported sooner is refreshed when it ends.
    #[serde(with = "humantime_str")]
    pub report_refresh_interval: Duration,
    /// How long WeChat's acceptance of a reported token stands: reports of
    /// it are answered `token_valid` without asking again. Keep it well
    /// under WeChat's 5-minute overlap, so a token a third party killed
    /// heals within one overlap.
    #[serde(with = "humantime_str")]
    pub verify_interval: Duration,
    /// Token checks (`cgi-bin/get_api_domain_ip`, whose own quota WeChat
    /// does not publish; about 1000 a day) per credential per quota day,
    /// fleet-wide. When spent, reports are judged without asking WeChat:
    /// at most one refresh per `report_refresh_interval`.
    pub verify_daily_budget: u64,
    /// One try per cooldown after a fatal (configuration) error.
    #[serde(with = "humantime_str")]
    pub fatal_cooldown: Duration,
    #[serde(with = "humantime_str")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_str")]
    pub backoff_max: Duration,
    /// `stable_token` returns the same token until this much of its life is
    /// left (WeChat: 5 minutes), then a new one. Such credentials refresh at
    /// `min(refresh_ahead, 80 % of this)` so each call yields a new token.
    #[serde(with = "humantime_str")]
    pub stable_renew_window: Duration,
    /// Where the quota day starts; WeChat resets at midnight Asia/Shanghai.
    #[serde(with = "offset_str")]
    pub quota_day_offset: QuotaOffset,
    /// Lock owner and `fetched_by`; `None` lets the caller pick one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

/// `[upstream]`: where WeChat is, so tests and dev stacks point at wechat-sim.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// An http(s) URL without a trailing slash.
    pub base_url: String,
    /// WeCom's API host (qyapi.weixin.qq.com), likewise.
    pub wecom_base_url: String,
}

/// One `[[apps]]` entry, with its secret resolved.
#[derive(Debug, Clone, Serialize)]
pub struct AppConfig {
    pub id: CredentialId,
    pub appid: String,
    /// The resolved secret; never serialized, `Debug` shows `[REDACTED]`.
    /// `None` only for a followed app (SPEC §12).
    #[serde(skip)]
    pub secret: Option<SecretString>,
    /// Where the secret came from: what `check-config` shows instead of it.
    #[serde(rename = "secret", skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    pub api: UpstreamApi,
    /// JS-SDK tickets the fleet keeps for this app (`jsapi`, `wx_card`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<TicketType>,
    /// The stand-in secret the compatible endpoints accept instead of the
    /// appsecret (SDK configs then hold no real secret).
    #[serde(skip)]
    pub compat_secret: Option<SecretString>,
    #[serde(rename = "compat_secret", skip_serializing_if = "Option::is_none")]
    pub compat_secret_ref: Option<SecretRef>,
    /// Taken from another fleet instead of WeChat (SPEC §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowConfig>,
}

/// One `[[wecom]]` entry (SPEC §8), with its secret resolved.
#[derive(Debug, Clone, Serialize)]
pub struct WecomConfig {
    pub id: CredentialId,
    pub corpid: String,
    /// The agent the secret belongs to (absent for e.g. the contacts secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
    /// The resolved agent secret; never serialized, `Debug` shows `[REDACTED]`.
    /// `None` only for a followed agent (SPEC §12).
    #[serde(skip)]
    pub secret: Option<SecretString>,
    #[serde(rename = "secret", skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Tickets the fleet keeps (`jsapi`: the corp ticket, `agent_config`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<TicketType>,
    /// Taken from another fleet instead of WeChat (SPEC §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowConfig>,
}

/// Which WeChat endpoint issues this app's token (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamApi {
    #[default]
    Token,
    StableToken,
}

impl Config {
    /// Loads `path`, else the file named by `WXTOKEN_CONFIG`, with the process env.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_toml_str(&Self::read_file(path)?, &Env::process())
    }

    /// As [`Config::load`], for commands that use no secret (they only read
    /// or write Redis: `status`, `get`, …): a secret that cannot be read does
    /// not stop them. A malformed file is refused all the same.
    pub fn load_without_secrets(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = Env::process().with_stand_in_secrets();
        Self::from_toml_str(&Self::read_file(path)?, &env)
    }

    fn read_file(path: Option<&Path>) -> Result<String, ConfigError> {
        let path = match path {
            Some(path) => path.to_path_buf(),
            None => std::env::var_os("WXTOKEN_CONFIG")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    ConfigError::new(
                        "config",
                        "no config file: pass --config PATH or set WXTOKEN_CONFIG",
                    )
                })?,
        };
        fs::read_to_string(&path)
            .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))
    }

    /// Parses `text`, applies the `WXTOKEN__…` overrides found in `env`, then
    /// validates and resolves secrets, looking env references up in `env` too.
    /// Tests pass an [`Env`] built from pairs; [`Config::load`] passes the process env.
    pub fn from_toml_str(text: &str, env: &Env) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e| syntax_error(text, &e))?;
        let mut doc = toml::Value::Table(table);
        let mut overrides = env::apply_overrides(&mut doc, env)?;
        let file = loop {
            match serde_path_to_error::deserialize::<_, ConfigFile>(doc.clone()) {
                Ok(file) => break file,
                Err(e) => {
                    let key = e.path().to_string();
                    // `=30` was read as an integer but the key wants a string: retry as text.
                    if env::retry_as_string(&mut doc, &mut overrides, &key) {
                        continue;
                    }
                    let err = validate::shape_error(key, e.inner().message());
                    return Err(env::blame(err, &overrides));
                }
            }
        };
        file.resolve(env).map_err(|e| env::blame(e, &overrides))
    }

    /// The resolved config as TOML for `wxtoken check-config`: defaults filled
    /// in, secrets as their references, the Redis password as `***`.
    pub fn redacted_toml(&self) -> String {
        let head = "# wxtoken: resolved config; secrets by reference, Redis password as ***\n";
        match toml::to_string(self) {
            Ok(body) => format!("{head}{body}"),
            Err(e) => format!("{head}# cannot render the config: {e}\n"),
        }
    }
}

impl RefreshConfig {
    /// `scheduled_reserve`, or its default: a tenth of the budget.
    pub fn reserve(&self) -> u64 {
        self.scheduled_reserve.unwrap_or(self.daily_budget / 10)
    }

    /// The reserve of a credential whose budget is `budget` (a ticket's
    /// `ticket_daily_budget`, …): the configured reserve scaled to it.
    pub fn reserve_of(&self, budget: u64) -> u64 {
        if budget == self.daily_budget {
            return self.reserve();
        }
        let share = self.reserve() as f64 / self.daily_budget.max(1) as f64;
        (budget as f64 * share).ceil() as u64
    }

    /// How long before expiry a `stable_token` credential refreshes: inside
    /// WeChat's renew window, where normal mode hands out a new token.
    pub fn stable_lead(&self) -> Duration {
        self.refresh_ahead
            .min(self.stable_renew_window.mul_f64(0.8))
    }

    /// How long before expiry `app` refreshes.
    pub fn lead_for(&self, api: UpstreamApi) -> Duration {
        match api {
            UpstreamApi::Token => self.refresh_ahead,
            UpstreamApi::StableToken => self.stable_lead(),
        }
    }
}

impl AppConfig {
    /// The appsecret; `None` for a followed app configured without one.
    pub fn secret(&self) -> Option<&SecretString> {
        self.secret.as_ref()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: RedisUrl("redis://127.0.0.1:6379/0".to_owned()),
            mode: RedisMode::Standalone,
            key_prefix: wxtoken_common::Keys::default().prefix().to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            pool_wait_timeout: Duration::from_secs(2),
            sentinel_master: None,
            ca_file: None,
        }
    }
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(600),
            lock_ttl: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(30),
            loss_check_interval: Duration::from_secs(5),
            quota_check_interval: Duration::from_secs(600),
            daily_budget: 1800,
            ticket_daily_budget: 100,
            wecom_ticket_hourly_per_agent: 100,
            wecom_ticket_hourly_per_corp: 400,
            scheduled_reserve: None,
            report_refresh_interval: Duration::from_secs(60),
            verify_interval: Duration::from_secs(120),
            verify_daily_budget: 800,
            fatal_cooldown: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_renew_window: Duration::from_secs(300),
            quota_day_offset: QuotaOffset::default(),
            replica_id: None,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.weixin.qq.com".to_owned(),
            wecom_base_url: "https://qyapi.weixin.qq.com".to_owned(),
        }
    }
}
