//! `wechat-sim`: a faithful simulator of WeChat's token APIs, so the
//! coordinator can be proven right against WeChat's own rules (SPEC §1):
//! `cgi-bin/token` (every call a new token, 5-minute overlap, 2000/day),
//! `stable_token` (shared token, force refresh limits), WeCom `gettoken`,
//! `getticket`, a use endpoint (`getcallbackip`) that says 40001 / 42001 /
//! 41001 exactly when WeChat would, fault injection on the fetch endpoints,
//! and call counters behind `/__admin/*`.
//!
//! Embed it in tests with [`spawn`] (port 0) and read [`SimHandle::stats`];
//! run it standalone with the `wechat-sim` binary. The crate owns the
//! simulation only: it never calls real WeChat and stores nothing on disk.
//!
//! Code map: `config` (numbers), `token` (one token's life), `quota`
//! (budgets), `state` (the rules across lineages), `faults` (what goes
//! wrong), `stats` (what was seen), `shared` (locking + counting),
//! `routes` / `admin` (HTTP), `handle` (server lifecycle).

mod admin;
mod config;
mod errcode;
mod faults;
mod handle;
mod quota;
mod routes;
mod shared;
mod state;
mod stats;
mod token;

pub use config::{ConfigError, SimApp, SimConfig};
pub use faults::Faults;
pub use handle::{SimHandle, serve, spawn, spawn_on};
pub use routes::router;
pub use shared::SimState;
pub use stats::{AppStats, IssuedToken, Stats};
pub use token::{TokenSource, TokenState};
