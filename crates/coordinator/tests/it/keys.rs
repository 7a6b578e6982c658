//! Scoped API keys (issue 15, SPEC §10): a key given by its SHA-256 in a
//! key file gets only its ids, operations and API paths (403 otherwise), is
//! rate-limited, rotates by rewriting the file (the new key works within a
//! second of the change, the old one stops; a broken file keeps the old
//! set), and its value never shows in metrics.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use wxtoken_coordinator::http::{HttpState, keys, router};

use crate::fleet::{API_KEY, Fleet, ID, SECRET, Settings};

fn sha(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key_file(value: &str, extra: &str) -> String {
    format!(
        "[[keys]]\nname = \"orders\"\nsha256 = \"{}\"\nids = [\"{ID}\"]\nallow = [\"token:read\", \"proxy:/cgi-bin/message/*\"]\n{extra}",
        sha(value)
    )
}

async fn call(
    r: &Router,
    method: Method,
    uri: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn message() -> Value {
    json!({"touser": "oUser1", "msgtype": "text", "text": {"content": "hi"}})
}

async fn app(fleet: &Fleet, file: &std::path::Path) -> (Router, HttpState) {
    let mut config = fleet.config(SECRET);
    config.http.keys_file = Some(file.to_owned());
    let state = fleet.replicas[0].http_state(&config).expect("state");
    (router(state.clone(), true), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_key_gets_its_ids_operations_and_paths_only() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(&file, key_file("k-orders-1", "per_second = 50\n")).unwrap();
    let (r, _) = app(&fleet, &file).await;
    let k = "k-orders-1";
    let token = format!("/v1/apps/{ID}/access_token");

    let (status, v) = call(&r, Method::GET, &token, k, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["access_token"].is_string());
    let (status, v) = call(
        &r,
        Method::GET,
        "/v1/apps/other/access_token",
        k,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("orders")
    );
    let invalidate = format!("/v1/apps/{ID}/access_token/invalidate");
    let (status, _) = call(
        &r,
        Method::POST,
        &invalidate,
        k,
        json!({"access_token": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&r, Method::GET, "/v1/apps", k, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "status:read was not granted");

    let send = format!("/wx/{ID}/cgi-bin/message/custom/send");
    let (status, v) = call(&r, Method::POST, &send, k, message()).await;
    assert_eq!(
        (status, v["errcode"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
    let upload = format!("/wx/{ID}/cgi-bin/media/upload?type=image");
    let (status, v) = call(&r, Method::POST, &upload, k, Value::Null).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{v}"
    );
    // Part I's all-access key still does everything.
    let (status, _) = call(&r, Method::GET, "/v1/apps", API_KEY, Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    let (_, metrics) = {
        let req = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let resp = r.clone().oneshot(req).await.unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .unwrap();
        ((), String::from_utf8_lossy(&bytes).into_owned())
    };
    assert!(
        metrics.contains("key=\"orders\""),
        "gateway calls are counted by key name"
    );
    assert!(!metrics.contains(k) && !metrics.contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(&file, key_file("k-slow", "per_second = 2\n")).unwrap();
    let (r, _) = app(&fleet, &file).await;
    let token = format!("/v1/apps/{ID}/access_token");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, v) = call(&r, Method::GET, &token, "k-slow", Value::Null).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code(&v), "rate_limited");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_file_takes_effect_within_a_second_and_a_bad_file_changes_nothing() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(&file, key_file("k-old", "")).unwrap();
    let (r, state) = app(&fleet, &file).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(keys::watch(state.clone(), stopped));
    let token = format!("/v1/apps/{ID}/access_token");
    assert_eq!(
        call(&r, Method::GET, &token, "k-old", Value::Null).await.0,
        StatusCode::OK
    );

    // Rotate: the file now holds only the new key's hash.
    tokio::time::sleep(Duration::from_millis(20)).await; // a distinct mtime
    std::fs::write(&file, key_file("k-new", "")).unwrap();
    let written = Instant::now();
    loop {
        if call(&r, Method::GET, &token, "k-new", Value::Null).await.0 == StatusCode::OK {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(3),
            "the new key never worked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = written.elapsed();
    eprintln!("rotated key accepted {took:?} after the file changed");
    assert!(took < Duration::from_millis(2_100), "{took:?}");
    assert_eq!(
        call(&r, Method::GET, &token, "k-old", Value::Null).await.0,
        StatusCode::FORBIDDEN
    );

    // A broken file is refused, naming the key; the last good set stays.
    std::fs::write(
        &file,
        key_file("k-newer", "").replace("token:read", "token:write"),
    )
    .unwrap();
    let err = state.keys.reload().unwrap_err();
    assert_eq!(err.key, "keys[0].allow");
    assert_eq!(
        call(&r, Method::GET, &token, "k-new", Value::Null).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&r, Method::GET, &token, "k-newer", Value::Null)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    stop.send_replace(true);
    watcher.await.unwrap();
}
