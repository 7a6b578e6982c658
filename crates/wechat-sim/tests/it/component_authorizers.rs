//! Open Platform authorizers over HTTP: `api_query_auth`,
//! `api_authorizer_token` (rotation window, 61023 after a revoke, the
//! per-minute limit, concurrency) and authorizer tokens on the app
//! endpoints. Lists and recovery are in `component_list.rs`.

use futures_util::future::join_all;
use serde_json::{Value, json};
use wechat_sim::{Faults, TokenState, endpoint};

use crate::helpers::*;

fn refresh(v: &Value) -> String {
    v["authorizer_refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no authorizer_refresh_token in {v}"))
        .to_owned()
}

fn authorizer_access(v: &Value) -> String {
    v["authorizer_access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no authorizer_access_token in {v}"))
        .to_owned()
}

#[tokio::test]
async fn query_auth_exchanges_a_code_once_with_wechats_shape() {
    let wx = start(component_config(None).auth_code_ttl(ms(300))).await;
    let token = wx.component_token().await;
    let auth = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    let code = json!({"authorization_code": auth.authorization_code});
    let v = wx
        .component_api("api_query_auth", &token, code.clone())
        .await;
    let info = &v["authorization_info"];
    assert_eq!(info["authorizer_appid"], AUTHORIZER, "{v}");
    assert_eq!(expires_in(info), 7200);
    assert!(
        info["func_info"][0]["funcscope_category"]["id"].is_u64(),
        "{v}"
    );
    let access = authorizer_access(info);
    let r1 = refresh(info);
    assert!(r1.starts_with("refreshtoken@@@"));
    assert_ne!(r1, auth.refresh_token, "rotation: the exchange mints one");
    assert_eq!(wx.sim.token_state(&access), TokenState::Valid);
    let again = wx.component_api("api_query_auth", &token, code).await;
    assert_eq!(errcode(&again), 61009, "single use");
    let none = wx.component_api("api_query_auth", &token, json!({})).await;
    assert_eq!(errcode(&none), 61009);
    let late = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER_B)
        .await
        .unwrap();
    tokio::time::sleep(ms(350)).await;
    let v = wx
        .component_api(
            "api_query_auth",
            &token,
            json!({"authorization_code": late.authorization_code}),
        )
        .await;
    assert_eq!(errcode(&v), 61010);
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(
        (
            c.ok(endpoint::QUERY_AUTH),
            c.failed(endpoint::QUERY_AUTH, "61009")
        ),
        (1, 2)
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_the_two_latest_are_accepted_revoked_is_61023() {
    let wx = start(component_config(None).overlap(ms(200))).await;
    let token = wx.component_token().await;
    let auth = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    let r0 = auth.refresh_token;
    let v1 = wx.authorizer_token(&token, AUTHORIZER, &r0).await;
    assert_eq!(v1.as_object().unwrap().len(), 3, "{v1}");
    assert_eq!(expires_in(&v1), 7200);
    let (a1, r1) = (authorizer_access(&v1), refresh(&v1));
    // r0 is the previous refresh token: still accepted once more.
    let v2 = wx.authorizer_token(&token, AUTHORIZER, &r0).await;
    let (a2, r2) = (authorizer_access(&v2), refresh(&v2));
    assert_eq!(
        errcode(&wx.authorizer_token(&token, AUTHORIZER, &r0).await),
        61023
    );
    // a1 was superseded by a2: it works for the overlap, then 40001.
    assert_eq!(wx.use_token(&a1).await, 0);
    tokio::time::sleep(ms(250)).await;
    assert_eq!(wx.use_token(&a1).await, 40001);
    assert_eq!(wx.use_token(&a2).await, 0);
    let v3 = wx.authorizer_token(&token, AUTHORIZER, &r1).await;
    assert_eq!(errcode(&v3), 0, "r1 is the previous of r2");
    let r3 = refresh(&v3);
    assert_eq!(
        errcode(&wx.authorizer_token(&token, AUTHORIZER, &r2).await),
        0
    );

    let push = wx.sim.unauthorize(COMPONENT, AUTHORIZER).await.unwrap();
    assert_eq!(push, wechat_sim::PushOutcome::NoEventUrl);
    for r in [&r2, &r3] {
        assert_eq!(
            errcode(&wx.authorizer_token(&token, AUTHORIZER, r).await),
            61023
        );
    }
    assert_eq!(
        wx.use_token(&authorizer_access(&v3)).await,
        40001,
        "revoked at once"
    );
    assert_eq!(
        errcode(&wx.authorizer_token(&token, "wxNeverSeen", &r3).await),
        61023
    );
    let stats = wx.sim.stats();
    let c = &stats.components[COMPONENT];
    assert_eq!(c.refresh_token_refusals, 4);
    assert_eq!(c.authorizer_tokens_issued, 4);
    let one = &c.anomalies[AUTHORIZER];
    assert_eq!(one.refresh_token_refusals, 3);
    assert!(one.revoked);
    assert_eq!(one.fetch_calls, 7);
    assert_eq!(one.uses_ok, 2);
    assert_eq!(one.uses_invalid, 2);
    let over_http: wechat_sim::AuthorizerStats = wx
        .http
        .get(wx.url("/__admin/components/authorizer"))
        .query(&[
            ("component_appid", COMPONENT),
            ("authorizer_appid", AUTHORIZER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&over_http, one);
    assert_eq!(over_http.access_tokens.len(), 2, "the latest two");
}

#[tokio::test]
async fn without_rotation_the_same_refresh_token_comes_back() {
    let wx = start(component_config(None).refresh_token_rotation(false)).await;
    let token = wx.component_token().await;
    let auth = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    for _ in 0..3 {
        let v = wx
            .authorizer_token(&token, AUTHORIZER, &auth.refresh_token)
            .await;
        assert_eq!(refresh(&v), auth.refresh_token);
    }
    let (again, _) = wx
        .sim
        .update_authorize(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    assert_eq!(again.info_type, "updateauthorized");
    let v = wx
        .authorizer_token(&token, AUTHORIZER, &auth.refresh_token)
        .await;
    assert_eq!(errcode(&v), 61023, "re-authorization replaced it");
    let v = wx
        .authorizer_token(&token, AUTHORIZER, &again.refresh_token)
        .await;
    assert_eq!(errcode(&v), 0);
}

#[tokio::test]
async fn authorizer_calls_over_the_minute_limit_are_45011_per_component() {
    let wx = start(
        component_config(None)
            .authorizer_token_per_minute(3)
            .refresh_token_rotation(false),
    )
    .await;
    let token = wx.component_token().await;
    let a = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    let b = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER_B)
        .await
        .unwrap();
    for (appid, r) in [
        (AUTHORIZER, &a.refresh_token),
        (AUTHORIZER_B, &b.refresh_token),
        (AUTHORIZER, &a.refresh_token),
    ] {
        assert_eq!(errcode(&wx.authorizer_token(&token, appid, r).await), 0);
    }
    let v = wx
        .authorizer_token(&token, AUTHORIZER_B, &b.refresh_token)
        .await;
    assert_eq!(errcode(&v), 45011, "all authorizers share the window: {v}");
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(c.authorizer_minute_refusals, 1);
    assert_eq!(
        (
            c.authorizer_calls_last_minute,
            c.max_authorizer_calls_per_minute
        ),
        (3, 3)
    );
    assert_eq!(c.failed(endpoint::AUTHORIZER_TOKEN, "45011"), 1);
}

#[tokio::test]
async fn authorizer_tokens_work_on_app_endpoints_as_the_authorizers_own() {
    let wx = start(component_config(None).ticket_daily_quota(1)).await;
    let token = wx.component_token().await;
    let auth = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    let access = authorizer_access(
        &wx.authorizer_token(&token, AUTHORIZER, &auth.refresh_token)
            .await,
    );
    let (_, v) = wx
        .get("/cgi-bin/get_api_domain_ip", &[("access_token", &access)])
        .await;
    assert!(v["ip_list"].is_array(), "{v}");
    let t = wx.ticket(&access, "jsapi").await;
    assert_eq!(errcode(&t), 0, "{t}");
    let spent = wx.ticket(&access, "jsapi").await;
    assert_eq!(errcode(&spent), 45009, "the authorizer's own daily quota");
    assert_eq!(errcode(&wx.ticket(&access, "wx_card").await), 0);
    let v = wx
        .wecom("/cgi-bin/getcallbackip", &[("access_token", &access)])
        .await;
    assert_eq!(errcode(&v), 40014, "WeCom does not know it");
    assert!(wx.sim.revoke(&access));
    assert_eq!(wx.sim.token_state(&access), TokenState::Invalid);
    let one = wx.sim.authorizer_stats(COMPONENT, AUTHORIZER).unwrap();
    assert_eq!((one.uses_ok, one.domain_ip_calls), (3, 1));
    assert!(
        !wx.sim.stats().apps.contains_key(AUTHORIZER),
        "not an app entry"
    );
}

#[tokio::test]
async fn concurrent_fetches_of_one_authorizer_are_an_anomaly() {
    let wx = start(component_config(None).refresh_token_rotation(false)).await;
    let token = wx.component_token().await;
    let a = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    let b = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER_B)
        .await
        .unwrap();
    wx.sim.set_faults(Faults {
        delay: Some(ms(300)),
        ..Faults::none()
    });
    let calls = (0..3).map(|_| wx.authorizer_token(&token, AUTHORIZER, &a.refresh_token));
    let solo = wx.authorizer_token(&token, AUTHORIZER_B, &b.refresh_token);
    let (many, one) = tokio::join!(join_all(calls), solo);
    assert!(many.iter().chain([&one]).all(|v| errcode(v) == 0));
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(c.max_concurrent_authorizer_fetches, 4);
    assert_eq!(c.max_concurrent_fetches_per_authorizer, 3);
    assert_eq!(c.anomalies.len(), 1);
    assert_eq!(c.anomalies[AUTHORIZER].max_concurrent_fetches, 3);
    assert_eq!(c.concurrent_authorizer_fetches, 0);
    let solo = wx.sim.authorizer_stats(COMPONENT, AUTHORIZER_B).unwrap();
    assert_eq!(
        (solo.fetch_calls, solo.fetch_ok, solo.max_concurrent_fetches),
        (1, 1, 1)
    );
}
