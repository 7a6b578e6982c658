//! The bodies of the read endpoints, written straight from the cache entry
//! into one right-sized buffer: byte for byte what serde_json makes of
//! [`AccessTokenResponse`] / [`TicketResponse`] (tests below check), without
//! its per-byte escaping pass when the value needs no escapes (WeChat's
//! tokens and tickets are `[A-Za-z0-9_-]`). The read path runs this on
//! every request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wxtoken_client::Token;

use super::error::ApiFailure;

/// `(expires_in, expires_at)`: whole seconds left, Unix ms of expiry.
pub(super) fn expiry(token: &Token) -> (u64, u64) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let ttl = token.ttl();
    let expires_at = u64::try_from(now_ms + ttl.as_millis()).unwrap_or(u64::MAX);
    (ttl.as_secs(), expires_at)
}

/// Which field the value goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    AccessToken,
    Ticket,
}

impl Field {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::Ticket => "ticket",
        }
    }
}

/// The body of `GET …/access_token` or `GET …/tickets/{type}`.
pub(super) fn value_json(field: Field, token: &Token) -> Result<Vec<u8>, ApiFailure> {
    let (expires_in, expires_at) = expiry(token);
    write(
        field,
        token.value(),
        expires_in,
        expires_at,
        token.generation(),
    )
}

/// The same body as a JSON value, for handlers that add fields.
pub(super) fn value_object(field: Field, token: &Token) -> Result<serde_json::Value, ApiFailure> {
    let body = value_json(field, token)?;
    serde_json::from_slice(&body).map_err(|e| ApiFailure::Internal(e.to_string()))
}

/// Room for the three numbers and the JSON around them.
const OVERHEAD: usize = 128;

/// True when serde_json writes `s` as a JSON string verbatim (no escapes).
/// No early exit, so the loop vectorizes.
fn json_verbatim(s: &str) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// Appends `n` in decimal (what serde_json writes for a `u64`).
fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[start..]);
}

fn write(
    field: Field,
    value: &str,
    expires_in: u64,
    expires_at: u64,
    generation: u64,
) -> Result<Vec<u8>, ApiFailure> {
    let mut buf = Vec::with_capacity(value.len() + OVERHEAD);
    buf.extend_from_slice(b"{\"");
    buf.extend_from_slice(field.name().as_bytes());
    buf.extend_from_slice(b"\":");
    if json_verbatim(value) {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut buf, value).map_err(|e| ApiFailure::Internal(e.to_string()))?;
    }
    buf.extend_from_slice(b",\"expires_in\":");
    push_u64(&mut buf, expires_in);
    buf.extend_from_slice(b",\"expires_at\":");
    push_u64(&mut buf, expires_at);
    buf.extend_from_slice(b",\"generation\":");
    push_u64(&mut buf, generation);
    buf.push(b'}');
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wxtoken_common::wire::{AccessTokenResponse, TicketResponse};

    fn wire(
        field: Field,
        value: &str,
        expires_in: u64,
        expires_at: u64,
        generation: u64,
    ) -> Vec<u8> {
        match field {
            Field::AccessToken => serde_json::to_vec(&AccessTokenResponse {
                access_token: value.to_owned(),
                expires_in,
                expires_at,
                generation,
            }),
            Field::Ticket => serde_json::to_vec(&TicketResponse {
                ticket: value.to_owned(),
                expires_in,
                expires_at,
                generation,
            }),
        }
        .unwrap()
    }

    #[test]
    fn the_bodies_are_the_wire_types() {
        for field in [Field::AccessToken, Field::Ticket] {
            for value in [
                "",
                "ACCESS_TOKEN_1",
                "85_1k27AOtWdQrEeVmU2EAq9nSeRUUE2IZQ5eTZKqCq-48iv8N_nE99I07HB",
                "a\"b",
                "a\\b",
                "a/b~\u{7f}",
                "\u{1}\n\t\u{1f}",
                "é\u{2028}\u{1F600}",
            ] {
                for n in [0, 1, 7199, 1_795_223_964_406, u64::MAX] {
                    assert_eq!(
                        write(field, value, n, n, n).unwrap(),
                        wire(field, value, n, n, n),
                        "{value:?} {n}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn bodies_match_serde(value in any::<String>(), a in any::<u64>(), b in any::<u64>(), g in any::<u64>()) {
            prop_assert_eq!(write(Field::AccessToken, &value, a, b, g).unwrap(), wire(Field::AccessToken, &value, a, b, g));
            prop_assert_eq!(write(Field::Ticket, &value, a, b, g).unwrap(), wire(Field::Ticket, &value, a, b, g));
        }

        #[test]
        fn bodies_match_serde_ascii(value in "[ -~]{0,200}", a in any::<u64>(), g in any::<u64>()) {
            prop_assert_eq!(write(Field::AccessToken, &value, a, a, g).unwrap(), wire(Field::AccessToken, &value, a, a, g));
        }
    }
}
