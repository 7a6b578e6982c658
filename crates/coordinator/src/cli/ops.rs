//! The operational subcommands: `serve`, `status`, `get`, `invalidate`,
//! `refresh`, `reset`. Each resolves the credential id against the config
//! (an unknown id is a usage error naming the known ones) and talks to Redis
//! through `store`; none of them calls WeChat.

use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use wxtoken_client::keyspace::Invalidation;
use wxtoken_common::wire::{AccessTokenResponse, Event};
use wxtoken_common::{CredentialId, Slot, TicketType};

use crate::catalog::Catalog;
use crate::config::{Config, ConfigError};
use crate::kind::Credential;
use crate::replica::{build_store, default_replica_id, run_until};
use crate::status::{credential_status, unreadable_status};
use crate::store::TokenStore;

pub async fn serve(config: &Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    run_until(config, path, default_replica_id(config), shutdown_signal()).await
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

/// The credential `id` names (`shop`, or `shop/ticket:jsapi`), or `id`'s
/// `ticket` when given: an unknown one is a usage error naming the known ids.
pub(super) fn find(
    config: &Config,
    id: &str,
    ticket: Option<&str>,
) -> Result<Arc<Credential>, ConfigError> {
    let (raw, slot) = match (id.split_once('/'), ticket) {
        (Some((raw, slot)), None) => {
            let slot = Slot::parse(Some(slot)).ok_or_else(|| {
                ConfigError::new(
                    "id",
                    format!("{slot:?} is not a slot; write ID/ticket:jsapi"),
                )
            })?;
            (raw, slot)
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "id",
                "give the ticket either as ID/ticket:TYPE or --ticket, not both",
            ));
        }
        (None, Some(t)) => {
            let t: TicketType = t.parse().map_err(|e: wxtoken_common::UnknownTicketType| {
                ConfigError::new("ticket", e.to_string())
            })?;
            (id, Slot::Ticket(t))
        }
        (None, None) => (id, Slot::AccessToken),
    };
    let parsed = CredentialId::parse(raw).map_err(|e| ConfigError::new("id", e.to_string()))?;
    let catalog = Catalog::from_config(config);
    let found = catalog.find(parsed.as_str(), slot).or_else(|| {
        (slot == Slot::AccessToken)
            .then(|| catalog.authorizer_by_id(parsed.as_str()))
            .flatten()
    });
    match found {
        Some(c) => Ok(c),
        None if catalog.family(parsed.as_str()).is_some() => Err(ConfigError::new(
            "ticket",
            format!(
                "{raw} keeps no {} (see `tickets` in its config entry)",
                slot.name().unwrap_or("access token")
            ),
        )),
        None => Err(ConfigError::new(
            "id",
            format!(
                "no credential {raw:?} in the config; known: {}",
                catalog.ids().join(", ")
            ),
        )),
    }
}

pub(super) async fn connected_store(config: &Config) -> anyhow::Result<TokenStore> {
    let store = build_store(config)?;
    store.ping().await.context("cannot reach redis")?;
    Ok(store)
}

pub async fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = connected_store(config).await?;
    // One credential whose keys hold junk is shown as such, not the end of the listing.
    let mut rows = Vec::new();
    for cred in Catalog::from_config(config).iter() {
        match credential_status(&store, &cred, &config.refresh).await {
            Ok(row) => rows.push((row, None)),
            Err(e) if e.is_unavailable() => return Err(e).context("cannot reach redis"),
            Err(e) => rows.push((
                unreadable_status(&cred, &config.refresh),
                Some(e.to_string()),
            )),
        }
    }
    if json {
        let mut out = Vec::with_capacity(rows.len());
        for (row, unreadable) in &rows {
            let mut v = serde_json::to_value(row)?;
            if let Some(e) = unreadable {
                v["state"] = "unreadable".into();
                v["error"] = serde_json::json!({ "code": "unreadable_keys", "message": e });
            }
            out.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    println!(
        "{:<28} {:<26} {:<20} {:>7} {:>10} {:<24} {:>11}  LAST ERROR",
        "CREDENTIAL", "KIND", "APPID", "GEN", "TTL", "FETCHED BY", "QUOTA"
    );
    for (r, unreadable) in rows.clone() {
        let ttl = r.ttl_ms.map_or("-".into(), |ms| {
            humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
        });
        let error = match unreadable {
            Some(e) => format!("unreadable keys: {e}"),
            None => r.last_error.map_or("-".into(), |e| {
                let class = e.class.map(|c| c.to_string()).unwrap_or_default();
                format!("{} {} ({class})", e.code, e.message)
            }),
        };
        // "p1, 12s ago": who committed the stored generation, and when.
        let fetched = match (r.fetched_by, r.fetched_at_ms) {
            (Some(by), Some(at)) => {
                let ago = Duration::from_secs(now_ms.saturating_sub(at) / 1000);
                format!("{by}, {} ago", humantime::format_duration(ago))
            }
            (Some(by), None) => by,
            (None, _) => "-".into(),
        };
        let name = match &r.slot {
            Some(slot) => format!("{}/{slot}", r.id),
            None => r.id.clone(),
        };
        let per = match r.quota_window.as_str() {
            "hour" => "/h",
            "minute" => "/min",
            _ => "",
        };
        println!(
            "{:<28} {:<26} {:<20} {:>7} {:>10} {:<24} {:>11}  {}",
            name,
            r.kind,
            r.appid,
            r.generation.map_or("-".into(), super::readable_generation),
            ttl,
            fetched,
            format!("{}/{}{per}", r.quota_used_today, r.daily_budget),
            error
        );
    }
    for r in rows_with_gaps(rows.iter().map(|(r, _)| r)) {
        println!("{r}");
    }
    for (r, _) in &rows {
        if let Some(f) = &r.followed {
            println!("{}", followed_line(r, f, now_ms));
        }
    }
    for component in &config.components {
        let (active, revoked) = registry_counts(&store, &component.id).await?;
        println!(
            "component {}: {active} authorizers active, {revoked} revoked (ids {}.<appid>; GET /v1/components/{}/authorizers lists them)",
            component.id, component.id, component.id
        );
    }
    super::replicas::print(&store).await
}

/// `shop: followed from https://… (connected, lag 3 ms, 12s ago)`.
fn followed_line(
    r: &wxtoken_common::wire::AppStatus,
    f: &wxtoken_common::wire::Followed,
    now_ms: u64,
) -> String {
    let name = match &r.slot {
        Some(slot) => format!("{}/{slot}", r.id),
        None => r.id.clone(),
    };
    let mut detail = vec![f.state.clone()];
    if let Some(lag) = f.lag_ms {
        detail.push(format!("lag {lag} ms"));
    }
    if let Some(at) = f.at_ms {
        let ago = Duration::from_secs(now_ms.saturating_sub(at) / 1000);
        detail.push(format!("{} ago", humantime::format_duration(ago)));
    }
    format!("{name}: followed from {} ({})", f.from, detail.join(", "))
}

/// One line per credential whose last quota reconciliation found calls
/// the fleet did not make.
fn rows_with_gaps<'a>(
    rows: impl Iterator<Item = &'a wxtoken_common::wire::AppStatus>,
) -> Vec<String> {
    rows.filter_map(|r| {
            let c = r.quota_check.as_ref().filter(|c| c.foreign_fetches > 0)?;
            Some(format!(
                "WARNING {}: {} cgi-bin/token fetches today were not made by this fleet (WeChat counts {},                  the fleet {}): someone else uses the appsecret of {}, and each such fetch cuts the                  fleet's token off 5 minutes later",
                r.id, c.foreign_fetches, c.upstream_used, c.fleet_used, r.appid
            ))
        })
        .collect()
}

/// Active and revoked authorizers of a component's registry (HSCAN pages).
async fn registry_counts(
    store: &TokenStore,
    component: &wxtoken_common::CredentialId,
) -> anyhow::Result<(u64, u64)> {
    let (mut active, mut revoked, mut cursor) = (0, 0, 0);
    loop {
        let page = store.registry_page(component, cursor, 1000).await?;
        for (_, state) in &page.entries {
            if state == crate::store::ACTIVE {
                active += 1;
            } else {
                revoked += 1;
            }
        }
        cursor = page.cursor;
        if cursor == 0 {
            return Ok((active, revoked));
        }
    }
}

pub async fn get(
    config: &Config,
    id: &str,
    ticket: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let cred = find(config, id, ticket)?;
    let store = connected_store(config).await?;
    let now = store.redis_time_ms().await?;
    let Some(token) = store.read_value(&cred.cref).await? else {
        anyhow::bail!(
            "nothing stored for {} (is a coordinator running? see `wxtoken status`)",
            cred.cref
        );
    };
    if json {
        let body = AccessTokenResponse {
            expires_in: token.ttl.as_secs(),
            expires_at: now + u64::try_from(token.ttl.as_millis()).unwrap_or(0),
            generation: token.generation,
            access_token: token.value,
        };
        let mut v = serde_json::to_value(&body)?;
        if cred.cref.slot != Slot::AccessToken
            && let Some(map) = v.as_object_mut()
            && let Some(value) = map.remove("access_token")
        {
            map.insert("ticket".into(), value);
        }
        println!("{v}");
    } else {
        println!("{}", token.value);
    }
    Ok(())
}

pub async fn invalidate(
    config: &Config,
    id: &str,
    ticket: Option<&str>,
    value: &str,
) -> anyhow::Result<()> {
    let cred = find(config, id, ticket)?;
    let store = connected_store(config).await?;
    let name = &cred.cref;
    match store.report(&cred.cref, value).await? {
        Invalidation::Reported { generation } => println!(
            "reported generation {generation}: a replica checks it with WeChat and refreshes only if WeChat rejects it (`wxtoken refresh {name} --force` replaces it regardless)"
        ),
        Invalidation::TokenValid { generation } => println!(
            "generation {generation} was checked with WeChat moments ago and is accepted; nothing to do (`wxtoken refresh {name} --force` replaces it regardless)"
        ),
        Invalidation::AlreadyReplaced { generation } => println!(
            "that value is no longer stored (current generation {generation}); nothing to do"
        ),
        _ => println!("reported"),
    }
    Ok(())
}

pub async fn refresh(
    config: &Config,
    id: &str,
    ticket: Option<&str>,
    force: bool,
    by: Option<&str>,
) -> anyhow::Result<()> {
    let cred = find(config, id, ticket)?;
    let name = &cred.cref;
    let store = connected_store(config).await?;
    let (generation, receivers) = if force {
        let by = by.map_or_else(operator, str::to_owned);
        let (generation, count, heard) = store.force_request(&cred.cref, &by).await?;
        tracing::info!(credential = %name, generation, by = %by, count, "forced refresh requested");
        println!(
            "forced refresh of {name} requested by {by} (replaces generation {generation}; force request #{count} for {name})"
        );
        (generation, heard)
    } else {
        let generation = store.peek(&cred.cref).await?.generation;
        let event = Event::RefreshRequested {
            generation,
            reason: Some("operator".into()),
            force: false,
        };
        (generation, store.publish(&cred.cref, &event).await?)
    };
    println!(
        "refresh requested for {name} (generation {generation}, force={force}); {receivers} replica(s) listening"
    );
    if receivers == 0 {
        anyhow::bail!(
            "no coordinator replica is subscribed: is `wxtoken serve` running against this Redis and prefix?"
        );
    }
    Ok(())
}

/// Who runs the CLI, for the force log: `$USER@host`.
pub(super) fn operator() -> String {
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

pub async fn reset(config: &Config, id: &str, ticket: Option<&str>) -> anyhow::Result<()> {
    let cred = find(config, id, ticket)?;
    let store = connected_store(config).await?;
    let window = cred.kind.limits(&config.refresh).window;
    let cleared = store.reset_gate(&cred.cref, window).await?;
    println!(
        "back-off lifted and the current quota count ({cleared}) cleared for {}; a refresh was requested",
        cred.cref
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
