//! `[[http.keys]]` and `[http] keys_file`: scoped API keys (SPEC §10) —
//! which credential ids (globs) and which operations and API paths each key
//! may use. A key is given by reference (`key = { env = … }`) or as the hex
//! SHA-256 of its value (`sha256 = "…"`), so a key file need not hold the
//! key itself. Checked here; turned into the live key set by `http::keys`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ConfigError, SecretRef};

/// What a key may do besides calling the gateway.
pub const OPERATIONS: [&str; 6] = [
    "token:read",
    "token:invalidate",
    "ticket:sign",
    "login",
    "status:read",
    "platform:write",
];

/// One `[[http.keys]]` (or `[[keys]]` of `keys_file`) entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Who holds it: logs, metrics and audit name the key by this, never
    /// by its value.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
    /// Hex SHA-256 of the key's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Credential ids it may use, `*` matching any run of characters
    /// (`shop`, `open1.*`, `*`).
    #[serde(default = "every_id")]
    pub ids: Vec<String>,
    /// Operations ([`OPERATIONS`]), `proxy:<path glob>` for gateway calls
    /// (`proxy:/cgi-bin/message/*`), or `*` for everything.
    pub allow: Vec<String>,
    /// Requests a second this key may make (none: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    /// mTLS (`[http] tls_client_ca`): a client certificate with this
    /// subject CN is this key, no bearer needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cn: Option<String>,
}

fn every_id() -> Vec<String> {
    vec!["*".to_owned()]
}

/// `keys_file`: `[[keys]]` entries only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

impl KeyEntry {
    /// Checks one entry; `at` names it in errors (`http.keys[2]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let refuse = |field: &str, m: String| Err(ConfigError::new(format!("{at}.{field}"), m));
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return refuse(
                "name",
                "must be 1-64 letters, digits, '-', '_' or '.'".into(),
            );
        }
        match (&self.key, &self.sha256) {
            (Some(_), Some(_)) => {
                return refuse("key", "give only one of `key` and `sha256`".into());
            }
            (None, None) if self.client_cn.is_none() => {
                return refuse(
                    "key",
                    "give one of `key`, `sha256` (or `client_cn` for a client certificate)".into(),
                );
            }
            (None, Some(h)) if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) => {
                return refuse(
                    "sha256",
                    "must be 64 hex digits (SHA-256 of the key)".into(),
                );
            }
            _ => {}
        }
        let glob_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*');
        if self.ids.is_empty() {
            return refuse("ids", "must list at least one id glob".into());
        }
        if let Some(bad) = self
            .ids
            .iter()
            .find(|g| g.is_empty() || !g.chars().all(glob_ok))
        {
            return refuse("ids", format!("{bad:?} is not an id glob"));
        }
        if self.allow.is_empty() {
            return refuse("allow", "must list what the key may do".into());
        }
        for a in &self.allow {
            let ok = a == "*"
                || OPERATIONS.contains(&a.as_str())
                || a.strip_prefix("proxy:")
                    .is_some_and(|p| p.starts_with('/') || p == "*");
            if !ok {
                return refuse(
                    "allow",
                    format!(
                        "{a:?} is not one of {}, `proxy:/path/*` or `*`",
                        OPERATIONS.join(", ")
                    ),
                );
            }
        }
        if let Some(cn) = &self.client_cn
            && (cn.is_empty() || cn.len() > 64 || cn.chars().any(char::is_control))
        {
            return refuse("client_cn", "must be a certificate's subject CN".into());
        }
        if self.per_second == Some(0) {
            return refuse("per_second", "must be greater than zero".into());
        }
        Ok(())
    }
}

/// Checks a list of entries (names unique); `at` is `http.keys` or the file.
pub fn validate_all(entries: &[KeyEntry], at: &str) -> Result<(), ConfigError> {
    for (i, e) in entries.iter().enumerate() {
        e.validate(&format!("{at}[{i}]"))?;
        if let Some(j) = entries[..i].iter().position(|o| o.name == e.name) {
            return Err(ConfigError::new(
                format!("{at}[{i}].name"),
                format!("{:?} is already the name of {at}[{j}]", e.name),
            ));
        }
        if let Some(j) = entries[..i]
            .iter()
            .position(|o| e.client_cn.is_some() && o.client_cn == e.client_cn)
        {
            return Err(ConfigError::new(
                format!("{at}[{i}].client_cn"),
                format!("{at}[{j}] already stands for that certificate"),
            ));
        }
    }
    Ok(())
}

/// Reads and checks `keys_file`.
pub fn read_key_file(path: &Path) -> Result<Vec<KeyEntry>, ConfigError> {
    let at = "http.keys_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(at, format!("cannot read {}: {e}", path.display())))?;
    let file: KeyFile = toml::from_str(&text)
        .map_err(|e| ConfigError::new(at, format!("{}: {}", path.display(), e.message())))?;
    validate_all(&file.keys, "keys")?;
    Ok(file.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(allow: &[&str]) -> KeyEntry {
        KeyEntry {
            name: "orders".into(),
            key: None,
            sha256: Some("a".repeat(64)),
            ids: every_id(),
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            per_second: None,
            client_cn: None,
        }
    }

    #[test]
    fn entries_are_checked_naming_the_field() {
        assert!(
            entry(&["token:read", "proxy:/cgi-bin/message/*", "*"])
                .validate("k")
                .is_ok()
        );
        let key = |e: KeyEntry| e.validate("http.keys[0]").unwrap_err().key;
        assert_eq!(key(entry(&["token:write"])), "http.keys[0].allow");
        assert_eq!(key(entry(&["proxy:cgi-bin"])), "http.keys[0].allow");
        assert_eq!(key(entry(&[])), "http.keys[0].allow");
        let mut e = entry(&["*"]);
        e.sha256 = Some("xyz".into());
        assert_eq!(key(e), "http.keys[0].sha256");
        let mut e = entry(&["*"]);
        e.sha256 = None;
        assert_eq!(key(e), "http.keys[0].key");
        let mut e = entry(&["*"]);
        e.ids = vec!["shop/../x".into()];
        assert_eq!(key(e), "http.keys[0].ids");
        let mut e = entry(&["*"]);
        e.name = "has space".into();
        assert_eq!(key(e), "http.keys[0].name");
        let mut e = entry(&["*"]);
        e.sha256 = None;
        e.client_cn = Some("orders.internal".into());
        assert!(
            e.validate("k").is_ok(),
            "a certificate's key needs no value"
        );
        e.client_cn = Some(String::new());
        assert_eq!(key(e), "http.keys[0].client_cn");
        let twice = [entry(&["*"]), entry(&["*"])];
        assert_eq!(
            validate_all(&twice, "http.keys").unwrap_err().key,
            "http.keys[1].name"
        );
    }
}
