//! `cgi-bin/token`: every call a new token, the overlap, external refreshes.

use std::collections::HashSet;

use wechat_sim::{TokenSource, TokenState};

use crate::helpers::*;

#[tokio::test]
async fn three_concurrent_token_fetches_leave_exactly_one_valid_token_after_overlap() {
    let overlap = secs(2);
    let wx = start(config().token_ttl(secs(30)).overlap(overlap)).await;
    let (a, b, c) = tokio::join!(wx.fetch(), wx.fetch(), wx.fetch());
    let distinct: HashSet<_> = [&a, &b, &c].into_iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "every successful call issues a new token"
    );

    // Issue order decides which is newest, whatever order the replies came in.
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    let issued: Vec<_> = app.issued.iter().map(|t| t.token.clone()).collect();
    assert_eq!(issued.len(), 3);
    let (oldest, previous, newest) = (&issued[0], &issued[1], &issued[2]);

    // During the overlap: the previous token works, the one before is dead.
    assert_eq!(wx.use_token(newest).await, 0);
    assert_eq!(
        wx.use_token(previous).await,
        0,
        "previous works during overlap"
    );
    assert_eq!(wx.use_token(oldest).await, 40001, "older one dies at once");
    assert_eq!(
        app.issued[0].revoked_at_ms,
        Some(app.issued[2].issued_at_ms)
    );
    assert_eq!(
        app.issued[1].invalid_from_ms,
        Some(app.issued[2].issued_at_ms + 2000),
        "previous gets exactly the overlap"
    );

    // After the overlap: exactly one valid token, the newest.
    poll_until(secs(5), "previous token to die", || async {
        wx.use_token(previous).await == 40001
    })
    .await;
    let valid: Vec<_> = issued
        .iter()
        .filter(|t| wx.sim.token_state(t) == TokenState::Valid)
        .collect();
    assert_eq!(valid, vec![newest]);
    assert_eq!(wx.use_token(newest).await, 0);

    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.fetch_calls, 3);
    assert_eq!(app.token_fetch_ok, 3);
    assert_eq!(app.quota_used_today, 3);
    assert_eq!(app.uses_invalid, 2);
    assert!(app.issued.iter().all(|t| t.source == TokenSource::Token));
}

#[tokio::test]
async fn token_reply_has_wechat_shape_and_wechat_like_token() {
    let wx = start(config().token_ttl(secs(7200))).await;
    let v = wx.token(APP, SECRET).await;
    let obj = v.as_object().unwrap();
    let keys: Vec<_> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["access_token", "expires_in"],
        "no errcode on success"
    );
    assert_eq!(expires_in(&v), 7200);
    let token = access_token(&v);
    assert!(token.len() >= 100);
    assert!(
        token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    );
}

#[tokio::test]
async fn token_expires_naturally_with_42001() {
    let wx = start(config().token_ttl(ms(1500)).overlap(ms(500))).await;
    let v = wx.token(APP, SECRET).await;
    assert_eq!(expires_in(&v), 1, "whole seconds, at least 1");
    let token = access_token(&v);
    assert_eq!(wx.use_token(&token).await, 0);
    poll_until(secs(5), "natural expiry", || async {
        wx.use_token(&token).await == 42001
    })
    .await;
    assert_eq!(wx.sim.token_state(&token), TokenState::Expired);
    assert_eq!(wx.sim.stats().app(APP).unwrap().uses_expired, 1);
}

#[tokio::test]
async fn external_refresh_supersedes_fleet_token_40001_after_overlap() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    let fleet = wx.fetch().await;
    let external = wx.sim.external_refresh(APP).expect("external refresh");
    assert_ne!(fleet, external);
    assert_eq!(
        wx.use_token(&fleet).await,
        0,
        "fleet token lives for the overlap"
    );
    poll_until(secs(4), "fleet token to be superseded", || async {
        wx.use_token(&fleet).await == 40001
    })
    .await;
    assert_eq!(wx.use_token(&external).await, 0);

    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(
        app.fetch_calls, 1,
        "an external refresh is not a fleet fetch"
    );
    assert_eq!(app.quota_used_today, 2, "but it uses the app's quota");
    assert_eq!(app.issued[1].source, TokenSource::External);
    assert_eq!(app.issued[1].source, "external");
    assert!(!app.issued[0].usable_at(app.issued[1].issued_at_ms + 1000));
    assert!(app.issued[0].usable_at(app.issued[1].issued_at_ms + 999));

    // The admin endpoint does the same, for tests in another process.
    let resp = wx
        .http
        .post(wx.url("/__admin/external_refresh"))
        .query(&[("appid", APP)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    let third = access_token(&v);
    assert_eq!(expires_in(&v), 30);
    assert_eq!(wx.sim.token_state(&third), TokenState::Valid);
    assert_eq!(wx.sim.token_state(&fleet), TokenState::Invalid);
    assert_eq!(wx.sim.external_refresh("wxunknown"), None);
}
