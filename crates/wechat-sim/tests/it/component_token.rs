//! Open Platform `api_component_token`, `api_start_push_ticket` and
//! `api_create_preauthcode` over HTTP: shapes, error codes, the ticket
//! window, the overlap, the limits, faults and concurrency.

use futures_util::future::join_all;
use serde_json::json;
use wechat_sim::{Faults, endpoint};

use crate::helpers::*;

#[tokio::test]
async fn component_token_happy_path_shape_and_overlap() {
    let wx = start(component_config(None).overlap(ms(300))).await;
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    let v = wx.component_token_with(&ticket).await;
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert_eq!(expires_in(&v), 7200);
    let first = v["component_access_token"].as_str().unwrap().to_owned();
    let second = wx.component_token().await;
    assert_ne!(first, second, "every call a new component token");
    let pre = |t: &str| {
        let t = t.to_owned();
        let wx = &wx;
        async move {
            wx.component_api("api_create_preauthcode", &t, json!({}))
                .await
        }
    };
    let v = pre(&first).await;
    assert_eq!(errcode(&v), 0, "{v}");
    assert!(
        v["pre_auth_code"]
            .as_str()
            .unwrap()
            .starts_with("preauthcode@@@")
    );
    assert_eq!(expires_in(&v), 600);
    tokio::time::sleep(ms(400)).await;
    assert_eq!(
        errcode(&pre(&first).await),
        40001,
        "superseded past the overlap"
    );
    assert_eq!(errcode(&pre(&second).await), 0);
    // A component token is no app token.
    assert_eq!(wx.use_token(&second).await, 40001);
    let stats = wx.sim.stats();
    let c = stats.component(COMPONENT).unwrap();
    assert_eq!(c.calls(endpoint::COMPONENT_TOKEN), 2);
    assert_eq!(c.ok(endpoint::COMPONENT_TOKEN), 2);
    assert_eq!(c.issued.len(), 2);
    assert_eq!(c.token_quota_used_today, 2);
    assert_eq!(c.verify_tickets_issued, 1, "the one minted at start");
    assert!(!stats.apps.contains_key(COMPONENT));
}

#[tokio::test]
async fn component_token_error_codes() {
    let wx = start(
        component_config(None)
            .component_token_ttl(ms(300))
            .overlap(ms(100)),
    )
    .await;
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    let path = "/cgi-bin/component/api_component_token";
    let call = |body: serde_json::Value| {
        let wx = &wx;
        async move { errcode(&wx.post_json(path, &[], &body).await) }
    };
    let full = |appid: &str, secret: &str, ticket: serde_json::Value| json!({"component_appid": appid, "component_appsecret": secret, "component_verify_ticket": ticket});
    assert_eq!(
        call(json!({"component_appsecret": COMPONENT_SECRET})).await,
        41002
    );
    assert_eq!(
        call(full("wxNope", COMPONENT_SECRET, json!(ticket))).await,
        61011
    );
    assert_eq!(call(json!({"component_appid": COMPONENT})).await, 41004);
    assert_eq!(call(full(COMPONENT, "wrong", json!(ticket))).await, 40125);
    assert_eq!(
        call(full(COMPONENT, COMPONENT_SECRET, json!(null))).await,
        61006
    );
    assert_eq!(
        call(full(COMPONENT, COMPONENT_SECRET, json!("ticket@@@x"))).await,
        61006
    );
    let resp = wx
        .http
        .post(wx.url(path))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(&resp.json().await.unwrap()), 47001);
    let (status, v) = wx.get(path, &[]).await;
    assert_eq!((status.as_u16(), errcode(&v)), (200, 43002));

    let token = wx.component_token().await;
    let api = |t: &str, body: serde_json::Value| {
        let (wx, t) = (&wx, t.to_owned());
        async move {
            errcode(
                &wx.post_json(
                    "/cgi-bin/component/api_create_preauthcode",
                    &[("component_access_token", t.as_str())],
                    &body,
                )
                .await,
            )
        }
    };
    let mine = json!({"component_appid": COMPONENT});
    assert_eq!(api("", mine.clone()).await, 41001);
    assert_eq!(api("bogus", mine.clone()).await, 40001);
    assert_eq!(
        api(&wx.fetch().await, mine.clone()).await,
        61014,
        "an app token"
    );
    assert_eq!(api(&token, json!({})).await, 41002);
    assert_eq!(
        api(&token, json!({"component_appid": "wxOther"})).await,
        61011
    );
    tokio::time::sleep(ms(350)).await;
    assert_eq!(api(&token, mine).await, 42001);
    let c = wx.sim.stats().components[COMPONENT].clone();
    assert_eq!(c.failed(endpoint::COMPONENT_TOKEN, "61006"), 2);
    assert_eq!(c.failed(endpoint::CREATE_PREAUTHCODE, "61014"), 1);
    assert_eq!(c.token_quota_used_today, 1, "refused calls use no quota");
}

#[tokio::test]
async fn component_token_daily_and_minute_limits() {
    let wx = start(
        component_config(None)
            .component_token_per_minute(2)
            .component_token_daily_quota(3),
    )
    .await;
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    for expected in [0, 0, 45011] {
        assert_eq!(errcode(&wx.component_token_with(&ticket).await), expected);
    }
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(
        (c.max_token_calls_per_minute, c.token_quota_used_today),
        (2, 2)
    );
    let wx = start(component_config(None).component_token_daily_quota(1)).await;
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), 0);
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), 45009);
}

#[tokio::test]
async fn start_push_ticket_mints_a_ticket_and_the_two_latest_are_accepted() {
    let wx = start(component_config(None)).await;
    let first = wx.sim.verify_ticket(COMPONENT).unwrap();
    let path = "/cgi-bin/component/api_start_push_ticket";
    let body = json!({"component_appid": COMPONENT, "component_secret": COMPONENT_SECRET});
    let v = wx.post_json(path, &[], &body).await;
    assert_eq!(v, json!({"errcode": 0, "errmsg": "ok"}));
    poll_until(secs(5), "a new ticket", || async {
        wx.sim.verify_ticket(COMPONENT).unwrap() != first
    })
    .await;
    assert_eq!(
        errcode(&wx.component_token_with(&first).await),
        0,
        "the previous one"
    );
    wx.sim.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(
        errcode(&wx.component_token_with(&first).await),
        61006,
        "two newer now"
    );
    let bad = json!({"component_appid": COMPONENT, "component_secret": "wrong"});
    assert_eq!(errcode(&wx.post_json(path, &[], &bad).await), 40125);
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(c.verify_tickets_issued, 3);
    assert_eq!(c.ok(endpoint::START_PUSH_TICKET), 1);
    assert!(c.pushes.is_empty(), "no event URL: nothing sent");
}

#[tokio::test]
async fn verify_ticket_expires_with_61005() {
    let wx = start(component_config(None).verify_ticket_ttl(ms(200))).await;
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    tokio::time::sleep(ms(250)).await;
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), 61005);
}

#[tokio::test]
async fn faults_apply_to_component_calls_and_garbage_still_issues() {
    let wx = start(component_config(None)).await;
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    let faults = |f: Faults| Faults {
        appid: Some(COMPONENT.to_owned()),
        remaining: Some(1),
        ..f
    };
    wx.sim.set_faults(faults(Faults {
        busy_rate: 1.0,
        ..Faults::none()
    }));
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), -1);
    wx.sim.set_faults(faults(Faults {
        http_502_rate: 1.0,
        ..Faults::none()
    }));
    let resp = wx
        .http
        .post(wx.url("/cgi-bin/component/api_component_token"))
        .body(json!({"component_appid": COMPONENT}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    wx.sim.set_faults(faults(Faults {
        garbage_rate: 1.0,
        ..Faults::none()
    }));
    let resp = wx
        .http
        .post(wx.url("/cgi-bin/component/api_component_token"))
        .body(json!({"component_appid": COMPONENT, "component_appsecret": COMPONENT_SECRET, "component_verify_ticket": ticket}).to_string())
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(
        c.issued.len(),
        1,
        "garbage: the token was issued, the reply lost"
    );
    assert_eq!(c.failed(endpoint::COMPONENT_TOKEN, "garbage"), 1);
    assert_eq!(c.failed(endpoint::COMPONENT_TOKEN, "-1"), 1);
    assert_eq!(c.failed(endpoint::COMPONENT_TOKEN, "http_502"), 1);
    assert_eq!(c.ok(endpoint::COMPONENT_TOKEN), 0);
}

#[tokio::test]
async fn concurrent_component_token_fetches_are_counted() {
    let wx = start(component_config(None)).await;
    wx.sim.set_faults(Faults {
        delay: Some(ms(300)),
        ..Faults::none()
    });
    let ticket = wx.sim.verify_ticket(COMPONENT).unwrap();
    let replies = join_all((0..4).map(|_| wx.component_token_with(&ticket))).await;
    assert!(replies.iter().all(|v| errcode(v) == 0));
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(
        (c.max_concurrent_token_fetches, c.concurrent_token_fetches),
        (4, 0)
    );
}
