//! Unit tests of the WeCom rules in `state`, with time moved by hand.

use super::*;
use crate::errcode::WecomError;
use crate::ticket::TicketKind;

const S: Duration = Duration::from_secs(1);

fn world() -> World {
    World::new(
        &SimConfig::new()
            .app("wxA", "secretA")
            .corp_agent("ww1", Some(1), "s1")
            .corp_agent("ww1", Some(2), "s2")
            .corp_agent("ww1", None, "contacts")
            .token_ttl(100 * S)
            .overlap(10 * S)
            .ticket_ttl(50 * S)
            .wecom_ticket_agent_hourly(3)
            .wecom_ticket_corp_hourly(5)
            .wecom_ticket_window(60 * S),
    )
}

fn get(w: &mut World, secret: &str, at: Now) -> Result<Grant, WecomError> {
    w.wecom_token(Some("ww1"), Some(secret), at)
}

#[test]
fn wecom_same_token_while_valid_full_expires_in_new_after_expiry_or_revocation() {
    let mut w = world();
    let t0 = Now::current();
    let a = get(&mut w, "s1", t0).unwrap();
    let a2 = get(&mut w, "s1", t0.after(99 * S)).unwrap();
    assert_eq!(a.token, a2.token);
    assert_eq!(a2.remaining, 100 * S, "full life, not what remains");
    let other = get(&mut w, "s2", t0).unwrap();
    assert_ne!(other.token, a.token, "one token per (corp, secret)");
    let b = get(&mut w, "s1", t0.after(100 * S)).unwrap();
    assert_ne!(a.token, b.token);
    assert!(w.revoke_token(&b.token, t0.after(101 * S)));
    let c = get(&mut w, "s1", t0.after(101 * S)).unwrap();
    assert_ne!(b.token, c.token);
    let issued = w.issued("ww1:1");
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[0].superseded_at_ms, Some(t0.unix_ms + 100_000));
    assert_eq!(issued[0].invalid_from_ms, None, "died of expiry");
    assert_eq!(w.issued("ww1:2").len(), 1);
}

#[test]
fn wecom_gettoken_error_order_and_codes() {
    let mut w = world();
    let t0 = Now::current();
    assert_eq!(get(&mut w, "nope", t0), Err(WecomError::InvalidSecret));
    assert_eq!(
        w.wecom_token(Some("wwX"), Some("s1"), t0),
        Err(WecomError::InvalidCorpid)
    );
    assert_eq!(
        w.wecom_token(Some("wxA"), Some("secretA"), t0),
        Err(WecomError::InvalidCorpid),
        "an appid is not a corpid"
    );
    assert_eq!(
        w.wecom_token(None, Some("x"), t0),
        Err(WecomError::CorpidMissing)
    );
    assert_eq!(
        w.wecom_token(Some("ww1"), Some(""), t0),
        Err(WecomError::CorpsecretMissing)
    );
    assert_eq!(w.agent_for_secret("ww1", "contacts"), Some("ww1:"));
    assert_eq!(w.agent_for_secret("ww1", "nope"), None);
}

#[test]
fn hosts_do_not_know_each_others_tokens() {
    let mut w = world();
    let t0 = Now::current();
    let wecom = get(&mut w, "s1", t0).unwrap().token;
    assert_eq!(w.judge(&wecom, Host::Wecom, t0).0, TokenState::Valid);
    assert_eq!(
        w.judge(&wecom, Host::Wechat, t0),
        (TokenState::Unknown, None)
    );
    assert_eq!(w.token_state(&wecom, t0).1, Some("ww1:1"));
}

#[test]
fn caps_per_agent_and_per_corp_slide_and_refusals_use_nothing() {
    let mut w = world();
    let t0 = Now::current();
    let jsapi = |w: &mut World, key: &str, at: Now| w.wecom_ticket(key, TicketKind::WecomJsapi, at);
    let first = jsapi(&mut w, "ww1:1", t0).unwrap();
    for i in 1..3 {
        let again = jsapi(&mut w, "ww1:1", t0.after(i * S)).unwrap();
        assert_eq!(again.ticket, first.ticket);
    }
    assert_eq!(
        jsapi(&mut w, "ww1:1", t0.after(3 * S)),
        Err(WecomError::FreqOutOfLimit),
        "agent cap 3"
    );
    let corp_ticket = jsapi(&mut w, "ww1:2", t0.after(4 * S)).unwrap();
    assert_eq!(
        corp_ticket.ticket, first.ticket,
        "one jsapi ticket per corp"
    );
    jsapi(&mut w, "ww1:", t0.after(5 * S)).unwrap();
    assert_eq!(
        jsapi(&mut w, "ww1:2", t0.after(6 * S)),
        Err(WecomError::FreqOutOfLimit),
        "corp cap 5"
    );
    // agent_config has its own windows.
    let agent = w
        .wecom_ticket("ww1:2", TicketKind::AgentConfig, t0.after(6 * S))
        .unwrap();
    assert_ne!(agent.ticket, first.ticket);
    // The first call leaves the 60 s window at t0 + 60 s.
    assert!(jsapi(&mut w, "ww1:2", t0.after(60 * S)).is_ok());
    let mut stats = crate::stats::CorpStats::default();
    w.fill_corp_stats("ww1", &mut stats, t0.after(60 * S));
    assert_eq!(stats.ticket_calls_last_hour["jsapi"], 5);
    assert_eq!(stats.max_ticket_calls_per_hour["jsapi"], 5);
    assert_eq!(stats.agents["1"].max_ticket_calls_per_hour["jsapi"], 3);
    assert_eq!(stats.agents["1"].ticket_calls_last_hour["jsapi"], 2);
    assert_eq!(stats.agents["2"].ticket_calls_last_hour["agent_config"], 1);
    assert_eq!(stats.corp_hourly_cap, 5);
}

#[test]
fn corp_ticket_is_new_only_after_expiry_and_signing_follows_it() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.wecom_ticket("ww1:1", TicketKind::WecomJsapi, t0).unwrap();
    let (key, usable) = w
        .signing_ticket(
            TicketKind::WecomJsapi,
            TicketOwner::Agent {
                corpid: "ww1",
                agentid: Some(2),
            },
            t0,
        )
        .unwrap();
    assert_eq!((key.as_str(), usable), ("ww1:2", Ok(a.ticket.as_str())));
    let late = t0.after(50 * S);
    let (_, usable) = w
        .signing_ticket(
            TicketKind::WecomJsapi,
            TicketOwner::Agent {
                corpid: "ww1",
                agentid: Some(1),
            },
            late,
        )
        .unwrap();
    assert_eq!(usable, Err(crate::ticket::TicketUnusable::Expired));
    let b = w
        .wecom_ticket("ww1:1", TicketKind::WecomJsapi, late)
        .unwrap();
    assert_ne!(a.ticket, b.ticket);
    assert_eq!(b.expires_in, 50 * S);
    assert_eq!(w.issued_tickets("ww1:1").len(), 2);
}
