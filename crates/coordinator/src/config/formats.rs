//! How config values are written in TOML (and printed by `check-config`):
//! durations as humantime strings, the quota day's offset as `"+08:00"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};
use wxtoken_common::QuotaOffset;

/// Durations as humantime strings: `"10m"`, `"500ms"`.
pub(super) mod humantime_str {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\", \"10m\" or \"500ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                humantime::parse_duration(v).map_err(|e| {
                    E::custom(format!(
                        "{v:?} is not a duration ({e}); write e.g. \"30s\", \"10m\", \"500ms\""
                    ))
                })
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// [`QuotaOffset`] as `"+08:00"`.
pub(super) mod offset_str {
    use super::*;

    pub fn serialize<S: Serializer>(o: &QuotaOffset, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(o)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QuotaOffset, D::Error> {
        QuotaOffset::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}
