//! The per-request middleware: request timeout, metrics and a debug log line
//! (route, not URI: `/cgi-bin/token` carries a secret in its query string).
//!
//! It runs on every request, so it allocates nothing for the routes of
//! [`ROUTES`] and the statuses of [`STATUSES`]: labels are static strings and
//! the metric handles are looked up in the recorder once per (route, status),
//! then kept. Anything else (a route missing from the table, a rare status)
//! goes through [`crate::metrics::http`] with the same names and labels.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram, counter, histogram};
use tracing::debug;

use super::error::ApiFailure;
use super::{HttpState, compat};
use crate::metrics::{HTTP_SECONDS, HTTP_TOTAL};

/// The router's patterns and their metric labels: `{id}` → `:id`, because
/// braces in label values are legal but trip common exposition parsers. A
/// pattern missing here still gets the right label, computed per request.
pub(super) const ROUTES: [(&str, &str); 17] = [
    ("/v1/apps", "/v1/apps"),
    ("/v1/credentials", "/v1/credentials"),
    ("/v1/apps/{id}/access_token", "/v1/apps/:id/access_token"),
    (
        "/v1/apps/{id}/access_token/invalidate",
        "/v1/apps/:id/access_token/invalidate",
    ),
    ("/v1/apps/{id}/tickets/{type}", "/v1/apps/:id/tickets/:type"),
    (
        "/v1/apps/{id}/tickets/{type}/invalidate",
        "/v1/apps/:id/tickets/:type/invalidate",
    ),
    (
        "/v1/apps/{id}/jsapi_signature",
        "/v1/apps/:id/jsapi_signature",
    ),
    ("/cgi-bin/token", "/cgi-bin/token"),
    ("/cgi-bin/stable_token", "/cgi-bin/stable_token"),
    ("/cgi-bin/ticket/getticket", "/cgi-bin/ticket/getticket"),
    ("/cgi-bin/gettoken", "/cgi-bin/gettoken"),
    ("/cgi-bin/get_jsapi_ticket", "/cgi-bin/get_jsapi_ticket"),
    ("/cgi-bin/ticket/get", "/cgi-bin/ticket/get"),
    ("/wx/{id}/{*path}", "/wx/:id/:*path"),
    ("/healthz", "/healthz"),
    ("/readyz", "/readyz"),
    ("/metrics", "/metrics"),
];

/// Label of requests no route matched (the fallbacks).
const UNMATCHED: &str = "unmatched";
const UNMATCHED_INDEX: usize = ROUTES.len();

/// Statuses the API answers with, and their label values.
const STATUSES: [(u16, &str); 11] = [
    (200, "200"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (422, "422"),
    (429, "429"),
    (500, "500"),
    (503, "503"),
];

/// The metric label of a route pattern.
fn label_of(pattern: &str) -> String {
    pattern.replace('{', ":").replace('}', "")
}

/// Which route a request matched, as a metric label.
enum RouteLabel {
    /// An index into [`ROUTES`], or [`UNMATCHED_INDEX`].
    Known(usize),
    Other(String),
}

impl RouteLabel {
    fn of(req: &Request) -> Self {
        let Some(path) = req.extensions().get::<MatchedPath>() else {
            return Self::Known(UNMATCHED_INDEX);
        };
        let path = path.as_str();
        match ROUTES.iter().position(|(pattern, _)| *pattern == path) {
            Some(i) => Self::Known(i),
            None => Self::Other(label_of(path)),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Known(i) => known_label(*i),
            Self::Other(label) => label,
        }
    }
}

fn known_label(i: usize) -> &'static str {
    ROUTES.get(i).map_or(UNMATCHED, |(_, label)| label)
}

/// Metric handles of one route, registered on first use.
#[derive(Default)]
struct RouteMetrics {
    seconds: OnceLock<Histogram>,
    total: [OnceLock<Counter>; STATUSES.len()],
}

/// `wxtoken_http_request_duration_seconds{route}` and
/// `wxtoken_http_requests_total{route,status}`, by handle. Handles stay valid
/// because the recorder never expires series (no idle timeout is set).
pub(super) struct HttpMetrics {
    routes: [RouteMetrics; ROUTES.len() + 1],
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            routes: std::array::from_fn(|_| RouteMetrics::default()),
        }
    }
}

impl HttpMetrics {
    fn record(&self, route: &RouteLabel, status: u16, took: Duration) {
        let status_index = STATUSES.iter().position(|(code, _)| *code == status);
        let (RouteLabel::Known(i), Some(s)) = (route, status_index) else {
            crate::metrics::http(route.as_str().to_owned(), status, took);
            return;
        };
        let (label, metrics) = (known_label(*i), &self.routes[*i]);
        metrics
            .seconds
            .get_or_init(|| histogram!(HTTP_SECONDS, "route" => label))
            .record(took.as_secs_f64());
        metrics.total[s]
            .get_or_init(|| counter!(HTTP_TOTAL, "route" => label, "status" => STATUSES[s].1))
            .increment(1);
    }
}

/// The index of the gateway's route in [`ROUTES`].
const GATEWAY: usize = 13;

/// Metrics and the log line of a gateway call served without the router
/// (`http::api`, which applied the gateway's timeout itself).
pub(super) fn gateway_request(state: &HttpState, method: &Method, status: u16, took: Duration) {
    let route = RouteLabel::Known(GATEWAY);
    debug!(%method, route = route.as_str(), status, ms = took.as_millis() as u64, "http request");
    state.http_metrics.record(&route, status, took);
}

/// Request timeout, metrics and a log line per request (route, not URI).
pub(super) async fn observe(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let route = RouteLabel::of(&req);
    let method = req.method().clone();
    let started = Instant::now();
    // A gateway call streams bodies to and from WeChat: its own timeout.
    let gateway = route.as_str().starts_with("/wx/") || route.as_str().ends_with("/:*rest");
    let limit = if gateway {
        state.gateway_config.timeout
    } else {
        state.request_timeout
    };
    let response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) if route.as_str().starts_with("/cgi-bin/") => compat::wx(-1, "system error"),
        Err(_) => ApiFailure::Timeout.into_response(),
    };
    let took = started.elapsed();
    let status = response.status().as_u16();
    debug!(%method, route = route.as_str(), status, ms = took.as_millis() as u64, "http request");
    state.http_metrics.record(&route, status, took);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_index_is_the_gateways_route() {
        assert_eq!(ROUTES[GATEWAY].0, "/wx/{id}/{*path}");
    }

    #[test]
    fn static_labels_are_the_computed_ones() {
        for (pattern, label) in ROUTES {
            assert_eq!(label_of(pattern), label);
            assert!(!label.contains(['{', '}']), "{label}");
        }
        for (code, label) in STATUSES {
            assert_eq!(code.to_string(), label);
        }
    }
}
