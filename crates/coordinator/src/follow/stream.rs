//! The primary's watch stream as the follower reads it: one request to
//! `…/watch` (server-sent events, parsed by `eventsource-stream`), values
//! turned into [`Item`]s at once, and a stream silent for longer than two
//! keep-alives given up (a blackholed network never closes it).
//!
//! Nothing here logs or formats a value: the parser's own error type can
//! hold the line it failed on, so its errors are mapped to fixed messages.

use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wxtoken_common::{CredentialRef, Slot};

use crate::config::FollowConfig;

/// One thing the primary said.
#[derive(Debug)]
pub enum Item {
    /// A value (the current one, or a newer generation).
    Value(Value),
    /// The primary has no value to give now (its `error` event).
    Unavailable(String),
}

/// A value the primary sent (`Debug` shows its generation, never the value).
pub struct Value {
    pub value: SecretString,
    pub generation: u64,
    /// When it dies, by this process' clock (whole seconds the primary
    /// said, counted from when the event arrived: never later than its own).
    pub expires: Instant,
    /// From the primary's send to now, by the two machines' clocks (`None`
    /// when the primary did not say when it sent, or the clocks disagree).
    pub lag: Option<Duration>,
}

/// Why the stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot reach the primary: {0}")]
    Connect(String),
    /// 401 / 403 / 404: the key or the id is wrong at the primary; retried
    /// slowly (an operator fixes it there).
    #[error("the primary refused the watch: HTTP {status} {code}")]
    Refused { status: u16, code: String },
    #[error("the primary answered HTTP {0}")]
    Status(u16),
    #[error("no byte from the primary for {0:?} (two keep-alives): taken for a dead connection")]
    Idle(Duration),
    #[error("the primary's stream broke: {0}")]
    Broken(String),
    #[error("the primary closed the stream")]
    Closed,
    #[error("the primary sent an unusable event: {0}")]
    Garbage(&'static str),
}

impl WatchError {
    /// Refusals are configuration errors at one end: retried slowly.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// The watch URL of `cref` at the primary.
pub fn url(follow: &FollowConfig, cref: &CredentialRef) -> String {
    let id = cref.id.as_str();
    let keepalive = follow.keepalive.as_millis();
    match cref.slot {
        Slot::AccessToken => format!(
            "{}/v1/apps/{id}/access_token/watch?keepalive_ms={keepalive}",
            follow.url
        ),
        Slot::Ticket(t) => format!(
            "{}/v1/apps/{id}/tickets/{}/watch?keepalive_ms={keepalive}",
            follow.url,
            t.as_str()
        ),
    }
}

pub type Items = Pin<Box<dyn Stream<Item = Result<Item, WatchError>> + Send>>;

/// Opens the watch of `cref`; `since`: only values newer than this
/// generation (`Last-Event-ID`).
pub async fn open(
    http: &reqwest::Client,
    follow: &FollowConfig,
    cref: &CredentialRef,
    since: Option<u64>,
) -> Result<Items, WatchError> {
    let mut req = http
        .get(url(follow, cref))
        .bearer_auth(follow.key.expose_secret())
        .header("accept", "text/event-stream");
    if let Some(g) = since {
        req = req.header("last-event-id", g.to_string());
    }
    // The primary answers a watch at once: headers that do not come within
    // the idle limit (plus the connect timeout) are a dead path.
    let wait = follow.idle_limit() + Duration::from_secs(5);
    let resp = tokio::time::timeout(wait, req.send())
        .await
        .map_err(|_| WatchError::Idle(wait))?
        .map_err(|e| WatchError::Connect(e.without_url().to_string()))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let code = body
            .get("error")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .chars()
            .take(64)
            .collect();
        return Err(match status {
            401 | 403 | 404 => WatchError::Refused { status, code },
            _ => WatchError::Status(status),
        });
    }
    let idle = follow.idle_limit();
    let slot = cref.slot;
    let bytes = Box::pin(resp.bytes_stream());
    let timed = futures_util::stream::unfold(Some(bytes), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(s))),
            Ok(Some(Err(e))) => Some((Err(WatchError::Broken(e.without_url().to_string())), None)),
            Ok(None) => None,
            Err(_) => Some((Err(WatchError::Idle(idle)), None)),
        }
    });
    let items = timed.eventsource().map(move |e| match e {
        Ok(event) => item(slot, &event.event, &event.data),
        Err(EventStreamError::Transport(e)) => Err(e),
        Err(EventStreamError::Utf8(_)) => Err(WatchError::Garbage("not UTF-8")),
        Err(EventStreamError::Parser(_)) => Err(WatchError::Garbage("not an event stream")),
    });
    Ok(Box::pin(items.chain(futures_util::stream::once(async {
        Err(WatchError::Closed)
    }))))
}

#[derive(Deserialize)]
struct Body {
    #[serde(alias = "ticket")]
    access_token: String,
    expires_in: u64,
    generation: u64,
    #[serde(default)]
    sent_at: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

fn item(slot: Slot, event: &str, data: &str) -> Result<Item, WatchError> {
    let expected = match slot {
        Slot::AccessToken => "access_token",
        Slot::Ticket(_) => "ticket",
    };
    if event == "error" {
        let body: ErrorBody =
            serde_json::from_str(data).map_err(|_| WatchError::Garbage("error event"))?;
        let message: String = body.message.chars().take(256).collect();
        return Ok(Item::Unavailable(message));
    }
    if event != expected {
        return Err(WatchError::Garbage("unknown event"));
    }
    let arrived = Instant::now();
    let body: Body = serde_json::from_str(data).map_err(|_| WatchError::Garbage("value event"))?;
    if body.access_token.is_empty() || body.generation == 0 {
        return Err(WatchError::Garbage(
            "value event without value or generation",
        ));
    }
    let lag = body.sent_at.and_then(|sent| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let now = u64::try_from(now.as_millis()).ok()?;
        now.checked_sub(sent).map(Duration::from_millis)
    });
    Ok(Item::Value(Value {
        value: SecretString::from(body.access_token),
        generation: body.generation,
        expires: arrived + Duration::from_secs(body.expires_in),
        lag,
    }))
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("value", &"[redacted]")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxtoken_common::TicketType;

    #[test]
    fn values_errors_and_garbage() {
        let token = Slot::AccessToken;
        let ok = item(
            token,
            "access_token",
            r#"{"access_token":"T","expires_in":7200,"expires_at":1,"generation":5,"sent_at":1}"#,
        );
        let Ok(Item::Value(v)) = ok else {
            panic!("a value event is a value")
        };
        assert_eq!((v.value.expose_secret(), v.generation), ("T", 5));
        assert!(v.expires > Instant::now() + Duration::from_secs(7100));
        let ticket = Slot::Ticket(TicketType::Jsapi);
        let t = item(
            ticket,
            "ticket",
            r#"{"ticket":"K","expires_in":7,"generation":9}"#,
        );
        assert!(matches!(t, Ok(Item::Value(v)) if v.generation == 9 && v.lag.is_none()));
        let e = item(
            token,
            "error",
            r#"{"error":"token_unavailable","message":"no"}"#,
        );
        assert!(matches!(e, Ok(Item::Unavailable(m)) if m == "no"));
        for (event, data) in [
            ("access_token", "{"),
            (
                "access_token",
                r#"{"access_token":"","expires_in":1,"generation":1}"#,
            ),
            (
                "access_token",
                r#"{"access_token":"T","expires_in":1,"generation":0}"#,
            ),
            ("ticket", r#"{"ticket":"K","expires_in":1,"generation":1}"#),
            ("other", "{}"),
        ] {
            assert!(item(token, event, data).is_err(), "{event} {data}");
        }
    }
}
