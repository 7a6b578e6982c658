//! The one error table of the JSON API (STYLE §7): every failure is an
//! [`ApiFailure`], which maps to an HTTP status, a snake_case code and a
//! message fit for the caller. Internal detail (Redis errors, …) is logged
//! here and never put in a body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::warn;
use wxtoken_common::wire::{ApiError, ApiErrorBody};

/// Everything the JSON API can answer besides success.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiFailure {
    /// No `Authorization: Bearer …` header (or not that scheme).
    Unauthorized,
    /// A bearer key that is not one of ours.
    Forbidden,
    /// A scoped key used beyond its scope (which key, what, for which id).
    NotAllowed(String),
    /// A key over its `per_second` limit (its name).
    RateLimited(String),
    /// No API keys configured: the JSON token API is closed.
    ApiClosed,
    InvalidId(String),
    AppNotFound(String),
    /// A ticket type that does not exist (`type` in the path).
    InvalidTicketType(String),
    /// The id exists but the fleet does not keep this ticket for it.
    TicketNotConfigured {
        id: String,
        ticket: String,
    },
    /// The id is of another kind than the route serves (a WeCom agent's id
    /// on an official account's route, or the reverse).
    WrongKind(String),
    InvalidJson(String),
    InvalidRequest(String),
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    /// No valid token now (none stored and none arrived in time).
    TokenUnavailable(String),
    /// No valid value of a followed credential (SPEC §12): the message
    /// names the primary (its URL holds no credentials: config refuses them).
    FollowedUnavailable {
        primary: String,
        detail: String,
    },
    /// Redis cannot be reached (detail is logged).
    RedisUnavailable(String),
    /// The request took longer than `[http] request_timeout`.
    Timeout,
    /// A bug or an unexpected reply (detail is logged).
    Internal(String),
    /// No `[[components]]` entry has this id.
    ComponentNotFound(String),
    /// A push to a component's event URL was refused (the reason only).
    PushRefused(&'static str),
    /// WeChat refused to exchange the authorization code (its errcode).
    AuthorizationRefused(String),
    /// WeChat (or the component token it needs) is not reachable now.
    UpstreamUnavailable(String),
}

impl ApiFailure {
    /// The table: status, code, public message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        use ApiFailure::*;
        match self {
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an API key as `Authorization: Bearer <key>`".into(),
            ),
            Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "the API key is not accepted".into(),
            ),
            NotAllowed(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            RateLimited(name) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("key {name:?} is over its per_second limit; retry shortly"),
            ),
            ApiClosed => (
                StatusCode::UNAUTHORIZED,
                "api_keys_not_configured",
                "no API keys are configured ([http] api_keys): the token API is closed".into(),
            ),
            InvalidId(m) => (StatusCode::BAD_REQUEST, "invalid_id", m.clone()),
            AppNotFound(id) => (
                StatusCode::NOT_FOUND,
                "app_not_found",
                format!("no credential {id:?} is configured"),
            ),
            InvalidTicketType(m) => (StatusCode::BAD_REQUEST, "invalid_ticket_type", m.clone()),
            TicketNotConfigured { id, ticket } => (
                StatusCode::NOT_FOUND,
                "ticket_not_configured",
                format!(
                    "{id} has no {ticket} ticket configured (add it to `tickets` in its config entry)"
                ),
            ),
            WrongKind(m) => (StatusCode::BAD_REQUEST, "wrong_kind", m.clone()),
            InvalidJson(m) => (StatusCode::BAD_REQUEST, "invalid_json", m.clone()),
            InvalidRequest(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                m.clone(),
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large".into(),
            ),
            NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here".into(),
            ),
            TokenUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                "no valid token is available now; retry shortly".into(),
            ),
            FollowedUnavailable { primary, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                format!(
                    "no valid token is available now: this fleet follows it from {primary}, which is unreachable or has no value; retry shortly"
                ),
            ),
            RedisUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "the token store cannot be reached; retry shortly".into(),
            ),
            Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long; retry shortly".into(),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            ),
            ComponentNotFound(id) => (
                StatusCode::NOT_FOUND,
                "component_not_found",
                format!("no component {id:?} is configured ([[components]])"),
            ),
            PushRefused(reason) => (
                StatusCode::BAD_REQUEST,
                "push_refused",
                format!("push refused: {reason}"),
            ),
            AuthorizationRefused(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "authorization_refused",
                m.clone(),
            ),
            UpstreamUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "WeChat or the component token is not available now; retry shortly".into(),
            ),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        match &self {
            Self::TokenUnavailable(d)
            | Self::FollowedUnavailable { detail: d, .. }
            | Self::RedisUnavailable(d)
            | Self::Internal(d)
            | Self::UpstreamUnavailable(d) => {
                warn!(code, detail = %d, "request failed");
            }
            _ => {}
        }
        let body = ApiErrorBody {
            error: ApiError {
                code: code.into(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_body() {
        for f in [
            ApiFailure::RedisUnavailable("connection refused at 10.0.0.7:6379".into()),
            ApiFailure::Internal("redis://:hunter2@x".into()),
            ApiFailure::TokenUnavailable("detail".into()),
        ] {
            let (_, _, message) = f.parts();
            assert!(
                !message.contains("10.0.0.7")
                    && !message.contains("hunter2")
                    && !message.contains("detail")
            );
        }
    }

    #[test]
    fn codes_are_snake_case_and_statuses_match_the_class() {
        let all = [
            ApiFailure::Unauthorized,
            ApiFailure::Forbidden,
            ApiFailure::ApiClosed,
            ApiFailure::InvalidId("x".into()),
            ApiFailure::AppNotFound("x".into()),
            ApiFailure::InvalidTicketType("x".into()),
            ApiFailure::TicketNotConfigured {
                id: "x".into(),
                ticket: "jsapi".into(),
            },
            ApiFailure::WrongKind("x".into()),
            ApiFailure::InvalidJson("x".into()),
            ApiFailure::InvalidRequest("x".into()),
            ApiFailure::PayloadTooLarge,
            ApiFailure::NotFound,
            ApiFailure::MethodNotAllowed,
            ApiFailure::TokenUnavailable("x".into()),
            ApiFailure::RedisUnavailable("x".into()),
            ApiFailure::Timeout,
            ApiFailure::Internal("x".into()),
        ];
        for f in all {
            let (status, code, _) = f.parts();
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert!(status.is_client_error() || status.is_server_error());
        }
    }
}
