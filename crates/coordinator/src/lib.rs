//! wxtoken coordinator: keeps WeChat credentials fresh for a fleet.
//!
//! Module map: `config` (TOML + env → [`config::Config`]), `store` (every Redis
//! operation and script), `upstream` (the only code that calls WeChat),
//! `refresher` (the refresh step and its policy loop), `wake` (events →
//! per-credential wake-ups), `replica` (wires one replica together and runs it
//! until shutdown). See ARCHITECTURE.md.

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod refresher;
pub mod replica;
pub mod status;
pub mod store;
pub mod upstream;
pub mod wake;
