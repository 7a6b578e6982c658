//! `replica`: wires one coordinator replica together — store, upstream,
//! the catalog of credentials (every kind), the read cache, the event
//! subscription, the schedule that turns every credential — and runs it until
//! shutdown (SPEC §5: on SIGTERM stop taking locks, release held ones, exit
//! within 5 s).
//!
//! Entry points take what tests need to inject (the config, a shutdown
//! future) and hand back a [`ReplicaHandle`] so in-process tests can run many
//! replicas side by side. Signal handling belongs to `main`, not here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use wxtoken_client::TokenClient;
use wxtoken_client::events::{EventSink, EventSubscription, FanOut, SubscriptionConfig};
use wxtoken_common::Keys;

use crate::catalog::Catalog;
use crate::config::{Config, ConfigError};
use crate::follow::Keepers;
use crate::http::{self, HttpState};
use crate::live_config::LiveConfig;
use crate::platform::{Platform, Pushes, Registry, RegistryHints};
use crate::refresher::{MAX_CONCURRENT_REFRESHES, Refresher, Schedule};
use crate::store::{self, TokenStore, connect_pool};
use crate::upstream::Upstream;
use crate::vault::{Sealer, StateKey, Vault};

/// The sealer of `[security] state_key` (plain text without one: warned).
fn sealer(config: &Config) -> Sealer {
    let key = config
        .security
        .state_key
        .as_ref()
        .and_then(|k| StateKey::parse(secrecy::ExposeSecret::expose_secret(k)));
    if key.is_none() && !config.components.is_empty() {
        warn!(
            "no [security] state_key: refresh tokens and verify tickets are stored in Redis in plain text"
        );
    }
    Sealer::new(key)
}

/// Builds the Redis store described by `config` (connects lazily).
pub fn build_store(config: &Config) -> anyhow::Result<TokenStore> {
    let r = &config.redis;
    let pool = connect_pool(r).context("redis.url")?;
    let keys = Keys::new(&r.key_prefix).context("redis.key_prefix")?;
    Ok(TokenStore::new(pool, keys, config.refresh.quota_day_offset))
}

/// `host-pid-xxxx`, unless `[refresh] replica_id` names one.
pub fn default_replica_id(config: &Config) -> String {
    if let Some(id) = &config.refresh.replica_id {
        return id.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wxtoken".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// A running replica.
#[derive(Debug)]
pub struct ReplicaHandle {
    refresher: Arc<Refresher>,
    /// Every credential this replica keeps (all kinds), shared with its HTTP API.
    catalog: Arc<Catalog>,
    /// The read path the HTTP API serves from: the client library's cache,
    /// fed by this replica's one event subscription.
    client: TokenClient,
    /// When each credential turns next; credentials registered at run time
    /// (authorizers) join it here.
    schedule: Arc<Schedule>,
    /// The open platform (registry, event URL), when components are configured.
    platform: Option<Platform>,
    /// Where configured credentials are kept: the schedule or a follow task.
    keepers: Keepers,
    shutdown: watch::Sender<bool>,
    loops: JoinSet<()>,
    subscription: EventSubscription,
    /// The fleet's refresh events as the status page shows them, fed by
    /// the one subscription (`http::ui`).
    timeline: Arc<crate::http::ui::Timeline>,
}

impl ReplicaHandle {
    /// Starts a replica: one event subscription and one schedule turning
    /// every credential.
    pub async fn start(config: &Config, replica_id: String) -> anyhow::Result<Self> {
        let store = build_store(config)?;
        let upstream = Upstream::new(config.refresh.upstream_timeout, MAX_CONCURRENT_REFRESHES)
            .context("upstream")?;
        let client = TokenClient::builder(config.redis.url.expose_secret())
            .target(store::target(&config.redis))
            .key_prefix(&config.redis.key_prefix)
            .connect_timeout(config.redis.connect_timeout)
            .command_timeout(config.redis.command_timeout)
            .token_wait(config.http.token_wait)
            .subscribe(false)
            .build()
            .context("redis.url")?;
        let vault = Vault::new(store.clone(), sealer(config));
        let refresher = Arc::new(Refresher::new(
            store.clone(),
            upstream,
            client.clone(),
            config.refresh.clone(),
            vault,
            replica_id,
        ));
        let schedule = Schedule::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        let catalog = Arc::new(Catalog::from_config(config));
        let keepers = Keepers::new(
            store.clone(),
            schedule.clone(),
            refresher.settings().clone(),
            refresher.replica_id().to_owned(),
            shutdown_rx.clone(),
        );
        for cred in catalog.iter() {
            keepers.keep(cred);
        }
        loops.spawn(schedule.clone().run(refresher.clone(), shutdown_rx.clone()));
        let registry = Registry::new(refresher.clone(), catalog.clone(), schedule.clone());
        let (hints, hints_rx) = tokio::sync::mpsc::channel(100_000);
        let platform = (!config.components.is_empty()).then(|| {
            loops.spawn(registry.clone().run(hints_rx, shutdown_rx.clone()));
            Platform {
                pushes: Pushes::new(&catalog, refresher.clone(), registry.clone()),
                registry: registry.clone(),
            }
        });
        loops.spawn(watch_for_data_loss(
            store.clone(),
            schedule.clone(),
            keepers.clone(),
            platform.as_ref().map(|p| p.registry.clone()),
            config.refresh.loss_check_interval,
            shutdown_rx.clone(),
        ));
        let timeline = Arc::new(crate::http::ui::Timeline::default());
        loops.spawn(
            crate::quota_check::QuotaChecker::new(
                store.clone(),
                refresher.upstream().clone(),
                catalog.clone(),
                refresher.replica_id().to_owned(),
                config.refresh.quota_check_interval,
            )
            .run(shutdown_rx.clone()),
        );
        let sinks: Vec<Arc<dyn EventSink>> = vec![
            schedule.clone(),
            Arc::new(keepers.clone()),
            client.event_sink(),
            Arc::new(RegistryHints(hints)),
            timeline.clone(),
        ];
        let subscription = EventSubscription::spawn(
            store.client_source(),
            store.keys().clone(),
            SubscriptionConfig::default(),
            Arc::new(FanOut(sinks)),
        );
        info!(replica = %refresher.replica_id(), credentials = catalog.len(), "replica started");
        Ok(Self {
            refresher,
            catalog,
            client,
            schedule,
            platform,
            keepers,
            shutdown,
            loops,
            subscription,
            timeline,
        })
    }

    pub fn replica_id(&self) -> &str {
        self.refresher.replica_id()
    }

    pub fn store(&self) -> &TokenStore {
        self.refresher.store()
    }

    /// Every credential this replica keeps.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The replica's read path (cache + events), shared with its HTTP API.
    pub fn client(&self) -> &TokenClient {
        &self.client
    }

    /// The state the HTTP API of this replica serves from.
    pub fn http_state(&self, config: &Config) -> Result<HttpState, ConfigError> {
        HttpState::with_timeline(
            config,
            self.catalog.clone(),
            self.client.clone(),
            self.store().clone(),
            self.refresher.ttls().clone(),
            self.platform.clone(),
            self.timeline.clone(),
        )
    }

    /// The config in force, reloadable; `path` is re-read on reload.
    pub fn live_config(
        &self,
        path: Option<PathBuf>,
        config: &Config,
        http: HttpState,
    ) -> LiveConfig {
        LiveConfig::new(
            path,
            config,
            self.catalog.clone(),
            self.keepers.clone(),
            self.refresher.clone(),
            http,
        )
    }

    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    pub fn schedule(&self) -> &Arc<Schedule> {
        &self.schedule
    }

    pub fn refresher(&self) -> &Arc<Refresher> {
        &self.refresher
    }

    /// True once the event subscription is up.
    pub async fn wait_events_up(&self, timeout: Duration) -> bool {
        self.subscription.wait_up(timeout).await
    }

    /// Stops taking locks, lets in-flight refreshes finish for up to `grace`,
    /// then cancels them and releases every lock still held.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.send_replace(true);
        self.timeline.close();
        self.keepers.drained(grace).await;
        let drained = tokio::time::timeout(grace, async {
            while self.loops.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("refresh loops did not stop within {grace:?}; cancelling them");
            self.loops.abort_all();
            while self.loops.join_next().await.is_some() {}
        }
        for (cref, owner) in self.refresher.held_locks().drain() {
            match tokio::time::timeout(
                Duration::from_secs(1),
                self.refresher.store().release(&cref, &owner),
            )
            .await
            {
                Ok(Ok(true)) => info!(credential = %cref, "released refresh lock on shutdown"),
                Ok(Ok(false)) => {}
                _ => {
                    warn!(credential = %cref, "could not release refresh lock on shutdown; it expires by itself")
                }
            }
        }
        info!(replica = %self.refresher.replica_id(), "replica stopped");
    }
}

/// Runs a replica and its HTTP API until `shutdown` resolves; total exit
/// time stays under 5 s. `config_path`: the file `config` was read from,
/// re-read on SIGHUP and when it changes.
pub async fn run_until(
    config: &Config,
    config_path: Option<PathBuf>,
    replica_id: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    crate::metrics::install();
    let replica = ReplicaHandle::start(config, replica_id).await?;
    crate::metrics::set_per_app(replica.catalog().len() <= config.http.per_app_metrics_limit);
    let state = replica.http_state(config)?;
    let live = Arc::new(replica.live_config(config_path, config, state.clone()));
    crate::metrics::config_generation(live.generation());
    let (stop_http, http_stopped) = watch::channel(false);
    let mut servers = JoinSet::new();
    let split_metrics = config.http.metrics_listen.is_some();
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot bind {}", config.http.listen))?;
    let tls = match config.http.tls() {
        Some(files) => Some(Arc::new(http::tls::TlsListener::new(files)?)),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(addr = %config.http.listen, scheme, "http api listening");
    if let Some(warning) = plain_http_warning(config.http.listen, tls.is_some()) {
        warn!("{warning}");
    }
    servers.spawn(http::serve(
        listener,
        http::api(state.clone(), !split_metrics),
        config.http.conn_limits(),
        tls.clone(),
        stopped(http_stopped.clone()),
    ));
    tokio::spawn(http::keys::watch(state.clone(), http_stopped.clone()));
    {
        let (live, stop) = (live.clone(), http_stopped.clone());
        tokio::spawn(async move { http::reload::watch(live.as_ref(), stop).await });
    }
    tokio::spawn(announce(
        replica.store().clone(),
        replica.replica_id().to_owned(),
        live.clone(),
        http_stopped.clone(),
    ));
    if let Some(tls) = tls {
        let stop = http_stopped.clone();
        tokio::spawn(async move { http::reload::watch(tls.as_ref(), stop).await });
    }
    if let Some(addr) = config.http.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("http.metrics_listen: cannot bind {addr}"))?;
        info!(%addr, "metrics listening");
        servers.spawn(http::serve(
            listener,
            http::metrics_router(state),
            config.http.metrics_conn_limits(),
            None,
            stopped(http_stopped),
        ));
    }
    tokio::select! {
        _ = shutdown => info!("shutdown requested"),
        Some(done) = servers.join_next() => warn!(result = ?done.map(|r| r.map_err(|e| e.to_string())), "http server stopped"),
    }
    stop_http.send_replace(true);
    replica.shutdown(Duration::from_secs(3)).await;
    if tokio::time::timeout(Duration::from_millis(1000), async {
        while servers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        servers.abort_all();
    }
    Ok(())
}

/// The warning a replica logs when its API serves plain HTTP on an address
/// other machines can reach: every token read crosses the network in clear.
pub fn plain_http_warning(listen: std::net::SocketAddr, tls: bool) -> Option<String> {
    (!tls && !listen.ip().is_loopback()).then(|| {
        format!(
            "http.listen {listen} is not a loopback address and serves plain HTTP: tokens \
             cross the network in clear; set [http] tls_cert and tls_key (or put a TLS proxy \
             in front)"
        )
    })
}

/// Every `every`, checks the fleet marker; when Redis lost it (or it
/// changed: another replica found it gone first), wakes every refresh loop
/// to re-read its credential, which refills what is missing.
async fn watch_for_data_loss(
    store: TokenStore,
    schedule: Arc<Schedule>,
    keepers: Keepers,
    registry: Option<Registry>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen: Option<String> = None;
    while !*shutdown.borrow() {
        // A new value every time: a replica that set the lost marker must
        // not set the same one again and miss the loss.
        let candidate = format!("{:016x}", rand::random::<u64>());
        let checked = store.fleet_marker(&candidate).await;
        crate::metrics::redis_up(checked.is_ok());
        match checked {
            Ok(marker) => {
                if seen.as_ref().is_some_and(|s| *s != marker) {
                    warn!("redis lost the fleet's data (marker gone); re-reading every credential");
                    schedule.wake_all();
                    keepers.recheck_all();
                    if let Some(registry) = &registry {
                        // Refresh tokens and the registry went too: rebuilt
                        // from api_get_authorizer_list by one replica.
                        tokio::spawn(registry.clone().recover_owned());
                    }
                }
                seen = Some(marker);
            }
            Err(e) => debug!(error = %e, "fleet marker check failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// How often a replica writes its entry in `P:replicas` (and how long an
/// entry stays after its replica stopped writing it). Four commands a
/// write: every 30 s they add 480 an hour per replica to the fleet's fixed
/// cost (every 5 s they would have tripled it); a new config generation is
/// written within a second anyway.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// Keeps this replica's entry (the config generation it runs) in Redis for
/// `wxtoken status`; a new generation is written within a second.
async fn announce(
    store: TokenStore,
    replica_id: String,
    live: Arc<LiveConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let mut written: Option<(u64, tokio::time::Instant)> = None;
    while !*stop.borrow() {
        let generation = live.generation();
        let due = written.is_none_or(|(g, at)| g != generation || at.elapsed() >= ANNOUNCE_EVERY);
        if due {
            match store
                .announce_replica(&replica_id, generation, &live.digest(), FORGET_AFTER)
                .await
            {
                Ok(()) => written = Some((generation, tokio::time::Instant::now())),
                Err(e) => debug!(error = %e, "could not announce this replica"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
