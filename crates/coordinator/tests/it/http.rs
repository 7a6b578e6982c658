//! The HTTP API through its router (no socket): every endpoint and error of
//! the one error table, auth, the WeChat-compatible endpoints, health and
//! metrics — against a real Redis, a real replica and wechat-sim.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use wechat_sim::TokenState;
use wxtoken_coordinator::http::{HttpState, router};

use crate::fleet::{API_KEY, APPID, Fleet, ID, SECRET, Settings};

fn long_lived() -> Settings {
    Settings {
        token_ttl: Duration::from_secs(60),
        ..Settings::default()
    }
}

async fn app(fleet: &Fleet) -> (Router, HttpState) {
    let state = fleet.replicas[0]
        .http_state(&fleet.config(SECRET))
        .expect("state");
    (router(state.clone(), true), state)
}

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_token_api_and_its_errors() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let stored = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (r, _) = app(&fleet).await;
    let uri = format!("/v1/apps/{ID}/access_token");

    let (s, v) = call(&r, Method::GET, &uri, None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, v) = call(&r, Method::GET, &uri, Some("not-a-key"), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(!v.to_string().contains("not-a-key"), "the key is echoed");

    let (s, v) = call(&r, Method::GET, &uri, Some(API_KEY), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["access_token"], stored.value.as_str());
    assert_eq!(v["generation"], stored.generation);
    assert!(v["expires_in"].as_u64().unwrap() > 50);
    assert!(v["expires_at"].as_u64().unwrap() > 1_700_000_000_000);

    let (s, v) = call(
        &r,
        Method::GET,
        "/v1/apps/nope/access_token",
        Some(API_KEY),
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "app_not_found"));
    let (s, v) = call(
        &r,
        Method::GET,
        "/v1/apps/sh%7Bop/access_token",
        Some(API_KEY),
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_id"));
    assert!(v["error"]["message"].as_str().unwrap().contains("sh{op"));

    let (s, v) = call(&r, Method::GET, "/v1/apps", Some(API_KEY), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["id"], ID);
    assert_eq!(v[0]["generation"], stored.generation);
    assert!(
        !v.to_string().contains(&stored.value),
        "status shows no token"
    );

    let (s, v) = call(&r, Method::GET, "/nope", Some(API_KEY), None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = call(&r, Method::DELETE, &uri, Some(API_KEY), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_by_value_with_and_without_wait() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (r, _) = app(&fleet).await;
    let uri = format!("/v1/apps/{ID}/access_token/invalidate");

    let (s, v) = call(
        &r,
        Method::POST,
        &uri,
        Some(API_KEY),
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let (s, v) = call(
        &r,
        Method::POST,
        &uri,
        Some(API_KEY),
        Some(br#"{"token":"x"}"#.to_vec()),
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let huge = format!(r#"{{"access_token":"{}"}}"#, "x".repeat(1 << 20));
    let (s, v) = call(
        &r,
        Method::POST,
        &uri,
        Some(API_KEY),
        Some(huge.into_bytes()),
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (s, _) = call(&r, Method::POST, &uri, None, Some(b"{}".to_vec())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let stale = json!({ "access_token": "NOT_THE_STORED_TOKEN" })
        .to_string()
        .into_bytes();
    let (s, v) = call(&r, Method::POST, &uri, Some(API_KEY), Some(stale)).await;
    assert_eq!(
        (s, v["result"].as_str()),
        (StatusCode::OK, Some("already_replaced"))
    );
    assert_eq!(fleet.app().fetch_calls, 1, "a wrong report changes nothing");

    // WeChat accepts the stored token: the report is checked and refused,
    // and the caller gets the same token back.
    let report = json!({ "access_token": first.value })
        .to_string()
        .into_bytes();
    let (s, v) = call(
        &r,
        Method::POST,
        &format!("{uri}?wait=true"),
        Some(API_KEY),
        Some(report.clone()),
    )
    .await;
    assert_eq!(
        (s, v["result"].as_str()),
        (StatusCode::OK, Some("token_valid")),
        "{v}"
    );
    assert_eq!(v["access_token"], first.value.as_str());
    assert_eq!(
        fleet.app().fetch_calls,
        1,
        "no fetch for a token WeChat accepts"
    );
    // Once WeChat really rejects it (and the last check has lapsed), the
    // report leads to one refresh.
    assert!(fleet.sim.revoke(&first.value));
    let until = Instant::now() + Duration::from_secs(5);
    let v = loop {
        let (s, v) = call(
            &r,
            Method::POST,
            &format!("{uri}?wait=true"),
            Some(API_KEY),
            Some(report.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["result"] != "token_valid" || Instant::now() > until {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["result"], "invalidated", "{v}");
    assert!(v["generation"].as_u64().unwrap() > first.generation, "{v}");
    let fresh = v["access_token"].as_str().unwrap();
    assert_ne!(fresh, first.value);
    assert_eq!(fleet.sim.token_state(fresh), TokenState::Valid);
    assert_eq!(fleet.app().fetch_calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_compatible_endpoints_answer_in_wechat_shapes_from_the_shared_token() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let stored = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (r, _) = app(&fleet).await;
    let token = |q: &str| format!("/cgi-bin/token?{q}");
    let cases = [
        (token(&format!("appid={APPID}&secret={SECRET}")), 40002),
        (
            token(&format!(
                "grant_type=password&appid={APPID}&secret={SECRET}"
            )),
            40002,
        ),
        (
            token(&format!("grant_type=client_credential&secret={SECRET}")),
            41002,
        ),
        (
            token(&format!("grant_type=client_credential&appid={APPID}")),
            41004,
        ),
        (
            token(&format!(
                "grant_type=client_credential&appid=wxunknown&secret={SECRET}"
            )),
            40013,
        ),
        (
            token(&format!(
                "grant_type=client_credential&appid={APPID}&secret=wrong"
            )),
            40125,
        ),
    ];
    for (uri, errcode) in &cases {
        let (s, v) = call(&r, Method::GET, uri, None, None).await;
        assert_eq!(s, StatusCode::OK, "WeChat answers errors with HTTP 200");
        assert_eq!(v["errcode"], *errcode, "{uri}: {v}");
        assert!(v["errmsg"].is_string());
    }
    // 100 SDK calls: one shared token, no upstream call.
    for _ in 0..100 {
        let uri = token(&format!(
            "grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ));
        let (s, v) = call(&r, Method::GET, &uri, None, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["access_token"], stored.value.as_str());
        assert!(v["expires_in"].as_i64().unwrap() > 50);
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "exactly WeChat's fields: {v}"
        );
    }
    assert_eq!(fleet.app().fetch_calls, 1, "served from the shared token");

    let stable = "/cgi-bin/stable_token";
    let (_, v) = call(&r, Method::GET, stable, None, None).await;
    assert_eq!(v["errcode"], 43002);
    let (_, v) = call(&r, Method::POST, stable, None, Some(b"{oops".to_vec())).await;
    assert_eq!(v["errcode"], 47001);
    let body = |force: bool, secret: &str| {
        json!({"grant_type":"client_credential","appid":APPID,"secret":secret,"force_refresh":force}).to_string().into_bytes()
    };
    let (_, v) = call(&r, Method::POST, stable, None, Some(body(false, "wrong"))).await;
    assert_eq!(v["errcode"], 40125);
    let (_, v) = call(&r, Method::POST, stable, None, Some(body(false, SECRET))).await;
    assert_eq!(v["access_token"], stored.value.as_str());
    let (_, v) = call(&r, Method::POST, stable, None, Some(body(true, SECRET))).await;
    let forced = v["access_token"].as_str().expect("a new token").to_owned();
    assert_ne!(forced, stored.value, "force_refresh gives a new token");
    assert_eq!(fleet.sim.token_state(&forced), TokenState::Valid);
    let (_, v) = call(&r, Method::POST, stable, None, Some(body(true, SECRET))).await;
    assert_eq!(v["errcode"], 45011, "a second force within 30 s");
    assert_eq!(
        fleet.app().fetch_calls,
        2,
        "one upstream call for the force refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_redis_down_answer_503_within_the_request_timeout() {
    let fleet = Fleet::start(long_lived(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (r, _) = app(&fleet).await;
    assert_eq!(
        call(&r, Method::GET, "/healthz", None, None).await.0,
        StatusCode::OK
    );
    let (s, v) = call(&r, Method::GET, "/readyz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ready")));

    fleet.redis.stop();
    let started = Instant::now();
    let (s, v) = call(&r, Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable")
    );
    let (s, v) = call(&r, Method::GET, "/v1/apps", Some(API_KEY), None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    // Another credential id that was never cached: no token, no Redis.
    let (s, v) = call(
        &r,
        Method::GET,
        "/v1/apps/shop/access_token",
        Some(API_KEY),
        None,
    )
    .await;
    // The cached token is still served while it lives (Redis down is not a reason to fail).
    assert!(
        s == StatusCode::OK || code(&v) == "token_unavailable",
        "{s} {v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answers within the request timeout"
    );
    assert!(
        !v.to_string().contains("127.0.0.1"),
        "no internal detail: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_carry_no_secret() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let token = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (r, _) = app(&fleet).await;
    call(
        &r,
        Method::GET,
        "/v1/apps/shop/access_token",
        Some(API_KEY),
        None,
    )
    .await;
    call(
        &r,
        Method::GET,
        "/v1/apps/shop/access_token",
        Some("wrong"),
        None,
    )
    .await;
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(!text.contains(SECRET) && !text.contains(API_KEY) && !text.contains(&token.value));
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for wanted in [
        "wxtoken_refresh_total",
        "wxtoken_lock_attempts_total",
        "wxtoken_quota_used_today",
        "wxtoken_token_ttl_seconds",
        "wxtoken_http_requests_total",
    ] {
        assert!(names.contains(wanted), "{wanted} missing from {names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("wxtoken_upstream_request_duration_seconds")),
        "{names:?}"
    );
    let refreshed = scrape.samples.iter().find(|s| {
        s.metric == "wxtoken_refresh_total"
            && s.labels.get("outcome") == Some("refreshed")
            && s.labels.get("app") == Some(ID)
    });
    assert!(refreshed.is_some(), "a refreshed outcome for {ID}");
    let forbidden = scrape.samples.iter().any(|s| {
        s.metric == "wxtoken_http_requests_total" && s.labels.get("status") == Some("403")
    });
    assert!(forbidden, "http requests by status");
    let ttl = scrape
        .samples
        .iter()
        .find(|s| s.metric == "wxtoken_token_ttl_seconds" && s.labels.get("app") == Some(ID));
    match ttl.map(|s| &s.value) {
        Some(prometheus_parse::Value::Gauge(v)) => assert!(*v > 30.0, "ttl {v}"),
        other => panic!("ttl gauge: {other:?}"),
    }
}
