//! [`TokenClient`]: the cached, pub/sub-coherent read path (SPEC §6).
//!
//! Hot path: a lock-free lookup (`ArcSwap` map → `ArcSwapOption` entry) and a
//! clock read; no lock, no shared counter, no allocation. An entry is served
//! while the token has life left and either the event subscription has been
//! up since the entry was read (then any change would have been announced) or
//! it was checked less than `max_staleness` ago. Everything else goes to the
//! slow path: one pipelined round trip, coalesced per credential.
//!
//! Events: `refreshed` marks the entry stale and prefetches the new token;
//! `invalidated` drops it. When Redis is unreachable the cached token is
//! served until its real expiry (less `expiry_margin`), then
//! [`ClientError::Unavailable`]. This module never calls WeChat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;
use tracing::{debug, warn};
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, Keys};

use crate::connect::{ClientSource, PooledConn, RedisPool, RedisTarget, Topology};
use crate::error::ClientError;
use crate::events::{ConnectionState, EventSink, EventSubscription, SubscriptionConfig};
use crate::keyspace::{self, Invalidation};
use crate::token::Token;

/// Timing of a [`TokenClient`].
#[derive(Debug, Clone)]
struct Settings {
    command_timeout: Duration,
    token_wait: Duration,
    max_staleness: Duration,
    expiry_margin: Duration,
}

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
            slots: ArcSwap::from_pointee(HashMap::new()),
            slots_write: Mutex::new(()),
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

/// Reads the fleet's tokens. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
    _subscription: Option<Arc<EventSubscription>>,
}

struct Inner {
    me: Weak<Inner>,
    /// Multiplexed connections (any topology); misses share them.
    pool: RedisPool,
    keys: Keys,
    /// Read on every call, written once per new credential id: copy-on-write
    /// behind an `ArcSwap` keeps reads free of locks and shared writes.
    slots: ArcSwap<HashMap<CredentialId, Arc<Slot>>>,
    /// Serialises the rare copy-on-write inserts into `slots`.
    slots_write: Mutex<()>,
    /// Current subscription session (0 = down). Entries read in this session
    /// are kept current by events; others expire after `max_staleness`.
    session: AtomicU64,
    connection: watch::Sender<ConnectionState>,
    settings: Settings,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// One credential's cache line.
struct Slot {
    id: CredentialId,
    entry: ArcSwapOption<Entry>,
    /// The lowest generation still acceptable: raised by events so a read
    /// that raced an event cannot put an older token back.
    min_generation: AtomicU64,
    /// Highest generation announced by events; waiters are woken on change.
    announced: watch::Sender<u64>,
    /// Coalesces misses: one Redis read per credential at a time.
    fill: tokio::sync::Mutex<()>,
    /// Last `refresh_requested` publication (rate limit). Never held across `.await`.
    last_request: Mutex<Option<Instant>>,
    /// The last `report_refused` event: (generation, reason, when it came).
    /// Waiters for a verdict read it after `announced` wakes them. Never
    /// held across `.await`.
    refused: Mutex<Option<(u64, String, Instant)>>,
    /// When this process last reported a token of this credential.
    reported_at: Mutex<Option<Instant>>,
}

impl Slot {
    /// The reason the fleet refused a report of `generation` after `since`, if it did.
    fn refusal_of(&self, generation: u64, since: Instant) -> Option<String> {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused
            .as_ref()
            .filter(|(g, _, at)| *g == generation && *at >= since)
            .map(|(_, r, _)| r.clone())
    }
}

#[derive(Clone)]
struct Entry {
    token: Token,
    /// When Redis last confirmed (or was last tried for) this entry.
    checked_at: Instant,
    /// Subscription session the entry was read in.
    session: u64,
    /// A newer generation was announced: revalidate before serving, but keep
    /// the token as a fallback while Redis is unreachable.
    stale: bool,
}

fn unavailable(id: &str, reason: &str) -> ClientError {
    ClientError::Unavailable {
        id: id.to_owned(),
        reason: reason.to_owned(),
    }
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
        let slots = self.inner.slots.load();
        let entry = slots.get(id)?.entry.load();
        let entry = entry.as_ref()?;
        self.inner
            .fresh(entry, Instant::now())
            .then(|| entry.token.clone())
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
                None => Box::pin(self.miss(id)).await,
            }
        }
    }

    async fn miss(&self, id: &str) -> Result<Token, ClientError> {
        let slot = self.inner.slot(id)?;
        self.inner
            .newer_than(&slot, None, self.inner.settings.token_wait)
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
        let slot = self.inner.slot(id)?;
        self.inner
            .newer_than(&slot, Some(generation), timeout)
            .await
    }

    /// Reports `token` as rejected by WeChat. If it is still the stored one
    /// the fleet checks it with WeChat and replaces it only if WeChat rejects
    /// it ([`Invalidation::Reported`]; follow with [`Self::wait_for_verdict`]).
    /// The cached entry is kept: a token WeChat accepts stays in service.
    pub async fn invalidate(&self, id: &str, token: &str) -> Result<Invalidation, ClientError> {
        let slot = self.inner.slot(id)?;
        // A verdict on this report arrives after this moment; an older
        // refusal (of an earlier report of the same generation) is not one.
        *slot.reported_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut conn = self.inner.conn().await?;
        keyspace::invalidate(&mut conn, &self.inner.keys, &slot.id, token)
            .await
            .map_err(|e| unavailable(slot.id.as_str(), &format!("redis: {e}")))
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
        let slot = self.inner.slot(id)?;
        let since = slot
            .reported_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Instant::now);
        let deadline = Instant::now() + timeout;
        let mut announced = slot.announced.subscribe();
        loop {
            if let Some(reason) = slot.refusal_of(generation, since) {
                let token = self.access_token(id).await.ok();
                return Ok(Verdict::Refused { reason, token });
            }
            match self.inner.fill(&slot).await {
                Ok(Some(t)) if t.generation() > generation => return Ok(Verdict::Replaced(t)),
                Ok(_) => {}
                Err(e) => debug!(id, error = %e, "waiting for the verdict on a report"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::NoNewerToken {
                    id: id.to_owned(),
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
#[non_exhaustive]
pub enum Verdict {
    /// A newer token is stored: use it.
    Replaced(Token),
    /// No refresh followed the report. `reason` is `token_valid` (WeChat
    /// accepts the reported token: the error the caller saw was not about
    /// the token) or `reserve` (the budget left today is kept for scheduled
    /// refreshes); `token` is the current one, if any.
    Refused {
        reason: String,
        token: Option<Token>,
    },
}

impl Inner {
    /// A pooled connection (bounded by the pool's wait and create timeouts).
    async fn conn(&self) -> Result<PooledConn, ClientError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable("-", &e.to_string()))
    }

    fn fresh(&self, e: &Entry, now: Instant) -> bool {
        if e.stale || now + self.settings.expiry_margin >= e.token.expires_at() {
            return false;
        }
        let session = self.session.load(Ordering::Acquire);
        (session != 0 && e.session == session)
            || now.duration_since(e.checked_at) < self.settings.max_staleness
    }

    /// The slot of `id`, created on first use.
    fn slot(&self, id: &str) -> Result<Arc<Slot>, ClientError> {
        if let Some(slot) = self.slots.load().get(id) {
            return Ok(slot.clone());
        }
        let id = CredentialId::parse(id)?;
        let _w = self.slots_write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.slots.load_full();
        if let Some(slot) = current.get(id.as_str()) {
            return Ok(slot.clone());
        }
        let slot = Arc::new(Slot {
            id: id.clone(),
            entry: ArcSwapOption::empty(),
            min_generation: AtomicU64::new(0),
            announced: watch::channel(0).0,
            fill: tokio::sync::Mutex::new(()),
            last_request: Mutex::new(None),
            refused: Mutex::new(None),
            reported_at: Mutex::new(None),
        });
        let mut next = HashMap::clone(&current);
        next.insert(id, slot.clone());
        self.slots.store(Arc::new(next));
        Ok(slot)
    }

    /// Returns a servable token (newer than `generation` if given), reading
    /// Redis and waiting for events as needed, at most `wait`.
    async fn newer_than(
        &self,
        slot: &Arc<Slot>,
        generation: Option<u64>,
        wait: Duration,
    ) -> Result<Token, ClientError> {
        let wanted = |t: &Token| generation.is_none_or(|g| t.generation() > g);
        // The common miss: one read, no waiting, nothing subscribed.
        if let Ok(Some(t)) = self.fill(slot).await
            && wanted(&t)
        {
            return Ok(t);
        }
        let deadline = Instant::now() + wait;
        // Subscribe before re-reading, so an event between the read and the
        // wait cannot be missed.
        let mut announced = slot.announced.subscribe();
        let mut connection = self.connection.subscribe();
        loop {
            match self.fill(slot).await {
                Ok(Some(t)) if wanted(&t) => return Ok(t),
                Ok(Some(_)) => {}
                Ok(None) => self.request_refresh(slot).await,
                Err(e) if generation.is_none() => return Err(e),
                Err(e) => debug!(id = %slot.id, error = %e, "waiting for a newer token"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(match generation {
                    Some(g) => ClientError::NoNewerToken {
                        id: slot.id.to_string(),
                        generation: g,
                        waited: wait,
                    },
                    None => unavailable(
                        slot.id.as_str(),
                        "no token is stored and none arrived in time (is a coordinator running?)",
                    ),
                });
            }
            // Woken by the event; re-read now and then in case it was missed.
            let poll = if self.session.load(Ordering::Acquire) != 0 {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            };
            tokio::select! {
                _ = announced.changed() => {}
                _ = connection.changed() => {}
                _ = tokio::time::sleep((deadline - now).min(poll)) => {}
            }
        }
    }

    /// One coalesced read of `slot` from Redis, unless the cache is fresh.
    /// `Ok(None)`: no token stored.
    async fn fill(&self, slot: &Slot) -> Result<Option<Token>, ClientError> {
        let _one_at_a_time = slot.fill.lock().await;
        let cached = slot.entry.load_full();
        if let Some(e) = &cached
            && self.fresh(e, Instant::now())
        {
            return Ok(Some(e.token.clone()));
        }
        for _ in 0..3 {
            let session = self.session.load(Ordering::Acquire);
            let sent = Instant::now();
            // The connection's own response and connect timeouts bound this.
            let mut conn = match self.conn().await {
                Ok(conn) => conn,
                Err(e) => return self.fallback(slot, cached, &e.to_string()),
            };
            let stored = match keyspace::read_token(&mut conn, &self.keys, &slot.id).await {
                Ok(stored) => stored,
                Err(e) => return self.fallback(slot, cached, &format!("redis: {e}")),
            };
            let Some(stored) = stored else {
                slot.entry.store(None);
                return Ok(None);
            };
            if stored.generation < slot.min_generation.load(Ordering::Acquire) {
                // This read raced an event announcing a newer token: read again.
                continue;
            }
            let token = Token::new(&stored.value, sent + stored.ttl, stored.generation);
            let entry = Entry {
                token: token.clone(),
                checked_at: sent,
                session,
                stale: false,
            };
            slot.entry.store(Some(Arc::new(entry.clone())));
            if stored.generation < slot.min_generation.load(Ordering::Acquire) {
                // An event arrived between the check above and the store.
                slot.entry.store(Some(Arc::new(Entry {
                    stale: true,
                    ..entry
                })));
            }
            return Ok(
                (Instant::now() + self.settings.expiry_margin < token.expires_at())
                    .then_some(token),
            );
        }
        Ok(None)
    }

    /// Redis failed: serve the cached token until its real expiry.
    fn fallback(
        &self,
        slot: &Slot,
        cached: Option<Arc<Entry>>,
        reason: &str,
    ) -> Result<Option<Token>, ClientError> {
        let now = Instant::now();
        match cached {
            Some(e) if now + self.settings.expiry_margin < e.token.expires_at() => {
                debug!(id = %slot.id, reason, "redis unreachable; serving the cached token");
                // Do not ask again on every call: trust it for another max_staleness.
                slot.entry.store(Some(Arc::new(Entry {
                    checked_at: now,
                    session: 0,
                    ..Entry::clone(&e)
                })));
                Ok(Some(e.token.clone()))
            }
            _ => Err(unavailable(slot.id.as_str(), reason)),
        }
    }

    /// Asks the fleet for a token (at most once a second per credential).
    async fn request_refresh(&self, slot: &Slot) {
        let due = {
            let mut last = slot.last_request.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        let event = Event::RefreshRequested {
            generation: 0,
            reason: Some("no_token".into()),
            force: false,
        };
        let published = match self.conn().await {
            Ok(mut conn) => keyspace::publish(&mut conn, &self.keys, &slot.id, &event)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !published {
            warn!(id = %slot.id, "could not ask the fleet for a token");
        }
    }
}

impl EventSink for Inner {
    fn on_event(&self, id: &CredentialId, event: Event) {
        let Some(slot) = self.slots.load().get(id.as_str()).cloned() else {
            return;
        };
        match event {
            Event::Refreshed { generation, .. } => {
                slot.min_generation.fetch_max(generation, Ordering::AcqRel);
                if let Some(e) = slot.entry.load_full()
                    && e.token.generation() < generation
                {
                    slot.entry.store(Some(Arc::new(Entry {
                        stale: true,
                        ..Entry::clone(&e)
                    })));
                }
                slot.announced.send_replace(generation);
                // Prefetch, so the next reader hits the cache.
                if let (Some(me), Ok(rt)) =
                    (self.me.upgrade(), tokio::runtime::Handle::try_current())
                {
                    rt.spawn(async move {
                        let _ = me.fill(&slot).await;
                    });
                }
            }
            Event::Invalidated { generation } => {
                slot.min_generation
                    .fetch_max(generation + 1, Ordering::AcqRel);
                if slot
                    .entry
                    .load()
                    .as_ref()
                    .is_some_and(|e| e.token.generation() <= generation)
                {
                    slot.entry.store(None);
                }
                slot.announced.send_modify(|_| {});
            }
            Event::ReportRefused { generation, reason } => {
                *slot.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((generation, reason, Instant::now()));
                slot.announced.send_modify(|_| {});
            }
            _ => {}
        }
    }

    fn on_connection(&self, state: ConnectionState) {
        let session = match state {
            ConnectionState::Up { session } => session,
            ConnectionState::Down => 0,
        };
        self.session.store(session, Ordering::Release);
        self.connection.send_replace(state);
    }
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
