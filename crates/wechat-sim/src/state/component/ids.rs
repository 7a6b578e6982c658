//! Compact names for the 100 000-authorizer scale: an inline appid
//! ([`AppId`], no heap), the key of one authorizer ([`AuthKey`]), and the
//! 16 random bytes ([`SecretKey`]) behind every authorizer access token and
//! refresh token, with the WeChat-looking strings rendered from them and
//! parsed back.
//!
//! A token string carries its key in its first 22 characters after the
//! prefix (base64url, 128 bits), followed by filler derived from the key:
//! the simulator stores 16 bytes per token, not 130 characters, and a
//! presented string is accepted only if it renders back exactly. Nothing
//! here knows which keys are valid; that is `authorizers.rs` and
//! `auth_tokens.rs`.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::token::TOKEN_ALPHABET;

/// 16 random bytes: one authorizer access token or refresh token.
pub(crate) type SecretKey = [u8; 16];

/// Characters that carry a key (22 × 6 bits ≥ 128).
const KEY_CHARS: usize = 22;
/// Filler after the key in an access token: 22 + 106 = 128 characters, the
/// length of the simulator's app tokens.
const TOKEN_FILLER: usize = 106;
/// Filler after the key in a refresh token: 43 characters after the prefix,
/// like WeChat's.
const REFRESH_FILLER: usize = 21;
/// WeChat's refresh tokens start with this.
const REFRESH_PREFIX: &str = "refreshtoken@@@";

/// The longest appid an authorizer may have (WeChat's are 18 characters).
pub(crate) const MAX_APPID: usize = 31;

/// An appid stored inline: 32 bytes, `Copy`, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AppId {
    len: u8,
    bytes: [u8; MAX_APPID],
}

impl AppId {
    /// `None` when `s` is empty, longer than [`MAX_APPID`] bytes, or not
    /// printable ASCII.
    pub(crate) fn new(s: &str) -> Option<Self> {
        let raw = s.as_bytes();
        if raw.is_empty() || raw.len() > MAX_APPID || !raw.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut bytes = [0; MAX_APPID];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Self {
            len: u8::try_from(raw.len()).ok()?,
            bytes,
        })
    }

    /// `wx` and 16 lowercase hex digits of `n`: a bulk-created appid.
    pub(crate) fn hex(n: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0; MAX_APPID];
        bytes[..2].copy_from_slice(b"wx");
        for (i, b) in bytes[2..18].iter_mut().enumerate() {
            *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        Self { len: 18, bytes }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Built from a &str of printable ASCII only: always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One authorizer of one component: the component's position in the
/// config and the authorizer's position in that component's book. Stable
/// until a reset (authorizers are never removed, only revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AuthKey {
    pub(crate) component: u16,
    pub(crate) index: u32,
}

/// A fresh random key.
pub(crate) fn random_key() -> SecretKey {
    rand::rng().random()
}

fn push_key(out: &mut String, key: &SecretKey) {
    let v = u128::from_be_bytes(*key);
    for i in 0..KEY_CHARS {
        let shift = 128 - 6 * (i as i32 + 1);
        let bits = if shift >= 0 { v >> shift } else { v << -shift };
        out.push(char::from(TOKEN_ALPHABET[(bits & 63) as usize]));
    }
}

fn parse_key(s: &str) -> Option<SecretKey> {
    let chars = s.as_bytes().get(..KEY_CHARS)?;
    let mut v: u128 = 0;
    for (i, c) in chars.iter().enumerate() {
        let d = TOKEN_ALPHABET.iter().position(|a| a == c)? as u128;
        let shift = 128 - 6 * (i as i32 + 1);
        if shift >= 0 {
            v |= d << shift;
        } else {
            v |= d >> -shift;
        }
    }
    Some(v.to_be_bytes())
}

fn push_filler(out: &mut String, key: &SecretKey, salt: u8, n: usize) {
    let mut seed = [salt; 32];
    seed[..16].copy_from_slice(key);
    let mut rng = StdRng::from_seed(seed);
    for _ in 0..n {
        out.push(char::from(TOKEN_ALPHABET[rng.random_range(0..64)]));
    }
}

/// The authorizer access token of `key`: `NN_` then 128 characters of
/// `[A-Za-z0-9_-]`, like the app tokens.
pub(crate) fn access_token(key: &SecretKey) -> String {
    let mut s = String::with_capacity(3 + KEY_CHARS + TOKEN_FILLER);
    s.push_str(&(80 + key[15] % 20).to_string());
    s.push('_');
    push_key(&mut s, key);
    push_filler(&mut s, key, 1, TOKEN_FILLER);
    s
}

/// The key of a presented access token, if it is one this module renders.
pub(crate) fn parse_access_token(token: &str) -> Option<SecretKey> {
    let (_, rest) = token.split_once('_')?;
    let key = parse_key(rest)?;
    (access_token(&key) == token).then_some(key)
}

/// The refresh token of `key`: `refreshtoken@@@` then 43 characters.
pub(crate) fn refresh_token(key: &SecretKey) -> String {
    let mut s = String::with_capacity(REFRESH_PREFIX.len() + KEY_CHARS + REFRESH_FILLER);
    s.push_str(REFRESH_PREFIX);
    push_key(&mut s, key);
    push_filler(&mut s, key, 2, REFRESH_FILLER);
    s
}

/// The key of a presented refresh token, if it is one this module renders.
pub(crate) fn parse_refresh_token(token: &str) -> Option<SecretKey> {
    let key = parse_key(token.strip_prefix(REFRESH_PREFIX)?)?;
    (refresh_token(&key) == token).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_any_change() {
        for _ in 0..200 {
            let key = random_key();
            let t = access_token(&key);
            assert_eq!(t.split_once('_').map(|(_, r)| r.len()), Some(128));
            assert_eq!(parse_access_token(&t), Some(key));
            let r = refresh_token(&key);
            assert_eq!(r.len(), REFRESH_PREFIX.len() + 43);
            assert_eq!(parse_refresh_token(&r), Some(key));
            assert_eq!(parse_access_token(&r), None);
            assert_eq!(parse_refresh_token(&t), None);
            let mut tampered = t.clone().into_bytes();
            let last = tampered.len() - 1;
            tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                parse_access_token(&String::from_utf8(tampered).unwrap()),
                None
            );
            assert_eq!(parse_access_token(&t[..t.len() - 1]), None);
        }
        assert_eq!(parse_access_token("91_short"), None);
        assert_eq!(parse_refresh_token(""), None);
    }

    #[test]
    fn appids_are_inline_and_checked() {
        assert_eq!(std::mem::size_of::<AppId>(), 32);
        let a = AppId::new("wx0123456789abcdef").unwrap();
        assert_eq!(a.as_str(), "wx0123456789abcdef");
        assert_eq!(
            AppId::hex(0xb000_0000_0000_002a).as_str(),
            "wxb00000000000002a"
        );
        assert!(AppId::new("").is_none());
        assert!(AppId::new(&"x".repeat(32)).is_none());
        assert!(AppId::new("wx 1").is_none());
        assert_eq!(format!("{a:?}"), "wx0123456789abcdef");
    }
}
