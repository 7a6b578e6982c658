//! Every error code the simulator produces, each by its own case.

use serde_json::{Value, json};

use crate::helpers::*;

/// Query parameters of one case.
type Query<'a> = &'a [(&'a str, &'a str)];

fn assert_err(v: &Value, code: i64, msg_start: &str) {
    assert_eq!(errcode(v), code, "{v}");
    let msg = v["errmsg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(msg_start),
        "{msg:?} should start with {msg_start:?}"
    );
    assert!(
        msg.contains(" rid: "),
        "WeChat appends a request id: {msg:?}"
    );
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(2),
        "only errcode + errmsg"
    );
}

#[tokio::test]
async fn token_endpoint_error_codes_40002_41002_41004_40013_40125() {
    let wx = start(config()).await;
    let cases: [(Query<'_>, i64, &str); 7] = [
        (&[], 40002, "invalid grant_type"),
        (
            &[
                ("grant_type", "password"),
                ("appid", APP),
                ("secret", SECRET),
            ],
            40002,
            "invalid grant_type",
        ),
        (
            &[("grant_type", "client_credential"), ("secret", SECRET)],
            41002,
            "appid missing",
        ),
        (
            &[
                ("grant_type", "client_credential"),
                ("appid", ""),
                ("secret", SECRET),
            ],
            41002,
            "appid missing",
        ),
        (
            &[("grant_type", "client_credential"), ("appid", APP)],
            41004,
            "appsecret missing",
        ),
        (
            &[
                ("grant_type", "client_credential"),
                ("appid", "wxnope"),
                ("secret", SECRET),
            ],
            40013,
            "invalid appid",
        ),
        (
            &[
                ("grant_type", "client_credential"),
                ("appid", APP),
                ("secret", SECRET_B),
            ],
            40125,
            "invalid appsecret",
        ),
    ];
    for (query, code, msg) in cases {
        let (status, v) = wx.get("/cgi-bin/token", query).await;
        assert_eq!(status, 200, "WeChat errors are HTTP 200");
        assert_err(&v, code, msg);
    }
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.quota_used_today, 0, "failed calls use no quota");
    assert_eq!(app.fetch_failed.get("40125"), Some(&1));
    assert_eq!(
        app.fetch_calls, 3,
        "calls naming APP: the 40002, 41004 and 40125"
    );
}

#[tokio::test]
async fn token_daily_quota_gives_45009_and_resets_on_clear_quota() {
    let wx = start(config().daily_quota(3)).await;
    for _ in 0..3 {
        wx.fetch().await;
    }
    // A wrong secret does not reach the quota check and uses nothing.
    assert_eq!(errcode(&wx.token(APP, "wrong").await), 40125);
    assert_err(
        &wx.token(APP, SECRET).await,
        45009,
        "reach max api daily quota limit",
    );
    assert_eq!(
        errcode(&wx.token(APP_B, SECRET_B).await),
        0,
        "quota is per app"
    );
    assert_eq!(wx.sim.stats().app(APP).unwrap().quota_used_today, 3);
    assert_eq!(
        wx.sim.external_refresh(APP),
        None,
        "external calls hit it too"
    );

    let resp = wx
        .http
        .post(wx.url("/__admin/clear_quota"))
        .query(&[("appid", APP)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 0);
    assert_eq!(wx.sim.stats().app(APP).unwrap().quota_used_today, 1);
}

#[tokio::test]
async fn stable_endpoint_error_codes_43002_47001_40002_41002_41004_40013_40125() {
    let wx = start(config()).await;
    let (status, v) = wx.get("/cgi-bin/stable_token", &[("appid", APP)]).await;
    assert_eq!(status, 200);
    assert_err(&v, 43002, "require POST method");

    assert_err(
        &wx.stable_raw("{not json").await,
        47001,
        "data format error",
    );
    assert_err(&wx.stable_raw("").await, 47001, "data format error");
    let bad_type = json!({"grant_type": "client_credential", "appid": APP,
        "secret": SECRET, "force_refresh": "yes"});
    assert_err(
        &wx.stable_raw(bad_type.to_string()).await,
        47001,
        "data format error",
    );

    let cases = [
        (
            json!({"appid": APP, "secret": SECRET}),
            40002,
            "invalid grant_type",
        ),
        (
            json!({"grant_type": "client_credential", "secret": SECRET}),
            41002,
            "appid missing",
        ),
        (
            json!({"grant_type": "client_credential", "appid": APP}),
            41004,
            "appsecret missing",
        ),
        (
            json!({"grant_type": "client_credential", "appid": "wxnope", "secret": SECRET}),
            40013,
            "invalid appid",
        ),
        (
            json!({"grant_type": "client_credential", "appid": APP, "secret": "nope"}),
            40125,
            "invalid appsecret",
        ),
    ];
    for (body, code, msg) in cases {
        assert_err(&wx.stable_raw(body.to_string()).await, code, msg);
    }
}

#[tokio::test]
async fn stable_quotas_give_45009_daily_and_45011_per_minute() {
    let wx = start(config().stable_per_minute(3)).await;
    for _ in 0..3 {
        assert_eq!(errcode(&wx.stable(false).await), 0);
    }
    assert_err(
        &wx.stable(false).await,
        45011,
        "api minute-quota reach limit",
    );

    let wx = start(config().stable_daily_quota(2)).await;
    for _ in 0..2 {
        assert_eq!(errcode(&wx.stable(false).await), 0);
    }
    assert_err(
        &wx.stable(false).await,
        45009,
        "reach max api daily quota limit",
    );
    assert_eq!(wx.sim.stats().app(APP).unwrap().stable_quota_used_today, 2);
}

#[tokio::test]
async fn use_endpoint_41001_40001_42001() {
    let wx = start(config().token_ttl(ms(1200)).overlap(ms(200))).await;
    let (status, v) = wx.get("/cgi-bin/getcallbackip", &[]).await;
    assert_eq!(status, 200);
    assert_err(&v, 41001, "access_token missing");
    let (_, v) = wx
        .get(
            "/cgi-bin/getcallbackip",
            &[("access_token", "never-issued")],
        )
        .await;
    assert_err(
        &v,
        40001,
        "invalid credential, access_token is invalid or not latest",
    );
    let token = wx.fetch().await;
    let (_, v) = wx
        .get("/cgi-bin/getcallbackip", &[("access_token", &token)])
        .await;
    let ips = v["ip_list"].as_array().expect("ip_list");
    assert!(!ips.is_empty());
    poll_until(secs(4), "expiry", || async {
        wx.use_token(&token).await == 42001
    })
    .await;
    let (_, v) = wx
        .get("/cgi-bin/getcallbackip", &[("access_token", &token)])
        .await;
    assert_err(&v, 42001, "access_token expired");

    let stats = wx.sim.stats();
    assert_eq!(stats.uses_missing, 1);
    assert_eq!(stats.uses_unknown_token, 1);
    let app = stats.app(APP).unwrap();
    assert!(app.uses_ok >= 1, "polling counts a use per call");
    assert!(app.uses_expired >= 2);
}

#[tokio::test]
async fn wrong_method_is_43001_and_unknown_path_is_404_40066() {
    let wx = start(config()).await;
    let resp = wx.http.post(wx.url("/cgi-bin/token")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_err(&resp.json().await.unwrap(), 43001, "require GET method");

    let (status, v) = wx.get("/cgi-bin/no_such_api", &[]).await;
    assert_eq!(status, 404);
    assert_err(&v, 40066, "invalid url");
}
