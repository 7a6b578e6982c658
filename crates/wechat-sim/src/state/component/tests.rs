//! Unit tests of the Open Platform rules, with time moved by hand. The
//! world is built before `t0` (authorizer token times count from it).

use std::time::Duration;

use super::*;
use crate::config::{SimComponent, SimConfig};
use crate::state::Host;

const S: Duration = Duration::from_secs(1);
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const C: &str = "wxc0000000000000c1";

fn config() -> SimConfig {
    SimConfig::new()
        .app("wxA", "secretA")
        .component(SimComponent::new(C, "csecret", "msgtoken", KEY))
        .component(SimComponent::new("wxc2", "csecret2", "msgtoken", KEY))
        .overlap(10 * S)
        .verify_ticket_ttl(1000 * S)
        .component_token_ttl(100 * S)
        .authorizer_token_ttl(100 * S)
        .component_token_daily_quota(4)
        .component_token_per_minute(3)
        .authorizer_token_per_minute(5)
        .auth_code_ttl(60 * S)
}

fn req<'a>(ticket: Option<&'a str>) -> ComponentTokenRequest<'a> {
    ComponentTokenRequest {
        component_appid: Some(C),
        component_appsecret: Some("csecret"),
        component_verify_ticket: ticket,
    }
}

/// A world whose component has one verify ticket, and that ticket.
fn world_with_ticket(config: SimConfig) -> (World, String, Now) {
    let mut w = World::new(&config);
    let t0 = Now::current();
    let ticket = w.mint_verify_ticket(0, t0).unwrap();
    (w, ticket, t0)
}

#[test]
fn component_token_checks_in_order_and_refusals_spend_nothing() {
    let (mut w, ticket, t0) = world_with_ticket(config());
    let t = Some(ticket.as_str());
    let mut r = req(t);
    r.component_appid = None;
    assert_eq!(w.component_token(r, t0), Err(WxError::AppidMissing));
    r.component_appid = Some("wxNope");
    assert_eq!(w.component_token(r, t0), Err(WxError::InvalidComponent));
    let mut r = req(t);
    r.component_appsecret = Some("");
    assert_eq!(w.component_token(r, t0), Err(WxError::SecretMissing));
    r.component_appsecret = Some("csecret2");
    assert_eq!(w.component_token(r, t0), Err(WxError::InvalidAppsecret));
    for bad in [None, Some("ticket@@@nope")] {
        assert_eq!(
            w.component_token(req(bad), t0),
            Err(WxError::ComponentTicketInvalid)
        );
    }
    let b = w.components.book(0).unwrap();
    assert_eq!((b.tokens_today(t0), b.token_window.max_seen()), (0, 0));
    let g = w.component_token(req(t), t0).unwrap();
    assert_eq!((g.remaining, g.source), (100 * S, TokenSource::Component));
    let late = t0.after(1000 * S);
    assert_eq!(
        w.component_token(req(t), late),
        Err(WxError::ComponentTicketExpired)
    );
}

#[test]
fn only_the_latest_two_pushed_tickets_are_accepted() {
    let (mut w, first, t0) = world_with_ticket(config());
    let second = w.mint_verify_ticket(0, t0).unwrap();
    assert!(w.component_token(req(Some(&first)), t0).is_ok());
    let third = w.mint_verify_ticket(0, t0).unwrap();
    assert_eq!(
        w.component_token(req(Some(&first)), t0),
        Err(WxError::ComponentTicketInvalid),
        "superseded twice, inside its 12 h"
    );
    assert!(w.component_token(req(Some(&second)), t0).is_ok());
    assert!(w.component_token(req(Some(&third)), t0).is_ok());
    assert_eq!(w.verify_ticket(0), Some(third.as_str()));
    assert!(third.starts_with("ticket@@@"));
}

#[test]
fn component_token_daily_quota_and_minute_window() {
    let (mut w, ticket, t0) = world_with_ticket(config());
    let t = Some(ticket.as_str());
    for _ in 0..3 {
        w.component_token(req(t), t0).unwrap();
    }
    assert_eq!(w.component_token(req(t), t0), Err(WxError::MinuteQuota));
    let t1 = t0.after(60 * S);
    w.component_token(req(t), t1).unwrap();
    assert_eq!(w.component_token(req(t), t1), Err(WxError::DailyQuota));
}

#[test]
fn each_call_a_new_component_token_previous_overlaps_older_dies() {
    let (mut w, ticket, t0) = world_with_ticket(config());
    let t = Some(ticket.as_str());
    let a = w.component_token(req(t), t0).unwrap().token;
    let b = w.component_token(req(t), t0.after(S)).unwrap().token;
    assert_ne!(a, b);
    let judge = |w: &World, tok: &str, at: Now| w.judge_component(Some(tok), Some(C), at);
    assert_eq!(judge(&w, &a, t0.after(10 * S)), Ok(0));
    assert_eq!(
        judge(&w, &a, t0.after(11 * S)),
        Err(WxError::InvalidCredential)
    );
    let c = w.component_token(req(t), t0.after(2 * S)).unwrap().token;
    assert_eq!(
        judge(&w, &a, t0.after(2 * S)),
        Err(WxError::InvalidCredential)
    );
    assert_eq!(judge(&w, &b, t0.after(11 * S)), Ok(0));
    assert_eq!(
        judge(&w, &c, t0.after(102 * S)),
        Err(WxError::AccessTokenExpired)
    );
    assert_eq!(
        w.judge_component(None, Some(C), t0),
        Err(WxError::AccessTokenMissing)
    );
    assert_eq!(judge(&w, "unknown", t0), Err(WxError::InvalidCredential));
    assert_eq!(
        w.judge_component(Some(&c), None, t0),
        Err(WxError::AppidMissing)
    );
    assert_eq!(
        w.judge_component(Some(&c), Some("wxc2"), t0),
        Err(WxError::InvalidComponent)
    );
    // A component token is no app token, and an app token no component one.
    assert_eq!(w.judge(&c, Host::Wechat, t0).0, TokenState::Unknown);
    let app = w
        .token(
            super::super::TokenRequest {
                grant_type: Some("client_credential"),
                appid: Some("wxA"),
                secret: Some("secretA"),
            },
            t0,
        )
        .unwrap();
    assert_eq!(
        judge(&w, &app.token, t0),
        Err(WxError::MustUseComponentToken)
    );
    assert_eq!(w.issued(C).len(), 3);
}

/// A world with a component token and an authorized `wxAuth`, its code.
fn authorized(config: SimConfig) -> (World, Authorization, Now) {
    let (mut w, _, t0) = world_with_ticket(config);
    let auth = w.authorize(C, "wxAuth", t0).unwrap();
    (w, auth, t0)
}

#[test]
fn a_code_is_single_use_expires_and_dies_with_a_revoke() {
    let (mut w, auth, t0) = authorized(config());
    assert_eq!(auth.info_type, "authorized");
    assert_eq!(w.query_auth(0, Some("nope"), t0), Err(WxError::CodeInvalid));
    assert_eq!(
        w.query_auth(0, Some(&auth.authorization_code), t0.after(60 * S)),
        Err(WxError::CodeExpired)
    );
    let info = w.query_auth(0, Some(&auth.authorization_code), t0).unwrap();
    assert_eq!(info.authorizer_appid, "wxAuth");
    assert_eq!(
        w.judge(&info.grant.access_token, Host::Wechat, t0),
        (TokenState::Valid, Some("wxAuth"))
    );
    assert_eq!(
        w.judge(&info.grant.access_token, Host::Wecom, t0).0,
        TokenState::Unknown
    );
    assert_eq!(
        w.query_auth(0, Some(&auth.authorization_code), t0),
        Err(WxError::CodeInvalid)
    );
    let again = w.authorize(C, "wxAuth", t0).unwrap();
    assert_eq!(again.info_type, "updateauthorized");
    w.unauthorize(C, "wxAuth", t0).unwrap();
    assert_eq!(
        w.query_auth(0, Some(&again.authorization_code), t0),
        Err(WxError::CodeInvalid)
    );
    assert_eq!(
        w.judge(&info.grant.access_token, Host::Wechat, t0).0,
        TokenState::Invalid
    );
    let back = w.authorize(C, "wxAuth", t0).unwrap();
    assert_eq!(
        back.info_type, "authorized",
        "a revoked authorizer comes back"
    );
}

#[test]
fn rotating_refresh_tokens_keep_the_latest_two_and_die_with_a_revoke() {
    let (mut w, auth, t0) = authorized(config());
    let r0 = auth.refresh_token.clone();
    let g1 = w
        .authorizer_token(0, Some("wxAuth"), Some(&r0), t0)
        .unwrap();
    assert_ne!(g1.refresh_token, r0, "rotation: a new one each time");
    let g2 = w
        .authorizer_token(0, Some("wxAuth"), Some(&r0), t0)
        .unwrap();
    assert_eq!(
        w.authorizer_token(0, Some("wxAuth"), Some(&r0), t0),
        Err(WxError::RefreshTokenInvalid),
        "r0 is third most recent now"
    );
    // Access tokens: g1 superseded by g2 (overlap), the one before dies.
    assert_eq!(
        w.judge(&g1.access_token, Host::Wechat, t0.after(9 * S)).0,
        TokenState::Valid
    );
    assert_eq!(
        w.judge(&g1.access_token, Host::Wechat, t0.after(10 * S)).0,
        TokenState::Invalid
    );
    assert_eq!(w.list_refresh(0, "wxAuth"), Some(g2.refresh_token.clone()));
    for bad in [
        None,
        Some("refreshtoken@@@x"),
        Some(g1.refresh_token.as_str()),
    ] {
        let other = w.authorizer_token(0, Some("wxOther"), bad, t0);
        assert_eq!(other, Err(WxError::RefreshTokenInvalid));
    }
    assert_eq!(
        w.authorizer_token(0, None, Some(&r0), t0),
        Err(WxError::AppidMissing)
    );
    w.unauthorize(C, "wxAuth", t0).unwrap();
    for r in [&g1.refresh_token, &g2.refresh_token] {
        assert_eq!(
            w.authorizer_token(0, Some("wxAuth"), Some(r), t0),
            Err(WxError::RefreshTokenInvalid)
        );
    }
    assert_eq!(
        w.judge(&g2.access_token, Host::Wechat, t0).0,
        TokenState::Invalid
    );
}

#[test]
fn without_rotation_the_refresh_token_stays_until_reauthorization() {
    let (mut w, auth, t0) = authorized(config().refresh_token_rotation(false));
    let g = w
        .authorizer_token(0, Some("wxAuth"), Some(&auth.refresh_token), t0)
        .unwrap();
    assert_eq!(g.refresh_token, auth.refresh_token);
    let again = w.update_authorize(C, "wxAuth", t0).unwrap();
    assert_ne!(again.refresh_token, auth.refresh_token);
    assert_eq!(
        w.authorizer_token(0, Some("wxAuth"), Some(&auth.refresh_token), t0),
        Err(WxError::RefreshTokenInvalid),
        "re-authorization kills the older refresh tokens"
    );
    assert!(
        w.authorizer_token(0, Some("wxAuth"), Some(&again.refresh_token), t0)
            .is_ok()
    );
}

#[test]
fn authorizer_calls_share_a_sliding_minute_per_component() {
    let (mut w, auth, t0) = authorized(config().refresh_token_rotation(false));
    let r = Some(auth.refresh_token.as_str());
    for i in 0..5 {
        w.authorizer_token(0, Some("wxAuth"), r, t0.after(i * S))
            .unwrap();
    }
    assert_eq!(
        w.authorizer_token(0, Some("wxAuth"), r, t0.after(59 * S)),
        Err(WxError::MinuteQuota)
    );
    // Refused calls (61023, 45011) used nothing: the window slides on.
    assert!(
        w.authorizer_token(0, Some("wxAuth"), r, t0.after(60 * S))
            .is_ok()
    );
}

#[test]
fn lists_page_the_live_authorizers_with_their_current_refresh_tokens() {
    let (mut w, _, t0) = world_with_ticket(config());
    assert_eq!(w.bulk_authorize(C, 1200, t0), Ok(1200));
    w.authorize(C, "wxExtra", t0).unwrap();
    w.unauthorize(C, "wxExtra", t0).unwrap();
    let first = w.authorizer_list(0, 0, 500).unwrap();
    assert_eq!((first.total_count, first.list.len()), (1200, 500));
    let last = w.authorizer_list(0, 1000, 500).unwrap();
    assert_eq!(last.list.len(), 200);
    assert!(w.authorizer_list(0, 5000, 10).unwrap().list.is_empty());
    for count in [0, 501] {
        assert_eq!(w.authorizer_list(0, 0, count), Err(WxError::InvalidArgs));
    }
    let (appid, refresh, auth_time) = &first.list[0];
    assert_eq!(appid.len(), 18);
    assert_eq!(*auth_time, t0.unix_ms / 1000);
    assert!(
        w.authorizer_token(0, Some(appid), Some(refresh), t0)
            .is_ok(),
        "a listed refresh token works"
    );
    assert_eq!(
        w.bulk_authorize("wxNope", 1, t0),
        Err(ComponentError::UnknownComponent("wxNope".into()))
    );
    assert_eq!(
        w.authorize(C, "", t0),
        Err(ComponentError::BadAppid(String::new()))
    );
    assert_eq!(
        w.update_authorize(C, "wxExtra", t0),
        Err(ComponentError::UnknownAuthorizer("wxExtra".into()))
    );
}

impl World {
    /// The refresh token a list shows for `appid` of component `c`.
    fn list_refresh(&self, c: u16, appid: &str) -> Option<String> {
        let book = self.components.book(c)?;
        let a = book.authorizers.get(book.authorizers.find(appid)?)?;
        Some(ids::refresh_token(a.refresh()))
    }
}
