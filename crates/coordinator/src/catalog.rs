//! The credentials one replica keeps ([`Catalog`]): those of the config,
//! built once through `kind::CATALOG`, and the authorizers registered at
//! run time (SPEC §9), looked up by id and slot without allocating (the
//! HTTP read path does this on every request).
//!
//! It owns lookups only; what a credential does is its kind's business,
//! and which authorizers exist is the registry's (`platform`).

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use wxtoken_common::{CredentialId, CredentialRef, Slot};

use crate::config::{ComponentConfig, Config};
use crate::kind::{self, AuthorizerToken, Credential, Family};

/// Every credential of a config, by id and slot, and the authorizers.
#[derive(Debug, Default)]
pub struct Catalog {
    all: Vec<Arc<Credential>>,
    /// Per id, the index into `all` of each slot it has.
    by_id: HashMap<CredentialId, [Option<usize>; Slot::ALL.len()]>,
    /// The components of the config, which authorizers are built from.
    components: HashMap<CredentialId, ComponentConfig>,
    base_url: String,
    /// Authorizers (access tokens only), registered at run time.
    authorizers: DashMap<CredentialId, Arc<Credential>>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Self {
        let mut catalog = Self::new(kind::credentials(config));
        catalog.components = config
            .components
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        catalog.base_url = config.upstream.base_url.clone();
        catalog
    }

    pub fn new(all: Vec<Arc<Credential>>) -> Self {
        let mut by_id: HashMap<CredentialId, [Option<usize>; Slot::ALL.len()]> = HashMap::new();
        for (i, cred) in all.iter().enumerate() {
            by_id.entry(cred.cref.id.clone()).or_default()[cred.cref.slot.index()] = Some(i);
        }
        Self {
            all,
            by_id,
            ..Self::default()
        }
    }

    /// `id`'s credential in `slot`, looked up by `&str` (no allocation).
    pub fn find(&self, id: &str, slot: Slot) -> Option<Arc<Credential>> {
        if let Some(i) = self.by_id.get(id).and_then(|slots| slots[slot.index()]) {
            return self.all.get(i).cloned();
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
    pub fn component(&self, id: &str) -> Option<&ComponentConfig> {
        self.components.get(id)
    }

    pub fn components(&self) -> impl Iterator<Item = &ComponentConfig> {
        self.components.values()
    }

    /// The credential of `appid` under `component`, added if new (the same
    /// `Arc` when it is already kept). `Err` names what is wrong.
    pub fn add_authorizer(
        &self,
        component: &CredentialId,
        appid: &str,
    ) -> Result<(Arc<Credential>, bool), String> {
        let config = self
            .components
            .get(component)
            .ok_or_else(|| format!("no component {component}"))?;
        let id = kind::authorizer_id(component, appid)?;
        if let Some(known) = self.authorizers.get(&id) {
            return Ok((known.value().clone(), false));
        }
        let cred = Arc::new(AuthorizerToken::credential(config, appid, &self.base_url)?);
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
        let config = self.components.get(&component)?;
        AuthorizerToken::credential(config, appid, &self.base_url)
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

    /// The configured credentials (authorizers are not listed: there may
    /// be 100 000 of them; the registry pages through them).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.all.iter()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Every known id, for error messages.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.by_id.keys().map(CredentialId::as_str).collect();
        ids.sort_unstable();
        ids
    }
}
