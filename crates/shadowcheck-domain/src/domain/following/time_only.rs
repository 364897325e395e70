//! Time-only evidence, for a capture device that recorded no positions.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{
    gate, round1, Assessment, Component, Explanation, Level, Subject, MIN_SIGHTINGS, RULE_VERSION,
    SUSPICIOUS_FROM, WATCH_FROM,
};
use crate::domain::SignalType;

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
