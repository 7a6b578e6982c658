//! `vault`: the secrets the fleet keeps in Redis that readers must never
//! see and that cannot be fetched again by any call — authorizers' refresh
//! tokens and components' verify tickets (SPEC §9) — sealed at rest
//! (`sealed.rs`) and read and written through [`Vault`].
//!
//! Every replica also keeps the last verify ticket it saw of each component
//! in memory: after Redis loses its data, the chain goes on with it instead
//! of waiting up to 10 minutes for WeChat's next push.

mod sealed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use tracing::warn;
use wxtoken_common::CredentialId;

use crate::store::{StoreError, TokenStore};

pub use sealed::{OpenError, Sealer, StateKey};

/// Sealed secrets in Redis, for one replica.
#[derive(Debug, Clone)]
pub struct Vault {
    store: TokenStore,
    sealer: Sealer,
    /// The last verify ticket seen per component (opened).
    tickets: Arc<Mutex<HashMap<CredentialId, SecretString>>>,
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored value does not open: {0}")]
    Open(#[from] OpenError),
}

impl Vault {
    pub fn new(store: TokenStore, sealer: Sealer) -> Self {
        Self {
            store,
            sealer,
            tickets: Arc::default(),
        }
    }

    /// Whether values are sealed (a `[security] state_key` is configured).
    pub fn seals(&self) -> bool {
        self.sealer.seals()
    }

    /// The latest verify ticket of `component`: Redis' (remembered here),
    /// or, when Redis has none (it lost its data), the one this replica
    /// remembers, put back so the other replicas have it too.
    pub async fn verify_ticket(
        &self,
        component: &CredentialId,
    ) -> Result<Option<SecretString>, VaultError> {
        let key = self.store.verify_ticket_key(component);
        if let Some(stored) = self.store.verify_ticket(component).await? {
            let ticket = self.sealer.open(&key, &stored)?;
            self.remember(component, &ticket);
            return Ok(Some(ticket));
        }
        let Some(known) = self.remembered(component) else {
            return Ok(None);
        };
        if self
            .store
            .restore_verify_ticket(component, &self.sealer.seal(&key, &known))
            .await?
        {
            warn!(component = %component, "Redis had no verify ticket: put back the one this replica last saw");
        }
        Ok(Some(known))
    }

    /// Stores a pushed verify ticket (the latest push wins).
    pub async fn set_verify_ticket(
        &self,
        component: &CredentialId,
        ticket: &SecretString,
    ) -> Result<(), StoreError> {
        let key = self.store.verify_ticket_key(component);
        self.store
            .set_verify_ticket(component, &self.sealer.seal(&key, ticket))
            .await?;
        self.remember(component, ticket);
        Ok(())
    }

    /// An authorizer's refresh token, if the fleet has one.
    pub async fn refresh_token(
        &self,
        id: &CredentialId,
    ) -> Result<Option<SecretString>, VaultError> {
        let key = self.store.refresh_token_key(id);
        match self.store.refresh_token(id).await? {
            Some(stored) => Ok(Some(self.sealer.open(&key, &stored)?)),
            None => Ok(None),
        }
    }

    /// Whether a refresh token is stored for `id` (one GET; not opened).
    pub async fn has_refresh_token(&self, id: &CredentialId) -> Result<bool, StoreError> {
        Ok(self.store.refresh_token(id).await?.is_some())
    }

    /// `(key, sealed value)` of a refresh token, for the fenced commit that
    /// stores it with the access token it came with.
    pub fn sealed_refresh_token(
        &self,
        id: &CredentialId,
        value: &SecretString,
    ) -> (String, String) {
        let key = self.store.refresh_token_key(id);
        let sealed = self.sealer.seal(&key, value);
        (key, sealed)
    }

    /// Stores a refresh token learnt outside a refresh (registration,
    /// import, recovery).
    pub async fn set_refresh_token(
        &self,
        id: &CredentialId,
        value: &SecretString,
    ) -> Result<(), StoreError> {
        let (_, sealed) = self.sealed_refresh_token(id, value);
        self.store.set_refresh_token(id, &sealed).await
    }

    fn remember(&self, component: &CredentialId, ticket: &SecretString) {
        if let Ok(mut t) = self.tickets.lock() {
            let same = t
                .get(component)
                .is_some_and(|k| k.expose_secret() == ticket.expose_secret());
            if !same {
                t.insert(component.clone(), ticket.clone());
            }
        }
    }

    fn remembered(&self, component: &CredentialId) -> Option<SecretString> {
        self.tickets.lock().ok()?.get(component).cloned()
    }
}
