//! The credentials one replica keeps ([`Catalog`]): built once from the
//! config through `kind::CATALOG`, looked up by id and slot without
//! allocating (the HTTP read path does this on every request).
//!
//! It owns lookups only; what a credential does is its kind's business.

use std::collections::HashMap;
use std::sync::Arc;

use wxtoken_common::{CredentialId, CredentialRef, Slot};

use crate::config::Config;
use crate::kind::{self, Credential, Family};

/// Every credential of a config, by id and slot.
#[derive(Debug, Default)]
pub struct Catalog {
    all: Vec<Arc<Credential>>,
    /// Per id, the index into `all` of each slot it has.
    by_id: HashMap<CredentialId, [Option<usize>; Slot::ALL.len()]>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Self {
        Self::new(kind::credentials(config))
    }

    pub fn new(all: Vec<Arc<Credential>>) -> Self {
        let mut by_id: HashMap<CredentialId, [Option<usize>; Slot::ALL.len()]> = HashMap::new();
        for (i, cred) in all.iter().enumerate() {
            by_id.entry(cred.cref.id.clone()).or_default()[cred.cref.slot.index()] = Some(i);
        }
        Self { all, by_id }
    }

    /// `id`'s credential in `slot`, looked up by `&str` (no allocation).
    pub fn find(&self, id: &str, slot: Slot) -> Option<&Arc<Credential>> {
        let i = self.by_id.get(id)?[slot.index()]?;
        self.all.get(i)
    }

    pub fn get(&self, cref: &CredentialRef) -> Option<&Arc<Credential>> {
        self.find(cref.id.as_str(), cref.slot)
    }

    /// Whether `id` names any credential, and which family it is.
    pub fn family(&self, id: &str) -> Option<Family> {
        self.find(id, Slot::AccessToken)
            .map(|c| c.kind.describe().family)
    }

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
