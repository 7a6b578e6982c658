//! Unit tests of the app token and ticket rules in `state`, with time moved
//! by hand.

use super::*;
use crate::errcode::WxError;
use crate::ticket::TicketKind;

const S: Duration = Duration::from_secs(1);

fn world() -> World {
    World::new(
        &SimConfig::new()
            .app("wxA", "secretA")
            .app("wxB", "secretB")
            .token_ttl(100 * S)
            .overlap(10 * S)
            .daily_quota(3)
            .force_refresh_daily(2)
            .force_refresh_spacing(30 * S),
    )
}

fn req(appid: &str) -> TokenRequest<'_> {
    TokenRequest {
        grant_type: Some("client_credential"),
        appid: Some(appid),
        secret: Some(if appid == "wxA" { "secretA" } else { "secretB" }),
    }
}

fn stable(appid: &str, force_refresh: bool) -> StableRequest<'_> {
    StableRequest {
        grant_type: Some("client_credential"),
        appid: Some(appid),
        secret: Some("secretA"),
        force_refresh,
    }
}

fn state(w: &World, token: &str, now: Now) -> TokenState {
    w.token_state(token, now).0
}

#[test]
fn token_every_call_issues_new_previous_keeps_overlap_older_dies_at_once() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.token(req("wxA"), t0).unwrap();
    let b = w.token(req("wxA"), t0.after(S)).unwrap();
    assert_ne!(a.token, b.token);
    assert_eq!(b.remaining, 100 * S);
    assert_eq!(state(&w, &a.token, t0.after(10 * S)), TokenState::Valid);
    assert_eq!(state(&w, &a.token, t0.after(11 * S)), TokenState::Invalid);

    let c = w.token(req("wxA"), t0.after(2 * S)).unwrap();
    // c supersedes b (b gets the overlap); a, older still, dies at once,
    // 9 s before its own overlap would have ended.
    assert_eq!(state(&w, &a.token, t0.after(2 * S)), TokenState::Invalid);
    assert_eq!(state(&w, &b.token, t0.after(11 * S)), TokenState::Valid);
    assert_eq!(state(&w, &b.token, t0.after(12 * S)), TokenState::Invalid);
    assert_eq!(state(&w, &c.token, t0.after(12 * S)), TokenState::Valid);
    let issued = w.issued("wxA");
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[0].revoked_at_ms, Some(t0.unix_ms + 2000));
    assert_eq!(issued[0].invalid_from_ms, Some(t0.unix_ms + 2000));
    assert_eq!(issued[1].revoked_at_ms, None);
    assert_eq!(issued[1].invalid_from_ms, Some(t0.unix_ms + 12_000));
    assert_eq!(issued[2].superseded_at_ms, None);
}

#[test]
fn token_lives_until_natural_expiry_then_42001() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.token(req("wxA"), t0).unwrap();
    assert_eq!(state(&w, &a.token, t0.after(99 * S)), TokenState::Valid);
    assert_eq!(state(&w, &a.token, t0.after(100 * S)), TokenState::Expired);
    assert_eq!(state(&w, "never-issued", t0), TokenState::Unknown);
}

#[test]
fn token_validation_order_and_codes() {
    let mut w = world();
    let now = Now::current();
    let mut r = req("wxA");
    r.grant_type = Some("password");
    assert_eq!(w.token(r, now), Err(WxError::InvalidGrantType));
    r.grant_type = None;
    r.appid = None;
    assert_eq!(w.token(r, now), Err(WxError::InvalidGrantType));
    let mut r = req("wxA");
    r.appid = Some("");
    assert_eq!(w.token(r, now), Err(WxError::AppidMissing));
    let mut r = req("wxA");
    r.secret = None;
    assert_eq!(w.token(r, now), Err(WxError::SecretMissing));
    let mut r = req("wxA");
    r.appid = Some("wxNope");
    assert_eq!(w.token(r, now), Err(WxError::InvalidAppid));
    let mut r = req("wxA");
    r.secret = Some("secretB");
    assert_eq!(w.token(r, now), Err(WxError::InvalidAppsecret));
    assert_eq!(w.quota_used("wxA", now).0, 0, "refused calls use no quota");
}

#[test]
fn token_quota_45009_per_app_and_external_refresh_uses_it() {
    let mut w = world();
    let now = Now::current();
    w.token(req("wxA"), now).unwrap();
    let ext = w.external_refresh("wxA", now).unwrap();
    assert_eq!(ext.source, TokenSource::External);
    w.token(req("wxA"), now).unwrap();
    assert_eq!(w.token(req("wxA"), now), Err(WxError::DailyQuota));
    assert_eq!(w.external_refresh("wxA", now), Err(WxError::DailyQuota));
    assert!(w.token(req("wxB"), now).is_ok(), "quota is per app");
    assert!(w.clear_quota(Some("wxA")));
    assert!(w.token(req("wxA"), now).is_ok());
    assert!(!w.clear_quota(Some("wxNope")));
}

#[test]
fn external_refresh_supersedes_the_token_lineage() {
    let mut w = world();
    let t0 = Now::current();
    let fleet = w.token(req("wxA"), t0).unwrap();
    let ext = w.external_refresh("wxA", t0.after(S)).unwrap();
    assert_eq!(state(&w, &fleet.token, t0.after(10 * S)), TokenState::Valid);
    assert_eq!(
        state(&w, &fleet.token, t0.after(11 * S)),
        TokenState::Invalid
    );
    assert_eq!(state(&w, &ext.token, t0.after(11 * S)), TokenState::Valid);
}

#[test]
fn stable_returns_same_token_until_last_overlap_then_rotates_with_both_valid() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.stable_token(stable("wxA", false), t0).unwrap();
    let a2 = w
        .stable_token(stable("wxA", false), t0.after(50 * S))
        .unwrap();
    assert_eq!(a.token, a2.token);
    assert_eq!(a2.remaining, 50 * S);
    // 10 s left = inside the last overlap: a new token.
    let b = w
        .stable_token(stable("wxA", false), t0.after(90 * S))
        .unwrap();
    assert_ne!(a.token, b.token);
    assert_eq!(b.remaining, 100 * S);
    assert_eq!(state(&w, &a.token, t0.after(99 * S)), TokenState::Valid);
    assert_eq!(state(&w, &a.token, t0.after(100 * S)), TokenState::Expired);
    let b2 = w
        .stable_token(stable("wxA", false), t0.after(95 * S))
        .unwrap();
    assert_eq!(b2.token, b.token);
}

#[test]
fn stable_is_isolated_from_token_lineage() {
    let mut w = world();
    let t0 = Now::current();
    let s = w.stable_token(stable("wxA", false), t0).unwrap();
    w.token(req("wxA"), t0).unwrap();
    w.token(req("wxA"), t0).unwrap();
    w.token(req("wxA"), t0).unwrap();
    assert_eq!(state(&w, &s.token, t0.after(50 * S)), TokenState::Valid);
    let s2 = w.stable_token(stable("wxA", false), t0.after(S)).unwrap();
    assert_eq!(s.token, s2.token);
}

#[test]
fn stable_force_refresh_revokes_old_and_is_limited() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.stable_token(stable("wxA", false), t0).unwrap();
    let b = w.stable_token(stable("wxA", true), t0.after(S)).unwrap();
    assert_eq!(b.source, TokenSource::StableTokenForce);
    assert_ne!(a.token, b.token);
    assert_eq!(state(&w, &a.token, t0.after(S)), TokenState::Invalid);
    assert_eq!(
        w.stable_token(stable("wxA", true), t0.after(30 * S)),
        Err(WxError::MinuteQuota)
    );
    let c = w
        .stable_token(stable("wxA", true), t0.after(31 * S))
        .unwrap();
    assert_eq!(state(&w, &b.token, t0.after(31 * S)), TokenState::Invalid);
    assert_eq!(
        w.stable_token(stable("wxA", true), t0.after(70 * S)),
        Err(WxError::DailyQuota)
    );
    let d = w
        .stable_token(stable("wxA", false), t0.after(70 * S))
        .unwrap();
    assert_eq!(d.token, c.token);
}

#[test]
fn stable_force_refresh_also_revokes_a_rotated_predecessor() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.stable_token(stable("wxA", false), t0).unwrap();
    let b = w
        .stable_token(stable("wxA", false), t0.after(95 * S))
        .unwrap();
    assert_ne!(a.token, b.token);
    w.stable_token(stable("wxA", true), t0.after(96 * S))
        .unwrap();
    assert_eq!(state(&w, &a.token, t0.after(96 * S)), TokenState::Invalid);
    assert_eq!(state(&w, &b.token, t0.after(96 * S)), TokenState::Invalid);
}

#[test]
fn stable_normal_mode_keeps_returning_a_revoked_token() {
    let mut w = world();
    let t0 = Now::current();
    let a = w.stable_token(stable("wxA", false), t0).unwrap();
    assert!(w.revoke_token(&a.token, t0.after(S)));
    assert_eq!(state(&w, &a.token, t0.after(S)), TokenState::Invalid);
    let again = w
        .stable_token(stable("wxA", false), t0.after(2 * S))
        .unwrap();
    assert_eq!(again.token, a.token);
    let forced = w
        .stable_token(stable("wxA", true), t0.after(3 * S))
        .unwrap();
    assert_eq!(state(&w, &forced.token, t0.after(3 * S)), TokenState::Valid);
}

#[test]
fn stable_validation_codes() {
    let mut w = world();
    let now = Now::current();
    let mut r = stable("wxA", false);
    r.grant_type = None;
    assert_eq!(w.stable_token(r, now), Err(WxError::InvalidGrantType));
    let mut r = stable("wxA", false);
    r.appid = None;
    assert_eq!(w.stable_token(r, now), Err(WxError::AppidMissing));
    let mut r = stable("wxA", false);
    r.secret = Some("");
    assert_eq!(w.stable_token(r, now), Err(WxError::SecretMissing));
    let r = stable("wxZ", false);
    assert_eq!(w.stable_token(r, now), Err(WxError::InvalidAppid));
    let r = stable("wxB", false);
    assert_eq!(w.stable_token(r, now), Err(WxError::InvalidAppsecret));
}

#[test]
fn app_ticket_same_while_valid_quota_per_type_and_not_for_wecom_tokens() {
    let mut w = World::new(
        &SimConfig::new()
            .app("wxA", "secretA")
            .ticket_ttl(10 * S)
            .ticket_daily_quota(3),
    );
    let t0 = Now::current();
    let a = w.app_ticket("wxA", TicketKind::Jsapi, t0).unwrap();
    assert!(a.minted.is_some());
    let b = w
        .app_ticket("wxA", TicketKind::Jsapi, t0.after(9 * S))
        .unwrap();
    assert_eq!(
        (b.ticket.as_str(), b.expires_in),
        (a.ticket.as_str(), 10 * S)
    );
    let card = w.app_ticket("wxA", TicketKind::WxCard, t0).unwrap();
    assert_ne!(card.ticket, a.ticket);
    let c = w
        .app_ticket("wxA", TicketKind::Jsapi, t0.after(10 * S))
        .unwrap();
    assert_ne!(c.ticket, a.ticket);
    assert_eq!(
        w.app_ticket("wxA", TicketKind::Jsapi, t0.after(11 * S)),
        Err(WxError::DailyQuota)
    );
    assert_eq!(w.issued_tickets("wxA").len(), 3);
    assert_eq!(w.tickets_used("wxA", t0).get("jsapi"), Some(&3));
    let (who, usable) = w
        .signing_ticket(TicketKind::Jsapi, TicketOwner::App("wxA"), t0.after(11 * S))
        .unwrap();
    assert_eq!((who.as_str(), usable), ("wxA", Ok(c.ticket.as_str())));
    assert!(
        w.signing_ticket(TicketKind::AgentConfig, TicketOwner::App("wxA"), t0)
            .is_none()
    );
}

#[test]
fn reset_forgets_tokens_and_quota() {
    let mut w = world();
    let now = Now::current();
    let a = w.token(req("wxA"), now).unwrap();
    w.reset();
    assert_eq!(state(&w, &a.token, now), TokenState::Unknown);
    assert!(w.issued("wxA").is_empty());
    assert_eq!(w.quota_used("wxA", now), (0, 0, 0));
}
