//! Turning the file as written into a [`Config`]: every rule that refuses a
//! value, each naming the key at fault (the credential entries' own rules
//! and secrets in `entries.rs`).
//!
//! The rules live here so the types in `config.rs` stay plain data. This
//! module does not parse TOML or apply env overrides; it sees their result.

use std::fmt;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use wxtoken_common::{Keys, TicketType};

use super::entries::{AppEntry, WecomEntry};
use super::platform::{ComponentEntry, SecurityEntry};
use super::{
    AppConfig, ComponentConfig, Config, ConfigError, Env, HttpConfig, RedisConfig, RedisMode,
    RefreshConfig, UpstreamApi, UpstreamConfig, WecomConfig,
};

/// The file as written: sections default when absent, apps still unresolved.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ConfigFile {
    redis: RedisConfig,
    http: HttpConfig,
    refresh: RefreshConfig,
    upstream: UpstreamConfig,
    apps: Vec<AppEntry>,
    wecom: Vec<WecomEntry>,
    components: Vec<ComponentEntry>,
    security: SecurityEntry,
    gateway: super::GatewayConfig,
}

/// `Err(ConfigError { key, message })` unless `ok`.
pub(super) fn check(ok: bool, key: &str, message: impl fmt::Display) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(key, message.to_string()))
    }
}

pub(super) fn nonzero(d: Duration, key: &str) -> Result<(), ConfigError> {
    check(!d.is_zero(), key, "must be greater than zero")
}

fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

impl ConfigFile {
    pub(super) fn resolve(self, env: &Env) -> Result<Config, ConfigError> {
        let ConfigFile {
            redis,
            http,
            refresh,
            mut upstream,
            apps,
            wecom,
            components,
            security,
            gateway,
        } = self;
        redis.validate()?;
        gateway.validate()?;
        http.validate()?;
        refresh.validate()?;
        upstream.base_url = validate_base_url(&upstream.base_url, "upstream.base_url")?;
        upstream.wecom_base_url =
            validate_base_url(&upstream.wecom_base_url, "upstream.wecom_base_url")?;
        check(
            !apps.is_empty() || !wecom.is_empty() || !components.is_empty(),
            "apps",
            "no [[apps]], [[wecom]] or [[components]] configured: add at least one credential",
        )?;
        let mut resolved: Vec<AppConfig> = Vec::with_capacity(apps.len());
        for (i, entry) in apps.into_iter().enumerate() {
            let app = entry.resolve(i, env)?;
            if let Some(j) = resolved.iter().position(|a| a.id == app.id) {
                let msg = format!("id `{}` is already used by apps[{j}]", app.id);
                return Err(ConfigError::new(format!("apps[{i}].id"), msg));
            }
            let twin = |a: &AppConfig| a.appid == app.appid && a.api == UpstreamApi::Token;
            if app.api == UpstreamApi::Token
                && let Some(j) = resolved.iter().position(twin)
            {
                let msg = format!(
                    "appid is also refreshed by apps[{j}] with api = \"token\": every cgi-bin/token call revokes the other's token; use one entry"
                );
                return Err(ConfigError::new(format!("apps[{i}].appid"), msg));
            }
            if app.api == UpstreamApi::StableToken {
                let lead = refresh.stable_lead();
                let floor = refresh.lock_ttl.saturating_add(refresh.upstream_timeout);
                check(
                    lead >= floor,
                    "refresh.stable_renew_window",
                    format_args!(
                        "80 % of it ({}) must be at least lock_ttl + upstream_timeout ({}) for apps[{i}] (api = \"stable_token\" refreshes inside that window)",
                        human(lead),
                        human(floor)
                    ),
                )?;
            }
            resolved.push(app);
        }
        let mut agents: Vec<WecomConfig> = Vec::with_capacity(wecom.len());
        for (i, entry) in wecom.into_iter().enumerate() {
            let agent = entry.resolve(i, env)?;
            let key = format!("wecom[{i}].id");
            if let Some(j) = resolved.iter().position(|a| a.id == agent.id) {
                let msg = format!("id `{}` is already used by apps[{j}]", agent.id);
                return Err(ConfigError::new(key, msg));
            }
            if let Some(j) = agents.iter().position(|a| a.id == agent.id) {
                let msg = format!("id `{}` is already used by wecom[{j}]", agent.id);
                return Err(ConfigError::new(key, msg));
            }
            let same_secret = |a: &WecomConfig| {
                a.corpid == agent.corpid
                    && matches!((&a.secret, &agent.secret), (Some(x), Some(y)) if x.expose_secret() == y.expose_secret())
            };
            if let Some(j) = agents.iter().position(same_secret) {
                let msg = format!(
                    "corpid and secret are those of wecom[{j}]: one (corp, secret) has one token; use one entry"
                );
                return Err(ConfigError::new(format!("wecom[{i}].secret"), msg));
            }
            // A corp's agents share its jsapi ticket (one fetches it for all):
            // either every agent keeping it follows another fleet, or none.
            let shares = |a: &WecomConfig| {
                a.corpid == agent.corpid && a.tickets.contains(&TicketType::Jsapi)
            };
            if shares(&agent)
                && let Some(j) = agents
                    .iter()
                    .position(|a| shares(a) && a.follow.is_some() != agent.follow.is_some())
            {
                let msg = format!(
                    "wecom[{j}] keeps the same corp's jsapi ticket and {} followed: the corp's agents share one ticket, so follow all of them or none",
                    if agent.follow.is_some() {
                        "is not"
                    } else {
                        "is"
                    }
                );
                return Err(ConfigError::new(format!("wecom[{i}].follow"), msg));
            }
            agents.push(agent);
        }
        let mut platforms: Vec<ComponentConfig> = Vec::with_capacity(components.len());
        for (i, entry) in components.into_iter().enumerate() {
            let c = entry.resolve(i, env)?;
            let key = format!("components[{i}].id");
            let taken = resolved.iter().any(|a| a.id == c.id)
                || agents.iter().any(|a| a.id == c.id)
                || platforms.iter().any(|p| p.id == c.id);
            if taken {
                let msg = format!("id `{}` is already used by another entry", c.id);
                return Err(ConfigError::new(key, msg));
            }
            if platforms
                .iter()
                .any(|p| p.component_appid == c.component_appid)
            {
                return Err(ConfigError::new(
                    format!("components[{i}].component_appid"),
                    "listed twice: every api_component_token call supersedes the other entry's token; use one entry",
                ));
            }
            platforms.push(c);
        }
        let security = security.resolve(env)?;
        let api_keys = http.api_keys_in(env)?;
        Ok(Config {
            redis,
            http,
            refresh,
            upstream,
            apps: resolved,
            wecom: agents,
            components: platforms,
            security,
            gateway,
            api_keys,
        })
    }
}

impl RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        Keys::new(&self.key_prefix)
            .map_err(|e| ConfigError::new("redis.key_prefix", e.to_string()))?;
        check(self.pool_size > 0, "redis.pool_size", "must be at least 1")?;
        nonzero(self.connect_timeout, "redis.connect_timeout")?;
        nonzero(self.command_timeout, "redis.command_timeout")?;
        nonzero(self.pool_wait_timeout, "redis.pool_wait_timeout")?;
        let named = self
            .sentinel_master
            .as_deref()
            .is_some_and(|m| !m.trim().is_empty());
        check(
            self.mode != RedisMode::Sentinel || named,
            "redis.sentinel_master",
            "mode = \"sentinel\" needs the name of the master the sentinels monitor",
        )
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        nonzero(self.request_timeout, "http.request_timeout")?;
        super::keys::validate_all(&self.keys, "http.keys")?;
        if let Some(path) = &self.keys_file {
            super::keys::read_key_file(path)?;
        }
        if let Some(files) = self.tls_files()? {
            files.server_config()?;
        }
        check(
            self.body_limit > 0,
            "http.body_limit",
            "must be at least 1 byte",
        )?;
        nonzero(self.header_read_timeout, "http.header_read_timeout")?;
        check(
            (1..=1_000_000).contains(&self.max_connections),
            "http.max_connections",
            "must be between 1 and 1000000",
        )?;
        check(
            self.workers <= crate::workers::MAX_WORKERS,
            "http.workers",
            "must be between 0 (the main runtime) and 64",
        )?;
        check(
            self.secret_failures_per_minute > 0,
            "http.secret_failures_per_minute",
            "must be at least 1",
        )?;
        check(
            self.secret_failures_per_minute_per_app > 0,
            "http.secret_failures_per_minute_per_app",
            "must be at least 1",
        )?;
        check(
            self.metrics_listen != Some(self.listen),
            "http.metrics_listen",
            "must differ from http.listen (leave it out to serve /metrics on listen)",
        )
    }
}

impl RefreshConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        nonzero(self.lock_ttl, "refresh.lock_ttl")?;
        nonzero(self.upstream_timeout, "refresh.upstream_timeout")?;
        nonzero(self.poll_interval, "refresh.poll_interval")?;
        nonzero(self.loss_check_interval, "refresh.loss_check_interval")?;
        nonzero(self.quota_check_interval, "refresh.quota_check_interval")?;
        nonzero(self.fatal_cooldown, "refresh.fatal_cooldown")?;
        nonzero(self.backoff_base, "refresh.backoff_base")?;
        check(
            self.backoff_max >= self.backoff_base,
            "refresh.backoff_max",
            format_args!(
                "must be at least backoff_base ({})",
                human(self.backoff_base)
            ),
        )?;
        check(
            self.upstream_timeout < self.lock_ttl / 2,
            "refresh.upstream_timeout",
            format_args!(
                "must be less than half of lock_ttl ({}): a fetch still running when the lock lapses lets a second replica call WeChat too",
                human(self.lock_ttl)
            ),
        )?;
        let floor = self.lock_ttl.saturating_add(self.upstream_timeout);
        check(
            self.refresh_ahead >= floor,
            "refresh.refresh_ahead",
            format_args!(
                "must be at least lock_ttl + upstream_timeout ({}): if the replica holding the lock dies, its lock must lapse and another replica must still have time to fetch before the token expires",
                human(floor)
            ),
        )?;
        check(
            self.refresh_ahead <= Duration::from_secs(3600),
            "refresh.refresh_ahead",
            "must be at most 1h: tokens live 2h, a larger lead refreshes so often it burns the daily quota",
        )?;
        check(
            (1..=100_000).contains(&self.ticket_daily_budget),
            "refresh.ticket_daily_budget",
            "must be between 1 and 100000 (WeChat's getticket quota is \"very limited\"; the fleet needs about 12 a day)",
        )?;
        check(
            (1..=100).contains(&self.wecom_ticket_hourly_per_agent),
            "refresh.wecom_ticket_hourly_per_agent",
            "must be between 1 and 100 (WeCom refuses more than 100 ticket fetches per agent per hour)",
        )?;
        check(
            (1..=400).contains(&self.wecom_ticket_hourly_per_corp),
            "refresh.wecom_ticket_hourly_per_corp",
            "must be between 1 and 400 (WeCom refuses more than 400 ticket fetches per corp per hour)",
        )?;
        check(
            (1..=100_000).contains(&self.daily_budget),
            "refresh.daily_budget",
            "must be between 1 and 100000 (WeChat allows 2000 cgi-bin/token calls a day; 1800 leaves headroom)",
        )?;
        check(
            self.reserve() < self.daily_budget,
            "refresh.scheduled_reserve",
            format_args!(
                "must be less than daily_budget ({}): it is the part of the budget only scheduled refreshes may spend",
                self.daily_budget
            ),
        )?;
        nonzero(
            self.report_refresh_interval,
            "refresh.report_refresh_interval",
        )?;
        nonzero(self.verify_interval, "refresh.verify_interval")?;
        check(
            (1..=100_000).contains(&self.verify_daily_budget),
            "refresh.verify_daily_budget",
            "must be between 1 and 100000 (WeChat's get_api_domain_ip allows about 1000 calls a day)",
        )?;
        let id_ok = |r: &String| {
            !r.is_empty()
                && r.len() <= 128
                && !r.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        check(
            self.replica_id.as_ref().is_none_or(id_ok),
            "refresh.replica_id",
            "must be 1-128 characters without spaces or control characters",
        )
    }
}

fn validate_base_url(raw: &str, key: &str) -> Result<String, ConfigError> {
    let bad = |why: String| ConfigError::new(key, why);
    let url = reqwest::Url::parse(raw).map_err(|e| bad(format!("{raw:?} is not a URL ({e})")))?;
    check(
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some(),
        key,
        format_args!("{raw:?} must be an http:// or https:// URL with a host"),
    )?;
    check(
        url.query().is_none() && url.fragment().is_none(),
        key,
        "must not have a query or fragment",
    )?;
    Ok(raw.trim_end_matches('/').to_owned())
}

/// A value of the wrong shape or an unknown key, as serde reported it; an
/// unknown key also names the section it was found in.
pub(super) fn shape_error(key: String, message: &str) -> ConfigError {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let key = if key.is_empty() || key == "." {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
        return ConfigError::new(key, message);
    }
    if !message.starts_with("unknown field") {
        return ConfigError::new(key, message);
    }
    let place = match key.rsplit_once('.') {
        Some((section, _)) => format!("section `{section}`"),
        None => "the top level".to_owned(),
    };
    let message = format!("{message} (in {place})");
    ConfigError::new(key, message)
}

/// A TOML syntax error, located by line and column but without the source
/// snippet `toml` would print: that line might hold a secret written in error.
pub(super) fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {column}")
    });
    let msg = format!(
        "TOML syntax error{}: {}",
        at.unwrap_or_default(),
        e.message().trim()
    );
    ConfigError::new("config", msg)
}
