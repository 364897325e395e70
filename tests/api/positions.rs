//! Positions for captures that have none: capture devices as a resource (a fixed sensor's rows
//! take its position), GPS-less rows placed from the transmitters the registry knows in the same
//! scan, `.kismet` logs over HTTP, and the ichnaea-compatible `/v1/geolocate`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{problem, shadowcheck, spawn_app, TestApp};

const SENSOR: &str = "5e4d0000-0000-4000-8000-000000000001";
const CAR: &str = "5e4d0000-0000-4000-8000-000000000002";
const SURVEY: &str = "5e4d0000-0000-4000-8000-000000000003";

/// Access points the survey device places (all vendor-assigned addresses), and one nobody has.
const KNOWN_A: &str = "a4:2b:b0:10:00:01";
const KNOWN_B: &str = "a4:2b:b0:10:00:02";
const UNKNOWN: &str = "a4:2b:b0:10:00:03";

/// A Kismet log from a rig without GPS, as Kismet writes it: every device at 0,0, Wi-Fi access
/// points heard within a few seconds of each other, and one BTLE device.
fn write_gpsless_kismet_log(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("create kismetdb");
    conn.execute_batch(
        r#"
        CREATE TABLE KISMET (kismet_version TEXT, db_version INT, db_module TEXT);
        INSERT INTO KISMET VALUES ('2023.07.R1', 9, 'kismetlog');
        CREATE TABLE devices (first_time INT, last_time INT, devkey TEXT, phyname TEXT, devmac TEXT, strongest_signal INT,
            min_lat REAL, min_lon REAL, max_lat REAL, max_lon REAL, avg_lat REAL, avg_lon REAL, bytes_data INT, type TEXT, device BLOB);
        "#,
    )
    .expect("schema");
    let rows = [
        (
            1_700_000_000,
            "IEEE802.11",
            KNOWN_A,
            -50,
            "Wi-Fi AP",
            "Cafe",
        ),
        (
            1_700_000_002,
            "IEEE802.11",
            KNOWN_B,
            -60,
            "Wi-Fi AP",
            "Bakery",
        ),
        (
            1_700_000_004,
            "IEEE802.11",
            UNKNOWN,
            -70,
            "Wi-Fi AP",
            "Unknown",
        ),
        (1_700_000_005, "BTLE", "c0:11:22:aa:00:04", -65, "BTLE", ""),
    ];
    for (t, phy, mac, signal, kind, name) in rows {
        let blob = json!({"kismet.device.base.name": name}).to_string();
        conn.execute(
            "INSERT INTO devices VALUES (?1, ?1, ?2, ?3, ?4, ?5, 0, 0, 0, 0, 0, 0, 0, ?6, ?7)",
            rusqlite::params![
                t,
                format!("{phy}_{mac}"),
                phy,
                mac,
                signal,
                kind,
                blob.as_bytes()
            ],
        )
        .expect("insert");
    }
}

fn kismet_log() -> Vec<u8> {
    let dir = crate::helpers::shared_temp_dir("shadowcheck-gpsless-");
    let path = dir.join("Kismet-20231114-22-13-20-1.kismet");
    write_gpsless_kismet_log(&path);
    std::fs::read(&path).expect("read log")
}

async fn upload_kismet(app: &TestApp, device: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/imports?device_id={device}")))
        .header("content-type", "application/vnd.sqlite3")
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn register_sensor(app: &TestApp) {
    let resp = app
        .client
        .put(app.url(&format!("/api/v1/devices/{SENSOR}")))
        .json(&json!({"name": "shelf", "kind": "fixed_sensor", "latitude": 52.5, "longitude": 13.4, "accuracy_m": 5}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 201);
}

/// Waits until the registry places the transmitter at `path`.
async fn placed(app: &TestApp, path: &str) {
    let started = Instant::now();
    loop {
        let body = app.get_json(path).await;
        if body["geometry"].is_object() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path} not placed in time: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The registry learns the two access points from a survey with GPS, ~100 m apart.
async fn survey(app: &TestApp) {
    let fix = |mac: &str, at: &str, lat: f64, lon: f64| {
        json!({"signal_type": "wifi", "bssid": mac, "detected_at": at, "latitude": lat,
               "longitude": lon, "accuracy_meters": 5.0, "signal_strength_dbm": -50,
               "device_id": SURVEY})
    };
    let batch = json!([
        fix(KNOWN_A, "2026-11-01T10:00:00Z", 52.5100, 13.3000),
        fix(KNOWN_A, "2026-11-01T10:00:10Z", 52.5101, 13.3001),
        fix(KNOWN_B, "2026-11-01T10:00:20Z", 52.5100, 13.3015),
        fix(KNOWN_B, "2026-11-01T10:00:30Z", 52.5101, 13.3014),
    ]);
    assert_eq!(app.post_json(&batch).await.status(), 201);
    for mac in [KNOWN_A, KNOWN_B] {
        placed(app, &format!("/api/v1/transmitters/wifi/{mac}")).await;
    }
}

/// (bssid or bt_address, position source, latitude) of a device's rows, by address.
async fn stored(app: &TestApp, device: &str) -> Vec<(String, Option<String>, Option<f64>)> {
    sqlx::query_as(
        "SELECT coalesce(bssid::text, bt_address::text), position_source, ST_Y(location)
           FROM sigint.signal_detections WHERE device_id = $1::uuid ORDER BY 1",
    )
    .bind(device)
    .fetch_all(&app.db)
    .await
    .expect("rows")
}

#[tokio::test]
async fn a_fixed_sensor_is_registered_read_and_listed() {
    let app = spawn_app().await;
    register_sensor(&app).await;
    let device = app.get_json(&format!("/api/v1/devices/{SENSOR}")).await;
    assert_eq!(device["kind"], "fixed_sensor");
    assert_eq!(device["latitude"], 52.5);
    assert_eq!(device["accuracy_m"], 5.0);
    let list = app.get_json("/api/v1/devices").await;
    assert_eq!(list["devices"][0]["id"], SENSOR);
    assert_eq!(list["next"], Value::Null);
}

#[tokio::test]
async fn a_device_shows_when_it_reported_and_with_which_key() {
    let app = spawn_app().await;
    register_sensor(&app).await;
    let key = app.create_key("shelf-pi", &["ingest"]);
    let row = json!({"signal_type": "wifi", "bssid": KNOWN_A, "detected_at": "2026-11-01T10:00:00Z",
                     "device_id": SENSOR});
    let resp = app
        .call(
            reqwest::Method::POST,
            "/api/v1/detections",
            Some(&key),
            Some(&row),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let device = app.get_json(&format!("/api/v1/devices/{SENSOR}")).await;
    assert_eq!(device["reported_by"], json!(["shelf-pi"]));
    assert_eq!(device["first_seen"], "2026-11-01T10:00:00Z");
}

#[tokio::test]
async fn a_fixed_sensor_without_a_position_is_a_problem() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/v1/devices"))
        .json(&json!({"name": "shelf", "kind": "fixed_sensor"}))
        .send()
        .await
        .expect("post");
    let body = problem(resp, 400).await;
    assert!(body["detail"].as_str().unwrap_or("").contains("position"));
}

#[tokio::test]
async fn a_read_key_cannot_register_a_device() {
    let app = spawn_app().await;
    let key = app.create_key("viewer", &["read"]);
    let body = json!({"name": "phone", "kind": "phone"});
    let resp = app
        .call(
            reqwest::Method::POST,
            "/api/v1/devices",
            Some(&key),
            Some(&body),
        )
        .await;
    problem(resp, 403).await;
}

#[tokio::test]
async fn a_removed_device_is_gone_and_its_rows_stay() {
    let app = spawn_app().await;
    register_sensor(&app).await;
    assert_eq!(
        upload_kismet(&app, SENSOR, kismet_log()).await.status(),
        201
    );
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/devices/{SENSOR}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    problem(app.get(&format!("/api/v1/devices/{SENSOR}")).await, 404).await;
    assert_eq!(stored(&app, SENSOR).await.len(), 4);
}

#[tokio::test]
async fn a_gpsless_kismet_log_from_a_fixed_sensor_is_stored_at_the_sensor() {
    let app = spawn_app().await;
    register_sensor(&app).await;
    let resp = upload_kismet(&app, SENSOR, kismet_log()).await;
    assert_eq!(resp.status(), 201);
    let report: Value = resp.json().await.expect("report");
    assert_eq!(
        (report["stored"].as_u64(), report["rejected"].as_u64()),
        (Some(4), Some(0))
    );
    for (address, source, lat) in stored(&app, SENSOR).await {
        assert_eq!(source.as_deref(), Some("sensor"), "{address}");
        assert_eq!(lat, Some(52.5), "{address}");
    }
}

#[tokio::test]
async fn a_gpsless_kismet_log_from_a_car_is_placed_where_the_registry_allows() {
    let app = spawn_app().await;
    survey(&app).await;
    assert_eq!(upload_kismet(&app, CAR, kismet_log()).await.status(), 201);
    let rows = stored(&app, CAR).await;
    let by_address = |a: &str| rows.iter().find(|r| r.0 == a).expect("row").clone();
    // Heard with two placed access points: estimated, between them.
    for address in [KNOWN_A, KNOWN_B, UNKNOWN] {
        let (_, source, lat) = by_address(address);
        assert_eq!(source.as_deref(), Some("estimated"), "{address}");
        assert!(
            (lat.expect("lat") - 52.51).abs() < 0.001,
            "{address}: {lat:?}"
        );
    }
    // Five seconds after the last access point it is still the same scan: placed too.
    let ble = rows
        .iter()
        .find(|r| r.0.starts_with("c0:"))
        .expect("ble row");
    assert_eq!(ble.1.as_deref(), Some("estimated"));
}

#[tokio::test]
async fn a_gpsless_row_heard_with_too_few_known_networks_stays_without_a_position() {
    let app = spawn_app().await;
    // Nothing surveyed: the registry knows none of the log's access points.
    assert_eq!(upload_kismet(&app, CAR, kismet_log()).await.status(), 201);
    for (address, source, lat) in stored(&app, CAR).await {
        assert_eq!((source, lat), (None, None), "{address}");
    }
}

#[tokio::test]
async fn estimated_positions_are_shown_only_when_asked() {
    let app = spawn_app().await;
    survey(&app).await;
    assert_eq!(upload_kismet(&app, CAR, kismet_log()).await.status(), 201);
    let near = "/api/v1/detections?bbox=13.29,52.50,13.31,52.52";
    let plain = app.get_json(near).await;
    assert_eq!(
        plain["features"].as_array().map(Vec::len),
        Some(4),
        "the survey's fixes only"
    );
    let asked = app.get_json(&format!("{near}&estimated=true")).await;
    let features = asked["features"].as_array().expect("features");
    assert_eq!(features.len(), 8);
    let estimated = features
        .iter()
        .filter(|f| f["properties"]["position_source"] == "estimated")
        .count();
    assert_eq!(estimated, 4);
}

#[tokio::test]
async fn the_registry_never_learns_from_its_own_estimates() {
    let app = spawn_app().await;
    survey(&app).await;
    assert_eq!(upload_kismet(&app, CAR, kismet_log()).await.status(), 201);
    let path = format!("/api/v1/transmitters/wifi/{UNKNOWN}");
    let started = Instant::now();
    let body = loop {
        let resp = app.get(&path).await;
        if resp.status() == 200 {
            break resp.json::<Value>().await.expect("json");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["geometry"], Value::Null, "{body}");
}

#[tokio::test]
async fn a_kismet_upload_stores_what_the_cli_stores() {
    let app = spawn_app().await;
    let log = kismet_log();
    let resp = upload_kismet(&app, CAR, log.clone()).await;
    assert_eq!(resp.status(), 201);
    let http: Value = resp.json().await.expect("report");
    let dir = crate::helpers::shared_temp_dir("shadowcheck-cli-kismet-");
    let path = dir.join("Kismet-20231114-22-13-20-1.kismet");
    std::fs::write(&path, &log).expect("write");
    let other = crate::helpers::fresh_database().await;
    let out = shadowcheck()
        .args(["import", "--device-id", CAR])
        .arg(&path)
        .env("DATABASE_URL", other.app_url())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(http["format"], "kismetdb");
    assert!(stderr.contains("4 stored"), "{stderr}");
    assert_eq!(http["stored"], 4);
    // A re-upload stores nothing twice.
    let again = upload_kismet(&app, CAR, log).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("report");
    assert_eq!(
        (again["stored"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(4))
    );
}

#[tokio::test]
async fn a_gzipped_kismet_upload_in_a_form_is_recognised_by_its_content() {
    let app = spawn_app().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &kismet_log()).expect("gzip");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(gz.finish().expect("gzip")).file_name("capture.kismet.gz"),
    );
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/imports?device_id={CAR}")))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 201);
    let report: Value = resp.json().await.expect("report");
    assert_eq!(report["format"], "kismetdb");
}

#[tokio::test]
async fn a_kismet_upload_over_its_limit_is_refused_as_too_large() {
    let app = crate::helpers::spawn_app_with(|s| s.ingest.max_kismet_upload_bytes = 4096).await;
    let resp = upload_kismet(&app, CAR, kismet_log()).await;
    let body = problem(resp, 413).await;
    assert!(body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("max_kismet_upload_bytes"));
}

/// ichnaea's documented geolocate request (docs/api/geolocate.rst).
fn ichnaea_example() -> Value {
    json!({
        "carrier": "Telecom",
        "considerIp": true,
        "homeMobileCountryCode": 208,
        "homeMobileNetworkCode": 1,
        "bluetoothBeacons": [{"macAddress": "ab:cd:ef:12:34:56", "name": "beacon", "age": 1000, "signalStrength": -110}],
        "cellTowers": [{"radioType": "wcdma", "mobileCountryCode": 208, "mobileNetworkCode": 1,
                        "locationAreaCode": 2, "cellId": 1234567, "age": 1, "psc": 3,
                        "signalStrength": -60, "timingAdvance": 1}],
        "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "age": 3, "channel": 11,
                              "frequency": 2412, "signalStrength": -51, "signalToNoiseRatio": 13},
                             {"macAddress": "01:23:45:67:89:cd"}],
        "fallbacks": {"lacf": true, "ipf": true}
    })
}

async fn geolocate(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/geolocate"))
        .json(body)
        .send()
        .await
        .expect("geolocate")
}

#[tokio::test]
async fn geolocate_answers_ichnaeas_example_with_not_found_as_ichnaea_does() {
    let app = spawn_app().await;
    let body = problem(geolocate(&app, &ichnaea_example()).await, 404).await;
    assert_eq!(
        body["error"],
        json!({"errors": [{"domain": "geolocation", "reason": "notFound", "message": "Not found"}],
               "code": 404, "message": "Not found"})
    );
}

#[tokio::test]
async fn geolocate_answers_ichnaeas_example_from_the_registry() {
    let app = spawn_app().await;
    let fix = |mac: &str, lat: f64, lon: f64| {
        json!({"signal_type": "wifi", "bssid": mac, "detected_at": "2026-11-01T10:00:00Z",
               "latitude": lat, "longitude": lon, "accuracy_meters": 5.0,
               "signal_strength_dbm": -50, "device_id": SURVEY})
    };
    let batch = json!([
        fix("01:23:45:67:89:ab", -22.7539, -43.4371),
        fix("01:23:45:67:89:cd", -22.7541, -43.4373),
    ]);
    assert_eq!(app.post_json(&batch).await.status(), 201);
    placed(&app, "/api/v1/transmitters/wifi/01:23:45:67:89:cd").await;
    placed(&app, "/api/v1/transmitters/wifi/01:23:45:67:89:ab").await;
    let resp = geolocate(&app, &ichnaea_example()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    let (lat, lng) = (
        body["location"]["lat"].as_f64(),
        body["location"]["lng"].as_f64(),
    );
    assert!((lat.expect("lat") + 22.754).abs() < 0.001, "{body}");
    assert!((lng.expect("lng") + 43.437).abs() < 0.001, "{body}");
    assert!(body["accuracy"].as_f64().is_some_and(|a| a > 0.0), "{body}");
}

#[tokio::test]
async fn geolocate_takes_the_key_in_the_query_as_location_clients_send_it() {
    let app = spawn_app().await;
    let key = app.create_key("microg", &["read"]);
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/v1/geolocate?key={key}")))
        .json(&json!({}))
        .send()
        .await
        .expect("geolocate");
    // Authenticated (an empty request is simply not found).
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn geolocate_refuses_a_body_that_is_not_json_with_ichnaeas_parse_error() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/v1/geolocate"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("geolocate");
    let body = problem(resp, 400).await;
    assert_eq!(body["error"]["errors"][0]["reason"], "parseError");
}

#[tokio::test]
async fn geolocate_never_uses_nomap_networks() {
    let app = spawn_app().await;
    survey(&app).await;
    let request = json!({"wifiAccessPoints": [
        {"macAddress": KNOWN_A, "signalStrength": -50},
        {"macAddress": KNOWN_B, "signalStrength": -60, "ssid": "Bakery_nomap"}]});
    problem(geolocate(&app, &request).await, 404).await;
}

/// The real exports of two phones walking a campus (bmitay4/WiGLE-WiFi; see tests/fixtures).
fn ariel(name: &str) -> std::path::PathBuf {
    crate::helpers::repo("tests/fixtures/real/wigle-ariel").join(name)
}

/// The scans of a real export: the position written with them and the Wi-Fi heard there.
fn real_scans(name: &str) -> Vec<((f64, f64), Vec<Value>)> {
    let text = std::fs::read_to_string(ariel(name)).expect("fixture");
    // After the WiGLE pre-header line: the column header, then the rows.
    let body = text.lines().skip(1).collect::<Vec<_>>().join("\n");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body.as_bytes());
    let mut scans: std::collections::BTreeMap<(String, String, String), Vec<Value>> =
        std::collections::BTreeMap::new();
    for record in reader.records() {
        let r = record.expect("row");
        if &r[10] != "WIFI" {
            continue;
        }
        scans
            .entry((r[3].to_owned(), r[6].to_owned(), r[7].to_owned()))
            .or_default()
            .push(json!({"macAddress": &r[0], "signalStrength": r[5].parse::<i64>().ok(), "ssid": &r[1]}));
    }
    scans
        .into_iter()
        .map(|((_, lat, lon), heard)| {
            let at = (lat.parse().expect("lat"), lon.parse().expect("lon"));
            (at, heard)
        })
        .collect()
}

#[tokio::test]
async fn geolocate_places_a_real_walk_from_other_real_walks() {
    let app = spawn_app().await;
    let held_out = "BM2-WigleWifi_20171203084817.csv";
    let dir = crate::helpers::repo("tests/fixtures/real/wigle-ariel");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".csv") && n != held_out)
        .collect();
    names.sort();
    for name in &names {
        let resp = app
            .client
            .post(app.url("/api/v1/imports"))
            .header("content-type", "text/csv")
            .body(std::fs::read(ariel(name)).expect("fixture"))
            .send()
            .await
            .expect("upload");
        assert!(resp.status().is_success(), "{name}: {}", resp.status());
    }
    let started = Instant::now();
    while app
        .count_sql("SELECT count(*) FROM sigint.registry_queue")
        .await
        > 0
    {
        assert!(started.elapsed() < Duration::from_secs(60), "registry lag");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut errors = Vec::new();
    for (at, heard) in real_scans(held_out) {
        let resp = geolocate(&app, &json!({"wifiAccessPoints": heard})).await;
        if resp.status() == 404 {
            continue;
        }
        let body: Value = resp.json().await.expect("json");
        let got = (
            body["location"]["lat"].as_f64().expect("lat"),
            body["location"]["lng"].as_f64().expect("lng"),
        );
        errors.push(shadowcheck::domain::geo::haversine_m(at, got));
    }
    errors.sort_by(f64::total_cmp);
    assert!(errors.len() >= 10, "placed {} scans", errors.len());
    let median = errors[errors.len() / 2];
    assert!(
        median < 75.0,
        "median error {median:.0} m over {} scans",
        errors.len()
    );
}

/// Logs written by Kismet itself (2026.12, built from kismetwireless/kismet) replaying a real
/// 802.11 capture (ehn1225/airodump `80211-sample2.pcap`): without GPS, and with Kismet's virtual
/// GPS for a fixed mast (see tests/fixtures/README.md).
fn real_kismet_log(name: &str) -> Vec<u8> {
    std::fs::read(crate::helpers::repo("tests/fixtures/real/kismet").join(name)).expect("fixture")
}

#[tokio::test]
async fn a_real_gpsless_kismet_log_from_a_fixed_sensor_stores_every_wifi_device_there() {
    let app = spawn_app().await;
    register_sensor(&app).await;
    let resp = upload_kismet(&app, SENSOR, real_kismet_log("80211-sample2-nogps.kismet")).await;
    assert_eq!(resp.status(), 201);
    let report: Value = resp.json().await.expect("report");
    assert_eq!(report["rejected"], 0, "{report}");
    let rows = stored(&app, SENSOR).await;
    let devices: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(devices.len(), 16, "every Wi-Fi device Kismet logged");
    for (address, source, lat) in &rows {
        assert_eq!(
            (source.as_deref(), *lat),
            (Some("sensor"), Some(52.5)),
            "{address}"
        );
    }
}

#[tokio::test]
async fn a_real_gpsless_kismet_log_from_a_car_is_placed_from_a_real_survey() {
    let app = spawn_app().await;
    // The same place logged with a position: the registry learns its access points.
    let survey = upload_kismet(
        &app,
        SURVEY,
        real_kismet_log("80211-sample2-virtualgps.kismet"),
    )
    .await;
    assert_eq!(survey.status(), 201);
    placed(&app, "/api/v1/transmitters/wifi/88:36:6c:02:ed:22").await;
    placed(&app, "/api/v1/transmitters/wifi/08:5d:dd:f9:be:13").await;
    let started = Instant::now();
    while app
        .count_sql("SELECT count(*) FROM sigint.registry_queue")
        .await
        > 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "registry lag");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = upload_kismet(&app, CAR, real_kismet_log("80211-sample2-nogps.kismet")).await;
    assert_eq!(resp.status(), 201);
    let rows = stored(&app, CAR).await;
    assert!(!rows.is_empty());
    for (address, source, lat) in rows {
        assert_eq!(source.as_deref(), Some("estimated"), "{address}");
        assert!(
            (lat.expect("lat") - 32.1049).abs() < 0.001,
            "{address}: {lat:?}"
        );
    }
}
