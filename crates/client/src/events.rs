//! One pub/sub connection per process that follows every credential's event
//! channel (`P:{*}:events`) and hands parsed events to an [`EventSink`].
//!
//! The subscription reconnects by itself with capped exponential back-off and
//! pings the server so a half-open connection (a blackholed link) is noticed
//! within `ping_interval + ping_timeout`. Pub/sub is at-most-once: whenever the
//! connection is (re)established the sink is told [`ConnectionState::Up`]
//! with a new `session`, which means "you may have missed events: re-read".
//! This module does not cache tokens or decide anything; sinks do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialRef, Keys};

use crate::connect::ClientSource;

/// Receives what the subscription sees. Called from the subscription task:
/// implementations must not block.
pub trait EventSink: Send + Sync + 'static {
    /// An event of `cref` (the id of the channel, the slot the payload names).
    fn on_event(&self, cref: &CredentialRef, event: Event);
    fn on_connection(&self, state: ConnectionState);
}

/// Whether events are flowing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Subscribed. `session` increases with every (re)connection; anything
    /// published before it may have been missed.
    Up { session: u64 },
    /// Not subscribed: events published now are lost.
    Down,
}

/// Timing of the subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// The running subscription; dropping it stops the background task.
#[derive(Debug)]
pub struct EventSubscription {
    state: watch::Receiver<ConnectionState>,
    task: tokio::task::JoinHandle<()>,
}

impl EventSubscription {
    /// Starts following `keys`' event channels on a server `source` names
    /// (re-asked on every reconnection: Sentinel failovers, cluster nodes).
    pub fn spawn(
        source: ClientSource,
        keys: Keys,
        config: SubscriptionConfig,
        sink: Arc<dyn EventSink>,
    ) -> Self {
        let (tx, state) = watch::channel(ConnectionState::Down);
        let task = tokio::spawn(run(source, keys, config, sink, tx));
        Self { state, task }
    }

    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// A receiver that changes whenever the connection goes up or down.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Waits until subscribed, at most `timeout`. True when subscribed.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut rx = self.state.clone();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|s| matches!(s, ConnectionState::Up { .. })),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    source: ClientSource,
    keys: Keys,
    config: SubscriptionConfig,
    sink: Arc<dyn EventSink>,
    state: watch::Sender<ConnectionState>,
) {
    let pattern = keys.events_pattern();
    let mut session = 0_u64;
    let mut delay = config.reconnect_min;
    let mut attempt = 0_u64;
    loop {
        let client = source.client(attempt).await;
        attempt += 1;
        let result = match client {
            Ok(client) => {
                follow(
                    &client,
                    &keys,
                    &pattern,
                    &config,
                    &*sink,
                    &state,
                    session + 1,
                )
                .await
            }
            Err(e) => Err(format!("no server to subscribe to: {e}")),
        };
        match result {
            Ok(()) => {}
            Err(e) => debug!(error = %e, "event subscription ended"),
        }
        if matches!(*state.borrow(), ConnectionState::Up { .. }) {
            session += 1;
            delay = config.reconnect_min;
            warn!("event subscription lost; reconnecting");
        } else {
            delay = (delay * 2).min(config.reconnect_max);
        }
        let _ = state.send(ConnectionState::Down);
        sink.on_connection(ConnectionState::Down);
        tokio::time::sleep(jitter(delay)).await;
    }
}

/// Subscribes and forwards messages until the connection fails.
async fn follow(
    client: &redis::Client,
    keys: &Keys,
    pattern: &str,
    config: &SubscriptionConfig,
    sink: &dyn EventSink,
    state: &watch::Sender<ConnectionState>,
    session: u64,
) -> Result<(), String> {
    let mut pubsub = tokio::time::timeout(config.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(config.connect_timeout, pubsub.psubscribe(pattern))
        .await
        .map_err(|_| "psubscribe timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sink_half, mut stream) = pubsub.split();
    info!(session, "event subscription up");
    let _ = state.send(ConnectionState::Up { session });
    sink.on_connection(ConnectionState::Up { session });

    let mut ping = tokio::time::interval(config.ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Err("stream closed".into()) };
                let channel = msg.get_channel_name();
                let Some(id) = keys.id_of_events_channel(channel) else { continue };
                let payload = msg.get_payload_bytes();
                match (Event::parse(payload), Event::slot_of(payload)) {
                    (Some(event), Some(slot)) => sink.on_event(&CredentialRef { id, slot }, event),
                    _ => debug!(%id, "ignored an unparsable event"),
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(config.ping_timeout, sink_half.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("ping failed: {e}")),
                    Err(_) => return Err("ping timed out".into()),
                }
            }
        }
    }
}

/// Full jitter between half and all of `d`, so a fleet does not reconnect in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + d.mul_f64(rand::random::<f64>() * 0.5)
}

/// Hands every event to several sinks (the coordinator feeds its refresh
/// loops and its read cache from one subscription).
pub struct FanOut(pub Vec<Arc<dyn EventSink>>);

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FanOut({} sinks)", self.0.len())
    }
}

impl EventSink for FanOut {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        for sink in &self.0 {
            sink.on_event(cref, event.clone());
        }
    }

    fn on_connection(&self, state: ConnectionState) {
        for sink in &self.0 {
            sink.on_connection(state);
        }
    }
}
