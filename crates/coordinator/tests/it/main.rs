//! Integration tests of the coordinator: real `redis-server` (testkit), real
//! wechat-sim over HTTP, replicas in this process. Multi-process scenarios
//! (SIGKILL, SIGSTOP, the binary) live in the `wxtoken-e2e` package.

mod bad_input;
mod failures;
mod fencing;
mod fleet;
mod follow;
mod follow_component;
mod follow_promote;
mod follow_reload;
mod gateway;
mod gateway_tls;
mod http;
mod invalidation;
mod keys;
mod login;
mod pki;
mod platform;
mod quota;
mod reload;
mod single_flight;
mod stable;
mod steady_state;
mod tickets;
mod tls;
mod topology;
mod ui;
mod upstream;
mod watch;
mod wecom;
