//! Secret custody (issue 15 item 4): login services exchange codes through
//! the coordinator, which alone holds the appsecret; SDKs configured with
//! the app's stand-in `compat_secret` get tokens and sessions from the
//! compatible endpoints; WeChat's code errors pass through in its shape.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;
use wxtoken_coordinator::http::router;

use crate::fleet::{API_KEY, APPID, Fleet, ID, SECRET, Settings};

const STAND_IN: &str = "stand-in-secret-for-sdks-0001";

async fn app(fleet: &Fleet) -> Router {
    let mut config = fleet.config(SECRET);
    config.apps[0].compat_secret = Some(SecretString::from(STAND_IN));
    router(fleet.replicas[0].http_state(&config).expect("state"), true)
}

async fn call(r: &Router, method: Method, uri: &str, body: Option<Value>) -> Value {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req
            .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
            .header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = r.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_exchanges_need_no_secret_outside_the_coordinator() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = app(&fleet).await;

    // The JSON API: the service sends only the code.
    let code = fleet.sim.login_code(APPID, "oUser1").unwrap();
    let uri = format!("/v1/apps/{ID}/jscode2session");
    let v = call(&r, Method::POST, &uri, Some(json!({"js_code": code}))).await;
    assert_eq!(v["openid"], "oUser1", "{v}");
    assert!(v["session_key"].is_string());
    let v = call(&r, Method::POST, &uri, Some(json!({"js_code": code}))).await;
    assert_eq!(v["errcode"], 40163, "WeChat's error in its shape: {v}");
    let v = call(&r, Method::POST, &uri, Some(json!({"nope": 1}))).await;
    assert_eq!(v["error"]["code"], "invalid_request");

    // OAuth and its renewal.
    let code = fleet.sim.login_code(APPID, "oWeb").unwrap();
    let v = call(
        &r,
        Method::POST,
        &format!("/v1/apps/{ID}/oauth2/access_token"),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(v["openid"], "oWeb", "{v}");
    let rt = v["refresh_token"].as_str().unwrap().to_owned();
    let v = call(
        &r,
        Method::POST,
        &format!("/v1/apps/{ID}/oauth2/refresh_token"),
        Some(json!({"refresh_token": rt})),
    )
    .await;
    assert!(v["access_token"].is_string(), "{v}");

    // An SDK with the stand-in secret: sessions and the access token.
    let code = fleet.sim.login_code(APPID, "oSdk").unwrap();
    let sns = |secret: &str, code: &str| {
        format!(
            "/sns/jscode2session?appid={APPID}&secret={secret}&js_code={code}&grant_type=authorization_code"
        )
    };
    let v = call(&r, Method::GET, &sns("wrong-secret", &code), None).await;
    assert_eq!(v["errcode"], 40125);
    let v = call(&r, Method::GET, &sns(STAND_IN, &code), None).await;
    assert_eq!(v["openid"], "oSdk", "{v}");
    let token = call(
        &r,
        Method::GET,
        &format!("/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={STAND_IN}"),
        None,
    )
    .await;
    assert!(token["access_token"].is_string(), "{token}");
    assert_eq!(fleet.app().fetch_ok, 1, "served from the shared token");
}
