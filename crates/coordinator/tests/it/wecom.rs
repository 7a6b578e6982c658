//! WeCom (issue 13): agents' tokens and tickets through the same protocol —
//! one gettoken per token life, an early revocation healed by a verified
//! report, the hourly ticket caps held fleet-wide per agent and per corp,
//! and WeCom's own compatible endpoints.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use wxtoken_client::keyspace::Invalidation;
use wxtoken_coordinator::http::router;

use crate::fleet::{AGENTS, API_KEY, CORPID, Fleet, SECRET, Settings};

fn wecom(tickets: &'static [&'static str]) -> Settings {
    Settings {
        token_ttl: Duration::from_secs(5),
        ticket_ttl: Duration::from_secs(3),
        wecom: Some(tickets),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_tokens_and_tickets_cost_one_call_per_life_within_the_caps() {
    let settings = wecom(&["jsapi", "agent_config"]);
    let ttl = settings.ticket_ttl;
    let fleet = Fleet::start(settings, 3).await;
    for (id, _, _) in AGENTS {
        fleet.wait_value(id, 1, Duration::from_secs(5)).await;
        fleet
            .wait_value(&format!("{id}/ticket:jsapi"), 1, Duration::from_secs(5))
            .await;
        fleet
            .wait_value(
                &format!("{id}/ticket:agent_config"),
                1,
                Duration::from_secs(5),
            )
            .await;
    }
    tokio::time::sleep(ttl * 3).await;
    let stats = fleet.sim.stats();
    let corp = stats.corp(CORPID).cloned().unwrap_or_default();
    eprintln!("corp: {corp:?}");
    for (n, (id, _, _)) in AGENTS.iter().enumerate() {
        let a = fleet.agent(id);
        eprintln!(
            "{id}: fetches {} ok {} tickets {:?} issued {:?}",
            a.fetch_calls, a.fetch_ok, a.ticket_calls, a.tickets_issued
        );
        // Three ticket lives (and the tokens' 5 s lives) in ~10 s.
        assert!(
            (2..=4).contains(&a.fetch_calls),
            "{id}: {} gettoken calls",
            a.fetch_calls
        );
        assert_eq!(a.fetch_calls, a.wecom_fetch_ok, "{id}");
        assert_eq!(a.max_concurrent_fetches, 1, "{id}");
        let agent_config = a.ticket_calls.get("agent_config").copied().unwrap_or(0);
        assert!(
            (3..=6).contains(&agent_config),
            "{id}: {agent_config} agent_config calls"
        );
        // The corp's one jsapi ticket: the first agent fetches it, the
        // other takes its value without a call.
        let jsapi = a.ticket_calls.get("jsapi").copied().unwrap_or(0);
        if n == 0 {
            assert!((3..=6).contains(&jsapi), "{id}: {jsapi} jsapi calls");
        } else {
            assert_eq!(
                jsapi, 0,
                "{id}: the follower fetched the corp's jsapi ticket"
            );
        }
        for (kind, calls) in [("jsapi", jsapi), ("agent_config", agent_config)] {
            if calls > 0 {
                assert_eq!(
                    a.max_concurrent_ticket_fetches.get(kind),
                    Some(&1),
                    "{id} {kind}"
                );
            }
        }
    }
    // Read at a ticket boundary the two may differ for a moment.
    let same = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let leader = fleet
                .wait_value("hr/ticket:jsapi", 1, Duration::from_secs(5))
                .await;
            let follower = fleet
                .wait_value("ops/ticket:jsapi", 1, Duration::from_secs(5))
                .await;
            leader.value == follower.value
        },
    )
    .await;
    assert!(same, "one corp, one jsapi ticket");
    assert!(
        corp.ticket_cap_refusals.values().all(|n| *n == 0),
        "{corp:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_revocation_is_healed_by_a_verified_report() {
    let settings = Settings {
        token_ttl: Duration::from_secs(60),
        ..wecom(&[])
    };
    let fleet = Fleet::start(settings, 2).await;
    let token = fleet.wait_value("hr", 1, Duration::from_secs(5)).await;
    let cref = fleet.cref("hr");
    // A report of a token WeCom accepts changes nothing.
    let client = fleet.replicas[0].client().clone();
    let first = client.report(&cref, &token.value).await.unwrap();
    assert!(matches!(first, Invalidation::Reported { .. }));
    let verdict = client
        .wait_for_verdict_on(&cref, token.generation, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(verdict, wxtoken_client::Verdict::Refused { .. }),
        "{verdict:?}"
    );
    assert_eq!(fleet.agent("hr").fetch_calls, 1);
    // WeCom revokes it early: the next report (once the check lapses) heals.
    assert!(fleet.sim.revoke(&token.value));
    let healed = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let _ = client.report(&cref, &token.value).await;
            fleet
                .store
                .read_value(&cref)
                .await
                .ok()
                .flatten()
                .is_some_and(|t| t.generation > token.generation)
        },
    )
    .await;
    assert!(healed, "the revoked WeCom token was replaced");
    let fresh = fleet.store.read_value(&cref).await.unwrap().unwrap();
    assert_ne!(fresh.value, token.value);
    assert_eq!(fleet.agent("hr").fetch_calls, 2, "one gettoken to heal");
    assert_eq!(
        fleet.agent("ops").fetch_calls,
        1,
        "the other agent untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_readers_reporting_a_revoked_wecom_token_cause_one_refetch() {
    let settings = Settings {
        token_ttl: Duration::from_secs(60),
        ..wecom(&[])
    };
    let fleet = Fleet::start(settings, 4).await;
    let token = fleet.wait_value("hr", 1, Duration::from_secs(5)).await;
    let cref = fleet.cref("hr");
    assert!(fleet.sim.revoke(&token.value), "WeCom cuts the token off");
    let reports =
        futures_util::future::join_all((0..100).map(|_| fleet.store.report(&cref, &token.value)))
            .await;
    assert!(
        reports.iter().all(|r| matches!(
            r,
            Ok(Invalidation::Reported { .. } | Invalidation::AlreadyReplaced { .. })
        )),
        "{reports:?}"
    );
    let fresh = fleet
        .wait_value("hr", token.generation + 1, Duration::from_secs(5))
        .await;
    assert_ne!(fresh.value, token.value);
    assert_eq!(
        fleet.sim.token_state(&fresh.value),
        wechat_sim::TokenState::Valid
    );
    // A window to catch any further call the reports might still cause.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hr = fleet.agent("hr");
    assert_eq!(hr.fetch_calls, 2, "one gettoken for 100 reports");
    assert_eq!(hr.domain_ip_calls, 1, "one check with WeCom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corp_cap_holds_across_agents_fleet_wide() {
    // The fleet's own cap (3 per corp per hour, per ticket type) is below
    // WeCom's: forcing refreshes on both agents stops at 3, and WeCom never
    // has to refuse one.
    let settings = Settings {
        token_ttl: Duration::from_secs(60),
        ticket_ttl: Duration::from_millis(300),
        extra_refresh: "wecom_ticket_hourly_per_corp = 3".into(),
        sim_wecom_caps: (100, 4),
        ..wecom(&["jsapi"])
    };
    let fleet = Fleet::start(settings, 2).await;
    for (id, _, _) in AGENTS {
        fleet
            .wait_value(&format!("{id}/ticket:jsapi"), 1, Duration::from_secs(5))
            .await;
    }
    // Tickets die every 300 ms: the fleet fetches until the corp's cap.
    let capped =
        wxtoken_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            fleet
                .sim
                .stats()
                .corp(CORPID)
                .and_then(|c| c.ticket_calls_last_hour.get("jsapi").copied())
                .unwrap_or(0)
                >= 3
        });
    assert!(capped, "the fleet fetched up to its cap");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let corp = fleet.sim.stats().corp(CORPID).cloned().unwrap_or_default();
    eprintln!("corp after 2 s more: {corp:?}");
    assert_eq!(
        corp.ticket_calls_last_hour.get("jsapi"),
        Some(&3),
        "{corp:?}"
    );
    assert!(
        corp.ticket_cap_refusals.values().all(|n| *n == 0),
        "WeCom refused: {corp:?}"
    );
    let status = fleet
        .store
        .status(&fleet.cref("hr/ticket:jsapi"), wxtoken_common::Window::Hour)
        .await
        .unwrap();
    let other = fleet
        .store
        .status(
            &fleet.cref("ops/ticket:jsapi"),
            wxtoken_common::Window::Hour,
        )
        .await
        .unwrap();
    let blamed = [status.last_error, other.last_error]
        .into_iter()
        .flatten()
        .any(|e| e.code == "corp_cap");
    assert!(blamed, "a refused fetch names the corp cap");
}

async fn get(r: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {API_KEY}"))
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_routes_and_compatible_endpoints_answer_from_shared_state() {
    let settings = Settings {
        token_ttl: Duration::from_secs(60),
        ticket_ttl: Duration::from_secs(60),
        ..wecom(&["jsapi", "agent_config"])
    };
    let fleet = Fleet::start(settings, 1).await;
    let token = fleet.wait_value("hr", 1, Duration::from_secs(5)).await;
    let corp_ticket = fleet
        .wait_value("hr/ticket:jsapi", 1, Duration::from_secs(5))
        .await;
    let agent_ticket = fleet
        .wait_value("hr/ticket:agent_config", 1, Duration::from_secs(5))
        .await;
    let r = router(
        fleet.replicas[0].http_state(&fleet.config(SECRET)).unwrap(),
        true,
    );
    let before = fleet.agent("hr");

    let (s, v) = get(&r, "/v1/apps/hr/access_token").await;
    assert_eq!(
        (s, v["access_token"].as_str()),
        (StatusCode::OK, Some(token.value.as_str()))
    );
    let (s, v) = get(&r, "/v1/apps/hr/tickets/agent_config").await;
    assert_eq!(
        (s, v["ticket"].as_str()),
        (StatusCode::OK, Some(agent_ticket.value.as_str()))
    );
    let (s, v) = get(&r, "/v1/apps/hr/tickets/wx_card").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("wrong_kind"))
    );

    let (hr_secret, ops_secret) = (AGENTS[0].2, AGENTS[1].2);
    let (_, v) = get(
        &r,
        &format!("/cgi-bin/gettoken?corpid={CORPID}&corpsecret={hr_secret}"),
    )
    .await;
    assert_eq!(
        (v["errcode"].as_i64(), v["access_token"].as_str()),
        (Some(0), Some(token.value.as_str())),
        "{v}"
    );
    let (_, v) = get(
        &r,
        &format!("/cgi-bin/gettoken?corpid={CORPID}&corpsecret={ops_secret}"),
    )
    .await;
    assert_ne!(
        v["access_token"].as_str(),
        Some(token.value.as_str()),
        "each agent its own token"
    );
    for (uri, code) in [
        (
            format!("/cgi-bin/gettoken?corpid={CORPID}&corpsecret=wrong"),
            40001,
        ),
        (
            "/cgi-bin/gettoken?corpid=ww_nope&corpsecret=x".to_owned(),
            40013,
        ),
        (format!("/cgi-bin/gettoken?corpsecret={hr_secret}"), 41002),
        (format!("/cgi-bin/gettoken?corpid={CORPID}"), 41004),
        (
            "/cgi-bin/get_jsapi_ticket?access_token=NOT_OURS".to_owned(),
            40014,
        ),
        ("/cgi-bin/get_jsapi_ticket".to_owned(), 41001),
        (
            format!(
                "/cgi-bin/ticket/get?access_token={}&type=jsapi",
                token.value
            ),
            40058,
        ),
    ] {
        let (_, v) = get(&r, &uri).await;
        assert_eq!(v["errcode"], code, "{uri}: {v}");
    }
    let (_, v) = get(
        &r,
        &format!("/cgi-bin/get_jsapi_ticket?access_token={}", token.value),
    )
    .await;
    assert_eq!(v["ticket"], corp_ticket.value.as_str(), "{v}");
    let (_, v) = get(
        &r,
        &format!(
            "/cgi-bin/ticket/get?access_token={}&type=agent_config",
            token.value
        ),
    )
    .await;
    assert_eq!(v["ticket"], agent_ticket.value.as_str(), "{v}");

    // wx.config and wx.agentConfig signatures WeCom's checker accepts.
    let url = "https://hr.example/app";
    let req = Request::post("/v1/apps/hr/jsapi_signature?agent_config=true")
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({ "url": url }).to_string()))
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["appId"], CORPID);
    assert_eq!(v["agent_config"]["agentid"], AGENTS[0].1);
    let check = |body: Value| {
        let url = format!("{}/__admin/jsapi_check", fleet.sim.base_url());
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let corp_ok = check(json!({
        "kind": "wecom_jsapi", "corpid": CORPID, "agentid": AGENTS[0].1, "url": url,
        "noncestr": v["nonceStr"], "timestamp": v["timestamp"], "signature": v["signature"],
    }))
    .await;
    assert_eq!(corp_ok["ok"], true, "{corp_ok}");
    let a = &v["agent_config"];
    let agent_ok = check(json!({
        "kind": "agent_config", "corpid": CORPID, "agentid": AGENTS[0].1, "url": url,
        "noncestr": a["nonceStr"], "timestamp": a["timestamp"], "signature": a["signature"],
    }))
    .await;
    assert_eq!(agent_ok["ok"], true, "{agent_ok}");
    let after = fleet.agent("hr");
    assert_eq!(
        after.fetch_calls, before.fetch_calls,
        "no upstream call to serve"
    );
    assert_eq!(after.ticket_calls, before.ticket_calls);
}
