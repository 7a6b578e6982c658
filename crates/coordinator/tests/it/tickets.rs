//! JS-SDK tickets of an app (issue 13): one getticket per ticket lifetime
//! for the whole fleet, never a ticket past its life, reports judged by
//! fetching again, a rejected parent token healed with one extra call, the
//! HTTP routes and a signature WeChat's checker accepts.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use wxtoken_client::keyspace::Invalidation;
use wxtoken_coordinator::http::router;

use crate::fleet::{API_KEY, APPID, Fleet, ID, SECRET, Settings};

fn with_tickets() -> Settings {
    Settings {
        token_ttl: Duration::from_secs(6),
        ticket_ttl: Duration::from_secs(3),
        tickets: &["jsapi", "wx_card"],
        ..Settings::default()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_fetch_each_ticket_once_per_life_and_never_hand_out_a_dead_one() {
    let settings = with_tickets();
    let ttl = settings.ticket_ttl;
    let fleet = Fleet::start(settings, 3).await;
    fleet
        .wait_value("shop/ticket:jsapi", 1, Duration::from_secs(5))
        .await;
    fleet
        .wait_value("shop/ticket:wx_card", 1, Duration::from_secs(5))
        .await;
    let started = Instant::now();
    let (mut reads, mut stale) = (0, 0);
    while started.elapsed() < ttl * 3 {
        for name in ["shop/ticket:jsapi", "shop/ticket:wx_card"] {
            let Ok(Some(t)) = fleet.store.read_value(&fleet.cref(name)).await else {
                continue; // between a ticket's end and its successor
            };
            reads += 1;
            let now = unix_ms();
            let issued = fleet.app().issued_tickets;
            let known = issued.iter().find(|i| i.ticket == t.value);
            match known {
                Some(i) if now < i.expires_at_ms => {}
                other => {
                    stale += 1;
                    eprintln!("stale {name}: {other:?} at {now}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let app = fleet.app();
    eprintln!(
        "tickets over {:?}: calls {:?}, issued {:?}, max concurrent {:?}, {reads} reads, {stale} stale",
        started.elapsed(),
        app.ticket_calls,
        app.tickets_issued,
        app.max_concurrent_ticket_fetches
    );
    assert_eq!(stale, 0, "a ticket was handed out past its life");
    for kind in ["jsapi", "wx_card"] {
        let calls = app.ticket_calls.get(kind).copied().unwrap_or(0);
        let issued = app.tickets_issued.get(kind).copied().unwrap_or(0);
        assert_eq!(
            calls, issued,
            "{kind}: every getticket brought a new ticket"
        );
        assert!(
            (3..=5).contains(&issued),
            "{kind}: {issued} tickets in 3 lives"
        );
        assert_eq!(
            app.max_concurrent_ticket_fetches.get(kind),
            Some(&1),
            "{kind}"
        );
    }
    assert!(
        app.fetch_calls <= 3,
        "ticket work cost no token fetches: {}",
        app.fetch_calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_a_valid_ticket_costs_one_refetch_and_keeps_it() {
    let settings = Settings {
        ticket_ttl: Duration::from_secs(30),
        token_ttl: Duration::from_secs(30),
        ..with_tickets()
    };
    let fleet = Fleet::start(settings, 2).await;
    let ticket = fleet
        .wait_value("shop/ticket:jsapi", 1, Duration::from_secs(5))
        .await;
    let cref = fleet.cref("shop/ticket:jsapi");
    let client = fleet.replicas[0].client().clone();
    let reported = client.report(&cref, &ticket.value).await.unwrap();
    assert!(
        matches!(reported, Invalidation::Reported { .. }),
        "{reported:?}"
    );
    let verdict = client
        .wait_for_verdict_on(&cref, ticket.generation, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(&verdict, wxtoken_client::Verdict::Refused { reason, .. } if reason == "token_valid"),
        "{verdict:?}"
    );
    let again = fleet.store.read_value(&cref).await.unwrap().unwrap();
    assert_eq!(
        (again.value, again.generation),
        (ticket.value, ticket.generation)
    );
    let app = fleet.app();
    assert_eq!(
        app.ticket_calls.get("jsapi"),
        Some(&2),
        "one refetch to check"
    );
    assert_eq!(app.tickets_issued.get("jsapi"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_readers_reporting_a_ticket_at_once_cause_one_refetch() {
    let settings = Settings {
        ticket_ttl: Duration::from_secs(30),
        token_ttl: Duration::from_secs(30),
        ..with_tickets()
    };
    let fleet = Fleet::start(settings, 4).await;
    let ticket = fleet
        .wait_value("shop/ticket:jsapi", 1, Duration::from_secs(5))
        .await;
    let cref = fleet.cref("shop/ticket:jsapi");
    let before = fleet.app();
    let reports =
        futures_util::future::join_all((0..100).map(|_| fleet.store.report(&cref, &ticket.value)))
            .await;
    assert!(reports.iter().all(Result::is_ok), "{reports:?}");
    // The verdict lands in the meta hash: from then on the report script
    // answers by itself.
    let answered = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            matches!(
                fleet.store.report(&cref, &ticket.value).await,
                Ok(Invalidation::TokenValid { .. })
            )
        },
    )
    .await;
    assert!(
        answered,
        "the fleet refused the reports: WeChat hands the ticket out"
    );
    // A window to catch any further call the reports might still cause.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = fleet.app();
    let calls = |a: &wechat_sim::AppStats| a.ticket_calls.get("jsapi").copied().unwrap_or(0);
    assert_eq!(
        calls(&after) - calls(&before),
        1,
        "one refetch for 100 reports"
    );
    assert_eq!(
        after.tickets_issued.get("jsapi"),
        Some(&1),
        "the ticket kept"
    );
    let kept = fleet.store.read_value(&cref).await.unwrap().unwrap();
    assert_eq!(
        (kept.value, kept.generation),
        (ticket.value, ticket.generation)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_token_rejected_mid_ticket_fetch_heals_with_one_extra_call() {
    let settings = Settings {
        ticket_ttl: Duration::from_secs(30),
        token_ttl: Duration::from_secs(30),
        ..with_tickets()
    };
    let fleet = Fleet::start(settings, 2).await;
    let ticket = fleet
        .wait_value("shop/ticket:jsapi", 1, Duration::from_secs(5))
        .await;
    let token = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let before = fleet.app();
    // WeChat cuts the app token off; an operator then asks for a new ticket.
    assert!(fleet.sim.revoke(&token.value));
    fleet
        .store
        .force_request(&fleet.cref("shop/ticket:jsapi"), "test")
        .await
        .unwrap();
    let fresh = fleet
        .wait_generation(token.generation + 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        fleet.sim.token_state(&fresh.value),
        wechat_sim::TokenState::Valid
    );
    // The simulator counts a getticket with a dead token as a rejected use
    // of it, and the retry with the new token as a ticket call.
    let calls = |a: &wechat_sim::AppStats| a.ticket_calls.get("jsapi").copied().unwrap_or(0);
    let settled =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            calls(&fleet.app()) > calls(&before)
        });
    assert!(settled, "the ticket fetch was retried");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = fleet.app();
    assert_eq!(
        calls(&after) - calls(&before),
        1,
        "one retry with the new token"
    );
    assert_eq!(
        after.uses_invalid - before.uses_invalid,
        1,
        "one getticket with the dead token"
    );
    assert_eq!(
        after.fetch_calls - before.fetch_calls,
        1,
        "one token fetch to heal"
    );
    // WeChat's ticket outlives a new token: the same ticket stays.
    let now = fleet
        .store
        .read_value(&fleet.cref("shop/ticket:jsapi"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.value, ticket.value);
}

async fn call(
    r: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {API_KEY}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
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
async fn the_ticket_routes_serve_sign_and_refuse_bad_input() {
    let settings = Settings {
        ticket_ttl: Duration::from_secs(30),
        token_ttl: Duration::from_secs(30),
        tickets: &["jsapi"],
        ..with_tickets()
    };
    let fleet = Fleet::start(settings, 1).await;
    let ticket = fleet
        .wait_value("shop/ticket:jsapi", 1, Duration::from_secs(5))
        .await;
    let token = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let r = router(
        fleet.replicas[0].http_state(&fleet.config(SECRET)).unwrap(),
        true,
    );

    let (s, v) = call(
        &r,
        Method::GET,
        &format!("/v1/apps/{ID}/tickets/jsapi"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ticket"], ticket.value.as_str());
    assert!(v["expires_in"].as_u64().unwrap() <= 30);
    let errors = [
        (
            format!("/v1/apps/{ID}/tickets/card"),
            StatusCode::BAD_REQUEST,
            "invalid_ticket_type",
        ),
        (
            format!("/v1/apps/{ID}/tickets/wx_card"),
            StatusCode::NOT_FOUND,
            "ticket_not_configured",
        ),
        (
            format!("/v1/apps/{ID}/tickets/agent_config"),
            StatusCode::BAD_REQUEST,
            "wrong_kind",
        ),
        (
            "/v1/apps/nope/tickets/jsapi".into(),
            StatusCode::NOT_FOUND,
            "app_not_found",
        ),
        (
            "/v1/apps/a%7Bb/tickets/jsapi".into(),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
    ];
    for (uri, status, code) in errors {
        let (s, v) = call(&r, Method::GET, &uri, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{uri}: {v}"
        );
    }

    // A wx.config signature the simulator (what the browser checks) accepts.
    let url = "https://shop.example/pay?x=1#/cart";
    let (s, v) = call(
        &r,
        Method::POST,
        &format!("/v1/apps/{ID}/jsapi_signature"),
        Some(json!({ "url": url })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["appId"], APPID);
    assert!(v.get("ticket").is_none() && !v.to_string().contains(&ticket.value));
    let check: Value = reqwest::Client::new()
        .post(format!("{}/__admin/jsapi_check", fleet.sim.base_url()))
        .json(&json!({
            "kind": "jsapi", "appid": APPID, "url": url,
            "noncestr": v["nonceStr"], "timestamp": v["timestamp"], "signature": v["signature"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    let (s, v) = call(
        &r,
        Method::POST,
        &format!("/v1/apps/{ID}/jsapi_signature"),
        Some(json!({ "url": "javascript:alert(1)" })),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    let (s, v) = call(
        &r,
        Method::POST,
        &format!("/v1/apps/{ID}/jsapi_signature?agent_config=true"),
        Some(json!({ "url": url })),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("wrong_kind"))
    );

    // WeChat's own getticket path, proved by the fleet's token.
    let uri = |t: &str, ty: &str| format!("/cgi-bin/ticket/getticket?access_token={t}&type={ty}");
    let (s, v) = call(&r, Method::GET, &uri(&token.value, "jsapi"), None).await;
    assert_eq!((s, v["errcode"].as_i64()), (StatusCode::OK, Some(0)), "{v}");
    assert_eq!(v["ticket"], ticket.value.as_str());
    let (_, v) = call(&r, Method::GET, &uri("NOT_A_FLEET_TOKEN", "jsapi"), None).await;
    assert_eq!(v["errcode"], 40001);
    let (_, v) = call(&r, Method::GET, &uri(&token.value, "nope"), None).await;
    assert_eq!(v["errcode"], 40097);
    let (_, v) = call(
        &r,
        Method::GET,
        "/cgi-bin/ticket/getticket?type=jsapi",
        None,
    )
    .await;
    assert_eq!(v["errcode"], 41001);
    assert_eq!(
        fleet.app().ticket_calls.get("jsapi"),
        Some(&1),
        "served from shared state"
    );
}
