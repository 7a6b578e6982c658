//! Who may call what (SPEC §10): the live key set — Part I's `api_keys`
//! (all access) and scoped `[[http.keys]]` / `keys_file` entries. The
//! [`ApiKey`] extractor checks a request's key against the permission its
//! route needs (`permissions.rs`) for every JSON and gateway route, so no
//! handler decides access itself.
//!
//! Keys are compared in constant time (a hashed key by its SHA-256); the
//! set is swapped whole on reload ([`KeyStore::reload`]): a request sees
//! the old set or the new one, never a mix, and none is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::HttpState;
use super::error::ApiFailure;
pub use super::permissions::{Need, need};
use super::permissions::{glob, path_glob};
use crate::config::keys::{KeyEntry, read_key_file};
use crate::config::{Config, ConfigError, Env, SecretRef};

/// One scoped key, resolved.
struct Scoped {
    /// Shared by every request it admits (the audit log and metrics name it).
    name: Arc<str>,
    secret: Option<SecretString>,
    sha256: Option<[u8; 32]>,
    ids: Vec<String>,
    allow: Vec<String>,
    limiter: Option<DefaultDirectRateLimiter>,
    client_cn: Option<String>,
}

impl Scoped {
    fn matches(&self, given: &str, given_sha: &[u8; 32]) -> bool {
        match (&self.secret, &self.sha256) {
            (Some(s), _) => given.as_bytes().ct_eq(s.expose_secret().as_bytes()).into(),
            (None, Some(h)) => given_sha.ct_eq(h).into(),
            (None, None) => false,
        }
    }

    fn permits(&self, need: Need<'_>, id: Option<&str>) -> bool {
        if let Some(id) = id
            && !self.ids.iter().any(|g| glob(g, id))
        {
            return false;
        }
        self.allow.iter().any(|a| match need {
            _ if a == "*" => true,
            Need::Op(op) => a == op,
            Need::Proxy(path) => a
                .strip_prefix("proxy:")
                .is_some_and(|g| g == "*" || path_glob(g, path)),
        })
    }
}

/// The keys one replica accepts now.
pub struct KeySet {
    all_access: Vec<SecretString>,
    /// `api_keys#0`, `api_keys#1`, …: the names of `all_access`.
    all_access_names: Vec<Arc<str>>,
    scoped: Vec<Scoped>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.scoped.iter().map(|k| &*k.name).collect();
        f.debug_struct("KeySet")
            .field("all_access", &self.all_access.len())
            .field("scoped", &names)
            .finish()
    }
}

impl KeySet {
    fn build(
        all_access: Vec<SecretString>,
        entries: &[KeyEntry],
        env: &Env,
    ) -> Result<Self, ConfigError> {
        let mut scoped = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let secret = match &e.key {
                Some(r) => Some(
                    r.resolve(env)
                        .map_err(|m| ConfigError::new(format!("http.keys[{i}].key"), m))?,
                ),
                None => None,
            };
            let sha256 = e.sha256.as_deref().and_then(|h| {
                let mut out = [0_u8; 32];
                for (j, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(h.get(2 * j..2 * j + 2)?, 16).ok()?;
                }
                Some(out)
            });
            let limiter = e
                .per_second
                .and_then(std::num::NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n)));
            scoped.push(Scoped {
                name: e.name.as_str().into(),
                secret,
                sha256,
                ids: e.ids.clone(),
                allow: e.allow.clone(),
                limiter,
                client_cn: e.client_cn.clone(),
            });
        }
        let all_access_names = (0..all_access.len())
            .map(|i| format!("api_keys#{i}").into())
            .collect();
        Ok(Self {
            all_access,
            all_access_names,
            scoped,
        })
    }

    /// Part I's all-access keys (also the stand-in secret of authorizers on
    /// the compatible `/cgi-bin/token`).
    pub fn all_access(&self) -> &[SecretString] {
        &self.all_access
    }

    fn is_empty(&self) -> bool {
        self.all_access.is_empty() && self.scoped.is_empty()
    }

    /// The caller's key name if `given` may do `need` on `id`.
    pub(super) fn admit(
        &self,
        given: &str,
        need: Need<'_>,
        id: Option<&str>,
    ) -> Result<Arc<str>, ApiFailure> {
        if self.is_empty() {
            return Err(ApiFailure::ApiClosed);
        }
        // Every key is compared, without stopping at the first match.
        let mut all = None;
        for (i, k) in self.all_access.iter().enumerate() {
            let hit: bool = given.as_bytes().ct_eq(k.expose_secret().as_bytes()).into();
            if hit && all.is_none() {
                all = Some(i);
            }
        }
        if let Some(i) = all {
            return Ok(self.all_access_names[i].clone());
        }
        let sha: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let mut found = None;
        for k in &self.scoped {
            if k.matches(given, &sha) && found.is_none() {
                found = Some(k);
            }
        }
        Self::grant(found.ok_or(ApiFailure::Forbidden)?, need, id)
    }

    /// The key a verified client certificate with subject `cn` stands for
    /// (`client_cn`), if it may do `need` on `id`.
    fn admit_cert(
        &self,
        cn: &str,
        need: Need<'_>,
        id: Option<&str>,
    ) -> Result<Arc<str>, ApiFailure> {
        let key = self
            .scoped
            .iter()
            .find(|k| k.client_cn.as_deref() == Some(cn))
            .ok_or_else(|| {
                ApiFailure::NotAllowed(format!("no key stands for client certificate {cn:?}"))
            })?;
        Self::grant(key, need, id)
    }

    fn grant(key: &Scoped, need: Need<'_>, id: Option<&str>) -> Result<Arc<str>, ApiFailure> {
        if !key.permits(need, id) {
            let what = match need {
                Need::Op(op) => op.to_owned(),
                Need::Proxy(path) => format!("proxy:/{path}"),
            };
            return Err(ApiFailure::NotAllowed(format!(
                "key {:?} may not {what}{}",
                key.name,
                id.map_or_else(String::new, |id| format!(" for {id}"))
            )));
        }
        if let Some(l) = &key.limiter
            && l.check().is_err()
        {
            return Err(ApiFailure::RateLimited(key.name.to_string()));
        }
        Ok(key.name.clone())
    }
}

/// Where keys come from, and the set now in force.
pub struct KeyStore {
    current: ArcSwap<KeySet>,
    /// Where the keys come from; replaced by a config reload.
    sources: ArcSwap<Sources>,
}

/// The config's key sources: `api_keys`, inline `[[http.keys]]`, `keys_file`.
#[derive(Debug)]
struct Sources {
    api_keys: Option<SecretRef>,
    inline: Vec<KeyEntry>,
    keys_file: Option<PathBuf>,
}

impl Sources {
    fn of(config: &Config) -> Self {
        Self {
            api_keys: config.http.api_keys.clone(),
            inline: config.http.keys.clone(),
            keys_file: config.http.keys_file.clone(),
        }
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("current", &self.current.load())
            .field("keys_file", &self.sources.load().keys_file)
            .finish()
    }
}

impl KeyStore {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let sources = Sources::of(config);
        let first = Self::read(&sources, Some(config.api_keys.clone()), None)?;
        Ok(Self {
            current: ArcSwap::from_pointee(first),
            sources: ArcSwap::from_pointee(sources),
        })
    }

    /// Takes the key sources of a reloaded `config` (its `api_keys` as it
    /// resolved them); on error nothing changes.
    pub fn replace_config(&self, config: &Config) -> Result<(), ConfigError> {
        let sources = Sources::of(config);
        let next = Self::read(&sources, Some(config.api_keys.clone()), None)?;
        self.sources.store(Arc::new(sources));
        self.current.store(Arc::new(next));
        Ok(())
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    fn read(
        sources: &Sources,
        all_access: Option<Vec<SecretString>>,
        current: Option<&KeySet>,
    ) -> Result<KeySet, ConfigError> {
        let env = Env::process();
        // A file is read again; an environment variable cannot change under
        // a running process, so its keys stay those read at start.
        let all_access = match (all_access, &sources.api_keys) {
            (Some(keys), _) => keys,
            (None, Some(r @ SecretRef::File(_))) => r
                .resolve_list(&env)
                .map_err(|m| ConfigError::new("http.api_keys", m))?,
            (None, Some(SecretRef::Env(_))) => {
                current.map(|c| c.all_access.clone()).unwrap_or_default()
            }
            (None, None) => Vec::new(),
        };
        let mut entries = sources.inline.clone();
        if let Some(path) = &sources.keys_file {
            entries.extend(read_key_file(path)?);
        }
        crate::config::keys::validate_all(&entries, "keys")?;
        KeySet::build(all_access, &entries, &env)
    }

    /// Reads every source again and swaps the set in; on error the old set
    /// stays in force and the error (naming the key at fault) is returned.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let next = Self::read(&self.sources.load(), None, Some(&self.current.load()))?;
        self.current.store(Arc::new(next));
        Ok(())
    }
}

impl super::reload::Reloadable for KeyStore {
    fn what(&self) -> &'static str {
        "API keys"
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        use super::reload::modified;
        let sources = self.sources.load();
        let mut out = vec![sources.keys_file.as_deref().and_then(modified)];
        if let Some(SecretRef::File(p)) = &sources.api_keys {
            out.push(modified(p));
        }
        out
    }

    fn reload(&self) -> Result<(), ConfigError> {
        KeyStore::reload(self)
    }
}

/// Reloads the key set on SIGHUP and when a key file changes (checked
/// every second), until `stop` turns true. A bad file is refused with the
/// offending key logged; the old set stays in force.
pub async fn watch(state: HttpState, stop: tokio::sync::watch::Receiver<bool>) {
    super::reload::watch(&state.keys, stop).await;
}

/// Extractor: the request carries a key that may use this route (for its
/// `{id}` and, on the gateway, its API path). Holds the key's name.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: Arc<str>,
}

impl ApiKey {
    /// The key of a request for `need` on `id`: its bearer key, or the key
    /// its verified client certificate stands for (`cert`). What the
    /// extractor and the gateway's own path both check.
    pub(super) fn admit(
        state: &HttpState,
        headers: &HeaderMap,
        cert: Option<&ClientCert>,
        need: Need<'_>,
        id: Option<&str>,
    ) -> Result<Self, ApiFailure> {
        let keys = state.keys.current();
        if keys.is_empty() {
            return Err(ApiFailure::ApiClosed);
        }
        let name = match (bearer(headers), cert) {
            (Some(given), _) => keys.admit(given, need, id)?,
            (None, Some(ClientCert(cn))) => keys.admit_cert(cn, need, id)?,
            (None, None) => return Err(ApiFailure::Unauthorized),
        };
        Ok(Self { name })
    }
}

/// The subject CN of the client certificate the connection was verified
/// with (`[http] tls_client_ca`), set by the listener.
#[derive(Debug, Clone)]
pub struct ClientCert(pub Arc<str>);

/// `Authorization: Bearer <key>`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

impl FromRequestParts<HttpState> for ApiKey {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiFailure> {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let params = RawPathParams::from_request_parts(parts, state).await.ok();
        let param = |name: &str| {
            params.as_ref().and_then(|p| {
                p.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
            })
        };
        let (id, path) = (param("id"), param("path"));
        let need = need(&parts.method, &route, path.as_deref());
        let cert = parts.extensions.get::<ClientCert>();
        Self::admit(state, &parts.headers, cert, need, id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[KeyEntry]) -> KeySet {
        KeySet::build(vec![SecretString::from("all")], entries, &Env::process()).unwrap()
    }

    fn scoped(name: &str, value: &str, ids: &[&str], allow: &[&str]) -> KeyEntry {
        let sha: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        KeyEntry {
            name: name.into(),
            key: None,
            sha256: Some(sha.iter().map(|b| format!("{b:02x}")).collect()),
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            per_second: None,
            client_cn: None,
        }
    }

    #[test]
    fn scoped_keys_get_what_they_are_allowed_and_nothing_else() {
        let s = set(&[scoped(
            "orders",
            "k-orders",
            &["shop"],
            &["token:read", "proxy:/cgi-bin/message/*"],
        )]);
        let read = Need::Op("token:read");
        assert_eq!(s.admit("all", read, Some("other")), Ok("api_keys#0".into()));
        assert_eq!(s.admit("k-orders", read, Some("shop")), Ok("orders".into()));
        assert!(matches!(
            s.admit("k-orders", read, Some("b")),
            Err(ApiFailure::NotAllowed(_))
        ));
        let inv = Need::Op("token:invalidate");
        assert!(matches!(
            s.admit("k-orders", inv, Some("shop")),
            Err(ApiFailure::NotAllowed(_))
        ));
        let send = Need::Proxy("cgi-bin/message/custom/send");
        assert!(s.admit("k-orders", send, Some("shop")).is_ok());
        let upload = Need::Proxy("cgi-bin/media/upload");
        assert!(matches!(
            s.admit("k-orders", upload, Some("shop")),
            Err(ApiFailure::NotAllowed(_))
        ));
        assert_eq!(
            s.admit("nope", read, Some("shop")),
            Err(ApiFailure::Forbidden)
        );
    }
}
