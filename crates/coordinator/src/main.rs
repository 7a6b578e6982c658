//! The `wxtoken` binary: parses the command line, installs logging and
//! signal handling, and hands off to `wxtoken_coordinator::cli`.

use std::process::ExitCode;

use clap::Parser;
use wxtoken_coordinator::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    wxtoken_coordinator::cli::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxtoken: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}
