//! The admin API: stats round trip, reset, revoke, token_state, shutdown.

use std::time::Instant;

use wechat_sim::{Faults, Stats, TokenState};

use crate::helpers::*;

#[tokio::test]
async fn stats_json_round_trips_through_admin_endpoint() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    wx.fetch().await;
    wx.fetch().await;
    wx.stable(false).await;
    wx.token(APP, "wrong").await;
    wx.use_token("bogus").await;
    wx.sim.external_refresh(APP_B).unwrap();

    let resp = wx.http.get(wx.url("/__admin/stats")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let over_http: Stats = resp.json().await.unwrap();
    assert_eq!(over_http, wx.sim.stats());

    let app = over_http.app(APP).unwrap();
    assert_eq!(app.fetch_calls, 4);
    assert_eq!(app.fetch_ok, 3);
    assert_eq!(app.token_fetch_ok + app.stable_fetch_ok, 3);
    assert_eq!(app.fetch_failed.get("40125"), Some(&1));
    assert_eq!(app.issued.len(), 3);
    assert_eq!(over_http.uses_unknown_token, 1);
    let (appid, ext) = over_http
        .find_token(&over_http.app(APP_B).unwrap().issued[0].token)
        .unwrap();
    assert_eq!((appid, ext.source.as_str()), (APP_B, "external"));

    // The wire names the chaos tests rely on.
    let raw: serde_json::Value = wx
        .http
        .get(wx.url("/__admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued = &raw["apps"][APP]["issued"][0];
    for key in [
        "token",
        "source",
        "issued_at_ms",
        "expires_at_ms",
        "superseded_at_ms",
        "revoked_at_ms",
    ] {
        assert!(issued.get(key).is_some(), "missing {key} in {issued}");
    }
    assert_eq!(issued["source"], "token");
    assert!(raw["max_concurrent_fetches"].is_u64());
}

#[tokio::test]
async fn reset_clears_tokens_counters_quotas_and_faults() {
    let wx = start(config().daily_quota(1)).await;
    let token = wx.fetch().await;
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 45009);
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        appid: Some(APP_B.to_owned()),
        ..Faults::none()
    });
    let resp = wx.http.post(wx.url("/__admin/reset")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(wx.sim.token_state(&token), TokenState::Unknown);
    assert_eq!(wx.use_token(&token).await, 40001);
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!((app.fetch_calls, app.quota_used_today), (0, 0));
    assert!(app.issued.is_empty());
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 0, "quota cleared");
    assert_eq!(
        errcode(&wx.token(APP_B, SECRET_B).await),
        0,
        "faults cleared"
    );
}

#[tokio::test]
async fn admin_revoke_and_token_state_over_http() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    let state = |t: String| {
        let wx = &wx;
        async move {
            let v: serde_json::Value = wx
                .http
                .get(wx.url("/__admin/token_state"))
                .query(&[("access_token", t)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["state"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(state(token.clone()).await, "valid");
    assert_eq!(state("bogus".into()).await, "unknown");
    let resp = wx
        .http
        .post(wx.url("/__admin/revoke"))
        .query(&[("access_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(state(token.clone()).await, "invalid");
    assert_eq!(wx.use_token(&token).await, 40001);
    let stats = wx.sim.stats();
    assert_eq!(
        stats.app(APP).unwrap().uses_invalid,
        1,
        "token_state is not a use"
    );
}

#[tokio::test]
async fn shutdown_is_graceful_and_releases_a_hung_request() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        hang_rate: 1.0,
        ..Faults::none()
    });
    let url = wx.url("/cgi-bin/token");
    let http = wx.http.clone();
    let hung = tokio::spawn(async move { http.get(url).send().await });
    poll_until(secs(5), "the request to hang", || async {
        wx.sim.stats().concurrent_fetches == 1
    })
    .await;
    let started = Instant::now();
    let base = wx.base.clone();
    wx.sim.shutdown().await;
    assert!(
        started.elapsed() < secs(3),
        "did not wait for the hung request"
    );
    let reply = hung.await.unwrap();
    assert!(reply.is_err() || reply.is_ok_and(|r| r.status() == 503));
    assert!(
        wx.http
            .get(format!("{base}/cgi-bin/token"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn serve_stops_when_its_shutdown_future_completes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = wechat_sim::SimState::new(config()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wechat_sim::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/cgi-bin/token");
    let query = [
        ("grant_type", "client_credential"),
        ("appid", APP),
        ("secret", SECRET),
    ];
    let v: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .query(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state.token_state(&access_token(&v)), TokenState::Valid);
    stop.send(()).unwrap();
    tokio::time::timeout(secs(3), server)
        .await
        .expect("server stops")
        .unwrap();
}
