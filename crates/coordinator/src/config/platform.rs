//! The open platform's config (SPEC §9): `[[components]]` (third-party
//! platforms whose authorizers the fleet keeps) and `[security]` (the key
//! that seals refresh tokens and verify tickets at rest).
//!
//! Plain data and the rules that refuse a value, each naming its key. What a
//! component does at run time is `kind::component` and `platform`.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use wxtoken_common::CredentialId;

use super::follow::FollowEntry;
use super::{ConfigError, Env, FollowConfig, SecretRef};

/// `[security]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct SecurityEntry {
    state_key: Option<SecretRef>,
}

/// `[security]`, resolved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SecurityConfig {
    /// 32 bytes (written base64): seals refresh tokens and verify tickets in
    /// Redis (AES-256-GCM). `None`: they are stored in plain text, and every
    /// replica warns at start.
    #[serde(skip)]
    pub state_key: Option<SecretString>,
    #[serde(rename = "state_key", skip_serializing_if = "Option::is_none")]
    pub state_key_ref: Option<SecretRef>,
}

/// One `[[components]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ComponentEntry {
    id: Option<String>,
    component_appid: String,
    /// The three secrets: optional only when the component is followed.
    secret: Option<SecretRef>,
    token: Option<SecretRef>,
    encoding_aes_key: Option<SecretRef>,
    #[serde(default = "default_per_minute")]
    authorizer_calls_per_minute: u64,
    /// Taken with its authorizers from another fleet (SPEC §12).
    #[serde(default)]
    follow: Option<FollowEntry>,
}

fn default_per_minute() -> u64 {
    // WeChat publishes no per-minute figure for api_authorizer_token. Counted
    // with the previous minute, this refills 60 000 authorizers per two
    // minutes; raise it for larger platforms if WeChat allows.
    60_000
}

/// One `[[components]]` entry, secrets resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentConfig {
    pub id: CredentialId,
    pub component_appid: String,
    /// `None` only for a followed component configured without it.
    #[serde(skip)]
    pub secret: Option<SecretString>,
    #[serde(rename = "secret", skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// The message verification token of the event URL.
    #[serde(skip)]
    pub token: Option<SecretString>,
    #[serde(rename = "token", skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    /// The 43-character EncodingAESKey of the event URL.
    #[serde(skip)]
    pub encoding_aes_key: Option<SecretString>,
    #[serde(rename = "encoding_aes_key", skip_serializing_if = "Option::is_none")]
    pub encoding_aes_key_ref: Option<SecretRef>,
    /// `api_authorizer_token` calls the whole fleet makes per minute for
    /// this component, at most.
    pub authorizer_calls_per_minute: u64,
    /// The component token and every authorizer's come from this fleet's
    /// `GET /v1/components/{id}/watch` instead of WeChat (SPEC §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowConfig>,
}

impl SecurityEntry {
    pub(super) fn resolve(self, env: &Env) -> Result<SecurityConfig, ConfigError> {
        let Some(r) = self.state_key else {
            return Ok(SecurityConfig::default());
        };
        let key = r
            .resolve(env)
            .map_err(|m| ConfigError::new("security.state_key", m))?;
        if !super::secret::is_stand_in(&key)
            && crate::vault::StateKey::parse(key.expose_secret()).is_none()
        {
            return Err(ConfigError::new(
                "security.state_key",
                "must be 32 bytes written in base64 (44 characters; `openssl rand -base64 32`)",
            ));
        }
        Ok(SecurityConfig {
            state_key: Some(key),
            state_key_ref: Some(r),
        })
    }
}

impl ComponentEntry {
    pub(super) fn resolve(self, i: usize, env: &Env) -> Result<ComponentConfig, ConfigError> {
        let key = |field: &str| format!("components[{i}].{field}");
        let appid_ok = self.component_appid.len() >= 2
            && self.component_appid.len() <= 32
            && self
                .component_appid
                .chars()
                .all(|c| c.is_ascii_alphanumeric());
        if !appid_ok {
            return Err(ConfigError::new(
                key("component_appid"),
                "must be a WeChat appid (letters and digits, like wx00000000000000c1)",
            ));
        }
        let id = match &self.id {
            Some(id) => CredentialId::parse(id),
            None => CredentialId::parse(&self.component_appid),
        }
        .map_err(|e| ConfigError::new(key("id"), e.to_string()))?;
        if id.as_str().contains('.') {
            return Err(ConfigError::new(
                key("id"),
                "must not contain `.`: authorizer ids are `{component id}.{authorizer appid}`",
            ));
        }
        let follow = self
            .follow
            .map(|f| f.resolve(&format!("components[{i}]"), env))
            .transpose()?;
        let followed = follow.is_some();
        let resolve = |r: &Option<SecretRef>, field: &str| {
            super::entries::resolve_secret(r.as_ref(), followed, &key(field), env)
        };
        let secret = resolve(&self.secret, "secret")?;
        let token = resolve(&self.token, "token")?;
        let encoding_aes_key = resolve(&self.encoding_aes_key, "encoding_aes_key")?;
        let crypt_ok = |token: &SecretString, aes: &SecretString| {
            super::secret::is_stand_in(aes)
                || wxtoken_msgcrypt::MsgCrypt::new(
                    token.expose_secret(),
                    aes.expose_secret(),
                    &self.component_appid,
                )
                .is_ok()
        };
        if let (Some(t), Some(aes)) = (&token, &encoding_aes_key)
            && !crypt_ok(t, aes)
        {
            return Err(ConfigError::new(
                key("encoding_aes_key"),
                "must be WeChat's 43-character EncodingAESKey (base64 of 32 bytes, without the trailing `=`)",
            ));
        }
        if !(1..=10_000_000).contains(&self.authorizer_calls_per_minute) {
            return Err(ConfigError::new(
                key("authorizer_calls_per_minute"),
                "must be between 1 and 10000000",
            ));
        }
        Ok(ComponentConfig {
            id,
            component_appid: self.component_appid,
            secret,
            secret_ref: self.secret,
            token,
            token_ref: self.token,
            encoding_aes_key,
            encoding_aes_key_ref: self.encoding_aes_key,
            authorizer_calls_per_minute: self.authorizer_calls_per_minute,
            follow,
        })
    }
}
