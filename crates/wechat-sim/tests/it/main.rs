//! The one integration-test binary of `wechat-sim`: every rule checked over
//! real HTTP against a simulator spawned on port 0 (and the built binary).

mod admin;
mod binary;
mod business;
mod component_authorizers;
mod component_list;
mod component_push;
mod component_scale;
mod component_token;
mod concurrency;
mod error_codes;
mod faults;
mod helpers;
mod jsapi_check;
mod stable_token;
mod tickets;
mod token;
mod wecom_ticket;
mod wecom_token;
