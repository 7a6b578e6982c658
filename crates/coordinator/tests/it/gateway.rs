//! The gateway (issue 15, SPEC §10) as the listener serves it (`http::api`:
//! the direct path in front of the router; the refusals also through the
//! router's own `/wx` route, its twin): calls reach
//! wechat-sim's business endpoints with the fleet's token (the caller's own
//! `access_token` is replaced), a token WeChat revoked behind the fleet's
//! back is healed with one refresh and the call retried, images come back
//! byte for byte, a 20 MB upload streams through unchanged, a streamed call
//! is not retried, and paths that could leave the API are refused.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use wxtoken_coordinator::http::{Api, api, router};

use crate::fleet::{API_KEY, APPID, Fleet, ID, SECRET, Settings};

fn long_lived() -> Settings {
    Settings {
        token_ttl: Duration::from_secs(60),
        ..Settings::default()
    }
}

async fn app(fleet: &Fleet) -> Api {
    let state = fleet.replicas[0]
        .http_state(&fleet.config(SECRET))
        .expect("state");
    api(state, true)
}

/// The router alone: every gateway call goes through its `/wx` route.
async fn router_only(fleet: &Fleet) -> Api {
    let state = fleet.replicas[0]
        .http_state(&fleet.config(SECRET))
        .expect("state");
    Api::from(router(state, true))
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn call(
    router: &Api,
    uri: &str,
    key: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    // An empty body is a GET (the compatible token endpoint, /metrics).
    let method = if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(key) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

fn message() -> Vec<u8> {
    json!({"touser": "oUser1", "msgtype": "text", "text": {"content": "hello"}})
        .to_string()
        .into_bytes()
}

fn send_uri() -> String {
    // The caller's own token is replaced by the fleet's.
    format!("/wx/{ID}/cgi-bin/message/custom/send?access_token=NOT_MINE")
}

fn multipart(boundary: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_fleets_token_and_a_revoked_one_is_healed_once() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = app(&fleet).await;

    let reply = call(
        &r,
        &send_uri(),
        Some(API_KEY),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
    let stats = fleet.sim.stats();
    assert_eq!(stats.business_ok["/cgi-bin/message/custom/send"], 1);
    assert_eq!(
        stats.uses_unknown_token, 0,
        "the caller's token was passed on"
    );

    // WeChat revokes the token behind the fleet's back: the call still
    // succeeds, after exactly one refresh.
    let fetched = fleet.app().fetch_ok;
    assert!(fleet.sim.revoke(&first.value));
    let reply = call(
        &r,
        &send_uri(),
        Some(API_KEY),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
    assert_eq!(
        fleet.app().fetch_ok,
        fetched + 1,
        "one refresh per revocation"
    );
    let now = fleet.token().await.expect("a token");
    assert!(now.generation > first.generation);
    // WeChat's own errors pass through in its shape.
    let reply = call(
        &r,
        &send_uri(),
        Some(API_KEY),
        "application/json",
        br#"{"touser":"o1"}"#.to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["errcode"], 40008);
    assert_eq!(
        fleet.app().fetch_ok,
        fetched + 1,
        "a business error is no token error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_large_uploads_stream_through_unchanged() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = app(&fleet).await;

    let reply = call(
        &r,
        &format!("/wx/{ID}/wxa/getwxacodeunlimit"),
        Some(API_KEY),
        "application/json",
        br#"{"scene":"a=1","width":640}"#.to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type, "image/jpeg");
    assert_eq!(reply.body, wechat_sim::wxacode_image("a=1", 640));

    // 20 MB: over retry_body_limit, so streamed, never kept.
    let data: Vec<u8> = (0..20 << 20)
        .map(|i: u32| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let boundary = "wxtokenBoundary7MA4YWxk";
    let reply = call(
        &r,
        &format!("/wx/{ID}/cgi-bin/media/upload?type=image"),
        Some(API_KEY),
        &format!("multipart/form-data; boundary={boundary}"),
        multipart(boundary, &data),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let media_id = reply.json()["media_id"].as_str().unwrap_or("").to_owned();
    let uploads = fleet.sim.stats().uploads;
    let last = uploads.last().expect("an upload");
    assert_eq!(last.media_id, media_id);
    assert_eq!(last.bytes, data.len() as u64);
    assert_eq!(last.sha1, sha1_smol::Sha1::from(&data).digest().to_string());

    // A streamed call WeChat refuses for its token is not retried (the body
    // is gone): its reply comes back unchanged, and the report heals the
    // token for the next call.
    assert!(fleet.sim.revoke(&first.value));
    let big: Vec<u8> = vec![7; 100 << 10];
    let reply = call(
        &r,
        &format!("/wx/{ID}/cgi-bin/media/upload?type=image"),
        Some(API_KEY),
        &format!("multipart/form-data; boundary={boundary}"),
        multipart(boundary, &big),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 40001, "{:?}", reply.json());
    fleet
        .wait_generation(first.generation + 1, Duration::from_secs(5))
        .await;
    let reply = call(
        &r,
        &send_uri(),
        Some(API_KEY),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_callers_and_paths_it_should() {
    let fleet = Fleet::start(long_lived(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    // The direct path and the router's route answer alike.
    for r in [app(&fleet).await, router_only(&fleet).await] {
        refusals(&fleet, &r).await;
    }
}

async fn refusals(fleet: &Fleet, r: &Api) {
    let r = r.clone();
    let code = |reply: &Reply| {
        reply.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };

    let reply = call(&r, &send_uri(), None, "application/json", message()).await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let reply = call(
        &r,
        &send_uri(),
        Some("wrong"),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let reply = call(
        &r,
        "/wx/nosuch/cgi-bin/message/custom/send",
        Some(API_KEY),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (StatusCode::NOT_FOUND, "app_not_found")
    );
    for path in [
        "cgi-bin//x",
        "cgi-bin/./x",
        "cgi-bin/..",
        "cgi-bin/a:b@c",
        "http://evil.example/cgi-bin/x",
        "/evil.example/cgi-bin/x",
        "%2F%2Fevil.example/x",
        "cgi-bin%2F..%2F..%2Fx",
        "@evil.example/x",
    ] {
        let reply = call(
            &r,
            &format!("/wx/{ID}/{path}"),
            Some(API_KEY),
            "application/json",
            message(),
        )
        .await;
        assert_eq!(
            (reply.status, code(&reply).as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            "{path}"
        );
    }
    assert!(
        !fleet.sim.stats().business_ok.contains_key("/cgi-bin/x"),
        "a refused path was forwarded"
    );
    // An unknown WeChat path gets WeChat's answer (the simulator's 40066),
    // and its metric series is `other`, not the caller's path.
    let reply = call(
        &r,
        &format!("/wx/{ID}/cgi-bin/no_such_api_{}", 7),
        Some(API_KEY),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 40066);
    // A percent-encoded id is the id; a path that is not the route's
    // shape is the router's 404, another method its 405.
    let reply = call(
        &r,
        "/wx/%73hop/cgi-bin/message/custom/send",
        Some(API_KEY),
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
    let reply = call(
        &r,
        &format!("/wx/{ID}/"),
        Some(API_KEY),
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let put = Request::builder()
        .method(Method::PUT)
        .uri(send_uri())
        .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
        .body(Body::from(message()))
        .unwrap();
    let reply = r.clone().oneshot(put).await.unwrap();
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    let reply = call(
        &r,
        "/wx/%ff/cgi-bin/x",
        Some(API_KEY),
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
    let metrics = call(&r, "/metrics", None, "text/plain", Vec::new()).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("wxtoken_gateway_calls_total"), "{text}");
    assert!(
        !text.contains("no_such_api"),
        "a caller's path became a series"
    );
    assert!(!text.contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_pointed_at_the_coordinator_keeps_its_paths_and_never_sees_40001() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = app(&fleet).await;
    // The SDK gets its token from the compatible endpoint, as from WeChat.
    let got = call(
        &r,
        &format!("/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"),
        None,
        "application/json",
        Vec::new(),
    )
    .await;
    let t = got.json()["access_token"].as_str().unwrap_or("").to_owned();
    assert_eq!(t, first.value);
    let send = |t: &str| format!("/cgi-bin/message/custom/send?access_token={t}");

    let reply = call(&r, &send(&t), None, "application/json", message()).await;
    assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
    // Revoked behind the fleet's back: the SDK's T is replaced and healed.
    let fetched = fleet.app().fetch_ok;
    assert!(fleet.sim.revoke(&t));
    let reply = call(&r, &send(&t), None, "application/json", message()).await;
    assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
    assert_eq!(fleet.app().fetch_ok, fetched + 1);
    // Still holding the stale T: the current token is used.
    let reply = call(&r, &send(&t), None, "application/json", message()).await;
    assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
    assert_eq!(fleet.app().fetch_ok, fetched + 1);
    assert_eq!(
        fleet.sim.stats().business_ok["/cgi-bin/message/custom/send"],
        3
    );

    // A token the fleet never stored proves nothing: WeChat's 40001.
    let reply = call(
        &r,
        &send("forged0123456789"),
        None,
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 40001);
    let reply = call(
        &r,
        "/cgi-bin/message/custom/send",
        None,
        "application/json",
        message(),
    )
    .await;
    assert_eq!(reply.json()["errcode"], 41001);
    assert_eq!(
        fleet.sim.stats().business_ok["/cgi-bin/message/custom/send"],
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_right_after_a_streamed_calls_40001_is_served() {
    // WeChat answers a streamed upload with 40001 before reading its body;
    // the next calls (no waiting for the refresh) must still be served —
    // WeChat's answer passed on or healed — never a 503 of the gateway's.
    let fleet = Fleet::start(long_lived(), 1).await;
    let mut token = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = app(&fleet).await;
    let boundary = "wxtokenBoundary7MA4YWxk";
    let upload = format!("/wx/{ID}/cgi-bin/media/upload?type=image");
    let form = format!("multipart/form-data; boundary={boundary}");
    for (round, size) in [100 << 10, 4 << 20, 100 << 10, 4 << 20]
        .into_iter()
        .enumerate()
    {
        let big: Vec<u8> = vec![7; size];
        assert!(fleet.sim.revoke(&token.value));
        let reply = call(&r, &upload, Some(API_KEY), &form, multipart(boundary, &big)).await;
        assert_eq!(
            (reply.status, reply.json()["errcode"].clone()),
            (StatusCode::OK, json!(40001)),
            "round {round}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        for _ in 0..3 {
            let reply = call(&r, &upload, Some(API_KEY), &form, multipart(boundary, &big)).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "round {round}: {:?}",
                reply.json()
            );
        }
        let reply = call(
            &r,
            &send_uri(),
            Some(API_KEY),
            "application/json",
            message(),
        )
        .await;
        assert_eq!(
            (reply.status, reply.json()["errcode"].clone()),
            (StatusCode::OK, json!(0)),
            "round {round}: {:?}",
            reply.json()
        );
        token = fleet
            .wait_generation(token.generation + 1, Duration::from_secs(5))
            .await;
    }
}

/// `wxtoken_gateway_upstream_connects_total` now (the recorder is the
/// process's: other tests' connections count too).
async fn upstream_connects(r: &Api) -> f64 {
    let metrics = call(r, "/metrics", None, "text/plain", Vec::new()).await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|l| l.strip_prefix("wxtoken_gateway_upstream_connects_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_reuse_one_upstream_connection() {
    let fleet = Fleet::start(long_lived(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = app(&fleet).await;
    let before = upstream_connects(&r).await;
    for _ in 0..40 {
        let reply = call(
            &r,
            &send_uri(),
            Some(API_KEY),
            "application/json",
            message(),
        )
        .await;
        assert_eq!(reply.json()["errcode"], 0, "{:?}", reply.json());
        let reply = call(
            &r,
            &format!("/wx/{ID}/wxa/getwxacodeunlimit"),
            Some(API_KEY),
            "application/json",
            br#"{"scene":"a=1","width":64}"#.to_vec(),
        )
        .await;
        assert_eq!(reply.content_type, "image/jpeg");
    }
    // 80 calls, JSON read whole and images streamed: one connection (a few
    // more may come from tests running beside this one).
    let opened = upstream_connects(&r).await - before;
    assert!(
        (1.0..20.0).contains(&opened),
        "{opened} connections for 80 calls"
    );
}
