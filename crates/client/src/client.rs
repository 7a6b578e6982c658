//! [`TokenClient`]: the cached, pub/sub-coherent read path (SPEC §6, §8) —
//! access tokens and tickets of any credential id, reports by value, waits
//! for a newer value or for the fleet's verdict on a report, and JS-SDK
//! signatures computed locally from the cached ticket.
//!
//! This module is the public face and its builder; the cache itself (lines,
//! coherence, misses, fallback) is `cache`. It never calls WeChat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::debug;
use wxtoken_common::jsapi::{self, Signed};
use wxtoken_common::{CredentialRef, Keys, Slot, TicketType};

use crate::cache::{Inner, Settings, unavailable};
use crate::connect::{ClientSource, RedisPool, RedisTarget, Topology};
use crate::error::ClientError;
use crate::events::{ConnectionState, EventSink, EventSubscription, SubscriptionConfig};
use crate::keyspace::{self, Invalidation};
use crate::token::Token;

/// Configures and connects a [`TokenClient`].
#[derive(Debug, Clone)]
pub struct TokenClientBuilder {
    target: RedisTarget,
    events_url: Option<String>,
    prefix: String,
    connect_timeout: Duration,
    settings: Settings,
    subscription: SubscriptionConfig,
    subscribe: bool,
}

impl TokenClientBuilder {
    /// Key prefix of the fleet (`[redis] key_prefix`); default `wxtoken`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Timeout of connecting to Redis; default 2 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self.subscription.connect_timeout = d;
        self
    }
    /// Timeout of one Redis round trip; default 1 s.
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.settings.command_timeout = d;
        self
    }
    /// How long `access_token` waits for a first token when none is stored; default 5 s.
    pub fn token_wait(mut self, d: Duration) -> Self {
        self.settings.token_wait = d;
        self
    }
    /// How long a cached entry is trusted while events may have been missed
    /// (subscription down or re-established since the read); default 2 s.
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.settings.max_staleness = d;
        self
    }
    /// A token with less than this left is not handed out; default 1 s.
    pub fn expiry_margin(mut self, d: Duration) -> Self {
        self.settings.expiry_margin = d;
        self
    }
    /// How often the subscription pings Redis to notice a dead link; default 5 s.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.subscription.ping_interval = d;
        self.subscription.ping_timeout = d.min(self.subscription.ping_timeout);
        self
    }
    /// Redis is a Sentinel deployment: the URL(s) given are the Sentinels,
    /// `master` the monitored name.
    pub fn sentinel(mut self, master: impl Into<String>) -> Self {
        self.target.topology = Topology::Sentinel {
            master: master.into(),
        };
        self
    }
    /// Redis is a Cluster: the URL(s) given are seed nodes.
    pub fn cluster(mut self) -> Self {
        self.target.topology = Topology::Cluster;
        self
    }
    /// PEM CA for `rediss://` when the system trust store should not be used.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.target.ca_file = Some(path.into());
        self
    }
    /// Uses a fully described target (the coordinator passes its own).
    pub fn target(mut self, target: RedisTarget) -> Self {
        self.target = target;
        self
    }
    /// Subscribe to events through another URL than reads (e.g. a replica
    /// or a proxy); default: the same URL.
    pub fn events_url(mut self, url: impl Into<String>) -> Self {
        self.events_url = Some(url.into());
        self
    }
    /// `false`: do not open a subscription; the caller feeds events through
    /// [`TokenClient::event_sink`] (the coordinator shares its own).
    pub fn subscribe(mut self, yes: bool) -> Self {
        self.subscribe = yes;
        self
    }

    /// Connects (one ping, so a wrong URL fails here) and starts the event
    /// subscription.
    pub async fn connect(self) -> Result<TokenClient, ClientError> {
        let connect_timeout = self.connect_timeout;
        let client = self.build()?;
        let ping = async {
            let mut conn = client.inner.conn().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| unavailable("-", &format!("redis: {e}")))
        };
        tokio::time::timeout(connect_timeout * 2, ping)
            .await
            .map_err(|_| unavailable("-", "redis did not answer PING in time"))??;
        Ok(client)
    }

    /// Builds without contacting Redis (a service may start while Redis is down).
    pub fn build(self) -> Result<TokenClient, ClientError> {
        let keys = Keys::new(&self.prefix).map_err(|e| ClientError::Redis(e.to_string()))?;
        let mut target = self.target.clone();
        target.connect_timeout = self.connect_timeout;
        target.response_timeout = self.settings.command_timeout;
        let pool = RedisPool::new(
            target,
            4,
            self.connect_timeout + self.settings.command_timeout,
        )
        .map_err(|e| ClientError::Redis(e.to_string()))?;
        let source = pool.client_source();
        let (connection, _) = watch::channel(ConnectionState::Down);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            pool,
            keys: keys.clone(),
            lines: std::array::from_fn(|_| ArcSwap::from_pointee(HashMap::new())),
            lines_write: Mutex::new(()),
            session: AtomicU64::new(0),
            connection,
            settings: self.settings.clone(),
        });
        let events = match &self.events_url {
            Some(url) => ClientSource::fixed(
                redis::Client::open(url.as_str()).map_err(|e| ClientError::Redis(e.to_string()))?,
            ),
            None => source,
        };
        let subscription = self.subscribe.then(|| {
            Arc::new(EventSubscription::spawn(
                events,
                keys,
                self.subscription.clone(),
                inner.clone(),
            ))
        });
        Ok(TokenClient {
            inner,
            _subscription: subscription,
        })
    }
}

/// Reads the fleet's tokens and tickets. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
    _subscription: Option<Arc<EventSubscription>>,
}

impl TokenClient {
    /// Connects to the fleet's Redis with default settings and prefix `wxtoken`.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::builder(url).connect().await
    }

    pub fn builder(url: &str) -> TokenClientBuilder {
        TokenClientBuilder {
            target: RedisTarget::standalone(url),
            events_url: None,
            prefix: wxtoken_common::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(2),
            settings: Settings {
                command_timeout: Duration::from_secs(1),
                token_wait: Duration::from_secs(5),
                max_staleness: Duration::from_secs(2),
                expiry_margin: Duration::from_secs(1),
            },
            subscription: SubscriptionConfig::default(),
            subscribe: true,
        }
    }

    /// The sink to feed events into when built with `subscribe(false)`.
    pub fn event_sink(&self) -> Arc<dyn EventSink> {
        self.inner.clone()
    }

    /// Whether the event subscription is up now.
    pub fn events_up(&self) -> bool {
        self.inner.session.load(Ordering::Acquire) != 0
    }

    /// Waits until the event subscription is up, at most `timeout`.
    pub async fn wait_events_up(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.connection.subscribe();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|s| matches!(s, ConnectionState::Up { .. })),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// The token of `id` from the local cache only, if it may be served
    /// without asking Redis. Never blocks.
    pub fn cached(&self, id: &str) -> Option<Token> {
        self.inner.cached(Slot::AccessToken, id)
    }

    /// Any credential's value from the local cache only (see [`Self::cached`]).
    pub fn cached_value(&self, cref: &CredentialRef) -> Option<Token> {
        self.inner.cached(cref.slot, cref.id.as_str())
    }

    /// The current token of credential `id`: from the cache when it may be
    /// served, else from Redis (one round trip). When none is stored it asks
    /// the fleet for one and waits up to `token_wait`.
    ///
    /// The cache is consulted when this is called, so a hit costs no more
    /// than [`Self::cached`] plus a small ready future.
    pub fn access_token<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<Token, ClientError>> + Send + 'a {
        let hit = self.cached(id);
        async move {
            match hit {
                Some(token) => Ok(token),
                // Boxed so the hit path's future stays small.
                None => Box::pin(self.miss(Slot::AccessToken, id)).await,
            }
        }
    }

    /// The current `ticket` of `id` (a JS-SDK ticket the fleet shares), like
    /// [`Self::access_token`].
    pub async fn ticket(&self, id: &str, ticket: TicketType) -> Result<Token, ClientError> {
        let slot = Slot::Ticket(ticket);
        match self.inner.cached(slot, id) {
            Some(t) => Ok(t),
            None => Box::pin(self.miss(slot, id)).await,
        }
    }

    /// The current value of any credential.
    pub async fn value(&self, cref: &CredentialRef) -> Result<Token, ClientError> {
        match self.cached_value(cref) {
            Some(t) => Ok(t),
            None => Box::pin(self.miss(cref.slot, cref.id.as_str())).await,
        }
    }

    /// A `wx.config` signature of `url` with `id`'s jsapi ticket, computed
    /// here: the ticket never leaves this process. `now` is the unix time in
    /// seconds the page will send as `timestamp`.
    pub async fn jsapi_signature(
        &self,
        id: &str,
        url: &str,
        now: u64,
    ) -> Result<Signed, ClientError> {
        let ticket = self.ticket(id, TicketType::Jsapi).await?;
        Ok(jsapi::sign(ticket.value(), now, url))
    }

    async fn miss(&self, slot: Slot, id: &str) -> Result<Token, ClientError> {
        let line = self.inner.line(slot, id)?;
        self.inner
            .newer_than(&line, None, self.inner.settings.token_wait)
            .await
    }

    /// Waits until a token newer than `generation` is stored (woken by the
    /// `refreshed` event), at most `timeout`.
    pub async fn wait_for_newer(
        &self,
        id: &str,
        generation: u64,
        timeout: Duration,
    ) -> Result<Token, ClientError> {
        let cref = CredentialRef::token(wxtoken_common::CredentialId::parse(id)?);
        self.wait_for_newer_value(&cref, generation, timeout).await
    }

    /// [`Self::wait_for_newer`] for any credential.
    pub async fn wait_for_newer_value(
        &self,
        cref: &CredentialRef,
        generation: u64,
        timeout: Duration,
    ) -> Result<Token, ClientError> {
        let line = self.inner.line(cref.slot, cref.id.as_str())?;
        self.inner
            .newer_than(&line, Some(generation), timeout)
            .await
    }

    /// Reports `token` as rejected by WeChat. If it is still the stored one
    /// the fleet checks it with WeChat and replaces it only if WeChat rejects
    /// it ([`Invalidation::Reported`]; follow with [`Self::wait_for_verdict`]).
    /// The cached entry is kept: a token WeChat accepts stays in service.
    pub async fn invalidate(&self, id: &str, token: &str) -> Result<Invalidation, ClientError> {
        let cref = CredentialRef::token(wxtoken_common::CredentialId::parse(id)?);
        self.report(&cref, token).await
    }

    /// [`Self::invalidate`] for any credential (e.g. a ticket a page's
    /// `wx.config` refused).
    pub async fn report(
        &self,
        cref: &CredentialRef,
        value: &str,
    ) -> Result<Invalidation, ClientError> {
        let line = self.inner.line(cref.slot, cref.id.as_str())?;
        // A verdict on this report arrives after this moment; an older
        // refusal (of an earlier report of the same generation) is not one.
        *line.reported_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        // A report is idempotent (the script compares the value and marks the
        // generation once), so a transport failure — a command timeout on a
        // starved machine, a dropped connection — is retried once on a fresh
        // connection: a lost report leaves its caller holding a dead token.
        let mut last = None;
        for _ in 0..2 {
            let result = match self.inner.conn().await {
                Ok(mut conn) => keyspace::report(&mut conn, &line.keys, value)
                    .await
                    .map_err(|e| unavailable(&cref.to_string(), &format!("redis: {e}"))),
                Err(e) => Err(e),
            };
            match result {
                Ok(done) => return Ok(done),
                Err(e) if e.is_retryable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| unavailable(&cref.to_string(), "redis: no attempt")))
    }

    /// After [`Invalidation::Reported`] of `generation`: waits until the
    /// fleet either stored a newer token ([`Verdict::Replaced`]) or refused
    /// the report ([`Verdict::Refused`]: WeChat accepts the token, or the
    /// rest of today's budget is reserved for scheduled refreshes), at most
    /// `timeout`.
    pub async fn wait_for_verdict(
        &self,
        id: &str,
        generation: u64,
        timeout: Duration,
    ) -> Result<Verdict, ClientError> {
        let cref = CredentialRef::token(wxtoken_common::CredentialId::parse(id)?);
        self.wait_for_verdict_on(&cref, generation, timeout).await
    }

    /// [`Self::wait_for_verdict`] for any credential.
    pub async fn wait_for_verdict_on(
        &self,
        cref: &CredentialRef,
        generation: u64,
        timeout: Duration,
    ) -> Result<Verdict, ClientError> {
        let line = self.inner.line(cref.slot, cref.id.as_str())?;
        let since = line
            .reported_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Instant::now);
        let deadline = Instant::now() + timeout;
        let mut announced = line.announced.subscribe();
        loop {
            if let Some(reason) = line.refusal_of(generation, since) {
                let token = self.value(cref).await.ok();
                return Ok(Verdict::Refused { reason, token });
            }
            match self.inner.fill(&line).await {
                Ok(Some(t)) if t.generation() > generation => return Ok(Verdict::Replaced(t)),
                Ok(_) => {}
                Err(e) => {
                    debug!(credential = %cref, error = %e, "waiting for the verdict on a report")
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::NoNewerToken {
                    id: cref.to_string(),
                    generation,
                    waited: timeout,
                });
            }
            tokio::select! {
                _ = announced.changed() => {}
                _ = tokio::time::sleep((deadline - now).min(Duration::from_secs(1))) => {}
            }
        }
    }
}

/// How the fleet answered a report ([`TokenClient::wait_for_verdict`]).
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A newer value is stored: use it.
    Replaced(Token),
    /// No refresh followed the report. `reason` is `token_valid` (WeChat
    /// accepts the reported value: the error the caller saw was not about
    /// it) or `reserve` (the budget left today is kept for scheduled
    /// refreshes); `token` is the current value, if any.
    Refused {
        reason: String,
        token: Option<Token>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fast_path_future_is_small() {
        let client = TokenClient::builder("redis://127.0.0.1:1")
            .subscribe(false)
            .build()
            .unwrap();
        let future = client.access_token("shop");
        eprintln!(
            "access_token future: {} bytes",
            std::mem::size_of_val(&future)
        );
        assert!(
            std::mem::size_of_val(&future) < 600,
            "the miss path must be boxed"
        );
    }
}
