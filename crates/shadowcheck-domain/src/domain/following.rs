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

pub const RULE_VERSION: &str = "following-2";
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

/// A rotating tracker's next address is heard within this long of its last one falling silent
/// (SmartTags change address every few minutes near their owner; phones scan every 10–30 s).
pub const LINK_GAP_SECONDS: i64 = 90;
/// At most this many addresses are linked into one chain.
const MAX_LINKED: usize = 500;

/// When one address of a tracker class was first and last heard.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressSpan {
    pub key: TransmitterKey,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// The addresses that continue `key`'s as one rotating tracker, earliest first (`key` itself
/// left out): each next address is first heard soon after the previous one was last heard,
/// never overlapping it — within [`LINK_GAP_SECONDS`], or with the capture device recording
/// nothing in between (`path`, its minutes: a phone that records only while walking hears a tag
/// that rotated between walks as the first new address of its class on the next walk). Where
/// two addresses could continue a chain it stops there: linking the wrong one would lend a
/// stranger's evidence.
pub fn linked(
    key: &TransmitterKey,
    spans: &[AddressSpan],
    path: &[PathPoint],
) -> Vec<TransmitterKey> {
    let Some(me) = spans.iter().find(|s| &s.key == key) else {
        return Vec::new();
    };
    let gap = Duration::seconds(LINK_GAP_SECONDS);
    // Whether the device recorded at most one minute strictly between two instants.
    let silent = |a: DateTime<Utc>, b: DateTime<Utc>| {
        let from = path.partition_point(|p| p.minute <= a);
        let to = path.partition_point(|p| p.minute < b);
        to.saturating_sub(from) <= 1
    };
    let follows = |earlier: &AddressSpan, later: &AddressSpan| {
        earlier.last < later.first
            && (later.first - earlier.last <= gap || silent(earlier.last, later.first))
    };
    let mut before: Vec<TransmitterKey> = Vec::new();
    let mut cur = me;
    while before.len() < MAX_LINKED {
        let mut prev = spans.iter().filter(|s| follows(s, cur));
        match (prev.next(), prev.next()) {
            (Some(p), None) if &p.key != key && !before.contains(&p.key) => {
                before.push(p.key.clone());
                cur = p;
            }
            _ => break,
        }
    }
    before.reverse();
    let mut after: Vec<TransmitterKey> = Vec::new();
    let mut cur = me;
    while before.len() + after.len() < MAX_LINKED {
        let mut next = spans.iter().filter(|s| follows(cur, s));
        match (next.next(), next.next()) {
            (Some(n), None)
                if &n.key != key && !after.contains(&n.key) && !before.contains(&n.key) =>
            {
                after.push(n.key.clone());
                cur = n;
            }
            _ => break,
        }
    }
    before.extend(after);
    before
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

struct Cluster {
    lat: f64,
    lon: f64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    n: usize,
}

/// Leader clustering in time order with fixed centres: each fix joins the first place whose
/// centre (the fix that started it) is within [`PLACE_RADIUS_M`], or starts one. A centre that
/// followed the mean of its fixes would drift along a steady walk and keep it one place for
/// hundreds of metres. Returns the places and each fix's place. Places are found through a grid
/// of cells a little larger than the radius, so thousands of fixes cost a few neighbouring cells
/// each, not every place.
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
        // A centre within the radius is at most one cell away.
        let (cy, cx) = cell(f.lat, f.lon);
        let mut found: Option<usize> = None;
        for dy in -1..=1 {
            for dx in -1..=1 {
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
    } else if score >= f64::from(WATCH_FROM) && distinct.len() >= WATCH_MIN_PLACES {
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

/// Time-only evidence, for a capture device without fixes (a rig without GPS in a car): the
/// span of windows of this length in which the transmitter was heard.
pub const TIME_WINDOW_MINUTES: i64 = 5;
/// How far back from its last sighting a pair is scored on time alone: one drive.
pub const TIME_ONLY_LOOKBACK_HOURS: i64 = 2;
/// Heard in at least this many windows, spanning at least this long: with you for most of 20
/// minutes, as Chasing-Your-Tail's 5/10/15/20-minute lists ask.
pub const TIME_ONLY_MIN_WINDOWS: usize = 4;
pub const TIME_ONLY_MIN_SPAN_MINUTES: i64 = 20;
/// Without positions a moving device shows itself by what it hears: at least this share of the
/// other transmitters heard in one window only (roadside networks passing by), out of at least
/// [`TIME_ONLY_MIN_HEARD`]. A sensor on a shelf hears the same neighbours all day: nothing it
/// hears is following it.
pub const TIME_ONLY_MIN_CHURN: f64 = 0.5;
pub const TIME_ONLY_MIN_HEARD: usize = 20;

/// What a capture device heard over a pair's time window: how many transmitters, and how many
/// of them in one window only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Churn {
    pub heard: usize,
    pub heard_once: usize,
}

/// Scores a pair on time alone (`times` its sightings, in order, none with a fix): persistence
/// across windows while the device was evidently moving. Never above `suspicious`, and the
/// explanation says the evidence is time only.
pub fn assess_by_time(subject: Subject<'_>, times: &[DateTime<Utc>], churn: Churn) -> Assessment {
    let window = |t: &DateTime<Utc>| t.timestamp().div_euclid(TIME_WINDOW_MINUTES * 60);
    let mut windows: Vec<i64> = times.iter().map(window).collect();
    windows.dedup();
    let span = match (times.first(), times.last()) {
        (Some(a), Some(b)) => (*b - *a).num_minutes(),
        _ => 0,
    };
    let share_once = if churn.heard == 0 {
        0.0
    } else {
        churn.heard_once as f64 / churn.heard as f64
    };
    let moving = churn.heard >= TIME_ONLY_MIN_HEARD && share_once >= TIME_ONLY_MIN_CHURN;
    let is_cell = subject.key.radio == SignalType::Cellular;
    let gates = vec![
        gate(
            "sightings",
            json!(times.len()),
            json!(MIN_SIGHTINGS),
            times.len() >= MIN_SIGHTINGS,
        ),
        gate(
            "windows_heard",
            json!(windows.len()),
            json!(TIME_ONLY_MIN_WINDOWS),
            windows.len() >= TIME_ONLY_MIN_WINDOWS,
        ),
        gate(
            "span_minutes",
            json!(span),
            json!(TIME_ONLY_MIN_SPAN_MINUTES),
            span >= TIME_ONLY_MIN_SPAN_MINUTES,
        ),
        gate(
            "device_moving",
            json!({"heard": churn.heard, "heard_in_one_window": churn.heard_once}),
            json!({"heard_at_least": TIME_ONLY_MIN_HEARD, "share_in_one_window": TIME_ONLY_MIN_CHURN}),
            moving,
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
    // Windows heard over those the span covers: always there, or now and then.
    let covered = (span / TIME_WINDOW_MINUTES + 1).max(1) as f64;
    let share = (windows.len() as f64 / covered).min(1.0);
    let (signature_points, signature) = match subject.tracker {
        Some(c) if c.is_tracker() => (15.0, Some(c.as_str())),
        Some(c) => (5.0, Some(c.as_str())),
        None => (0.0, None),
    };
    let components = vec![
        Component {
            component: "windows_heard",
            points: round1(35.0 * ((windows.len().max(1) - 1).min(8) as f64 / 8.0)),
            max: 35.0,
            inputs: json!({"windows": windows.len(), "window_minutes": TIME_WINDOW_MINUTES}),
        },
        Component {
            component: "persistence",
            points: round1(25.0 * share),
            max: 25.0,
            inputs: json!({"share_of_windows": round1(share * 100.0) / 100.0, "span_minutes": span}),
        },
        Component {
            component: "tracker_signature",
            points: signature_points,
            max: 15.0,
            inputs: json!({"tracker_class": signature}),
        },
    ];
    let mut score: f64 = components.iter().map(|c| c.points).sum();
    let mut penalties = Vec::new();
    if subject.allowlisted && score > 0.0 {
        penalties.push(Component {
            component: "allowlisted",
            points: -round1(score),
            max: 100.0,
            inputs: json!({"allowlisted": true}),
        });
        score = 0.0;
    }
    let level = if subject.allowlisted || is_cell {
        Level::None
    } else if gates_passed && score >= f64::from(SUSPICIOUS_FROM) {
        Level::Suspicious
    } else if score >= f64::from(WATCH_FROM) && moving && windows.len() >= 2 {
        Level::Watch
    } else {
        Level::None
    };
    Assessment {
        score: score as f32,
        level,
        gates_passed,
        together: times.first().zip(times.last()).map(|(a, b)| (*a, *b)),
        explanation: Explanation {
            rule_version: RULE_VERSION,
            window: json!({
                "from": times.first(),
                "to": times.last(),
                "lookback_hours": TIME_ONLY_LOOKBACK_HOURS,
                "evidence": "time_only",
                "why": "the capture device recorded no positions: persistence in time while it was moving is the only evidence",
            }),
            score: round1(score),
            level,
            gates,
            components,
            penalties,
            places_count: 0,
            places: Vec::new(),
            excluded_count: 0,
            excluded: Vec::new(),
            thresholds: json!({"suspicious": SUSPICIOUS_FROM, "watch": WATCH_FROM,
                "time_only_never_above": "suspicious"}),
            linked_addresses: Vec::new(),
            feedback: None,
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
                days_seen: 1,
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
                days_seen: 1,
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
            days_seen: 1,
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
            days_seen: 1,
        };
        let alone = assess(plain, &along(&path, 2), &path, &[], 0);
        let train = assess(plain, &along(&path, 2), &path, &[], 12);
        assert!(train.score + 25.0 < alone.score + 0.1);
        assert!(train.level < alone.level);
        assert_eq!(train.explanation.penalties.len(), 1);
    }

    /// A walk north at 80 m/min for `minutes`, one path point a minute.
    fn walk(minutes: i64) -> Vec<PathPoint> {
        (0..minutes)
            .map(|m| PathPoint {
                minute: t0() + Duration::minutes(m),
                lat: 52.5 + m as f64 * 80.0 / 111_320.0,
                lon: 13.3,
            })
            .collect()
    }

    #[test]
    fn a_steady_walk_makes_a_new_place_every_150_m() {
        let path = walk(20);
        let key = ble("c0:11:22:33:44:88");
        let subject = Subject {
            key: &key,
            tracker: Some(TrackerClass::Tile),
            allowlisted: false,
            days_seen: 1,
        };
        let a = assess(subject, &along(&path, 1), &path, &[], 0);
        // 1,520 m of walk: a place about every 150 m, not one drifting place.
        assert!(
            a.explanation.places_count >= 9,
            "{:#?}",
            a.explanation.places
        );
        assert!(a.gates_passed, "{:#?}", a.explanation.gates);
    }

    #[test]
    fn a_beacon_passed_on_every_walk_is_never_watched() {
        // Four walks past a shop: heard for a minute on each, always within 40 m of it.
        let mut path = Vec::new();
        let mut fixes = Vec::new();
        for w in 0..4i64 {
            for m in 0..6i64 {
                let minute = t0() + Duration::hours(4 * w) + Duration::minutes(m);
                let lat = 52.5 + m as f64 * 80.0 / 111_320.0;
                path.push(PathPoint {
                    minute,
                    lat,
                    lon: 13.3,
                });
                if m == 2 || m == 3 {
                    fixes.push(Fix {
                        id: fixes.len() as i64,
                        at: minute,
                        lat,
                        lon: 13.3,
                        accuracy_m: Some(8.0),
                        altitude_m: None,
                    });
                }
            }
        }
        let key = ble("d0:11:22:33:44:99");
        let subject = Subject {
            key: &key,
            tracker: Some(TrackerClass::Tile),
            allowlisted: false,
            days_seen: 1,
        };
        let a = assess(subject, &fixes, &path, &[], 0);
        assert_eq!(a.explanation.places_count, 1);
        assert_eq!(a.level, Level::None, "{:#?}", a.explanation);
    }

    #[test]
    fn an_allowlisted_pair_scores_nothing() {
        let path = drive(120);
        let key = ble("c0:11:22:33:44:aa");
        let mine = Subject {
            key: &key,
            tracker: Some(TrackerClass::AppleFindMy),
            allowlisted: true,
            days_seen: 1,
        };
        let a = assess(mine, &along(&path, 2), &path, &[], 0);
        assert_eq!((a.score, a.level), (0.0, Level::None));
        assert_eq!(a.explanation.penalties[0].component, "allowlisted");
    }

    #[test]
    fn a_ble_address_seen_on_two_days_keeps_two_weeks_of_history() {
        let key = ble("c0:11:22:33:44:bb");
        assert_eq!(lookback(&key, 1), Duration::hours(24));
        assert_eq!(lookback(&key, 2), Duration::days(14));
    }

    #[test]
    fn successive_addresses_of_a_rotating_tag_are_linked_unless_ambiguous() {
        let span = |id: &str, from: i64, to: i64| AddressSpan {
            key: ble(id),
            first: t0() + Duration::seconds(from),
            last: t0() + Duration::seconds(to),
        };
        let spans = vec![
            span("c8:00:00:00:00:01", 0, 200),
            span("c8:00:00:00:00:02", 230, 500),
            span("c8:00:00:00:00:03", 560, 800),
            // Overlaps the second: another tag, never linked.
            span("c8:00:00:00:00:09", 300, 900),
        ];
        // Recording throughout: only the 90 s gaps link.
        let recording: Vec<PathPoint> = (0..20)
            .map(|m| PathPoint {
                minute: t0() + Duration::minutes(m),
                lat: 52.5,
                lon: 13.3,
            })
            .collect();
        let chain = linked(&ble("c8:00:00:00:00:02"), &spans, &recording);
        assert_eq!(
            chain,
            vec![ble("c8:00:00:00:00:01"), ble("c8:00:00:00:00:03")]
        );
        // Two addresses could follow the first: the chain stops.
        let mut twins = spans.clone();
        twins.push(span("c8:00:00:00:00:04", 220, 260));
        assert!(linked(&ble("c8:00:00:00:00:01"), &twins, &recording).is_empty());
        // Hours apart, but the device recorded nothing in between (it was not walking): linked.
        let walks = vec![
            span("c8:00:00:00:00:05", 0, 300),
            span("c8:00:00:00:00:06", 14_400, 14_700),
        ];
        let chain = linked(&ble("c8:00:00:00:00:06"), &walks, &recording[..6]);
        assert_eq!(chain, vec![ble("c8:00:00:00:00:05")]);
    }

    #[test]
    fn a_follower_heard_through_a_drive_without_gps_is_suspicious_on_time_alone() {
        let key = ble("c0:11:22:33:44:cc");
        let subject = Subject {
            key: &key,
            tracker: None,
            allowlisted: false,
            days_seen: 1,
        };
        let times: Vec<DateTime<Utc>> = (0..40).map(|m| t0() + Duration::minutes(m)).collect();
        let driving = Churn {
            heard: 300,
            heard_once: 280,
        };
        let a = assess_by_time(subject, &times, driving);
        assert_eq!(a.level, Level::Suspicious, "{:#?}", a.explanation);
        assert_eq!(a.explanation.window["evidence"], "time_only");
        // The same persistence beside a sensor on a shelf: its neighbours, not followers.
        let shelf = Churn {
            heard: 25,
            heard_once: 2,
        };
        assert_eq!(assess_by_time(subject, &times, shelf).level, Level::None);
    }
}
