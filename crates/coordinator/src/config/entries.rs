//! The credential entries of the file, `[[apps]]` and `[[wecom]]`, as
//! written and as resolved: each rule naming the key at fault, their
//! secrets (required unless followed) and their ticket lists.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wxtoken_common::{CredentialId, TicketType};

use super::follow::FollowEntry;
use super::validate::check;
use super::{AppConfig, ConfigError, Env, SecretRef, UpstreamApi, WecomConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppEntry {
    id: Option<String>,
    appid: String,
    /// Optional only when the app is followed (SPEC §12).
    #[serde(default)]
    secret: Option<SecretRef>,
    #[serde(default)]
    api: UpstreamApi,
    #[serde(default)]
    tickets: Vec<TicketType>,
    /// A stand-in secret SDKs may send instead of the real one (SPEC §10).
    #[serde(default)]
    compat_secret: Option<SecretRef>,
    #[serde(default)]
    follow: Option<FollowEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WecomEntry {
    id: String,
    corpid: String,
    #[serde(default)]
    agentid: Option<u64>,
    #[serde(default)]
    secret: Option<SecretRef>,
    #[serde(default)]
    tickets: Vec<TicketType>,
    #[serde(default)]
    follow: Option<FollowEntry>,
}

impl AppEntry {
    pub(super) fn resolve(self, i: usize, env: &Env) -> Result<AppConfig, ConfigError> {
        let key = |field: &str| format!("apps[{i}].{field}");
        check(
            !self.appid.trim().is_empty(),
            &key("appid"),
            "must not be empty",
        )?;
        let id = match &self.id {
            Some(id) => {
                CredentialId::parse(id).map_err(|e| ConfigError::new(key("id"), e.to_string()))?
            }
            None => CredentialId::parse(&self.appid).map_err(|e| {
                ConfigError::new(
                    key("id"),
                    format!("no id given and the appid is not a valid id: {e}"),
                )
            })?,
        };
        let follow = self
            .follow
            .map(|f| f.resolve(&format!("apps[{i}]"), env))
            .transpose()?;
        let secret = resolve_secret(self.secret.as_ref(), follow.is_some(), &key("secret"), env)?;
        let tickets = unique_tickets(
            &self.tickets,
            &key("tickets"),
            &[TicketType::Jsapi, TicketType::WxCard],
        )?;
        let compat_secret = match &self.compat_secret {
            Some(r) => {
                let value = r
                    .resolve(env)
                    .map_err(|m| ConfigError::new(key("compat_secret"), m))?;
                check(
                    value.expose_secret().len() >= 16,
                    &key("compat_secret"),
                    "must be at least 16 characters",
                )?;
                check(
                    secret
                        .as_ref()
                        .is_none_or(|s| value.expose_secret() != s.expose_secret()),
                    &key("compat_secret"),
                    "must differ from the appsecret (it stands in for it)",
                )?;
                Some(value)
            }
            None => None,
        };
        Ok(AppConfig {
            id,
            appid: self.appid,
            secret,
            secret_ref: self.secret,
            api: self.api,
            tickets,
            compat_secret,
            compat_secret_ref: self.compat_secret,
            follow,
        })
    }
}

impl WecomEntry {
    pub(super) fn resolve(self, i: usize, env: &Env) -> Result<WecomConfig, ConfigError> {
        let key = |field: &str| format!("wecom[{i}].{field}");
        let id = CredentialId::parse(&self.id)
            .map_err(|e| ConfigError::new(key("id"), e.to_string()))?;
        let corpid_ok = !self.corpid.is_empty()
            && self.corpid.len() <= 58
            && self
                .corpid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        check(
            corpid_ok,
            &key("corpid"),
            "must be 1-58 characters of [A-Za-z0-9_-] (WeCom corpids look like ww0123456789abcdef)",
        )?;
        let tickets = unique_tickets(
            &self.tickets,
            &key("tickets"),
            &[TicketType::Jsapi, TicketType::AgentConfig],
        )?;
        check(
            self.agentid.is_some() || !tickets.contains(&TicketType::AgentConfig),
            &key("agentid"),
            "an agent_config ticket belongs to an agent: set agentid (the secret must be that agent's)",
        )?;
        let follow = self
            .follow
            .map(|f| f.resolve(&format!("wecom[{i}]"), env))
            .transpose()?;
        let secret = resolve_secret(self.secret.as_ref(), follow.is_some(), &key("secret"), env)?;
        Ok(WecomConfig {
            id,
            corpid: self.corpid,
            agentid: self.agentid,
            secret,
            secret_ref: self.secret,
            tickets,
            follow,
        })
    }
}

/// An entry's secret: required unless the entry is followed (a follower
/// needs none; one written anyway is resolved, for `wxtoken promote`).
pub(super) fn resolve_secret(
    r: Option<&SecretRef>,
    followed: bool,
    key: &str,
    env: &Env,
) -> Result<Option<SecretString>, ConfigError> {
    match r {
        Some(r) => r
            .resolve(env)
            .map(Some)
            .map_err(|m| ConfigError::new(key, m)),
        None if followed => Ok(None),
        None => Err(ConfigError::new(
            key,
            "missing: write `{ env = \"NAME\" }` or `{ file = \"/run/secrets/name\" }`, or follow another fleet (`follow = { url, key }`)",
        )),
    }
}

/// The ticket list of an entry: each at most once, each one the kind has.
fn unique_tickets(
    tickets: &[TicketType],
    key: &str,
    allowed: &[TicketType],
) -> Result<Vec<TicketType>, ConfigError> {
    let mut out = Vec::new();
    for (i, t) in tickets.iter().enumerate() {
        let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
        check(
            allowed.contains(t),
            &format!("{key}[{i}]"),
            format_args!(
                "`{t}` is not a ticket of this kind; allowed: {}",
                names.join(", ")
            ),
        )?;
        check(
            !out.contains(t),
            &format!("{key}[{i}]"),
            format_args!("`{t}` is listed twice"),
        )?;
        out.push(*t);
    }
    Ok(out)
}
