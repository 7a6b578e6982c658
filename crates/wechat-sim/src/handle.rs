//! Running the simulator on a socket: [`spawn`] / [`spawn_on`] start the
//! server on a tokio task and return a [`SimHandle`] that knows the bound
//! address, reads and steers the state, and stops the server (gracefully
//! with [`SimHandle::shutdown`], abruptly on drop); [`serve`] is the bare
//! server for callers that bring their own task and shutdown future.
//!
//! [`serve`] also starts the verify-ticket push loops (one per component).
//! No endpoint or rule lives here; this is lifecycle only.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::faults::Faults;
use crate::routes::router;
use crate::shared::{Forgery, PushOutcome, SimState, until_shutdown};
use crate::state::{Authorization, ComponentError};
use crate::stats::{AuthorizerStats, Stats};
use crate::token::TokenState;

/// How long [`SimHandle::shutdown`] waits for in-flight replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Starts a simulator on `127.0.0.1:0` (a free port).
pub async fn spawn(config: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding 127.0.0.1:0 for wechat-sim")?;
    spawn_on(listener, config).await
}

/// Starts a simulator on an already-bound listener.
pub async fn spawn_on(listener: TcpListener, config: SimConfig) -> anyhow::Result<SimHandle> {
    let state = SimState::new(config).context("invalid wechat-sim config")?;
    let addr = listener
        .local_addr()
        .context("reading wechat-sim's bound address")?;
    let task = tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    tracing::info!(%addr, "wechat-sim listening");
    Ok(SimHandle {
        state,
        addr,
        task: Some(task),
    })
}

/// Serves `state` on `listener` until `shutdown` completes (or
/// [`SimHandle::shutdown`] is called on a handle sharing the state), then
/// releases held requests and finishes in-flight replies. Also runs the
/// components' verify-ticket push loops until then (call it once per
/// state). For callers that run the server on their own task; [`spawn_on`]
/// is this plus a handle.
pub async fn serve(
    listener: TcpListener,
    state: SimState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(state.clone());
    state.start_push_loops();
    let signal = {
        let state = state.clone();
        async move {
            tokio::select! {
                () = shutdown => state.begin_shutdown(),
                () = until_shutdown(state.shutdown_signal()) => {}
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
    {
        tracing::error!(error = %e, "wechat-sim server stopped with an error");
    }
}

/// A running simulator. Dropping it stops the server (the task is aborted);
/// [`SimHandle::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct SimHandle {
    state: SimState,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, no trailing slash: the upstream base URL to
    /// give a coordinator.
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// `http://127.0.0.1:PORT/qyapi`, no trailing slash: the WeCom
    /// (qyapi.weixin.qq.com) base URL, served on the same listener.
    pub fn wecom_base_url(&self) -> String {
        format!("{}{}", self.base_url(), crate::routes::WECOM_PREFIX)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (for calling [`router`] in-process, or anything the
    /// handle does not forward).
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// A snapshot of counters, quotas and issued tokens.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Forgets tokens, counters, quotas and faults.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// A third party fetches a new `cgi-bin/token` token (source
    /// `external`, uses quota, not a fleet fetch). `None` for an unknown app
    /// or a used-up quota.
    pub fn external_refresh(&self, appid: &str) -> Option<String> {
        self.state.external_refresh(appid)
    }

    /// What a use endpoint would say about `token` now (not counted).
    pub fn token_state(&self, token: &str) -> TokenState {
        self.state.token_state(token)
    }

    /// A single-use login code (`wx.login` / OAuth) for `appid`'s user
    /// `openid`; `None` for an unknown app.
    pub fn login_code(&self, appid: &str, openid: &str) -> Option<String> {
        self.state.login_code(appid, openid, false)
    }

    /// A login code whose exchange WeChat refuses as a risky user (40226).
    pub fn risky_login_code(&self, appid: &str, openid: &str) -> Option<String> {
        self.state.login_code(appid, openid, true)
    }

    /// Revokes `token` (app or WeCom) at once; false if it was never issued.
    pub fn revoke(&self, token: &str) -> bool {
        self.state.revoke(token)
    }

    /// Clears today's quotas of app `id` (or empties the ticket windows of
    /// corp `id`; everything with `None`); false for an unknown id.
    pub fn clear_quota(&self, appid: Option<&str>) -> bool {
        self.state.clear_quota(appid)
    }

    /// The latest verify ticket of `component_appid` (what its receiver
    /// should hold now).
    pub fn verify_ticket(&self, component_appid: &str) -> Option<String> {
        self.state.verify_ticket(component_appid)
    }

    /// A merchant authorizes `authorizer_appid` for `component_appid`:
    /// a refresh token and a code are minted, and `authorized` (or, for an
    /// authorizer still authorized, `updateauthorized`) is pushed. The
    /// code lets a test call `api_query_auth` itself.
    pub async fn authorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<(Authorization, PushOutcome), ComponentError> {
        let (auth, push) = self
            .state
            .authorize(component_appid, authorizer_appid, true)
            .await?;
        Ok((auth, push.unwrap_or(PushOutcome::NoEventUrl)))
    }

    /// Authorizes without pushing anything.
    pub async fn authorize_quietly(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<Authorization, ComponentError> {
        let (auth, _) = self
            .state
            .authorize(component_appid, authorizer_appid, false)
            .await?;
        Ok(auth)
    }

    /// A merchant re-authorizes (`updateauthorized`): a new refresh token
    /// (older ones die) and a new code, pushed.
    pub async fn update_authorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<(Authorization, PushOutcome), ComponentError> {
        let (auth, push) = self
            .state
            .update_authorize(component_appid, authorizer_appid, true)
            .await?;
        Ok((auth, push.unwrap_or(PushOutcome::NoEventUrl)))
    }

    /// A merchant revokes (`unauthorized`, pushed): refresh tokens 61023,
    /// access tokens 40001, out of the lists.
    pub async fn unauthorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<PushOutcome, ComponentError> {
        let push = self
            .state
            .unauthorize(component_appid, authorizer_appid, true)
            .await?;
        Ok(push.unwrap_or(PushOutcome::NoEventUrl))
    }

    /// Creates `n` authorizers at once, without codes or pushes.
    pub fn bulk_authorize(&self, component_appid: &str, n: usize) -> Result<usize, ComponentError> {
        self.state.bulk_authorize(component_appid, n)
    }

    /// Mints a new verify ticket for `component_appid` and pushes it now.
    pub async fn push_verify_ticket(
        &self,
        component_appid: &str,
    ) -> Result<PushOutcome, ComponentError> {
        self.state.push_verify_ticket(component_appid).await
    }

    /// Sends a push a correct receiver must refuse.
    pub async fn push_forged(
        &self,
        component_appid: &str,
        forgery: Forgery,
    ) -> Result<PushOutcome, ComponentError> {
        self.state.push_forged(component_appid, forgery).await
    }

    /// Sends the last genuine push again, byte for byte.
    pub async fn replay_last_push(
        &self,
        component_appid: &str,
    ) -> Result<PushOutcome, ComponentError> {
        self.state.replay_last_push(component_appid).await
    }

    /// One authorizer's full entry: counters, current refresh token, live
    /// access tokens.
    pub fn authorizer_stats(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Option<AuthorizerStats> {
        self.state
            .authorizer_stats(component_appid, authorizer_appid)
    }

    /// Stops accepting, releases held requests and waits (up to 5 s) for
    /// in-flight replies to finish.
    pub async fn shutdown(mut self) {
        self.state.begin_shutdown();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            tracing::warn!("wechat-sim did not stop within the grace period; aborting");
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.state.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
