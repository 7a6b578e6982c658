//! The operational subcommands: `serve`, `status`, `get`, `invalidate`,
//! `refresh`, `reset`. Each resolves the credential id against the config
//! (an unknown id is a usage error naming the known ones) and talks to Redis
//! through `store`; none of them calls WeChat.

use std::time::Duration;

use anyhow::Context;
use wxtoken_client::keyspace::Invalidation;
use wxtoken_common::CredentialId;
use wxtoken_common::wire::{AccessTokenResponse, Event};

use crate::config::{AppConfig, Config, ConfigError};
use crate::replica::{build_store, default_replica_id, run_until};
use crate::status::app_status;
use crate::store::TokenStore;

pub async fn serve(config: &Config) -> anyhow::Result<()> {
    run_until(config, default_replica_id(config), shutdown_signal()).await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn find_app<'a>(config: &'a Config, id: &str) -> Result<&'a AppConfig, ConfigError> {
    let parsed = CredentialId::parse(id).map_err(|e| ConfigError::new("id", e.to_string()))?;
    config.apps.iter().find(|a| a.id == parsed).ok_or_else(|| {
        let known: Vec<&str> = config.apps.iter().map(|a| a.id.as_str()).collect();
        ConfigError::new(
            "id",
            format!(
                "no credential {id:?} in the config; known: {}",
                known.join(", ")
            ),
        )
    })
}

async fn connected_store(config: &Config) -> anyhow::Result<TokenStore> {
    let store = build_store(config)?;
    store.ping().await.context("cannot reach redis")?;
    Ok(store)
}

pub async fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = connected_store(config).await?;
    let mut rows = Vec::new();
    for app in &config.apps {
        rows.push(app_status(&store, app, config.refresh.daily_budget).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<20} {:<12} {:>6} {:>10} {:<24} {:>11}  LAST ERROR",
        "ID", "APPID", "API", "GEN", "TTL", "FETCHED BY", "QUOTA"
    );
    for r in rows {
        let ttl = r.ttl_ms.map_or("-".into(), |ms| {
            humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
        });
        let error = r.last_error.map_or("-".into(), |e| {
            let class = e.class.map(|c| c.to_string()).unwrap_or_default();
            format!("{} {} ({class})", e.code, e.message)
        });
        println!(
            "{:<20} {:<20} {:<12} {:>6} {:>10} {:<24} {:>11}  {}",
            r.id,
            r.appid,
            r.api,
            r.generation.map_or("-".into(), |g| g.to_string()),
            ttl,
            r.fetched_by.unwrap_or_else(|| "-".into()),
            format!("{}/{}", r.quota_used_today, r.daily_budget),
            error
        );
    }
    Ok(())
}

pub async fn get(config: &Config, id: &str, json: bool) -> anyhow::Result<()> {
    let app = find_app(config, id)?;
    let store = connected_store(config).await?;
    let now = store.redis_time_ms().await?;
    let Some(token) = store.read_token(&app.id).await? else {
        anyhow::bail!("no token stored for {id} (is a coordinator running? see `wxtoken status`)");
    };
    if json {
        let body = AccessTokenResponse {
            expires_in: token.ttl.as_secs(),
            expires_at: now + u64::try_from(token.ttl.as_millis()).unwrap_or(0),
            generation: token.generation,
            access_token: token.value,
        };
        println!("{}", serde_json::to_string(&body)?);
    } else {
        println!("{}", token.value);
    }
    Ok(())
}

pub async fn invalidate(config: &Config, id: &str, token: &str) -> anyhow::Result<()> {
    let app = find_app(config, id)?;
    let store = connected_store(config).await?;
    match store.invalidate(&app.id, token).await? {
        Invalidation::Reported { generation } => println!(
            "reported generation {generation}: a replica checks it with WeChat and refreshes only if WeChat rejects it (`wxtoken refresh {id} --force` replaces it regardless)"
        ),
        Invalidation::TokenValid { generation } => println!(
            "generation {generation} was checked with WeChat moments ago and is accepted; nothing to do (`wxtoken refresh {id} --force` replaces it regardless)"
        ),
        Invalidation::AlreadyReplaced { generation } => println!(
            "that token is no longer stored (current generation {generation}); nothing to do"
        ),
        _ => println!("reported"),
    }
    Ok(())
}

pub async fn refresh(
    config: &Config,
    id: &str,
    force: bool,
    by: Option<&str>,
) -> anyhow::Result<()> {
    let app = find_app(config, id)?;
    let store = connected_store(config).await?;
    let (generation, receivers) = if force {
        let by = by.map_or_else(operator, str::to_owned);
        let (generation, count, heard) = store.force_request(&app.id, &by).await?;
        tracing::info!(%id, generation, by = %by, count, "forced refresh requested");
        println!(
            "forced refresh of {id} requested by {by} (replaces generation {generation}; force request #{count} for {id})"
        );
        (generation, heard)
    } else {
        let generation = store.peek(&app.id).await?.generation;
        let event = Event::RefreshRequested {
            generation,
            reason: Some("operator".into()),
            force: false,
        };
        (generation, store.publish(&app.id, &event).await?)
    };
    println!(
        "refresh requested for {id} (generation {generation}, force={force}); {receivers} replica(s) listening"
    );
    if receivers == 0 {
        anyhow::bail!(
            "no coordinator replica is subscribed: is `wxtoken serve` running against this Redis and prefix?"
        );
    }
    Ok(())
}

/// Who runs the CLI, for the force log: `$USER@host`.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

pub async fn reset(config: &Config, id: &str) -> anyhow::Result<()> {
    let app = find_app(config, id)?;
    let store = connected_store(config).await?;
    let cleared = store.reset_gate(&app.id).await?;
    println!(
        "back-off lifted and today's quota count ({cleared}) cleared for {id}; a refresh was requested"
    );
    Ok(())
}

/// Probes `/healthz` of the local replica; an error (exit 1) if it does not answer 200 within 2 s.
pub async fn healthcheck(config: &Config, url: Option<&str>) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let mut addr = config.http.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}/healthz")
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| anyhow::anyhow!("http client: {}", e.without_url()))?;
    let status = http
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url} did not answer: {}", e.without_url()))?
        .status();
    anyhow::ensure!(status.is_success(), "{url} answered HTTP {status}");
    println!("healthy");
    Ok(())
}
