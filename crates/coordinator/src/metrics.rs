//! Prometheus metrics: their names, the one recorder, and small functions
//! the rest of the coordinator calls to emit.
//!
//! Library code only emits (the `metrics` macros are no-ops until a recorder
//! is installed); [`install`] is called by whoever serves `/metrics`. Labels
//! carry credential ids, routes, classes and statuses — never a token, a
//! secret or an API key.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use wxtoken_common::CredentialId;

use crate::kind::Credential;

mod gateway;

pub use gateway::GatewaySeries;

pub const REFRESH_TOTAL: &str = "wxtoken_refresh_total";
pub const UPSTREAM_SECONDS: &str = "wxtoken_upstream_request_duration_seconds";
pub const LOCK_TOTAL: &str = "wxtoken_lock_attempts_total";
pub const QUOTA_USED: &str = "wxtoken_quota_used_today";
pub const TOKEN_TTL: &str = "wxtoken_token_ttl_seconds";
pub const INVALIDATIONS_TOTAL: &str = "wxtoken_invalidations_total";
pub const HTTP_TOTAL: &str = "wxtoken_http_requests_total";
pub const HTTP_SECONDS: &str = "wxtoken_http_request_duration_seconds";
pub const REPORT_REFUSALS_TOTAL: &str = "wxtoken_report_refusals_total";
pub const TOKEN_CHECKS_TOTAL: &str = "wxtoken_token_checks_total";
pub const FORCED_REFRESHES_TOTAL: &str = "wxtoken_forced_refreshes_total";
pub const SECRET_GUESSES_LIMITED_TOTAL: &str = "wxtoken_secret_guesses_limited_total";
pub const HTTP_CONNECTIONS_CLOSED_TOTAL: &str = "wxtoken_http_connections_closed_total";
pub const HTTP_CONNECTIONS_OPEN: &str = "wxtoken_http_connections_open";
pub const COMPONENT_PUSHES_TOTAL: &str = "wxtoken_component_pushes_total";
pub const AUTHORIZERS: &str = "wxtoken_authorizers";
pub const STALE_FETCHES_TOTAL: &str = "wxtoken_stale_fetches_total";
pub const GATEWAY_CALLS_TOTAL: &str = "wxtoken_gateway_calls_total";
pub const GATEWAY_SECONDS: &str = "wxtoken_gateway_call_duration_seconds";
pub const GATEWAY_CONNECTS_TOTAL: &str = "wxtoken_gateway_upstream_connects_total";
pub const CONFIG_GENERATION: &str = "wxtoken_config_generation";
pub const CONFIG_RELOADS_TOTAL: &str = "wxtoken_config_reloads_total";
pub const QUOTA_FOREIGN: &str = "wxtoken_quota_foreign_fetches";
pub const QUOTA_CHECKS_TOTAL: &str = "wxtoken_quota_checks_total";
pub const REDIS_UP: &str = "wxtoken_redis_up";
pub const REFRESH_LEAD: &str = "wxtoken_refresh_lead_seconds";
pub const QUOTA_BUDGET: &str = "wxtoken_quota_budget";
pub const FOLLOW_CONNECTED: &str = "wxtoken_follow_connected";
pub const FOLLOW_LAG_SECONDS: &str = "wxtoken_follow_lag_seconds";

/// Every metric name this crate defines, with its type and help text: the
/// dashboard and alert rules may use only these
/// (tests/tests/e2e/observability.rs); [`install`] describes each.
pub const ALL: &[(&str, MetricType, &str)] = &[
    (
        FOLLOW_CONNECTED,
        MetricType::Gauge,
        "1 while this replica follows the credential from its primary's watch stream, 0 while that stream is down (SPEC 12).",
    ),
    (
        FOLLOW_LAG_SECONDS,
        MetricType::Histogram,
        "A followed value's lag: the primary's send to the commit here (the two machines' clocks).",
    ),
    (
        REFRESH_TOTAL,
        MetricType::Counter,
        "Refresh steps by credential and outcome (refreshed, still_fresh, locked_elsewhere, failed_*).",
    ),
    (
        UPSTREAM_SECONDS,
        MetricType::Histogram,
        "Latency of calls to WeChat, by API.",
    ),
    (
        LOCK_TOTAL,
        MetricType::Counter,
        "Refresh lock attempts of this replica: acquired or contended.",
    ),
    (
        QUOTA_USED,
        MetricType::Gauge,
        "The fleet's upstream calls in the credential's current quota period.",
    ),
    (
        TOKEN_TTL,
        MetricType::Gauge,
        "Life left on the stored value, in seconds (0: none stored).",
    ),
    (
        INVALIDATIONS_TOTAL,
        MetricType::Counter,
        "Reports and invalidations of stored values, by result.",
    ),
    (
        HTTP_TOTAL,
        MetricType::Counter,
        "HTTP API requests by matched route and status.",
    ),
    (
        HTTP_SECONDS,
        MetricType::Histogram,
        "HTTP API request latency by matched route.",
    ),
    (
        REPORT_REFUSALS_TOTAL,
        MetricType::Counter,
        "Reports that led to no refresh, by reason.",
    ),
    (
        TOKEN_CHECKS_TOTAL,
        MetricType::Counter,
        "Reported values shown to WeChat, by verdict.",
    ),
    (
        FORCED_REFRESHES_TOTAL,
        MetricType::Counter,
        "Fresh values replaced because an operator forced it.",
    ),
    (
        SECRET_GUESSES_LIMITED_TOTAL,
        MetricType::Counter,
        "Guesses at an app secret answered with 45011 instead, by scope.",
    ),
    (
        HTTP_CONNECTIONS_CLOSED_TOTAL,
        MetricType::Counter,
        "Connections closed by the server, by reason.",
    ),
    (
        HTTP_CONNECTIONS_OPEN,
        MetricType::Gauge,
        "Connections open now, by listener.",
    ),
    (
        COMPONENT_PUSHES_TOTAL,
        MetricType::Counter,
        "Pushes to a component's event URL, by result.",
    ),
    (
        AUTHORIZERS,
        MetricType::Gauge,
        "Authorizers this replica refreshes.",
    ),
    (
        STALE_FETCHES_TOTAL,
        MetricType::Counter,
        "Fetched values refused at commit as stale, so the stored one is replaced at once.",
    ),
    (
        GATEWAY_CALLS_TOTAL,
        MetricType::Counter,
        "Calls through the gateway by key, credential, path, errcode and healing.",
    ),
    (
        GATEWAY_SECONDS,
        MetricType::Histogram,
        "Gateway call latency by key, credential and path.",
    ),
    (
        GATEWAY_CONNECTS_TOTAL,
        MetricType::Counter,
        "Connections the gateway opened to WeChat hosts (idle ones are reused).",
    ),
    (
        QUOTA_FOREIGN,
        MetricType::Gauge,
        "cgi-bin/token calls WeChat counted today that the fleet did not make (last quota reconciliation).",
    ),
    (
        QUOTA_CHECKS_TOTAL,
        MetricType::Counter,
        "Quota reconciliations of a credential, by result.",
    ),
    (
        REDIS_UP,
        MetricType::Gauge,
        "1 when this replica's last Redis round trip succeeded, else 0.",
    ),
    (
        REFRESH_LEAD,
        MetricType::Gauge,
        "How long before expiry the credential is refreshed, in seconds.",
    ),
    (
        QUOTA_BUDGET,
        MetricType::Gauge,
        "The fleet's budget of the credential's quota period.",
    ),
    (
        CONFIG_GENERATION,
        MetricType::Gauge,
        "The generation of the config this replica runs (1 at start, +1 per applied reload).",
    ),
    (
        CONFIG_RELOADS_TOTAL,
        MetricType::Counter,
        "Config reloads by result (applied, refused: the old config stays).",
    ),
];

/// How a metric is exposed (a histogram adds `_bucket`, `_sum`, `_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

const SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histograms buffer every sample until upkeep drains them; without
            // it memory grows with traffic between scrapes.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            // Fails only if another recorder was installed first; then this
            // handle renders an empty registry rather than crashing.
            let _ = metrics::set_global_recorder(recorder);
            // `# HELP` lines (promtool check metrics wants one per metric).
            for (name, kind, help) in ALL {
                match kind {
                    MetricType::Counter => metrics::describe_counter!(*name, *help),
                    MetricType::Gauge => metrics::describe_gauge!(*name, *help),
                    MetricType::Histogram => metrics::describe_histogram!(*name, *help),
                }
            }
            handle
        })
        .clone()
}

/// Whether series carry the credential (`app`) label; see [`set_per_app`].
static PER_APP: AtomicBool = AtomicBool::new(true);

/// Per-credential series (`app` label, the token TTL and quota gauges) only
/// while a replica serves at most `[http] per_app_metrics_limit`
/// credentials. Beyond that they would be most of a replica's memory (10 000
/// credentials: ~14 MB more after the first scrape, 35 000 series per
/// replica for Prometheus); counters then carry `app="_all"` and per
/// credential state is in `GET /v1/apps` and `wxtoken status`.
pub fn set_per_app(enabled: bool) {
    PER_APP.store(enabled, Ordering::Relaxed);
}

pub fn per_app() -> bool {
    PER_APP.load(Ordering::Relaxed)
}

fn app_label(app: &CredentialId) -> String {
    if per_app() {
        app.to_string()
    } else {
        "_all".to_owned()
    }
}

/// The `app` (credential id) and `kind` labels of a credential's series.
/// Authorizers are labelled by their component, never by their own id:
/// a platform keeps 100 000 of them.
fn labels(cred: &Credential) -> (String, &'static str) {
    match cred.kind.authorizer_of() {
        Some((component, _)) => (app_label(component), cred.kind.name()),
        None => (app_label(&cred.cref.id), cred.kind.name()),
    }
}

/// Per-credential gauges, but none per authorizer.
fn gauge_labels(cred: &Credential) -> Option<(String, &'static str)> {
    (per_app() && cred.kind.authorizer_of().is_none()).then(|| labels(cred))
}

/// A push to a component's event URL, by `result` (`accepted` or the
/// refusal's reason: `bad_signature`, `replayed`, `stale_timestamp`, …).
pub fn push(component: &str, result: &'static str) {
    counter!(COMPONENT_PUSHES_TOTAL, "component" => component.to_owned(), "result" => result)
        .increment(1);
}

/// A fetched value refused at commit as stale, for a kind whose fetch cuts
/// off the stored value: the stored one is replaced at once.
pub fn stale_fetch(cred: &Credential) {
    let (app, kind) = labels(cred);
    counter!(STALE_FETCHES_TOTAL, "app" => app, "kind" => kind).increment(1);
}

/// Authorizers this replica refreshes.
pub fn authorizers(count: usize) {
    gauge!(AUTHORIZERS).set(count as f64);
}

pub fn refresh(cred: &Credential, outcome: &'static str) {
    let (app, kind) = labels(cred);
    counter!(REFRESH_TOTAL, "app" => app, "kind" => kind, "outcome" => outcome).increment(1);
}

/// A report that led to no refresh, by reason: `token_valid` (WeChat
/// accepted the value), `recently_verified`, `spacing` (deferred: a
/// report-triggered refresh happened within `report_refresh_interval`),
/// `reserve` (the budget left is the scheduled refreshes'), or — counted by
/// the HTTP API, which sees the script's answer — `token_valid_cached`.
pub fn report_refused(cred: &Credential, reason: &'static str) {
    let (app, kind) = labels(cred);
    counter!(REPORT_REFUSALS_TOTAL, "app" => app, "kind" => kind, "reason" => reason).increment(1);
}

/// A reported value shown to WeChat: `accepted`, `rejected` or `unknown`.
pub fn token_check(cred: &Credential, result: &'static str) {
    let (app, kind) = labels(cred);
    counter!(TOKEN_CHECKS_TOTAL, "app" => app, "kind" => kind, "result" => result).increment(1);
}

/// A fresh value replaced because an operator forced it.
pub fn forced_refresh(cred: &Credential) {
    let (app, kind) = labels(cred);
    counter!(FORCED_REFRESHES_TOTAL, "app" => app, "kind" => kind).increment(1);
}

/// A guess at an app secret that was not answered, by `scope`
/// (`address` or `appid`): the guesser got 45011 instead.
pub fn secret_guess_limited(scope: &'static str) {
    counter!(SECRET_GUESSES_LIMITED_TOTAL, "scope" => scope).increment(1);
}

/// A connection closed by the server, by `reason` (`header_timeout`).
pub fn connection_closed(reason: &'static str) {
    counter!(HTTP_CONNECTIONS_CLOSED_TOTAL, "reason" => reason).increment(1);
}

/// Connections open now on a listener.
pub fn connections_open(listener: &'static str, open: usize) {
    gauge!(HTTP_CONNECTIONS_OPEN, "listener" => listener).set(open as f64);
}

/// Upstream latency per API, not per credential: a histogram per credential
/// cost ~1.5 KB each (15 MB of a replica's memory at 10 000 credentials), and
/// WeChat's latency does not depend on the appid. Failures per credential
/// are in `wxtoken_refresh_total{app,outcome}`.
pub fn upstream(api: &'static str, took: Duration) {
    histogram!(UPSTREAM_SECONDS, "api" => api).record(took.as_secs_f64());
}

/// Lock attempts of this replica; per credential, a lost race shows as
/// `wxtoken_refresh_total{outcome="locked_elsewhere"}`.
pub fn lock(acquired: bool) {
    let result = if acquired { "acquired" } else { "contended" };
    counter!(LOCK_TOTAL, "result" => result).increment(1);
}

pub fn quota_used(cred: &Credential, used: u64) {
    let Some((app, kind)) = gauge_labels(cred) else {
        return;
    };
    gauge!(QUOTA_USED, "app" => app, "kind" => kind).set(used as f64);
}

pub fn token_ttl(cred: &Credential, ttl: Option<Duration>) {
    let Some((app, kind)) = gauge_labels(cred) else {
        return;
    };
    gauge!(TOKEN_TTL, "app" => app, "kind" => kind).set(ttl.map_or(0.0, |t| t.as_secs_f64()));
}

/// Reports and invalidations, by `result` (`reported`, `token_valid`,
/// `already_replaced`, `verified_report`, `parent_rejected`, `force_refresh`).
pub fn invalidation(cred: &Credential, result: &'static str) {
    let (app, kind) = labels(cred);
    counter!(INVALIDATIONS_TOTAL, "app" => app, "kind" => kind, "result" => result).increment(1);
}

/// The gateway opened a connection to a WeChat host.
pub fn gateway_connect() {
    counter!(GATEWAY_CONNECTS_TOTAL).increment(1);
}

pub fn http(route: String, status: u16, took: Duration) {
    histogram!(HTTP_SECONDS, "route" => route.clone()).record(took.as_secs_f64());
    counter!(HTTP_TOTAL, "route" => route, "status" => status.to_string()).increment(1);
}

/// The generation of the config this replica runs (1 at start).
pub fn config_generation(generation: u64) {
    gauge!(CONFIG_GENERATION).set(generation as f64);
}

/// A config reload: `applied` or `refused` (the old config stays).
pub fn config_reload(result: &'static str) {
    counter!(CONFIG_RELOADS_TOTAL, "result" => result).increment(1);
}

/// How long before expiry the credential is refreshed (its kind's lead:
/// `refresh_ahead` for app tokens, 0 for values WeChat hands out until they
/// expire): the alert on a TTL below it compares the two.
pub fn refresh_lead(cred: &Credential, lead: Duration) {
    let Some((app, kind)) = gauge_labels(cred) else {
        return;
    };
    gauge!(REFRESH_LEAD, "app" => app, "kind" => kind).set(lead.as_secs_f64());
}

/// The fleet's budget of the credential's quota period (`daily_budget` for
/// app tokens), beside `wxtoken_quota_used_today`.
pub fn quota_budget(cred: &Credential, budget: u64) {
    let Some((app, kind)) = gauge_labels(cred) else {
        return;
    };
    gauge!(QUOTA_BUDGET, "app" => app, "kind" => kind).set(budget as f64);
}

/// Whether this replica's follow stream of `cred` is up (only the replica
/// holding the follow lock reports).
pub fn follow_connected(cred: &Credential, up: bool) {
    let (app, kind) = labels(cred);
    gauge!(FOLLOW_CONNECTED, "app" => app, "kind" => kind).set(if up { 1.0 } else { 0.0 });
}

/// The lag of one followed value.
pub fn follow_lag(cred: &Credential, lag: std::time::Duration) {
    let (app, kind) = labels(cred);
    histogram!(FOLLOW_LAG_SECONDS, "app" => app, "kind" => kind).record(lag.as_secs_f64());
}

/// Whether this replica's last Redis round trip (the fleet marker check,
/// every `loss_check_interval`) succeeded: 1 or 0. `/readyz` answers the same.
pub fn redis_up(up: bool) {
    gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
}

/// One quota reconciliation of a credential, by `result` (`match`, `gap`,
/// `no_token`, `day_boundary`, `failed`).
pub fn quota_check(cred: &Credential, result: &'static str) {
    let (app, kind) = labels(cred);
    counter!(QUOTA_CHECKS_TOTAL, "app" => app, "kind" => kind, "result" => result).increment(1);
}

/// Calls WeChat counted today for the credential's fetch endpoint that the
/// fleet did not make (the last reconciliation's gap). Without per-app
/// series (`set_per_app`) the gaps of all credentials are summed under
/// `app="_all"`, so the alert still fires; `sum_all` is that sum.
pub fn quota_foreign(cred: &Credential, foreign: u64, sum_all: u64) {
    if per_app() {
        let (app, kind) = labels(cred);
        gauge!(QUOTA_FOREIGN, "app" => app, "kind" => kind).set(foreign as f64);
    } else {
        gauge!(QUOTA_FOREIGN, "app" => "_all", "kind" => cred.kind.name()).set(sum_all as f64);
    }
}
