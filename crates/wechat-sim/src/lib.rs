//! `wechat-sim`: a faithful simulator of WeChat's and WeCom's token and
//! ticket APIs, so the coordinator can be proven right against their own
//! rules (SPEC §1, §8).
//!
//! WeChat (api.weixin.qq.com) at the base URL root:
//! `cgi-bin/token` (every call a new token, 5-minute overlap, 2000/day),
//! `stable_token` (shared token, force refresh limits), `ticket/getticket`
//! (`jsapi` / `wx_card`: the same ticket while valid, `expires_in` always
//! the full life, a per-type daily quota), and use endpoints
//! (`getcallbackip`, `get_api_domain_ip`) that say 40001 / 42001 / 41001
//! exactly when WeChat would.
//!
//! WeCom (qyapi.weixin.qq.com) under `/qyapi` on the same listener
//! ([`SimHandle::wecom_base_url`]): corps with agents ([`SimCorp`],
//! [`SimAgent`]); `gettoken` (one token per (corp, secret), the same while
//! valid, `expires_in` always the full life; also at the root as an alias),
//! `get_jsapi_ticket` (per corp) and `ticket/get?type=agent_config` (per
//! agent) with sliding hourly caps per agent and per corp, and
//! `getcallbackip` / `get_api_domain_ip`, all with WeCom's error codes
//! (40014 invalid token, 40001 bad secret, 45009 "api freq out of limit").
//!
//! Fault injection applies to the fetch and ticket endpoints of both hosts;
//! call counters, issued tokens and tickets, and a JS-SDK signature check
//! ([`jsapi_signature`]) are behind `/__admin/*`.
//!
//! Embed it in tests with [`spawn`] (port 0) and read [`SimHandle::stats`];
//! run it standalone with the `wechat-sim` binary. The crate owns the
//! simulation only: it never calls real WeChat and stores nothing on disk.
//!
//! Code map: `config` (numbers; `config/corp.rs` the WeCom corps), `token`
//! (one token's life), `ticket` (one ticket's life, the signature), `quota`
//! (budgets, sliding windows), `state` (the rules: `lineage.rs` app tokens,
//! `tickets.rs` app tickets, `wecom.rs` WeCom), `errcode` (both hosts'
//! error replies), `faults` (what goes wrong), `stats` (what was seen),
//! `shared` (locking + counting: `flight.rs` requests in flight and faults,
//! `uses.rs` token checks), `routes` (HTTP: `wechat.rs`, `wecom.rs`) /
//! `admin`, `handle` (server lifecycle).
//!
//! Invariants: the two hosts never accept each other's tokens; no rule
//! reads a clock of its own (`state`, `quota`, `ticket` take the moment);
//! a refused call spends no budget; secrets never reach Debug or logs, and
//! logs show at most 6 chars of a token or ticket.

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
mod ticket;
mod token;

pub use config::{ConfigError, SimAgent, SimApp, SimConfig, SimCorp};
pub use faults::Faults;
pub use handle::{SimHandle, serve, spawn, spawn_on};
pub use routes::router;
pub use shared::SimState;
pub use stats::{AgentTicketStats, AppStats, CorpStats, IssuedTicket, IssuedToken, Stats};
pub use ticket::{jsapi_signature, url_without_fragment};
pub use token::{TokenSource, TokenState};
