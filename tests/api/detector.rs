//! The following detector on scenarios with known truth: a capture device's day with a tag in
//! its bag, its owner's allow-listed phone, a neighbour's access point at home (a safe zone), a
//! bus full of phones, a mobile hotspot, an evil twin and a fake cell. Each is classified as
//! designed, and every flag and score carries its explanation.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shadowcheck_scenarios as scenario;

use crate::helpers::{problem, spawn_app, TestApp};

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .expect("POST")
}

/// Waits until the registry and the scorer have caught up with everything ingested.
pub(crate) async fn settled(app: &TestApp) {
    let started = Instant::now();
    loop {
        let queued = app
            .count_sql("SELECT (SELECT count(*) FROM sigint.registry_queue) + (SELECT count(*) FROM sigint.following_queue)")
            .await;
        if queued == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{queued} detections/pairs still queued"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn the_scenario_is_classified_as_designed_with_explanations() {
    let app = spawn_app().await;
    let start = chrono::Utc::now() - chrono::Duration::days(2);
    let s = scenario::generate(7, start);
    // The user's setup: home is a safe zone, their own phone is allow-listed.
    let zone = post(
        &app,
        "/api/v1/safe-zones",
        &json!({"name": "home", "latitude": s.home.0, "longitude": s.home.1, "radius_m": 200}),
    )
    .await;
    assert_eq!(zone.status(), 201);
    let allowed = post(
        &app,
        "/api/v1/allowlist",
        &json!({"radio": s.own_phone.0, "identifier": s.own_phone.1, "note": "my phone"}),
    )
    .await;
    assert_eq!(allowed.status(), 201);
    for chunk in s.detections.chunks(1_000) {
        let resp = app.post_json(&json!(chunk)).await;
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }
    settled(&app).await;

    for t in s.truth.iter().filter(|t| t.certain) {
        let path = format!("/api/v1/transmitters/{}/{}", t.radio, t.identifier);
        let body = app.get_json(&path).await;
        let p = &body["properties"];
        let level = p["level"].as_str().unwrap_or("?");
        let flagged = matches!(level, "suspicious" | "alert");
        assert_eq!(
            flagged, t.follower,
            "{} ({}): level {level}, scores {}",
            t.role, t.identifier, p["scores"]
        );
        if t.radio != "cellular" {
            let scores = p["scores"].as_array().expect("scores");
            assert_eq!(scores.len(), 1, "{}: one capture device", t.role);
            let e = &scores[0]["explanation"];
            assert_eq!(e["rule_version"], "following-3", "{}", t.role);
            assert_eq!(e["gates"].as_array().map(Vec::len), Some(7), "{}", t.role);
            for g in e["gates"].as_array().expect("gates") {
                assert!(
                    g["value"] != Value::Null
                        && g["threshold"] != Value::Null
                        && g["passed"].is_boolean(),
                    "{g}"
                );
            }
        }
        let flags: Vec<&str> = p["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(|f| f["flag"].as_str())
            .collect();
        match t.flag {
            Some(flag) => assert!(
                flags.contains(&flag),
                "{} should be flagged {flag}: {}",
                t.role,
                p["flags"]
            ),
            None => assert!(flags.is_empty(), "{} flagged {flags:?}", t.role),
        }
        for f in p["flags"].as_array().expect("flags") {
            assert!(f["evidence"].is_object(), "{f}");
        }
    }
    let tag = &s.truth[0];
    let body = app
        .get_json(&format!("/api/v1/transmitters/ble/{}", tag.identifier))
        .await;
    let p = &body["properties"];
    assert_eq!(p["tracker_class"], "apple_find_my", "{p}");
    assert_eq!(p["level"], "alert", "{}", p["scores"]);
    let e = &p["scores"][0]["explanation"];
    // Home is evidence, not a distinct place.
    assert!(
        e["places"]
            .as_array()
            .expect("places")
            .iter()
            .any(|pl| pl["safe_zone"] == "home"),
        "{e}"
    );
    // Written back onto the design's columns.
    let suspicious = app
        .count(&format!(
            "bt_address = '{}' AND is_suspicious AND surveillance_score >= 70",
            tag.identifier
        ))
        .await;
    assert!(
        suspicious > 100,
        "{suspicious} detections of the tag marked"
    );
    assert_eq!(
        app.count(&format!(
            "bt_address = '{}' AND is_suspicious",
            s.own_phone.1
        ))
        .await,
        0
    );

    // /api/v1/threats lists the tag and nobody else; the alert metric counted it once.
    let threats = app.get_json("/api/v1/threats").await;
    let listed: Vec<&str> = threats["threats"]
        .as_array()
        .expect("threats")
        .iter()
        .filter_map(|t| t["identifier"].as_str())
        .collect();
    // The tag, and no transmitter that is not a follower (the partial follower without a tag
    // is a harder case, measured by the benchmark, and may or may not be listed).
    assert!(listed.contains(&tag.identifier.as_str()), "{threats}");
    for id in &listed {
        let t = s.truth.iter().find(|t| t.identifier == *id);
        assert!(t.is_some_and(|t| t.follower), "{id} listed: {threats}");
    }
    assert!(threats["threats"][0]["explanation"]["components"].is_array());
    let metrics = crate::probes::scrape(&app.metrics_addr).await;
    let alerts = crate::probes::metric_sum(&metrics, "shadowcheck_follower_alerts_total ");
    assert!(alerts >= 1.0, "follower alerts counted: {alerts}");
    let listed = app
        .get_json("/api/v1/transmitters?tracker=any&level=alert")
        .await;
    let trackers: Vec<&str> = listed["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(|f| f["properties"]["identifier"].as_str())
        .collect();
    assert_eq!(trackers, vec![tag.identifier.as_str()], "{listed}");
    let twins = app.get_json("/api/v1/transmitters?flag=evil_twin").await;
    assert_eq!(
        twins["features"].as_array().map(Vec::len),
        Some(2),
        "{twins}"
    );

    // Taking the phone off the allow-list rescores it: it travelled all day, so it follows.
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/allowlist/ble/{}", s.own_phone.1)))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), 204);
    settled(&app).await;
    let phone = app
        .get_json(&format!("/api/v1/transmitters/ble/{}", s.own_phone.1))
        .await;
    let level = phone["properties"]["level"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    assert!(
        level == "suspicious" || level == "alert",
        "{level}: {}",
        phone["properties"]["scores"]
    );
    assert_eq!(phone["properties"]["tracker_class"], "apple_device");
}

#[tokio::test]
async fn detector_endpoints_refuse_bad_input_with_problems() {
    let app = spawn_app().await;
    for (path, body, field) in [
        (
            "/api/v1/allowlist",
            json!({"radio": "ble", "identifier": "ff:ff:ff:ff:ff:ff"}),
            "identifier",
        ),
        (
            "/api/v1/allowlist",
            json!({"radio": "tv", "identifier": "a4:00:00:00:00:01"}),
            "identifier",
        ),
        (
            "/api/v1/safe-zones",
            json!({"name": "home", "latitude": 95.0, "longitude": 1.0, "radius_m": 100}),
            "latitude",
        ),
        (
            "/api/v1/safe-zones",
            json!({"name": "home", "latitude": 50.0, "longitude": 1.0, "radius_m": 50000}),
            "radius_m",
        ),
        (
            "/api/v1/safe-zones",
            json!({"name": "", "latitude": 50.0, "longitude": 1.0, "radius_m": 100}),
            "name",
        ),
    ] {
        let p = problem(post(&app, path, &body).await, 400).await;
        assert_eq!(p["parameter"], field, "{body}: {p}");
    }
    let p = problem(post(&app, "/api/v1/safe-zones", &json!([1, 2])).await, 400).await;
    assert!(
        p["detail"].as_str().unwrap_or("").contains("JSON object"),
        "{p}"
    );
    problem(app.get("/api/v1/threats?level=red").await, 400).await;
    problem(app.get("/api/v1/threats?after=nonsense").await, 400).await;
    problem(app.get("/api/v1/transmitters?tracker=airtag").await, 400).await;
    let gone = app
        .client
        .delete(app.url("/api/v1/safe-zones/999"))
        .send()
        .await
        .expect("DELETE");
    problem(gone, 404).await;
    let gone = app
        .client
        .delete(app.url("/api/v1/allowlist/ble/c4:00:00:00:00:01"))
        .send()
        .await
        .expect("DELETE");
    problem(gone, 404).await;
    // Ingest refuses malformed advertisement fields, naming them.
    let bad = json!([{"signal_type": "ble", "bt_address": "c4:00:00:00:00:01", "detected_at": "2026-11-01T10:00:00Z",
                      "latitude": 50.0, "longitude": 8.0, "ble_advertisement": "0x1eff4", "ble_service_uuids": ["tile"],
                      "ble_manufacturer_id": 70000}]);
    let p = problem(app.post_json(&bad).await, 422).await;
    let text = p.to_string();
    for field in [
        "ble_advertisement",
        "ble_service_uuids",
        "ble_manufacturer_id",
    ] {
        assert!(text.contains(field), "{field}: {p}");
    }
}

/// Replays a scenario upload by upload (a walk, a commute, an office day), each uploaded
/// after it as a phone would; returns, per address, the first walk after which it was
/// `suspicious` or above, and the addresses at `watch` or above after the last walk.
async fn replay_walks(
    app: &TestApp,
    s: &scenario::walks::Walks,
) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let mut warned = std::collections::BTreeMap::new();
    let mut watched = Vec::new();
    for (w, walk) in s.walks.iter().enumerate() {
        // 201, or 200 when a scan at a stretch's edge was already sent with the stretch before.
        let status = app.post_json(&json!(walk.detections)).await.status();
        assert!(status.is_success(), "upload {w}: {status}");
        settled(app).await;
        let threats = app
            .get_json(&format!(
                "/api/v1/threats?device_id={}&level=watch&limit=1000",
                s.device
            ))
            .await;
        watched.clear();
        for t in threats["threats"].as_array().expect("threats") {
            let id = t["identifier"].as_str().expect("identifier").to_owned();
            if matches!(t["level"].as_str(), Some("suspicious" | "alert")) {
                warned.entry(id.clone()).or_insert(w);
            }
            watched.push(id);
        }
    }
    (warned, watched)
}

/// A week of commuting with an AirTag slipped into the bag on the Wednesday: the AirTag is
/// warned about that day; the two regulars who ride the same morning train every workday, the
/// crowds, the colleagues and the shops passed twice a day are not, and the watch list is mostly
/// the AirTag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_commuting_warns_about_the_planted_airtag_and_no_fellow_passenger() {
    let app = crate::helpers::spawn_app_with(|s| s.registry.score_settle_ms = 200).await;
    let start = (chrono::Utc::now() - chrono::Duration::days(8))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let s = scenario::week::generate(3_000, start, true);
    let (warned, watched) = replay_walks(&app, &s).await;
    let owner = |id: &str| {
        s.addresses
            .iter()
            .find(|a| a.identifier == id)
            .map(|a| (a.owner.as_str(), a.carried))
    };
    assert!(
        warned.keys().any(|id| owner(id) == Some(("airtag", true))),
        "the planted AirTag was never warned about: {warned:?}"
    );
    for id in warned.keys() {
        assert!(
            owner(id).is_some_and(|o| o.1),
            "{id} ({:?}) warned about",
            owner(id)
        );
    }
    let carried = watched
        .iter()
        .filter(|id| owner(id).is_some_and(|o| o.1))
        .count();
    assert!(
        carried * 2 >= watched.len(),
        "watch precision {carried}/{}",
        watched.len()
    );
}

/// The field case the first rule failed: a person who only ever walks a few hundred metres from
/// home is warned about the tags in their bag on the first day (rotating addresses linked), and
/// never about the shops, flats and passers-by along the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_trackers_are_warned_about_on_the_first_day_of_short_walks() {
    let app = crate::helpers::spawn_app_with(|s| s.registry.score_settle_ms = 200).await;
    let start = (chrono::Utc::now() - chrono::Duration::days(5))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let s = scenario::walks::generate(2_000, start);
    let (warned, watched) = replay_walks(&app, &s).await;
    let owner = |id: &str| {
        s.addresses
            .iter()
            .find(|a| a.identifier == id)
            .map(|a| (a.owner.as_str(), a.carried))
    };
    // Every carried tracker, within the first day's four walks.
    for tracker in ["tile", "airtag", "chipolo", "smarttag"] {
        let first = warned
            .iter()
            .filter(|(id, _)| owner(id).is_some_and(|o| o.0 == tracker))
            .map(|(_, w)| *w)
            .min();
        assert!(
            first.is_some_and(|w| w < 4),
            "{tracker}: first warned after walk {first:?}"
        );
    }
    // Nothing that was not carried.
    for id in warned.keys() {
        assert!(
            owner(id).is_some_and(|o| o.1),
            "{id} ({:?}) warned about",
            owner(id)
        );
    }
    // The watch list is mostly what was carried.
    let carried = watched
        .iter()
        .filter(|id| owner(id).is_some_and(|o| o.1))
        .count();
    assert!(
        carried * 2 >= watched.len(),
        "watch precision {carried}/{}",
        watched.len()
    );
}

/// A rig without GPS uploads 40 minutes of a drive: roadside access points come and go, one
/// BLE device is there all along. Or the same rig sits on a shelf, hearing the same neighbours.
pub(crate) fn fixless_capture(device: &str, driving: bool) -> Vec<Value> {
    let start = chrono::Utc::now() - chrono::Duration::hours(3);
    let mut items = Vec::new();
    for minute in 0..40i64 {
        let at = |s: i64| {
            (start + chrono::Duration::seconds(minute * 60 + s))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        items.push(json!({"detected_at": at(0), "signal_type": "ble",
            "bt_address": "c0:ff:ee:00:00:01", "bt_rssi": -60, "device_id": device}));
        for n in 0..8i64 {
            // Driving: new access points every minute; on a shelf: the same eight.
            let ap = if driving { minute * 8 + n } else { n };
            items.push(json!({"detected_at": at(1 + n), "signal_type": "wifi",
                "bssid": format!("a4:00:00:00:{:02x}:{:02x}", ap / 256, ap % 256),
                "signal_strength_dbm": -70, "device_id": device}));
        }
    }
    items
}

async fn level_of(app: &TestApp, device: &str) -> (String, Value) {
    let threats = app
        .get_json(&format!(
            "/api/v1/threats?device_id={device}&level=watch&limit=100"
        ))
        .await;
    let t = threats["threats"]
        .as_array()
        .expect("threats")
        .iter()
        .find(|t| t["identifier"] == "c0:ff:ee:00:00:01")
        .cloned()
        .unwrap_or(Value::Null);
    (t["level"].as_str().unwrap_or("none").to_owned(), t)
}

#[tokio::test]
async fn a_follower_of_a_drive_without_gps_gets_a_time_only_warning() {
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a77";
    let app = with_a_gpsless_follower(device).await;
    let (level, threat) = level_of(&app, device).await;
    assert_eq!(level, "suspicious", "{threat}");
    assert_eq!(threat["explanation"]["window"]["evidence"], "time_only");
}

#[tokio::test]
async fn a_rig_on_a_shelf_without_gps_warns_about_nothing() {
    let app = crate::helpers::spawn_app_with(|s| s.registry.score_settle_ms = 200).await;
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a78";
    assert_eq!(
        app.post_json(&json!(fixless_capture(device, false)))
            .await
            .status(),
        201
    );
    settled(&app).await;
    assert_eq!(level_of(&app, device).await.0, "none");
}

/// "False alarm" on a threat keeps it below `suspicious`, says so in its explanation, and is
/// withdrawn by the key that gave it.
#[tokio::test]
async fn a_threat_marked_as_a_false_alarm_stays_below_suspicious_until_withdrawn() {
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a79";
    let app = with_a_gpsless_follower(device).await;
    assert_eq!(level_of(&app, device).await.0, "suspicious");
    let path = format!("/api/v1/threats/ble/c0:ff:ee:00:00:01/{device}/feedback");
    let marked = app
        .client
        .put(app.url(&path))
        .json(&json!({"verdict": "false_alarm", "note": "my partner's earbuds"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(marked.status(), 200);
    settled(&app).await;
    let (level, threat) = level_of(&app, device).await;
    assert_eq!(level, "watch", "{threat}");
    assert_eq!(threat["explanation"]["feedback"]["verdict"], "false_alarm");
    let bad = app
        .client
        .put(app.url(&path))
        .json(&json!({"verdict": "maybe"}))
        .send()
        .await
        .expect("PUT");
    problem(bad, 400).await;
    let withdrawn = app
        .client
        .delete(app.url(&path))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(withdrawn.status(), 204);
    settled(&app).await;
    assert_eq!(level_of(&app, device).await.0, "suspicious");
}

#[tokio::test]
async fn a_pair_that_cannot_be_scored_does_not_stall_the_others() {
    let app = crate::helpers::spawn_app_with(|s| s.registry.score_settle_ms = 200).await;
    let (bad, good) = (
        "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a78",
        "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a79",
    );
    // Storing the score of one pair fails (as a bug or a bad value would), every time.
    sqlx::query(&format!(
        "ALTER TABLE sigint.following ADD CONSTRAINT poison \
         CHECK (NOT (identifier = 'c0:ff:ee:00:00:01' AND device_id = '{bad}'))"
    ))
    .execute(&app.db)
    .await
    .expect("constraint");
    for device in [bad, good] {
        let status = app
            .post_json(&json!(fixless_capture(device, true)))
            .await
            .status();
        assert_eq!(status, 201);
    }
    let started = Instant::now();
    while level_of(&app, good).await.0 != "suspicious" {
        if started.elapsed() > Duration::from_secs(90) {
            let queue: Vec<(String, String, i32)> = sqlx::query_as(
                "SELECT identifier, device_id::text, attempts FROM sigint.following_queue",
            )
            .fetch_all(&app.db)
            .await
            .expect("q");
            let scored: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT identifier, device_id::text, level::text FROM sigint.following",
            )
            .fetch_all(&app.db)
            .await
            .expect("f");
            panic!("the good pair was never scored: queue {queue:?} scored {scored:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let attempts: i32 = sqlx::query_scalar(&format!(
        "SELECT attempts FROM sigint.following_queue WHERE device_id = '{bad}'"
    ))
    .fetch_one(&app.db)
    .await
    .expect("the bad pair stays queued");
    assert!(attempts >= 1);
}

/// A note on a transmitter ("watch this") keeps it on the threats list whatever its level,
/// with the note beside it; every threat carries its explanation in words.
#[tokio::test]
async fn a_watched_transmitter_stays_on_the_threats_list_with_its_note() {
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a7a";
    let app = with_a_gpsless_follower(device).await;
    let listed = |v: &Value| {
        v["threats"]
            .as_array()
            .expect("threats")
            .iter()
            .filter(|t| t["identifier"] == "c0:ff:ee:00:00:01")
            .cloned()
            .collect::<Vec<Value>>()
    };
    let threats = app.get_json("/api/v1/threats").await;
    let summary = listed(&threats)[0]["summary"]
        .as_str()
        .expect("summary")
        .to_owned();
    assert!(
        summary.contains("Score") && summary.contains("suspicious"),
        "{summary}"
    );
    // A false alarm drops it to `watch`: off the default list...
    let feedback = format!("/api/v1/threats/ble/c0:ff:ee:00:00:01/{device}/feedback");
    let marked = app
        .client
        .put(app.url(&feedback))
        .json(&json!({"verdict": "false_alarm"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(marked.status(), 200);
    settled(&app).await;
    assert!(listed(&app.get_json("/api/v1/threats").await).is_empty());
    // ...until someone watches it.
    let note = "/api/v1/transmitters/ble/c0:ff:ee:00:00:01/note";
    let put = app
        .client
        .put(app.url(note))
        .json(&json!({"note": "partner's earbuds?\nkeep an eye on it", "watched": true}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 200);
    let threats = app.get_json("/api/v1/threats").await;
    let watched = listed(&threats);
    assert_eq!(watched.len(), 1, "{threats}");
    assert_eq!(watched[0]["watched"], true);
    assert_eq!(watched[0]["level"], "watch");
    assert_eq!(watched[0]["note"], "partner's earbuds?\nkeep an eye on it");
    let one = app
        .get_json("/api/v1/transmitters/ble/c0:ff:ee:00:00:01")
        .await;
    assert_eq!(one["properties"]["note"]["watched"], true, "{one}");
    let bad = app
        .client
        .put(app.url(note))
        .json(&json!({"note": "bell\u{7}"}))
        .send()
        .await
        .expect("PUT");
    problem(bad, 400).await;
    let removed = app
        .client
        .delete(app.url(note))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(removed.status(), 204);
    assert!(listed(&app.get_json("/api/v1/threats").await).is_empty());
    let again = app
        .client
        .delete(app.url(note))
        .send()
        .await
        .expect("DELETE");
    problem(again, 404).await;
}

/// A loopback receiver for pushes: records each request's headers and body, answering 500 to
/// the first `failures` and 200 after.
struct Receiver {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
}

async fn receiver(failures: usize) -> Receiver {
    use axum::http::{HeaderMap, StatusCode};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let log = std::sync::Arc::clone(&log);
            async move {
                let mut log = log.lock().expect("log");
                log.push((headers, body));
                if log.len() <= failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, seen }
}

impl Receiver {
    fn bodies(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("log")
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    async fn wait_for(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.seen.lock().expect("log").len() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} pushes arrived: {:?}",
                self.seen.lock().expect("log").len(),
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An app (pairs settle in 0.2 s) that has stored, and scored, 40 minutes of a GPS-less drive by
/// `device` with one BLE device along all the way: a time-only `suspicious` follower.
async fn with_a_gpsless_follower(device: &str) -> TestApp {
    let app = crate::helpers::spawn_app_with(|s| s.registry.score_settle_ms = 200).await;
    assert_eq!(
        app.post_json(&json!(fixless_capture(device, true)))
            .await
            .status(),
        201
    );
    settled(&app).await;
    app
}

/// Reads a server-sent event stream until a `threat` event arrives; its id and data.
async fn next_threat(stream: &mut reqwest::Response, within: Duration) -> (i64, Value) {
    let mut text = String::new();
    let deadline = Instant::now() + within;
    loop {
        if let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if block.contains("event: threat") {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::trim)
                        .expect("field")
                        .to_owned()
                };
                let id = field("id:").parse().expect("id");
                return (id, serde_json::from_str(&field("data:")).expect("data"));
            }
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .expect("no threat event in time")
            .expect("stream")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// With the production timings (a pair settles 2 s, new threats are looked for every second), a
/// new follower reaches a page's open event stream within 5 s of the upload that makes it one,
/// and the webhook, which fails at first, gets it on a retry.
#[tokio::test]
async fn a_new_follower_reaches_an_open_page_and_the_webhook_within_seconds() {
    let hook = receiver(1).await;
    let ntfy = receiver(0).await;
    let app = crate::helpers::spawn_app_with(|s| {
        s.notify.webhook_url = hook.url.clone();
        s.notify.ntfy_url = ntfy.url.clone();
        s.notify.retry_base_ms = 200;
    })
    .await;
    let mut stream = app
        .client
        .get(app.url("/api/v1/threats/events"))
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a7b";
    let uploaded = Instant::now();
    assert_eq!(
        app.post_json(&json!(fixless_capture(device, true)))
            .await
            .status(),
        201
    );
    let (id, threat) = next_threat(&mut stream, Duration::from_secs(15)).await;
    let took = uploaded.elapsed();
    eprintln!("the warning reached the page {took:?} after the upload");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(threat["identifier"], "c0:ff:ee:00:00:01");
    assert_eq!(threat["level"], "suspicious");
    assert!(threat["summary"]
        .as_str()
        .expect("summary")
        .contains("Score"));
    // The webhook: refused once, delivered on the retry, the same event both times.
    hook.wait_for(2, Duration::from_secs(10)).await;
    let bodies: Vec<Value> = hook
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect();
    assert!(bodies.iter().all(|b| b["id"] == id), "{bodies:?}");
    assert_eq!(
        bodies[1]["links"]["report"],
        format!("/report/ble/c0:ff:ee:00:00:01/{device}")
    );
    // ntfy: the words as the message, a title and a priority.
    ntfy.wait_for(1, Duration::from_secs(10)).await;
    let (headers, body) = ntfy.seen.lock().expect("log")[0].clone();
    assert_eq!(body, threat["summary"].as_str().expect("summary"));
    assert_eq!(headers["priority"], "high");
    assert!(headers["title"]
        .to_str()
        .expect("title")
        .contains("c0:ff:ee:00:00:01"));
    let delivered = app
        .count_sql("SELECT delivered FROM sigint.notification_cursors WHERE sink = 'webhook'")
        .await;
    assert_eq!(delivered, 1);
    // A page that reconnects with the last id it saw misses nothing.
    let mut again = app
        .client
        .get(app.url("/api/v1/threats/events"))
        .header("Last-Event-ID", (id - 1).to_string())
        .send()
        .await
        .expect("GET");
    assert_eq!(next_threat(&mut again, Duration::from_secs(5)).await.0, id);
}

/// A push nobody accepts is retried `notify.max_attempts` times, then kept as a dead letter and
/// counted; a key holds at most `notify.streams_per_key` open streams.
#[tokio::test]
async fn an_undeliverable_push_is_dead_lettered_and_streams_are_bounded_per_key() {
    let hook = receiver(usize::MAX).await;
    let app = crate::helpers::spawn_app_with(|s| {
        s.notify.webhook_url = hook.url.clone();
        s.notify.max_attempts = 3;
        s.notify.retry_base_ms = 50;
        s.notify.streams_per_key = 1;
        s.registry.score_settle_ms = 200;
    })
    .await;
    let first = app
        .client
        .get(app.url("/api/v1/threats/events"))
        .send()
        .await
        .expect("GET");
    assert_eq!(first.status(), 200);
    let second = app
        .client
        .get(app.url("/api/v1/threats/events"))
        .send()
        .await
        .expect("GET");
    problem(second, 429).await;
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a7c";
    assert_eq!(
        app.post_json(&json!(fixless_capture(device, true)))
            .await
            .status(),
        201
    );
    hook.wait_for(3, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .count_sql("SELECT count(*) FROM sigint.notification_dead_letters WHERE sink = 'webhook'")
        .await
        < 1
    {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.count_sql(
            "SELECT dead_letters FROM sigint.notification_cursors WHERE sink = 'webhook'"
        )
        .await,
        1
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.bodies().len(), 3, "retried more than max_attempts");
    let bad = app
        .client
        .get(app.url("/api/v1/threats/events"))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("GET");
    // The key's one stream is still open: the bound answers first.
    assert!(
        bad.status() == 400 || bad.status() == 429,
        "{}",
        bad.status()
    );
    drop(first);
}
