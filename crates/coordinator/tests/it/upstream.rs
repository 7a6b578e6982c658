//! The app token kind's fetch against the real simulator over HTTP: every
//! reply class is classified as SPEC §1 says, and no error text carries the
//! secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use wechat_sim::{Faults, SimConfig};
use wxtoken_common::ErrorClass;
use wxtoken_coordinator::config::{Config, Env};
use wxtoken_coordinator::kind::{self, Credential, FetchCx, Fetched};
use wxtoken_coordinator::upstream::{FetchError, Upstream};

const SECRET: &str = "upstream-test-secret-5d1e";

/// The app token credential of a one-app config against `base`.
pub fn app_at(base: &str, api: &str, secret: &str) -> Arc<Credential> {
    let text = format!(
        "[upstream]\nbase_url = \"{base}\"\n[[apps]]\nid = \"shop\"\nappid = \"wx00000000000000b1\"\nsecret = {{ env = \"S\" }}\napi = \"{api}\"\n"
    );
    let env: Env = [("S", secret)].into_iter().collect();
    kind::credentials(&Config::from_toml_str(&text, &env).unwrap()).remove(0)
}

/// One fetch of `cred` through `up`.
pub async fn fetch(up: &Upstream, cred: &Credential, force: bool) -> Result<Fetched, FetchError> {
    cred.kind
        .fetch(FetchCx {
            upstream: up,
            parent: None,
            force,
            vault: None,
        })
        .await
}

async fn sim() -> wechat_sim::SimHandle {
    wechat_sim::spawn(
        SimConfig::new()
            .app("wx00000000000000b1", SECRET)
            .daily_quota(3),
    )
    .await
    .unwrap()
}

fn assert_no_secret(e: &FetchError) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(SECRET), "secret in error: {shown}");
    assert!(!shown.contains("secret="), "query string in error: {shown}");
}

#[tokio::test]
async fn fetches_both_apis_and_classifies_wechat_errors() {
    let sim = sim().await;
    let up = Upstream::new(Duration::from_secs(2), 4).unwrap();
    let base = sim.base_url();
    let app = |api: &str, secret: &str| app_at(&base, api, secret);
    let grant = fetch(&up, &app("token", SECRET), false).await.unwrap();
    assert_eq!(grant.expires_in, Duration::from_secs(7200));
    assert!(!format!("{grant:?}").contains(grant.value.expose_secret()));
    let stable = fetch(&up, &app("stable_token", SECRET), false)
        .await
        .unwrap();
    assert_eq!(
        sim.token_state(stable.value.expose_secret()),
        wechat_sim::TokenState::Valid
    );

    let e = fetch(&up, &app("token", "wrong-secret"), false)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, FetchError::Wechat { errcode: 40125, .. }),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert_no_secret(&e);
    // Quota of 3 (the wrong-secret call used none): 2 more, then 45009.
    fetch(&up, &app("token", SECRET), false).await.unwrap();
    fetch(&up, &app("token", SECRET), false).await.unwrap();
    let e = fetch(&up, &app("token", SECRET), false)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (e.code().as_str(), e.class()),
        ("45009", ErrorClass::QuotaExhausted)
    );
}

#[tokio::test]
async fn transport_faults_are_retryable_and_bounded_by_the_timeout() {
    let sim = sim().await;
    let timeout = Duration::from_millis(300);
    let up = Upstream::new(timeout, 4).unwrap();
    let a = app_at(&sim.base_url(), "stable_token", SECRET);
    let cases = [
        (
            Faults {
                busy_rate: 1.0,
                ..Faults::default()
            },
            "-1",
        ),
        (
            Faults {
                http_502_rate: 1.0,
                ..Faults::default()
            },
            "http_502",
        ),
        (
            Faults {
                garbage_rate: 1.0,
                ..Faults::default()
            },
            "bad_reply",
        ),
        (
            Faults {
                hang_rate: 1.0,
                ..Faults::default()
            },
            "timeout",
        ),
    ];
    for (faults, code) in cases {
        sim.set_faults(faults);
        let started = Instant::now();
        let e = fetch(&up, &a, false).await.err().unwrap();
        assert_eq!(e.code(), code, "{e}");
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(
            started.elapsed() < timeout * 3,
            "{code} took {:?}",
            started.elapsed()
        );
        assert_no_secret(&e);
    }
    // Nobody listening: a connection error, still without the query string.
    let dead = app_at(
        &format!("http://127.0.0.1:{}", wxtoken_testkit::free_port()),
        "token",
        SECRET,
    );
    let e = fetch(&up, &dead, false).await.err().unwrap();
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_no_secret(&e);
}
