//! Capture-device formats end to end: WiGLE CSV uploads (raw, gzip, multipart), the CLI importer,
//! geosubmit v2 as stumbler apps send it, the privacy policy, and a large streamed import.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    fresh_database, problem, shadowcheck, spawn_app, spawn_app_with, ServeProcess, TestApp,
    TEST_KEY,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn upload(app: &TestApp, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.post(app.url("/api/v1/imports")).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("upload")
}

fn lines_with(report: &Value, field: &str) -> Vec<u64> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| e["field"] == field)
        .map(|e| e["line"].as_u64().expect("line"))
        .collect()
}

#[tokio::test]
async fn a_wigle_16_file_stores_every_type_through_its_quirks() {
    let app = spawn_app().await;
    let body = std::fs::read(fixture("wigle-1.6-all-types.csv")).expect("fixture");
    let resp = upload(&app, body.clone(), &[("content-type", "text/csv")]).await;
    assert_eq!(resp.status(), 201);
    let r: Value = resp.json().await.expect("json");
    assert_eq!(
        (
            r["rows_read"].as_u64(),
            r["stored"].as_u64(),
            r["rejected"].as_u64(),
            r["filtered"].as_u64()
        ),
        (Some(16), Some(11), Some(4), Some(1)),
        "{r}"
    );
    assert_eq!(r["source"]["format"], "WigleWifi-1.6");
    assert_eq!(r["source"]["model"], "Pixel 7");
    assert!(r["import_id"]
        .as_str()
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
    // Rejections by line: CDMA without MCC (13), bad latitude (16), unknown type (17), broadcast
    // (18). Line 15's 0,0 is a missing fix: stored without a position.
    let all_lines: Vec<u64> = r["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["line"].as_u64().expect("line"))
        .collect();
    for line in [13, 16, 17, 18] {
        assert!(all_lines.contains(&line), "line {line} not reported: {r}");
    }
    let lost: (Option<String>, Vec<String>) = sqlx::query_as(
        "SELECT ST_AsText(location), tags FROM sigint.signal_detections WHERE bssid = 'a4:2b:b0:11:22:37'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the row without a fix");
    assert_eq!(lost.0, None);
    assert!(lost.1.iter().any(|t| t == "no-fix"), "{:?}", lost.1);
    assert!(lines_with(&r, "bssid").contains(&18));
    assert!(lines_with(&r, "latitude").contains(&16));

    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT signal_type::text, count(*) FROM sigint.signal_detections GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .expect("kinds");
    assert_eq!(
        kinds,
        vec![
            ("ble".into(), 2),
            ("bluetooth".into(), 1),
            ("cellular".into(), 4),
            ("wifi".into(), 4)
        ]
    );
    let ssid: String = sqlx::query_scalar(
        "SELECT ssid FROM sigint.signal_detections WHERE bssid = 'a4:2b:b0:11:22:33'",
    )
    .fetch_one(&app.db)
    .await
    .expect("ssid");
    assert_eq!(ssid, "Cafe, \"Central\"");
    let (freq, channel): (Option<i32>, Option<i32>) = sqlx::query_as("SELECT frequency_mhz, channel FROM sigint.signal_detections WHERE bssid = 'a4:2b:b0:11:22:34'")
        .fetch_one(&app.db).await.expect("row");
    assert_eq!((freq, channel), (None, Some(36)));
    let cells: Vec<(String, i16, i16, i32, i64)> = sqlx::query_as(
        "SELECT network_type, mcc, mnc, lac, cell_id FROM sigint.signal_detections WHERE signal_type = 'cellular' ORDER BY detected_at",
    )
    .fetch_all(&app.db)
    .await
    .expect("cells");
    assert_eq!(
        cells,
        vec![
            ("GSM".into(), 262, 1, 4711, 12345),
            ("WCDMA".into(), 262, 2, 4712, 1234567),
            ("LTE".into(), 262, 3, 40000, 26000001),
            ("NR".into(), 262, 1, 1234567, 68719476000),
        ]
    );
    let (mfgr_hex, mfgr_dec): (Value, Value) = sqlx::query_as(
        "SELECT (SELECT raw_data->'mfgr_id' FROM sigint.signal_detections WHERE bt_address = 'd6:11:22:33:44:55'),
                (SELECT raw_data->'mfgr_id' FROM sigint.signal_detections WHERE bt_address = 'c4:aa:bb:cc:dd:01')",
    )
    .fetch_one(&app.db)
    .await
    .expect("mfgr");
    assert_eq!(
        (mfgr_hex, mfgr_dec),
        (serde_json::json!(76), serde_json::json!(224))
    );
    let randomised: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sigint.signal_detections WHERE 'randomized-mac' = ANY(tags)",
    )
    .fetch_one(&app.db)
    .await
    .expect("tags");
    assert_eq!(randomised, 1);
    let devices: Vec<(Option<uuid::Uuid>, Option<String>)> =
        sqlx::query_as("SELECT DISTINCT device_id, device_name FROM sigint.signal_detections")
            .fetch_all(&app.db)
            .await
            .expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].1.as_deref(), Some("google Pixel 7 (panther)"));

    // Re-uploading the same file (gzip this time) stores nothing twice.
    let gz = std::fs::read(fixture("wigle-1.6-all-types.csv.gz")).expect("fixture");
    let resp = upload(&app, gz, &[("content-type", "application/gzip")]).await;
    assert_eq!(resp.status(), 200);
    let again: Value = resp.json().await.expect("json");
    assert_eq!(
        (again["stored"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(11)),
        "{again}"
    );
    assert_eq!(app.count("true").await, 11);
    let imports: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.imports")
        .fetch_one(&app.db)
        .await
        .expect("imports");
    assert_eq!(imports, 2);
}

#[tokio::test]
async fn a_real_android_export_uploaded_from_a_browser_form_is_stored() {
    let app = spawn_app().await;
    // The real WiGLE Android 2.25 export, as a browser form would upload it.
    let form = reqwest::multipart::Form::new()
        .text("note", "from my phone")
        .part(
            "file",
            reqwest::multipart::Part::bytes(
                std::fs::read(fixture("wigle-1.4-real-android.csv")).expect("fixture"),
            )
            .file_name("WigleWifi_20171029182606.csv"),
        );
    let resp = app
        .client
        .post(app.url("/api/v1/imports"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 201);
    let r: Value = resp.json().await.expect("json");
    assert_eq!(
        (
            r["rows_read"].as_u64(),
            r["stored"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(17), Some(17), Some(0)),
        "{r}"
    );
    assert_eq!(r["filename"], "WigleWifi_20171029182606.csv");
    assert_eq!(r["source"]["brand"], "Xiaomi");
    let gsm: (i16, i16, i32, i64) = sqlx::query_as("SELECT mcc, mnc, lac, cell_id FROM sigint.signal_detections WHERE signal_type = 'cellular'")
        .fetch_one(&app.db).await.expect("gsm");
    assert_eq!(gsm, (425, 1, 7211, 3084803));
}

/// Kismet's variant of the WiGLE CSV: octal-escaped SSIDs, accuracy 0 and BT RSSI 0 mean
/// "unknown".
#[tokio::test]
async fn kismets_wigle_variant_is_read_with_its_conventions() {
    let app = spawn_app().await;
    let resp = upload(
        &app,
        std::fs::read(fixture("wigle-kismet-variant.csv")).expect("fixture"),
        &[("content-type", "text/csv")],
    )
    .await;
    assert_eq!(resp.status(), 201);
    let r: Value = resp.json().await.expect("json");
    assert_eq!(r["stored"], 3, "{r}");
    let (ssid, accuracy): (String, Option<f64>) = sqlx::query_as("SELECT ssid, accuracy_meters FROM sigint.signal_detections WHERE bssid = '00:11:22:33:44:55'")
        .fetch_one(&app.db).await.expect("row");
    assert_eq!((ssid.as_str(), accuracy), ("Bob\u{2019}s WiFi", None));
    let rssi: Option<i32> = sqlx::query_scalar(
        "SELECT bt_rssi FROM sigint.signal_detections WHERE bt_address = '00:11:22:33:44:66'",
    )
    .fetch_one(&app.db)
    .await
    .expect("bt");
    assert_eq!(rssi, None);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_a_report() {
    let app = spawn_app().await;
    let body = problem(
        upload(
            &app,
            std::fs::read(fixture("not-wigle.csv")).expect("fixture"),
            &[("content-type", "text/csv")],
        )
        .await,
        400,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("not a WiGLE CSV"),
        "{body}"
    );
    problem(
        upload(&app, b"".to_vec(), &[("content-type", "text/csv")]).await,
        400,
    )
    .await;
    problem(
        upload(
            &app,
            b"{}".to_vec(),
            &[("content-type", "application/json")],
        )
        .await,
        415,
    )
    .await;
    problem(
        upload(
            &app,
            b"x".to_vec(),
            &[("content-type", "text/csv"), ("content-encoding", "br")],
        )
        .await,
        415,
    )
    .await;
    // A truncated gzip: the rows before the damage are stored, but the answer is not a 2xx.
    let body = problem(
        upload(
            &app,
            std::fs::read(fixture("wigle-truncated.csv.gz")).expect("fixture"),
            &[("content-type", "text/csv")],
        )
        .await,
        422,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("re-upload the complete file"),
        "{body}"
    );
    let stored_before = app.count("true").await;
    // Re-uploading the complete file then finishes the job without duplicates.
    let resp = upload(
        &app,
        std::fs::read(fixture("wigle-1.6-all-types.csv.gz")).expect("fixture"),
        &[("content-type", "text/csv"), ("content-encoding", "gzip")],
    )
    .await;
    let r: Value = resp.json().await.expect("json");
    assert_eq!(
        r["stored"].as_u64().expect("stored") as i64 + stored_before,
        11,
        "{r}"
    );
    assert_eq!(app.count("true").await, 11);
    // No key, no import.
    let anon = reqwest::Client::new()
        .post(app.url("/api/v1/imports"))
        .header("content-type", "text/csv")
        .body("x")
        .send()
        .await
        .expect("send");
    problem(anon, 401).await;
}

#[tokio::test]
async fn the_privacy_policy_drops_what_it_excludes() {
    // A 50 m zone around the café of the fixture; randomised MACs dropped too; _nomap kept (tagged).
    let app = spawn_app_with(|s| {
        s.privacy.exclusion_zones = vec![shadowcheck::config::ExclusionZone {
            lat: 52.52001,
            lon: 13.40501,
            radius_m: 1.0,
        }];
        s.privacy.drop_randomized_macs = true;
        s.privacy.drop_nomap = false;
    })
    .await;
    let resp = upload(
        &app,
        std::fs::read(fixture("wigle-1.6-all-types.csv")).expect("fixture"),
        &[("content-type", "text/csv")],
    )
    .await;
    let r: Value = resp.json().await.expect("json");
    // Filtered: the café (in the zone) and the randomised BLE address; the _nomap AP is stored, tagged.
    assert_eq!(
        (r["stored"].as_u64(), r["filtered"].as_u64()),
        (Some(10), Some(2)),
        "{r}"
    );
    assert_eq!(app.count("bssid = 'a4:2b:b0:11:22:33'").await, 0);
    assert_eq!(app.count("'nomap' = ANY(tags)").await, 1);
    assert_eq!(app.count("'randomized-mac' = ANY(tags)").await, 0);
}

#[tokio::test]
async fn geosubmit_as_stumbler_apps_send_it() {
    let app = spawn_app().await;
    let body = std::fs::read(fixture("geosubmit-v2-ichnaea-example.json")).expect("fixture");
    // Key in the query string, as NeoStumbler and Tower Collector send it, gzip body.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).expect("gzip");
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/v2/geosubmit?key={TEST_KEY}")))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        serde_json::json!({})
    );
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as("SELECT signal_type::text, detected_at FROM sigint.signal_detections ORDER BY signal_type, detected_at")
        .fetch_all(&app.db).await.expect("rows");
    let kinds: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, vec!["ble", "cellular", "wifi", "wifi"]);
    // timestamp 1405602028568 minus each observation's age.
    let ble_at = rows
        .iter()
        .find(|(k, _)| k == "ble")
        .map(|(_, t)| *t)
        .expect("ble");
    assert_eq!(ble_at.timestamp_millis(), 1405602028568 - 2000);
    let source: Value = sqlx::query_scalar(
        "SELECT raw_data->'position_source' FROM sigint.signal_detections LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .expect("raw");
    assert_eq!(
        source, "gps",
        "an unknown position source is kept, not rejected"
    );
    // v1 path, same answer; sending it again stores nothing new.
    let resp = reqwest::Client::new()
        .post(app.url("/v1/geosubmit"))
        .header("x-api-key", TEST_KEY)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(app.count("true").await, 4);
    // Invalid observations are dropped (and counted), the app still gets 200 {}.
    let bad = serde_json::json!({"items": [{"timestamp": 1405602028568i64, "position": {"latitude": 95.0, "longitude": 1.0},
        "wifiAccessPoints": [{"macAddress": "00:00:00:00:00:00"}], "cellTowers": [{"radioType": "gsm", "mobileCountryCode": 262, "mobileNetworkCode": 1, "locationAreaCode": 65535, "cellId": 1}]}]});
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/v2/geosubmit?key={TEST_KEY}")))
        .json(&bad)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(app.count("true").await, 4);
    problem(
        reqwest::Client::new()
            .post(app.url("/v2/geosubmit"))
            .json(&bad)
            .send()
            .await
            .expect("post"),
        401,
    )
    .await;
    problem(
        reqwest::Client::new()
            .post(app.url(&format!("/v2/geosubmit?key={TEST_KEY}")))
            .body("{not json")
            .send()
            .await
            .expect("post"),
        400,
    )
    .await;
}

/// `shadowcheck import` with `args`, against `url` when given: whether it succeeded, and what it
/// reported on stderr.
fn cli_import(args: &[&str], url: Option<&str>) -> (bool, String) {
    let mut cmd = shadowcheck();
    cmd.arg("import").args(args);
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    let out = cmd.output().expect("run import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn stored(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let n = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// A dry run needs no database and stores nothing, but reports what would be stored.
#[test]
fn a_cli_dry_run_reports_without_a_database() {
    let all = fixture("wigle-1.6-all-types.csv.gz");
    let geo = fixture("geosubmit-v2-ichnaea-example.json");
    let (ok, out) = cli_import(
        &[
            "--dry-run",
            all.to_str().expect("utf8"),
            geo.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("16 rows read, 11 valid") && out.contains("line 13"),
        "{out}"
    );
}

#[tokio::test]
async fn the_cli_imports_files_of_several_formats() {
    let url = fresh_database().await.app_url();
    let all = fixture("wigle-1.6-all-types.csv.gz");
    let geo = fixture("geosubmit-v2-ichnaea-example.json");
    let (ok, out) = cli_import(
        &[all.to_str().expect("utf8"), geo.to_str().expect("utf8")],
        Some(&url),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("11 stored") && out.contains("4 stored"),
        "{out}"
    );
    assert_eq!(stored(&url).await, 15);
}

/// Unreadable, truncated and broken Kismet files are reported with a non-zero exit, and the
/// rest is still imported.
#[tokio::test]
async fn the_cli_reports_bad_files_while_importing_the_rest() {
    let url = fresh_database().await.app_url();
    let missing = "/nonexistent/capture.csv";
    let truncated = fixture("wigle-truncated.csv.gz");
    let kismet =
        crate::helpers::shared_temp_dir("shadowcheck-kismet-").join("Kismet-20260301.kismet");
    std::fs::write(&kismet, b"SQLite format 3\0").expect("write");
    let kismet_log = fixture("wigle-kismet-variant.csv");
    let (ok, out) = cli_import(
        &[
            missing,
            truncated.to_str().expect("utf8"),
            kismet.to_str().expect("utf8"),
            kismet_log.to_str().expect("utf8"),
        ],
        Some(&url),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("cannot open")
            && out.contains("unreadable")
            && out.contains("Kismet")
            && out.contains("3 of 4 files"),
        "{out}"
    );
    assert_eq!(
        stored(&url).await,
        9,
        "the truncated file's 6 rows before its break and the Kismet variant's 3"
    );
}

/// Large files streamed in (generated on the fly, never in memory on either side): the server's
/// peak memory does not grow with the file size. A first upload warms up allocator arenas and
/// connection buffers; a second, three times larger, must not raise the high-water mark by more
/// than a few MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_in_bounded_memory() {
    let url = fresh_database().await.app_url();
    let serve = ServeProcess::start(&[("DATABASE_URL", url.as_str())], None);
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let hwm = || serve.peak_rss_bytes();
    let upload = |first: usize, rows: usize| {
        let header = "WigleWifi-1.6,appRelease=test,model=gen,release=1,device=gen,display=x,board=x,brand=x\nMAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n";
        let chunks = (0..rows.div_ceil(1000)).map(move |c| {
            let mut text = if c == 0 { header.to_owned() } else { String::new() };
            for i in (first + c * 1000)..(first + ((c + 1) * 1000).min(rows)) {
                let b = (i as u32).to_be_bytes();
                text.push_str(&format!(
                    "a4:00:{:02x}:{:02x}:{:02x}:{:02x},net-{},[WPA2-PSK-CCMP][ESS],2026-02-{:02} {:02}:{:02}:{:02},6,2437,-70,52.{:06},13.{:06},40.0,5.0,,,WIFI\n",
                    b[0], b[1], b[2], b[3], i % 1000, 1 + i % 27, (i / 3600) % 24, (i / 60) % 60, i % 60, i % 999_999, (i * 7) % 999_999
                ));
            }
            Ok::<_, std::io::Error>(text.into_bytes())
        });
        client
            .post(serve.url("/api/v1/imports"))
            .header("content-type", "text/csv")
            .timeout(Duration::from_secs(600))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
    };
    let before = hwm();
    let resp = upload(0, 60_000).await.expect("upload");
    assert_eq!(resp.status(), 201);
    let warmed = hwm();
    const ROWS: usize = 180_000;
    let resp = upload(1_000_000, ROWS).await.expect("upload");
    assert_eq!(resp.status(), 201);
    let r: Value = resp.json().await.expect("json");
    assert_eq!(
        (r["rows_read"].as_u64(), r["stored"].as_u64()),
        (Some(ROWS as u64), Some(ROWS as u64)),
        "{}",
        r["errors"]
    );
    let after = hwm();
    let mib = |b: u64| b / (1024 * 1024);
    eprintln!("peak RSS: {} MiB at start, {} MiB after 60k rows (~7 MiB), {} MiB after 180k rows (~21 MiB)", mib(before), mib(warmed), mib(after));
    assert!(
        after.saturating_sub(warmed) < 8 * 1024 * 1024,
        "peak memory grew with the file: {} -> {} MiB",
        mib(warmed),
        mib(after)
    );
}

/// A Kismet log with the kismetdb schema: Wi-Fi AP and client, classic Bluetooth, BTLE, a device
/// without GPS and an RTL433 sensor.
fn write_kismet_log(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("create kismetdb");
    conn.execute_batch(
        r#"
        CREATE TABLE KISMET (kismet_version TEXT, db_version INT, db_module TEXT);
        INSERT INTO KISMET VALUES ('2023.07.R1', 9, 'kismetlog');
        CREATE TABLE datasources (uuid TEXT, typestring TEXT, definition TEXT, name TEXT, interface TEXT, json BLOB);
        INSERT INTO datasources VALUES ('5FE308BD-0000-0000-0000-00C0CAAB1234', 'linuxwifi', 'wlan1', 'wlan1', 'wlan1', '{}');
        CREATE TABLE devices (first_time INT, last_time INT, devkey TEXT, phyname TEXT, devmac TEXT, strongest_signal INT,
            min_lat REAL, min_lon REAL, max_lat REAL, max_lon REAL, avg_lat REAL, avg_lon REAL, bytes_data INT, type TEXT, device BLOB);
        "#,
    )
    .expect("schema");
    type Device<'a> = (i64, i64, &'a str, &'a str, i64, f64, f64, &'a str, &'a str);
    let rows: [Device; 6] = [
        (
            1700000000,
            1700000600,
            "IEEE802.11",
            "A4:2B:B0:AA:00:01",
            -48,
            52.5200,
            13.4050,
            "Wi-Fi AP",
            r#"{"kismet.device.base.name": "CoffeeShop", "kismet.device.base.channel": "6", "kismet.device.base.frequency": 2437000, "kismet.device.base.manuf": "TP-Link"}"#,
        ),
        (
            1700000100,
            1700000100,
            "IEEE802.11",
            "A4:2B:B0:AA:00:02",
            -70,
            52.5201,
            13.4051,
            "Wi-Fi Client",
            r#"{"kismet.device.base.name": "A4:2B:B0:AA:00:02"}"#,
        ),
        (
            1700000200,
            1700000900,
            "Bluetooth",
            "B4:F1:DA:AA:00:03",
            -60,
            52.5202,
            13.4052,
            "BR/EDR",
            r#"{"kismet.device.base.name": "WH-1000XM4"}"#,
        ),
        (
            1700000300,
            1700000300,
            "BTLE",
            "D6:11:22:AA:00:04",
            0,
            52.5203,
            13.4053,
            "BTLE",
            r#"{"kismet.device.base.name": "", "bluetooth.device": {"bluetooth.device.service_uuid_vec": ["0000FEED-0000-1000-8000-00805F9B34FB"], "bluetooth.device.scan_data_bytes": "0201060303EDFE"}}"#,
        ),
        (
            1700000400,
            1700000400,
            "IEEE802.11",
            "A4:2B:B0:AA:00:05",
            -80,
            0.0,
            0.0,
            "Wi-Fi AP",
            r#"{"kismet.device.base.name": "NoFix"}"#,
        ),
        (
            1700000500,
            1700000500,
            "RTL433",
            "02:00:00:AA:00:06",
            -90,
            52.5204,
            13.4054,
            "Sensor",
            r#"{}"#,
        ),
    ];
    for (first, last, phy, mac, signal, lat, lon, kind, blob) in rows {
        conn.execute(
            "INSERT INTO devices VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13, ?14)",
            rusqlite::params![first, last, format!("{phy}_{mac}"), phy, mac, signal, lat, lon, lat, lon, lat, lon, kind, blob.as_bytes()],
        )
        .expect("insert");
    }
}

#[tokio::test]
async fn kismet_log_devices_become_detections() {
    let dir = crate::helpers::shared_temp_dir("shadowcheck-kismetdb-");
    let log = dir.join("Kismet-20231114-22-13-20-1.kismet");
    write_kismet_log(&log);
    let url = fresh_database().await.app_url();
    let out = shadowcheck()
        .args(["import"])
        .arg(&log)
        .env("DATABASE_URL", &url)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 6 devices, 9 rows (first and last sighting when they differ); the access point without a
    // fix stored without a position; RTL433 rejected.
    assert!(
        out.status.success(),
        "rejected rows are reported, not fatal: {stderr}"
    );
    assert!(
        stderr.contains("kismetdb") && stderr.contains("7 stored") && stderr.contains("1 rejected"),
        "{stderr}"
    );
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    type Stored = (
        String,
        String,
        Option<String>,
        Option<i32>,
        Option<i32>,
        chrono::DateTime<chrono::Utc>,
    );
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT signal_type::text, coalesce(bssid::text, bt_address::text), coalesce(ssid, bt_name), coalesce(signal_strength_dbm, bt_rssi), frequency_mhz, detected_at
         FROM sigint.signal_detections ORDER BY detected_at",
    )
    .fetch_all(&pool)
    .await
    .expect("rows");
    let summary: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            ("wifi", "a4:2b:b0:aa:00:01"),
            ("wifi", "a4:2b:b0:aa:00:02"),
            ("bluetooth", "b4:f1:da:aa:00:03"),
            ("ble", "d6:11:22:aa:00:04"),
            ("wifi", "a4:2b:b0:aa:00:05"),
            ("wifi", "a4:2b:b0:aa:00:01"),
            ("bluetooth", "b4:f1:da:aa:00:03"),
        ]
    );
    let no_fix: Option<String> = sqlx::query_scalar(
        "SELECT ST_AsText(location) FROM sigint.signal_detections WHERE bssid = 'a4:2b:b0:aa:00:05'",
    )
    .fetch_one(&pool)
    .await
    .expect("the access point without a fix");
    assert_eq!(no_fix, None);
    assert_eq!(rows[0].2.as_deref(), Some("CoffeeShop"));
    assert_eq!(rows[0].4, Some(2437));
    assert_eq!(rows[1].2, None, "a client's name is not an SSID");
    assert_eq!(rows[3].3, None, "signal 0 means unmeasured");
    // The BTLE device's advertised services and scan bytes reach the tracker classifier.
    let (uuids, adv): (Vec<String>, Option<String>) = sqlx::query_as(
        "SELECT ble_service_uuids, ble_advertisement FROM sigint.signal_detections WHERE signal_type = 'ble'",
    )
    .fetch_one(&pool)
    .await
    .expect("ble row");
    assert_eq!(uuids, vec!["feed".to_owned()]);
    assert_eq!(adv.as_deref(), Some("0201060303edfe"));
    assert_eq!(rows[0].5.timestamp(), 1700000000);
    assert_eq!(rows[5].5.timestamp(), 1700000600);
    // Importing the same log again stores nothing twice.
    let out = shadowcheck()
        .args(["import"])
        .arg(&log)
        .env("DATABASE_URL", &url)
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 stored, 7 duplicates"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pool.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test]
async fn oversized_inputs_are_refused_in_bounded_memory() {
    let url = fresh_database().await.app_url();
    // 2 MiB per upload, counted after decompression as well as before.
    let serve = ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__INGEST__MAX_IMPORT_BYTES", "2097152"),
        ],
        None,
    );
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let hwm_mib = || serve.peak_rss_bytes() / (1024 * 1024);
    let upload = |body: Vec<u8>| {
        client
            .post(serve.url("/api/v1/imports"))
            .header("content-type", "text/csv")
            .header("content-encoding", "gzip")
            .timeout(Duration::from_secs(120))
            .body(body)
            .send()
    };
    let before = hwm_mib();
    let header = "WigleWifi-1.6,appRelease=test,model=gen,release=1,device=gen,display=x,board=x,brand=x\nMAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n";

    // 256 MiB of zeros in a few hundred KiB: one endless "line", refused as malformed.
    let zeros = gzip(&vec![0u8; 256 * 1024 * 1024]);
    assert!(zeros.len() < 2 * 1024 * 1024);
    let resp = upload(zeros).await.expect("upload");
    let body = problem(resp, 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("longer than"),
        "{body}"
    );

    // A valid header, then one endless line: the same, after the header.
    let mut endless = header.as_bytes().to_vec();
    endless.extend(std::iter::repeat_n(b'a', 64 * 1024 * 1024));
    let resp = upload(gzip(&endless)).await.expect("upload");
    let body = problem(resp, 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("longer than"),
        "{body}"
    );

    // Valid rows far past the limit once inflated: 413, the rows before it committed.
    let mut rows = header.as_bytes().to_vec();
    for i in 0..50_000u32 {
        let b = i.to_be_bytes();
        rows.extend(format!(
            "a4:00:{:02x}:{:02x}:{:02x}:{:02x},net,[WPA2-PSK-CCMP][ESS],2026-02-01 10:{:02}:{:02},6,2437,-70,52.5,13.4,40.0,5.0,,,WIFI\n",
            b[0], b[1], b[2], b[3], (i / 60) % 60, i % 60
        ).as_bytes());
    }
    assert!(rows.len() > 4 * 1024 * 1024);
    let resp = upload(gzip(&rows)).await.expect("upload");
    let body = problem(resp, 413).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("decompressed"),
        "{body}"
    );
    let after = hwm_mib();
    eprintln!("peak RSS {before} MiB before, {after} MiB after the bombs");
    assert!(
        after.saturating_sub(before) < 32,
        "memory grew with the bombs: {before} -> {after} MiB"
    );
    // The service is still there for everyone else.
    serve.wait_ready(&client).await;
}

/// A WiGLE pre-header is phone metadata stored with the import and echoed in its report: an
/// absurd one (thousands of fields, long values, within the 1 MiB line bound) is kept to what a
/// real pre-header holds, and the rows still import.
#[tokio::test]
async fn an_oversized_preheader_is_kept_to_real_bounds() {
    let app = spawn_app().await;
    let mut first = format!("WigleWifi-1.6{},model=Pixel 7", "9".repeat(5_000));
    for i in 0..2_000 {
        first.push_str(&format!(",k{i}{}={}", "x".repeat(100), "v".repeat(200)));
    }
    assert!(first.len() > 500_000 && first.len() < 1024 * 1024);
    let body = format!(
        "{first}\nMAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n\
         a4:00:00:00:0f:01,cafe,[WPA2-PSK-CCMP][ESS],2026-02-01 10:00:00,6,2437,-70,52.5,13.4,40.0,5.0,,,WIFI\n"
    );
    let resp = upload(&app, body.into_bytes(), &[("content-type", "text/csv")]).await;
    assert_eq!(resp.status(), 201);
    let text = resp.text().await.expect("body");
    assert!(text.len() < 20_000, "report echoes {} bytes", text.len());
    let r: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(r["stored"], 1);
    let source = r["source"].as_object().expect("source");
    assert!(source.len() <= 33, "{} fields kept", source.len());
    assert!(source
        .iter()
        .all(|(k, v)| k.len() <= 64 && v.as_str().is_some_and(|v| v.len() <= 256)));
    assert_eq!(r["source"]["model"], "Pixel 7", "the real fields survive");
    let stored: i32 = sqlx::query_scalar("SELECT max(length(source::text)) FROM sigint.imports")
        .fetch_one(&app.db)
        .await
        .expect("imports");
    assert!(stored < 20_000, "stored pre-header of {stored} bytes");
}
