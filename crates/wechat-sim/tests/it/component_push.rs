//! Pushes to a component's event URL, received by a small axum receiver in
//! the test that checks them as a platform must (`msg_signature`, the
//! appid inside, a fresh timestamp, a size limit) with
//! `wxtoken_msgcrypt::MsgCrypt`, and answers `success`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;
use wechat_sim::{Forgery, PushOutcome};
use wxtoken_msgcrypt::MsgCrypt;
use wxtoken_msgcrypt::event::{self, ComponentEvent};

use crate::helpers::*;

/// What the receiver answers genuine pushes with.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Success,
    Fail500,
    WrongBody,
}

struct Receiver {
    crypt: MsgCrypt,
    events: Mutex<Vec<ComponentEvent>>,
    refused: Mutex<Vec<&'static str>>,
    queries: Mutex<Vec<HashMap<String, String>>>,
    answer: Mutex<Answer>,
}

type Shared = Arc<Receiver>;

async fn receive(
    State(r): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    r.queries.lock().unwrap().push(q.clone());
    let refuse = |why: &'static str| {
        r.refused.lock().unwrap().push(why);
        (StatusCode::BAD_REQUEST, why.to_owned())
    };
    if body.len() > 1 << 20 {
        return refuse("oversized");
    }
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts: u64 = get("timestamp").parse().unwrap_or(0);
    if now.abs_diff(ts) > 300 {
        return refuse("stale");
    }
    assert_eq!(get("encrypt_type"), "aes");
    let xml = match r
        .crypt
        .open(&body, get("timestamp"), get("nonce"), get("msg_signature"))
    {
        Ok(xml) => xml,
        Err(e) => {
            return refuse(if e.code() == "bad_signature" {
                "signature"
            } else {
                "crypt"
            });
        }
    };
    let ev = event::parse(&xml).expect("a component event");
    assert_eq!(ev.appid(), COMPONENT);
    r.events.lock().unwrap().push(ev);
    match *r.answer.lock().unwrap() {
        Answer::Success => (StatusCode::OK, "success".to_owned()),
        Answer::Fail500 => (StatusCode::INTERNAL_SERVER_ERROR, "oops".to_owned()),
        Answer::WrongBody => (StatusCode::OK, "ok".to_owned()),
    }
}

/// A receiver on a free port and its event URL.
async fn receiver() -> (Shared, String) {
    let shared = Arc::new(Receiver {
        crypt: MsgCrypt::new(MSG_TOKEN, AES_KEY, COMPONENT).unwrap(),
        events: Mutex::default(),
        refused: Mutex::default(),
        queries: Mutex::default(),
        answer: Mutex::new(Answer::Success),
    });
    let app = Router::new()
        .route("/wechat/components/open1/events", post(receive))
        .with_state(shared.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/wechat/components/open1/events",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, url)
}

fn tickets(r: &Receiver) -> Vec<String> {
    r.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ComponentEvent::VerifyTicket { ticket, .. } => Some(ticket.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn verify_tickets_are_pushed_at_start_and_every_interval() {
    let (r, url) = receiver().await;
    let wx = start(component_config(Some(&url)).ticket_interval(ms(300))).await;
    poll_until(secs(5), "three pushes", || async { tickets(&r).len() >= 3 }).await;
    let got = tickets(&r);
    assert!(got.iter().all(|t| t.starts_with("ticket@@@")));
    let latest = got.last().unwrap().clone();
    assert_eq!(
        errcode(&wx.component_token_with(&latest).await),
        0,
        "the pushed ticket buys a token"
    );
    let q = &r.queries.lock().unwrap()[0];
    for key in ["timestamp", "nonce", "encrypt_type", "msg_signature"] {
        assert!(q.contains_key(key), "{key} missing from {q:?}");
    }
    let c = &wx.sim.stats().components[COMPONENT];
    assert!(c.pushes_ok >= 3 && c.pushes_failed.is_empty(), "{c:?}");
    assert!(c.pushes["component_verify_ticket"] >= 3);
    assert!(c.verify_tickets_issued >= 3);
    assert!(r.refused.lock().unwrap().is_empty());
}

#[tokio::test]
async fn authorization_events_carry_a_code_the_receiver_can_exchange() {
    let (r, url) = receiver().await;
    let wx = start(component_config(Some(&url))).await;
    let (auth, push) = wx.sim.authorize(COMPONENT, AUTHORIZER).await.unwrap();
    assert!(push.is_success(), "{push:?}");
    let pushed_code = r
        .events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            ComponentEvent::Authorized {
                authorizer_appid,
                authorization_code,
                code_expires_at,
                ..
            } => {
                assert_eq!(authorizer_appid, AUTHORIZER);
                assert_eq!(*code_expires_at, auth.code_expires_at);
                Some(authorization_code.clone())
            }
            _ => None,
        })
        .expect("an authorized event");
    assert_eq!(pushed_code, auth.authorization_code);
    let token = wx.component_token().await;
    let v = wx
        .component_api(
            "api_query_auth",
            &token,
            json!({"authorization_code": pushed_code}),
        )
        .await;
    assert_eq!(
        v["authorization_info"]["authorizer_appid"], AUTHORIZER,
        "{v}"
    );

    // Over the admin API: update, then revoke, each pushed.
    let resp: serde_json::Value = wx
        .http
        .post(wx.url("/__admin/components/update_authorize"))
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
    assert_eq!(resp["info_type"], "updateauthorized", "{resp}");
    assert_eq!(resp["push"]["outcome"], "success");
    let resp: serde_json::Value = wx
        .http
        .post(wx.url("/__admin/components/unauthorize"))
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
    assert_eq!(resp["push"]["outcome"], "success", "{resp}");
    let kinds: Vec<String> = r
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.info_type().to_owned())
        .collect();
    assert!(
        kinds.ends_with(&[
            "authorized".into(),
            "updateauthorized".into(),
            "unauthorized".into()
        ]),
        "{kinds:?}"
    );
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(
        (
            c.pushes["authorized"],
            c.pushes["updateauthorized"],
            c.pushes["unauthorized"]
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn forged_pushes_are_refused_by_a_correct_receiver_and_replays_counted() {
    let (r, url) = receiver().await;
    let wx = start(component_config(Some(&url))).await;
    poll_until(secs(5), "the first push", || async {
        !tickets(&r).is_empty()
    })
    .await;
    // axum's own body limit (2 MB) refuses the oversized one first.
    for (forgery, status, why) in [
        (Forgery::BadSignature, 400, Some("signature")),
        (Forgery::WrongAppid, 400, Some("crypt")),
        (Forgery::StaleTimestamp, 400, Some("stale")),
        (Forgery::Oversized, 413, None),
    ] {
        let before = r.refused.lock().unwrap().len();
        let outcome = wx.sim.push_forged(COMPONENT, forgery).await.unwrap();
        assert_eq!(outcome, PushOutcome::HttpError { status }, "{forgery:?}");
        let refused = r.refused.lock().unwrap();
        assert_eq!(refused.get(before).copied(), why, "{forgery:?}");
    }
    let replay = wx.sim.replay_last_push(COMPONENT).await.unwrap();
    assert!(replay.is_success(), "this receiver keeps no nonces");
    {
        let q = r.queries.lock().unwrap();
        assert_eq!(q[0], *q.last().unwrap(), "a replay is the same request");
    }
    let resp = wx
        .http
        .post(wx.url("/__admin/components/push_forged"))
        .query(&[("component_appid", COMPONENT), ("kind", "nonsense")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(c.forged_pushes.values().sum::<u64>(), 4);
    assert_eq!(c.forged_accepted, 0);
    assert_eq!((c.replays, c.replays_accepted), (1, 1));
    assert_eq!(tickets(&r).len(), 2, "the genuine push and its replay");
}

#[tokio::test]
async fn failed_pushes_are_counted_by_cause_and_their_ticket_still_counts() {
    let (r, url) = receiver().await;
    let wx = start(component_config(Some(&url)).ticket_interval(secs(3600))).await;
    poll_until(secs(5), "the first push", || async {
        !tickets(&r).is_empty()
    })
    .await;
    let first = tickets(&r)[0].clone();
    *r.answer.lock().unwrap() = Answer::Fail500;
    let failed = wx.sim.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(failed, PushOutcome::HttpError { status: 500 });
    *r.answer.lock().unwrap() = Answer::WrongBody;
    let not_success = wx.sim.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(not_success, PushOutcome::NotSuccess { status: 200 });
    // Two newer tickets were minted, delivered or not: the first is gone.
    assert_eq!(errcode(&wx.component_token_with(&first).await), 61006);
    let resp: serde_json::Value = wx
        .http
        .post(wx.url("/__admin/components/push_ticket"))
        .query(&[("component_appid", COMPONENT)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp["push"],
        json!({"outcome": "not_success", "status": 200})
    );
    let c = &wx.sim.stats().components[COMPONENT];
    assert_eq!(c.pushes_ok, 1);
    assert_eq!(c.pushes_failed.get("http_500"), Some(&1));
    assert_eq!(c.pushes_failed.get("not_success"), Some(&2));
}

#[tokio::test]
async fn an_unreachable_event_url_is_a_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    drop(listener);
    let wx = start(component_config(Some(&url)).ticket_interval(secs(3600))).await;
    let outcome = wx.sim.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(outcome, PushOutcome::Connect);
    poll_until(secs(5), "the start push counted", || async {
        wx.sim.stats().components[COMPONENT]
            .pushes_failed
            .get("connect")
            == Some(&2)
    })
    .await;
}
