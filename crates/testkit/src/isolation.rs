//! What keeps tests that run in parallel out of each other's way: a key
//! prefix unique to one test, and a free TCP port on the loopback interface.
//!
//! It does not reserve anything: a port from [`free_port`] is free when the
//! function returns and may be taken by someone else before it is bound again
//! (callers that start servers on it retry on a bind failure, as
//! [`RedisServer`](crate::RedisServer) does).

use std::net::{Ipv4Addr, TcpListener};

use rand::Rng;
use rand::distr::Alphanumeric;

/// How many random characters follow `t_` in a [`random_prefix`]:
/// 62^12 ≈ 3·10^21 values, so two tests never share a prefix.
const PREFIX_RANDOM_CHARS: usize = 12;

/// A key prefix unique to one test: `t_` followed by 12 random ASCII
/// alphanumerics, e.g. `t_h3K9pQ0zLm2W`.
///
/// It matches `[A-Za-z0-9_.-]{1,64}`, so it is valid both as wxtoken's key
/// prefix and as a credential id.
pub fn random_prefix() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(PREFIX_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("t_{random}")
}

/// A TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads
/// the port the kernel chose, and releases it.
///
/// Never pass port 0 to `redis-server` instead: `--port 0` disables TCP.
///
/// # Panics
///
/// If the loopback interface cannot be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the address of a bound listener: {e}"))
        .port()
}
