//! The `wxtoken` command line (SPEC §6): argument types and one function per
//! subcommand. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.
//!
//! Commands print results to stdout and diagnostics to stderr; no command
//! prints a secret (`check-config` shows secret references, not values).
//! `get` prints a token on purpose: that is what it is for.

mod clear_quota;
mod demo;
mod demo_redis;
mod ops;
mod platform;
mod promote;
mod replicas;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "wxtoken",
    version,
    about = "Keeps WeChat access tokens fresh for a whole fleet: one upstream call per refresh across any number of replicas."
)]
pub struct Cli {
    /// Config file (TOML). Defaults to $WXTOKEN_CONFIG.
    #[arg(long, global = true, env = "WXTOKEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a coordinator replica until SIGTERM / Ctrl-C.
    Serve,
    /// Validate the config and print it resolved, secrets redacted.
    CheckConfig,
    /// Show every credential's state: generation, TTL, last error, quota.
    Status {
        #[arg(long)]
        json: bool,
        /// A component's authorizers instead: counts by state (active,
        /// revoked, failing) and the failing ones.
        #[arg(long, value_name = "ID")]
        component: Option<String>,
    },
    /// Print the current value of a credential (from Redis): `ID` (its
    /// access token), `ID/ticket:jsapi` or `ID --ticket jsapi`.
    Get {
        id: String,
        /// A ticket of ID instead of its access token.
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Report a value as rejected by WeChat: a replica checks it with WeChat
    /// and refreshes only if WeChat rejects it.
    Invalidate {
        id: String,
        #[arg(long)]
        ticket: Option<String>,
        /// The rejected value (a token, or with --ticket a ticket).
        #[arg(long)]
        token: String,
    },
    /// Ask the fleet to refresh a credential now. `--force` replaces even a
    /// fresh value (counted, and logged with who asked).
    Refresh {
        id: String,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        force: bool,
        /// Who asks, for the log and `force_by` (default: $USER@host).
        #[arg(long, requires = "force")]
        by: Option<String>,
    },
    /// Lift a credential's back-off and its current quota count (after fixing the cause).
    Reset {
        id: String,
        #[arg(long)]
        ticket: Option<String>,
    },
    /// Reset today's API quota of an app at WeChat (`clear_quota/v2`): spends one of
    /// WeChat's 10 resets per account and month, so it needs --yes.
    ClearQuota {
        id: String,
        /// Spend one of the month's 10 resets.
        #[arg(long)]
        yes: bool,
    },
    /// Make a followed credential a primary: the fleet stops following it and
    /// refreshes it from WeChat. Refused while the primary answers, unless --force.
    Promote {
        id: String,
        /// Promote even though the primary still answers.
        #[arg(long)]
        force: bool,
    },
    /// A self-contained local run: simulator + 3 replicas + your Redis, short TTLs.
    Demo(demo::DemoArgs),
    /// Exit 0 if the local replica's `/healthz` answers (for container HEALTHCHECKs).
    Healthcheck {
        /// URL to probe; default: `/healthz` on `[http] listen` (0.0.0.0 → 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
}

/// Installs the tracing subscriber (only the binary does this).
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    // hyper/reqwest internals never log at info, but keep them quiet unless asked.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},hyper=warn,reqwest=warn,h2=warn,rustls=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_stderr())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The file the config comes from (what a reload re-reads).
fn config_path(cli: &Cli) -> Option<std::path::PathBuf> {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("WXTOKEN_CONFIG").map(Into::into))
}

/// Colour in the log only for a person at a terminal: a file or a pipe gets
/// plain text, and `NO_COLOR` (no-color.org: set and not empty) turns it off.
fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// `serve` and `check-config` need every secret; the commands that only
/// read or write Redis (or probe `/healthz`) use none, so an operator's shell
/// without the app secrets can still run them.
fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    match cli.command {
        // clear-quota sends the appsecret to WeChat.
        Command::Serve
        | Command::CheckConfig
        | Command::Demo(_)
        | Command::ClearQuota { .. }
        | Command::Promote { .. } => Config::load(cli.config.as_deref()),
        Command::Status { .. }
        | Command::Get { .. }
        | Command::Invalidate { .. }
        | Command::Refresh { .. }
        | Command::Reset { .. }
        | Command::Healthcheck { .. } => Config::load_without_secrets(cli.config.as_deref()),
    }
}

/// A generation as people read it. Fences are seeded from Redis' clock in
/// microseconds (SPEC §3), so they are 16 digits that differ in the last
/// few: show those (`…123457`). JSON, Redis and logs keep the full number.
pub(crate) fn readable_generation(generation: u64) -> String {
    const TAIL: u64 = 1_000_000;
    if generation < TAIL {
        generation.to_string()
    } else {
        format!("…{:06}", generation % TAIL)
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> ExitCode {
    if let Command::Demo(args) = &cli.command {
        return report(demo::run(args).await);
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wxtoken: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Serve => ops::serve(&config, config_path(&cli)).await,
        Command::CheckConfig => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        Command::Status {
            json,
            component: Some(id),
        } => platform::status(&config, id, *json).await,
        Command::Status { json, .. } => ops::status(&config, *json).await,
        Command::Get { id, ticket, json } => ops::get(&config, id, ticket.as_deref(), *json).await,
        Command::Invalidate { id, ticket, token } => {
            ops::invalidate(&config, id, ticket.as_deref(), token).await
        }
        Command::Refresh {
            id,
            ticket,
            force,
            by,
        } => ops::refresh(&config, id, ticket.as_deref(), *force, by.as_deref()).await,
        Command::Reset { id, ticket } => ops::reset(&config, id, ticket.as_deref()).await,
        Command::ClearQuota { id, yes } => clear_quota::clear_quota(&config, id, *yes).await,
        Command::Promote { id, force } => promote::promote(&config, id, *force).await,
        Command::Healthcheck { url } => ops::healthcheck(&config, url.as_deref()).await,
        Command::Demo(_) => Ok(()),
    };
    report(result)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    eprintln!("wxtoken: {}", error_chain(&e));
    if backtrace_asked() {
        eprintln!("{}", e.backtrace());
    }
    if e.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Every cause of `e` once: errors that print their source inside their own
/// message (`redis: Connection refused` over `Connection refused`) would
/// otherwise repeat it once per layer of `{:#}`.
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if cause.is_empty() || out.contains(&cause) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause);
    }
    out
}

/// A backtrace only when asked for, as Rust itself decides.
fn backtrace_asked() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| v != "0");
    set("RUST_LIB_BACKTRACE") || set("RUST_BACKTRACE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("redis: {0}")]
    struct Wrapping(#[source] std::io::Error);

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = anyhow::Error::new(Wrapping(io)).context("cannot reach redis");
        assert_eq!(format!("{e:#}").matches("Connection refused").count(), 2);
        assert_eq!(
            error_chain(&e),
            "cannot reach redis: redis: Connection refused"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }

    #[test]
    fn generations_are_shown_by_their_tail() {
        assert_eq!(readable_generation(7), "7");
        assert_eq!(readable_generation(999_999), "999999");
        assert_eq!(readable_generation(1_764_626_400_000_042), "…000042");
    }
}
