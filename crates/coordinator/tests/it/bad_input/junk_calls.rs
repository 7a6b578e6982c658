//! Every read and write API on each junk case of `junk::CASES`, with no
//! replica running (nothing repairs the junk meanwhile): `TokenClient` hands
//! out a servable token (plausible, with a TTL, what Redis holds) or an
//! error; `TokenStore` returns a `StoreError` or a sane value; the HTTP API
//! answers a token or a JSON error of the table. Each call runs on its own
//! task, so a panic is recorded and every case still runs.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use wxtoken_common::{CredentialRef, ErrorClass, Window};
use wxtoken_coordinator::catalog::Catalog;
use wxtoken_coordinator::http::{HttpState, router};
use wxtoken_coordinator::store::{
    CommitArgs, FailureRecord, Gate, Grant, LockOwner, StoreError, TokenStore,
};

use super::junk::{CASES, Junk};
use super::{send, watch_panics};
use crate::fleet::{API_KEY, APPID, SECRET};

/// Runs `f` on its own task; a panic or a hang is recorded in `panics`.
async fn guarded<T: Debug + Send + 'static>(
    what: String,
    panics: &mut Vec<String>,
    f: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    match tokio::time::timeout(Duration::from_secs(10), tokio::spawn(f)).await {
        Ok(Ok(v)) => {
            let shown: String = format!("{v:?}").chars().take(160).collect();
            eprintln!("  {what}: {shown}");
            Some(v)
        }
        Ok(Err(e)) => {
            panics.push(format!("{what}: {e}"));
            None
        }
        Err(_) => {
            panics.push(format!("{what}: hung for 10 s"));
            None
        }
    }
}

/// `guarded` for a store call: `call!(panics, "what", store, id, |s, id| body)`.
macro_rules! call {
    ($panics:expr, $what:expr, $store:expr, $id:expr, |$s:ident, $i:ident| $body:expr) => {{
        let ($s, $i) = ($store.clone(), $id.clone());
        let what = format!("{} {}", $what, $i);
        guarded(what, &mut $panics, async move { $body }).await
    }};
}

fn text<T>(r: Result<T, StoreError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

async fn get(r: Router, uri: String) -> (StatusCode, String) {
    let req = Request::get(uri).header("authorization", format!("Bearer {API_KEY}"));
    let (status, body) = send(&r, req.body(Body::empty()).unwrap()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_is_an_error_or_a_servable_token_never_a_panic() {
    watch_panics();
    let mut junk = Junk::new().await;
    let store = junk.store();
    let mut panics = Vec::new();
    for i in 0..CASES.len() {
        let (name, id) = (junk.targets[i].name, junk.targets[i].id.clone());
        eprintln!("{name} ({id}):");
        junk.plant(i).await;
        let servable = junk.servable(i).await;

        // The client library, from an empty cache.
        let client = junk.client(Duration::from_millis(300));
        let read = call!(panics, "client", client, id, |c, id| {
            let token = c.access_token(id.id.as_str()).await;
            token.map(|t| (t.value().to_owned(), t.ttl()))
        });
        if let Some(Ok((value, ttl))) = read {
            let stored = servable.as_deref();
            assert_eq!(Some(value.as_str()), stored, "{name}: not servable");
            assert!(ttl <= Duration::from_secs(60), "{name}");
        }

        // Every store read.
        if let Some(Ok(p)) = call!(panics, "peek", store, id, |s, id| text(s.peek(&id).await)) {
            assert!(p.token_ttl.is_none() || servable.is_some(), "{name}: {p:?}");
            assert!(p.generation < 1 << 53, "{name}: {p:?}");
            assert!(p.failures <= 1_000_000_000, "{name}: {p:?}");
            assert!(p.gate < Duration::from_secs(86_400), "{name}: {p:?}");
        }
        call!(panics, "status", store, id, |s, id| {
            let status = text(s.status(&id, Window::Day).await);
            status.map(|s| {
                (
                    s.generation,
                    s.failures,
                    s.gate,
                    s.last_error.map(|e| e.code.len()),
                )
            })
        });
        call!(panics, "read_token", store, id, |s, id| {
            text(s.read_value(&id).await).map(|t| t.map(|t| t.generation))
        });
        call!(panics, "quota", store, id, |s, id| text(
            s.quota_used(&id, Window::Day).await
        ));

        // The HTTP API.
        let state = HttpState::new(
            &junk.config,
            std::sync::Arc::new(Catalog::from_config(&junk.config)),
            junk.client(Duration::from_millis(300)),
            store.clone(),
            std::sync::Arc::default(),
            None,
        );
        let r = router(state.unwrap(), true);
        let uri = format!("/v1/apps/{id}/access_token");
        if let Some((status, body)) = call!(panics, "GET token", r, uri, |r, u| get(r, u).await) {
            let v: Value = serde_json::from_str(&body).expect("JSON");
            if status == StatusCode::OK {
                let stored = servable.as_deref();
                assert_eq!(v["access_token"].as_str(), stored, "{name}: not servable");
            } else {
                assert!(status.is_server_error(), "{name}: {status}");
                let code = &v["error"]["code"];
                assert!(
                    code.is_string() && v["error"]["message"].is_string(),
                    "{name}: {v}"
                );
            }
        }
        let compat =
            format!("/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}");
        for uri in ["/v1/apps".to_owned(), "/metrics".to_owned(), compat] {
            let Some((status, body)) = call!(panics, "GET", r, uri, |r, u| get(r, u).await) else {
                continue;
            };
            assert!(
                status == StatusCode::OK || status.is_server_error(),
                "{name}: {uri} {status}"
            );
            let json = serde_json::from_str::<Value>(&body).is_ok();
            assert!(json || uri == "/metrics", "{name}: {uri}");
            assert!(
                uri.starts_with("/cgi-bin") || !body.contains(SECRET),
                "{name}"
            );
        }

        // Every store write, each on fresh junk.
        junk.plant(i).await;
        call!(panics, "lock+begin+quota+commit", store, id, |s, id| {
            refresh_by_hand(&s, &id).await
        });
        junk.plant(i).await;
        call!(panics, "invalidate", store, id, |s, id| text(
            s.report(&id, "FOREIGN").await
        ));
        call!(panics, "bookkeeping", store, id, |s, id| bookkeeping(
            &s, &id
        )
        .await);
    }
    assert_eq!(panics, Vec::<String>::new(), "panics on junk");
}

/// The refresh step's Redis calls by hand: lock, begin, quota, commit (with a
/// made-up grant when begin refused), release.
async fn refresh_by_hand(s: &TokenStore, id: &CredentialRef) -> Result<String, String> {
    let owner = LockOwner::new("junk");
    let ttl = Duration::from_secs(60);
    let locked = text(s.try_lock(id, &owner, ttl).await)?;
    let begun = if locked {
        text(s.begin(id, &owner).await)?
    } else {
        None
    };
    if let Some(g) = &begun {
        assert!(
            g.fence > g.generation,
            "{id}: fence {} ≤ generation {}",
            g.fence,
            g.generation
        );
        assert!(
            g.fence < 1 << 53 && g.failures <= 1_000_000_000,
            "{id}: {g:?}"
        );
    }
    let period = s.period(Window::Day, text(s.redis_time_ms().await)?);
    let quota = text(s.take_quota(id, &period, 1000).await);
    let grant = begun.clone().unwrap_or(Grant {
        epoch: "none".into(),
        fence: 1,
        now_ms: 0,
        received: std::time::Instant::now(),
        token_ttl: None,
        generation: 0,
        gate: Duration::ZERO,
        failures: 0,
        forced: false,
    });
    let token = SecretString::from("JUNK_TEST_COMMIT".to_owned());
    let commit = text(
        s.commit(
            id,
            &grant,
            &owner,
            &CommitArgs::token(&token, ttl, "junk", "token"),
        )
        .await,
    );
    let released = text(s.release(id, &owner).await);
    let begun = begun.map(|g| (g.fence, g.generation, g.failures));
    Ok(format!(
        "locked={locked} begun={begun:?} quota={quota:?} commit={commit:?} released={released:?}"
    ))
}

/// The other writes: record_failure, force_take, reset_gate, stable_check.
async fn bookkeeping(s: &TokenStore, id: &CredentialRef) -> String {
    let record = FailureRecord {
        code: "-1".into(),
        message: "junk test".into(),
        class: ErrorClass::Retryable,
        gate: Gate::For(Duration::from_millis(10)),
        counts: true,
    };
    let failure = text(s.record_failure(id, &record).await);
    let force = text(s.force_take(id, 20, Duration::from_secs(30)).await);
    let reset = text(s.reset_gate(id, Window::Day).await);
    let stable = text(s.digest(id).await).map(|(t, h)| (t.map(|t| t.len()), h));
    format!("failure={failure:?} force={force:?} reset={reset:?} stable={stable:?}")
}
