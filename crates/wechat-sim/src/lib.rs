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
//! exactly when WeChat would; the quota tools `openapi/quota/get` (every
//! `cgi-bin/token` call of the day counted, a third party's included) and
//! `clear_quota/v2` (appid + appsecret, 10 resets a calendar month, then
//! 48006).
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
//! Open Platform (第三方平台) components ([`SimComponent`]) on the WeChat
//! host: `cgi-bin/component/api_component_token` (verify ticket + secret,
//! every call a new token), `api_start_push_ticket`,
//! `api_create_preauthcode`, `api_query_auth`, `api_authorizer_token`
//! (refresh tokens, rotating by default) and `api_get_authorizer_list`,
//! with WeChat's 61xxx codes; sealed pushes of `component_verify_ticket`
//! every `ticket_interval` and of the authorization events to each
//! component's event URL; authorizer access tokens accepted by the app
//! endpoints as tokens of the authorizer appid. 100 000 authorizers cost
//! about 15 MB ([`SimHandle::bulk_authorize`]).
//!
//! Fault injection applies to the fetch and ticket endpoints of both hosts
//! and to the component endpoints;
//! call counters, issued tokens and tickets, and a JS-SDK signature check
//! ([`jsapi_signature`]) are behind `/__admin/*`.
//!
//! Embed it in tests with [`spawn`] (port 0) and read [`SimHandle::stats`];
//! run it standalone with the `wechat-sim` binary. The crate owns the
//! simulation only: it never calls real WeChat and stores nothing on disk.
//!
//! Code map: `config` (numbers; `config/corp.rs` the WeCom corps,
//! `config/component.rs` the components), `token` (one token's life),
//! `ticket` (one ticket's life, the signature), `quota` (budgets, sliding
//! windows), `state` (the rules: `lineage.rs` app tokens, `openapi.rs` the quota tools, `tickets.rs` app
//! tickets, `wecom.rs` WeCom, `component/` the Open Platform), `errcode`
//! (both hosts' error replies), `faults` (what goes wrong), `stats` (what
//! was seen; `stats/component.rs`), `shared` (locking + counting:
//! `flight.rs` requests in flight and faults, `uses.rs` token checks,
//! `component.rs` component calls, `push.rs` pushes, `authorization.rs`
//! merchant actions), `routes` (HTTP: `wechat.rs`, `wecom.rs`,
//! `component.rs`) / `admin` (`admin/component.rs`), `handle` (server
//! lifecycle, push loops).
//!
//! Invariants: the two hosts never accept each other's tokens; component
//! tokens are accepted only by component endpoints; no rule reads a clock
//! of its own (`state`, `quota`, `ticket` take the moment); a refused call
//! spends no budget; secrets (app and component secrets, message tokens,
//! AES keys) never reach Debug or logs, and logs show at most 6 chars of a
//! token or ticket; only `shared/push.rs` makes outgoing HTTP requests.

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

pub use config::{ConfigError, SimAgent, SimApp, SimComponent, SimConfig, SimCorp};
pub use faults::Faults;
pub use handle::{SimHandle, serve, spawn, spawn_on};
pub use routes::{router, wxacode_image};
pub use shared::{Forgery, PushOutcome, SimState};
pub use state::{Authorization, ComponentError};
pub use stats::{
    AgentTicketStats, AppStats, AuthorizerStats, ComponentStats, CorpStats, IssuedTicket,
    IssuedToken, MAX_ANOMALIES, Stats, Upload, endpoint,
};
pub use ticket::{jsapi_signature, url_without_fragment};
pub use token::{TokenSource, TokenState};
