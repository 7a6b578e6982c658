//! `POST /__admin/jsapi_check`: what the browser's `wx.config` /
//! `wx.agentConfig` would verify, for app and WeCom tickets.

use serde_json::{Value, json};
use wechat_sim::jsapi_signature;

use crate::helpers::*;

const NONCE: &str = "Wm3WZYTPz0wzccnW";
const TS: &str = "1414587457";
const PAGE: &str = "https://shop.example.com/pay?order=42";

fn app_check(kind: &str, url: &str, signature: &str) -> Value {
    json!({
        "kind": kind, "appid": APP, "url": url,
        "noncestr": NONCE, "timestamp": TS, "signature": signature,
    })
}

fn assert_refused(v: &Value, reason: &str) {
    assert_eq!(v, &json!({"ok": false, "reason": reason}));
}

#[tokio::test]
async fn accepts_the_right_signature_and_refuses_a_wrong_one() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    let t = ticket(&wx.ticket(&token, "jsapi").await);
    let good = jsapi_signature(&t, NONCE, TS, PAGE);
    assert_eq!(good.len(), 40);
    assert_eq!(
        wx.jsapi_check(&app_check("jsapi", PAGE, &good)).await,
        json!({"ok": true})
    );

    let bad = jsapi_signature(&t, "another-nonce", TS, PAGE);
    assert_refused(
        &wx.jsapi_check(&app_check("jsapi", PAGE, &bad)).await,
        "signature mismatch",
    );
    let upper = good.to_uppercase();
    assert_refused(
        &wx.jsapi_check(&app_check("jsapi", PAGE, &upper)).await,
        "signature mismatch",
    );
    // wx_card has its own ticket: none yet.
    assert_refused(
        &wx.jsapi_check(&app_check("wx_card", PAGE, &good)).await,
        "no ticket issued",
    );
    let card = ticket(&wx.ticket(&token, "wx_card").await);
    let card_sig = jsapi_signature(&card, NONCE, TS, PAGE);
    assert_eq!(
        wx.jsapi_check(&app_check("wx_card", PAGE, &card_sig)).await["ok"],
        true
    );
    assert_refused(
        &wx.jsapi_check(&app_check("jsapi", PAGE, &card_sig)).await,
        "signature mismatch",
    );

    let mut unknown = app_check("jsapi", PAGE, &good);
    unknown["appid"] = json!("wxnope");
    assert_eq!(wx.jsapi_check(&unknown).await["ok"], false);

    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!((app.signatures_ok, app.signatures_bad), (2, 4));
}

#[tokio::test]
async fn the_fragment_is_not_signed() {
    let wx = start(config()).await;
    let t = ticket(&wx.ticket(&wx.fetch().await, "jsapi").await);
    let with_fragment = format!("{PAGE}#/cart?step=2");
    let right = jsapi_signature(&t, NONCE, TS, PAGE);
    assert_eq!(
        wx.jsapi_check(&app_check("jsapi", &with_fragment, &right))
            .await,
        json!({"ok": true}),
        "the browser's url has the fragment; the signature does not"
    );
    let wrong = jsapi_signature(&t, NONCE, TS, &with_fragment);
    assert_refused(
        &wx.jsapi_check(&app_check("jsapi", &with_fragment, &wrong))
            .await,
        "signature mismatch",
    );
}

#[tokio::test]
async fn an_expired_ticket_signs_nothing() {
    let wx = start(config().ticket_ttl(secs(1))).await;
    let t = ticket(&wx.ticket(&wx.fetch().await, "jsapi").await);
    let sig = jsapi_signature(&t, NONCE, TS, PAGE);
    assert_eq!(
        wx.jsapi_check(&app_check("jsapi", PAGE, &sig)).await["ok"],
        true
    );
    tokio::time::sleep(ms(1100)).await;
    assert_refused(
        &wx.jsapi_check(&app_check("jsapi", PAGE, &sig)).await,
        "ticket expired",
    );
}

#[tokio::test]
async fn wecom_jsapi_uses_the_corp_ticket_and_agent_config_the_agents() {
    let wx = start(wecom_config()).await;
    let token = wx.wecom_fetch(AGENT_SECRET).await;
    let corp_ticket = ticket(
        &wx.wecom("/cgi-bin/get_jsapi_ticket", &[("access_token", &token)])
            .await,
    );
    let agent_ticket = ticket(
        &wx.wecom(
            "/cgi-bin/ticket/get",
            &[("access_token", token.as_str()), ("type", "agent_config")],
        )
        .await,
    );
    let check = |kind: &str, agentid: Value, signature: &str| {
        json!({
            "kind": kind, "corpid": CORP, "agentid": agentid, "url": PAGE,
            "noncestr": NONCE, "timestamp": 1414587457, "signature": signature,
        })
    };
    let corp_sig = jsapi_signature(&corp_ticket, NONCE, TS, PAGE);
    let agent_sig = jsapi_signature(&agent_ticket, NONCE, TS, PAGE);
    let ok = json!({"ok": true});
    assert_eq!(
        wx.jsapi_check(&check("wecom_jsapi", json!(AGENT), &corp_sig))
            .await,
        ok
    );
    assert_eq!(
        wx.jsapi_check(&check("wecom_jsapi", json!(AGENT_B.to_string()), &corp_sig))
            .await,
        ok,
        "the corp ticket signs for every agent"
    );
    assert_eq!(
        wx.jsapi_check(&check("agent_config", json!(AGENT), &agent_sig))
            .await,
        ok
    );
    assert_refused(
        &wx.jsapi_check(&check("agent_config", json!(AGENT), &corp_sig))
            .await,
        "signature mismatch",
    );
    assert_refused(
        &wx.jsapi_check(&check("agent_config", json!(AGENT_B), &agent_sig))
            .await,
        "no ticket issued",
    );
    let stats = wx.sim.stats();
    let a = stats.agent(CORP, Some(AGENT)).unwrap();
    let b = stats.agent(CORP, Some(AGENT_B)).unwrap();
    assert_eq!((a.signatures_ok, a.signatures_bad), (2, 1));
    assert_eq!((b.signatures_ok, b.signatures_bad), (1, 1));
}

#[tokio::test]
async fn malformed_checks_are_400() {
    let wx = start(wecom_config()).await;
    for body in [
        "nope".to_owned(),
        json!({"kind": "jsapi", "url": PAGE, "noncestr": NONCE, "timestamp": TS, "signature": "x"})
            .to_string(),
        json!({"kind": "nope", "appid": APP, "url": PAGE, "noncestr": NONCE, "timestamp": TS, "signature": "x"})
            .to_string(),
        json!({"kind": "agent_config", "corpid": CORP, "agentid": "abc", "url": PAGE, "noncestr": NONCE, "timestamp": TS, "signature": "x"})
            .to_string(),
    ] {
        let resp = wx
            .http
            .post(wx.url("/__admin/jsapi_check"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
    }
}
