//! Turns the event subscription into per-credential wake-ups for the
//! refresh loops.
//!
//! Each credential gets a `watch` channel whose value changes on every event
//! for it (and on every reconnection, when events may have been missed), so a
//! sleeping loop wakes at once instead of polling. With 10 000 credentials an
//! event wakes one loop, not all. This module decides nothing about refreshes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wxtoken_client::events::{ConnectionState, EventSink};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::Event;

/// What a loop is woken with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeSignal {
    /// Changes on every wake-up.
    pub seq: u64,
    /// The wake-up came from an event anybody with PUBLISH may send
    /// (`refresh_requested`, `reported`, `invalidated`, …): the loop re-reads
    /// Redis, at most four times a second (a force request or a report counts only
    /// if Redis records it, so a forged event costs no upstream call).
    pub requested: bool,
    /// Set when the latest wake-up was a `refreshed` event that said the
    /// token's life: the loop can plan from it without asking Redis.
    pub refreshed: Option<Refreshed>,
}

/// A `refreshed` event as a loop needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub generation: u64,
    pub ttl: Duration,
    /// When the event arrived (the token had `ttl` left then).
    pub at: Instant,
}

/// The event sink of one replica.
#[derive(Debug)]
pub struct Wakers {
    /// Written only at start-up (one entry per configured credential), read on
    /// every event: an `RwLock` keeps event dispatch from contending.
    loops: RwLock<HashMap<CredentialRef, watch::Sender<WakeSignal>>>,
    events_up: watch::Sender<bool>,
}

impl Wakers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            loops: RwLock::new(HashMap::new()),
            events_up: watch::channel(false).0,
        })
    }

    /// Registers a credential; its loop keeps the receiver.
    pub fn register(&self, cref: &CredentialRef) -> watch::Receiver<WakeSignal> {
        let (tx, rx) = watch::channel(WakeSignal::default());
        if let Ok(mut loops) = self.loops.write() {
            loops.insert(cref.clone(), tx);
        }
        rx
    }

    /// True while the event subscription is up (loops then need no polling).
    pub fn events_up(&self) -> watch::Receiver<bool> {
        self.events_up.subscribe()
    }

    fn wake(tx: &watch::Sender<WakeSignal>, requested: bool, refreshed: Option<Refreshed>) {
        tx.send_modify(|s| {
            s.seq += 1;
            s.requested = requested;
            s.refreshed = refreshed;
        });
    }

    /// Wakes every loop to re-read its credential from Redis (events may
    /// have been missed, or Redis lost its data).
    pub fn wake_all(&self) {
        if let Ok(loops) = self.loops.read() {
            loops.values().for_each(|tx| Self::wake(tx, false, None));
        }
    }
}

impl EventSink for Wakers {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        let (requested, refreshed) = match event {
            Event::Refreshed {
                generation, ttl_ms, ..
            } if ttl_ms > 0 => (
                false,
                Some(Refreshed {
                    generation,
                    ttl: Duration::from_millis(ttl_ms),
                    at: Instant::now(),
                }),
            ),
            _ => (true, None),
        };
        if let Ok(loops) = self.loops.read()
            && let Some(tx) = loops.get(cref)
        {
            Self::wake(tx, requested, refreshed);
        }
    }

    fn on_connection(&self, state: ConnectionState) {
        self.events_up
            .send_replace(matches!(state, ConnectionState::Up { .. }));
        // Up after a gap: events may have been missed. Down: loops must fall
        // back to polling. Either way every loop re-reads now.
        self.wake_all();
    }
}
