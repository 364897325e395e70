//! The transmitter registry: kept up to date from ingest by the running service, answered over
//! HTTP as GeoJSON, one row per radio and identifier.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};

const DEVICE: &str = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a01";
const OTHER_DEVICE: &str = "0b7e7a60-1111-4c55-9f2a-0c6e8b1d2a02";

/// Waits until the registry holds `detections` sightings of the transmitter at `path`.
async fn registered(app: &TestApp, path: &str, detections: i64) -> Value {
    let started = Instant::now();
    loop {
        let resp = app.get(path).await;
        if resp.status() == 200 {
            let body: Value = resp.json().await.expect("json");
            if body["properties"]["detections"] == detections {
                return body;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path} not registered with {detections} detections in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn wifi(at: &str, lat: f64, lon: f64, dbm: i64, accuracy: f64, device: &str) -> Value {
    json!({"signal_type": "wifi", "bssid": "A4-2B-B0-00-00-01", "ssid": "CafeNet",
           "detected_at": at, "latitude": lat, "longitude": lon, "accuracy_meters": accuracy,
           "signal_strength_dbm": dbm, "device_id": device})
}

/// An app whose registry holds an access point at (52.5200, 13.4050) — strong fixes around it on
/// two days from two devices, a weak fix 300 m away, and an inaccurate fix far off that must not
/// move it — a BLE tag and a cell: the app and the access point's feature once registered.
async fn app_with_a_registered_access_point() -> (TestApp, Value) {
    let app = spawn_app().await;
    let batch = json!([
        wifi("2026-11-02T10:00:00Z", 52.52003, 13.40500, -45, 5.0, DEVICE),
        wifi("2026-11-02T10:00:05Z", 52.51997, 13.40504, -47, 5.0, DEVICE),
        wifi("2026-11-03T09:00:00Z", 52.52000, 13.40496, -44, 8.0, OTHER_DEVICE),
        wifi("2026-11-03T09:10:00Z", 52.52270, 13.40500, -92, 10.0, OTHER_DEVICE),
        wifi("2026-11-03T09:20:00Z", 52.60000, 13.60000, -30, 900.0, DEVICE),
        {"signal_type": "ble", "bt_address": "f0:11:22:33:44:55", "bt_name": "Tag",
         "detected_at": "2026-11-03T09:00:00Z", "latitude": 52.5, "longitude": 13.4,
         "bt_rssi": -60, "device_id": DEVICE},
        {"signal_type": "cellular", "mcc": 262, "mnc": 1, "lac": 1000, "cell_id": 10001,
         "network_type": "LTE", "detected_at": "2026-11-03T09:00:00Z", "latitude": 52.51,
         "longitude": 13.41, "signal_strength_dbm": -80, "device_id": DEVICE},
    ]);
    assert_eq!(app.post_json(&batch).await.status(), 201);
    let ap = registered(&app, "/api/v1/transmitters/wifi/a4:2b:b0:00:00:01", 5).await;
    (app, ap)
}

#[tokio::test]
async fn the_registry_folds_a_transmitters_sightings_into_one_row() {
    let (_app, ap) = app_with_a_registered_access_point().await;
    assert_eq!(ap["type"], "Feature");
    assert_eq!(ap["id"], "wifi/a4:2b:b0:00:00:01");
    let p = &ap["properties"];
    assert_eq!(ap["type"], "Feature");
    assert_eq!(ap["id"], "wifi/a4:2b:b0:00:00:01");
    assert_eq!(p["first_seen"], "2026-11-02T10:00:00Z");
    assert_eq!(p["last_seen"], "2026-11-03T09:20:00Z");
    assert_eq!(p["distinct_days"], 2);
    assert_eq!(p["devices"].as_array().map(Vec::len), Some(2));
    assert_eq!(p["names"], json!(["CafeNet"]));
    assert_eq!(p["best_signal_dbm"], -30);
    assert_eq!(p["mac_kind"], "universal");
    assert_eq!(p["vendor"], "TP-LINK TECHNOLOGIES CO.,LTD.");
    assert_eq!(p["fixes"], 4, "the 900 m fix does not count");
}

/// Weighted by signal, without the inaccurate fix; the spread is the p95 distance of fixes.
#[tokio::test]
async fn the_registry_places_a_transmitter_where_its_accurate_fixes_are() {
    let (_app, ap) = app_with_a_registered_access_point().await;
    let p = &ap["properties"];
    let coords = &ap["geometry"]["coordinates"];
    let (lon, lat) = (
        coords[0].as_f64().expect("lon"),
        coords[1].as_f64().expect("lat"),
    );
    assert!(
        (lat - 52.52).abs() < 0.0002 && (lon - 13.405).abs() < 0.0002,
        "{coords}"
    );
    let spread = p["spread_m"].as_f64().expect("spread");
    assert!(
        (200.0..400.0).contains(&spread),
        "p95 spread is the weak fix's distance: {spread}"
    );
}

#[tokio::test]
async fn one_transmitter_comes_with_its_track_in_time_order() {
    let (_app, ap) = app_with_a_registered_access_point().await;
    let p = &ap["properties"];
    let track = p["track"].as_array().expect("track");
    assert_eq!(track.len(), 5);
    let times: Vec<&str> = track
        .iter()
        .filter_map(|t| t["detected_at"].as_str())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

/// Any MAC notation reaches the same transmitter; the cell by its tuple.
#[tokio::test]
async fn a_transmitter_is_found_by_any_notation_of_its_identifier() {
    let (app, _) = app_with_a_registered_access_point().await;
    let same = app.get("/api/v1/transmitters/wifi/A42BB0000001").await;
    assert_eq!(same.status(), 200);
    let cell = registered(&app, "/api/v1/transmitters/cellular/262-1-1000-10001", 1).await;
    assert_eq!(
        cell["properties"]["track"].as_array().map(Vec::len),
        Some(1)
    );
    registered(&app, "/api/v1/transmitters/ble/f0:11:22:33:44:55", 1).await;
}

/// By radio, by name, by vendor, by area, and paged to the end without repeats.
#[tokio::test]
async fn the_registry_answers_searches_page_by_page() {
    let (app, _) = app_with_a_registered_access_point().await;
    registered(&app, "/api/v1/transmitters/cellular/262-1-1000-10001", 1).await;
    registered(&app, "/api/v1/transmitters/ble/f0:11:22:33:44:55", 1).await;
    let ids = |v: &Value| -> Vec<String> {
        v["features"]
            .as_array()
            .expect("features")
            .iter()
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect()
    };
    let wifi_only: Value = app.get_json("/api/v1/transmitters?radio=wifi").await;
    assert_eq!(ids(&wifi_only), vec!["wifi/a4:2b:b0:00:00:01"]);
    let named: Value = app.get_json("/api/v1/transmitters?name=cafe").await;
    assert_eq!(ids(&named), vec!["wifi/a4:2b:b0:00:00:01"]);
    let by_vendor: Value = app.get_json("/api/v1/transmitters?vendor=tp-link").await;
    assert_eq!(ids(&by_vendor), vec!["wifi/a4:2b:b0:00:00:01"]);
    let area: Value = app
        .get_json("/api/v1/transmitters?bbox=13.39,52.49,13.42,52.515")
        .await;
    let mut in_area = ids(&area);
    in_area.sort();
    assert_eq!(
        in_area,
        vec!["ble/f0:11:22:33:44:55", "cellular/262-1-1000-10001"]
    );
    let mut seen = Vec::new();
    let mut next = Some("/api/v1/transmitters?limit=1&sort=detections".to_owned());
    while let Some(path) = next {
        let page: Value = app.get_json(&path).await;
        seen.extend(ids(&page));
        next = page["links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["rel"] == "next"))
            .and_then(|l| l["href"].as_str().map(str::to_owned));
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "wifi/a4:2b:b0:00:00:01", "most seen first");
}

#[tokio::test]
async fn what_cannot_be_a_transmitter_is_a_clear_error() {
    let (app, _) = app_with_a_registered_access_point().await;
    for (path, status) in [
        ("/api/v1/transmitters/wifi/00:00:00:00:00:00", 400),
        ("/api/v1/transmitters/radio/a4:2b:b0:00:00:01", 400),
        ("/api/v1/transmitters/wifi/a4:2b:b0:00:00:02", 404),
        ("/api/v1/transmitters?sort=name", 400),
        ("/api/v1/transmitters?after=nonsense", 400),
    ] {
        problem(app.get(path).await, status).await;
    }
}

#[tokio::test]
async fn the_registry_updaters_lag_is_exported() {
    let (app, _) = app_with_a_registered_access_point().await;
    let metrics = crate::probes::scrape(&app.metrics_addr).await;
    assert!(
        metrics.contains("shadowcheck_registry_lag_rows"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shadowcheck_registry_detections_total"),
        "{metrics}"
    );
}
