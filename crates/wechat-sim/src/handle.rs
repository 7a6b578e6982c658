//! Running the simulator on a socket: [`spawn`] / [`spawn_on`] start the
//! server on a tokio task and return a [`SimHandle`] that knows the bound
//! address, reads and steers the state, and stops the server (gracefully
//! with [`SimHandle::shutdown`], abruptly on drop); [`serve`] is the bare
//! server for callers that bring their own task and shutdown future.
//!
//! No endpoint or rule lives here; this is lifecycle only.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::faults::Faults;
use crate::routes::router;
use crate::shared::{SimState, until_shutdown};
use crate::stats::Stats;
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
/// releases held requests and finishes in-flight replies. For callers that
/// run the server on their own task; [`spawn_on`] is this plus a handle.
pub async fn serve(
    listener: TcpListener,
    state: SimState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(state.clone());
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

    /// Revokes `token` (app or WeCom) at once; false if it was never issued.
    pub fn revoke(&self, token: &str) -> bool {
        self.state.revoke(token)
    }

    /// Clears today's quotas of app `id` (or empties the ticket windows of
    /// corp `id`; everything with `None`); false for an unknown id.
    pub fn clear_quota(&self, appid: Option<&str>) -> bool {
        self.state.clear_quota(appid)
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
