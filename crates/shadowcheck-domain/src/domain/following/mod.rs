//! The following score: does this transmitter travel with this capture device? Pure: the scorer
//! (src/analysis/following.rs) reads the fixes, the device's path, the safe zones and the
//! allow-list, and stores what this returns. Every number that decides a level is in the
//! explanation, so a user can see why (docs/detector.md).
//!
//! The rule is here; `places` (fixed-centre places, zones, moving minutes), `linking` (a
//! rotating tracker's addresses) and `time_only` (captures without GPS) are its parts.

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::geo::{haversine_m, MAX_FIX_ACCURACY_M};
use super::registry::{MacKind, TransmitterKey};
use super::tracker::TrackerClass;
use super::SignalType;

mod linking;
mod places;
mod time_only;
pub mod words;

pub use linking::{linked, AddressSpan, LINK_GAP_SECONDS};
use places::{cluster, dwell_minutes, moving_minutes, zone_of};
pub use time_only::*;

pub const RULE_VERSION: &str = "following-3";
/// Fixes higher than this (or less accurate than [`MAX_FIX_ACCURACY_M`]) are left out, and
/// listed as such.
pub const MAX_ALTITUDE_M: f64 = 3_000.0;
/// A place is the circle of this radius around the first fix that did not fit an earlier place:
/// its centre never moves, so a steady walk makes a new place every ~150 m.
pub const PLACE_RADIUS_M: f64 = 150.0;
pub const MIN_SIGHTINGS: usize = 3;
/// What the gates ask of a transmitter announcing an item tracker's signature: a person with a
/// tag in the bag may never go farther than a short walk from home, so three places spanning
/// 200 m and ten minutes moving together are enough.
pub const TRACKER_MIN_PLACES: usize = 3;
pub const TRACKER_MIN_SPAN_M: f64 = 200.0;
pub const TRACKER_MIN_TOGETHER_MINUTES: f64 = 10.0;
/// And of anything else (phones, watches, cars, unknown BLE): more places, more ground, an
/// hour moving together.
pub const MIN_PLACES_ROTATING: usize = 3;
pub const MIN_PLACES_STABLE: usize = 4;
pub const MIN_PLACE_SPAN_M: f64 = 400.0;
pub const MIN_TOGETHER_MINUTES: f64 = 60.0;
/// `watch` needs at least this many places: what was only ever seen at one place (a shop's
/// beacon passed on every walk, a neighbour's TV) is not following anyone.
pub const WATCH_MIN_PLACES: usize = 2;
/// A stop: the device within this of where it stopped for at least this many minutes.
pub const DWELL_RADIUS_M: f64 = 100.0;
pub const DWELL_MIN_MINUTES: i64 = 5;
/// A transmitter without a tracker signature must have been with the device at this many of its
/// stops (outside safe zones or in them): a follower comes to where you stop; a fellow passenger
/// on your train, however often, does not.
pub const MIN_STOPS_TOGETHER: usize = 1;
/// A moving minute counts as "present" when a sighting falls within this many minutes of it:
/// phones scan BLE every 10–30 s, so a minute either side fits the cadence without covering a
/// whole short walk.
pub const PRESENCE_MINUTES: i64 = 1;
/// The capture device is moving when its minute positions advance at least this fast.
pub const MOVING_M_PER_MINUTE: f64 = 50.0;
/// Below this many moving minutes the share is not measured.
pub const MIN_MOVING_MINUTES: usize = 10;
/// A BLE address seen on this many days is stable (not a rotating one): it keeps 14 days of
/// history, as AirGuard does.
pub const STABLE_FROM_DAYS: i64 = 2;
/// Co-travellers (other transmitters passing the gates over the same time) before the crowd
/// penalty applies: a bus, a train.
pub const CROWD_FROM: usize = 3;
pub const ALERT_FROM: f32 = 70.0;
pub const SUSPICIOUS_FROM: f32 = 45.0;
pub const WATCH_FROM: f32 = 20.0;
/// At most this many excluded fixes and places are listed (the counts are always given).
const MAX_LISTED_EXCLUSIONS: usize = 50;
const MAX_LISTED_PLACES: usize = 100;
/// Above this many places the span is taken between the extreme places (a lower bound within
/// a factor of √2) rather than over every pair.
const EXACT_SPAN_PLACES: usize = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    None,
    Watch,
    Suspicious,
    Alert,
}

impl Level {
    pub const ALL: [Level; 4] = [Self::None, Self::Watch, Self::Suspicious, Self::Alert];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Watch => "watch",
            Self::Suspicious => "suspicious",
            Self::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// One sighting of the transmitter by the capture device.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
}

/// Where the capture device was in one minute.
#[derive(Clone, Debug, PartialEq)]
pub struct PathPoint {
    pub minute: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
}

/// A safe zone (home, office): evidence, never a distinct place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Zone {
    pub id: i64,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

/// What is scored.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub key: &'a TransmitterKey,
    pub tracker: Option<TrackerClass>,
    pub allowlisted: bool,
    /// Distinct days the registry has seen the transmitter on (any device).
    pub days_seen: i64,
}

/// Whether the address may rotate (randomised wifi/Bluetooth addresses; BLE addresses, whose
/// type captures rarely record, until one is seen on [`STABLE_FROM_DAYS`] days): such a
/// transmitter is only followed within a day.
pub fn rotating(key: &TransmitterKey, days_seen: i64) -> bool {
    match key.radio {
        SignalType::Ble => days_seen < STABLE_FROM_DAYS,
        SignalType::Wifi | SignalType::Bluetooth => key.mac_kind() == Some(MacKind::Local),
        SignalType::Cellular => false,
    }
}

/// How far back from the last sighting a pair is scored.
pub fn lookback(key: &TransmitterKey, days_seen: i64) -> Duration {
    if rotating(key, days_seen) {
        Duration::hours(24)
    } else {
        Duration::days(14)
    }
}

/// What the gates ask of one transmitter.
struct Thresholds {
    places: usize,
    span_m: f64,
    together_minutes: f64,
}

fn thresholds(tracker: Option<TrackerClass>, rotating: bool) -> Thresholds {
    match tracker {
        Some(c) if c.is_tracker() => Thresholds {
            places: TRACKER_MIN_PLACES,
            span_m: TRACKER_MIN_SPAN_M,
            together_minutes: TRACKER_MIN_TOGETHER_MINUTES,
        },
        _ => Thresholds {
            places: if rotating {
                MIN_PLACES_ROTATING
            } else {
                MIN_PLACES_STABLE
            },
            span_m: MIN_PLACE_SPAN_M,
            together_minutes: MIN_TOGETHER_MINUTES,
        },
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub gate: &'static str,
    pub value: Value,
    pub threshold: Value,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub component: &'static str,
    pub points: f64,
    pub max: f64,
    pub inputs: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Place {
    pub latitude: f64,
    pub longitude: f64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub sightings: usize,
    /// The safe zone it lies in, if any.
    pub safe_zone: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Excluded {
    pub id: i64,
    pub detected_at: DateTime<Utc>,
    pub reason: String,
}

/// Why a pair has its score and level.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub rule_version: &'static str,
    pub window: Value,
    pub score: f64,
    pub level: Level,
    pub gates: Vec<Gate>,
    pub components: Vec<Component>,
    pub penalties: Vec<Component>,
    /// How many places there were; `places` lists at most 100, the most visited.
    pub places_count: usize,
    pub places: Vec<Place>,
    pub excluded_count: usize,
    pub excluded: Vec<Excluded>,
    pub thresholds: Value,
    /// Earlier and later addresses of the same rotating tracker whose sightings are scored with
    /// this one's (see [`linked`]).
    pub linked_addresses: Vec<String>,
    /// An operator's verdict on the pair (see [`heed`]).
    pub feedback: Option<Value>,
}

/// Applies an operator's verdict on the pair: a `false_alarm` keeps it below `suspicious` (its
/// evidence is still scored and shown, so new evidence is visible); every verdict is shown.
pub fn heed(a: &mut Assessment, verdict: &str, details: Value) {
    if verdict == "false_alarm" && a.level > Level::Watch {
        a.level = Level::Watch;
        a.explanation.level = Level::Watch;
    }
    a.explanation.feedback = Some(details);
}

#[derive(Clone, Debug)]
pub struct Assessment {
    pub score: f32,
    pub level: Level,
    pub gates_passed: bool,
    /// First and last valid sighting together.
    pub together: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub explanation: Explanation,
}

fn gate(name: &'static str, value: Value, threshold: Value, passed: bool) -> Gate {
    Gate {
        gate: name,
        value,
        threshold,
        passed,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Scores one (transmitter, capture device) pair. `fixes` are the pair's sightings in the
/// lookback window, `path` the device's minutes over the same window (both in time order),
/// `crowd` how many other transmitters passed the gates with this device over the same time.
pub fn assess(
    subject: Subject<'_>,
    fixes: &[Fix],
    path: &[PathPoint],
    zones: &[Zone],
    crowd: usize,
) -> Assessment {
    let mut excluded = Vec::new();
    let mut valid: Vec<&Fix> = Vec::with_capacity(fixes.len());
    for f in fixes {
        let reason = match (f.accuracy_m, f.altitude_m) {
            (Some(a), _) if a > MAX_FIX_ACCURACY_M => {
                Some(format!("accuracy {a:.0} m > {MAX_FIX_ACCURACY_M:.0} m"))
            }
            (_, Some(h)) if h > MAX_ALTITUDE_M => Some(format!(
                "altitude {h:.0} m > {MAX_ALTITUDE_M:.0} m (airborne)"
            )),
            _ => None,
        };
        match reason {
            Some(reason) => excluded.push(Excluded {
                id: f.id,
                detected_at: f.at,
                reason,
            }),
            None => valid.push(f),
        }
    }
    valid.sort_by_key(|f| (f.at, f.id));
    let (clusters, of_fix) = cluster(&valid);
    let places: Vec<Place> = clusters
        .iter()
        .map(|c| Place {
            latitude: c.lat,
            longitude: c.lon,
            first_seen: c.first,
            last_seen: c.last,
            sightings: c.n,
            safe_zone: zone_of(zones, c.lat, c.lon).map(|z| z.name.clone()),
        })
        .collect();
    let distinct: Vec<usize> = (0..places.len())
        .filter(|&i| places[i].safe_zone.is_none())
        .collect();
    let at = |i: usize| (places[i].latitude, places[i].longitude);
    let candidates: Vec<usize> = if distinct.len() <= EXACT_SPAN_PLACES {
        distinct.clone()
    } else {
        let by = |key: fn(&Place) -> f64, max: bool| {
            distinct.iter().copied().max_by(|&a, &b| {
                let (x, y) = (key(&places[a]), key(&places[b]));
                if max {
                    x.total_cmp(&y)
                } else {
                    y.total_cmp(&x)
                }
            })
        };
        [
            by(|p| p.latitude, true),
            by(|p| p.latitude, false),
            by(|p| p.longitude, true),
            by(|p| p.longitude, false),
        ]
        .into_iter()
        .flatten()
        .collect()
    };
    let mut span_m: f64 = 0.0;
    for (n, &i) in candidates.iter().enumerate() {
        for &j in &candidates[n + 1..] {
            span_m = span_m.max(haversine_m(at(i), at(j)));
        }
    }
    let together = valid.first().zip(valid.last()).map(|(a, b)| (a.at, b.at));
    // Time together is the device's moving minutes in which the transmitter was present: a
    // shop's beacon seen at the start of every walk, or a TV at home, is never counted for the
    // gaps between walks.
    let moving = moving_minutes(path);
    let present = moving
        .iter()
        .filter(|m| {
            let from = **m - Duration::minutes(PRESENCE_MINUTES);
            let to = **m + Duration::minutes(PRESENCE_MINUTES);
            let at = valid.partition_point(|f| f.at < from);
            valid.get(at).is_some_and(|f| f.at <= to)
        })
        .count();
    let together_min = present as f64;
    // The places where it was with the device while the device had stopped.
    let dwell = dwell_minutes(path);
    let stops_together = {
        let mut at_stops: Vec<usize> = valid
            .iter()
            .zip(&of_fix)
            // In a minute of the stop itself: a passenger who gets off where the device does
            // is heard at the platform, not in the café.
            .filter(|(f, _)| {
                let minute = f.at - Duration::seconds(i64::from(f.at.second()));
                let minute = minute - Duration::nanoseconds(i64::from(minute.nanosecond()));
                dwell.binary_search(&minute).is_ok()
            })
            .map(|(_, &p)| p)
            .collect();
        at_stops.sort_unstable();
        at_stops.dedup();
        at_stops.len()
    };
    let has_signature = subject.tracker.is_some_and(|c| c.is_tracker());
    let need_stops = if has_signature { 0 } else { MIN_STOPS_TOGETHER };

    let is_rotating = rotating(subject.key, subject.days_seen);
    let need = thresholds(subject.tracker, is_rotating);
    let is_cell = subject.key.radio == SignalType::Cellular;
    let gates = vec![
        gate(
            "sightings",
            json!(valid.len()),
            json!(MIN_SIGHTINGS),
            valid.len() >= MIN_SIGHTINGS,
        ),
        gate(
            "distinct_places",
            json!(distinct.len()),
            json!(need.places),
            distinct.len() >= need.places,
        ),
        gate(
            "place_span_m",
            json!(span_m.round()),
            json!(need.span_m),
            span_m >= need.span_m,
        ),
        gate(
            "minutes_moving_together",
            json!(together_min),
            json!(need.together_minutes),
            together_min >= need.together_minutes,
        ),
        gate(
            "stops_together",
            json!(stops_together),
            json!(need_stops),
            stops_together >= need_stops,
        ),
        gate(
            "not_allowlisted",
            json!(subject.allowlisted),
            json!(false),
            !subject.allowlisted,
        ),
        gate("not_a_cell", json!(is_cell), json!(false), !is_cell),
    ];
    let gates_passed = gates.iter().all(|g| g.passed);

    // Places travelled together (beyond the first).
    let place_points = 25.0 * ((distinct.len().max(1) - 1).min(5) as f64 / 5.0);
    // Distance along the sequence of places visited together.
    let mut visits: Vec<usize> = of_fix.clone();
    visits.dedup();
    let travelled_m: f64 = visits
        .windows(2)
        .map(|w| {
            let (a, b) = (&places[w[0]], &places[w[1]]);
            haversine_m((a.latitude, a.longitude), (b.latitude, b.longitude))
        })
        .sum();
    let distance_points = 20.0 * (travelled_m / 10_000.0).min(1.0);
    // Share of the device's moving minutes in which the transmitter was present.
    let share = if moving.len() >= MIN_MOVING_MINUTES {
        present as f64 / moving.len() as f64
    } else {
        0.0
    };
    let share_points = 25.0 * share;
    // Recurrence: days on which it was with the device at two or more places.
    let mut days: Vec<NaiveDate> = Vec::new();
    {
        let mut per_day: Vec<(NaiveDate, usize)> = valid
            .iter()
            .zip(&of_fix)
            .filter(|(_, &p)| places[p].safe_zone.is_none())
            .map(|(f, &p)| (f.at.date_naive(), p))
            .collect();
        per_day.sort_unstable();
        per_day.dedup();
        for w in per_day.chunk_by(|a, b| a.0 == b.0) {
            if w.len() >= 2 {
                days.push(w[0].0);
            }
        }
    }
    let recurrence_points = 15.0 * ((days.len().max(1) - 1).min(2) as f64 / 2.0);
    let (signature_points, signature) = match subject.tracker {
        Some(c) if c.is_tracker() => (15.0, Some(c.as_str())),
        Some(c) => (5.0, Some(c.as_str())),
        None => (0.0, None),
    };
    let components = vec![
        Component {
            component: "places",
            points: round1(place_points),
            max: 25.0,
            inputs: json!({"distinct_places": distinct.len(), "safe_zone_places": places.len() - distinct.len()}),
        },
        Component {
            component: "distance_together",
            points: round1(distance_points),
            max: 20.0,
            inputs: json!({"metres": travelled_m.round(), "full_marks_at_m": 10_000}),
        },
        Component {
            component: "moving_time_share",
            points: round1(share_points),
            max: 25.0,
            inputs: json!({
                "moving_minutes": moving.len(),
                "present_minutes": present,
                "share": round1(share * 100.0) / 100.0,
                "measured": moving.len() >= MIN_MOVING_MINUTES,
            }),
        },
        Component {
            component: "recurrence",
            points: round1(recurrence_points),
            max: 15.0,
            inputs: json!({"days_at_two_or_more_places": days}),
        },
        Component {
            component: "tracker_signature",
            points: signature_points,
            max: 15.0,
            inputs: json!({"tracker_class": signature}),
        },
    ];
    let mut penalties = Vec::new();
    let mut score: f64 = components.iter().map(|c| c.points).sum();
    if crowd >= CROWD_FROM {
        let mut penalty = 3.0 * crowd.min(10) as f64;
        // A tracker's signature is not diluted by the crowd it rides with.
        if signature_points >= 15.0 {
            penalty /= 2.0;
        }
        score -= penalty;
        penalties.push(Component {
            component: "crowd",
            points: -penalty,
            max: 30.0,
            inputs: json!({"co_travellers": crowd, "applies_from": CROWD_FROM}),
        });
    }
    if subject.allowlisted && score > 0.0 {
        // The owner said it is theirs: it never ranks above a real warning.
        penalties.push(Component {
            component: "allowlisted",
            points: -round1(score),
            max: 100.0,
            inputs: json!({"allowlisted": true}),
        });
        score = 0.0;
    }
    let score = score.clamp(0.0, 100.0);
    let level = if subject.allowlisted || is_cell {
        Level::None
    } else if gates_passed && score >= f64::from(ALERT_FROM) {
        Level::Alert
    } else if gates_passed && score >= f64::from(SUSPICIOUS_FROM) {
        Level::Suspicious
    } else if score >= f64::from(WATCH_FROM)
        && distinct.len() >= WATCH_MIN_PLACES
        && stops_together >= need_stops
    {
        Level::Watch
    } else {
        Level::None
    };
    let excluded_count = excluded.len();
    excluded.truncate(MAX_LISTED_EXCLUSIONS);
    let places_count = places.len();
    let mut places = places;
    if places.len() > MAX_LISTED_PLACES {
        // The most visited places, in time order.
        let mut order: Vec<usize> = (0..places.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(places[i].sightings));
        order.truncate(MAX_LISTED_PLACES);
        order.sort_unstable();
        places = order.into_iter().map(|i| places[i].clone()).collect();
    }
    let window = json!({
        "from": valid.first().map(|f| f.at),
        "to": valid.last().map(|f| f.at),
        "lookback_hours": lookback(subject.key, subject.days_seen).num_hours(),
        "rotating_address": is_rotating,
    });
    Assessment {
        score: score as f32,
        level,
        gates_passed,
        together,
        explanation: Explanation {
            rule_version: RULE_VERSION,
            window,
            score: round1(score),
            level,
            gates,
            components,
            penalties,
            places_count,
            places,
            excluded_count,
            excluded,
            thresholds: json!({"alert": ALERT_FROM, "suspicious": SUSPICIOUS_FROM,
                "watch": WATCH_FROM, "watch_min_places": WATCH_MIN_PLACES}),
            linked_addresses: Vec::new(),
            feedback: None,
        },
    }
}

#[cfg(test)]
mod tests;
