//! Pushes a correct receiver must refuse ([`Forgery`]: a bad signature,
//! another appid inside, a stale timestamp, an oversized body) and replays
//! of the last genuine push, for tests of a platform's event endpoint.
//! Counted apart from the genuine pushes (`forged_pushes`,
//! `forged_accepted`, `replays`), so a receiver that answers `success` to
//! a forgery shows up in the stats.
//!
//! Sealing and sending are `push.rs`'; this module only bends them.

use rand::Rng;
use serde::{Deserialize, Serialize};
use wxtoken_msgcrypt::event::ComponentEvent;

use crate::state::ComponentError;

use super::SimState;
use super::push::{PushKind, PushOutcome, SentPush, signed_url, unix_secs};

/// How much junk an `oversized` forgery carries.
const OVERSIZED_BYTES: usize = 2 << 20;

/// A push a correct receiver must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Forgery {
    /// A correct body whose `msg_signature` is wrong.
    BadSignature,
    /// Correctly signed, but encrypted for another appid.
    WrongAppid,
    /// Correctly signed with a timestamp an hour old.
    StaleTimestamp,
    /// Correctly signed, 2 MiB of XML.
    Oversized,
}

impl Forgery {
    /// The wire name (`bad_signature`, …), also its stats key.
    pub fn as_str(self) -> &'static str {
        match self {
            Forgery::BadSignature => "bad_signature",
            Forgery::WrongAppid => "wrong_appid",
            Forgery::StaleTimestamp => "stale_timestamp",
            Forgery::Oversized => "oversized",
        }
    }

    /// The forgery named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Forgery::BadSignature,
            Forgery::WrongAppid,
            Forgery::StaleTimestamp,
            Forgery::Oversized,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

impl SimState {
    /// Sends a push a correct receiver must refuse; counted apart from the
    /// genuine ones. It carries a made-up ticket: a receiver that stores it
    /// gets 61006 later.
    pub async fn push_forged(
        &self,
        component_appid: &str,
        forgery: Forgery,
    ) -> Result<PushOutcome, ComponentError> {
        let c = self.component_or(component_appid)?;
        let Some(target) = self.target(c) else {
            return Ok(PushOutcome::NoEventUrl);
        };
        let now = unix_secs();
        let stale = forgery == Forgery::StaleTimestamp;
        let timestamp = (if stale { now.saturating_sub(3600) } else { now }).to_string();
        let nonce = rand::rng()
            .random_range(100_000_000u32..4_000_000_000)
            .to_string();
        let mut xml = ComponentEvent::VerifyTicket {
            appid: component_appid.to_owned(),
            create_time: now,
            ticket: "ticket@@@forged-by-wechat-sim".to_owned(),
        }
        .to_xml();
        if forgery == Forgery::Oversized {
            let junk = format!("<Junk>{}</Junk></xml>", "x".repeat(OVERSIZED_BYTES));
            xml = xml.replacen("</xml>", &junk, 1);
        }
        let crypt = match (forgery, &target.forger) {
            (Forgery::WrongAppid, Some(forger)) => forger,
            _ => &target.crypt,
        };
        let mut sealed = crypt.seal(&xml, &timestamp, &nonce);
        if forgery == Forgery::BadSignature {
            let flipped = if sealed.msg_signature.starts_with('0') {
                "1"
            } else {
                "0"
            };
            sealed.msg_signature.replace_range(..1, flipped);
        }
        let sent = target.event_url.as_deref().map(|base| SentPush {
            url: signed_url(base, &timestamp, &nonce, &sealed.msg_signature),
            body: sealed.body,
        });
        let outcome = self.send(sent.as_ref()).await;
        self.lock()
            .count_push(c, &PushKind::Forged(forgery), &outcome);
        Ok(outcome)
    }

    /// Sends the last genuine push of `component_appid` again, byte for
    /// byte (same timestamp, nonce and signature).
    pub async fn replay_last_push(
        &self,
        component_appid: &str,
    ) -> Result<PushOutcome, ComponentError> {
        let c = self.component_or(component_appid)?;
        let last = self.lock().last_push.get(&c).cloned();
        let Some(last) = last else {
            return Err(ComponentError::NothingPushed(component_appid.to_owned()));
        };
        let outcome = self.send(Some(&last)).await;
        self.lock().count_push(c, &PushKind::Replay, &outcome);
        Ok(outcome)
    }
}
