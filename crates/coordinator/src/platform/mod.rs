//! `platform`: third-party platforms (SPEC §9) at run time — the registry
//! of each component's authorizers (`registry.rs`), the event URL's pushes
//! (`push.rs`) and the two component calls they make (`wechat.rs`). The
//! component and authorizer tokens themselves are kinds (`kind::component`,
//! `kind::authorizer`) refreshed like every other credential.

mod push;
mod registry;
mod wechat;

use wxtoken_client::events::{ConnectionState, EventSink};
use wxtoken_common::CredentialRef;
use wxtoken_common::wire::Event;

pub use push::{CLOCK_WINDOW, PushQuery, Pushes, Refused};
pub use registry::{Hint, Registry, RegistryError, SYNC_INTERVAL};
pub use wechat::PAGE;

/// The open platform of one replica, for its HTTP API.
#[derive(Debug, Clone)]
pub struct Platform {
    pub pushes: Pushes,
    pub registry: Registry,
}

/// Forwards `authorizer` events (heard on components' channels) and
/// `wxtoken promote`'s to the registry; everything else is the schedule's
/// and the cache's.
#[derive(Debug)]
pub struct RegistryHints(pub tokio::sync::mpsc::Sender<Hint>);

impl EventSink for RegistryHints {
    fn on_event(&self, cref: &CredentialRef, event: Event) {
        // Full: the periodic sync catches up.
        match event {
            Event::Authorizer { appid, .. } => {
                let _ = self.0.try_send(Hint::Authorizer {
                    component: cref.id.clone(),
                    appid,
                });
            }
            Event::RefreshRequested {
                reason: Some(reason),
                ..
            } if reason == "promoted" => {
                let _ = self.0.try_send(Hint::Promoted);
            }
            _ => {}
        }
    }

    fn on_connection(&self, _: ConnectionState) {}
}
