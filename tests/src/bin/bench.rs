//! `cargo run --release -p wxtoken-e2e --bin bench -- [--quick]`
//!
//! The fleet benchmark (see `wxtoken_e2e::bench`): prints a table and JSON.

use std::process::ExitCode;

use clap::Parser;
use wxtoken_e2e::bench::{self, Sections};

#[derive(Debug, Parser)]
#[command(about = "wxtoken fleet benchmark: upstream efficiency vs SDKs, scale, read path")]
struct Args {
    /// A short smoke run (seconds per section) that checks the harness, not the numbers.
    #[arg(long)]
    quick: bool,
    /// Only these sections (comma-separated: efficiency, alternative, scale, read-path, kinds, hardening, platform, gateway, gateway-pinned, follow, follow-component).
    #[arg(long)]
    only: Option<String>,
    /// Write the JSON report here as well.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .try_init();
    }
    let sections = match args.only.as_deref().map(Sections::parse).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match bench::run(args.quick, sections).await {
        Ok(report) => {
            println!("{}", report.table());
            let json = report.json();
            println!("{json}");
            if let Some(path) = &args.json
                && let Err(e) = std::fs::write(path, format!("{json}\n"))
            {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
