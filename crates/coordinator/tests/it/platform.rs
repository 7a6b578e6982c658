//! The open platform (issue 14): the verify-ticket push buys the component
//! token, `authorized` pushes register authorizers that every replica
//! refreshes within a second, refresh tokens rotate in the fenced commit
//! and rest sealed, forged and replayed pushes are refused, `unauthorized`
//! stops an authorizer, and after Redis loses everything the fleet rebuilds
//! every authorizer from `api_get_authorizer_list`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tower::ServiceExt;
use wechat_sim::{Forgery, PushOutcome, TokenState};
use wxtoken_common::{CredentialId, CredentialRef, Keys};
use wxtoken_coordinator::http::router;

use crate::fleet::{API_KEY, COMPONENT, COMPONENT_APPID, Fleet, SECRET, Settings};

fn platform() -> Settings {
    Settings {
        platform: true,
        extra_refresh: "loss_check_interval = \"200ms\"\n".into(),
        ..Settings::default()
    }
}

fn appid(n: usize) -> String {
    format!("wx{n:016x}")
}

fn keys(fleet: &Fleet) -> Keys {
    Keys::new(&fleet.prefix).unwrap()
}

/// A fleet of `n` replicas with the event URL served and a verify ticket
/// pushed; returns once the component token is stored.
async fn chain(n: usize) -> Fleet {
    let mut fleet = Fleet::start(platform(), n).await;
    fleet.serve_events().await;
    fleet.push_ticket().await;
    fleet.wait_value(COMPONENT, 1, Duration::from_secs(5)).await;
    fleet
}

async fn wait_until(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < until, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn raw(fleet: &Fleet, key: &str) -> Option<String> {
    let client = redis::Client::open(fleet.redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    c.get(key).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_authorizations_are_refreshed_by_every_replica_with_rotating_sealed_refresh_tokens()
{
    let fleet = chain(3).await;
    let component = CredentialId::parse(COMPONENT).unwrap();
    // The verify ticket rests sealed: not the plain ticket.
    let ticket = fleet.sim.verify_ticket(COMPONENT_APPID).unwrap();
    let stored = raw(&fleet, &keys(&fleet).verify_ticket(&component))
        .await
        .expect("verify ticket stored");
    assert!(stored.starts_with("v1:") && !stored.contains(&ticket));

    let started = Instant::now();
    for n in 0..5 {
        let (_, push) = fleet
            .sim
            .authorize(COMPONENT_APPID, &appid(n))
            .await
            .unwrap();
        assert!(matches!(push, PushOutcome::Success { .. }), "{push:?}");
    }
    let mut slowest = Duration::ZERO;
    for n in 0..5 {
        let cref = fleet.authorizer(&appid(n));
        let t = fleet
            .wait_value(cref.id.as_str(), 1, Duration::from_secs(3))
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(fleet.sim.token_state(&t.value), TokenState::Valid);
        // Every replica refreshes it.
        for r in &fleet.replicas {
            wait_until(
                "every replica follows the authorizer",
                Duration::from_secs(1),
                async || r.schedule().contains(&cref),
            )
            .await;
        }
    }
    eprintln!("5 authorizers served {slowest:?} after their pushes");
    // Two more lives: one api_authorizer_token per life each, the refresh
    // token stored being WeChat's current one.
    tokio::time::sleep(fleet.settings.cycle() * 2 + Duration::from_millis(500)).await;
    for n in 0..5 {
        let a = fleet
            .sim
            .authorizer_stats(COMPONENT_APPID, &appid(n))
            .unwrap();
        assert!(
            (1..=3).contains(&a.fetch_calls),
            "{}: {} api_authorizer_token calls",
            appid(n),
            a.fetch_calls
        );
        assert_eq!(a.max_concurrent_fetches, 1);
        assert_eq!(a.refresh_token_refusals, 0);
        let cref = fleet.authorizer(&appid(n));
        let sealed = raw(&fleet, &keys(&fleet).refresh_token(&cref.id))
            .await
            .expect("refresh token stored");
        assert!(sealed.starts_with("v1:"));
        assert!(
            !sealed.contains(&a.refresh_token),
            "the refresh token rests sealed"
        );
        let opened = fleet.replicas[0]
            .refresher()
            .vault()
            .refresh_token(&cref.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&opened),
            a.refresh_token,
            "the stored refresh token is WeChat's latest"
        );
        let t = fleet.store.read_value(&cref).await.unwrap().unwrap();
        assert_eq!(fleet.sim.token_state(&t.value), TokenState::Valid);
    }
    let c = fleet
        .sim
        .stats()
        .component(COMPONENT_APPID)
        .cloned()
        .unwrap();
    assert_eq!(c.concurrent_token_fetches, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_foreign_pushes_are_refused_and_change_nothing() {
    let fleet = chain(1).await;
    let component = CredentialId::parse(COMPONENT).unwrap();
    let before = raw(&fleet, &keys(&fleet).verify_ticket(&component)).await;
    for forgery in [
        Forgery::BadSignature,
        Forgery::WrongAppid,
        Forgery::StaleTimestamp,
        Forgery::Oversized,
    ] {
        let outcome = fleet
            .sim
            .push_forged(COMPONENT_APPID, forgery)
            .await
            .unwrap();
        assert!(
            matches!(outcome, PushOutcome::HttpError { status: 400 | 413 }),
            "{forgery:?}: {outcome:?}"
        );
    }
    let replay = fleet.sim.replay_last_push(COMPONENT_APPID).await.unwrap();
    assert!(
        matches!(replay, PushOutcome::HttpError { status: 400 }),
        "replay: {replay:?}"
    );
    assert_eq!(
        raw(&fleet, &keys(&fleet).verify_ticket(&component)).await,
        before
    );
    let c = fleet
        .sim
        .stats()
        .component(COMPONENT_APPID)
        .cloned()
        .unwrap();
    assert_eq!(c.forged_accepted, 0);
    assert_eq!(c.replays_accepted, 0);
    // Another component's URL, and a push without encryption.
    let r = router(
        fleet.replicas[0].http_state(&fleet.config(SECRET)).unwrap(),
        true,
    );
    let resp = r
        .clone()
        .oneshot(
            Request::post("/wechat/components/other/events?timestamp=1&nonce=2&encrypt_type=aes&msg_signature=x")
                .body(Body::from("<xml/>"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = r
        .oneshot(
            Request::post(format!(
                "/wechat/components/{COMPONENT}/events?timestamp=1&nonce=2"
            ))
            .body(Body::from("<xml><ToUserName>x</ToUserName></xml>"))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "push_refused", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_push_revokes_and_the_fleet_stops_refreshing() {
    let fleet = chain(2).await;
    let a = appid(7);
    fleet.sim.authorize(COMPONENT_APPID, &a).await.unwrap();
    let cref = fleet.authorizer(&a);
    fleet
        .wait_value(cref.id.as_str(), 1, Duration::from_secs(3))
        .await;
    let push = fleet.sim.unauthorize(COMPONENT_APPID, &a).await.unwrap();
    assert!(matches!(push, PushOutcome::Success { .. }), "{push:?}");
    wait_until("token dropped", Duration::from_secs(1), async || {
        fleet.store.read_value(&cref).await.unwrap().is_none()
    })
    .await;
    for r in &fleet.replicas {
        wait_until("every replica stops", Duration::from_secs(1), async || {
            !r.schedule().contains(&cref)
        })
        .await;
    }
    let calls = fleet
        .sim
        .authorizer_stats(COMPONENT_APPID, &a)
        .unwrap()
        .fetch_calls;
    tokio::time::sleep(fleet.settings.cycle() * 2).await;
    assert_eq!(
        fleet
            .sim
            .authorizer_stats(COMPONENT_APPID, &a)
            .unwrap()
            .fetch_calls,
        calls,
        "a revoked authorizer was refreshed"
    );
    let component = CredentialId::parse(COMPONENT).unwrap();
    let state = fleet.store.registered(&component, &a).await.unwrap();
    assert_eq!(state.as_deref(), Some("revoked"));
    // A new authorization brings it back.
    fleet.sim.authorize(COMPONENT_APPID, &a).await.unwrap();
    let t = fleet
        .wait_value(cref.id.as_str(), 1, Duration::from_secs(3))
        .await;
    assert_eq!(fleet.sim.token_state(&t.value), TokenState::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_flushall_every_authorizer_is_rebuilt_from_the_list_without_reauthorizing() {
    let fleet = chain(2).await;
    let n = 50;
    fleet.sim.bulk_authorize(COMPONENT_APPID, n).unwrap();
    let r = router(
        fleet.replicas[1].http_state(&fleet.config(SECRET)).unwrap(),
        true,
    );
    let resp = r
        .clone()
        .oneshot(
            Request::post(format!("/v1/components/{COMPONENT}/authorizers/import"))
                .header("authorization", format!("Bearer {API_KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["imported"], json!(n));
    let component = CredentialId::parse(COMPONENT).unwrap();
    let page = fleet
        .store
        .registry_page(&component, 0, 1000)
        .await
        .unwrap();
    assert_eq!(page.cursor, 0);
    let appids: Vec<String> = page.entries.into_iter().map(|(a, _)| a).collect();
    assert_eq!(appids.len(), n);
    let all_stored = async || {
        for a in &appids {
            match fleet.store.read_value(&fleet.authorizer(a)).await {
                Ok(Some(t)) if fleet.sim.token_state(&t.value) == TokenState::Valid => {}
                _ => return false,
            }
        }
        true
    };
    wait_until(
        "every imported authorizer served",
        Duration::from_secs(5),
        all_stored,
    )
    .await;
    let auth_times: Vec<u64> = appids
        .iter()
        .map(|a| {
            fleet
                .sim
                .authorizer_stats(COMPONENT_APPID, a)
                .unwrap()
                .auth_time
        })
        .collect();

    let client = redis::Client::open(fleet.redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (): () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let wiped = Instant::now();
    wait_until(
        "every authorizer rebuilt",
        Duration::from_secs(15),
        all_stored,
    )
    .await;
    eprintln!(
        "{n} authorizers served again {:?} after FLUSHALL",
        wiped.elapsed()
    );
    assert_eq!(
        fleet.store.registry_len(&component).await.unwrap(),
        n as u64
    );
    for (a, t) in appids.iter().zip(&auth_times) {
        let s = fleet.sim.authorizer_stats(COMPONENT_APPID, a).unwrap();
        assert_eq!(s.auth_time, *t, "{a} authorized again");
        let rt = fleet.replicas[0]
            .refresher()
            .vault()
            .refresh_token(&fleet.authorizer(a).id)
            .await
            .unwrap();
        assert!(rt.is_some(), "{a}: refresh token lost");
    }
    // The registry lists them, a page at a time, without tokens.
    let resp = r
        .oneshot(
            Request::get(format!("/v1/components/{COMPONENT}/authorizers?count=20"))
                .header("authorization", format!("Bearer {API_KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["total"], json!(n));
    assert!(
        v["authorizers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "active")
    );
    assert!(!String::from_utf8_lossy(&body).contains("refresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_api_refuses_bad_input_with_the_error_table() {
    let fleet = chain(1).await;
    let r = router(
        fleet.replicas[0].http_state(&fleet.config(SECRET)).unwrap(),
        true,
    );
    let call = async |uri: &str, key: bool, body: &str| {
        let mut req = Request::post(uri);
        if key {
            req = req.header("authorization", format!("Bearer {API_KEY}"));
        }
        let resp = r
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
    };
    let url = format!("/v1/components/{COMPONENT}/authorizers");
    assert_eq!(call(&url, false, "{}").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(
            "/v1/components/nope/authorizers",
            true,
            r#"{"authorization_code":"x"}"#
        )
        .await,
        (StatusCode::NOT_FOUND, "component_not_found".into())
    );
    assert_eq!(call(&url, true, "not json").await.1, "invalid_json");
    assert_eq!(
        call(&url, true, r#"{"authorization_code":"   "}"#).await.1,
        "invalid_request"
    );
    assert_eq!(
        call(
            &url,
            true,
            r#"{"authorization_code":"queryauthcode@@@bogus"}"#
        )
        .await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "authorization_refused".into()
        )
    );
    // A genuine code registers the account and says its id.
    let auth = fleet
        .sim
        .authorize_quietly(COMPONENT_APPID, &appid(3))
        .await
        .unwrap();
    let body = format!(r#"{{"authorization_code":"{}"}}"#, auth.authorization_code);
    let resp = r
        .clone()
        .oneshot(
            Request::post(&url)
                .header("authorization", format!("Bearer {API_KEY}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cref =
        CredentialRef::token(CredentialId::parse(&format!("{COMPONENT}.{}", appid(3))).unwrap());
    // Its first token is api_query_auth's: no api_authorizer_token call.
    let t = fleet
        .wait_value(cref.id.as_str(), 1, Duration::from_secs(2))
        .await;
    assert_eq!(fleet.sim.token_state(&t.value), TokenState::Valid);
    let s = fleet
        .sim
        .authorizer_stats(COMPONENT_APPID, &appid(3))
        .unwrap();
    assert_eq!(s.fetch_calls, 0, "the code's token was thrown away");
}
