//! The config a running replica serves, reloaded on SIGHUP and when its
//! file (or a secret file it names) changes (SPEC §11).
//!
//! A reload validates the whole file first; a file that does not load is
//! refused with the offending key and the running config stays. A valid one
//! is applied in place: credentials (apps, their tickets, WeCom agents,
//! components) added, removed or changed — a changed secret included — and
//! the API keys, with no request dropped: lookups swap whole sets, and the
//! refresh schedule gains, loses or re-arms one credential at a time.
//! Settings a running replica cannot change (the Redis connection, listen
//! addresses, refresh timing, the gateway's client) are logged as needing a
//! restart and keep their running values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use wxtoken_common::{CredentialId, CredentialRef};

use crate::catalog::Catalog;
use crate::config::{Config, ConfigError, SecretRef};
use crate::follow::Keepers;
use crate::http::HttpState;
use crate::http::reload::{Reloadable, modified};
use crate::refresher::Refresher;

/// What one reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<CredentialRef>,
    pub removed: Vec<CredentialRef>,
    /// Same credential, new definition (a secret, an appid, its API).
    pub changed: Vec<CredentialRef>,
    /// Sections that changed but take effect only on restart.
    pub need_restart: Vec<&'static str>,
}

/// The config in force, and the parts of the replica it is applied to.
pub struct LiveConfig {
    path: Option<PathBuf>,
    current: Mutex<Config>,
    generation: AtomicU64,
    digest: Mutex<String>,
    catalog: Arc<Catalog>,
    keepers: Keepers,
    refresher: Arc<Refresher>,
    http: HttpState,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl LiveConfig {
    /// `config` as loaded from `path` (`None`: nothing to re-read; reloads
    /// come only through [`LiveConfig::apply`]).
    pub fn new(
        path: Option<PathBuf>,
        config: &Config,
        catalog: Arc<Catalog>,
        keepers: Keepers,
        refresher: Arc<Refresher>,
        http: HttpState,
    ) -> Self {
        Self {
            path,
            current: Mutex::new(config.clone()),
            generation: AtomicU64::new(1),
            digest: Mutex::new(digest(config)),
            catalog,
            keepers,
            refresher,
            http,
        }
    }

    /// 1 at start, one more per applied reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A short digest of the config in force (equal on replicas that run
    /// the same file with the same secrets).
    pub fn digest(&self) -> String {
        lock(&self.digest).clone()
    }

    /// Applies `next` (already loaded and validated). On a key error
    /// nothing changes.
    pub fn apply(&self, next: Config) -> Result<Changes, ConfigError> {
        let mut current = lock(&self.current);
        let mut changes = Changes {
            need_restart: need_restart(&current, &next, self.http.platform.is_some()),
            ..Changes::default()
        };
        // The only fallible step first: a key file that does not load
        // refuses the whole reload.
        self.http.keys.replace_config(&next)?;
        let (before, after) = (definitions(&current), definitions(&next));
        let old = self.catalog.replace(&next);
        self.http.replace_credentials(&next);
        let kept: HashMap<&CredentialRef, _> = old.iter().map(|c| (&c.cref, c)).collect();
        let now = self.catalog.configured();
        for cred in now.iter() {
            let id = &cred.cref.id;
            match kept.get(&cred.cref) {
                None => changes.added.push(cred.cref.clone()),
                Some(_) if before.get(id) == after.get(id) => continue,
                Some(_) => {
                    self.keepers.forget(&cred.cref);
                    changes.changed.push(cred.cref.clone());
                }
            }
            self.keepers.keep(cred.clone());
        }
        self.lift_gates(
            changes
                .added
                .iter()
                .chain(&changes.changed)
                .cloned()
                .collect(),
        );
        for cred in old.iter() {
            if self.catalog.get(&cred.cref).is_none() {
                self.keepers.forget(&cred.cref);
                changes.removed.push(cred.cref.clone());
            }
        }
        crate::metrics::set_per_app(self.catalog.len() <= current.http.per_app_metrics_limit);
        // The generation counts configs, not reloads: the same file read
        // again (a SIGHUP after the file watch caught the change) is no new one.
        let next_digest = digest(&next);
        let mut digest_now = lock(&self.digest);
        if *digest_now != next_digest {
            *digest_now = next_digest;
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            self.http
                .config_generation
                .store(generation, Ordering::Release);
            crate::metrics::config_generation(generation);
        }
        *current = next;
        Ok(changes)
    }
}

impl LiveConfig {
    /// A new or changed credential gets a turn now, fleet-wide: a back-off
    /// its old definition earned (a fatal 40125 of a rotated secret holds
    /// for `fatal_cooldown`) is lifted. Every replica that applies the new
    /// config does it; it is idempotent.
    fn lift_gates(&self, crefs: Vec<CredentialRef>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if crefs.is_empty() {
            return;
        }
        let store = self.refresher.store().clone();
        // Once now, and once more when every attempt that was in flight
        // with the old definition has ended (a fetch lasts at most the
        // upstream timeout): such an attempt's fatal failure (the old, wrong
        // secret) would otherwise gate the new definition for
        // `fatal_cooldown` (seen: 3.97 s instead of ~1 s in the e2e reload
        // test). At most one extra attempt if the new definition fails too.
        let settle = self.refresher.settings().upstream_timeout * 2 + Duration::from_millis(200);
        runtime.spawn(async move {
            for round in 0..2 {
                if round == 1 {
                    tokio::time::sleep(settle).await;
                }
                for cref in &crefs {
                    if let Err(e) = store.lift_gate(cref).await {
                        warn!(credential = %cref, error = %e, "could not lift the back-off of a changed credential");
                    }
                }
            }
        });
    }
}

impl Reloadable for LiveConfig {
    fn what(&self) -> &'static str {
        "config"
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let mut out = vec![modified(path)];
        out.extend(
            secret_files(&lock(&self.current))
                .iter()
                .map(|p| modified(p)),
        );
        out
    }

    fn reload(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let next =
            Config::load(Some(path)).inspect_err(|_| crate::metrics::config_reload("refused"))?;
        let changes = self
            .apply(next)
            .inspect_err(|_| crate::metrics::config_reload("refused"))?;
        crate::metrics::config_reload("applied");
        let names = |v: &[CredentialRef]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        info!(
            generation = self.generation(),
            added = ?names(&changes.added),
            removed = ?names(&changes.removed),
            changed = ?names(&changes.changed),
            "config applied"
        );
        for section in &changes.need_restart {
            warn!(
                key = section,
                "config key changed; it takes effect on restart (the running value stays)"
            );
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sections of `next` that differ from `current` and a running replica
/// cannot take.
fn need_restart(current: &Config, next: &Config, has_platform: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if current.redis != next.redis {
        out.push("redis");
    }
    if current.refresh != next.refresh {
        out.push("refresh");
    }
    if current.upstream != next.upstream {
        out.push("upstream");
    }
    if current.gateway != next.gateway {
        out.push("gateway");
    }
    let state_key = |c: &Config| {
        c.security
            .state_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
    };
    if state_key(current) != state_key(next) {
        out.push("security.state_key");
    }
    let (mut a, mut b) = (current.http.clone(), next.http.clone());
    for h in [&mut a, &mut b] {
        h.keys.clear();
        h.keys_file = None;
        h.api_keys = None;
    }
    if a != b {
        out.push("http");
    }
    if !has_platform && !next.components.is_empty() {
        out.push("components (the open platform's event URL and registry start on restart)");
    }
    out
}

/// Per configured id, a digest of its whole definition, secrets included
/// (never shown: it only tells changed from unchanged).
fn definitions(config: &Config) -> HashMap<CredentialId, [u8; 32]> {
    let mut out = HashMap::new();
    let mut put = |id: &CredentialId, entry: String, secrets: &[&str]| {
        let mut h = Sha256::new();
        h.update(entry.as_bytes());
        for s in secrets {
            h.update([0]);
            h.update(s.as_bytes());
        }
        out.insert(id.clone(), h.finalize().into());
    };
    fn opt(s: Option<&secrecy::SecretString>) -> &str {
        s.map_or("", |s| s.expose_secret())
    }
    for a in &config.apps {
        let secrets = [
            opt(a.secret.as_ref()),
            opt(a.compat_secret.as_ref()),
            opt(a.follow.as_ref().map(|f| &f.key)),
        ];
        put(&a.id, json(a), &secrets);
    }
    for w in &config.wecom {
        let secrets = [
            opt(w.secret.as_ref()),
            opt(w.follow.as_ref().map(|f| &f.key)),
        ];
        put(&w.id, json(w), &secrets);
    }
    for c in &config.components {
        let secrets = [
            opt(c.secret.as_ref()),
            opt(c.token.as_ref()),
            opt(c.encoding_aes_key.as_ref()),
            opt(c.follow.as_ref().map(|f| &f.key)),
        ];
        put(&c.id, json(c), &secrets);
    }
    out
}

fn json(entry: &impl serde::Serialize) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

/// The digest operators compare across replicas: the redacted config and
/// every credential's definition, 12 hex digits.
fn digest(config: &Config) -> String {
    // What differs by design between replicas of one fleet (each one's id
    // and listen address, often set by environment) is not the config.
    let mut shared = config.clone();
    shared.refresh.replica_id = None;
    shared.http.listen = ([0, 0, 0, 0], 0).into();
    shared.http.metrics_listen = None;
    let mut h = Sha256::new();
    h.update(shared.redacted_toml().as_bytes());
    let mut defs: Vec<_> = definitions(config).into_iter().collect();
    defs.sort();
    for (id, d) in defs {
        h.update(id.as_str().as_bytes());
        h.update(d);
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret files the config reads (a changed one is a reload).
fn secret_files(config: &Config) -> Vec<&Path> {
    fn file(r: &SecretRef) -> Option<&Path> {
        match r {
            SecretRef::File(p) => Some(p.as_path()),
            SecretRef::Env(_) => None,
        }
    }
    let mut out = Vec::new();
    for a in &config.apps {
        out.extend(a.secret_ref.as_ref().and_then(file));
        out.extend(a.compat_secret_ref.as_ref().and_then(file));
        out.extend(a.follow.as_ref().and_then(|f| file(&f.key_ref)));
    }
    for w in &config.wecom {
        out.extend(w.secret_ref.as_ref().and_then(file));
        out.extend(w.follow.as_ref().and_then(|f| file(&f.key_ref)));
    }
    for c in &config.components {
        out.extend(
            [&c.secret_ref, &c.token_ref, &c.encoding_aes_key_ref]
                .into_iter()
                .filter_map(|r| r.as_ref().and_then(file)),
        );
        out.extend(c.follow.as_ref().and_then(|f| file(&f.key_ref)));
    }
    out
}
