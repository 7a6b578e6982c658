//! End-to-end tests with `wxtoken serve` as separate processes: crashes,
//! stalls, graceful shutdown, the CLI, and log hygiene.

mod acl;
mod chaos_stall;
mod cli;
mod client;
mod crashes;
mod docs;
mod follow;
mod gateway;
mod http;
mod kinds;
mod observability;
mod papercuts;
mod platform;
mod processes;
mod quota_check;
mod reload;
mod sdk;
mod ui;
mod watch;

/// Tests that run fleets of SDK processes (20 wechatpy workers) take turns,
/// and timing-sensitive ones wait for them: two such fleets at once starve
/// a 2-core machine and the tests beside them. Hold the guard for the test.
pub static HEAVY: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));
