//! WeCom `gettoken` under `/qyapi`: one token per (corp, secret), the same
//! while valid with the FULL `expires_in`, a new one after expiry or
//! revocation, WeCom's error codes and shapes, the root alias, and hosts
//! that do not know each other's tokens.

use serde_json::{Value, json};
use wechat_sim::{Faults, TokenSource};

use crate::helpers::*;

/// `errcode` + bare `errmsg`, nothing else (no WeChat rid).
fn assert_wecom_err(v: &Value, code: i64, msg: &str) {
    assert_eq!(v, &json!({"errcode": code, "errmsg": msg}));
}

#[tokio::test]
async fn same_token_while_valid_with_full_expires_in_then_new_after_expiry() {
    let wx = start(wecom_config().token_ttl(secs(3)).overlap(ms(500))).await;
    assert!(wx.wecom_base.ends_with("/qyapi") && wx.wecom_base.starts_with(&wx.base));
    let v = wx.wecom_token(AGENT_SECRET).await;
    assert_eq!(errcode(&v), 0);
    assert_eq!(v["errmsg"], "ok");
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        4,
        "errcode, errmsg, access_token, expires_in: {keys:?}"
    );
    assert_eq!(expires_in(&v), 3);
    let first = access_token(&v);

    tokio::time::sleep(ms(1100)).await;
    let v = wx.wecom_token(AGENT_SECRET).await;
    assert_eq!(access_token(&v), first, "same token while valid");
    assert_eq!(
        expires_in(&v),
        3,
        "the FULL life again, though ~1.9 s remain"
    );
    let other = wx.wecom_fetch(AGENT_B_SECRET).await;
    assert_ne!(other, first, "one token per (corp, secret)");

    poll_until(secs(5), "WeCom token expiry", || async {
        let v = wx
            .wecom("/cgi-bin/getcallbackip", &[("access_token", &first)])
            .await;
        errcode(&v) == 42001
    })
    .await;
    let second = wx.wecom_fetch(AGENT_SECRET).await;
    assert_ne!(second, first, "a new token after expiry");

    let stats = wx.sim.stats();
    let agent = stats.agent(CORP, Some(AGENT)).unwrap();
    assert_eq!((agent.fetch_calls, agent.wecom_fetch_ok), (3, 3));
    assert_eq!(agent.issued.len(), 2);
    assert!(agent.issued.iter().all(|t| t.source == TokenSource::Wecom));
    assert_eq!(
        agent.issued[1].issued_at_ms,
        agent.issued[0].superseded_at_ms.unwrap()
    );
    assert!(agent.uses_ok >= 1 && agent.uses_expired >= 1);
    assert_eq!(stats.corp(CORP).unwrap().fetch_calls, 4);
    assert_eq!(stats.apps[&agent_key(AGENT_B)].wecom_fetch_ok, 1);
}

#[tokio::test]
async fn revoked_token_is_40014_and_the_next_gettoken_issues_a_new_one() {
    let wx = start(wecom_config()).await;
    let token = wx.wecom_fetch(AGENT_SECRET).await;
    let resp = wx
        .http
        .post(wx.url("/__admin/revoke"))
        .query(&[("access_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v = wx
        .wecom("/cgi-bin/getcallbackip", &[("access_token", &token)])
        .await;
    assert_wecom_err(&v, 40014, "invalid access_token");
    let fresh = wx.wecom_fetch(AGENT_SECRET).await;
    assert_ne!(fresh, token);
    let v = wx
        .wecom("/cgi-bin/getcallbackip", &[("access_token", &fresh)])
        .await;
    assert_eq!(errcode(&v), 0);
    assert_eq!(v["errmsg"], "ok");
    assert!(v["ip_list"].as_array().is_some_and(|l| !l.is_empty()));
    let v = wx
        .wecom("/cgi-bin/get_api_domain_ip", &[("access_token", &fresh)])
        .await;
    assert!(
        v["ip_list"].as_array().is_some_and(|l| !l.is_empty()),
        "{v}"
    );
    let stats = wx.sim.stats();
    let agent = stats.agent(CORP, Some(AGENT)).unwrap();
    assert!(agent.issued[0].revoked_at_ms.is_some());
    assert_eq!(
        (agent.uses_invalid, agent.uses_ok, agent.domain_ip_calls),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn wecom_error_codes_and_shapes() {
    let wx = start(wecom_config()).await;
    let get = |corpid: &'static str, secret: &'static str| {
        let wx = &wx;
        async move {
            wx.wecom(
                "/cgi-bin/gettoken",
                &[("corpid", corpid), ("corpsecret", secret)],
            )
            .await
        }
    };
    assert_wecom_err(&get("", AGENT_SECRET).await, 41002, "corpid missing");
    assert_wecom_err(&get(CORP, "").await, 41004, "corpsecret missing");
    assert_wecom_err(&get("wwnope", AGENT_SECRET).await, 40013, "invalid corpid");
    assert_wecom_err(&get(APP, SECRET).await, 40013, "invalid corpid");
    assert_wecom_err(&get(CORP, "wrong").await, 40001, "invalid secret");

    for path in ["/cgi-bin/getcallbackip", "/cgi-bin/get_api_domain_ip"] {
        assert_wecom_err(&wx.wecom(path, &[]).await, 41001, "access_token missing");
        let app_token = wx.fetch().await;
        let v = wx.wecom(path, &[("access_token", &app_token)]).await;
        assert_wecom_err(&v, 40014, "invalid access_token");
    }
    let wecom = wx.wecom_fetch(AGENT_SECRET).await;
    assert_eq!(
        wx.use_token(&wecom).await,
        40001,
        "api.weixin.qq.com does not know WeCom tokens"
    );

    let stats = wx.sim.stats();
    let corp = stats.corp(CORP).unwrap();
    assert_eq!(corp.fetch_failed.get("40001"), Some(&1));
    assert_eq!(corp.fetch_failed.get("41004"), Some(&1));
    assert_eq!(corp.fetch_calls, 3, "the 41004, the 40001 and the success");
    assert!(
        stats
            .agent(CORP, Some(AGENT))
            .unwrap()
            .fetch_failed
            .is_empty()
    );
}

#[tokio::test]
async fn root_gettoken_is_an_alias_of_qyapi_gettoken() {
    let wx = start(wecom_config()).await;
    let token = wx.wecom_fetch(AGENT_SECRET).await;
    let (status, v) = wx
        .get(
            "/cgi-bin/gettoken",
            &[("corpid", CORP), ("corpsecret", AGENT_SECRET)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(access_token(&v), token, "same lineage, same token");
    let v = wx
        .wecom("/cgi-bin/getcallbackip", &[("access_token", &token)])
        .await;
    assert_eq!(errcode(&v), 0);
}

#[tokio::test]
async fn faults_apply_to_gettoken_filtered_by_corpid_in_wecom_shape() {
    let wx = start(wecom_config()).await;
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        appid: Some(CORP.to_owned()),
        ..Faults::none()
    });
    assert_wecom_err(&wx.wecom_token(AGENT_SECRET).await, -1, "system busy");
    assert_eq!(errcode(&wx.token(APP, SECRET).await), 0, "apps spared");
    wx.sim.set_faults(Faults::none());
    assert_eq!(errcode(&wx.wecom_token(AGENT_SECRET).await), 0);
    let stats = wx.sim.stats();
    let agent = stats.agent(CORP, Some(AGENT)).unwrap();
    assert_eq!(agent.fetch_failed.get("-1"), Some(&1));
    assert_eq!(stats.corp(CORP).unwrap().fetch_failed.get("-1"), Some(&1));
    assert_eq!(agent.max_concurrent_fetches, 1);
}
