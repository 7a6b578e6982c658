//! Fault injection on the fetch endpoints, one kind at a time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wechat_sim::{Faults, TokenState};

use crate::helpers::*;

fn token_url(wx: &Wx, appid: &str, secret: &str) -> reqwest::RequestBuilder {
    wx.http.get(wx.url("/cgi-bin/token")).query(&[
        ("grant_type", "client_credential"),
        ("appid", appid),
        ("secret", secret),
    ])
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn fault_busy_answers_minus_1_and_issues_nothing() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::none()
    });
    let v = wx.token(APP, SECRET).await;
    assert_eq!(errcode(&v), -1);
    assert!(v["errmsg"].as_str().unwrap().starts_with("system error"));
    assert_eq!(errcode(&wx.stable(false).await), -1, "stable_token too");
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.fetch_failed.get("-1"), Some(&2));
    assert_eq!(app.fetch_calls, 2);
    assert_eq!(app.fetch_ok, 0);
    assert!(app.issued.is_empty());
    assert_eq!(app.quota_used_today, 0);
}

#[tokio::test]
async fn fault_http_502_is_html_and_issues_nothing() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        http_502_rate: 1.0,
        ..Faults::none()
    });
    let resp = token_url(&wx, APP, SECRET).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("502 Bad Gateway"));
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.fetch_failed.get("http_502"), Some(&1));
    assert!(app.issued.is_empty());
}

#[tokio::test]
async fn fault_garbage_is_unparsable_but_token_was_issued() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    let fleet = wx.fetch().await;
    wx.sim.set_faults(Faults {
        garbage_rate: 1.0,
        remaining: Some(1),
        ..Faults::none()
    });
    let resp = token_url(&wx, APP, SECRET).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("{\"access_token\":\""), "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());

    // The call was processed: a token the fleet never saw replaced its own.
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.issued.len(), 2);
    assert_eq!(app.quota_used_today, 2);
    assert_eq!(app.fetch_failed.get("garbage"), Some(&1));
    assert_eq!(app.fetch_ok, 1);
    let lost = &app.issued[1].token;
    assert!(lost.starts_with(&body["{\"access_token\":\"".len()..]));
    assert!(app.issued[0].superseded_at_ms.is_some());
    poll_until(
        secs(4),
        "fleet token superseded by the lost one",
        || async { wx.use_token(&fleet).await == 40001 },
    )
    .await;
    assert_eq!(wx.sim.token_state(lost), TokenState::Valid);
}

#[tokio::test]
async fn fault_hang_times_out_a_client_with_a_timeout() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        hang_rate: 1.0,
        ..Faults::none()
    });
    let started = Instant::now();
    let err = token_url(&wx, APP, SECRET)
        .timeout(ms(400))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= ms(400));
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.fetch_failed.get("hang"), Some(&1));
    assert!(app.issued.is_empty());
}

#[tokio::test]
async fn fault_delay_issues_on_arrival_and_postpones_reply() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        delay: Some(ms(800)),
        ..Faults::none()
    });
    let sent_ms = unix_ms();
    let started = Instant::now();
    let token = wx.fetch().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= ms(800), "reply postponed ({elapsed:?})");
    let stats = wx.sim.stats();
    let issued = &stats.app(APP).unwrap().issued[0];
    assert_eq!(issued.token, token);
    assert!(
        issued.issued_at_ms < sent_ms + 400,
        "issued when the request arrived, not when the reply left"
    );
}

#[tokio::test]
async fn fault_remaining_clears_itself() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        remaining: Some(2),
        ..Faults::none()
    });
    assert_eq!(errcode(&wx.token(APP, SECRET).await), -1);
    assert_eq!(errcode(&wx.token(APP, SECRET).await), -1);
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 0);
    assert_eq!(wx.sim.state().faults(), Faults::none());
}

#[tokio::test]
async fn fault_appid_filter_spares_other_apps() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        appid: Some(APP_B.to_owned()),
        ..Faults::none()
    });
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 0);
    assert_eq!(errcode(&wx.token(APP_B, SECRET_B).await), -1);
}

#[tokio::test]
async fn faults_never_touch_use_endpoints() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    wx.sim.set_faults(Faults {
        http_502_rate: 0.5,
        hang_rate: 0.5,
        delay: Some(secs(5)),
        ..Faults::none()
    });
    let started = Instant::now();
    assert_eq!(wx.use_token(&token).await, 0);
    let (_, v) = wx
        .get("/cgi-bin/get_api_domain_ip", &[("access_token", &token)])
        .await;
    assert_eq!(errcode(&v), 0);
    assert!(started.elapsed() < secs(2));
}

#[tokio::test]
async fn faults_set_through_admin_json_with_humantime_delay() {
    let wx = start(config()).await;
    let body = json!({"busy_rate": 1.0, "remaining": 1, "delay": "300ms"});
    let resp = wx
        .http
        .post(wx.url("/__admin/faults"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    assert_eq!(errcode(&wx.token(APP, SECRET).await), -1);
    assert!(started.elapsed() >= ms(300));
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 0);

    for bad in [r#"{"busy_rate": 2}"#, r#"{"bussy_rate": 1}"#, "nope"] {
        let resp = wx
            .http
            .post(wx.url("/__admin/faults"))
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn fault_decisions_replay_with_the_same_seed() {
    async fn run(seed: u64) -> Vec<i64> {
        let wx = start(config().seed(seed)).await;
        wx.sim.set_faults(Faults {
            busy_rate: 0.5,
            ..Faults::none()
        });
        let mut codes = Vec::new();
        for _ in 0..24 {
            codes.push(errcode(&wx.token(APP, SECRET).await));
        }
        codes
    }
    let a = run(7).await;
    assert_eq!(a, run(7).await);
    assert!(a.contains(&-1) && a.contains(&0), "{a:?}");
}
