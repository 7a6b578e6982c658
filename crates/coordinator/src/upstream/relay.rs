//! A reply body read through the connection it arrives on (`conn.rs`):
//! polling it drives that connection, and when the body ends the connection
//! goes back to the pool. [`read_within`] reads a small (JSON) reply whole
//! the same way. Neither knows what the body means.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use super::conn::{Pool, Upstream};

/// A reply body read through its connection: polling it drives the
/// connection, and when it ends the connection goes back to the pool.
pub struct Relay {
    /// Bytes already read (the part of a JSON reply looked at), sent first.
    head: Option<Bytes>,
    body: Incoming,
    up: Option<Box<Upstream>>,
    pool: Arc<Pool>,
    /// `gateway.timeout` for the whole call, once the reply is streamed to
    /// the caller (before that the handler's own timeout holds).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(body: Incoming, up: Box<Upstream>, pool: Arc<Pool>) -> Self {
        Self {
            head: None,
            body,
            up: Some(up),
            pool,
            deadline: None,
        }
    }

    /// The body, cut off with an error at `deadline`.
    pub fn until(mut self, deadline: tokio::time::Instant) -> Self {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
        self
    }

    fn finish(&mut self) {
        if let Some(up) = self.up.take() {
            self.pool.checkin(up);
        }
    }
}

impl HttpBody for Relay {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.up = None;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the reply took longer than gateway.timeout",
            ))));
        }
        if let Some(up) = &mut this.up {
            up.drive(cx);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.body.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.up = None;
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.body.size_hint();
        if let Some(head) = &self.head {
            let n = head.len() as u64;
            hint.set_lower(hint.lower() + n);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + n);
            }
        }
        hint
    }
}

/// Reads a reply body whole while it stays within `limit` bytes, driving the
/// connection. `Ok(Ok(bytes))`: all of it (the connection is back in the
/// pool); `Ok(Err(relay))`: longer than `limit`, the part read goes first.
pub async fn read_within(
    mut relay: Relay,
    limit: usize,
) -> Result<Result<Bytes, Relay>, std::io::Error> {
    let mut first: Option<Bytes> = None;
    let mut kept: Vec<u8> = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut relay).poll_frame(cx)).await;
        let Some(frame) = frame.transpose()? else {
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // One frame (the usual small reply) is kept without a copy.
        match &first {
            None if kept.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    kept.extend_from_slice(&f);
                }
                kept.extend_from_slice(&data);
            }
        }
        let seen = first.as_ref().map_or(kept.len(), Bytes::len);
        if seen > limit {
            relay.head = Some(first.unwrap_or_else(|| Bytes::from(kept)));
            return Ok(Err(relay));
        }
        if relay.body.is_end_stream() {
            break;
        }
    }
    relay.finish();
    Ok(Ok(first.unwrap_or_else(|| Bytes::from(kept))))
}
