//! Secrets the fleet must keep but readers must never see — authorizers'
//! refresh tokens and components' verify tickets — as they are written to
//! Redis: sealed with AES-256-GCM under `[security] state_key`
//! (`v1:` + base64(nonce ‖ ciphertext ‖ tag)), or, without a key, in plain
//! text behind `plain:` (every replica warns at start).
//!
//! The associated data is the Redis key the value lives under, so a sealed
//! value copied to another authorizer's key does not open. This module does
//! not know where values are stored; callers pass the key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

const SEALED: &str = "v1:";
const PLAIN: &str = "plain:";

/// The coordinators' key for state at rest.
#[derive(Clone)]
pub struct StateKey(Aes256Gcm);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey([redacted])")
    }
}

impl StateKey {
    /// 32 bytes written in base64; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        (bytes.len() == 32)
            .then(|| Aes256Gcm::new_from_slice(&bytes).ok())
            .flatten()
            .map(Self)
    }
}

/// Why a stored value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Sealed, but this replica has no state key.
    #[error("the value is sealed and no [security] state_key is configured")]
    NoKey,
    /// Plain text, but a state key is configured (written before it was).
    /// Accepted: see [`Sealer::open`].
    #[error("the value is not sealed")]
    Plain,
    /// Wrong key, tampered, or copied from another key.
    #[error("the value does not open with this state key (wrong key, or tampered)")]
    Unopenable,
    #[error("the value is neither sealed nor plain (a foreign writer's)")]
    Junk,
}

/// Seals and opens values with the configured key (or none).
#[derive(Debug, Clone, Default)]
pub struct Sealer {
    key: Option<StateKey>,
}

impl Sealer {
    pub fn new(key: Option<StateKey>) -> Self {
        Self { key }
    }

    /// True when values are sealed (a state key is configured).
    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// What to store under `at` for `value`.
    pub fn seal(&self, at: &str, value: &SecretString) -> String {
        let Some(key) = &self.key else {
            return format!("{PLAIN}{}", value.expose_secret());
        };
        let nonce: [u8; 12] = rand::random();
        let payload = Payload {
            msg: value.expose_secret().as_bytes(),
            aad: at.as_bytes(),
        };
        match key.0.encrypt(Nonce::from_slice(&nonce), payload) {
            Ok(ct) => {
                let mut out = Vec::with_capacity(12 + ct.len());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
                format!("{SEALED}{}", STANDARD.encode(out))
            }
            // AES-GCM fails only past 64 GiB; a refresh token is ~100 bytes.
            Err(_) => String::new(),
        }
    }

    /// The value stored under `at`. A plain value is accepted even with a
    /// key configured (a fleet that adds a key later keeps its refresh
    /// tokens; the next commit seals them).
    pub fn open(&self, at: &str, stored: &str) -> Result<SecretString, OpenError> {
        if let Some(plain) = stored.strip_prefix(PLAIN) {
            return Ok(SecretString::from(plain.to_owned()));
        }
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return Err(OpenError::Junk);
        };
        let key = self.key.as_ref().ok_or(OpenError::NoKey)?;
        let bytes = STANDARD.decode(sealed).map_err(|_| OpenError::Junk)?;
        if bytes.len() < 12 + 16 {
            return Err(OpenError::Junk);
        }
        let (nonce, ct) = bytes.split_at(12);
        let payload = Payload {
            msg: ct,
            aad: at.as_bytes(),
        };
        let plain = key
            .0
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::Unopenable)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| OpenError::Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StateKey {
        StateKey::parse(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn seals_and_opens_only_under_the_same_key_and_place() {
        let s = Sealer::new(Some(key()));
        let rt = SecretString::from("refreshtoken@@@abc".to_owned());
        let stored = s.seal("P:{open1.wx1}:refresh_token", &rt);
        assert!(stored.starts_with("v1:"));
        assert!(!stored.contains("refreshtoken"));
        let back = s.open("P:{open1.wx1}:refresh_token", &stored).unwrap();
        assert_eq!(back.expose_secret(), rt.expose_secret());
        // Copied to another authorizer's key: refused.
        assert_eq!(
            s.open("P:{open1.wx2}:refresh_token", &stored).unwrap_err(),
            OpenError::Unopenable
        );
        // Another key: refused.
        let other = Sealer::new(StateKey::parse(&STANDARD.encode([8u8; 32])));
        assert_eq!(
            other
                .open("P:{open1.wx1}:refresh_token", &stored)
                .unwrap_err(),
            OpenError::Unopenable
        );
        // No key: refused, never guessed.
        assert_eq!(
            Sealer::new(None)
                .open("P:{open1.wx1}:refresh_token", &stored)
                .unwrap_err(),
            OpenError::NoKey
        );
        // Two seals of one value differ (fresh nonce).
        assert_ne!(stored, s.seal("P:{open1.wx1}:refresh_token", &rt));
    }

    #[test]
    fn plain_values_open_with_or_without_a_key_and_junk_never_does() {
        let plain = Sealer::new(None).seal("k", &SecretString::from("v".to_owned()));
        assert_eq!(plain, "plain:v");
        for s in [Sealer::new(None), Sealer::new(Some(key()))] {
            assert_eq!(s.open("k", &plain).unwrap().expose_secret(), "v");
            for junk in ["", "v", "v1:", "v1:!!!", "v1:AAAA"] {
                assert!(s.open("k", junk).is_err(), "{junk}");
            }
        }
    }

    #[test]
    fn only_32_byte_base64_keys_parse_and_debug_shows_nothing() {
        assert!(StateKey::parse(&STANDARD.encode([1u8; 31])).is_none());
        assert!(StateKey::parse("not base64").is_none());
        assert_eq!(format!("{:?}", key()), "StateKey([redacted])");
    }
}
