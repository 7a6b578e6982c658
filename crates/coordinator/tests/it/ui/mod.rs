//! The status page (issue 16 item 1, SPEC §11) through the router of a real
//! replica (real Redis, wechat-sim over HTTP): several credentials, one
//! failing (its configured secret is wrong at the simulator); the page and
//! its event stream never hold a token, a ticket, a secret or an API key;
//! who may see it (`status:read` by Bearer key or login cookie).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use wechat_sim::{SimConfig, SimHandle};
use wxtoken_coordinator::config::{Config, Env};
use wxtoken_coordinator::http::router;
use wxtoken_coordinator::replica::ReplicaHandle;
use wxtoken_testkit::{RedisServer, random_prefix};

mod scale;

const SHOP_APPID: &str = "wxa1b2c3d4e5f60001";
const BROKEN_APPID: &str = "wxa1b2c3d4e5f60002";
const SHOP_SECRET: &str = "ui-shop-secret-4f1c9a";
const BROKEN_REAL: &str = "ui-broken-real-secret-77a0";
const BROKEN_WRONG: &str = "ui-broken-wrong-secret-d3e1";
const ALL_KEY: &str = "ui-all-access-key-0b5e61";
const VIEWER_KEY: &str = "ui-viewer-key-a9c2f0";
const READER_KEY: &str = "ui-reader-key-5d7e13";

/// Redis, the simulator and one replica; dropped together.
struct Harness {
    _redis: RedisServer,
    _dir: tempfile::TempDir,
    sim: SimHandle,
    replica: ReplicaHandle,
    router: Router,
}

/// Scoped keys by their SHA-256 (a key file), beside the all-access key.
fn key_file(dir: &std::path::Path) -> String {
    let path = dir.join("keys.toml");
    let entry = |name: &str, key: &str, allow: &str| {
        format!(
            "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nallow = [\"{allow}\"]\n",
            sha_hex(key)
        )
    };
    let text =
        entry("viewer", VIEWER_KEY, "status:read") + &entry("reader", READER_KEY, "token:read");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn sha_hex(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config(redis: &str, prefix: &str, base: &str, keys_file: &str) -> Config {
    let text = format!(
        r#"
        [redis]
        url = "{redis}"
        key_prefix = "{prefix}"
        command_timeout = "500ms"
        connect_timeout = "500ms"
        [refresh]
        refresh_ahead = "1500ms"
        lock_ttl = "1s"
        upstream_timeout = "400ms"
        poll_interval = "1s"
        fatal_cooldown = "30s"
        report_refresh_interval = "200ms"
        verify_interval = "200ms"
        [upstream]
        base_url = "{base}"
        [http]
        api_keys = {{ env = "UI_ALL" }}
        token_wait = "1s"
        keys_file = "{keys_file}"
        [[apps]]
        id = "shop"
        appid = "{SHOP_APPID}"
        secret = {{ env = "UI_SHOP" }}
        tickets = ["jsapi"]
        [[apps]]
        id = "broken"
        appid = "{BROKEN_APPID}"
        secret = {{ env = "UI_BROKEN" }}
        "#
    );
    let env: Env = [
        ("UI_ALL", ALL_KEY),
        ("UI_SHOP", SHOP_SECRET),
        ("UI_BROKEN", BROKEN_WRONG),
    ]
    .into_iter()
    .collect();
    Config::from_toml_str(&text, &env).expect("test config is valid")
}

async fn call(
    r: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = r
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn get(r: &Router, uri: &str, key: &str) -> (StatusCode, String) {
    let auth = format!("Bearer {key}");
    let (s, _, b) = call(r, Method::GET, uri, &[("authorization", &auth)], "").await;
    (s, b)
}

fn short_sha(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts everything and waits (deadline 10 s) until shop's token and
/// ticket are stored and broken's failure is recorded.
async fn harness() -> Harness {
    wxtoken_testkit::init_tracing();
    wxtoken_coordinator::metrics::install();
    let redis = RedisServer::spawn();
    let sim = wechat_sim::spawn(
        SimConfig::new()
            .app(SHOP_APPID, SHOP_SECRET)
            .app(BROKEN_APPID, BROKEN_REAL)
            .token_ttl(Duration::from_secs(120))
            .overlap(Duration::from_secs(5))
            .ticket_ttl(Duration::from_secs(120)),
    )
    .await
    .expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &redis.url(),
        &random_prefix(),
        &sim.base_url(),
        &key_file(dir.path()),
    );
    let replica = ReplicaHandle::start(&config, "ui-r1".into())
        .await
        .expect("replica starts");
    assert!(
        replica.wait_events_up(Duration::from_secs(5)).await,
        "events up"
    );
    let router = router(replica.http_state(&config).expect("state"), false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&router, "/v1/credentials", ALL_KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let list: Vec<Value> = serde_json::from_str(&body).unwrap();
        let find = |id: &str, slot: Option<&str>| {
            list.iter()
                .find(|c| c["id"] == id && c["slot"].as_str() == slot)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let ready = find("shop", None)["has_token"] == true
            && find("shop", Some("ticket:jsapi"))["has_token"] == true
            && find("broken", None)["last_error"].is_object();
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "credentials not settled in 10 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Harness {
        _redis: redis,
        _dir: dir,
        sim,
        replica,
        router,
    }
}

fn value_of(body: &str, field: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v[field].as_str().unwrap_or_default().to_owned()
}

fn assert_no_secrets(what: &str, text: &str, values: &[&str]) {
    for secret in [
        SHOP_SECRET,
        BROKEN_REAL,
        BROKEN_WRONG,
        ALL_KEY,
        VIEWER_KEY,
        READER_KEY,
    ]
    .iter()
    .chain(values)
    {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret),
            "{what} holds a secret value ({} chars)",
            secret.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_credential_the_failing_one_and_no_value() {
    let h = harness().await;
    let (_, token) = get(&h.router, "/v1/apps/shop/access_token", ALL_KEY).await;
    let token = value_of(&token, "access_token");
    let (_, ticket) = get(&h.router, "/v1/apps/shop/tickets/jsapi", ALL_KEY).await;
    let ticket = value_of(&ticket, "ticket");
    assert!(!token.is_empty() && !ticket.is_empty());

    let (status, page) = get(&h.router, "/ui", VIEWER_KEY).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for row in [
        r#"<tr data-id="shop" data-state="healthy">"#,
        r#"<tr data-id="shop/ticket:jsapi" data-state="healthy">"#,
        r#"<tr data-id="broken" data-state="failing">"#,
    ] {
        assert!(page.contains(row), "missing {row} in\n{page}");
    }
    let broken = page.split(r#"data-id="broken""#).nth(1).unwrap_or_default();
    assert!(
        broken.contains(r#"<span class="class fatal">fatal</span>"#),
        "error class: {broken}"
    );
    assert!(
        broken.contains("40125"),
        "errcode of a wrong secret: {broken}"
    );
    // Fingerprints, computed from the values the API hands out; never the values.
    assert!(page.contains(&format!(
        "<code title=\"first 8 hex digits of the SHA-256 of the value\">{}</code>",
        short_sha(&token)
    )));
    assert!(page.contains(&short_sha(&ticket)));
    assert_no_secrets("the page", &page, &[&token, &ticket]);
    // Counts, the replica of the last refresh, the quota against its budget.
    assert!(page.contains(r#"<b id="count-matched">3</b>"#), "counts");
    assert!(
        page.contains("by <b>ui-r1</b>"),
        "replica of the last refresh"
    );
    assert!(page.contains("/ 1800"), "quota against the budget");

    // Search by prefix and paging keep to the matching rows.
    let (_, found) = get(&h.router, "/ui?q=shop", VIEWER_KEY).await;
    assert!(
        found.contains(r#"data-id="shop/ticket:jsapi""#) && !found.contains(r#"data-id="broken""#)
    );
    assert!(found.contains(r#"<b id="count-matched">2</b>"#));
    let (_, none) = get(&h.router, "/ui?q=nothing&page=7", VIEWER_KEY).await;
    assert!(none.contains(r#"<b id="count-matched">0</b>"#) && !none.contains("<tr data-id"));
    drop(h.replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_streams_a_refresh_with_its_replica_and_no_value() {
    let h = harness().await;
    let (status, _, body) = call(&h.router, Method::GET, "/ui/events", &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let req = Request::builder()
        .uri("/ui/events")
        .header(header::AUTHORIZATION, format!("Bearer {VIEWER_KEY}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = resp.into_body().into_data_stream();

    let (_, old) = get(&h.router, "/v1/apps/shop/access_token", ALL_KEY).await;
    let old = value_of(&old, "access_token");
    assert!(h.sim.revoke(&old), "the simulator knows the token");
    let (status, _, body) = call(
        &h.router,
        Method::POST,
        "/v1/apps/shop/access_token/invalidate",
        &[
            ("authorization", &format!("Bearer {ALL_KEY}")),
            ("content-type", "application/json"),
        ],
        &serde_json::json!({ "access_token": old }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let refreshed = loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(Some(Ok(bytes))) = chunk else {
            panic!("no refresh of shop on the stream within 5 s; saw:\n{seen}");
        };
        seen.push_str(&String::from_utf8_lossy(&bytes));
        let found = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .find_map(|d| {
                let v: Value = serde_json::from_str(d).ok()?;
                (v["event"] == "refreshed" && v["id"] == "shop").then_some(v)
            });
        if let Some(v) = found {
            break v;
        }
    };
    assert_eq!(refreshed["replica"], "ui-r1");
    assert!(
        refreshed["generation"].as_u64().unwrap_or(0) > 0
            && refreshed["at_ms"].as_u64().unwrap_or(0) > 0
    );
    assert!(
        seen.contains("\"event\":\"invalidated\""),
        "the invalidation precedes it:\n{seen}"
    );
    assert!(
        seen.lines().any(|l| l.starts_with("id: ")),
        "events carry ids"
    );
    let (_, new) = get(&h.router, "/v1/apps/shop/access_token", ALL_KEY).await;
    let new = value_of(&new, "access_token");
    assert_ne!(new, old);
    assert_eq!(
        refreshed["fingerprint"],
        short_sha(&new),
        "the new value's fingerprint"
    );
    assert_no_secrets("the event stream", &seen, &[&old, &new]);

    // A page loaded now lists the refresh in its timeline.
    let (_, page) = get(&h.router, "/ui", VIEWER_KEY).await;
    assert!(
        page.contains(r#"data-id="shop" data-event="refreshed""#),
        "{page}"
    );
    assert_no_secrets("the page", &page, &[&old, &new]);

    // A stopping replica ends open streams: graceful shutdown does not wait on them.
    h.replica.shutdown(Duration::from_secs(1)).await;
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived the replica");
}

fn session_cookie(headers: &HeaderMap) -> String {
    let set = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    set.split(';').next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_key_with_status_read_sees_the_page() {
    let h = harness().await;
    let r = &h.router;
    let (status, _, body) = call(r, Method::GET, "/ui", &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains(r#"action="/ui/login""#),
        "401 shows the login form: {body}"
    );
    let (status, body) = get(r, "/ui", READER_KEY).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("forbidden") && body.contains("may not status:read"),
        "{body}"
    );
    let (status, body) = get(r, "/ui", "not-a-key").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = get(r, "/ui", ALL_KEY).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "all-access keys read the status: {body}"
    );

    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, headers, body) = call(r, Method::POST, "/ui/login", &form, "key=not-a-key").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.get(header::SET_COOKIE).is_none());
    let (status, _, _) = call(
        r,
        Method::POST,
        "/ui/login",
        &form,
        &format!("key={READER_KEY}"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, headers, _) = call(
        r,
        Method::POST,
        "/ui/login",
        &form,
        &format!("key={VIEWER_KEY}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui");
    let set = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(VIEWER_KEY) && !set.contains(&short_sha(VIEWER_KEY)),
        "the cookie holds no key"
    );
    let cookie = session_cookie(&headers);
    assert!(
        cookie.starts_with("wxtoken_ui=") && cookie.len() == "wxtoken_ui=".len() + 64,
        "{cookie}"
    );

    let (status, _, page) = call(r, Method::GET, "/ui", &[("cookie", &cookie)], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-id="broken""#) && page.contains("key viewer"));
    // The stream never ends by itself: only its head is read.
    let req = Request::builder()
        .uri("/ui/events?since=0")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);

    let (status, headers, _) =
        call(r, Method::POST, "/ui/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, body) = call(r, Method::GET, "/ui", &[("cookie", &cookie)], "").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a closed session is refused: {body}"
    );

    let (status, headers, js) = call(r, Method::GET, "/ui/assets/ui.js", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.contains("EventSource"));
    let (status, _, _) = call(r, Method::GET, "/ui/assets/other.js", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
