//! One timer queue per replica for every credential it keeps ([`Schedule`]):
//! each credential is a small [`LoopState`] and a deadline, and one driver
//! task runs the due ones' [`turn`]s, at most [`MAX_CONCURRENT_REFRESHES`]
//! at once. Events for a credential (the replica's one subscription) move
//! its deadline; credentials come and go at run time (authorizers).
//!
//! A task per credential cost ~3 KB each (future, timer, two watch
//! channels): 340 MB for 100 000 authorizers. Here a sleeping credential is
//! an entry of a map and of an ordered set. The schedule decides only *when*
//! a turn runs; what a turn does is `policy.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};
use wxtoken_client::events::{ConnectionState, EventSink};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::Event;

use super::policy::{LoopState, Refreshed, turn};
use super::{MAX_CONCURRENT_REFRESHES, Refresher};
use crate::kind::Credential;

/// After a wake-up of everything, how much later a credential with a parent
/// turns than the parents.
const CHILD_DELAY: Duration = Duration::from_millis(100);

/// Every credential of one replica and when each turns next.
#[derive(Debug)]
pub struct Schedule {
    /// A std mutex: held for map updates only, never across an `.await`.
    table: Mutex<Table>,
    /// Tells the driver to re-plan: a deadline moved earlier, or a turn ended.
    changed: Notify,
    events_up: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<u32, Entry>,
    ids: HashMap<CredentialRef, u32>,
    /// Deadlines of the entries that are not turning now.
    queue: BTreeSet<(Instant, u32)>,
    next_id: u32,
}

#[derive(Debug)]
struct Entry {
    cred: Arc<Credential>,
    /// `None` while its turn runs (the turn owns it then).
    state: Option<LoopState>,
    /// Its place in `queue` (while not turning).
    due: Option<Instant>,
    /// The deadline was set by an event (not planned by the last turn).
    by_event: bool,
    /// What arrived while its turn ran, applied when it ends.
    missed: Option<Missed>,
    /// Removed while its turn ran: dropped when it ends.
    removed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Missed {
    Event(Option<Refreshed>),
    Reread,
}

impl Schedule {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::default(),
            changed: Notify::new(),
            events_up: watch::channel(false).0,
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts keeping `cred` (its first turn is due at once); a credential
    /// already kept is left as it is.
    pub fn add(&self, cred: Arc<Credential>, state: LoopState) {
        let mut t = self.table();
        if t.ids.contains_key(&cred.cref) {
            return;
        }
        let id = t.next_id;
        t.next_id = t.next_id.wrapping_add(1);
        let now = Instant::now();
        t.ids.insert(cred.cref.clone(), id);
        t.entries.insert(
            id,
            Entry {
                cred,
                state: Some(state),
                due: Some(now),
                by_event: true,
                missed: None,
                removed: false,
            },
        );
        t.queue.insert((now, id));
        drop(t);
        self.changed.notify_one();
    }

    /// Stops keeping `cref` (a turn running now finishes first).
    pub fn remove(&self, cref: &CredentialRef) -> bool {
        let mut t = self.table();
        let Some(id) = t.ids.remove(cref) else {
            return false;
        };
        let due = t.entries.get(&id).and_then(|e| e.due);
        if let Some(due) = due {
            t.queue.remove(&(due, id));
        }
        match t.entries.get_mut(&id) {
            Some(e) if e.state.is_none() => e.removed = true,
            _ => {
                t.entries.remove(&id);
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.table().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, cref: &CredentialRef) -> bool {
        self.table().ids.contains_key(cref)
    }

    /// True while the event subscription is up.
    pub fn events_up(&self) -> bool {
        *self.events_up.borrow()
    }

    /// Every credential looks at Redis again at once (events may have been
    /// missed, or Redis lost its data).
    pub fn wake_all(&self) {
        let now = Instant::now();
        let mut t = self.table();
        // Credentials others fetch with (a component token) go first, so
        // their dependants do not fail for want of a parent value.
        let ids: Vec<(u32, bool)> = t
            .entries
            .iter()
            .map(|(id, e)| (*id, e.cred.kind.parent().is_some()))
            .collect();
        for (id, child) in ids {
            let at = if child { now + CHILD_DELAY } else { now };
            t.touch(id, Missed::Reread, at);
        }
        drop(t);
        self.changed.notify_one();
    }

    /// `cref` looks at Redis again at once (its state changed: imported,
    /// re-authorized).
    pub fn reread(&self, cref: &CredentialRef) {
        let mut t = self.table();
        let Some(&id) = t.ids.get(cref) else {
            return;
        };
        t.touch(id, Missed::Reread, Instant::now());
        drop(t);
        self.changed.notify_one();
    }

    fn wake(&self, cref: &CredentialRef, refreshed: Option<Refreshed>) {
        let mut t = self.table();
        let Some(&id) = t.ids.get(cref) else {
            return;
        };
        let earlier = t.touch(id, Missed::Event(refreshed), Instant::now());
        drop(t);
        if earlier {
            self.changed.notify_one();
        }
    }

    /// Runs due turns until `shutdown` turns true; then cancels the turns
    /// running (their locks are released by the replica's shutdown).
    pub async fn run(
        self: Arc<Self>,
        refresher: Arc<Refresher>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut turns: JoinSet<(u32, LoopState, Instant)> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, u32> = HashMap::new();
        while !*shutdown.borrow() {
            let events_up = self.events_up();
            let next = self.start_due(&refresher, &mut turns, &mut running, events_up);
            let sleep = next.map(tokio::time::Instant::from_std);
            tokio::select! {
                done = turns.join_next_with_id(), if !turns.is_empty() => match done {
                    Some(Ok((task, (id, state, at)))) => {
                        running.remove(&task);
                        self.finish(id, state, at);
                    }
                    Some(Err(e)) => {
                        // A turn that panicked loses its state: start it over.
                        warn!(error = %e, "a refresh turn failed; restarting its credential");
                        if let Some(id) = running.remove(&e.id()) {
                            self.restart(id, &refresher);
                        }
                    }
                    None => {}
                },
                _ = sleep_until(sleep) => {}
                _ = self.changed.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        turns.abort_all();
        while turns.join_next().await.is_some() {}
        debug!("schedule stopped");
    }

    /// Starts the turns that are due while there is room; returns the next
    /// deadline to wake for (`None`: full, or nothing queued).
    fn start_due(
        &self,
        refresher: &Arc<Refresher>,
        turns: &mut JoinSet<(u32, LoopState, Instant)>,
        running: &mut HashMap<tokio::task::Id, u32>,
        events_up: bool,
    ) -> Option<Instant> {
        let now = Instant::now();
        let mut t = self.table();
        while turns.len() < MAX_CONCURRENT_REFRESHES {
            let &(at, id) = t.queue.first()?;
            if at > now {
                return Some(at);
            }
            t.queue.pop_first();
            let Some(entry) = t.entries.get_mut(&id) else {
                continue;
            };
            entry.due = None;
            let Some(mut state) = entry.state.take() else {
                continue;
            };
            if !std::mem::take(&mut entry.by_event) {
                state.on_timer(events_up);
            }
            let cred = entry.cred.clone();
            let refresher = refresher.clone();
            let handle = turns.spawn(async move {
                let next = turn(&refresher, &cred, &mut state, events_up).await;
                (id, state, next)
            });
            running.insert(handle.id(), id);
        }
        None
    }

    /// A turn ended: its state goes back with its next deadline (now, if
    /// an event came meanwhile).
    fn finish(&self, id: u32, mut state: LoopState, at: Instant) {
        let mut t = self.table();
        let Some(entry) = t.entries.get_mut(&id) else {
            return;
        };
        if entry.removed {
            t.entries.remove(&id);
            return;
        }
        let (due, by_event) = match entry.missed.take() {
            Some(Missed::Event(r)) => (state.on_event(r), true),
            Some(Missed::Reread) => {
                state.reread();
                (Instant::now(), true)
            }
            None => (at, false),
        };
        entry.state = Some(state);
        entry.due = Some(due);
        entry.by_event = by_event;
        t.queue.insert((due, id));
    }

    /// A turn panicked: its credential starts over in a second.
    fn restart(&self, id: u32, refresher: &Refresher) {
        let mut t = self.table();
        let due = Instant::now() + Duration::from_secs(1);
        let Some(entry) = t.entries.get_mut(&id) else {
            return;
        };
        if entry.removed {
            t.entries.remove(&id);
            return;
        }
        entry.state = Some(LoopState::new(&entry.cred, refresher.settings()));
        entry.due = Some(due);
        entry.by_event = true;
        entry.missed = None;
        t.queue.insert((due, id));
    }
}

impl Table {
    /// Applies an event (or a re-read) to entry `id`: at once if it is idle,
    /// else when its turn ends. True when its deadline moved earlier.
    fn touch(&mut self, id: u32, what: Missed, now: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        let Some(state) = entry.state.as_mut() else {
            // Turning now: the latest news wins, a re-read beats an event.
            entry.missed = match (entry.missed, what) {
                (Some(Missed::Reread), _) => Some(Missed::Reread),
                (_, w) => Some(w),
            };
            return false;
        };
        let at = match what {
            Missed::Event(r) => state.on_event(r),
            Missed::Reread => {
                state.reread();
                now
            }
        };
        let old = entry.due;
        // An event brings a turn forward, never back: a due refresh stays due.
        let at = old.map_or(at, |o| o.min(at));
        entry.due = Some(at);
        entry.by_event = true;
        if let Some(old) = old {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((at, id));
        old.is_none_or(|o| at < o)
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl EventSink for Schedule {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        let refreshed = match event {
            // The registry's news, on a component's channel: not about the
            // component token.
            Event::Authorizer { .. } => return,
            Event::Refreshed {
                generation,
                ttl_ms,
                filled,
                ..
            } if ttl_ms > 0 => Some(Refreshed {
                generation,
                ttl: Duration::from_millis(ttl_ms),
                filled,
                at: Instant::now(),
            }),
            _ => None,
        };
        self.wake(cref, refreshed);
    }

    fn on_connection(&self, state: ConnectionState) {
        self.events_up
            .send_replace(matches!(state, ConnectionState::Up { .. }));
        // Up after a gap: events may have been missed. Down: turns must fall
        // back to polling. Either way every credential re-reads now.
        self.wake_all();
    }
}
