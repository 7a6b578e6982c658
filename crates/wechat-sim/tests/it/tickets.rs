//! Official Account `getticket`: one ticket per (app, type) while valid,
//! `expires_in` always the full life, the per-type daily quota, token checks,
//! faults and in-flight counting.

use futures_util::future::join_all;
use serde_json::Value;
use wechat_sim::Faults;

use crate::helpers::*;

fn assert_ticket_shape(v: &Value, ttl: u64) {
    assert_eq!(errcode(v), 0, "{v}");
    assert_eq!(v["errmsg"], "ok");
    assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
    assert_eq!(expires_in(v), ttl, "always the full ticket life");
    let t = ticket(v);
    assert_eq!(t.len(), 86, "{t}");
    assert!(
        t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    );
}

#[tokio::test]
async fn same_ticket_while_valid_full_expires_in_new_only_after_expiry() {
    let wx = start(
        config()
            .token_ttl(secs(30))
            .overlap(secs(1))
            .ticket_ttl(secs(2)),
    )
    .await;
    let token = wx.fetch().await;
    let v = wx.ticket(&token, "jsapi").await;
    assert_ticket_shape(&v, 2);
    let first = ticket(&v);

    tokio::time::sleep(ms(1100)).await;
    let v = wx.ticket(&token, "jsapi").await;
    assert_eq!(ticket(&v), first, "same ticket while valid");
    assert_eq!(expires_in(&v), 2, "the full life, not the 0.9 s left");

    // Sleep past the first ticket's expiry: only then a new one.
    tokio::time::sleep(ms(1000)).await;
    let v = wx.ticket(&token, "jsapi").await;
    assert_ticket_shape(&v, 2);
    let second = ticket(&v);
    assert_ne!(second, first);

    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.ticket_calls.get("jsapi"), Some(&3));
    assert_eq!(app.tickets_ok, 3);
    assert_eq!(app.tickets_issued.get("jsapi"), Some(&2));
    assert_eq!(app.issued_tickets.len(), 2);
    let (a, b) = (&app.issued_tickets[0], &app.issued_tickets[1]);
    assert_eq!(
        (a.ticket.as_str(), a.kind.as_str()),
        (first.as_str(), "jsapi")
    );
    assert_eq!(a.expires_at_ms - a.issued_at_ms, 2000);
    assert!(b.issued_at_ms >= a.expires_at_ms, "new only after expiry");
    assert_eq!(b.ticket, second);
    assert_eq!(app.ticket_quota_used_today.get("jsapi"), Some(&3));
}

#[tokio::test]
async fn ticket_works_with_any_live_token_of_its_app() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    let first_token = wx.fetch().await;
    let t = ticket(&wx.ticket(&first_token, "jsapi").await);
    let second_token = wx.fetch().await;
    let stable = access_token(&wx.stable(false).await);
    let external = wx.sim.external_refresh(APP).unwrap();
    for token in [&second_token, &stable, &external] {
        assert_eq!(
            ticket(&wx.ticket(token, "jsapi").await),
            t,
            "a new access token does not change the ticket"
        );
    }
    // The first token was superseded twice: dead at once. A dead token gets
    // no ticket, the live ones still get the same one.
    assert_eq!(errcode(&wx.ticket(&first_token, "jsapi").await), 40001);
    assert_eq!(ticket(&wx.ticket(&stable, "jsapi").await), t);
    // Another app has its own ticket.
    let other = access_token(&wx.token(APP_B, SECRET_B).await);
    assert_ne!(ticket(&wx.ticket(&other, "jsapi").await), t);
    let app = wx.sim.stats().apps[APP].clone();
    assert_eq!(app.tickets_issued.get("jsapi"), Some(&1));
    assert_eq!(
        app.ticket_calls.get("jsapi"),
        Some(&5),
        "the 40001 call not"
    );
}

#[tokio::test]
async fn wx_card_is_separate_from_jsapi_with_its_own_quota() {
    let wx = start(config().ticket_daily_quota(2)).await;
    let token = wx.fetch().await;
    let jsapi = ticket(&wx.ticket(&token, "jsapi").await);
    let card = ticket(&wx.ticket(&token, "wx_card").await);
    assert_ne!(jsapi, card);
    assert_eq!(ticket(&wx.ticket(&token, "jsapi").await), jsapi);
    assert_eq!(errcode(&wx.ticket(&token, "jsapi").await), 45009);
    assert_eq!(ticket(&wx.ticket(&token, "wx_card").await), card);
    assert_eq!(errcode(&wx.ticket(&token, "wx_card").await), 45009);
    let app = wx.sim.stats().apps[APP].clone();
    assert_eq!(app.tickets_issued.get("jsapi"), Some(&1));
    assert_eq!(app.tickets_issued.get("wx_card"), Some(&1));
    assert_eq!(app.issued_tickets[1].kind, "wx_card");
}

#[tokio::test]
async fn daily_quota_gives_45009_counts_only_valid_tokens_and_clears() {
    let wx = start(config().ticket_daily_quota(3)).await;
    let token = wx.fetch().await;
    for bad in ["", "bogus"] {
        let v = wx.ticket(bad, "jsapi").await;
        assert!(matches!(errcode(&v), 41001 | 40001), "{v}");
    }
    assert_eq!(errcode(&wx.ticket(&token, "nope").await), 40097);
    for _ in 0..3 {
        assert_eq!(errcode(&wx.ticket(&token, "jsapi").await), 0);
    }
    let v = wx.ticket(&token, "jsapi").await;
    assert_eq!(errcode(&v), 45009);
    let msg = v["errmsg"].as_str().unwrap();
    assert!(
        msg.starts_with("reach max api daily quota limit rid: "),
        "{msg}"
    );
    let other = access_token(&wx.token(APP_B, SECRET_B).await);
    assert_eq!(errcode(&wx.ticket(&other, "jsapi").await), 0, "per app");

    let app = wx.sim.stats().apps[APP].clone();
    assert_eq!(app.ticket_quota_used_today.get("jsapi"), Some(&3));
    assert_eq!(app.ticket_calls.get("jsapi"), Some(&4));
    assert_eq!(app.ticket_failed.get("45009"), Some(&1));
    assert_eq!(app.ticket_failed.get("40097"), Some(&1));
    assert_eq!(app.tickets_ok, 3);
    assert!(wx.sim.clear_quota(Some(APP)));
    assert_eq!(errcode(&wx.ticket(&token, "jsapi").await), 0);
}

#[tokio::test]
async fn token_checks_41001_40001_42001_and_wecom_tokens_are_unknown_here() {
    let wx = start(wecom_config().token_ttl(ms(1200)).overlap(ms(200))).await;
    let token = wx.fetch().await;
    let (_, v) = wx
        .get("/cgi-bin/ticket/getticket", &[("type", "jsapi")])
        .await;
    assert_eq!(errcode(&v), 41001);
    let wecom = wx.wecom_fetch(AGENT_SECRET).await;
    assert_eq!(
        errcode(&wx.ticket(&wecom, "jsapi").await),
        40001,
        "api.weixin.qq.com does not know WeCom tokens"
    );
    // Token first, then type: a bad token with a bad type is 40001.
    assert_eq!(errcode(&wx.ticket("bogus", "nope").await), 40001);
    poll_until(secs(4), "token expiry", || async {
        errcode(&wx.ticket(&token, "jsapi").await) == 42001
    })
    .await;
    assert_eq!(
        wx.sim.stats().apps[APP].tickets_issued.get("jsapi"),
        Some(&1)
    );
}

#[tokio::test]
async fn faults_apply_to_getticket_with_the_appid_filter_and_garbage_processes() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    let other = access_token(&wx.token(APP_B, SECRET_B).await);
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        appid: Some(APP.to_owned()),
        ..Faults::none()
    });
    let v = wx.ticket(&token, "jsapi").await;
    assert_eq!(errcode(&v), -1, "{v}");
    assert_eq!(errcode(&wx.ticket(&other, "jsapi").await), 0, "filtered");

    wx.sim.set_faults(Faults {
        garbage_rate: 1.0,
        remaining: Some(1),
        ..Faults::none()
    });
    let resp = wx
        .http
        .get(wx.url("/cgi-bin/ticket/getticket"))
        .query(&[("access_token", token.as_str()), ("type", "jsapi")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(
        app.issued_tickets.len(),
        1,
        "garbage: the call was processed"
    );
    assert_eq!(app.ticket_quota_used_today.get("jsapi"), Some(&1));
    assert_eq!(app.tickets_ok, 0);
    assert_eq!(app.ticket_failed.get("garbage"), Some(&1));
    assert_eq!(app.ticket_failed.get("-1"), Some(&1));
    assert_eq!(
        ticket(&wx.ticket(&token, "jsapi").await),
        app.issued_tickets[0].ticket,
        "the ticket minted behind the lost reply"
    );
}

#[tokio::test]
async fn concurrent_ticket_calls_are_counted_in_flight_per_type() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    wx.sim.set_faults(Faults {
        delay: Some(ms(400)),
        ..Faults::none()
    });
    let calls = (0..4).map(|_| wx.ticket(&token, "jsapi"));
    let (replies, card) = tokio::join!(join_all(calls), wx.ticket(&token, "wx_card"));
    assert!(replies.iter().all(|v| errcode(v) == 0));
    assert_eq!(errcode(&card), 0);
    let tickets: std::collections::HashSet<_> = replies.iter().map(ticket).collect();
    assert_eq!(tickets.len(), 1, "concurrent callers share one ticket");
    let app = wx.sim.stats().apps[APP].clone();
    assert_eq!(app.max_concurrent_ticket_fetches.get("jsapi"), Some(&4));
    assert_eq!(app.max_concurrent_ticket_fetches.get("wx_card"), Some(&1));
    assert_eq!(app.concurrent_ticket_fetches.get("jsapi"), Some(&0));
    assert_eq!(app.max_concurrent_fetches, 1, "token fetches are apart");
}
