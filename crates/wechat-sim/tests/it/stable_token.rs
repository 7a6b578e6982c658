//! `stable_token`: one shared token in normal mode, rotation in the last
//! overlap, force refresh and its limits.

use std::collections::HashSet;

use futures_util::future::join_all;
use wechat_sim::TokenSource;

use crate::helpers::*;

#[tokio::test]
async fn fifty_concurrent_stable_callers_share_one_token_then_rotate_in_last_overlap() {
    let wx = start(config().token_ttl(secs(5)).overlap(secs(2))).await;
    let replies = join_all((0..50).map(|_| wx.stable(false))).await;
    let tokens: HashSet<String> = replies.iter().map(access_token).collect();
    assert_eq!(tokens.len(), 1, "all 50 callers get the same token");
    let first = tokens.into_iter().next().unwrap();
    let max_first = replies.iter().map(expires_in).max().unwrap();
    assert!((4..=5).contains(&max_first), "{max_first}");
    assert_eq!(wx.sim.stats().app(APP).unwrap().issued.len(), 1);

    // Same token, expires_in going down, until only the overlap is left.
    tokio::time::sleep(ms(1100)).await;
    let v = wx.stable(false).await;
    assert_eq!(access_token(&v), first);
    assert!(
        expires_in(&v) < max_first,
        "{} !< {max_first}",
        expires_in(&v)
    );

    let mut last_expires_in = expires_in(&v);
    let deadline = std::time::Instant::now() + secs(4);
    let rotated = loop {
        let v = wx.stable(false).await;
        let token = access_token(&v);
        if token != first {
            break (token, expires_in(&v));
        }
        assert!(
            expires_in(&v) <= last_expires_in,
            "expires_in never goes up"
        );
        last_expires_in = expires_in(&v);
        assert!(std::time::Instant::now() < deadline, "no rotation");
        tokio::time::sleep(ms(50)).await;
    };
    let (second, second_expires_in) = rotated;
    assert!(second_expires_in >= 4, "a new token has its full ttl");
    // Both valid meanwhile: the old one keeps working until its own expiry.
    assert_eq!(wx.use_token(&first).await, 0);
    assert_eq!(wx.use_token(&second).await, 0);
    let stats = wx.sim.stats();
    let issued = &stats.app(APP).unwrap().issued;
    assert_eq!(issued.len(), 2);
    assert!(issued[0].superseded_at_ms.is_some());
    assert_eq!(issued[0].invalid_from_ms, None, "dies of expiry, not 40001");
    let left_ms = issued[0].expires_at_ms - issued[1].issued_at_ms;
    assert!(
        left_ms <= 2000,
        "rotated only in the last overlap ({left_ms} ms left)"
    );

    poll_until(secs(4), "old stable token to expire", || async {
        wx.use_token(&first).await == 42001
    })
    .await;
    assert_eq!(wx.use_token(&second).await, 0);
    assert_eq!(access_token(&wx.stable(false).await), second);
}

#[tokio::test]
async fn force_refresh_revokes_old_at_once_and_is_limited_by_spacing_and_daily_count() {
    let wx = start(
        config()
            .token_ttl(secs(60))
            .overlap(secs(5))
            .force_refresh_daily(2)
            .force_refresh_spacing(secs(1)),
    )
    .await;
    let t0 = access_token(&wx.stable(false).await);
    let v = wx.stable(true).await;
    let t1 = access_token(&v);
    assert_ne!(t0, t1);
    assert_eq!(expires_in(&v), 60);
    assert_eq!(wx.use_token(&t0).await, 40001, "old token revoked at once");
    assert_eq!(wx.use_token(&t1).await, 0);
    assert_eq!(access_token(&wx.stable(false).await), t1);

    assert_eq!(errcode(&wx.stable(true).await), 45011, "within the spacing");
    tokio::time::sleep(ms(1100)).await;
    let t2 = access_token(&wx.stable(true).await);
    assert_eq!(wx.use_token(&t1).await, 40001);
    tokio::time::sleep(ms(1100)).await;
    assert_eq!(
        errcode(&wx.stable(true).await),
        45009,
        "over the daily count"
    );
    assert_eq!(access_token(&wx.stable(false).await), t2);

    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.force_refreshes, 2);
    assert_eq!(app.force_refresh_used_today, 2);
    assert_eq!(app.fetch_failed.get("45011"), Some(&1));
    assert_eq!(app.fetch_failed.get("45009"), Some(&1));
    assert_eq!(app.issued[1].source, TokenSource::StableTokenForce);
    assert!(app.issued[0].revoked_at_ms.is_some());
}

#[tokio::test]
async fn stable_token_is_isolated_from_cgi_bin_token() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    let stable = access_token(&wx.stable(false).await);
    for _ in 0..3 {
        wx.fetch().await;
    }
    assert_eq!(wx.use_token(&stable).await, 0);
    assert_eq!(access_token(&wx.stable(false).await), stable);
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.quota_used_today, 3);
    assert_eq!(app.stable_quota_used_today, 2);
}

#[tokio::test]
async fn stable_normal_mode_keeps_returning_a_revoked_token_until_force_refresh() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    let t0 = access_token(&wx.stable(false).await);
    assert!(wx.sim.revoke(&t0));
    assert_eq!(wx.use_token(&t0).await, 40001);
    assert_eq!(access_token(&wx.stable(false).await), t0);
    let t1 = access_token(&wx.stable(true).await);
    assert_eq!(wx.use_token(&t1).await, 0);
}
