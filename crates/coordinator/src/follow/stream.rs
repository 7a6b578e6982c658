//! The primary's watch stream as the follower reads it: one request to
//! `…/watch` (server-sent events, parsed by `eventsource-stream`) — one
//! credential's, or a component's with all its authorizers' — values
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
use wxtoken_common::{CredentialId, CredentialRef, Slot};

use crate::config::FollowConfig;

/// One thing the primary said.
#[derive(Debug)]
pub enum Item {
    /// A value of this credential (the current one, or a newer generation).
    Value(CredentialRef, Value),
    /// The primary has no value to give now (its `error` event).
    Unavailable(String),
    /// A component's watch: an authorizer is (still) registered, or not.
    Authorizer { appid: String, active: bool },
    /// A component's watch: the snapshot is whole (every registered
    /// authorizer was listed since the stream opened).
    Synced,
}

/// What is watched: one credential, or a component and its authorizers.
#[derive(Debug, Clone)]
pub enum Watched {
    One(CredentialRef),
    Component(CredentialId),
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

/// The watch URL at the primary.
pub fn url(follow: &FollowConfig, watched: &Watched) -> String {
    let keepalive = follow.keepalive.as_millis();
    let cref = match watched {
        Watched::One(cref) => cref,
        Watched::Component(id) => {
            return format!(
                "{}/v1/components/{id}/watch?keepalive_ms={keepalive}",
                follow.url
            );
        }
    };
    let id = cref.id.as_str();
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

/// Opens the watch; `since`: only values newer than this generation
/// (`Last-Event-ID`; one credential's watch only).
pub async fn open(
    http: &reqwest::Client,
    follow: &FollowConfig,
    watched: &Watched,
    since: Option<u64>,
) -> Result<Items, WatchError> {
    let mut req = http
        .get(url(follow, watched))
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
    let watched = watched.clone();
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
        Ok(event) => match &watched {
            Watched::One(cref) => item(cref, &event.event, &event.data),
            Watched::Component(id) => component_item(id, &event.event, &event.data),
        },
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

#[derive(Deserialize)]
struct Tagged {
    id: String,
}

#[derive(Deserialize)]
struct AuthorizerBody {
    appid: String,
    state: String,
}

/// An event of a component's watch: values name their id, which must be
/// the component's or one of its authorizers'.
fn component_item(component: &CredentialId, event: &str, data: &str) -> Result<Item, WatchError> {
    match event {
        "access_token" => {
            let tagged: Tagged =
                serde_json::from_str(data).map_err(|_| WatchError::Garbage("value event"))?;
            let id = CredentialId::parse(&tagged.id)
                .ok()
                .filter(|id| {
                    id == component
                        || id
                            .as_str()
                            .strip_prefix(component.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                })
                .ok_or(WatchError::Garbage("a value of another credential"))?;
            item(&CredentialRef::token(id), event, data)
        }
        "authorizer" => {
            let body: AuthorizerBody =
                serde_json::from_str(data).map_err(|_| WatchError::Garbage("authorizer event"))?;
            crate::kind::authorizer_id(component, &body.appid)
                .map_err(|_| WatchError::Garbage("authorizer event"))?;
            Ok(Item::Authorizer {
                active: body.state == crate::store::ACTIVE,
                appid: body.appid,
            })
        }
        "synced" => Ok(Item::Synced),
        "error" => item(&CredentialRef::token(component.clone()), event, data),
        _ => Err(WatchError::Garbage("unknown event")),
    }
}

fn item(cref: &CredentialRef, event: &str, data: &str) -> Result<Item, WatchError> {
    let expected = match cref.slot {
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
    Ok(Item::Value(
        cref.clone(),
        Value {
            value: SecretString::from(body.access_token),
            generation: body.generation,
            expires: arrived + Duration::from_secs(body.expires_in),
            lag,
        },
    ))
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
        let token = &CredentialRef::token(CredentialId::parse("shop").unwrap());
        let ok = item(
            token,
            "access_token",
            r#"{"access_token":"T","expires_in":7200,"expires_at":1,"generation":5,"sent_at":1}"#,
        );
        let Ok(Item::Value(_, v)) = ok else {
            panic!("a value event is a value")
        };
        assert_eq!((v.value.expose_secret(), v.generation), ("T", 5));
        assert!(v.expires > Instant::now() + Duration::from_secs(7100));
        let ticket = &CredentialRef {
            id: CredentialId::parse("shop").unwrap(),
            slot: Slot::Ticket(TicketType::Jsapi),
        };
        let t = item(
            ticket,
            "ticket",
            r#"{"ticket":"K","expires_in":7,"generation":9}"#,
        );
        assert!(matches!(t, Ok(Item::Value(_, v)) if v.generation == 9 && v.lag.is_none()));
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

    #[test]
    fn a_components_watch_names_its_ids_and_takes_no_other() {
        let open1 = CredentialId::parse("open1").unwrap();
        let v = r#"{"id":"open1.wxa1","access_token":"A","expires_in":7200,"generation":3}"#;
        let Ok(Item::Value(cref, v)) = component_item(&open1, "access_token", v) else {
            panic!("an authorizer's value")
        };
        assert_eq!((cref.id.as_str(), v.generation), ("open1.wxa1", 3));
        let own = r#"{"id":"open1","access_token":"C","expires_in":7200,"generation":9}"#;
        assert!(matches!(
            component_item(&open1, "access_token", own),
            Ok(Item::Value(c, _)) if c.id == open1
        ));
        assert!(matches!(
            component_item(&open1, "authorizer", r#"{"id":"open1.wxa1","appid":"wxa1","state":"revoked"}"#),
            Ok(Item::Authorizer { appid, active: false }) if appid == "wxa1"
        ));
        assert!(matches!(
            component_item(&open1, "synced", r#"{"authorizers":1}"#),
            Ok(Item::Synced)
        ));
        for (event, data) in [
            (
                "access_token",
                r#"{"id":"open2.wxa1","access_token":"A","expires_in":1,"generation":1}"#,
            ),
            (
                "access_token",
                r#"{"id":"open10","access_token":"A","expires_in":1,"generation":1}"#,
            ),
            (
                "access_token",
                r#"{"access_token":"A","expires_in":1,"generation":1}"#,
            ),
            ("authorizer", r#"{"appid":"wx/../x","state":"active"}"#),
            ("other", "{}"),
        ] {
            assert!(
                component_item(&open1, event, data).is_err(),
                "{event} {data}"
            );
        }
    }
}
