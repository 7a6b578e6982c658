//! The testkit's own tests, one binary: the helpers must do what they claim
//! against a real `redis-server`, or every other crate's tests lie.
//!
//! Each module tests one part of the kit; none depends on another's state.

mod fault_proxy;
mod helpers;
mod redis_server;
