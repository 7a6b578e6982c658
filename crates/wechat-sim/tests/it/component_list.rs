//! Open Platform `api_get_authorizer_list`: paging over the live
//! authorizers, `count` checks, and the recovery it allows when a
//! platform lost its refresh tokens (two lost replies under rotation).

use serde_json::{Value, json};
use wechat_sim::{Faults, endpoint};

use crate::helpers::*;

#[tokio::test]
async fn a_garbage_reply_still_rotates_and_the_list_recovers_the_refresh_token() {
    let wx = start(component_config(None)).await;
    let token = wx.component_token().await;
    let auth = wx
        .sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    wx.sim.set_faults(Faults {
        garbage_rate: 1.0,
        remaining: Some(2),
        appid: Some(AUTHORIZER.to_owned()),
        ..Faults::none()
    });
    // Two lost replies: the platform's r0 is now third most recent.
    for _ in 0..2 {
        let resp = wx
            .http
            .post(wx.url("/cgi-bin/component/api_authorizer_token"))
            .query(&[("component_access_token", token.as_str())])
            .body(json!({"component_appid": COMPONENT, "authorizer_appid": AUTHORIZER, "authorizer_refresh_token": auth.refresh_token}).to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.json::<Value>().await.is_err(), "truncated");
    }
    assert_eq!(
        errcode(
            &wx.authorizer_token(&token, AUTHORIZER, &auth.refresh_token)
                .await
        ),
        61023
    );
    let page = wx
        .component_api(
            "api_get_authorizer_list",
            &token,
            json!({"offset": 0, "count": 10}),
        )
        .await;
    assert_eq!(page["total_count"], 1, "{page}");
    let listed = page["list"][0]["refresh_token"].as_str().unwrap();
    assert_eq!(
        errcode(&wx.authorizer_token(&token, AUTHORIZER, listed).await),
        0
    );
    let one = wx.sim.authorizer_stats(COMPONENT, AUTHORIZER).unwrap();
    assert_eq!(one.fetch_failed.get("garbage"), Some(&2));
}

#[tokio::test]
async fn the_authorizer_list_pages_live_authorizers() {
    let wx = start(component_config(None)).await;
    let token = wx.component_token().await;
    assert_eq!(wx.sim.bulk_authorize(COMPONENT, 1203).unwrap(), 1203);
    wx.sim
        .authorize_quietly(COMPONENT, AUTHORIZER)
        .await
        .unwrap();
    wx.sim.unauthorize(COMPONENT, AUTHORIZER).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut offset = 0;
    loop {
        let body = json!({"offset": offset, "count": 500});
        let page = wx
            .component_api("api_get_authorizer_list", &token, body)
            .await;
        assert_eq!(page["total_count"], 1203, "{page}");
        let list = page["list"].as_array().unwrap();
        for item in list {
            assert!(
                item["auth_time"].is_u64() && item["refresh_token"].is_string(),
                "{item}"
            );
            seen.insert(item["authorizer_appid"].as_str().unwrap().to_owned());
        }
        if list.len() < 500 {
            break;
        }
        offset += 500;
    }
    assert_eq!(seen.len(), 1203);
    assert!(!seen.contains(AUTHORIZER), "revoked ones are not listed");
    for count in [json!(0), json!(501), json!("x")] {
        let v = wx
            .component_api(
                "api_get_authorizer_list",
                &token,
                json!({"offset": 0, "count": count}),
            )
            .await;
        assert_eq!(errcode(&v), 40097, "count {count}");
    }
    let v = wx
        .component_api(
            "api_get_authorizer_list",
            &token,
            json!({"offset": 0, "count": "2"}),
        )
        .await;
    assert_eq!(v["list"].as_array().unwrap().len(), 2);
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!((c.authorizers, c.authorizers_revoked), (1204, 1));
    assert_eq!(c.ok(endpoint::GET_AUTHORIZER_LIST), 4);
}
