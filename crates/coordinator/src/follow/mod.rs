//! Follow mode (SPEC §12): a credential this fleet takes from another
//! fleet's watch endpoint instead of from WeChat. One replica at a time
//! follows it (under the credential's lock, held for as long as it
//! follows), commits what arrives through the fenced commit with the
//! primary's generation as the fence, forwards the reports its readers make,
//! and keeps the newest value to refill its Redis after a data loss. The
//! fleet never calls WeChat for it; `wxtoken promote` hands it to the
//! refresher on purpose.
//!
//! [`Keepers`] is where a replica puts every configured credential: a
//! followed one gets a follow task here, any other a turn in the refresher's
//! schedule. It is also an event sink: a followed credential's events
//! (reports, refresh requests) reach its task.

mod mirror;
mod report;
mod stream;
mod task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;
use wxtoken_client::events::{ConnectionState, EventSink};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::Event;

pub use stream::{Item, Value, WatchError, Watched};

use crate::config::{FollowConfig, RefreshConfig};
use crate::kind::Credential;
use crate::refresher::{LoopState, Schedule};
use crate::store::TokenStore;

/// Where a replica's configured credentials are kept: the schedule, or a
/// follow task.
#[derive(Clone)]
pub struct Keepers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keepers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keepers").finish_non_exhaustive()
    }
}

struct Inner {
    store: TokenStore,
    schedule: Arc<Schedule>,
    settings: RefreshConfig,
    replica_id: String,
    tasks: Mutex<HashMap<CredentialRef, Running>>,
    shutdown: watch::Receiver<bool>,
}

struct Running {
    nudges: mpsc::UnboundedSender<Nudge>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// What reaches a follow task besides its stream.
#[derive(Debug)]
enum Nudge {
    /// An event on the channel of the credential (or of one of the
    /// followed component's authorizers).
    Event(CredentialRef, Event),
    /// Look again (events resumed after a gap, the fleet's data was lost).
    Recheck,
    /// The primary's answer to a forwarded report carried a newer value.
    Value(CredentialRef, Value),
}

impl Keepers {
    pub fn new(
        store: TokenStore,
        schedule: Arc<Schedule>,
        settings: RefreshConfig,
        replica_id: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                schedule,
                settings,
                replica_id,
                tasks: Mutex::new(HashMap::new()),
                shutdown,
            }),
        }
    }

    /// Keeps `cred`: followed from its primary when it is followed (and not
    /// promoted), else refreshed from WeChat on the schedule.
    pub fn keep(&self, cred: Arc<Credential>) {
        match cred.follow.clone() {
            Some(follow) => self.follow(cred, follow),
            None => self.schedule(cred),
        }
    }

    /// Stops keeping `cref` (removed or redefined by a reload).
    pub fn forget(&self, cref: &CredentialRef) {
        self.inner.schedule.remove(cref);
        let running = lock(&self.inner.tasks).remove(cref);
        if let Some(r) = running {
            // The task releases its lock and ends by itself.
            r.stop.send_replace(true);
        }
    }

    /// Every follow task looks again (the fleet's data was lost).
    pub fn recheck_all(&self) {
        for r in lock(&self.inner.tasks).values() {
            let _ = r.nudges.send(Nudge::Recheck);
        }
    }

    /// Waits (up to `grace`, at most 1 s: the replica exits within 5 s)
    /// for every follow task to release its lock after the replica's
    /// shutdown was signalled.
    pub async fn drained(&self, grace: Duration) {
        let grace = grace.min(Duration::from_secs(1));
        let handles: Vec<JoinHandle<()>> = lock(&self.inner.tasks)
            .drain()
            .map(|(_, r)| {
                r.stop.send_replace(true);
                r.handle
            })
            .collect();
        let all = futures_util::future::join_all(handles);
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!("follow tasks did not stop within {grace:?}; their locks expire by themselves");
        }
    }

    /// Sends `nudge` to the task that keeps `cref`: its own, or its
    /// component's (a followed component's authorizers have none).
    fn nudge(&self, cref: &CredentialRef, nudge: Nudge) {
        let tasks = lock(&self.inner.tasks);
        let running = tasks.get(cref).or_else(|| {
            let (component, _) = cref.id.as_str().split_once('.')?;
            let id = wxtoken_common::CredentialId::parse(component).ok()?;
            tasks.get(&CredentialRef::token(id))
        });
        if let Some(r) = running {
            let _ = r.nudges.send(nudge);
        }
    }

    fn schedule(&self, cred: Arc<Credential>) {
        let state = LoopState::new(&cred, &self.inner.settings);
        self.inner.schedule.add(cred, state);
    }

    fn follow(&self, cred: Arc<Credential>, follow: Arc<FollowConfig>) {
        let (nudges, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let cref = cred.cref.clone();
        let task = task::Task::new(self.clone(), cred, follow, rx, stop_rx);
        let handle = tokio::spawn(task.run());
        let previous = lock(&self.inner.tasks).insert(
            cref,
            Running {
                nudges,
                stop,
                handle,
            },
        );
        if let Some(p) = previous {
            p.stop.send_replace(true);
        }
    }

    /// A follow task ends for good (promoted): its credential goes to the
    /// refresher's schedule.
    fn promoted(&self, cred: Arc<Credential>) {
        lock(&self.inner.tasks).remove(&cred.cref);
        self.schedule(cred);
    }
}

impl EventSink for Keepers {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        if !lock(&self.inner.tasks).is_empty() {
            self.nudge(cref, Nudge::Event(cref.clone(), event));
        }
    }

    fn on_connection(&self, state: ConnectionState) {
        if matches!(state, ConnectionState::Up { .. }) {
            self.recheck_all();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
