//! WeCom tickets: `get_jsapi_ticket` (one per corp) and
//! `ticket/get?type=agent_config` (one per agent), the same while valid with
//! the full `expires_in`, WeCom's token codes, and the sliding hourly caps
//! per agent and per corp.

use serde_json::{Value, json};
use wechat_sim::Faults;

use crate::helpers::*;

async fn corp_ticket(wx: &Wx, token: &str) -> Value {
    wx.wecom("/cgi-bin/get_jsapi_ticket", &[("access_token", token)])
        .await
}

async fn agent_ticket(wx: &Wx, token: &str) -> Value {
    wx.wecom(
        "/cgi-bin/ticket/get",
        &[("access_token", token), ("type", "agent_config")],
    )
    .await
}

#[tokio::test]
async fn corp_jsapi_ticket_is_shared_agent_config_is_per_agent_both_full_expires_in() {
    let wx = start(wecom_config().ticket_ttl(secs(2))).await;
    let a = wx.wecom_fetch(AGENT_SECRET).await;
    let b = wx.wecom_fetch(AGENT_B_SECRET).await;
    let v = corp_ticket(&wx, &a).await;
    assert_eq!((errcode(&v), v["errmsg"].as_str()), (0, Some("ok")), "{v}");
    assert_eq!(expires_in(&v), 2);
    let corp = ticket(&v);
    assert_eq!(ticket(&corp_ticket(&wx, &b).await), corp, "one per corp");
    let agent_a = ticket(&agent_ticket(&wx, &a).await);
    let agent_b = ticket(&agent_ticket(&wx, &b).await);
    assert!(agent_a != agent_b && agent_a != corp && agent_b != corp);

    tokio::time::sleep(ms(1100)).await;
    let v = agent_ticket(&wx, &a).await;
    assert_eq!((ticket(&v), expires_in(&v)), (agent_a.clone(), 2));
    tokio::time::sleep(ms(1000)).await;
    let v = corp_ticket(&wx, &b).await;
    assert_ne!(ticket(&v), corp, "new only after expiry");
    assert_eq!(expires_in(&v), 2);

    let stats = wx.sim.stats();
    let sa = stats.agent(CORP, Some(AGENT)).unwrap();
    let sb = stats.agent(CORP, Some(AGENT_B)).unwrap();
    assert_eq!(sa.tickets_issued.get("jsapi"), Some(&1));
    assert_eq!(
        sb.tickets_issued.get("jsapi"),
        Some(&1),
        "minted the second"
    );
    assert_eq!(sa.tickets_issued.get("agent_config"), Some(&1));
    assert_eq!(sa.ticket_calls.get("agent_config"), Some(&2));
    assert_eq!(sb.ticket_calls.get("jsapi"), Some(&2));
    assert_eq!(sa.tickets_ok + sb.tickets_ok, 6);
}

#[tokio::test]
async fn ticket_token_checks_and_type_40058_in_wecom_shape() {
    let wx = start(wecom_config().token_ttl(ms(1200)).overlap(ms(200))).await;
    let token = wx.wecom_fetch(AGENT_SECRET).await;
    let app_token = wx.fetch().await;
    for v in [
        wx.wecom("/cgi-bin/get_jsapi_ticket", &[]).await,
        wx.wecom("/cgi-bin/ticket/get", &[("type", "agent_config")])
            .await,
    ] {
        assert_eq!(
            v,
            json!({"errcode": 41001, "errmsg": "access_token missing"})
        );
    }
    assert_eq!(errcode(&corp_ticket(&wx, &app_token).await), 40014);
    assert_eq!(errcode(&agent_ticket(&wx, "bogus").await), 40014);
    let v = wx
        .wecom(
            "/cgi-bin/ticket/get",
            &[("access_token", token.as_str()), ("type", "jsapi")],
        )
        .await;
    assert_eq!(v, json!({"errcode": 40058, "errmsg": "invalid parameter"}));
    let stats = wx.sim.stats();
    let corp = stats.corp(CORP).unwrap();
    assert_eq!(
        corp.ticket_calls_last_hour.get("jsapi"),
        Some(&0),
        "only valid tokens count"
    );
    assert_eq!(corp.ticket_calls_last_hour.get("agent_config"), Some(&0));
    poll_until(secs(4), "token expiry", || async {
        errcode(&corp_ticket(&wx, &token).await) == 42001
    })
    .await;
    let stats = wx.sim.stats();
    let agent = stats.agent(CORP, Some(AGENT)).unwrap();
    assert!(agent.uses_expired >= 1 && agent.uses_invalid == 0);
}

#[tokio::test]
async fn sliding_caps_per_agent_and_per_corp_refuse_with_45009() {
    let window = secs(2);
    let wx = start(
        wecom_config()
            .wecom_ticket_agent_hourly(3)
            .wecom_ticket_corp_hourly(5)
            .wecom_ticket_window(window),
    )
    .await;
    let a = wx.wecom_fetch(AGENT_SECRET).await;
    let b = wx.wecom_fetch(AGENT_B_SECRET).await;
    let freq = json!({"errcode": 45009, "errmsg": "api freq out of limit"});
    for _ in 0..3 {
        assert_eq!(errcode(&corp_ticket(&wx, &a).await), 0);
    }
    assert_eq!(corp_ticket(&wx, &a).await, freq, "agent cap 3");
    for _ in 0..2 {
        assert_eq!(errcode(&corp_ticket(&wx, &b).await), 0);
    }
    assert_eq!(corp_ticket(&wx, &b).await, freq, "corp cap 5 across agents");
    // agent_config counts on its own windows.
    for _ in 0..3 {
        assert_eq!(errcode(&agent_ticket(&wx, &b).await), 0);
    }
    assert_eq!(agent_ticket(&wx, &b).await, freq);
    assert_eq!(errcode(&agent_ticket(&wx, &a).await), 0);

    let stats = wx.sim.stats();
    let corp = stats.corp(CORP).unwrap();
    assert_eq!((corp.agent_hourly_cap, corp.corp_hourly_cap), (3, 5));
    assert_eq!(corp.ticket_calls_last_hour.get("jsapi"), Some(&5));
    assert_eq!(corp.max_ticket_calls_per_hour.get("jsapi"), Some(&5));
    assert_eq!(corp.max_ticket_calls_per_hour.get("agent_config"), Some(&4));
    assert_eq!(corp.ticket_cap_refusals.get("jsapi"), Some(&2));
    assert_eq!(corp.ticket_cap_refusals.get("agent_config"), Some(&1));
    let agent_a = &corp.agents[&AGENT.to_string()];
    let agent_b = &corp.agents[&AGENT_B.to_string()];
    assert_eq!(agent_a.max_ticket_calls_per_hour.get("jsapi"), Some(&3));
    assert_eq!(agent_a.ticket_cap_refusals.get("jsapi"), Some(&1));
    assert_eq!(agent_b.ticket_calls_last_hour.get("jsapi"), Some(&2));
    assert_eq!(agent_b.ticket_cap_refusals.get("jsapi"), Some(&1));
    assert_eq!(agent_b.ticket_cap_refusals.get("agent_config"), Some(&1));
    let sa = stats.agent(CORP, Some(AGENT)).unwrap();
    assert_eq!(
        sa.ticket_calls.get("jsapi"),
        Some(&4),
        "refused calls arrive too"
    );
    assert_eq!(sa.ticket_failed.get("45009"), Some(&1));

    // The window slides: once the first calls are older than it, room again.
    let waited = poll_until(secs(5), "the window to slide", || async {
        errcode(&corp_ticket(&wx, &a).await) == 0
    })
    .await;
    assert!(
        waited >= ms(1500),
        "no room before the window moved ({waited:?})"
    );
    let stats = wx.sim.stats();
    let corp = stats.corp(CORP).unwrap();
    assert!(
        corp.max_ticket_calls_per_hour["jsapi"] <= 5,
        "caps never exceeded"
    );
    assert!(corp.agents[&AGENT.to_string()].max_ticket_calls_per_hour["jsapi"] <= 3);
}

#[tokio::test]
async fn faults_apply_to_wecom_ticket_calls_filtered_by_corpid() {
    let wx = start(wecom_config()).await;
    let token = wx.wecom_fetch(AGENT_SECRET).await;
    let app_token = wx.fetch().await;
    wx.sim.set_faults(Faults {
        busy_rate: 1.0,
        appid: Some(CORP.to_owned()),
        ..Faults::none()
    });
    assert_eq!(
        corp_ticket(&wx, &token).await,
        json!({"errcode": -1, "errmsg": "system busy"})
    );
    assert_eq!(
        errcode(&wx.ticket(&app_token, "jsapi").await),
        0,
        "apps spared"
    );
    let stats = wx.sim.stats();
    let agent = stats.agent(CORP, Some(AGENT)).unwrap();
    assert_eq!(agent.ticket_failed.get("-1"), Some(&1));
    assert_eq!(agent.ticket_calls.get("jsapi"), Some(&1));
    assert_eq!(
        stats
            .corp(CORP)
            .unwrap()
            .ticket_calls_last_hour
            .get("jsapi"),
        Some(&0),
        "a busy call uses no budget"
    );
}
