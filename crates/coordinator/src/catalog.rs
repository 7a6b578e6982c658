//! The credentials one replica keeps ([`Catalog`]): those of the config,
//! built once through `kind::CATALOG`, and the authorizers registered at
//! run time (SPEC §9), looked up by id and slot without allocating (the
//! HTTP read path does this on every request).
//!
//! It owns lookups only; what a credential does is its kind's business,
//! and which authorizers exist is the registry's (`platform`).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use wxtoken_common::{CredentialId, CredentialRef, Slot};

use crate::config::{ComponentConfig, Config};
use crate::kind::{self, AuthorizerToken, Credential, Family};

/// The configured credentials of one config, by id and slot: swapped whole
/// when the config is reloaded, so a lookup sees one config or the next.
#[derive(Debug, Default)]
pub struct Configured {
    all: Vec<Arc<Credential>>,
    /// Per id, the index into `all` of each slot it has.
    by_id: HashMap<CredentialId, [Option<usize>; Slot::ALL.len()]>,
    /// The components of the config, which authorizers are built from.
    components: HashMap<CredentialId, ComponentConfig>,
}

impl Configured {
    fn new(all: Vec<Arc<Credential>>) -> Self {
        let mut by_id: HashMap<CredentialId, [Option<usize>; Slot::ALL.len()]> = HashMap::new();
        for (i, cred) in all.iter().enumerate() {
            by_id.entry(cred.cref.id.clone()).or_default()[cred.cref.slot.index()] = Some(i);
        }
        Self {
            all,
            by_id,
            components: HashMap::new(),
        }
    }

    fn of(config: &Config) -> Self {
        let mut c = Self::new(kind::credentials(config));
        c.components = config
            .components
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        c
    }

    fn find(&self, id: &str, slot: Slot) -> Option<&Arc<Credential>> {
        let i = self.by_id.get(id).and_then(|slots| slots[slot.index()])?;
        self.all.get(i)
    }

    /// The configured credentials, ordered by id and slot.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.all.iter()
    }
}

/// Every credential of a config, by id and slot, and the authorizers.
#[derive(Debug, Default)]
pub struct Catalog {
    configured: ArcSwap<Configured>,
    base_url: String,
    /// Authorizers (access tokens only), registered at run time.
    authorizers: DashMap<CredentialId, Arc<Credential>>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Self {
        Self {
            configured: ArcSwap::from_pointee(Configured::of(config)),
            base_url: config.upstream.base_url.clone(),
            authorizers: DashMap::new(),
        }
    }

    pub fn new(all: Vec<Arc<Credential>>) -> Self {
        Self {
            configured: ArcSwap::from_pointee(Configured::new(all)),
            ..Self::default()
        }
    }

    /// Swaps in the credentials of `config` (a reload); returns the set it
    /// replaced. Authorizers are kept: the registry owns them.
    pub fn replace(&self, config: &Config) -> Arc<Configured> {
        self.configured.swap(Arc::new(Configured::of(config)))
    }

    /// The configured credentials now (one config, even across a reload).
    pub fn configured(&self) -> Arc<Configured> {
        self.configured.load_full()
    }

    /// `id`'s credential in `slot`, looked up by `&str` (no allocation).
    pub fn find(&self, id: &str, slot: Slot) -> Option<Arc<Credential>> {
        if let Some(cred) = self.configured.load().find(id, slot) {
            return Some(cred.clone());
        }
        if slot != Slot::AccessToken {
            return None;
        }
        self.authorizers.get(id).map(|c| c.value().clone())
    }

    pub fn get(&self, cref: &CredentialRef) -> Option<Arc<Credential>> {
        self.find(cref.id.as_str(), cref.slot)
    }

    /// WeChat's API base (authorizers are built with it).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A configured component.
    pub fn component(&self, id: &str) -> Option<ComponentConfig> {
        self.configured.load().components.get(id).cloned()
    }

    /// Where a configured component is followed from (`follow.url`), if it
    /// is; no copy of its config.
    pub fn component_followed_from(&self, id: &str) -> Option<String> {
        let configured = self.configured.load();
        Some(configured.components.get(id)?.follow.as_ref()?.url.clone())
    }

    /// The ids of the configured components now.
    pub fn component_ids(&self) -> Vec<CredentialId> {
        self.configured.load().components.keys().cloned().collect()
    }

    /// The configured components now.
    pub fn components(&self) -> Vec<ComponentConfig> {
        self.configured
            .load()
            .components
            .values()
            .cloned()
            .collect()
    }

    /// The credential of `appid` under `component`, added if new (the same
    /// `Arc` when it is already kept). `Err` names what is wrong.
    pub fn add_authorizer(
        &self,
        component: &CredentialId,
        appid: &str,
    ) -> Result<(Arc<Credential>, bool), String> {
        let config = self
            .component(component.as_str())
            .ok_or_else(|| format!("no component {component}"))?;
        let id = kind::authorizer_id(component, appid)?;
        if let Some(known) = self.authorizers.get(&id) {
            return Ok((known.value().clone(), false));
        }
        let cred = Arc::new(AuthorizerToken::credential(&config, appid, &self.base_url)?);
        let entry = self.authorizers.entry(id).or_insert(cred.clone());
        let added = Arc::ptr_eq(entry.value(), &cred);
        Ok((entry.value().clone(), added))
    }

    /// Forgets an authorizer (revoked); returns it if it was kept.
    pub fn remove_authorizer(&self, id: &CredentialId) -> Option<Arc<Credential>> {
        self.authorizers.remove(id).map(|(_, c)| c)
    }

    /// An authorizer id of a configured component (`open1.wx…`) as a
    /// credential, whether or not this catalog keeps it yet (the CLI).
    pub fn authorizer_by_id(&self, id: &str) -> Option<Arc<Credential>> {
        let (component, appid) = id.split_once('.')?;
        let component = CredentialId::parse(component).ok()?;
        let config = self.component(component.as_str())?;
        AuthorizerToken::credential(&config, appid, &self.base_url)
            .ok()
            .map(Arc::new)
    }

    /// How many authorizers this replica keeps.
    pub fn authorizer_count(&self) -> usize {
        self.authorizers.len()
    }

    /// The authorizers kept now whose id starts with `prefix`, by id (the
    /// status page pages through them).
    pub fn authorizers_with_prefix(&self, prefix: &str) -> Vec<Arc<Credential>> {
        let mut found: Vec<Arc<Credential>> = self
            .authorizers
            .iter()
            .filter(|e| e.key().as_str().starts_with(prefix))
            .map(|e| e.value().clone())
            .collect();
        found.sort_unstable_by(|a, b| a.cref.id.as_str().cmp(b.cref.id.as_str()));
        found
    }

    /// Whether `id` names any credential, and which family it is.
    pub fn family(&self, id: &str) -> Option<Family> {
        self.find(id, Slot::AccessToken)
            .map(|c| c.kind.describe().family)
    }

    /// The configured credentials now (authorizers are not listed: there
    /// may be 100 000 of them; the registry pages through them).
    pub fn iter(&self) -> std::vec::IntoIter<Arc<Credential>> {
        self.configured.load().all.clone().into_iter()
    }

    pub fn len(&self) -> usize {
        self.configured.load().all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every known id, for error messages.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .configured
            .load()
            .by_id
            .keys()
            .map(|id| id.as_str().to_owned())
            .collect();
        ids.sort_unstable();
        ids
    }
}
