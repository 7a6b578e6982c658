//! End-to-end tests with `wxtoken serve` as separate processes: crashes,
//! stalls, graceful shutdown, the CLI, and log hygiene.

mod acl;
mod cli;
mod client;
mod crashes;
mod gateway;
mod http;
mod kinds;
mod platform;
mod processes;
mod sdk;
