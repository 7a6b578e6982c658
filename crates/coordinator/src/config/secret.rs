//! Config values that must not leak: secret references and the Redis URL.
//!
//! A secret is written by reference, `{ env = "NAME" }` or
//! `{ file = "/run/secrets/x" }`; this module refuses plain-string secrets,
//! reads the value behind a reference (errors name the variable or file,
//! never the value) and keeps the Redis password out of `Debug`, `Display`
//! and `check-config`. It does not decide when to read: app secrets are read
//! once at load, API keys whenever the HTTP layer asks.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::Env;

/// Where a secret lives. `Debug`/`Display` show the reference, which is not secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum SecretRef {
    /// An environment variable, read as is.
    Env(String),
    /// A file (a Kubernetes or Docker secret), trailing newlines trimmed.
    File(PathBuf),
}

/// What an unreadable secret resolves to when the env stands in for secrets
/// (read-only commands): never sent anywhere, as those commands call no one.
const STAND_IN: &str = "wxtoken-secret-not-read:";

/// Whether `secret` is the stand-in of an unread secret (its format checks are skipped).
pub(crate) fn is_stand_in(secret: &SecretString) -> bool {
    secret.expose_secret().starts_with(STAND_IN)
}

const PLAIN_REFUSED: &str = "a secret must be a reference, not a value: write `{ env = \"NAME\" }` or `{ file = \"/run/secrets/name\" }` so it stays out of config files";

impl SecretRef {
    /// The value behind the reference; must be non-empty.
    pub fn resolve(&self, env: &Env) -> Result<SecretString, String> {
        let text = self.read(env)?;
        if text.is_empty() {
            return Err(format!("{self} is empty"));
        }
        Ok(SecretString::from(text))
    }

    /// Several values: comma-separated in an env var, one per non-empty line in a file.
    pub(crate) fn resolve_list(&self, env: &Env) -> Result<Vec<SecretString>, String> {
        let text = self.read(env)?;
        let sep = match self {
            SecretRef::Env(_) => ',',
            SecretRef::File(_) => '\n',
        };
        let keys: Vec<SecretString> = text
            .split(sep)
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(SecretString::from)
            .collect();
        if keys.is_empty() {
            return Err(format!("{self} holds no keys"));
        }
        Ok(keys)
    }

    fn read(&self, env: &Env) -> Result<String, String> {
        match self.read_value(env) {
            Ok(text) if !text.is_empty() => Ok(text),
            // Unique per reference, so "must differ" checks between two still hold.
            _ if env.stands_in_secrets() => Ok(format!("{STAND_IN}{self}")),
            other => other,
        }
    }

    fn read_value(&self, env: &Env) -> Result<String, String> {
        match self {
            SecretRef::Env(name) => env
                .get(name)
                .map(str::to_owned)
                .ok_or_else(|| format!("env var `{name}` is not set (or not UTF-8)")),
            SecretRef::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(text.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env var `{name}`"),
            SecretRef::File(path) => write!(f, "secret file {}", path.display()),
        }
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self {
            SecretRef::Env(name) => map.serialize_entry("env", name)?,
            SecretRef::File(path) => map.serialize_entry("file", path)?,
        }
        map.end()
    }
}

impl TryFrom<toml::Value> for SecretRef {
    type Error = &'static str;
    /// Accepts `{ env = "NAME" }` or `{ file = "/path" }` and refuses anything
    /// else without echoing it: a plain string may be the secret itself.
    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        let toml::Value::Table(form) = value else {
            return Err(PLAIN_REFUSED);
        };
        let field = |k: &str| {
            form.get(k)
                .and_then(toml::Value::as_str)
                .filter(|s| !s.is_empty())
        };
        match (form.len(), field("env"), field("file")) {
            (1, Some(name), None) => Ok(SecretRef::Env(name.to_owned())),
            (1, None, Some(path)) => Ok(SecretRef::File(path.into())),
            _ => {
                Err("give exactly one non-empty `env` or `file`, e.g. `{ env = \"SHOP_SECRET\" }`")
            }
        }
    }
}

/// A Redis URL whose scheme was checked; the password never leaves through
/// `Debug`/`Display`/`Serialize`, only through [`RedisUrl::expose_secret`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RedisUrl(pub(super) String);

impl RedisUrl {
    /// The full URL, password included: only for opening connections.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(|u| redact_one(u.trim()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn redact_one(raw: &str) -> String {
    {
        let Ok(mut url) = reqwest::Url::parse(raw) else {
            return "<unparsable redis url>".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if query.iter().any(|(k, _)| k == "pass" || k == "password") {
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for (k, v) in &query {
                let hidden = k == "pass" || k == "password";
                pairs.append_pair(k, if hidden { "***" } else { v });
            }
        }
        url.to_string()
    }
}

impl TryFrom<String> for RedisUrl {
    type Error = String;
    /// One URL, or a comma-separated list (Sentinels, cluster seed nodes).
    fn try_from(raw: String) -> Result<Self, String> {
        for (i, one) in raw.split(',').map(str::trim).enumerate() {
            check_one(one).map_err(|e| {
                if raw.contains(',') {
                    format!("URL #{}: {e}", i + 1)
                } else {
                    e
                }
            })?;
        }
        Ok(Self(raw))
    }
}

fn check_one(raw: &str) -> Result<(), String> {
    {
        // Never echo `raw`: it may hold a password.
        let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        let scheme = url.scheme();
        if !matches!(scheme, "redis" | "rediss" | "redis+unix" | "unix") {
            return Err(format!(
                "scheme `{scheme}` is not supported; use redis://, rediss:// (TLS), redis+unix:// or unix://"
            ));
        }
        if matches!(scheme, "redis" | "rediss") && url.host_str().is_none() {
            return Err("the URL has no host".to_owned());
        }
        Ok(())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}
