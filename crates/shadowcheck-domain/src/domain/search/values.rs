//! Values a search is built from, each parsed from text (`FromStr`) into something that can only
//! be valid, or refused with what it must be. Serde reads them through the same `FromStr`, so a
//! query-string field typed as one of these is validated by being read.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::transmitters::{Sort, TransmitterCursor};
use super::SearchError;
use crate::domain::following::Level;
use crate::domain::rogue::RogueFlag;
use crate::domain::tracker::TrackerClass;
use crate::domain::{BBox, Mac, SignalType};

/// Implements `serde::Deserialize` through `FromStr` (the text trimmed first).
macro_rules! deserialize_from_str {
    ($($ty:ty),* $(,)?) => {$(
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                text.trim().parse().map_err(::serde::de::Error::custom)
            }
        }
    )*};
}

deserialize_from_str!(
    BBox,
    Mac,
    Timestamp,
    SignalTypes,
    SsidPattern,
    TextPattern,
    MinSignal,
    Score,
    YesNo,
    Trackers,
    Level,
    RogueFlag,
    Sort,
    TransmitterCursor,
);

/// An RFC 3339 instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl FromStr for Timestamp {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(|_| "must be an RFC 3339 timestamp")
    }
}

/// A half-open window `[start, end)`; either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWindow {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl TimeWindow {
    /// A window whose end (when both are given) is after its start.
    pub fn new(
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Self, SearchError> {
        match (start, end) {
            (Some(s), Some(e)) if s >= e => Err(SearchError::new("end", "must be after start")),
            _ => Ok(Self { start, end }),
        }
    }
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.start
    }
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }
}

/// One radio or a comma list of them, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignalTypes(pub Vec<SignalType>);

impl FromStr for SignalTypes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut kinds = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let kind: SignalType = part.parse()?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(Self(kinds))
    }
}

/// A case-insensitive substring of an SSID: 1 to 32 bytes (an SSID's length), no NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsidPattern(String);

impl SsidPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SsidPattern {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 32 || s.contains('\0') {
            return Err("must be 1 to 32 bytes");
        }
        Ok(Self(s.to_owned()))
    }
}

/// A case-insensitive substring of a name or vendor: 1 to 64 printable characters (control
/// characters, NUL among them, cannot reach PostgreSQL text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextPattern(String);

impl TextPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TextPattern {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
            return Err("must be 1 to 64 printable characters");
        }
        Ok(Self(s.to_owned()))
    }
}

/// A received signal strength floor in dBm, -200 to 50.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinSignal(i32);

impl MinSignal {
    pub fn dbm(self) -> i32 {
        self.0
    }
}

impl FromStr for MinSignal {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<i32>()
            .ok()
            .filter(|v| (-200..=50).contains(v))
            .map(Self)
            .ok_or("must be an integer dBm value between -200 and 50")
    }
}

/// A following score floor, 0 to 100.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(f32);

impl Score {
    pub fn value(self) -> f32 {
        self.0
    }
}

impl FromStr for Score {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<f32>()
            .ok()
            .filter(|v| (0.0..=100.0).contains(v))
            .map(Self)
            .ok_or("must be a score from 0 to 100")
    }
}

/// A boolean as query strings write it: `true`/`1` or `false`/`0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YesNo(pub bool);

impl FromStr for YesNo {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "true" | "1" => Ok(Self(true)),
            "false" | "0" => Ok(Self(false)),
            _ => Err("must be true or false"),
        }
    }
}

/// Tracker classes, a comma list; `any` stands for every item tracker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trackers(pub Vec<TrackerClass>);

impl FromStr for Trackers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut classes = Vec::new();
        let mut add = |c: TrackerClass| {
            if !classes.contains(&c) {
                classes.push(c);
            }
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "any" {
                TrackerClass::ALL
                    .into_iter()
                    .filter(|c| c.is_tracker())
                    .for_each(&mut add);
                continue;
            }
            add(TrackerClass::parse(part).ok_or_else(|| {
                let names: Vec<&str> = TrackerClass::ALL.iter().map(|c| c.as_str()).collect();
                format!("must be `any` or among {}", names.join(", "))
            })?);
        }
        Ok(Self(classes))
    }
}

impl FromStr for Level {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or("must be none, watch, suspicious or alert")
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
