//! A search of the transmitter registry: filters, an order, and a keyset page.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::values::{Score, TextPattern};
use crate::domain::following::Level;
use crate::domain::registry::TransmitterKey;
use crate::domain::rogue::RogueFlag;
use crate::domain::tracker::TrackerClass;
use crate::domain::{Bounds, SignalType};

/// How registry searches are ordered, descending: newest, most seen, or highest scored first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    LastSeen,
    Detections,
    /// Highest following score first; only scored transmitters.
    Score,
}

impl FromStr for Sort {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last_seen" => Ok(Self::LastSeen),
            "detections" => Ok(Self::Detections),
            "score" => Ok(Self::Score),
            _ => Err("must be last_seen, detections or score"),
        }
    }
}

/// Where a page starts: after this row in the search's order. Written into `next` links as
/// `last_seen,detections,score,radio,identifier`.
#[derive(Clone, Debug, PartialEq)]
pub struct TransmitterCursor {
    pub last_seen: DateTime<Utc>,
    pub detections: i64,
    pub score: f32,
    pub key: TransmitterKey,
}

impl FromStr for TransmitterCursor {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const INVALID: &str = "must be the cursor of a `next` link";
        let parts: Vec<&str> = s.splitn(5, ',').collect();
        let [seen, count, score, radio, identifier] = parts.as_slice() else {
            return Err(INVALID);
        };
        Ok(Self {
            last_seen: DateTime::parse_from_rfc3339(seen)
                .map_err(|_| INVALID)?
                .with_timezone(&Utc),
            detections: count.parse().map_err(|_| INVALID)?,
            score: score.parse().map_err(|_| INVALID)?,
            key: TransmitterKey::parse(radio, identifier).map_err(|_| INVALID)?,
        })
    }
}

impl fmt::Display for TransmitterCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{}",
            self.last_seen.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.detections,
            self.score,
            self.key.radio,
            self.key.identifier
        )
    }
}

/// A registry search, every field already valid.
#[derive(Clone, Debug, Default)]
pub struct TransmitterSearch {
    /// Any of these radios (empty: all).
    pub radios: Vec<SignalType>,
    /// Of the estimated position.
    pub bbox: Option<Bounds>,
    /// Last seen at or after.
    pub seen_from: Option<DateTime<Utc>>,
    /// First seen at or before.
    pub seen_until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of a name or SSID it used.
    pub name: Option<TextPattern>,
    /// Case-insensitive substring of the vendor.
    pub vendor: Option<TextPattern>,
    pub device_id: Option<Uuid>,
    /// Any of these tracker classes (empty: all).
    pub trackers: Vec<TrackerClass>,
    /// At or above this following level.
    pub min_level: Option<Level>,
    pub min_score: Option<Score>,
    /// Carrying this rogue flag.
    pub flag: Option<RogueFlag>,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<TransmitterCursor>,
}
