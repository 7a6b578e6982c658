//! Tests of the small helpers: prefixes, ports, waiting, logging setup.

use std::collections::HashSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use wxtoken_testkit::{free_port, init_tracing, random_prefix, wait_until, wait_until_async};

#[test]
fn random_prefixes_are_unique_and_valid_ids() {
    let prefixes: HashSet<String> = (0..2000).map(|_| random_prefix()).collect();
    assert_eq!(prefixes.len(), 2000, "random_prefix repeated itself");
    for prefix in &prefixes {
        assert!(prefix.starts_with("t_"), "{prefix}");
        assert_eq!(prefix.len(), 14, "{prefix}");
        assert!(
            prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
            "{prefix} is not [A-Za-z0-9_.-]"
        );
    }
}

#[test]
fn free_port_can_be_bound() {
    let port = free_port();
    assert_ne!(port, 0);
    TcpListener::bind(("127.0.0.1", port)).expect("the port free_port returned is bindable");
}

#[test]
fn wait_until_returns_true_as_soon_as_the_condition_holds() {
    let start = Instant::now();
    let mut calls = 0;
    let met = wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
        calls += 1;
        calls == 3
    });
    assert!(met);
    assert_eq!(calls, 3);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn wait_until_gives_up_at_the_deadline() {
    let start = Instant::now();
    let mut calls = 0;
    let met = wait_until(
        Duration::from_millis(100),
        Duration::from_millis(10),
        || {
            calls += 1;
            false
        },
    );
    let elapsed = start.elapsed();
    assert!(!met);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(calls >= 2, "polled only {calls} times");

    let mut zero_calls = 0;
    let met = wait_until(Duration::ZERO, Duration::from_millis(10), || {
        zero_calls += 1;
        false
    });
    assert!(!met);
    assert_eq!(zero_calls, 1, "the condition is checked at least once");
}

#[tokio::test]
async fn wait_until_async_polls_until_true() {
    let start = Instant::now();
    let met = wait_until_async(Duration::from_secs(5), Duration::from_millis(5), || async {
        start.elapsed() >= Duration::from_millis(30)
    })
    .await;
    assert!(met);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn wait_until_async_cancels_a_hanging_check_at_the_deadline() {
    let start = Instant::now();
    let met = wait_until_async(
        Duration::from_millis(100),
        Duration::from_millis(10),
        std::future::pending::<bool>,
    )
    .await;
    let elapsed = start.elapsed();
    assert!(!met);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[test]
fn init_tracing_is_idempotent() {
    init_tracing();
    init_tracing();
    tracing::info!("init_tracing twice is fine");
}
