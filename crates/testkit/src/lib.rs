//! Test kit for wxtoken: the real things tests run against, and the small
//! helpers that keep parallel tests apart.
//!
//! It owns starting and killing a real `redis-server` ([`RedisServer`]), a TCP
//! proxy that injects network faults ([`FaultProxy`]), per-test isolation
//! ([`random_prefix`], [`free_port`]), quiet-unless-asked logging
//! ([`init_tracing`]) and poll-with-deadline waiting ([`wait_until`],
//! [`wait_until_async`]). It does not know wxtoken's key schema, the
//! coordinator or the simulator, and it never mocks Redis: every test talks to
//! a real server.
//!
//! ```no_run
//! use wxtoken_testkit::{RedisServer, random_prefix};
//!
//! let redis = RedisServer::spawn(); // killed when `redis` is dropped
//! let prefix = random_prefix(); // keys of this test only
//! let mut con = redis.client().get_connection().unwrap();
//! let _: () = redis::cmd("SET")
//!     .arg(format!("{prefix}:k"))
//!     .arg("v")
//!     .query(&mut con)
//!     .unwrap();
//! ```

mod fault_proxy;
mod isolation;
mod logs;
mod redis_server;
mod wait;

pub use fault_proxy::{FaultProxy, ProxyMode};
pub use isolation::{free_port, random_prefix};
pub use logs::init_tracing;
pub use redis_server::{BINARY_ENV, RedisServer, RedisServerBuilder};
pub use wait::{wait_until, wait_until_async};
