//! Credential ids: the names under which one credential's keys live.
//!
//! An id is `[A-Za-z0-9_.-]{1,64}` (SPEC §3). The charset keeps ids inside
//! their Redis Cluster hash tag: no `{`, `}` or `:` can ever appear, so no id
//! can break out of `{ID}` or collide with another credential's keys. This
//! module only validates; it does not know key layouts (see `keys`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest id accepted, in bytes (all accepted bytes are ASCII).
pub const MAX_ID_LEN: usize = 64;

/// A validated credential id. Construct with [`CredentialId::parse`] or `str::parse`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CredentialId(String);

/// Why a string was refused as a credential id; `Display` names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    #[error("credential id is empty; use 1-64 characters of [A-Za-z0-9_.-]")]
    Empty,
    #[error("credential id {input:?} is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong { input: String, len: usize },
    #[error(
        "credential id {input:?} contains {bad:?} at position {position}; only [A-Za-z0-9_.-] is allowed"
    )]
    BadChar {
        input: String,
        bad: char,
        position: usize,
    },
}

impl CredentialId {
    /// Validates `input` against `[A-Za-z0-9_.-]{1,64}`.
    pub fn parse(input: &str) -> Result<Self, InvalidId> {
        if input.is_empty() {
            return Err(InvalidId::Empty);
        }
        if let Some((position, bad)) = input.chars().enumerate().find(|(_, c)| !is_id_char(*c)) {
            return Err(InvalidId::BadChar {
                input: shorten(input),
                bad,
                position,
            });
        }
        if input.len() > MAX_ID_LEN {
            return Err(InvalidId::TooLong {
                input: shorten(input),
                len: input.len(),
            });
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True for the characters an id may contain.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Error messages quote the input; keep an attacker-sized input from becoming
/// an attacker-sized log line.
fn shorten(input: &str) -> String {
    const KEEP: usize = 80;
    match input.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

impl std::str::FromStr for CredentialId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for CredentialId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({})", self.0)
    }
}

/// Lets maps keyed by `CredentialId` be searched with a `&str` without
/// validating or allocating (the hot read path does this). Sound because
/// the derived `Hash`/`Eq` are those of the inner `String`, i.e. of `str`.
impl std::borrow::Borrow<str> for CredentialId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CredentialId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_ids() {
        for ok in [
            "shop",
            "wx0123456789abcdef",
            "a",
            "A.b-c_d",
            &"x".repeat(64),
        ] {
            assert_eq!(CredentialId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_empty_long_and_bad_chars_naming_the_input() {
        assert_eq!(CredentialId::parse(""), Err(InvalidId::Empty));
        let long = "x".repeat(65);
        let err = CredentialId::parse(&long).unwrap_err();
        assert!(matches!(err, InvalidId::TooLong { len: 65, .. }));
        for (bad, ch) in [
            ("a{b", '{'),
            ("a}b", '}'),
            ("a:b", ':'),
            ("a b", ' '),
            ("é", 'é'),
            ("a*", '*'),
        ] {
            let err = CredentialId::parse(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(
                matches!(err, InvalidId::BadChar { bad: b, .. } if b == ch),
                "{msg}"
            );
        }
    }

    #[test]
    fn error_message_of_huge_input_stays_short() {
        let huge = "{".repeat(10_000);
        assert!(CredentialId::parse(&huge).unwrap_err().to_string().len() < 400);
    }

    #[test]
    fn deserialize_validates() {
        let ok: CredentialId = serde_json::from_str("\"shop\"").unwrap();
        assert_eq!(ok.as_str(), "shop");
        let err = serde_json::from_str::<CredentialId>("\"sh{op\"").unwrap_err();
        assert!(err.to_string().contains("sh{op"), "{err}");
    }

    proptest! {
        #[test]
        fn valid_iff_charset_and_length(s in "\\PC{0,80}") {
            let expected = !s.is_empty() && s.len() <= MAX_ID_LEN && s.chars().all(is_id_char);
            prop_assert_eq!(CredentialId::parse(&s).is_ok(), expected);
        }

        #[test]
        fn generated_valid_ids_round_trip(s in "[A-Za-z0-9_.-]{1,64}") {
            let id = CredentialId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.to_string().parse::<CredentialId>().unwrap(), id);
        }
    }
}
