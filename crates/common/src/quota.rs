//! Quota days: WeChat resets daily quotas at midnight Asia/Shanghai (UTC+8,
//! no daylight saving), and the fleet's own counter key is per quota day.
//!
//! The offset is configurable because test accounts, simulators and
//! operators may want another boundary. This module converts timestamps the
//! caller provides; it never reads a clock.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

/// The UTC offset at which a quota day starts. Default: +08:00 (Asia/Shanghai).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QuotaOffset(FixedOffset);

impl QuotaOffset {
    /// Parses `+08:00`, `-05:30`, `+0800` or `Z`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "Z" || s == "UTC" {
            return Ok(Self::utc());
        }
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(format!("quota day offset {s:?} must look like +08:00")),
        };
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        let bad = || format!("quota day offset {s:?} must look like +08:00");
        if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
        let minutes: i32 = digits[2..].parse().map_err(|_| bad())?;
        if hours > 14 || minutes > 59 {
            return Err(bad());
        }
        FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
            .map(Self)
            .ok_or_else(bad)
    }

    pub fn utc() -> Self {
        Self(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()))
    }

    pub fn seconds_east(self) -> i32 {
        self.0.local_minus_utc()
    }
}

impl Default for QuotaOffset {
    fn default() -> Self {
        match FixedOffset::east_opt(8 * 3600) {
            Some(o) => Self(o),
            None => unreachable!("+08:00 is a valid offset"),
        }
    }
}

impl fmt::Debug for QuotaOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for QuotaOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One quota day: a calendar date at a [`QuotaOffset`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaDay {
    date: NaiveDate,
    offset_secs: i32,
}

impl QuotaDay {
    /// The quota day that contains `unix_ms`.
    pub fn from_unix_ms(unix_ms: i64, offset: QuotaOffset) -> Self {
        let utc = DateTime::from_timestamp_millis(unix_ms).unwrap_or_default();
        Self {
            date: utc.with_timezone(&offset.0).date_naive(),
            offset_secs: offset.seconds_east(),
        }
    }

    /// `YYYYMMDD`, the suffix of the quota counter key.
    pub fn key_suffix(self) -> String {
        self.date.format("%Y%m%d").to_string()
    }

    /// Unix ms at which this quota day starts.
    pub fn start_unix_ms(self) -> i64 {
        let offset = FixedOffset::east_opt(self.offset_secs).unwrap_or_else(|| unreachable!());
        match offset.from_local_datetime(&self.date.and_time(chrono::NaiveTime::MIN)) {
            chrono::LocalResult::Single(t) => t.timestamp_millis(),
            _ => unreachable!("fixed offsets have no gaps"),
        }
    }

    /// Unix ms at which the next quota day starts (when a 45009 lifts).
    pub fn next_start_unix_ms(self) -> i64 {
        self.start_unix_ms() + 86_400_000
    }
}

/// How long a quota counter counts: a quota day, a clock hour (WeCom's
/// hourly ticket caps) at the same offset, or a minute (an open platform's
/// per-minute `api_authorizer_token` limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Hour,
    Minute,
}

/// One counting period of a [`Window`]: its key suffix and its bounds.
#[derive(Clone, PartialEq, Eq)]
pub struct QuotaPeriod {
    window: Window,
    start_ms: i64,
    suffix: String,
    offset: QuotaOffset,
}

impl Window {
    /// The period of this window that contains `unix_ms`.
    pub fn at(self, unix_ms: i64, offset: QuotaOffset) -> QuotaPeriod {
        let day = QuotaDay::from_unix_ms(unix_ms, offset);
        match self {
            Window::Day => QuotaPeriod {
                window: self,
                start_ms: day.start_unix_ms(),
                suffix: day.key_suffix(),
                offset,
            },
            Window::Hour => {
                let hour = (unix_ms - day.start_unix_ms()).div_euclid(3_600_000);
                QuotaPeriod {
                    window: self,
                    start_ms: day.start_unix_ms() + hour * 3_600_000,
                    suffix: format!("{}{hour:02}", day.key_suffix()),
                    offset,
                }
            }
            Window::Minute => {
                let minute = (unix_ms - day.start_unix_ms()).div_euclid(60_000);
                QuotaPeriod {
                    window: self,
                    start_ms: day.start_unix_ms() + minute * 60_000,
                    suffix: format!("{}{:02}{:02}", day.key_suffix(), minute / 60, minute % 60),
                    offset,
                }
            }
        }
    }

    pub fn length_ms(self) -> i64 {
        match self {
            Window::Day => 86_400_000,
            Window::Hour => 3_600_000,
            Window::Minute => 60_000,
        }
    }

    /// Whether a limit in this window holds for any window-long stretch
    /// (the current and the previous period are counted together), not
    /// per calendar period: WeChat's hourly and per-minute limits slide.
    pub fn slides(self) -> bool {
        !matches!(self, Window::Day)
    }

    /// `day`, `hour`, `minute`: for messages.
    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Hour => "hour",
            Window::Minute => "minute",
        }
    }
}

impl QuotaPeriod {
    pub fn window(&self) -> Window {
        self.window
    }

    /// `YYYYMMDD`, `YYYYMMDDHH` or `YYYYMMDDHHMM` (local time at the offset).
    pub fn key_suffix(&self) -> &str {
        &self.suffix
    }

    pub fn start_unix_ms(&self) -> i64 {
        self.start_ms
    }

    /// When the next period starts (when a refusal lifts).
    pub fn end_unix_ms(&self) -> i64 {
        self.start_ms + self.window.length_ms()
    }

    /// The period just before this one.
    pub fn previous(&self) -> QuotaPeriod {
        self.window.at(self.start_ms - 1, self.offset)
    }
}

impl fmt::Debug for QuotaPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuotaPeriod({})", self.suffix)
    }
}

impl fmt::Debug for QuotaDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuotaDay({})", self.key_suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2023-11-15T16:00:00Z == 2023-11-16T00:00:00+08:00
    const SHANGHAI_MIDNIGHT: i64 = 1_700_064_000_000;

    #[test]
    fn shanghai_midnight_is_the_boundary() {
        let off = QuotaOffset::default();
        let before = QuotaDay::from_unix_ms(SHANGHAI_MIDNIGHT - 1, off);
        let at = QuotaDay::from_unix_ms(SHANGHAI_MIDNIGHT, off);
        assert_eq!(before.key_suffix(), "20231115");
        assert_eq!(at.key_suffix(), "20231116");
        assert_eq!(at.start_unix_ms(), SHANGHAI_MIDNIGHT);
        assert_eq!(before.next_start_unix_ms(), SHANGHAI_MIDNIGHT);
    }

    #[test]
    fn minutes_are_named_and_bounded_like_hours() {
        let off = QuotaOffset::default();
        let p = Window::Minute.at(SHANGHAI_MIDNIGHT + 3_600_000 + 61_000, off);
        assert_eq!(p.key_suffix(), "202311160101");
        assert_eq!(p.start_unix_ms(), SHANGHAI_MIDNIGHT + 3_660_000);
        assert_eq!(p.end_unix_ms(), SHANGHAI_MIDNIGHT + 3_720_000);
        assert_eq!(p.previous().key_suffix(), "202311160100");
        assert_eq!(
            Window::Minute
                .at(SHANGHAI_MIDNIGHT, off)
                .previous()
                .key_suffix(),
            "202311152359"
        );
        assert!(Window::Minute.slides() && Window::Hour.slides() && !Window::Day.slides());
    }

    #[test]
    fn other_offsets() {
        let utc = QuotaOffset::parse("Z").unwrap();
        assert_eq!(
            QuotaDay::from_unix_ms(SHANGHAI_MIDNIGHT, utc).key_suffix(),
            "20231115"
        );
        let ny = QuotaOffset::parse("-05:00").unwrap();
        assert_eq!(ny.seconds_east(), -5 * 3600);
        assert_eq!(
            QuotaOffset::parse("+0530").unwrap().seconds_east(),
            5 * 3600 + 1800
        );
        for bad in ["8", "+8:00", "+25:00", "+08:61", "", "UTC+8"] {
            assert!(QuotaOffset::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hours_are_local_clock_hours() {
        let off = QuotaOffset::default();
        let p = Window::Hour.at(SHANGHAI_MIDNIGHT + 3 * 3_600_000 + 5, off);
        assert_eq!(p.key_suffix(), "2023111603");
        assert_eq!(p.start_unix_ms(), SHANGHAI_MIDNIGHT + 3 * 3_600_000);
        assert_eq!(p.end_unix_ms(), SHANGHAI_MIDNIGHT + 4 * 3_600_000);
        assert_eq!(p.previous().key_suffix(), "2023111602");
        let first = Window::Hour.at(SHANGHAI_MIDNIGHT, off);
        assert_eq!(first.previous().key_suffix(), "2023111523");
        let day = Window::Day.at(SHANGHAI_MIDNIGHT, off);
        assert_eq!(day.key_suffix(), "20231116");
        assert_eq!(day.previous().key_suffix(), "20231115");
    }

    #[test]
    fn day_start_contains_and_orders() {
        let off = QuotaOffset::default();
        for ms in [0_i64, 1_234_567_890_123, SHANGHAI_MIDNIGHT + 86_399_999] {
            let day = QuotaDay::from_unix_ms(ms, off);
            assert!(day.start_unix_ms() <= ms && ms < day.next_start_unix_ms());
            assert!(QuotaDay::from_unix_ms(day.next_start_unix_ms(), off) > day);
        }
    }
}
