//! One followed credential on one replica: wait for its lock, hold it,
//! watch the primary, commit what arrives, and go back to waiting when the
//! lock or the stream is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use wxtoken_common::wire::Event;

use super::stream::{self, Item, Items, Value, WatchError};
use super::{Keepers, Nudge};
use crate::config::FollowConfig;
use crate::kind::Credential;
use crate::store::{Commit, Grant, Hold, LockOwner, Received, StoreError};

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
    /// The newest value received: refills Redis after a data loss.
    last: Option<Value>,
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
        Self {
            keepers,
            cred,
            follow,
            http,
            owner,
            last: None,
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
            // once, so this task can refill Redis and forward reports.
            let since = self.last.as_ref().map(|v| v.generation);
            // Connecting may take the connect timeout: a stop does not wait.
            let opened = tokio::select! {
                opened = stream::open(&http, &self.follow, &cref, since) => opened,
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
        loop {
            tokio::select! {
                item = items.next() => match item {
                    Some(Ok(Item::Value(v))) => self.received(grant, v).await,
                    Some(Ok(Item::Unavailable(why))) => {
                        self.show(&format!("connected; the primary has no value: {why}"), None).await;
                    }
                    Some(Err(e)) => return Exit::Broken(e),
                    None => return Exit::Broken(WatchError::Closed),
                },
                _ = renew.tick() => {
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
                    Some(Nudge::Value(v)) => self.received(grant, v).await,
                    Some(Nudge::Event(Event::Reported { generation })) => self.forward(http, generation),
                    Some(Nudge::Event(Event::RefreshRequested { reason, .. })) => {
                        if reason.as_deref() == Some("promoted") && self.is_promoted().await {
                            return Exit::Promoted;
                        }
                        self.recheck(grant).await;
                    }
                    Some(Nudge::Event(Event::Invalidated { .. }) | Nudge::Recheck) => self.recheck(grant).await,
                    Some(Nudge::Event(_)) => {}
                    None => return Exit::Stop,
                },
                _ = self.stop.changed() => return Exit::Stop,
                _ = shutdown(&self.keepers) => return Exit::Stop,
            }
        }
    }

    /// Commits a value from the primary (its generation is the fence).
    async fn received(&mut self, grant: &mut Grant, v: Value) {
        if self
            .last
            .as_ref()
            .is_some_and(|l| l.generation > v.generation)
        {
            return;
        }
        let lag = v.lag;
        self.last = Some(v);
        let started = Instant::now();
        match self.commit_last(grant).await {
            Ok(Some(generation)) => {
                info!(credential = %self.cred.cref, generation, lag_ms = lag.map(|l| l.as_millis() as u64), "followed: stored the primary's value");
                crate::metrics::refresh(&self.cred, "followed");
                self.show("connected", lag.map(|l| l + started.elapsed()))
                    .await;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(credential = %self.cred.cref, error = %e, "could not store the primary's value; kept to store again")
            }
        }
    }

    /// Stores the newest value received; after an epoch change (Redis lost
    /// its data) begins again and stores it into the new dataset. `Some`:
    /// the generation stored now.
    async fn commit_last(&self, grant: &mut Grant) -> Result<Option<u64>, StoreError> {
        let Some(v) = &self.last else {
            return Ok(None);
        };
        if v.expires <= Instant::now() {
            return Ok(None);
        }
        let received = Received {
            value: &v.value,
            generation: v.generation,
            expires: v.expires,
        };
        for _ in 0..2 {
            let replica = &self.keepers.inner.replica_id;
            match self
                .store()
                .follow_commit(&self.cred.cref, grant, &self.owner, replica, &received)
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

    /// After a data loss (or a lapsed lock): the value received before goes
    /// back into Redis at once, with no call to anyone.
    async fn refill(&self, grant: &mut Grant) {
        match self.commit_last(grant).await {
            Ok(Some(generation)) => {
                info!(credential = %self.cred.cref, generation, "follow: stored the last value received again (redis had lost it)");
            }
            Ok(None) => {}
            Err(e) => debug!(credential = %self.cred.cref, error = %e, "follow refill failed"),
        }
    }

    /// An event said the value may be gone: refill if it is.
    async fn recheck(&self, grant: &mut Grant) {
        let stored = self.stored_generation().await;
        let newest = self.last.as_ref().map(|v| v.generation);
        if newest.is_some() && stored < newest {
            // The lock may have gone with the data: take it again first.
            let _ = self
                .store()
                .follow_hold(
                    &self.cred.cref,
                    &self.owner,
                    self.keepers.inner.settings.lock_ttl,
                )
                .await;
            self.refill(grant).await;
        }
    }

    /// The generation of the value stored here, if one lives.
    async fn stored_generation(&self) -> Option<u64> {
        match self.store().peek(&self.cred.cref).await {
            Ok(p) if p.token_ttl.is_some() && p.generation > 0 => Some(p.generation),
            _ => None,
        }
    }

    fn forward(&self, http: &reqwest::Client, generation: u64) {
        let Some(v) = &self.last else {
            return;
        };
        if v.generation != generation {
            return;
        }
        super::report::forward(
            self.keepers.clone(),
            http.clone(),
            self.cred.clone(),
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
