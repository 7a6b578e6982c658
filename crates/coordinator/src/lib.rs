//! wxtoken coordinator: keeps WeChat credentials fresh for a fleet.
//!
//! Module map: `config` (TOML + env → [`config::Config`]), `kind` (what
//! differs between credential kinds: app tokens, JS-SDK tickets, WeCom),
//! `catalog` (the credentials one replica keeps), `store` (every Redis
//! operation and script), `upstream` (the HTTP client that calls WeChat),
//! `refresher` (the refresh step, its policy and the schedule that turns
//! every credential), `platform` (the open platform), `http` (the API, WeChat-compatible endpoints,
//! health, metrics), `status`, `metrics`, `quota_check` (WeChat's
//! quota counts against the fleet's), `replica` (wires one replica
//! together and runs it until shutdown), `cli`. See ARCHITECTURE.md.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod follow;
pub mod http;
pub mod kind;
pub mod live_config;
pub mod metrics;
pub mod platform;
pub mod quota_check;
pub mod refresher;
pub mod replica;
pub mod status;
pub mod store;
pub mod upstream;
pub mod vault;
pub mod workers;
