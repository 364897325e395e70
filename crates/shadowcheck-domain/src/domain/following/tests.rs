//! The rule's behaviours, each on a small constructed case.

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

/// The drive, then `minutes` parked where it ended.
fn drive_then_stop(minutes: i64, parked: i64) -> Vec<PathPoint> {
    let mut path = drive(minutes);
    let end = path.last().cloned().expect("a drive");
    path.extend((1..=parked).map(|m| PathPoint {
        minute: end.minute + Duration::minutes(m),
        ..end.clone()
    }));
    path
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
    assert_eq!(e["gates"].as_array().map(Vec::len), Some(7));
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
    let path = drive_then_stop(120, 10);
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

#[test]
fn a_fellow_passenger_who_never_comes_to_a_stop_is_not_followed() {
    // Two hours on the same train, then the device stops where the passenger is not.
    let path = drive_then_stop(120, 30);
    let key = ble("c0:11:22:33:44:88");
    let passenger = Subject {
        key: &key,
        tracker: None,
        allowlisted: false,
        days_seen: 1,
    };
    let a = assess(passenger, &along(&path[..120], 2), &path, &[], 0);
    assert_eq!(a.level, Level::None, "{:#?}", a.explanation.gates);
    let stops = a
        .explanation
        .gates
        .iter()
        .find(|g| g.gate == "stops_together");
    assert!(stops.is_some_and(|g| !g.passed && g.value == json!(0)));
    // The same transmitter also waiting where the device stopped: followed.
    let b = assess(passenger, &along(&path, 2), &path, &[], 0);
    assert!(b.level >= Level::Suspicious, "{:#?}", b.explanation.gates);
}

#[test]
fn a_tracker_needs_no_stop_together() {
    let path = drive(120);
    let key = ble("c0:11:22:33:44:99");
    let tag = Subject {
        key: &key,
        tracker: Some(TrackerClass::AppleFindMy),
        allowlisted: false,
        days_seen: 1,
    };
    let a = assess(tag, &along(&path, 2), &path, &[], 0);
    assert!(a.level >= Level::Suspicious);
}
