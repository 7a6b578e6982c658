//! WeCom `gettoken` and `getticket`.

use wechat_sim::TokenSource;

use crate::helpers::*;

#[tokio::test]
async fn wecom_gettoken_same_token_while_valid_new_after_expiry_and_its_errors() {
    let wx = start(config().token_ttl(ms(1500)).overlap(ms(500))).await;
    let get = |corpid: &'static str, secret: &'static str| {
        let wx = &wx;
        async move {
            wx.get(
                "/cgi-bin/gettoken",
                &[("corpid", corpid), ("corpsecret", secret)],
            )
            .await
            .1
        }
    };
    let v = get(APP, SECRET).await;
    assert_eq!(errcode(&v), 0);
    assert_eq!(v["errmsg"], "ok");
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        4,
        "errcode, errmsg, access_token, expires_in: {keys:?}"
    );
    let first = access_token(&v);
    assert_eq!(
        access_token(&get(APP, SECRET).await),
        first,
        "same token while valid"
    );
    assert_eq!(wx.use_token(&first).await, 0);

    poll_until(secs(4), "WeCom token expiry", || async {
        wx.use_token(&first).await == 42001
    })
    .await;
    let second = access_token(&get(APP, SECRET).await);
    assert_ne!(second, first, "a new token after expiry");

    assert_eq!(errcode(&get("wwnope", SECRET).await), 40013);
    assert_eq!(
        errcode(&get(APP, "wrong").await),
        40001,
        "WeCom: bad secret is 40001"
    );
    assert_eq!(errcode(&get("", SECRET).await), 41002);
    assert_eq!(errcode(&get(APP, "").await), 41004);

    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.wecom_fetch_ok, 3);
    assert_eq!(app.fetch_failed.get("40001"), Some(&1));
    assert!(app.issued.iter().all(|t| t.source == TokenSource::Wecom));
    assert_eq!(app.issued.len(), 2);
}

#[tokio::test]
async fn getticket_checks_token_like_the_use_endpoint_and_type_40097() {
    let wx = start(config().token_ttl(secs(30)).overlap(secs(1))).await;
    let token = wx.fetch().await;
    for ty in ["jsapi", "wx_card"] {
        let (_, v) = wx
            .get(
                "/cgi-bin/ticket/getticket",
                &[("access_token", &token), ("type", ty)],
            )
            .await;
        assert_eq!(v["errcode"], 0, "{v}");
        assert_eq!(v["errmsg"], "ok");
        assert!(v["ticket"].as_str().is_some_and(|t| t.len() > 20));
        assert_eq!(expires_in(&v), 30);
    }
    let (_, v) = wx
        .get(
            "/cgi-bin/ticket/getticket",
            &[("access_token", &token), ("type", "nope")],
        )
        .await;
    assert_eq!(errcode(&v), 40097);
    let (_, v) = wx
        .get("/cgi-bin/ticket/getticket", &[("type", "jsapi")])
        .await;
    assert_eq!(errcode(&v), 41001);
    let (_, v) = wx
        .get(
            "/cgi-bin/ticket/getticket",
            &[("access_token", "bogus"), ("type", "jsapi")],
        )
        .await;
    assert_eq!(errcode(&v), 40001);
    assert_eq!(wx.sim.stats().app(APP).unwrap().tickets_ok, 2);
}
