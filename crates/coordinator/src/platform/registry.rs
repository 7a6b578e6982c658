//! Which authorizers the fleet keeps ([`Registry`]): a hash per component in
//! Redis (`P:{COMPONENT}:authorizers`, appid → `active` | `revoked`), read
//! with HSCAN, and this replica's catalog and schedule following it.
//!
//! Authorizers join by an `authorized` push or `POST …/authorizers` (the
//! code exchanged with `api_query_auth`, its token committed under the
//! lock with its refresh token) and by import (`api_get_authorizer_list`);
//! they leave on `unauthorized` or 61023. Every change publishes an
//! `authorizer` event on the component's channel, so every replica starts
//! (or stops) refreshing it at once; a sync every [`SYNC_INTERVAL`] and at
//! start catches what events missed. After Redis lost its data one replica
//! (under a lease) rebuilds every component's registry and refresh tokens
//! from `api_get_authorizer_list`: no merchant authorizes again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use wxtoken_common::{CredentialId, CredentialRef};

use super::wechat::{self, PAGE};
use crate::catalog::Catalog;
use crate::config::ComponentConfig;
use crate::kind::{Credential, Fetched};
use crate::refresher::{LoopState, Refresher, Schedule};
use crate::store::{ACTIVE, REVOKED, StoreError};
use crate::upstream::FetchError;

/// How often every replica re-reads the registries (events are hints).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// HSCAN page size.
const SCAN_COUNT: usize = 1000;
/// How long a push or an import waits for a component token none is
/// stored yet (its fetch takes one round trip after the verify ticket).
const COMPONENT_TOKEN_WAIT: Duration = Duration::from_secs(3);
/// How long one replica may hold the recovery lease.
const RECOVERY_LEASE: Duration = Duration::from_secs(120);

/// Why a registration or import failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no component {0}")]
    UnknownComponent(String),
    #[error("the component has no token now: {0}")]
    NoComponentToken(String),
    #[error("WeChat refused: {0}")]
    Refused(FetchError),
    #[error("bad authorizer: {0}")]
    BadAuthorizer(String),
    /// The component is followed (SPEC §12): authorizations happen at the
    /// primary, whose registry this fleet mirrors.
    #[error("component {0} is followed from {1}: merchants authorize at the primary fleet")]
    Followed(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the events tell the registry (a hint: Redis is read before acting).
#[derive(Debug, Clone)]
pub enum Hint {
    /// An authorizer's registry entry changed.
    Authorizer {
        component: CredentialId,
        appid: String,
    },
    /// `wxtoken promote` marked an id: a followed component may have become
    /// a primary.
    Promoted,
}

/// The registries, for one replica.
#[derive(Debug, Clone)]
pub struct Registry {
    refresher: Arc<Refresher>,
    catalog: Arc<Catalog>,
    schedule: Arc<Schedule>,
    /// Followed components `wxtoken promote` turned into primaries here.
    promoted: Arc<Mutex<HashSet<CredentialId>>>,
}

impl Registry {
    pub fn new(refresher: Arc<Refresher>, catalog: Arc<Catalog>, schedule: Arc<Schedule>) -> Self {
        Self {
            refresher,
            catalog,
            schedule,
            promoted: Arc::default(),
        }
    }

    /// The primary `component` is followed from, unless it was promoted:
    /// its authorizers are then kept by its follow task, never refreshed
    /// or imported here.
    fn followed(&self, component: &CredentialId) -> Option<String> {
        let url = self.catalog.component_followed_from(component.as_str())?;
        let promoted = self.promoted.lock().is_ok_and(|p| p.contains(component));
        (!promoted).then_some(url)
    }

    fn refuse_followed(&self, component: &CredentialId) -> Result<(), RegistryError> {
        match self.followed(component) {
            Some(url) => Err(RegistryError::Followed(component.to_string(), url)),
            None => Ok(()),
        }
    }

    fn component(&self, id: &CredentialId) -> Result<ComponentConfig, RegistryError> {
        self.catalog
            .component(id.as_str())
            .ok_or_else(|| RegistryError::UnknownComponent(id.to_string()))
    }

    /// Starts refreshing `appid` on this replica (no Redis call); of a
    /// followed component, only knows it — and stops refreshing it, if a
    /// reload turned `follow` on since (the primary's fleet refreshes it).
    fn follow(&self, component: &CredentialId, appid: &str) -> Result<Arc<Credential>, String> {
        let (cred, added) = self.catalog.add_authorizer(component, appid)?;
        if self.followed(component).is_some() {
            self.schedule.remove(&cred.cref);
            crate::metrics::authorizers(self.catalog.authorizer_count());
            return Ok(cred);
        }
        if added || !self.schedule.contains(&cred.cref) {
            self.schedule.add(
                cred.clone(),
                LoopState::new(&cred, self.refresher.settings()),
            );
        }
        Ok(cred)
    }

    /// Stops refreshing `appid` on this replica.
    fn unfollow(&self, component: &CredentialId, appid: &str) {
        if let Ok(id) = crate::kind::authorizer_id(component, appid) {
            self.schedule.remove(&CredentialRef::token(id.clone()));
            self.catalog.remove_authorizer(&id);
            crate::metrics::authorizers(self.catalog.authorizer_count());
        }
    }

    /// The component's current token, read from Redis (not the cache:
    /// after a data loss the cache may still hold a token the refill has
    /// since replaced, which WeChat kills at the next fetch but one).
    async fn component_token(
        &self,
        component: &CredentialId,
    ) -> Result<SecretString, RegistryError> {
        let cref = CredentialRef::token(component.clone());
        if let Some(t) = self.refresher.store().read_value(&cref).await? {
            return Ok(SecretString::from(t.value));
        }
        // None stored yet (the first verify ticket was just pushed, or a
        // refill runs): wait a little for the fleet's, as a reader would.
        match self
            .refresher
            .await_value(&cref, COMPONENT_TOKEN_WAIT)
            .await
        {
            Some(value) => Ok(SecretString::from(value)),
            None => Err(RegistryError::NoComponentToken("none stored".into())),
        }
    }

    /// One page of the list with the component's current token; a token
    /// WeChat rejects (replaced meanwhile) is read again, a few times.
    async fn list_page(
        &self,
        component: &CredentialId,
        component_appid: &str,
        offset: u64,
    ) -> Result<(Vec<wechat::Listed>, u64), RegistryError> {
        let mut tries = 0;
        loop {
            let token = self.component_token(component).await?;
            match wechat::authorizer_list(
                self.refresher.upstream(),
                self.catalog.base_url(),
                component_appid,
                &token,
                offset,
            )
            .await
            {
                Err(FetchError::Wechat { errcode, .. })
                    if wxtoken_common::is_token_rejected(errcode) && tries < 5 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other.map_err(RegistryError::Refused),
            }
        }
    }

    /// Registers the account behind an authorization code: exchanges it
    /// (`api_query_auth`), commits its token with its refresh token, marks
    /// it active and tells every replica. Returns its appid.
    pub async fn authorize(
        &self,
        component: &CredentialId,
        code: &str,
    ) -> Result<String, RegistryError> {
        let config = self.component(component)?.clone();
        self.refuse_followed(component)?;
        let token = self.component_token(component).await?;
        let auth = wechat::query_auth(
            self.refresher.upstream(),
            self.catalog.base_url(),
            &config.component_appid,
            &token,
            code,
        )
        .await
        .map_err(RegistryError::Refused)?;
        let cred = self
            .catalog
            .authorizer_by_id(&format!("{component}.{}", auth.appid))
            .ok_or_else(|| RegistryError::BadAuthorizer(auth.appid.clone()))?;
        // The refresh token first: whatever happens next, it is kept.
        self.refresher
            .vault()
            .set_refresh_token(&cred.cref.id, &auth.refresh_token)
            .await?;
        self.refresher.store().clear_gate(&cred.cref).await?;
        let mut fetched = Fetched::new(auth.access_token, auth.expires_in, "api_query_auth");
        fetched.refresh_token = Some(auth.refresh_token);
        match self.refresher.store_issued(&cred, &fetched).await {
            Ok(stored) => {
                debug!(credential = %cred.cref, stored, "authorizer token from api_query_auth")
            }
            Err(e) => {
                warn!(credential = %cred.cref, error = %e, "could not store the api_query_auth token; it is fetched again")
            }
        }
        self.refresher
            .store()
            .register(component, &auth.appid, ACTIVE)
            .await?;
        self.follow(component, &auth.appid)
            .map_err(RegistryError::BadAuthorizer)?;
        info!(component = %component, authorizer = %auth.appid, "authorizer registered");
        Ok(auth.appid)
    }

    /// Imports every authorizer `api_get_authorizer_list` knows, with its
    /// current refresh token. Returns how many.
    pub async fn import(&self, component: &CredentialId) -> Result<u64, RegistryError> {
        let config = self.component(component)?.clone();
        self.refuse_followed(component)?;
        let mut offset = 0;
        let mut imported = 0;
        loop {
            let (page, total) = self
                .list_page(component, &config.component_appid, offset)
                .await?;
            let n = page.len() as u64;
            for listed in page {
                match self
                    .import_one(component, &listed.appid, &listed.refresh_token)
                    .await
                {
                    Ok(()) => imported += 1,
                    Err(RegistryError::BadAuthorizer(why)) => {
                        warn!(component = %component, why = %why, "skipped an authorizer WeChat listed")
                    }
                    Err(e) => return Err(e),
                }
            }
            offset += n;
            if n == 0 || offset >= total || n < PAGE {
                break;
            }
        }
        info!(component = %component, imported, "authorizers imported from api_get_authorizer_list");
        Ok(imported)
    }

    async fn import_one(
        &self,
        component: &CredentialId,
        appid: &str,
        refresh_token: &SecretString,
    ) -> Result<(), RegistryError> {
        let cref = CredentialRef::token(
            crate::kind::authorizer_id(component, appid).map_err(RegistryError::BadAuthorizer)?,
        );
        let store = self.refresher.store();
        self.refresher
            .vault()
            .set_refresh_token(&cref.id, refresh_token)
            .await?;
        store.clear_gate(&cref).await?;
        store.register(component, appid, ACTIVE).await?;
        self.follow(component, appid)
            .map_err(RegistryError::BadAuthorizer)?;
        self.schedule.reread(&cref);
        Ok(())
    }

    /// `unauthorized`: the merchant revoked the authorization.
    pub async fn revoke(&self, component: &CredentialId, appid: &str) -> Result<(), RegistryError> {
        let id =
            crate::kind::authorizer_id(component, appid).map_err(RegistryError::BadAuthorizer)?;
        self.refresher
            .store()
            .revoke(component, appid, &CredentialRef::token(id))
            .await?;
        self.unfollow(component, appid);
        info!(component = %component, authorizer = %appid, "authorizer revoked");
        Ok(())
    }

    /// Acts on a hint: reads one authorizer's state and follows it, or
    /// looks for promoted components.
    async fn apply(&self, hint: &Hint) {
        let (component, appid) = match hint {
            Hint::Authorizer { component, appid } => (component, appid),
            Hint::Promoted => return self.check_promoted().await,
        };
        match self.refresher.store().registered(component, appid).await {
            Ok(Some(state)) if state == ACTIVE => match self.follow(component, appid) {
                // Registered again (or imported): it may have a refresh
                // token now and its gate lifted: look at once.
                Ok(cred) => self.schedule.reread(&cred.cref),
                Err(why) => {
                    warn!(component = %component, why = %why, "registry entry ignored")
                }
            },
            Ok(_) => self.unfollow(component, appid),
            Err(e) => debug!(error = %e, "registry read failed; the next sync catches up"),
        }
    }

    /// Reads every registry (HSCAN pages) and follows it. Returns the
    /// number of active authorizers.
    pub async fn sync(&self) -> Result<u64, StoreError> {
        self.check_promoted().await;
        let mut active = 0;
        let components = self.catalog.component_ids();
        for component in components {
            // Every replica remembers the latest verify ticket (a push
            // reaches one replica), so any of them can refill after a wipe.
            let _ = self.refresher.vault().verify_ticket(&component).await;
            let mut cursor = 0;
            loop {
                let page = self
                    .refresher
                    .store()
                    .registry_page(&component, cursor, SCAN_COUNT)
                    .await?;
                for (appid, state) in &page.entries {
                    if state == ACTIVE {
                        active += 1;
                        if let Err(why) = self.follow(&component, appid) {
                            warn!(component = %component, why = %why, "registry entry ignored");
                        }
                    } else if state == REVOKED {
                        self.unfollow(&component, appid);
                    }
                }
                cursor = page.cursor;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(active)
    }

    /// After Redis lost its data: one replica (holding the lease) imports
    /// every component's authorizers again; the others wait for its events.
    pub async fn recover(&self) {
        let components = self.catalog.component_ids();
        for component in components {
            // A followed component's registry comes back from its primary.
            if self.followed(&component).is_none() {
                self.recover_one(&component).await;
            }
        }
    }

    async fn recover_one(&self, component: &CredentialId) {
        let started = Instant::now();
        loop {
            match self.try_recover(component).await {
                Ok(Some(n)) => {
                    info!(component = %component, authorizers = n, took_ms = started.elapsed().as_millis() as u64, "registry rebuilt from api_get_authorizer_list");
                    break;
                }
                // Another replica holds the lease: it imports.
                Ok(None) => break,
                Err(e) => {
                    warn!(component = %component, error = %e, "registry rebuild failed; retrying");
                    if started.elapsed() > Duration::from_secs(600) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// A followed component `wxtoken promote` made a primary: its
    /// authorizers are refreshed here from now on, with the refresh tokens
    /// one replica imports from `api_get_authorizer_list` (a follower never
    /// held them).
    async fn check_promoted(&self) {
        for c in self.catalog.components() {
            if c.follow.is_none() || self.followed(&c.id).is_none() {
                continue;
            }
            if !matches!(self.refresher.store().promoted(&c.id).await, Ok(Some(_))) {
                continue;
            }
            if let Ok(mut p) = self.promoted.lock() {
                p.insert(c.id.clone());
            }
            warn!(component = %c.id, "promoted: its authorizers are refreshed from WeChat from now on; importing their refresh tokens");
            for cred in self.catalog.authorizers_with_prefix(&format!("{}.", c.id)) {
                self.schedule.add(
                    cred.clone(),
                    LoopState::new(&cred, self.refresher.settings()),
                );
            }
            let registry = self.clone();
            tokio::spawn(async move { registry.recover_one(&c.id).await });
        }
    }

    /// [`Self::recover`] for `tokio::spawn`.
    pub async fn recover_owned(self) {
        self.recover().await;
    }

    async fn try_recover(&self, component: &CredentialId) -> Result<Option<u64>, RegistryError> {
        let store = self.refresher.store();
        // Not "is the registry empty?": authorizations pushed since the
        // loss already refill it. The replica that takes the lease imports;
        // the lease is left to expire, so replicas that notice the same loss
        // later do not import again (a new loss wipes it with the rest).
        let owner = self.refresher.replica_id().to_owned();
        if !store
            .take_recovery(component, &owner, RECOVERY_LEASE)
            .await?
        {
            return Ok(None);
        }
        // The component token must be back first (its own refill, with the
        // verify ticket this replica remembers). An import that fails part
        // way is run again whole (it is idempotent) while the lease is ours.
        let deadline = Instant::now() + RECOVERY_LEASE / 2;
        let result = loop {
            match self.import(component).await {
                Err(e) if Instant::now() < deadline => {
                    warn!(component = %component, error = %e, "registry rebuild: import failed; again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        };
        if result.is_err() {
            // Let another replica try.
            let _ = store.end_recovery(component, &owner).await;
        }
        result.map(Some)
    }

    /// Follows registry hints until `shutdown`, and syncs every
    /// [`SYNC_INTERVAL`] (and at once: a replica starting finds every
    /// authorizer).
    pub async fn run(self, mut hints: mpsc::Receiver<Hint>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tick.tick() => match self.sync().await {
                    Ok(n) => debug!(authorizers = n, "registry synced"),
                    Err(e) => warn!(error = %e, "registry sync failed"),
                },
                Some(hint) = hints.recv() => self.apply(&hint).await,
                _ = shutdown.changed() => {}
            }
        }
    }
}
