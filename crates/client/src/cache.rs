//! The cache behind [`crate::TokenClient`]: one line per credential (id +
//! slot), kept coherent by the event subscription, refilled from Redis in
//! one coalesced round trip.
//!
//! Hot path: a lock-free lookup (`ArcSwap` map per slot → `ArcSwapOption`
//! entry) and a clock read; no lock, no shared counter, no allocation. An
//! entry is served while the value has life left and either the event
//! subscription has been up since the entry was read (then any change would
//! have been announced) or it was checked less than `max_staleness` ago.
//!
//! Events: `refreshed` marks the entry stale and prefetches the new value;
//! `invalidated` drops it; `report_refused` is remembered for waiters of a
//! verdict. When Redis is unreachable the cached value is served until its
//! real expiry (less `expiry_margin`), then [`ClientError::Unavailable`].
//! This module never calls WeChat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;
use tracing::{debug, warn};
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, CredentialRef, Keys, Slot, SlotKeys};

use crate::connect::{PooledConn, RedisPool};
use crate::error::ClientError;
use crate::events::{ConnectionState, EventSink};
use crate::keyspace;
use crate::token::Token;

/// Timing of a client.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) command_timeout: Duration,
    pub(crate) token_wait: Duration,
    pub(crate) max_staleness: Duration,
    pub(crate) expiry_margin: Duration,
}

/// One map of lines per slot: the hot path (the access token) indexes by
/// `&str` without allocating, and never looks at the other slots.
type Lines = ArcSwap<HashMap<CredentialId, Arc<Line>>>;

pub(crate) struct Inner {
    pub(crate) me: Weak<Inner>,
    /// Multiplexed connections (any topology); misses share them.
    pub(crate) pool: RedisPool,
    pub(crate) keys: Keys,
    /// Read on every call, written once per new credential: copy-on-write
    /// behind an `ArcSwap` keeps reads free of locks and shared writes.
    pub(crate) lines: [Lines; Slot::ALL.len()],
    /// Serialises the rare copy-on-write inserts into `lines`.
    pub(crate) lines_write: Mutex<()>,
    /// Current subscription session (0 = down). Entries read in this session
    /// are kept current by events; others expire after `max_staleness`.
    pub(crate) session: AtomicU64,
    pub(crate) connection: watch::Sender<ConnectionState>,
    pub(crate) settings: Settings,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// One credential's cache line.
pub(crate) struct Line {
    pub(crate) cref: CredentialRef,
    /// Its Redis keys, built once.
    pub(crate) keys: SlotKeys,
    pub(crate) entry: ArcSwapOption<Entry>,
    /// The lowest generation still acceptable: raised by events so a read
    /// that raced an event cannot put an older value back.
    pub(crate) min_generation: AtomicU64,
    /// Highest generation announced by events; waiters are woken on change.
    pub(crate) announced: watch::Sender<u64>,
    /// Coalesces misses: one Redis read per credential at a time.
    fill: tokio::sync::Mutex<()>,
    /// Last `refresh_requested` publication (rate limit). Never held across `.await`.
    last_request: Mutex<Option<Instant>>,
    /// The last `report_refused` event: (generation, reason, when it came).
    /// Waiters for a verdict read it after `announced` wakes them. Never
    /// held across `.await`.
    refused: Mutex<Option<(u64, String, Instant)>>,
    /// When this process last reported a value of this credential.
    pub(crate) reported_at: Mutex<Option<Instant>>,
}

impl Line {
    /// The reason the fleet refused a report of `generation` after `since`, if it did.
    pub(crate) fn refusal_of(&self, generation: u64, since: Instant) -> Option<String> {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused
            .as_ref()
            .filter(|(g, _, at)| *g == generation && *at >= since)
            .map(|(_, r, _)| r.clone())
    }
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) token: Token,
    /// When Redis last confirmed (or was last tried for) this entry.
    checked_at: Instant,
    /// Subscription session the entry was read in.
    session: u64,
    /// A newer generation was announced: revalidate before serving, but keep
    /// the value as a fallback while Redis is unreachable.
    stale: bool,
}

pub(crate) fn unavailable(id: &str, reason: &str) -> ClientError {
    ClientError::Unavailable {
        id: id.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Inner {
    /// A pooled connection (bounded by the pool's wait and create timeouts).
    pub(crate) async fn conn(&self) -> Result<PooledConn, ClientError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable("-", &e.to_string()))
    }

    pub(crate) fn fresh(&self, e: &Entry, now: Instant) -> bool {
        if e.stale || now + self.settings.expiry_margin >= e.token.expires_at() {
            return false;
        }
        let session = self.session.load(Ordering::Acquire);
        (session != 0 && e.session == session)
            || now.duration_since(e.checked_at) < self.settings.max_staleness
    }

    /// The cached value of `id` in `slot`, if it may be served. Never blocks.
    pub(crate) fn cached(&self, slot: Slot, id: &str) -> Option<Token> {
        let lines = self.lines[slot.index()].load();
        let entry = lines.get(id)?.entry.load();
        let entry = entry.as_ref()?;
        self.fresh(entry, Instant::now())
            .then(|| entry.token.clone())
    }

    /// The line of `id` in `slot`, created on first use.
    pub(crate) fn line(&self, slot: Slot, id: &str) -> Result<Arc<Line>, ClientError> {
        let map = &self.lines[slot.index()];
        if let Some(line) = map.load().get(id) {
            return Ok(line.clone());
        }
        let id = CredentialId::parse(id)?;
        let _w = self.lines_write.lock().unwrap_or_else(|p| p.into_inner());
        let current = map.load_full();
        if let Some(line) = current.get(id.as_str()) {
            return Ok(line.clone());
        }
        let cref = CredentialRef {
            id: id.clone(),
            slot,
        };
        let line = Arc::new(Line {
            keys: self.keys.slot(&cref),
            cref,
            entry: ArcSwapOption::empty(),
            min_generation: AtomicU64::new(0),
            announced: watch::channel(0).0,
            fill: tokio::sync::Mutex::new(()),
            last_request: Mutex::new(None),
            refused: Mutex::new(None),
            reported_at: Mutex::new(None),
        });
        let mut next = HashMap::clone(&current);
        next.insert(id, line.clone());
        map.store(Arc::new(next));
        Ok(line)
    }

    /// Returns a servable value (newer than `generation` if given), reading
    /// Redis and waiting for events as needed, at most `wait`.
    pub(crate) async fn newer_than(
        &self,
        line: &Arc<Line>,
        generation: Option<u64>,
        wait: Duration,
    ) -> Result<Token, ClientError> {
        let wanted = |t: &Token| generation.is_none_or(|g| t.generation() > g);
        // The common miss: one read, no waiting, nothing subscribed.
        if let Ok(Some(t)) = self.fill(line).await
            && wanted(&t)
        {
            return Ok(t);
        }
        let deadline = Instant::now() + wait;
        // Subscribe before re-reading, so an event between the read and the
        // wait cannot be missed.
        let mut announced = line.announced.subscribe();
        let mut connection = self.connection.subscribe();
        let name = line.cref.to_string();
        loop {
            match self.fill(line).await {
                Ok(Some(t)) if wanted(&t) => return Ok(t),
                Ok(Some(_)) => {}
                Ok(None) => self.request_refresh(line).await,
                Err(e) if generation.is_none() => return Err(e),
                Err(e) => debug!(credential = %name, error = %e, "waiting for a newer value"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(match generation {
                    Some(g) => ClientError::NoNewerToken {
                        id: name,
                        generation: g,
                        waited: wait,
                    },
                    None => unavailable(
                        &name,
                        "nothing is stored and nothing arrived in time (is a coordinator running?)",
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

    /// One coalesced read of `line` from Redis, unless the cache is fresh.
    /// `Ok(None)`: nothing stored.
    pub(crate) async fn fill(&self, line: &Line) -> Result<Option<Token>, ClientError> {
        let _one_at_a_time = line.fill.lock().await;
        let cached = line.entry.load_full();
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
                Err(e) => return self.fallback(line, cached, &e.to_string()),
            };
            let stored = match keyspace::read_value(&mut conn, &line.keys).await {
                Ok(stored) => stored,
                Err(e) => return self.fallback(line, cached, &format!("redis: {e}")),
            };
            let Some(stored) = stored else {
                line.entry.store(None);
                return Ok(None);
            };
            if stored.generation < line.min_generation.load(Ordering::Acquire) {
                // This read raced an event announcing a newer value: read again.
                continue;
            }
            let token = Token::new(&stored.value, sent + stored.ttl, stored.generation);
            let entry = Entry {
                token: token.clone(),
                checked_at: sent,
                session,
                stale: false,
            };
            line.entry.store(Some(Arc::new(entry.clone())));
            if stored.generation < line.min_generation.load(Ordering::Acquire) {
                // An event arrived between the check above and the store.
                line.entry.store(Some(Arc::new(Entry {
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

    /// Redis failed: serve the cached value until its real expiry.
    fn fallback(
        &self,
        line: &Line,
        cached: Option<Arc<Entry>>,
        reason: &str,
    ) -> Result<Option<Token>, ClientError> {
        let now = Instant::now();
        match cached {
            Some(e) if now + self.settings.expiry_margin < e.token.expires_at() => {
                debug!(credential = %line.cref, reason, "redis unreachable; serving the cached value");
                // Do not ask again on every call: trust it for another max_staleness.
                line.entry.store(Some(Arc::new(Entry {
                    checked_at: now,
                    session: 0,
                    ..Entry::clone(&e)
                })));
                Ok(Some(e.token.clone()))
            }
            _ => Err(unavailable(&line.cref.to_string(), reason)),
        }
    }

    /// Asks the fleet for a value (at most once a second per credential).
    async fn request_refresh(&self, line: &Line) {
        let due = {
            let mut last = line.last_request.lock().unwrap_or_else(|p| p.into_inner());
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
            Ok(mut conn) => keyspace::publish(&mut conn, &self.keys, &line.cref, &event)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !published {
            warn!(credential = %line.cref, "could not ask the fleet for a value");
        }
    }
}

impl EventSink for Inner {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        let Some(line) = self.lines[cref.slot.index()]
            .load()
            .get(cref.id.as_str())
            .cloned()
        else {
            return;
        };
        match event {
            Event::Refreshed { generation, .. } => {
                line.min_generation.fetch_max(generation, Ordering::AcqRel);
                if let Some(e) = line.entry.load_full()
                    && e.token.generation() < generation
                {
                    line.entry.store(Some(Arc::new(Entry {
                        stale: true,
                        ..Entry::clone(&e)
                    })));
                }
                line.announced.send_replace(generation);
                // Prefetch, so the next reader hits the cache.
                if let (Some(me), Ok(rt)) =
                    (self.me.upgrade(), tokio::runtime::Handle::try_current())
                {
                    rt.spawn(async move {
                        let _ = me.fill(&line).await;
                    });
                }
            }
            Event::Invalidated { generation } => {
                line.min_generation
                    .fetch_max(generation + 1, Ordering::AcqRel);
                if line
                    .entry
                    .load()
                    .as_ref()
                    .is_some_and(|e| e.token.generation() <= generation)
                {
                    line.entry.store(None);
                }
                line.announced.send_modify(|_| {});
            }
            Event::ReportRefused { generation, reason } => {
                *line.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((generation, reason, Instant::now()));
                line.announced.send_modify(|_| {});
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
