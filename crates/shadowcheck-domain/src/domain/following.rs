//! The following score: does this transmitter travel with this capture device? Pure: the scorer
//! (src/analysis/following.rs) reads the fixes, the device's path, the safe zones and the
//! allow-list, and stores what this returns. Every number that decides a level is in the
//! explanation, so a user can see why (docs/detector.md).
//!
//! Longer than 600 lines on purpose: the thresholds, the places, the gates and the score are
//! one rule, read and changed together, and its tests sit beside it.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::geo::{haversine_m, MAX_FIX_ACCURACY_M};
use super::registry::{MacKind, TransmitterKey};
use super::tracker::TrackerClass;
use super::SignalType;

pub const RULE_VERSION: &str = "following-1";
/// Fixes higher than this (or less accurate than [`MAX_FIX_ACCURACY_M`]) are left out, and
/// listed as such.
pub const MAX_ALTITUDE_M: f64 = 3_000.0;
/// Fixes within this distance of a place's centre are that place.
pub const PLACE_RADIUS_M: f64 = 150.0;
pub const MIN_SIGHTINGS: usize = 3;
pub const MIN_PLACES_ROTATING: usize = 3;
pub const MIN_PLACES_STABLE: usize = 4;
pub const MIN_PLACE_SPAN_M: f64 = 400.0;
pub const MIN_TOGETHER_MINUTES: f64 = 60.0;
/// Consecutive sightings closer than this in time count as continuous time together.
pub const TOGETHER_GAP_MINUTES: i64 = 20;
/// A moving minute counts as "present" when a sighting falls within this many minutes of it.
pub const PRESENCE_MINUTES: i64 = 5;
/// The capture device is moving when its minute positions advance at least this fast.
pub const MOVING_M_PER_MINUTE: f64 = 50.0;
/// Below this many moving minutes the share is not measured.
pub const MIN_MOVING_MINUTES: usize = 10;
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
}

/// Whether the address may rotate (randomised wifi/Bluetooth addresses; BLE addresses, whose
/// type captures rarely record): such a transmitter is only followed within a day.
pub fn rotating(key: &TransmitterKey) -> bool {
    match key.radio {
        SignalType::Ble => true,
        SignalType::Wifi | SignalType::Bluetooth => key.mac_kind() == Some(MacKind::Local),
        SignalType::Cellular => false,
    }
}

/// How far back from the last sighting a pair is scored.
pub fn lookback(key: &TransmitterKey) -> Duration {
    if rotating(key) {
        Duration::hours(24)
    } else {
        Duration::days(14)
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

struct Cluster {
    lat: f64,
    lon: f64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    n: usize,
}

/// Leader clustering in time order: each fix joins the first place whose centre is within
/// [`PLACE_RADIUS_M`], or starts one. Returns the places and each fix's place. Places are
/// found through a grid of cells a little larger than the radius, so thousands of fixes cost
/// a few neighbouring cells each, not every place.
fn cluster(fixes: &[&Fix]) -> (Vec<Cluster>, Vec<usize>) {
    let mut places: Vec<Cluster> = Vec::new();
    let mut of_fix = Vec::with_capacity(fixes.len());
    let lat_step = 0.0015; // ~167 m
    let lon_step = fixes
        .first()
        .map_or(lat_step, |f| lat_step / f.lat.to_radians().cos().max(0.05));
    let cell = |lat: f64, lon: f64| {
        (
            (lat / lat_step).floor() as i64,
            (lon / lon_step).floor() as i64,
        )
    };
    let mut grid: std::collections::HashMap<(i64, i64), Vec<usize>> = Default::default();
    for f in fixes {
        // A place's centre drifts at most the radius from where it started: two cells cover it.
        let (cy, cx) = cell(f.lat, f.lon);
        let mut found: Option<usize> = None;
        for dy in -2..=2 {
            for dx in -2..=2 {
                for &i in grid.get(&(cy + dy, cx + dx)).into_iter().flatten() {
                    let p = &places[i];
                    if found.is_none_or(|j| i < j)
                        && haversine_m((p.lat, p.lon), (f.lat, f.lon)) <= PLACE_RADIUS_M
                    {
                        found = Some(i);
                    }
                }
            }
        }
        match found {
            Some(i) => {
                let p = &mut places[i];
                p.n += 1;
                // A running mean: a place's centre settles where its fixes are.
                p.lat += (f.lat - p.lat) / p.n as f64;
                p.lon += (f.lon - p.lon) / p.n as f64;
                p.first = p.first.min(f.at);
                p.last = p.last.max(f.at);
                of_fix.push(i);
            }
            None => {
                places.push(Cluster {
                    lat: f.lat,
                    lon: f.lon,
                    first: f.at,
                    last: f.at,
                    n: 1,
                });
                grid.entry((cy, cx)).or_default().push(places.len() - 1);
                of_fix.push(places.len() - 1);
            }
        }
    }
    (places, of_fix)
}

fn zone_of(zones: &[Zone], lat: f64, lon: f64) -> Option<&Zone> {
    zones
        .iter()
        .find(|z| haversine_m((z.lat, z.lon), (lat, lon)) <= z.radius_m)
}

/// Minutes in which the device moved, from its per-minute path.
fn moving_minutes(path: &[PathPoint]) -> Vec<DateTime<Utc>> {
    path.windows(2)
        .filter_map(|w| {
            let minutes = (w[1].minute - w[0].minute).num_minutes();
            if !(1..=2).contains(&minutes) {
                return None;
            }
            let speed = haversine_m((w[0].lat, w[0].lon), (w[1].lat, w[1].lon)) / minutes as f64;
            (speed >= MOVING_M_PER_MINUTE).then_some(w[1].minute)
        })
        .collect()
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
    let mut together_min = 0.0;
    for w in valid.windows(2) {
        let gap = w[1].at - w[0].at;
        if gap <= Duration::minutes(TOGETHER_GAP_MINUTES) {
            together_min += gap.num_seconds() as f64 / 60.0;
        }
    }
    let together = valid.first().zip(valid.last()).map(|(a, b)| (a.at, b.at));

    let is_rotating = rotating(subject.key);
    let min_places = if is_rotating {
        MIN_PLACES_ROTATING
    } else {
        MIN_PLACES_STABLE
    };
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
            json!(min_places),
            distinct.len() >= min_places,
        ),
        gate(
            "place_span_m",
            json!(span_m.round()),
            json!(MIN_PLACE_SPAN_M),
            span_m >= MIN_PLACE_SPAN_M,
        ),
        gate(
            "minutes_together",
            json!(round1(together_min)),
            json!(MIN_TOGETHER_MINUTES),
            together_min >= MIN_TOGETHER_MINUTES,
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
    let score = score.clamp(0.0, 100.0);
    let level = if subject.allowlisted || is_cell {
        Level::None
    } else if gates_passed && score >= f64::from(ALERT_FROM) {
        Level::Alert
    } else if gates_passed && score >= f64::from(SUSPICIOUS_FROM) {
        Level::Suspicious
    } else if score >= f64::from(WATCH_FROM) {
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
        "lookback_hours": lookback(subject.key).num_hours(),
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
            thresholds: json!({"alert": ALERT_FROM, "suspicious": SUSPICIOUS_FROM, "watch": WATCH_FROM}),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_717_228_800, 0).expect("time")
    }

    /// A device driving east at 300 m/min for `minutes`, one path point a minute.
    fn drive(minutes: i64) -> Vec<PathPoint> {
        (0..minutes)
            .map(|m| PathPoint {
                minute: t0() + Duration::minutes(m),
                lat: 52.5,
                lon: 13.3 + m as f64 * 300.0 / 67_700.0,
            })
            .collect()
    }

    fn along(path: &[PathPoint], every: usize) -> Vec<Fix> {
        path.iter()
            .step_by(every)
            .enumerate()
            .map(|(i, p)| Fix {
                id: i as i64,
                at: p.minute,
                lat: p.lat,
                lon: p.lon,
                accuracy_m: Some(10.0),
                altitude_m: None,
            })
            .collect()
    }

    fn ble(id: &str) -> TransmitterKey {
        TransmitterKey::parse("ble", id).expect("key")
    }

    #[test]
    fn a_tag_that_rides_along_is_an_explained_alert() {
        let path = drive(120);
        let key = ble("c0:11:22:33:44:55");
        let a = assess(
            Subject {
                key: &key,
                tracker: Some(TrackerClass::AppleFindMy),
                allowlisted: false,
            },
            &along(&path, 2),
            &path,
            &[],
            0,
        );
        assert!(a.gates_passed, "{:#?}", a.explanation.gates);
        assert_eq!(a.level, Level::Alert, "{:#?}", a.explanation);
        let e = serde_json::to_value(&a.explanation).expect("json");
        assert_eq!(e["rule_version"], RULE_VERSION);
        assert_eq!(e["gates"].as_array().map(Vec::len), Some(6));
        assert!(e["components"][2]["inputs"]["share"].as_f64() > Some(0.9));
        // Allow-listed: the same evidence, no level.
        let mine = assess(
            Subject {
                key: &key,
                tracker: Some(TrackerClass::AppleFindMy),
                allowlisted: true,
            },
            &along(&path, 2),
            &path,
            &[],
            0,
        );
        assert_eq!(mine.level, Level::None);
        assert!(!mine.gates_passed);
    }

    #[test]
    fn weak_evidence_stays_below_suspicious() {
        let path = drive(120);
        let key = ble("c0:11:22:33:44:66");
        let subject = Subject {
            key: &key,
            tracker: None,
            allowlisted: false,
        };
        // 20 minutes on the same bus: fails the time-together gate.
        let bus = assess(subject, &along(&path[40..60], 1), &path, &[], 0);
        assert!(!bus.gates_passed);
        assert!(bus.level <= Level::Watch, "{:?}", bus.level);
        // Every fix inaccurate: nothing counts, each exclusion is listed.
        let mut bad = along(&path, 2);
        for f in &mut bad {
            f.accuracy_m = Some(500.0);
        }
        let a = assess(subject, &bad, &path, &[], 0);
        assert_eq!(a.level, Level::None);
        assert_eq!(a.explanation.excluded_count, bad.len());
        // A zone over the whole drive: the places are evidence, not distinct places.
        let zone = Zone {
            id: 1,
            name: "home".into(),
            lat: 52.5,
            lon: 13.56,
            radius_m: 5_000.0,
        };
        let a = assess(subject, &along(&path[50..70], 1), &path, &[zone], 0);
        assert!(!a.explanation.places.is_empty());
        assert!(a.explanation.places.iter().all(|p| p.safe_zone.is_some()));
        assert_eq!(a.explanation.gates[1].value, json!(0));
    }

    #[test]
    fn a_crowd_lowers_a_plain_follower_more_than_a_tracker() {
        let path = drive(120);
        let key = ble("c0:11:22:33:44:77");
        let plain = Subject {
            key: &key,
            tracker: None,
            allowlisted: false,
        };
        let alone = assess(plain, &along(&path, 2), &path, &[], 0);
        let train = assess(plain, &along(&path, 2), &path, &[], 12);
        assert!(train.score + 25.0 < alone.score + 0.1);
        assert!(train.level < alone.level);
        assert_eq!(train.explanation.penalties.len(), 1);
    }
}
