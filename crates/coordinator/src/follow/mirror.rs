//! A followed component's registry (SPEC §12): the follower fleet's copy of
//! which authorizers the primary keeps, written from the primary's
//! `authorizer` and `synced` events into this fleet's own registry
//! (`P:{COMPONENT}:authorizers`), so every follower replica's catalog knows
//! the ids its readers ask for. Only differences are written: a reconnect's
//! snapshot of 10 000 authorizers costs one HSCAN here, not 10 000 events.

use std::collections::{HashMap, HashSet};

use tracing::{debug, info};
use wxtoken_common::{CredentialId, CredentialRef};

use crate::store::{ACTIVE, REVOKED, StoreError, TokenStore};

/// HSCAN page size.
const PAGE: usize = 1000;

pub(super) struct Mirror {
    component: CredentialId,
    /// What the primary listed active since the stream opened.
    listed: HashSet<String>,
    /// This fleet's registry as read at the first event of the stream and
    /// written since (`None`: read it).
    known: Option<HashMap<String, String>>,
    /// New authorizers of the snapshot, registered together by [`Self::flush`].
    unregistered: Vec<String>,
}

impl Mirror {
    pub(super) fn new(component: CredentialId) -> Self {
        Self {
            component,
            listed: HashSet::new(),
            known: None,
            unregistered: Vec::new(),
        }
    }

    /// A new stream: its snapshot lists everything again.
    pub(super) fn opened(&mut self) {
        self.listed.clear();
        self.known = None;
        self.unregistered.clear();
    }

    async fn known(
        &mut self,
        store: &TokenStore,
    ) -> Result<&mut HashMap<String, String>, StoreError> {
        if self.known.is_none() {
            let mut all = HashMap::new();
            let mut cursor = 0;
            loop {
                let page = store.registry_page(&self.component, cursor, PAGE).await?;
                all.extend(page.entries);
                cursor = page.cursor;
                if cursor == 0 {
                    break;
                }
            }
            self.known = Some(all);
        }
        Ok(self.known.get_or_insert_with(HashMap::new))
    }

    /// The primary listed `appid`. `Some`: the authorizer this fleet must
    /// stop holding (revoked at the primary). With `defer` (the primary's
    /// snapshot), a new authorizer is registered by the next [`Self::flush`].
    pub(super) async fn authorizer(
        &mut self,
        store: &TokenStore,
        appid: &str,
        active: bool,
        defer: bool,
    ) -> Result<Option<CredentialRef>, StoreError> {
        let Ok(id) = crate::kind::authorizer_id(&self.component, appid) else {
            return Ok(None);
        };
        let cref = CredentialRef::token(id);
        let component = self.component.clone();
        let state = if active { ACTIVE } else { REVOKED };
        let current = self.known(store).await?.get(appid).cloned();
        if active {
            self.listed.insert(appid.to_owned());
        } else {
            self.listed.remove(appid);
        }
        if current.as_deref() == Some(state) {
            return Ok(None);
        }
        if active && defer && current.is_none() {
            self.unregistered.push(appid.to_owned());
        } else if active {
            // Revoked here before: its gate goes with the new authorization.
            if current.as_deref() == Some(REVOKED) {
                store.clear_gate(&cref).await?;
            }
            store.register(&component, appid, ACTIVE).await?;
            info!(component = %component, authorizer = %appid, "followed: authorizer registered at the primary");
        } else {
            store.revoke(&component, appid, &cref).await?;
            info!(component = %component, authorizer = %appid, "followed: authorizer revoked at the primary");
        }
        if let Some(known) = self.known.as_mut() {
            known.insert(appid.to_owned(), state.to_owned());
        }
        Ok((!active).then_some(cref))
    }

    /// Registers the snapshot's new authorizers listed since the last flush.
    pub(super) async fn flush(&mut self, store: &TokenStore) -> Result<(), StoreError> {
        if self.unregistered.is_empty() {
            return Ok(());
        }
        store
            .register_all(&self.component, &self.unregistered, ACTIVE)
            .await?;
        info!(component = %self.component, authorizers = self.unregistered.len(), "followed: authorizers registered at the primary");
        self.unregistered.clear();
        Ok(())
    }

    /// The primary's snapshot is whole: what this fleet holds active and
    /// the primary did not list is revoked here. Returns those.
    pub(super) async fn synced(
        &mut self,
        store: &TokenStore,
    ) -> Result<Vec<CredentialRef>, StoreError> {
        let listed = std::mem::take(&mut self.listed);
        let stale: Vec<String> = self
            .known(store)
            .await?
            .iter()
            .filter(|(appid, st)| st.as_str() == ACTIVE && !listed.contains(*appid))
            .map(|(appid, _)| appid.clone())
            .collect();
        self.listed = listed;
        let mut gone = Vec::with_capacity(stale.len());
        for appid in stale {
            if let Some(cref) = self.authorizer(store, &appid, false, false).await? {
                gone.push(cref);
            }
        }
        debug!(component = %self.component, listed = self.listed.len(), revoked = gone.len(), "followed registry in sync with the primary");
        Ok(gone)
    }

    /// After this fleet's Redis lost its data: every authorizer the primary
    /// listed is registered again (no call to anyone).
    pub(super) async fn restore(&mut self, store: &TokenStore) -> Result<(), StoreError> {
        self.known = None;
        let listed: Vec<String> = self.listed.iter().cloned().collect();
        let known = self.known(store).await?;
        let missing: Vec<String> = listed
            .into_iter()
            .filter(|a| known.get(a).map(String::as_str) != Some(ACTIVE))
            .collect();
        for appid in &missing {
            known.insert(appid.clone(), ACTIVE.to_owned());
        }
        store
            .register_all(&self.component, &missing, ACTIVE)
            .await?;
        if !missing.is_empty() {
            info!(component = %self.component, authorizers = missing.len(), "followed registry restored after a data loss");
        }
        Ok(())
    }
}
