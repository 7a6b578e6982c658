//! `http`: the coordinator's HTTP API (SPEC §6, §8) — the JSON API for
//! tokens (`v1`) and tickets and JS-SDK signatures (`tickets`),
//! WeChat-compatible endpoints (`compat`: WeChat's and WeCom's own paths),
//! the gateway to WeChat's business APIs (`gateway`),
//! health and metrics (`health`), the live status page (`ui`).
//!
//! Handlers read through the replica's [`TokenClient`] (the same cache and
//! event stream as the client library, not a second copy) and never call
//! WeChat themselves: the gateway's calls go through `upstream::proxy`,
//! with the token the fleet stored. [`router`] builds everything from an [`HttpState`], so handler
//! tests run without a socket; [`serve`] takes an already-bound listener and
//! a shutdown future. The request log and metrics record the matched route,
//! never the URI: `/cgi-bin/token` carries a secret in its query string.

mod api;
mod auth;
mod compat;
mod dropin;
pub mod error;
mod gateway;
mod guess;
mod health;
mod json;
pub mod keys;
mod listener;
mod login;
mod observe;
mod permissions;
mod platform;
pub mod reload;
mod tickets;
pub mod tls;
pub mod ui;
mod v1;
mod watch;
mod watch_component;

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use wxtoken_client::TokenClient;

use crate::catalog::Catalog;
use crate::config::{AppConfig, Config, ConfigError, UpstreamApi, WecomConfig};
use crate::store::TokenStore;
use error::ApiFailure;

pub use api::Api;
pub use auth::secret_eq;
pub use compat::{FORCE_DAILY, FORCE_SPACING};
pub use guess::{Admission, GuessLimiter};
pub use keys::ApiKey;
pub use listener::{ConnLimits, Peer, serve};

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct HttpState(Arc<Shared>);

pub struct Shared {
    pub client: TokenClient,
    pub store: TokenStore,
    /// Every credential the replica keeps: what the routes resolve ids against.
    pub catalog: Arc<Catalog>,
    /// The app and WeCom entries, for the compatible endpoints that
    /// authenticate by the app's (or agent's) own secret.
    /// Swapped whole by a config reload ([`HttpState::replace_config`]).
    pub apps: ArcSwap<Vec<Arc<AppConfig>>>,
    pub wecom: ArcSwap<Vec<Arc<WecomConfig>>>,
    /// The keys accepted now (`api_keys` and scoped keys), reloadable.
    pub keys: keys::KeyStore,
    pub token_wait: Duration,
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// For `expires_in` of the WeChat-compatible endpoints (see `compat`).
    pub refresh: crate::config::RefreshConfig,
    pub metrics: PrometheusHandle,
    /// The refresh loops' knowledge of each token's life, for `/metrics`.
    pub ttls: Arc<crate::refresher::TtlBook>,
    /// Handles of the per-request metrics, kept so requests do not look them up.
    http_metrics: observe::HttpMetrics,
    /// Failed secret checks of the compatible token endpoints.
    pub guess: GuessLimiter,
    /// The open platform (event URL, registry), when components are configured.
    pub platform: Option<crate::platform::Platform>,
    /// The gateway's WeChat client (`/wx/{id}/…`) and its limits.
    pub gateway: crate::upstream::proxy::Proxy,
    pub gateway_config: crate::config::GatewayConfig,
    /// Handles of the gateway's per-call metrics, kept so calls do not
    /// build labels and look them up.
    gateway_series: crate::metrics::GatewaySeries,
    /// Tokens the fleet stored, for the drop-in API base (`dropin`).
    pub tokens: dropin::TokenIndex,
    /// WeChat, for the code exchanges (`login`).
    pub upstream: crate::upstream::Upstream,
    /// The generation of the config in force (1 at start; set by
    /// `live_config` on every applied reload), for the status page.
    pub config_generation: std::sync::atomic::AtomicU64,
    /// The status page's sessions and refresh timeline (`ui`).
    pub ui: ui::UiState,
}

impl std::ops::Deref for HttpState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("apps", &self.apps.load().len())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// Builds the state from the config (reads the API key file or variable).
    pub fn new(
        config: &Config,
        catalog: Arc<Catalog>,
        client: TokenClient,
        store: TokenStore,
        ttls: Arc<crate::refresher::TtlBook>,
        platform: Option<crate::platform::Platform>,
    ) -> Result<Self, ConfigError> {
        let timeline = Arc::default();
        Self::with_timeline(config, catalog, client, store, ttls, platform, timeline)
    }

    /// [`Self::new`], the status page's timeline fed by the replica's event
    /// subscription (`ReplicaHandle` adds it to its sinks).
    pub fn with_timeline(
        config: &Config,
        catalog: Arc<Catalog>,
        client: TokenClient,
        store: TokenStore,
        ttls: Arc<crate::refresher::TtlBook>,
        platform: Option<crate::platform::Platform>,
        timeline: Arc<ui::Timeline>,
    ) -> Result<Self, ConfigError> {
        Ok(Self(Arc::new(Shared {
            client,
            store,
            catalog,
            apps: ArcSwap::from_pointee(config.apps.iter().cloned().map(Arc::new).collect()),
            wecom: ArcSwap::from_pointee(config.wecom.iter().cloned().map(Arc::new).collect()),
            keys: keys::KeyStore::new(config)?,
            token_wait: config.http.token_wait,
            request_timeout: config.http.request_timeout,
            body_limit: config.http.body_limit,
            refresh: config.refresh.clone(),
            metrics: crate::metrics::install(),
            ttls,
            http_metrics: observe::HttpMetrics::default(),
            guess: GuessLimiter::new(
                config.http.secret_failures_per_minute,
                config.http.secret_failures_per_minute_per_app,
            ),
            platform,
            gateway: crate::upstream::proxy::Proxy::new(&config.gateway)
                .map_err(|e| ConfigError::new("gateway", e.to_string()))?,
            gateway_config: config.gateway.clone(),
            gateway_series: crate::metrics::GatewaySeries::default(),
            tokens: dropin::TokenIndex::default(),
            upstream: crate::upstream::Upstream::new(config.refresh.upstream_timeout, 16)
                .map_err(|e| ConfigError::new("upstream", e.to_string()))?,
            ui: ui::UiState::new(timeline),
            config_generation: std::sync::atomic::AtomicU64::new(1),
        })))
    }

    /// The credential serving `appid`, preferring one that uses `prefer`.
    pub fn app_by_appid(&self, appid: &str, prefer: UpstreamApi) -> Option<Arc<AppConfig>> {
        let apps = self.apps.load();
        let mut matching = apps.iter().filter(|a| a.appid == appid);
        let first = matching.next()?;
        if first.api == prefer {
            return Some(first.clone());
        }
        Some(matching.find(|a| a.api == prefer).unwrap_or(first).clone())
    }

    /// Takes the apps and WeCom agents of a reloaded `config`, and the
    /// components' event-URL secrets from the (already swapped) catalog.
    /// The keys are the key store's: [`keys::KeyStore::replace_config`].
    pub fn replace_credentials(&self, config: &Config) {
        self.apps.store(Arc::new(
            config.apps.iter().cloned().map(Arc::new).collect(),
        ));
        self.wecom.store(Arc::new(
            config.wecom.iter().cloned().map(Arc::new).collect(),
        ));
        if let Some(platform) = &self.platform {
            platform.pushes.reload(&self.catalog);
        }
    }
}

/// Every route. `with_metrics`: also serve `/metrics` here (false when
/// `[http] metrics_listen` puts it on its own listener).
pub fn router(state: HttpState, with_metrics: bool) -> Router {
    let mut r = Router::new()
        .route("/v1/apps", get(v1::list_apps))
        .route("/v1/credentials", get(v1::list_credentials))
        .route("/v1/apps/{id}/access_token", get(v1::access_token))
        .route(
            "/v1/apps/{id}/access_token/invalidate",
            post(v1::invalidate),
        )
        .route("/v1/apps/{id}/access_token/watch", get(watch::access_token))
        .route("/v1/apps/{id}/tickets/{type}/watch", get(watch::ticket))
        .route("/v1/components/{id}/watch", get(watch_component::component))
        .route("/v1/apps/{id}/tickets/{type}", get(tickets::ticket))
        .route(
            "/v1/apps/{id}/tickets/{type}/invalidate",
            post(tickets::invalidate),
        )
        .route("/v1/apps/{id}/jsapi_signature", post(tickets::signature))
        .route("/cgi-bin/token", get(compat::token))
        .route(
            "/cgi-bin/stable_token",
            post(compat::stable_token).get(compat::stable_token_get),
        )
        .route("/cgi-bin/ticket/getticket", get(compat::getticket))
        .route("/cgi-bin/gettoken", get(compat::wecom_gettoken))
        .route("/cgi-bin/get_jsapi_ticket", get(compat::wecom_jsapi_ticket))
        .route("/cgi-bin/ticket/get", get(compat::wecom_agent_ticket))
        .route("/wechat/components/{id}/events", post(platform::events))
        .route(
            "/v1/components/{id}/authorizers",
            get(platform::list).post(platform::register),
        )
        .route(
            "/v1/components/{id}/authorizers/import",
            post(platform::import),
        )
        // WeChat's APIs are GET and POST (and CONNECT's 2xx would be a tunnel).
        .route("/v1/apps/{id}/jscode2session", post(login::jscode2session))
        .route(
            "/v1/apps/{id}/oauth2/access_token",
            post(login::oauth2_access_token),
        )
        .route(
            "/v1/apps/{id}/oauth2/refresh_token",
            post(login::oauth2_refresh_token),
        )
        .route("/sns/jscode2session", get(login::sns_jscode2session))
        .route(
            "/sns/oauth2/access_token",
            get(login::sns_oauth2_access_token),
        )
        .route(
            "/sns/oauth2/refresh_token",
            get(login::sns_oauth2_refresh_token),
        )
        .route("/wx/{id}/{*path}", get(gateway::proxy).post(gateway::proxy))
        .merge(dropin_routes())
        .merge(ui::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if with_metrics {
        r = r.route("/metrics", get(health::metrics));
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .with_state(state)
}

/// [`router`] with the gateway's direct path in front (what the API
/// listener serves).
pub fn api(state: HttpState, with_metrics: bool) -> Api {
    Api::new(state.clone(), router(state, with_metrics))
}

/// WeChat's API paths beside the compatible token endpoints: an SDK whose
/// API base is the coordinator calls them with its `access_token`.
fn dropin_routes() -> Router<HttpState> {
    const PREFIXES: [&str; 14] = [
        "/cgi-bin",
        "/wxa",
        "/datacube",
        "/card",
        "/merchant",
        "/customservice",
        "/shop",
        "/product",
        "/wxaapi",
        "/semantic",
        "/tcb",
        "/union",
        "/channels",
        "/wxopen",
    ];
    PREFIXES.iter().fold(Router::new(), |r, p| {
        r.route(
            &format!("{p}/{{*rest}}"),
            get(dropin::drop_in).post(dropin::drop_in),
        )
    })
}

/// Only `/metrics`, for a separate listener.
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiFailure {
    ApiFailure::NotFound
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure::MethodNotAllowed
}
