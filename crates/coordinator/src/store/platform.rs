//! The open platform's state in Redis (SPEC §9): the registry of a
//! component's authorizers, its latest verify ticket, authorizers' refresh
//! tokens (read here; written only by `commit`), and the pushes already
//! seen. Values arrive sealed (`vault`); this module stores and
//! reads strings and decides nothing.

use std::time::Duration;

use redis::AsyncCommands;
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, CredentialRef};

use super::{StoreError, TokenStore, millis, script, slot_field};

script!(REVOKE, "revoke.lua");

/// One page of a component's registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryPage {
    /// 0 when the scan is complete.
    pub cursor: u64,
    /// (authorizer appid, state) as stored.
    pub entries: Vec<(String, String)>,
}

impl TokenStore {
    /// The sealed verify ticket of `component`, if any.
    pub async fn verify_ticket(
        &self,
        component: &CredentialId,
    ) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        Ok(c.get(self.keys.verify_ticket(component)).await?)
    }

    /// Stores a sealed verify ticket (the latest push wins).
    pub async fn set_verify_ticket(
        &self,
        component: &CredentialId,
        sealed: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: () = c.set(self.keys.verify_ticket(component), sealed).await?;
        Ok(())
    }

    /// Puts back a ticket this replica remembers when Redis has none (after
    /// a wipe), without overwriting a newer push. True when it was missing.
    pub async fn restore_verify_ticket(
        &self,
        component: &CredentialId,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        self.set_nx(&self.keys.verify_ticket(component), sealed, None)
            .await
    }

    /// The sealed refresh token of an authorizer, if any.
    pub async fn refresh_token(&self, id: &CredentialId) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        Ok(c.get(self.keys.refresh_token(id)).await?)
    }

    /// Where an authorizer's refresh token lives (commit writes it there).
    pub fn refresh_token_key(&self, id: &CredentialId) -> String {
        self.keys.refresh_token(id)
    }

    /// Where a component's verify ticket lives (the seal's associated data).
    pub fn verify_ticket_key(&self, component: &CredentialId) -> String {
        self.keys.verify_ticket(component)
    }

    /// Stores an authorizer's refresh token outside a commit: registration
    /// (`api_query_auth`) and recovery (`api_get_authorizer_list`) learn one
    /// before any access token is committed.
    pub async fn set_refresh_token(
        &self,
        id: &CredentialId,
        sealed: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: () = c.set(self.keys.refresh_token(id), sealed).await?;
        Ok(())
    }

    /// Records `appid`'s state in the registry and tells every replica
    /// (an `authorizer` event on the component's channel: a hint; replicas
    /// read the registry before acting on it).
    pub async fn register(
        &self,
        component: &CredentialId,
        appid: &str,
        state: &str,
    ) -> Result<(), StoreError> {
        self.register_all(component, &[appid], state).await
    }

    /// [`Self::register`] for each of `appids`, in one round trip.
    pub async fn register_all(
        &self,
        component: &CredentialId,
        appids: &[impl AsRef<str>],
        state: &str,
    ) -> Result<(), StoreError> {
        if appids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let (registry, channel) = (
            self.keys.authorizers(component),
            self.keys.events(component),
        );
        let mut pipe = redis::pipe();
        for appid in appids {
            let event = Event::Authorizer {
                appid: appid.as_ref().to_owned(),
                state: state.to_owned(),
            };
            pipe.hset(&registry, appid.as_ref(), state)
                .ignore()
                .publish(&channel, event.to_json())
                .ignore();
        }
        let (): () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// `appid`'s state in the registry.
    pub async fn registered(
        &self,
        component: &CredentialId,
        appid: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        Ok(c.hget(self.keys.authorizers(component), appid).await?)
    }

    /// One HSCAN page of the registry (never KEYS).
    pub async fn registry_page(
        &self,
        component: &CredentialId,
        cursor: u64,
        count: usize,
    ) -> Result<RegistryPage, StoreError> {
        let mut c = self.conn().await?;
        let (cursor, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(self.keys.authorizers(component))
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut c)
            .await?;
        let mut entries = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(appid), Some(state)) = (it.next(), it.next()) {
            entries.push((appid, state));
        }
        Ok(RegistryPage { cursor, entries })
    }

    /// How many authorizers the registry holds (any state).
    pub async fn registry_len(&self, component: &CredentialId) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        Ok(c.hlen(self.keys.authorizers(component)).await?)
    }

    /// True the first time a push with this signature is seen within `ttl`
    /// (fleet-wide: a replay to another replica is refused too).
    pub async fn first_push(
        &self,
        component: &CredentialId,
        signature: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.set_nx(&self.keys.push_seen(component, signature), "1", Some(ttl))
            .await
    }

    /// Marks `appid` revoked in the registry and its token dead: deleted,
    /// gated until a new authorization, `invalidated` published. Returns the
    /// generation invalidated.
    pub async fn revoke(
        &self,
        component: &CredentialId,
        appid: &str,
        cref: &CredentialRef,
    ) -> Result<u64, StoreError> {
        let k = self.keys.slot(cref);
        let now = self.redis_time_ms().await?;
        let generation: u64 = {
            let mut c = self.conn().await?;
            REVOKE
                .key(&k.value)
                .key(&k.meta)
                .key(&k.events)
                .arg(slot_field(cref.slot))
                .arg(now)
                .invoke_async(&mut c)
                .await?
        };
        self.register(component, appid, REVOKED).await?;
        Ok(generation)
    }

    /// Forgets a push seen (it was not kept: its retry is welcome).
    pub async fn forget_push(
        &self,
        component: &CredentialId,
        signature: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: i64 = c.del(self.keys.push_seen(component, signature)).await?;
        Ok(())
    }

    /// Takes the recovery lease of `component` (`SET NX PX`).
    pub async fn take_recovery(
        &self,
        component: &CredentialId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.set_nx(&self.keys.recovery(component), owner, Some(ttl))
            .await
    }

    /// Gives the recovery lease back (only if still ours).
    pub async fn end_recovery(
        &self,
        component: &CredentialId,
        owner: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = self.keys.recovery(component);
        let held: Option<String> = c.get(&key).await?;
        if held.as_deref() == Some(owner) {
            let _: i64 = c.del(&key).await?;
        }
        Ok(())
    }

    /// Lifts an authorizer's gate (a new authorization after a revoke).
    pub async fn clear_gate(&self, cref: &CredentialRef) -> Result<(), StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let (): () = redis::cmd("HSET")
            .arg(&k.meta)
            .arg("failures")
            .arg("0")
            .arg("next_attempt_at_ms")
            .arg("0")
            .query_async(&mut c)
            .await?;
        Ok(())
    }
}

impl TokenStore {
    /// `SET key value NX [PX ttl]`: true when this call set it.
    async fn set_nx(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl).max(1));
        }
        let mut c = self.conn().await?;
        let set: Option<String> = cmd.query_async(&mut c).await?;
        Ok(set.is_some())
    }
}

/// What `wxtoken status --component` needs of one authorizer.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerState {
    pub has_token: bool,
    pub failures: u64,
    pub code: Option<String>,
    pub message: String,
}

impl TokenStore {
    /// Whether each authorizer has a token and its last failure, one
    /// pipeline for all of `crefs` (a page of the registry).
    pub async fn authorizer_states(
        &self,
        crefs: &[CredentialRef],
    ) -> Result<Vec<AuthorizerState>, StoreError> {
        if crefs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for cref in crefs {
            let k = self.keys.slot(cref);
            pipe.exists(&k.value);
            pipe.cmd("HMGET")
                .arg(&k.meta)
                .arg(wxtoken_common::meta::FAILURES)
                .arg(wxtoken_common::meta::LAST_ERROR_CODE)
                .arg(wxtoken_common::meta::LAST_ERROR_MSG);
        }
        let mut c = self.conn().await?;
        let replies: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        let mut out = Vec::with_capacity(crefs.len());
        for pair in replies.chunks(2) {
            let has_token: bool = pair
                .first()
                .and_then(|v| redis::from_redis_value(v.clone()).ok())
                .unwrap_or(false);
            let fields: Vec<Option<String>> = pair
                .get(1)
                .and_then(|v| redis::from_redis_value(v.clone()).ok())
                .unwrap_or_default();
            let field = |i: usize| fields.get(i).cloned().flatten();
            out.push(AuthorizerState {
                has_token,
                failures: field(0).and_then(|f| f.parse().ok()).unwrap_or(0),
                code: field(1),
                message: field(2).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

/// Registry states.
pub const ACTIVE: &str = "active";
pub const REVOKED: &str = "revoked";
