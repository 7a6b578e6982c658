//! Merchants acting on a component, as the admin API and [`SimHandle`]
//! drive them: authorize, re-authorize, revoke. Each changes the world
//! under the lock, then (unless asked not to) pushes the event WeChat
//! would send (`authorized` with a fresh `AuthorizationCode`,
//! `updateauthorized`, `unauthorized`) and reports how the push went.
//!
//! The rules of each change are `state/component/grants.rs`'; sealing and
//! sending are `push.rs`'.
//!
//! [`SimHandle`]: crate::SimHandle

use wxtoken_msgcrypt::event::ComponentEvent;

use crate::state::{Authorization, ComponentError};
use crate::token::Now;

use super::SimState;
use super::push::PushOutcome;

impl SimState {
    /// Authorizes `authorizer_appid` for `component_appid` (a new or
    /// revoked authorizer: `authorized`; one still authorized:
    /// `updateauthorized`), then pushes the event when `push`. The code in
    /// the result lets a test call `api_query_auth` itself.
    pub async fn authorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
        push: bool,
    ) -> Result<(Authorization, Option<PushOutcome>), ComponentError> {
        let (c, auth) = {
            let mut core = self.lock();
            let auth = core
                .world
                .authorize(component_appid, authorizer_appid, Now::current())?;
            (core.world.component_index(component_appid), auth)
        };
        tracing::info!(
            component_appid,
            authorizer_appid,
            info_type = auth.info_type,
            "authorized"
        );
        self.announce(c, &auth, push).await.map(|o| (auth, o))
    }

    /// Re-authorizes `authorizer_appid`, which must be authorized now:
    /// new refresh token (the older ones die), new code,
    /// `updateauthorized`.
    pub async fn update_authorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
        push: bool,
    ) -> Result<(Authorization, Option<PushOutcome>), ComponentError> {
        let (c, auth) = {
            let mut core = self.lock();
            let auth =
                core.world
                    .update_authorize(component_appid, authorizer_appid, Now::current())?;
            (core.world.component_index(component_appid), auth)
        };
        tracing::info!(component_appid, authorizer_appid, "re-authorized");
        self.announce(c, &auth, push).await.map(|o| (auth, o))
    }

    /// `authorizer_appid` revokes `component_appid`: its refresh tokens
    /// answer 61023, its access tokens 40001, it leaves the lists; then
    /// `unauthorized` is pushed when `push`.
    pub async fn unauthorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
        push: bool,
    ) -> Result<Option<PushOutcome>, ComponentError> {
        let (c, create_time) = {
            let mut core = self.lock();
            let at = core
                .world
                .unauthorize(component_appid, authorizer_appid, Now::current())?;
            (core.world.component_index(component_appid), at)
        };
        tracing::info!(component_appid, authorizer_appid, "unauthorized");
        if !push {
            return Ok(None);
        }
        let c = c.ok_or_else(|| ComponentError::UnknownComponent(component_appid.to_owned()))?;
        let event = ComponentEvent::Unauthorized {
            appid: component_appid.to_owned(),
            create_time,
            authorizer_appid: authorizer_appid.to_owned(),
        };
        Ok(Some(self.push_event(c, &event).await))
    }

    /// Pushes the event of `auth` for component `c` when `push`.
    async fn announce(
        &self,
        c: Option<u16>,
        auth: &Authorization,
        push: bool,
    ) -> Result<Option<PushOutcome>, ComponentError> {
        if !push {
            return Ok(None);
        }
        let c = c.ok_or_else(|| ComponentError::UnknownComponent(auth.component_appid.clone()))?;
        let (appid, create_time) = (auth.component_appid.clone(), auth.create_time);
        let (authorizer_appid, authorization_code) = (
            auth.authorizer_appid.clone(),
            auth.authorization_code.clone(),
        );
        let code_expires_at = auth.code_expires_at;
        let event = if auth.info_type == "updateauthorized" {
            ComponentEvent::UpdateAuthorized {
                appid,
                create_time,
                authorizer_appid,
                authorization_code,
                code_expires_at,
            }
        } else {
            ComponentEvent::Authorized {
                appid,
                create_time,
                authorizer_appid,
                authorization_code,
                code_expires_at,
            }
        };
        Ok(Some(self.push_event(c, &event).await))
    }
}
