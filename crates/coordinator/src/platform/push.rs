//! The component event URL (`POST /wechat/components/{id}/events`, SPEC
//! §9): WeChat's encrypted pushes, checked and acted on ([`Pushes`]).
//!
//! A push is accepted only with `encrypt_type=aes`, a timestamp within
//! [`CLOCK_WINDOW`] of ours, a valid `msg_signature` over the `Encrypt`
//! field, a frame that decrypts for this component's appid, an inner
//! `AppId` that is the component's, and a signature not seen before within
//! the window (fleet-wide, so a replay to another replica is refused too).
//! A refusal names its reason and never the body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, CredentialRef};
use wxtoken_msgcrypt::MsgCrypt;
use wxtoken_msgcrypt::event::{self, ComponentEvent};

use super::registry::{Registry, RegistryError};
use crate::catalog::Catalog;
use crate::refresher::Refresher;

/// How far a push's timestamp may be from our clock (WeChat retries a
/// push for about 15 s; SDKs commonly allow 5 minutes).
pub const CLOCK_WINDOW: Duration = Duration::from_secs(300);

/// How long a push waits for its authorization code's exchange before
/// answering (WeChat gives up after 5 s).
const AUTHORIZE_WAIT: Duration = Duration::from_secs(3);

/// Signatures remembered per replica before old ones are pruned (WeChat
/// pushes a few a minute per component).
const MAX_SEEN: usize = 10_000;

/// The query of a push.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PushQuery {
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

/// Why a push was refused (its `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    UnknownComponent,
    NotEncrypted,
    MissingField,
    StaleTimestamp,
    BadSignature,
    Undecryptable,
    WrongAppid,
    BadEvent,
    Replayed,
    /// Redis could not record or check it: WeChat retries.
    Unavailable,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownComponent => "unknown_component",
            Self::NotEncrypted => "not_encrypted",
            Self::MissingField => "missing_field",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
            Self::Undecryptable => "undecryptable",
            Self::WrongAppid => "wrong_appid",
            Self::BadEvent => "bad_event",
            Self::Replayed => "replayed",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The event receivers of one replica's components.
#[derive(Debug, Clone)]
pub struct Pushes {
    /// Per component, its message crypt; swapped whole on a config reload.
    crypts: Arc<ArcSwap<HashMap<CredentialId, MsgCrypt>>>,
    /// Signatures this replica accepted within the window: a replay is
    /// refused even after Redis lost the fleet's marks.
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    refresher: Arc<Refresher>,
    registry: Registry,
}

impl Pushes {
    pub fn new(catalog: &Catalog, refresher: Arc<Refresher>, registry: Registry) -> Self {
        Self {
            crypts: Arc::new(ArcSwap::from_pointee(crypts_of(catalog))),
            seen: Arc::default(),
            refresher,
            registry,
        }
    }

    /// Takes the components' event-URL secrets from `catalog` again (after a
    /// config reload swapped it).
    pub fn reload(&self, catalog: &Catalog) {
        self.crypts.store(Arc::new(crypts_of(catalog)));
    }

    /// Checks and handles one push; `Ok` means answer `success`.
    pub async fn receive(
        &self,
        component: &str,
        q: &PushQuery,
        body: &[u8],
    ) -> Result<&'static str, Refused> {
        let result = self.open(component, q, body).await;
        let event = match result {
            Ok(e) => e,
            Err(why) => {
                crate::metrics::push(component, why.as_str());
                warn!(component = %component, reason = why.as_str(), bytes = body.len(), "component push refused");
                return Err(why);
            }
        };
        let Ok(id) = CredentialId::parse(component) else {
            return Err(Refused::UnknownComponent);
        };
        let kind = event.info_type().to_owned();
        if let Err(why) = self.handle(&id, event).await {
            // Not kept: WeChat's retry of this very push must not be taken
            // for a replay.
            if let Some(sig) = &q.msg_signature {
                self.forget(&id, sig).await;
            }
            crate::metrics::push(component, why.as_str());
            warn!(component = %component, reason = why.as_str(), "component push not kept; WeChat will push it again");
            return Err(why);
        }
        crate::metrics::push(component, "accepted");
        info!(component = %component, info_type = %kind, "component push accepted");
        Ok("success")
    }

    async fn open(
        &self,
        component: &str,
        q: &PushQuery,
        body: &[u8],
    ) -> Result<ComponentEvent, Refused> {
        let crypts = self.crypts.load_full();
        let (id, crypt) = crypts
            .get_key_value(component)
            .ok_or(Refused::UnknownComponent)?;
        if q.encrypt_type.as_deref() != Some("aes") {
            return Err(Refused::NotEncrypted);
        }
        let (Some(ts), Some(nonce), Some(sig)) = (&q.timestamp, &q.nonce, &q.msg_signature) else {
            return Err(Refused::MissingField);
        };
        let ts_secs: i64 = ts.trim().parse().map_err(|_| Refused::MissingField)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if now.abs_diff(ts_secs) > CLOCK_WINDOW.as_secs() {
            return Err(Refused::StaleTimestamp);
        }
        let xml = crypt.open(body, ts, nonce, sig).map_err(|e| match e {
            wxtoken_msgcrypt::CryptError::BadSignature => Refused::BadSignature,
            wxtoken_msgcrypt::CryptError::WrongAppid => Refused::WrongAppid,
            wxtoken_msgcrypt::CryptError::BadXml => Refused::BadEvent,
            _ => Refused::Undecryptable,
        })?;
        let event = event::parse(&xml).map_err(|_| Refused::BadEvent)?;
        if event.appid() != crypt.appid() {
            return Err(Refused::WrongAppid);
        }
        // Signed and fresh: refuse it if this replica or the fleet has seen
        // it already.
        if !self.first_here(sig) {
            return Err(Refused::Replayed);
        }
        let first = self
            .refresher
            .store()
            .first_push(id, sig, CLOCK_WINDOW * 2)
            .await
            .map_err(|_| Refused::Unavailable)?;
        if !first {
            return Err(Refused::Replayed);
        }
        Ok(event)
    }

    async fn forget(&self, component: &CredentialId, sig: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(sig);
        }
        let _ = self.refresher.store().forget_push(component, sig).await;
    }

    fn first_here(&self, sig: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        let window = CLOCK_WINDOW * 2;
        if seen.len() >= MAX_SEEN {
            seen.retain(|_, at| at.elapsed() < window);
        }
        match seen.get(sig) {
            Some(at) if at.elapsed() < window => false,
            _ => {
                seen.insert(sig.to_owned(), Instant::now());
                true
            }
        }
    }

    async fn handle(&self, component: &CredentialId, event: ComponentEvent) -> Result<(), Refused> {
        match event {
            ComponentEvent::VerifyTicket { ticket, .. } => {
                let ticket = SecretString::from(ticket);
                self.refresher
                    .vault()
                    .set_verify_ticket(component, &ticket)
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                // A component failing (waiting for a ticket) tries again now.
                let cref = CredentialRef::token(component.clone());
                let store = self.refresher.store();
                if store.failing(&cref).await.unwrap_or(false) {
                    let _ = store.clear_gate(&cref).await;
                    let event = Event::RefreshRequested {
                        generation: 0,
                        reason: Some("verify_ticket".into()),
                        force: false,
                    };
                    let _ = store.publish(&cref, &event).await;
                }
            }
            ComponentEvent::Authorized {
                authorization_code,
                authorizer_appid,
                ..
            }
            | ComponentEvent::UpdateAuthorized {
                authorization_code,
                authorizer_appid,
                ..
            } => {
                // Registered before the answer, so a replica that dies
                // meanwhile answers nothing and WeChat pushes again. WeChat
                // wants its answer within 5 s: past AUTHORIZE_WAIT the
                // exchange goes on in the background and `success` goes out.
                let registry = self.registry.clone();
                let component = component.clone();
                let task = tokio::spawn(async move {
                    let result = registry.authorize(&component, &authorization_code).await;
                    if let Err(e) = &result {
                        warn!(component = %component, authorizer = %authorizer_appid, error = %e, "could not register an authorizer from its push");
                    }
                    result
                });
                if let Ok(Ok(Err(RegistryError::Store(_) | RegistryError::NoComponentToken(_)))) =
                    tokio::time::timeout(AUTHORIZE_WAIT, task).await
                {
                    // Nothing kept: let WeChat push it again. (Registered,
                    // refused by WeChat — a used or expired code, which a
                    // retry would not help — or still running: success.)
                    return Err(Refused::Unavailable);
                }
            }
            ComponentEvent::Unauthorized {
                authorizer_appid, ..
            } => {
                self.registry
                    .revoke(component, &authorizer_appid)
                    .await
                    .map_err(|_| Refused::Unavailable)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The message crypt of each configured component.
fn crypts_of(catalog: &Catalog) -> HashMap<CredentialId, MsgCrypt> {
    catalog
        .components()
        .iter()
        .filter_map(|c| {
            // A followed component without its event-URL secrets takes no
            // pushes: its primary does.
            MsgCrypt::new(
                c.token.as_ref()?.expose_secret(),
                c.encoding_aes_key.as_ref()?.expose_secret(),
                &c.component_appid,
            )
            .ok()
            .map(|m| (c.id.clone(), m))
        })
        .collect()
}
