//! One followed credential on one replica — or a followed component with
//! all its authorizers, over one stream: wait for its lock, hold it, watch
//! the primary, commit what arrives, and go back to waiting when the lock
//! or the stream is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::Event;

mod component;
mod refill;

use super::mirror::Mirror;
use super::stream::{self, Item, Items, Value, WatchError, Watched};
use super::{Keepers, Nudge};
use crate::config::FollowConfig;
use crate::kind::{Credential, Family};
use crate::store::{Commit, Grant, Hold, LockOwner, Received, StoreError};
use component::commit_authorizer;

/// The first wait after a failed connection; doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// After the primary refused the key or the id: an operator fixes that.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

pub(super) struct Task {
    keepers: Keepers,
    cred: Arc<Credential>,
    follow: Arc<FollowConfig>,
    http: Option<reqwest::Client>,
    owner: LockOwner,
    watched: Watched,
    /// The newest value received of each credential: refills Redis after a
    /// data loss.
    last: HashMap<CredentialRef, Value>,
    /// A followed component's authorizers: the grant each commit is made
    /// under (its epoch), taken once under the authorizer's own lock.
    grants: HashMap<CredentialRef, Grant>,
    /// A followed component's registry.
    mirror: Option<Mirror>,
    /// A followed component's authorizers whose snapshot values are kept,
    /// not committed yet (`component::flush_snapshot`).
    unsynced: Vec<CredentialRef>,
    /// The lag of the last snapshot value kept.
    lag: Option<Duration>,
    nudges: mpsc::UnboundedReceiver<Nudge>,
    stop: watch::Receiver<bool>,
    /// The last state written for status (written again only when it changes).
    shown: String,
}

/// Why the stream was left.
enum Exit {
    Stop,
    /// Another replica holds the lock now.
    Lost,
    Promoted,
    Broken(WatchError),
}

impl Task {
    pub(super) fn new(
        keepers: Keepers,
        cred: Arc<Credential>,
        follow: Arc<FollowConfig>,
        nudges: mpsc::UnboundedReceiver<Nudge>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let http = match client(&follow) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(credential = %cred.cref, primary = %follow.url, error = %e, "cannot build the client for the primary: not following");
                None
            }
        };
        let owner = LockOwner::new(&keepers.inner.replica_id);
        let (watched, mirror) = if cred.kind.describe().family == Family::Component {
            let id = cred.cref.id.clone();
            (Watched::Component(id.clone()), Some(Mirror::new(id)))
        } else {
            (Watched::One(cred.cref.clone()), None)
        };
        Self {
            keepers,
            cred,
            follow,
            http,
            owner,
            watched,
            last: HashMap::new(),
            grants: HashMap::new(),
            mirror,
            unsynced: Vec::new(),
            lag: None,
            nudges,
            stop,
            shown: String::new(),
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow() || *self.keepers.inner.shutdown.borrow()
    }

    pub(super) async fn run(mut self) {
        let Some(http) = self.http.clone() else {
            return;
        };
        let cref = self.cred.cref.clone();
        let lock_ttl = self.keepers.inner.settings.lock_ttl;
        let mut retry = RETRY_MIN;
        let mut holding = false;
        while !self.stopping() {
            if self.is_promoted().await {
                self.hand_over(holding).await;
                return;
            }
            match self.store().follow_hold(&cref, &self.owner, lock_ttl).await {
                Ok(Hold::Elsewhere) => {
                    holding = false;
                    self.pause(lock_ttl / 3).await;
                    continue;
                }
                Ok(_) => holding = true,
                Err(e) => {
                    debug!(credential = %cref, error = %e, "follow lock: redis unavailable");
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let Some(mut grant) = self.begin().await else {
                self.pause(Duration::from_secs(1)).await;
                continue;
            };
            self.refill(&mut grant).await;
            // Resume after the newest value this task holds; without one
            // (a replica that just took over) the current value comes at
            // once, so this task can refill Redis and forward reports. A
            // component's watch starts with its whole snapshot.
            let since = match &self.watched {
                Watched::One(c) => self.last.get(c).map(|v| v.generation),
                Watched::Component(_) => None,
            };
            if let Some(m) = &mut self.mirror {
                m.opened();
            }
            // Connecting may take the connect timeout: a stop does not wait.
            let opened = tokio::select! {
                opened = stream::open(&http, &self.follow, &self.watched, since) => opened,
                _ = self.stop.changed() => break,
                _ = shutdown(&self.keepers) => break,
            };
            let exit = match opened {
                Ok(items) => {
                    retry = RETRY_MIN;
                    crate::metrics::follow_connected(&self.cred, true);
                    self.show("connected", None).await;
                    info!(credential = %cref, primary = %self.follow.url, since, "following");
                    self.pump(items, &mut grant, &http).await
                }
                Err(e) => Exit::Broken(e),
            };
            match exit {
                Exit::Stop => break,
                Exit::Lost => holding = false,
                Exit::Promoted => {
                    self.hand_over(holding).await;
                    return;
                }
                Exit::Broken(e) => {
                    let wait = if e.is_refusal() { RETRY_REFUSED } else { retry };
                    retry = (retry * 2).min(RETRY_MAX);
                    warn!(credential = %cref, primary = %self.follow.url, error = %e, retry_in = ?wait, "not following");
                    crate::metrics::follow_connected(&self.cred, false);
                    self.show(&format!("disconnected: {e}"), None).await;
                    // Still the one that follows: the lock is kept while
                    // waiting (the replicas do not take turns at a dead
                    // primary).
                    let until = tokio::time::Instant::now() + wait;
                    while !self.stopping() && tokio::time::Instant::now() < until {
                        let left = until - tokio::time::Instant::now();
                        self.pause(left.min(lock_ttl / 3)).await;
                        let _ = self.store().follow_hold(&cref, &self.owner, lock_ttl).await;
                        // A dead primary is when an operator promotes: the
                        // hand-over does not wait out the back-off.
                        if self.is_promoted().await {
                            break;
                        }
                    }
                }
            }
        }
        if holding {
            let _ = self.store().release(&cref, &self.owner).await;
        }
        debug!(credential = %cref, "follow task stopped");
    }

    fn store(&self) -> &crate::store::TokenStore {
        &self.keepers.inner.store
    }

    async fn begin(&self) -> Option<Grant> {
        match self.store().begin(&self.cred.cref, &self.owner).await {
            Ok(g) => g,
            Err(e) => {
                debug!(credential = %self.cred.cref, error = %e, "follow begin failed");
                None
            }
        }
    }

    /// Reads the stream until it breaks, the lock is lost or the task stops.
    async fn pump(&mut self, mut items: Items, grant: &mut Grant, http: &reqwest::Client) -> Exit {
        let lock_ttl = self.keepers.inner.settings.lock_ttl;
        let mut renew = tokio::time::interval(lock_ttl / 3);
        renew.tick().await;
        // A component's stream starts with its snapshot: those values are
        // committed in batches, the live ones after `synced` one by one.
        let mut snapshot = self.mirror.is_some();
        self.unsynced.clear();
        loop {
            tokio::select! {
                item = items.next() => match item {
                    Some(Ok(Item::Value(cref, v))) if snapshot && cref != self.cred.cref => {
                        self.snapshot_value(cref, v).await;
                    }
                    Some(Ok(Item::Value(cref, v))) => self.received(grant, &cref, v).await,
                    Some(Ok(Item::Unavailable(why))) => {
                        self.show(&format!("connected; the primary has no value: {why}"), None).await;
                    }
                    Some(Ok(Item::Authorizer { appid, active })) => self.authorizer(&appid, active, snapshot).await,
                    Some(Ok(Item::Synced)) => {
                        self.flush_snapshot().await;
                        snapshot = false;
                        self.synced().await;
                    }
                    Some(Err(e)) => {
                        self.flush_snapshot().await;
                        return Exit::Broken(e);
                    }
                    None => {
                        self.flush_snapshot().await;
                        return Exit::Broken(WatchError::Closed);
                    }
                },
                _ = renew.tick() => {
                    // A snapshot that stalls does not hold back what came.
                    self.flush_snapshot().await;
                    match self.store().follow_hold(&self.cred.cref, &self.owner, lock_ttl).await {
                        Ok(Hold::Extended) => {}
                        // The lock was gone (a data loss, or it lapsed): a new begin.
                        Ok(Hold::Taken) => {
                            if let Some(g) = self.begin().await {
                                *grant = g;
                                self.refill(grant).await;
                            }
                        }
                        Ok(Hold::Elsewhere) => return Exit::Lost,
                        Err(e) => debug!(credential = %self.cred.cref, error = %e, "follow lock renewal failed"),
                    }
                    if self.is_promoted().await {
                        return Exit::Promoted;
                    }
                }
                nudge = self.nudges.recv() => match nudge {
                    Some(Nudge::Value(cref, v)) => self.received(grant, &cref, v).await,
                    Some(Nudge::Event(cref, Event::Reported { generation })) => self.forward(http, &cref, generation),
                    Some(Nudge::Event(cref, Event::RefreshRequested { reason, .. })) => {
                        if reason.as_deref() == Some("promoted") && self.is_promoted().await {
                            return Exit::Promoted;
                        }
                        self.recheck(grant, &cref).await;
                    }
                    Some(Nudge::Event(cref, Event::Invalidated { .. })) => self.recheck(grant, &cref).await,
                    Some(Nudge::Recheck) => self.recheck_all(grant).await,
                    Some(Nudge::Event(..)) => {}
                    None => return Exit::Stop,
                },
                _ = self.stop.changed() => return Exit::Stop,
                _ = shutdown(&self.keepers) => return Exit::Stop,
            }
        }
    }

    /// Commits a value from the primary (its generation is the fence).
    async fn received(&mut self, grant: &mut Grant, cref: &CredentialRef, v: Value) {
        if self
            .last
            .get(cref)
            .is_some_and(|l| l.generation > v.generation)
        {
            return;
        }
        let lag = v.lag;
        self.last.insert(cref.clone(), v);
        let started = Instant::now();
        match self.commit_last(grant, cref).await {
            Ok(Some(generation)) => {
                let lag_ms = lag.map(|l| l.as_millis() as u64);
                if cref == &self.cred.cref {
                    info!(credential = %cref, generation, lag_ms, "followed: stored the primary's value");
                    crate::metrics::refresh(&self.cred, "followed");
                } else {
                    debug!(credential = %cref, generation, lag_ms, "followed: stored the primary's value");
                }
                self.show("connected", lag.map(|l| l + started.elapsed()))
                    .await;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(credential = %cref, error = %e, "could not store the primary's value; kept to store again")
            }
        }
    }

    /// Stores the newest value received of `cref`; after an epoch change
    /// (Redis lost its data) begins again and stores it into the new
    /// dataset. `Some`: the generation stored now.
    async fn commit_last(
        &mut self,
        grant: &mut Grant,
        cref: &CredentialRef,
    ) -> Result<Option<u64>, StoreError> {
        let Some(v) = self.last.get(cref) else {
            return Ok(None);
        };
        if v.expires <= Instant::now() {
            return Ok(None);
        }
        if cref != &self.cred.cref {
            let (g, stored) =
                commit_authorizer(self.authorizers(), cref, v, self.grants.get(cref).cloned())
                    .await;
            self.keep_grant(cref, g);
            return stored;
        }
        for _ in 0..2 {
            let Some(v) = self.last.get(cref) else {
                return Ok(None);
            };
            let received = Received {
                value: &v.value,
                generation: v.generation,
                expires: v.expires,
            };
            let replica = &self.keepers.inner.replica_id;
            match self
                .store()
                .follow_commit(cref, grant, &self.owner, replica, &received, true)
                .await?
            {
                Commit::Stored { generation, .. } => return Ok(Some(generation)),
                Commit::EpochChanged => match self.begin().await {
                    Some(g) => *grant = g,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    fn forward(&self, http: &reqwest::Client, cref: &CredentialRef, generation: u64) {
        let Some(v) = self.last.get(cref) else {
            return;
        };
        if v.generation != generation {
            return;
        }
        super::report::forward(
            self.keepers.clone(),
            http.clone(),
            cref.clone(),
            self.follow.clone(),
            v,
        );
    }

    async fn is_promoted(&self) -> bool {
        matches!(self.store().promoted(&self.cred.cref.id).await, Ok(Some(_)))
    }

    async fn hand_over(&self, holding: bool) {
        if holding {
            let _ = self.store().release(&self.cred.cref, &self.owner).await;
        }
        warn!(credential = %self.cred.cref, primary = %self.follow.url, "promoted: no longer following; refreshed from WeChat from now on (remove `follow` from the config)");
        self.keepers.promoted(self.cred.clone());
    }

    /// Writes the state status shows, when it changed (or a lag is new).
    async fn show(&mut self, state: &str, lag: Option<Duration>) {
        if self.shown == state && lag.is_none() {
            return;
        }
        match self
            .store()
            .follow_state(&self.cred.cref, &self.follow.url, state, lag)
            .await
        {
            Ok(()) => self.shown = state.to_owned(),
            Err(e) => {
                debug!(credential = %self.cred.cref, error = %e, "could not record the follow state")
            }
        }
    }

    /// Waits `d`, or less when nudged or stopped.
    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.nudges.recv() => {}
            _ = self.stop.changed() => {}
            _ = shutdown(&self.keepers) => {}
        }
    }
}

async fn shutdown(keepers: &Keepers) {
    let mut rx = keepers.inner.shutdown.clone();
    let _ = rx.wait_for(|s| *s).await;
}

/// The client for the primary: its own CA when configured.
fn client(follow: &FollowConfig) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &follow.ca {
        for cert in crate::config::load_ca(ca)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| e.to_string())
}
