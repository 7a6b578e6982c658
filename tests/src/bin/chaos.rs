//! `cargo run -p wxtoken-e2e --bin chaos -- --duration 10m --seed 7`
//!
//! Runs the chaos profile (see `wxtoken_e2e::chaos`), prints the report as a
//! table and as JSON, and exits non-zero when a pass criterion failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wxtoken_e2e::chaos::{ChaosConfig, FaultKind, run};

#[derive(Debug, Parser)]
#[command(
    about = "wxtoken chaos runner: replicas, readers, Redis and upstream faults on a seeded schedule"
)]
struct Args {
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 5)]
    replicas: usize,
    #[arg(long, default_value_t = 20)]
    readers: usize,
    /// Mean time between two scheduled faults.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    fault_every: Duration,
    /// Only these scheduled faults (comma-separated names from the report;
    /// `none` for upstream faults only).
    #[arg(long)]
    faults: Option<String>,
    /// Write the JSON report here as well.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// The open platform profile instead (issue 14): one component, merchants
    /// authorizing and revoking all the time, replica kills and Redis wipes.
    #[arg(long)]
    platform: bool,
    /// Test hook: block the runtime this long once the fleet is up (the
    /// watchdog must end the run with a failing report).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    stall: Option<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .try_init();
    }
    if args.platform {
        return platform(&args).await;
    }
    let mut cfg = ChaosConfig::new(args.duration, args.seed);
    cfg.replicas = args.replicas.max(1);
    cfg.readers = args.readers.max(1);
    cfg.fault_every = args.fault_every;
    cfg.stall = args.stall;
    if let Some(list) = &args.faults {
        let mut kinds = Vec::new();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "none")
        {
            match FaultKind::parse(name) {
                Some(k) => kinds.push(k),
                None => {
                    let all: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                    eprintln!("unknown fault {name:?}; known: {}", all.join(", "));
                    return ExitCode::from(2);
                }
            }
        }
        cfg.kinds = kinds;
    }
    eprintln!(
        "chaos: {:?}, seed {}, {} replicas, {} readers",
        cfg.duration, cfg.seed, cfg.replicas, cfg.readers
    );
    let report = match run(cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos run failed to complete: {e:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    println!("{json}");
    if let Some(path) = args.json
        && let Err(e) = std::fs::write(&path, &json)
    {
        eprintln!("cannot write {}: {e}", path.display());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn platform(args: &Args) -> ExitCode {
    let mut cfg = wxtoken_e2e::chaos::platform::PlatformChaos::new(args.duration, args.seed);
    cfg.replicas = args.replicas.max(1);
    cfg.fault_every = args.fault_every;
    eprintln!(
        "chaos --platform: {:?}, seed {}, {} replicas",
        cfg.duration, cfg.seed, cfg.replicas
    );
    let report = match wxtoken_e2e::chaos::platform::run(cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos run failed to complete: {e:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    println!("{json}");
    if let Some(path) = &args.json
        && let Err(e) = std::fs::write(path, &json)
    {
        eprintln!("cannot write {}: {e}", path.display());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
