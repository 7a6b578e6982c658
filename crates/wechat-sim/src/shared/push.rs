//! Pushes to component event URLs, as WeChat sends them: `POST
//! {event_url}?timestamp=&nonce=&encrypt_type=aes&msg_signature=` with the
//! sealed `<xml><AppId/><Encrypt/></xml>` body (`wxtoken_msgcrypt`), one
//! try with a 5 s timeout, the receiver expected to answer `success`.
//! Delivered: `component_verify_ticket` every `ticket_interval` (a policy
//! loop around [`SimState::push_ticket_step`]), the authorization events
//! the admin API causes; forgeries and replays bend these in
//! `forgery.rs`.
//!
//! Harsher reading: a failed push is not retried (WeChat retries message
//! pushes; nothing documents retries of ticket pushes), and the ticket it
//! carried still supersedes the one before (`state/component`).
//!
//! Which ticket or code a push carries is `state`'s; this module seals,
//! sends, and counts the outcome.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};
use wxtoken_msgcrypt::MsgCrypt;
use wxtoken_msgcrypt::event::ComponentEvent;

use crate::config::SimConfig;
use crate::state::ComponentError;
use crate::stats::ComponentStats;
use crate::token::Now;

use super::forgery::Forgery;
use super::{SimState, bump, until_shutdown};

/// How long a receiver has to answer (WeChat: 5 s).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The appid a `wrong_appid` forgery is sealed for (`forgery.rs`).
const FORGED_APPID: &str = "wxf0f0f0f0f0f0f0f0";

/// What became of one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PushOutcome {
    /// 2xx with the body `success`.
    Success { status: u16 },
    /// 2xx with any other body (WeChat would count it a failure).
    NotSuccess { status: u16 },
    /// A non-2xx status.
    HttpError { status: u16 },
    /// No answer within 5 s.
    Timeout,
    /// No connection (refused, reset, DNS).
    Connect,
    /// The component has no event URL: nothing was sent.
    NoEventUrl,
    /// The simulator has no HTTP client (it failed to build one).
    NoClient,
}

impl PushOutcome {
    /// True when the receiver answered `success`.
    pub fn is_success(&self) -> bool {
        matches!(self, PushOutcome::Success { .. })
    }

    /// The `pushes_failed` cause, `None` for a success or nothing sent.
    fn cause(&self) -> Option<String> {
        match self {
            PushOutcome::Success { .. } | PushOutcome::NoEventUrl => None,
            PushOutcome::NotSuccess { .. } => Some("not_success".to_owned()),
            PushOutcome::HttpError { status } => Some(format!("http_{status}")),
            PushOutcome::Timeout => Some("timeout".to_owned()),
            PushOutcome::Connect => Some("connect".to_owned()),
            PushOutcome::NoClient => Some("client".to_owned()),
        }
    }
}

/// One component's push address and seals.
#[derive(Debug)]
pub(super) struct PushTarget {
    pub(super) crypt: MsgCrypt,
    /// The same token and key sealing for another appid.
    pub(super) forger: Option<MsgCrypt>,
    pub(super) event_url: Option<String>,
}

/// Everything pushes need that never changes after start.
#[derive(Debug)]
pub(super) struct Pusher {
    targets: Vec<Option<PushTarget>>,
    http: Option<reqwest::Client>,
    interval: Duration,
}

impl Pusher {
    pub(super) fn new(config: &SimConfig) -> Self {
        let targets = config
            .components
            .iter()
            .map(|c| {
                // `SimConfig::validate` made sure the key is usable.
                let crypt =
                    MsgCrypt::new(&c.token, &c.encoding_aes_key, &c.component_appid).ok()?;
                Some(PushTarget {
                    crypt,
                    forger: MsgCrypt::new(&c.token, &c.encoding_aes_key, FORGED_APPID).ok(),
                    event_url: c.event_url.clone(),
                })
            })
            .collect();
        // A fresh connection per push, as WeChat's servers make them: a
        // pooled one the event URL closed after refusing a push (a 413
        // before the body was read) raced the next push into a failed send.
        let http = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build();
        if let Err(e) = &http {
            tracing::error!(error = %e, "wechat-sim cannot build an HTTP client: pushes will fail");
        }
        Self {
            targets,
            http: http.ok(),
            interval: config.ticket_interval,
        }
    }
}

/// A push as sent, kept for a replay.
#[derive(Debug, Clone)]
pub(super) struct SentPush {
    pub(super) url: String,
    pub(super) body: String,
}

/// What kind of push is being counted.
pub(super) enum PushKind<'a> {
    Genuine(&'a str),
    Forged(Forgery),
    Replay,
}

pub(super) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn signed_url(base: &str, timestamp: &str, nonce: &str, signature: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!(
        "{base}{sep}timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}"
    )
}

fn count(stats: &mut ComponentStats, kind: &PushKind<'_>, outcome: &PushOutcome) {
    if *outcome == PushOutcome::NoEventUrl {
        return;
    }
    match kind {
        PushKind::Genuine(info_type) => {
            bump(&mut stats.pushes, info_type);
            match outcome.cause() {
                None => stats.pushes_ok += 1,
                Some(cause) => *stats.pushes_failed.entry(cause).or_default() += 1,
            }
        }
        PushKind::Forged(f) => {
            bump(&mut stats.forged_pushes, f.as_str());
            stats.forged_accepted += u64::from(outcome.is_success());
        }
        PushKind::Replay => {
            stats.replays += 1;
            stats.replays_accepted += u64::from(outcome.is_success());
        }
    }
}

impl SimState {
    pub(super) fn target(&self, c: u16) -> Option<&PushTarget> {
        self.inner.pusher.targets.get(usize::from(c))?.as_ref()
    }

    pub(super) fn component_or(&self, component_appid: &str) -> Result<u16, ComponentError> {
        self.lock()
            .world
            .component_index(component_appid)
            .ok_or_else(|| ComponentError::UnknownComponent(component_appid.to_owned()))
    }

    /// Starts one verify-ticket loop per component: the ticket minted at
    /// start goes out at once, a new one every `ticket_interval`, until
    /// shutdown. `serve` calls this.
    pub(crate) fn start_push_loops(&self) {
        let interval = self.inner.pusher.interval;
        for c in 0..self.inner.pusher.targets.len() {
            let Ok(c) = u16::try_from(c) else { break };
            let state = self.clone();
            tokio::spawn(async move {
                let mut mint = false;
                loop {
                    let step = state.push_ticket_step(c, mint);
                    tokio::select! {
                        _ = step => {}
                        () = until_shutdown(state.shutdown_signal()) => return,
                    }
                    mint = true;
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = until_shutdown(state.shutdown_signal()) => return,
                    }
                }
            });
        }
    }

    /// One tick of the ticket loop: mint a new verify ticket (or, with
    /// `mint == false`, take the latest) and push it.
    pub(crate) async fn push_ticket_step(&self, c: u16, mint: bool) -> PushOutcome {
        let (appid, ticket) = {
            let mut core = self.lock();
            let ticket = if mint {
                core.mint_ticket(c)
            } else {
                core.world.verify_ticket(c).map(str::to_owned)
            };
            (core.world.component_appid(c).map(str::to_owned), ticket)
        };
        let (Some(appid), Some(ticket)) = (appid, ticket) else {
            return PushOutcome::NoEventUrl;
        };
        let event = ComponentEvent::VerifyTicket {
            appid,
            create_time: unix_secs(),
            ticket,
        };
        self.push_event(c, &event).await
    }

    /// Mints a verify ticket for `component_appid` and pushes it now.
    pub async fn push_verify_ticket(
        &self,
        component_appid: &str,
    ) -> Result<PushOutcome, ComponentError> {
        let c = self.component_or(component_appid)?;
        Ok(self.push_ticket_step(c, true).await)
    }

    /// Seals `event` for component `c` and POSTs it to its event URL.
    pub(crate) async fn push_event(&self, c: u16, event: &ComponentEvent) -> PushOutcome {
        let Some(target) = self.target(c) else {
            return PushOutcome::NoEventUrl;
        };
        let timestamp = unix_secs().to_string();
        let nonce = rand::rng()
            .random_range(100_000_000u32..4_000_000_000)
            .to_string();
        let sealed = target.crypt.seal(&event.to_xml(), &timestamp, &nonce);
        let url = target
            .event_url
            .as_deref()
            .map(|base| signed_url(base, &timestamp, &nonce, &sealed.msg_signature));
        let sent = url.map(|url| SentPush {
            url,
            body: sealed.body,
        });
        let outcome = self.send(sent.as_ref()).await;
        let mut core = self.lock();
        if let Some(sent) = sent {
            core.last_push.insert(c, sent);
        }
        core.count_push(c, &PushKind::Genuine(event.info_type()), &outcome);
        tracing::debug!(
            component = c,
            info_type = event.info_type(),
            ?outcome,
            "push"
        );
        outcome
    }

    pub(super) async fn send(&self, push: Option<&SentPush>) -> PushOutcome {
        let Some(push) = push else {
            return PushOutcome::NoEventUrl;
        };
        let Some(http) = &self.inner.pusher.http else {
            return PushOutcome::NoClient;
        };
        let request = http
            .post(&push.url)
            .header("content-type", "text/xml")
            .body(push.body.clone());
        match request.send().await {
            Err(e) if e.is_timeout() => PushOutcome::Timeout,
            Err(_) => PushOutcome::Connect,
            Ok(resp) => {
                let status = resp.status().as_u16();
                if !resp.status().is_success() {
                    return PushOutcome::HttpError { status };
                }
                match resp.text().await {
                    Ok(body) if body.trim() == "success" => PushOutcome::Success { status },
                    Ok(_) => PushOutcome::NotSuccess { status },
                    Err(e) if e.is_timeout() => PushOutcome::Timeout,
                    Err(_) => PushOutcome::Connect,
                }
            }
        }
    }
}

impl super::Core {
    /// A new verify ticket for component `c`, counted.
    pub(super) fn mint_ticket(&mut self, c: u16) -> Option<String> {
        let ticket = self.world.mint_verify_ticket(c, Now::current())?;
        let appid = self.world.component_appid(c)?;
        if let Some(stats) = self.stats.components.get_mut(appid) {
            stats.verify_tickets_issued += 1;
        }
        Some(ticket)
    }

    pub(super) fn count_push(&mut self, c: u16, kind: &PushKind<'_>, outcome: &PushOutcome) {
        let Some(appid) = self.world.component_appid(c) else {
            return;
        };
        if let Some(stats) = self.stats.components.get_mut(appid) {
            count(stats, kind, outcome);
        }
    }
}
