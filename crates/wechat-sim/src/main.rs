//! The `wechat-sim` binary: parses the command line into a `SimConfig`,
//! installs the tracing subscriber (the only place that does), serves the
//! simulator and stops gracefully on SIGTERM or ctrl-c.
//!
//! Everything the simulator does lives in the library; this file is glue.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use wechat_sim::{SimAgent, SimApp, SimComponent, SimConfig, SimCorp};

/// A faithful simulator of WeChat's token APIs (quotas, overlap, error
/// codes, fault injection) for tests and dev stacks.
#[derive(Debug, Parser)]
#[command(name = "wechat-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// An Official Account / Mini Program as APPID:SECRET; repeat for more.
    #[arg(long = "app", value_name = "APPID:SECRET", value_parser = parse_app)]
    apps: Vec<SimApp>,
    /// A WeCom secret as CORPID:AGENTID:SECRET (CORPID::SECRET for one
    /// without agent id, e.g. the contacts secret); repeat for more agents
    /// and corps. Served under /qyapi.
    #[arg(long = "corp", value_name = "CORPID:AGENTID:SECRET", value_parser = parse_corp)]
    corps: Vec<CorpArg>,
    /// Lifetime of issued tokens.
    #[arg(long, default_value = "7200s", value_parser = humantime::parse_duration)]
    token_ttl: Duration,
    /// How long a superseded token keeps working. Default: WeChat's 300s, or
    /// half of --token-ttl when that is shorter (a dev stack's 60s tokens get
    /// 30s), since a superseded token cannot outlive a new one's lifetime.
    #[arg(long, value_parser = humantime::parse_duration)]
    overlap: Option<Duration>,
    /// cgi-bin/token calls per app per day (Asia/Shanghai day).
    #[arg(long, default_value_t = 2000)]
    daily_quota: u32,
    /// stable_token calls per app per day.
    #[arg(long, default_value_t = 500_000)]
    stable_daily_quota: u32,
    /// stable_token calls per app per minute.
    #[arg(long, default_value_t = 10_000)]
    stable_per_minute: u32,
    /// force_refresh calls per app per day.
    #[arg(long, default_value_t = 20)]
    force_refresh_daily: u32,
    /// Minimum time between two force refreshes.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    force_refresh_spacing: Duration,
    /// get_api_domain_ip calls per app per day.
    #[arg(long, default_value_t = 1000)]
    domain_ip_daily_quota: u32,
    /// Lifetime of tickets (jsapi, wx_card, WeCom jsapi, agent_config).
    #[arg(long, default_value = "7200s", value_parser = humantime::parse_duration)]
    ticket_ttl: Duration,
    /// getticket calls per app per ticket type per day.
    #[arg(long, default_value_t = 200)]
    ticket_daily_quota: u32,
    /// WeCom ticket calls per agent per ticket type per sliding hour.
    #[arg(long, default_value_t = 100)]
    wecom_ticket_agent_hourly: u32,
    /// WeCom ticket calls per corp (all agents) per ticket type per sliding hour.
    #[arg(long, default_value_t = 400)]
    wecom_ticket_corp_hourly: u32,
    /// An Open Platform component as APPID:SECRET:TOKEN:AESKEY[:EVENT_URL]
    /// (TOKEN the message token, AESKEY the 43-char EncodingAESKey,
    /// EVENT_URL where pushes go); repeat for more.
    #[arg(long = "component", value_name = "APPID:SECRET:TOKEN:AESKEY[:EVENT_URL]", value_parser = parse_component)]
    components: Vec<SimComponent>,
    /// How often each component is pushed a new component_verify_ticket.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    ticket_interval: Duration,
    /// How long a pushed verify ticket buys component tokens.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    verify_ticket_ttl: Duration,
    /// Lifetime of component access tokens.
    #[arg(long, default_value = "7200s", value_parser = humantime::parse_duration)]
    component_token_ttl: Duration,
    /// Lifetime of authorizer access tokens.
    #[arg(long, default_value = "7200s", value_parser = humantime::parse_duration)]
    authorizer_token_ttl: Duration,
    /// api_component_token calls per component per minute.
    #[arg(long, default_value_t = 100)]
    component_token_per_minute: u32,
    /// api_component_token calls per component per day.
    #[arg(long, default_value_t = 2000)]
    component_token_daily_quota: u32,
    /// api_authorizer_token calls per component (all authorizers) per minute.
    #[arg(long, default_value_t = 10_000)]
    authorizer_token_per_minute: u32,
    /// Life of authorization codes and pre-auth codes.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    auth_code_ttl: Duration,
    /// Whether every refresh-token reply carries a new refresh token.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    refresh_token_rotation: bool,
    /// Seed for fault decisions (reproducible chaos runs).
    #[arg(long)]
    seed: Option<u64>,
    /// Log format on stderr. Level from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Probe a running simulator instead of serving: exit 0 if `GET URL`
    /// answers 200 within 2 s (default URL: /healthz on --listen, 0.0.0.0
    /// probed as 127.0.0.1). For container HEALTHCHECKs: the image has no curl.
    #[arg(long, value_name = "URL")]
    healthcheck: Option<Option<String>>,
}

/// WeChat's overlap (SPEC §1: the old token works about 5 minutes more),
/// capped at half the lifetime so short dev lifetimes work without a flag.
fn default_overlap(token_ttl: Duration) -> Duration {
    Duration::from_secs(300).min(token_ttl / 2)
}

/// `--healthcheck`: one GET, success only for a 2xx within 2 s.
async fn healthcheck(listen: SocketAddr, url: Option<String>) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| {
        let mut addr = listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}/healthz")
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("http client")?;
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// One `--corp` flag: a secret of a corp.
#[derive(Debug, Clone)]
struct CorpArg {
    corpid: String,
    agent: SimAgent,
}

fn parse_corp(s: &str) -> Result<CorpArg, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(corpid), Some(agentid), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected CORPID:AGENTID:SECRET (or CORPID::SECRET)".to_owned());
    };
    if corpid.is_empty() || secret.is_empty() {
        return Err("expected CORPID:AGENTID:SECRET (or CORPID::SECRET)".to_owned());
    }
    let agentid = match agentid {
        "" => None,
        id => Some(id.parse::<u64>().map_err(|_| "AGENTID must be a number")?),
    };
    Ok(CorpArg {
        corpid: corpid.to_owned(),
        agent: SimAgent {
            agentid,
            secret: secret.to_owned(),
        },
    })
}

/// Groups `--corp` flags by corpid, in first-seen order.
fn group_corps(args: Vec<CorpArg>) -> Vec<SimCorp> {
    let mut corps: Vec<SimCorp> = Vec::new();
    for arg in args {
        match corps.iter_mut().find(|c| c.corpid == arg.corpid) {
            Some(corp) => corp.agents.push(arg.agent),
            None => corps.push(SimCorp {
                corpid: arg.corpid,
                agents: vec![arg.agent],
            }),
        }
    }
    corps
}

fn parse_component(s: &str) -> Result<SimComponent, String> {
    const SHAPE: &str = "expected APPID:SECRET:TOKEN:AESKEY[:EVENT_URL]";
    let mut parts = s.splitn(5, ':');
    let (Some(appid), Some(secret), Some(token), Some(key)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SHAPE.to_owned());
    };
    if [appid, secret, token, key].iter().any(|p| p.is_empty()) {
        return Err(SHAPE.to_owned());
    }
    let component = SimComponent::new(appid, secret, token, key);
    Ok(match parts.next() {
        Some(url) if !url.is_empty() => component.event_url(url),
        _ => component,
    })
}

fn parse_app(s: &str) -> Result<SimApp, String> {
    match s.split_once(':') {
        Some((appid, secret)) if !appid.is_empty() && !secret.is_empty() => Ok(SimApp {
            appid: appid.to_owned(),
            secret: secret.to_owned(),
        }),
        _ => Err("expected APPID:SECRET".to_owned()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the causes on one line, no backtrace (RUST_BACKTRACE
            // applies to panics, where it is wanted).
            eprintln!("wechat-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(url) = cli.healthcheck {
        return healthcheck(cli.listen, url).await;
    }
    init_tracing(cli.log_format);
    let config = SimConfig {
        apps: cli.apps,
        corps: group_corps(cli.corps),
        token_ttl: cli.token_ttl,
        overlap: cli
            .overlap
            .unwrap_or_else(|| default_overlap(cli.token_ttl)),
        daily_quota: cli.daily_quota,
        stable_daily_quota: cli.stable_daily_quota,
        stable_per_minute: cli.stable_per_minute,
        force_refresh_daily: cli.force_refresh_daily,
        force_refresh_spacing: cli.force_refresh_spacing,
        domain_ip_daily_quota: cli.domain_ip_daily_quota,
        ticket_ttl: cli.ticket_ttl,
        ticket_daily_quota: cli.ticket_daily_quota,
        wecom_ticket_agent_hourly: cli.wecom_ticket_agent_hourly,
        wecom_ticket_corp_hourly: cli.wecom_ticket_corp_hourly,
        components: cli.components,
        ticket_interval: cli.ticket_interval,
        verify_ticket_ttl: cli.verify_ticket_ttl,
        component_token_ttl: cli.component_token_ttl,
        authorizer_token_ttl: cli.authorizer_token_ttl,
        component_token_per_minute: cli.component_token_per_minute,
        component_token_daily_quota: cli.component_token_daily_quota,
        authorizer_token_per_minute: cli.authorizer_token_per_minute,
        auth_code_ttl: cli.auth_code_ttl,
        refresh_token_rotation: cli.refresh_token_rotation,
        seed: cli.seed,
        ..SimConfig::default()
    };
    if config.apps.is_empty() && config.corps.is_empty() && config.components.is_empty() {
        tracing::warn!("no --app, --corp or --component given: every fetch will answer 40013");
    }
    let appids: Vec<&str> = config.apps.iter().map(|a| a.appid.as_str()).collect();
    let corpids: Vec<&str> = config.corps.iter().map(|c| c.corpid.as_str()).collect();
    let components: Vec<&str> = config
        .components
        .iter()
        .map(|c| c.component_appid.as_str())
        .collect();
    tracing::info!(apps = ?appids, corps = ?corpids, components = ?components, token_ttl = ?config.token_ttl, overlap = ?config.overlap, ticket_ttl = ?config.ticket_ttl, ticket_interval = ?config.ticket_interval, "starting");
    config.validate().map_err(|e| match e {
        wechat_sim::ConfigError::OverlapNotShorterThanTtl { .. } => anyhow::anyhow!(
            "{e}: pass a shorter --overlap, or leave it out (the default is min(300s, --token-ttl / 2))"
        ),
        e => e.into(),
    })?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let sim = wechat_sim::spawn_on(listener, config).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a terminal (not a file or pipe), and never with NO_COLOR set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}
