//! `wxtoken demo`: a self-contained local run that shows single-flight
//! refreshes happening — an embedded wechat-sim with short TTLs, several
//! replicas in this process, the Redis you point it at (keys under a fresh
//! random prefix, deleted at the end) or, with none answering at the
//! default URL, a private `redis-server` (see `demo_redis`), and a reader
//! that uses every token.
//!
//! It prints one line per refresh: who refreshed, the generation, upstream
//! calls so far against token lifetimes begun, and what the reader saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;
use wechat_sim::{SimConfig, SimHandle, TokenState};
use wxtoken_client::events::{ConnectionState, EventSink, EventSubscription, SubscriptionConfig};
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialRef, Keys};

use crate::config::{Config, Env};
use crate::replica::{ReplicaHandle, build_store};

const APPID: &str = "wxdemo0000000001";
const SECRET: &str = "demo-secret-not-real";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Redis to use (keys go under a random `wxtoken-demo-…` prefix and are
    /// removed at the end). Default: redis://127.0.0.1:6379 (or
    /// $WXTOKEN_DEMO_DEFAULT_REDIS) if it answers, else a private
    /// `redis-server` on a free port, stopped when the demo exits.
    #[arg(long)]
    pub redis: Option<String>,
    /// Coordinator replicas to run side by side.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Simulated token lifetime (WeChat: 7200s).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// How many token lifetimes to run for (Ctrl-C stops early).
    #[arg(long, default_value_t = 4)]
    pub lifetimes: u32,
}

struct Forward(mpsc::UnboundedSender<Event>);

impl EventSink for Forward {
    fn on_event(&self, _cref: &CredentialRef, event: Event) {
        let _ = self.0.send(event);
    }
    fn on_connection(&self, _state: ConnectionState) {}
}

fn demo_config(
    args: &DemoArgs,
    redis: &str,
    sim: &SimHandle,
    prefix: &str,
) -> anyhow::Result<Config> {
    let ttl = args.token_ttl.as_secs_f64();
    let ms = |secs: f64| format!("{}ms", (secs * 1000.0).round() as u64);
    let text = format!(
        r#"
        [redis]
        url = "{redis}"
        key_prefix = "{prefix}"
        [refresh]
        refresh_ahead = "{ahead}"
        lock_ttl = "{lock}"
        upstream_timeout = "{upstream}"
        poll_interval = "{poll}"
        [upstream]
        base_url = "{base}"
        [[apps]]
        id = "demo"
        appid = "{APPID}"
        secret = {{ env = "WXTOKEN_DEMO_SECRET" }}
        "#,
        ahead = ms(ttl / 4.0),
        lock = ms((ttl / 10.0).max(1.0)),
        upstream = ms((ttl / 40.0).clamp(0.2, 2.0)),
        poll = ms(ttl / 4.0),
        base = sim.base_url(),
    );
    let env: Env = [("WXTOKEN_DEMO_SECRET", SECRET)].into_iter().collect();
    Config::from_toml_str(&text, &env).map_err(Into::into)
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.replicas >= 1, "--replicas must be at least 1");
    anyhow::ensure!(
        args.token_ttl >= Duration::from_secs(8),
        "--token-ttl must be at least 8s"
    );
    // Before anything is started: from here Ctrl-C and SIGTERM end the
    // demo through its cleanup (a private Redis is stopped) instead of
    // killing the process.
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let redis = super::demo_redis::find(args.redis.as_deref()).await?;
    let result = demo(args, &redis.url, stop).await;
    if let Some(private) = redis.private {
        private.shutdown().await;
    }
    result
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM; the handlers are installed now.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn demo(
    args: &DemoArgs,
    redis: &str,
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> anyhow::Result<()> {
    let sim = wechat_sim::spawn(
        SimConfig::new()
            .app(APPID, SECRET)
            .token_ttl(args.token_ttl)
            .overlap(args.token_ttl / 4),
    )
    .await
    .context("starting the embedded wechat-sim")?;
    let prefix = format!("wxtoken-demo-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let config = demo_config(args, redis, &sim, &prefix)?;
    let store = build_store(&config)?;
    store.ping().await.with_context(|| {
        format!("cannot reach Redis at {redis}: start one (`redis-server`) or pass --redis URL")
    })?;

    println!(
        "wxtoken demo: {} replicas, one appid, wechat-sim at {}",
        args.replicas,
        sim.base_url()
    );
    println!(
        "token lifetime {:?}, refresh {:?} before expiry, Redis {} (prefix {prefix})",
        args.token_ttl, config.refresh.refresh_ahead, redis
    );
    println!("watch: one upstream call per token lifetime, whichever replica wins the lock.\n");

    let (tx, mut events) = mpsc::unbounded_channel();
    let _sub = EventSubscription::spawn(
        store.client_source(),
        Keys::new(&prefix)?,
        SubscriptionConfig::default(),
        Arc::new(Forward(tx)),
    );
    let mut replicas = Vec::new();
    for i in 1..=args.replicas {
        replicas.push(ReplicaHandle::start(&config, format!("replica-{i}")).await?);
    }
    let ui = crate::http::ui::demo::serve(&replicas[0], &config).await?;
    println!("status page: {} (log in with key {})\n", ui.url, ui.key);

    let started = Instant::now();
    let every = config.refresh.refresh_ahead;
    let cycle = args
        .token_ttl
        .saturating_sub(every)
        .max(Duration::from_secs(1));
    let end = args.token_ttl.saturating_sub(every) * args.lifetimes + Duration::from_secs(2);
    let id = CredentialRef::token(config.apps[0].id.clone());
    let (mut reads_ok, mut reads_bad) = (0_u64, 0_u64);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut refreshes = 0_u64;
    loop {
        tokio::select! {
            _ = stop.as_mut() => break,
            _ = tokio::time::sleep_until((started + end).into()) => break,
            Some(event) = events.recv() => {
                if let Event::Refreshed { generation, fetched_by, .. } = event {
                    let stats = sim.stats();
                    let app = stats.app(APPID).cloned().unwrap_or_default();
                    let lifetimes = lifetimes_begun(started.elapsed(), cycle);
                    refreshes += 1;
                    // #n counts this run's refreshes; the tail tells the
                    // µs-seeded generation apart in logs and `wxtoken status`.
                    println!(
                        "[{:>6.1}s] #{refreshes:<2} generation {:>7} refreshed by {:<10} upstream fetches so far: {:>3} · token lifetimes begun: {:>3} · max concurrent fetches: {} · reader: {reads_ok} ok / {reads_bad} rejected",
                        started.elapsed().as_secs_f64(),
                        super::readable_generation(generation),
                        fetched_by.unwrap_or_default(),
                        app.fetch_calls,
                        lifetimes,
                        app.max_concurrent_fetches,
                    );
                }
            }
            _ = tick.tick() => {
                if let Ok(Some(token)) = store.read_value(&id).await {
                    match sim.token_state(&token.value) {
                        TokenState::Valid => reads_ok += 1,
                        _ => reads_bad += 1,
                    }
                }
            }
        }
    }
    for r in replicas {
        r.shutdown(Duration::from_secs(2)).await;
    }
    let app = sim.stats().app(APPID).cloned().unwrap_or_default();
    println!(
        "\nsummary: {:.0}s, {} replicas, {} upstream fetches for {} token lifetimes begun, max concurrent fetches {}, reader {} ok / {} rejected",
        started.elapsed().as_secs_f64(),
        args.replicas,
        app.fetch_calls,
        lifetimes_begun(started.elapsed(), cycle),
        app.max_concurrent_fetches,
        reads_ok,
        reads_bad
    );
    cleanup(&store, &prefix).await;
    sim.shutdown().await;
    Ok(())
}

/// Refreshes an ideal fleet has made by `elapsed`: one at start, then one per
/// refresh cycle (rounded, as replicas refresh a little early by jitter).
fn lifetimes_begun(elapsed: Duration, cycle: Duration) -> u64 {
    1 + (elapsed.as_secs_f64() / cycle.as_secs_f64().max(0.001)).round() as u64
}

/// Removes the demo's keys so the shared Redis is left as it was.
async fn cleanup(store: &crate::store::TokenStore, prefix: &str) {
    let Ok(client) = store.client_source().client(0).await else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<u64, _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}
