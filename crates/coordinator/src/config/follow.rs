//! `follow = { url, key }` on an `[[apps]]`, `[[wecom]]` or `[[components]]`
//! entry (SPEC §12): the fleet takes that credential (and its tickets; a
//! component's authorizers) from another fleet's watch endpoint instead of
//! from WeChat, and needs no secret for it.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::formats::humantime_str;
use super::{ConfigError, Env, SecretRef};

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FollowEntry {
    url: String,
    key: SecretRef,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default = "default_keepalive", with = "humantime_str")]
    keepalive: Duration,
}

fn default_keepalive() -> Duration {
    Duration::from_secs(15)
}

/// Where a followed credential comes from.
#[derive(Debug, Clone, Serialize)]
pub struct FollowConfig {
    /// The primary fleet's API base (`https://wxtoken.prod.internal:8088`),
    /// without a trailing slash.
    pub url: String,
    /// A key of the primary with `token:read` (and `token:invalidate`, to
    /// forward reports) on the followed ids. Never serialized.
    #[serde(skip)]
    pub key: SecretString,
    #[serde(rename = "key")]
    pub key_ref: SecretRef,
    /// A PEM file of the CA that signed the primary's certificate (besides
    /// the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The keep-alive the follower asks the primary for; a stream silent
    /// for [`Self::idle_limit`] is taken for dead and reconnected (a
    /// blackholed network never closes it).
    #[serde(with = "humantime_str")]
    pub keepalive: Duration,
}

impl FollowConfig {
    /// Silence after which the stream is given up: two keep-alives and a
    /// second.
    pub fn idle_limit(&self) -> Duration {
        self.keepalive * 2 + Duration::from_secs(1)
    }
}

impl FollowEntry {
    /// `at` is the entry's key (`apps[0]`).
    pub(super) fn resolve(self, at: &str, env: &Env) -> Result<FollowConfig, ConfigError> {
        let key = |field: &str| format!("{at}.follow.{field}");
        let url = self.url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| ConfigError::new(key("url"), format!("not a URL: {e}")))?;
        let plain = matches!(parsed.scheme(), "http" | "https")
            && parsed.host_str().is_some()
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && parsed.query().is_none()
            && parsed.fragment().is_none();
        if !plain {
            return Err(ConfigError::new(
                key("url"),
                "must be an http:// or https:// base URL with a host and no user, query or fragment (the key goes in `key`)",
            ));
        }
        if self.ca.is_some() && parsed.scheme() != "https" {
            return Err(ConfigError::new(
                key("ca"),
                "a CA is for https:// URLs only",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.keepalive) {
            return Err(ConfigError::new(
                key("keepalive"),
                "must be between 1s and 60s",
            ));
        }
        if let Some(ca) = &self.ca {
            load_ca(ca).map_err(|m| ConfigError::new(key("ca"), m))?;
        }
        let secret = self
            .key
            .resolve(env)
            .map_err(|m| ConfigError::new(key("key"), m))?;
        Ok(FollowConfig {
            url,
            key: secret,
            key_ref: self.key,
            ca: self.ca,
            keepalive: self.keepalive,
        })
    }
}

/// The certificates of a CA file (PEM, one or more).
pub fn load_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    fn load(app: &str) -> Result<Config, crate::config::ConfigError> {
        let env: Env = [
            ("KEY".to_owned(), "follow-key-1234".to_owned()),
            ("SECRET".to_owned(), "app-secret".to_owned()),
        ]
        .into_iter()
        .collect();
        Config::from_toml_str(
            &format!("[[apps]]\nid = \"shop\"\nappid = \"wx0123456789abcdef\"\n{app}\n"),
            &env,
        )
    }

    #[test]
    fn a_followed_app_needs_no_secret_and_hides_its_key() {
        let c = load(r#"follow = { url = "https://prod.internal:8088/", key = { env = "KEY" } }"#)
            .unwrap();
        let f = c.apps[0].follow.as_ref().unwrap();
        assert_eq!(f.url, "https://prod.internal:8088");
        assert_eq!(f.keepalive, std::time::Duration::from_secs(15));
        assert!(c.apps[0].secret.is_none());
        assert!(!format!("{c:?}").contains("follow-key-1234"));
        let shown = c.redacted_toml();
        assert!(
            !shown.contains("follow-key-1234") && shown.contains("KEY"),
            "{shown}"
        );
    }

    #[test]
    fn a_followed_component_needs_none_of_its_secrets_and_an_unfollowed_one_all() {
        let env: Env = [("KEY".to_owned(), "follow-key-1234".to_owned())]
            .into_iter()
            .collect();
        let load = |extra: &str| {
            Config::from_toml_str(
                &format!(
                    "[[components]]\nid = \"open1\"\ncomponent_appid = \"wx00000000000000c1\"\n{extra}\n"
                ),
                &env,
            )
        };
        let c = load(r#"follow = { url = "https://prod.internal:8088", key = { env = "KEY" } }"#)
            .unwrap();
        let component = &c.components[0];
        assert!(component.secret.is_none() && component.encoding_aes_key.is_none());
        assert_eq!(
            component.follow.as_ref().map(|f| f.url.as_str()),
            Some("https://prod.internal:8088")
        );
        assert!(!format!("{c:?}").contains("follow-key-1234"));
        assert!(!c.redacted_toml().contains("follow-key-1234"));
        let e = load("").unwrap_err();
        assert_eq!(e.key, "components[0].secret", "{e}");
        let e = load(r#"follow = { url = "ftp://x", key = { env = "KEY" } }"#).unwrap_err();
        assert_eq!(e.key, "components[0].follow.url", "{e}");
    }

    #[test]
    fn bad_follow_tables_name_their_key() {
        for (app, key) in [
            ("", "apps[0].secret"),
            (
                r#"follow = { url = "ftp://x", key = { env = "KEY" } }"#,
                "apps[0].follow.url",
            ),
            (
                r#"follow = { url = "https://u:p@x", key = { env = "KEY" } }"#,
                "apps[0].follow.url",
            ),
            (
                r#"follow = { url = "https://x/?k=1", key = { env = "KEY" } }"#,
                "apps[0].follow.url",
            ),
            (
                r#"follow = { url = "https://x", key = { env = "NOPE" } }"#,
                "apps[0].follow.key",
            ),
            (
                r#"follow = { url = "https://x", key = { env = "KEY" }, keepalive = "0s" }"#,
                "apps[0].follow.keepalive",
            ),
            (
                r#"follow = { url = "http://x", key = { env = "KEY" }, ca = "/nonexistent.pem" }"#,
                "apps[0].follow.ca",
            ),
            (
                r#"follow = { url = "https://x", key = { env = "KEY" }, ca = "/nonexistent.pem" }"#,
                "apps[0].follow.ca",
            ),
        ] {
            let e = load(app).expect_err(app);
            assert_eq!(e.key, key, "{app}: {e}");
        }
        let e = load("").unwrap_err();
        assert!(e.to_string().contains("follow"), "{e}");
    }

    #[test]
    fn a_corps_agents_sharing_its_jsapi_ticket_follow_together_or_not_at_all() {
        let env: Env = [
            ("KEY".to_owned(), "follow-key-1234".to_owned()),
            ("A".to_owned(), "secret-a".to_owned()),
            ("B".to_owned(), "secret-b".to_owned()),
        ]
        .into_iter()
        .collect();
        let agent = |id: &str, n: u32, secret: &str, follow: bool, tickets: &str| {
            format!(
                "[[wecom]]\nid = \"{id}\"\ncorpid = \"ww1\"\nagentid = {n}\nsecret = {{ env = \"{secret}\" }}\ntickets = [{tickets}]\n{}\n",
                if follow {
                    "follow = { url = \"https://prod\", key = { env = \"KEY\" } }"
                } else {
                    ""
                }
            )
        };
        let two = |f1, f2, tickets: &str| {
            Config::from_toml_str(
                &format!(
                    "{}{}",
                    agent("hr", 1, "A", f1, tickets),
                    agent("ops", 2, "B", f2, tickets)
                ),
                &env,
            )
        };
        let e = two(true, false, "\"jsapi\"").unwrap_err();
        assert_eq!(e.key, "wecom[1].follow", "{e}");
        assert!(two(true, true, "\"jsapi\"").is_ok());
        assert!(two(false, false, "\"jsapi\"").is_ok());
        // Without the shared ticket, each agent's own token may follow alone.
        assert!(two(true, false, "").is_ok());
    }
}
