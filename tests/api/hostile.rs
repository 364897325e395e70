//! What a hostile client without a key can try against connections, metrics and the other
//! surfaces, each stated as the behaviour that stops it (hardening, third round).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, ServeProcess, TEST_KEY};
use crate::probes::{closed_within, metric_sum, raw_exchange, scrape};

#[tokio::test]
async fn silent_connections_are_closed_after_the_first_request_timeout() {
    let app = spawn_app_with(|s| s.server.header_read_timeout_secs = 1).await;
    let addr = app.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut conns: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        conns
            .iter_mut()
            .map(|c| closed_within(c, Duration::from_secs(4)))
            .filter(|closed| *closed)
            .count()
    })
    .await
    .expect("join");
    assert_eq!(closed, 20);
}

#[tokio::test]
async fn an_http2_connection_that_opens_no_stream_is_closed() {
    let app = spawn_app_with(|s| s.server.header_read_timeout_secs = 1).await;
    let addr = app.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .expect("preface");
        // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
        conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .expect("settings");
        closed_within(&mut conn, Duration::from_secs(4))
    })
    .await
    .expect("join");
    assert!(closed);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|s| s.server.idle_timeout_secs = 1).await;
    let addr = app.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).expect("answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        closed_within(&mut conn, Duration::from_secs(4))
    })
    .await
    .expect("join");
    assert!(closed);
}

/// Silent sockets up to the process's descriptor limit: at the connection cap (which the limit
/// bounds) the longest-idle ones are pushed out, so probes and searches still get in.
#[tokio::test]
async fn probes_answer_while_silent_sockets_exhaust_the_descriptors() {
    let db = crate::helpers::fresh_database().await;
    let url = db.app_url();
    let serve = ServeProcess::start_with_file_limit(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__SERVER__HEADER_READ_TIMEOUT_SECS", "60"),
        ],
        256,
    );
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let addr: std::net::SocketAddr = serve.addr.parse().expect("addr");
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(held.len() >= 250, "{} sockets", held.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new client: each probe needs a new connection, not the pooled one from before.
    let client = crate::helpers::client();
    for path in ["/api/v1/health/ready", "/api/v1/detections?limit=1"] {
        let answer = client
            .get(serve.url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(answer.status(), 200, "{path}");
    }
    drop(held);
}

/// Any token is a valid HTTP method: the request line must not become a metric label (3,000
/// random 4,000-letter methods grew /metrics to 222 MB).
#[tokio::test]
async fn unknown_methods_are_one_metric_label() {
    let app = spawn_app_with(|_| {}).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        for i in 0..50 {
            let method = format!("X{}{}", i, "Q".repeat(2_000));
            let request =
                format!("{method} /api/v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let answer = raw_exchange(addr, request.as_bytes());
            assert!(answer.starts_with("HTTP/1.1 4"), "{i}");
        }
    })
    .await
    .expect("join");
    let metrics = scrape(&app.metrics_addr).await;
    assert!(!metrics.contains("QQQQ"), "a method became a label");
    assert!(
        metrics.contains("method=\"other\""),
        "unknown methods are `other`"
    );
    assert!(metrics.len() < 512 * 1024, "{} bytes", metrics.len());
}

/// `n` wifi detections this month, written in SQL (the API makes the month's partition first).
async fn many_detections(app: &crate::helpers::TestApp, n: i64) {
    let first = serde_json::json!({"detected_at": chrono::Utc::now().to_rfc3339(), "latitude": 52.5,
        "longitude": 13.4, "signal_type": "wifi", "bssid": "a4:00:00:00:00:01", "ssid": "seed"});
    assert_eq!(app.post_json(&first).await.status(), 201);
    sqlx::query(
        "INSERT INTO sigint.signal_detections (detected_at, location, signal_type, bssid, ssid)
         SELECT now() - n * interval '1 millisecond', ST_SetSRID(ST_MakePoint(13.4, 52.5), 4326),
                'wifi', ('a4:00:00:' || lpad(to_hex(n % 256), 2, '0') || ':' || lpad(to_hex(n / 256 % 256), 2, '0') || ':01')::macaddr,
                'a-long-enough-network-name-' || n
           FROM generate_series(1, $1) AS n",
    )
    .bind(n)
    .execute(&app.db)
    .await
    .expect("rows");
}

/// An export whose reader stops taking bytes no longer holds its turn: the connection is cut
/// once its writes stall, and the next export gets the turn.
#[tokio::test]
async fn an_export_nobody_reads_gives_its_turn_back() {
    let app = spawn_app_with(|s| {
        s.server.write_stall_timeout_secs = 2;
        s.query.max_concurrent_exports = 1;
        s.query.max_exports_per_key = 2;
        s.registry.enabled = false;
    })
    .await;
    many_detections(&app, 100_000).await;
    let addr = app.addr;
    let mut stalled = TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(
            format!(
                "GET /api/v1/detections?f=csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                crate::helpers::TEST_KEY
            )
            .as_bytes(),
        )
        .expect("request");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = app.get("/api/v1/detections?f=csv&limit=1").await;
    assert_eq!(busy.status(), 503, "the stalled export holds the only turn");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let next = app.get("/api/v1/detections?f=geojson&bbox=0,0,1,1").await;
        if next.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled export kept its turn"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(stalled);
}

#[tokio::test]
async fn one_key_runs_its_exports_one_at_a_time() {
    let app = spawn_app_with(|s| {
        s.server.write_stall_timeout_secs = 30;
        s.registry.enabled = false;
    })
    .await;
    many_detections(&app, 100_000).await;
    let mut held = TcpStream::connect(app.addr).expect("connect");
    held.write_all(
        format!(
            "GET /api/v1/detections?f=csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            crate::helpers::TEST_KEY
        )
        .as_bytes(),
    )
    .expect("request");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = app.get("/api/v1/detections?f=csv&limit=1").await;
    crate::helpers::problem(second, 429).await;
    drop(held);
}

/// Retention waits at most a second for a month another session is reading, then gives up until
/// its next pass: inserts never queue behind it.
#[tokio::test]
async fn retention_gives_way_to_a_reader_instead_of_stalling_ingest() {
    let app = spawn_app_with(|_| {}).await;
    let old = serde_json::json!({"detected_at": "2019-03-01T00:00:00Z", "latitude": 1, "longitude": 1,
        "signal_type": "wifi", "bssid": "a4:00:00:00:0f:01"});
    assert_eq!(app.post_json(&old).await.status(), 201);
    // A reader in the old month, as a long export would be.
    let mut reader = app.db.begin().await.expect("begin");
    sqlx::query("SELECT count(*) FROM sigint.signal_detections WHERE detected_at < '2020-01-01'")
        .execute(&mut *reader)
        .await
        .expect("read");
    let owner = shadowcheck::db::Pool::new(
        sqlx::PgPool::connect(&app.database.owner_url())
            .await
            .expect("owner"),
        &shadowcheck::config::Settings::default().database,
    );
    let started = Instant::now();
    let cutoff = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .expect("date")
        .with_timezone(&chrono::Utc);
    let dropped = shadowcheck::db::retention::drop_partitions_before(&owner, cutoff).await;
    assert!(dropped.is_err(), "dropped under a reader: {dropped:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let now = serde_json::json!({"detected_at": chrono::Utc::now().to_rfc3339(), "latitude": 1,
        "longitude": 1, "signal_type": "wifi", "bssid": "a4:00:00:00:0f:02"});
    let t = Instant::now();
    assert_eq!(app.post_json(&now).await.status(), 201);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "ingest waited {:?}",
        t.elapsed()
    );
    reader.rollback().await.expect("end the reader");
    let dropped = shadowcheck::db::retention::drop_partitions_before(&owner, cutoff)
        .await
        .expect("drops once the reader is gone");
    assert_eq!(dropped, ["signal_detections_y2019m03"]);
}

/// The allow-list and safe zones are an operator's decisions: a capture device's ingest key
/// can change neither.
#[tokio::test]
async fn an_ingest_key_cannot_change_the_allowlist_or_safe_zones() {
    let app = spawn_app_with(|_| {}).await;
    let phone = app.create_key("field-phone", &["ingest"]);
    let allow = json!({"radio": "ble", "identifier": "c4:00:00:00:00:01"});
    let zone = json!({"name": "home", "latitude": 52.5, "longitude": 13.4, "radius_m": 100});
    for (path, body) in [("/api/v1/allowlist", &allow), ("/api/v1/safe-zones", &zone)] {
        let resp = app.call(Method::POST, path, Some(&phone), Some(body)).await;
        problem(resp, 403).await;
    }
}

/// An operator removes its own entries; another operator may not, an admin may.
#[tokio::test]
async fn only_the_maker_or_an_admin_removes_an_entry() {
    let app = spawn_app_with(|_| {}).await;
    let alice = app.create_key("alice", &["operator"]);
    let bob = app.create_key("bob", &["operator"]);
    let entry = json!({"radio": "ble", "identifier": "c4:00:00:00:00:02", "note": "my tag"});
    let made = app
        .call(
            Method::POST,
            "/api/v1/allowlist",
            Some(&alice),
            Some(&entry),
        )
        .await;
    assert_eq!(made.status(), 201);
    let zone = json!({"name": "home", "latitude": 52.5, "longitude": 13.4, "radius_m": 100});
    let made: Value = app
        .call(
            Method::POST,
            "/api/v1/safe-zones",
            Some(&alice),
            Some(&zone),
        )
        .await
        .json()
        .await
        .expect("zone");
    assert_eq!(made["created_by"], "alice");
    let zone_path = format!("/api/v1/safe-zones/{}", made["id"]);
    let entry_path = "/api/v1/allowlist/ble/c4:00:00:00:00:02";
    for path in [entry_path, zone_path.as_str()] {
        let refused = app.call(Method::DELETE, path, Some(&bob), None).await;
        let body = problem(refused, 403).await;
        assert!(
            body["detail"].as_str().unwrap_or("").contains("alice"),
            "{body}"
        );
    }
    let taken = app
        .call(Method::POST, "/api/v1/allowlist", Some(&bob), Some(&entry))
        .await;
    problem(taken, 409).await;
    let removed = app
        .call(Method::DELETE, entry_path, Some(&alice), None)
        .await;
    assert_eq!(removed.status(), 204);
    let by_admin = app
        .call(Method::DELETE, &zone_path, Some(TEST_KEY), None)
        .await;
    assert_eq!(by_admin.status(), 204);
}

/// Makes five entries at `path`, then walks `list_path` two at a time by its `next` links: the
/// distinct `id`s seen.
async fn paged_after_five(
    app: &crate::helpers::TestApp,
    path: &str,
    entry: impl Fn(u32) -> Value,
    list: &str,
    id: &str,
) -> usize {
    for i in 0..5 {
        let made = app
            .call(Method::POST, path, Some(TEST_KEY), Some(&entry(i)))
            .await;
        assert_eq!(made.status(), 201);
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("{path}?limit=2"));
    while let Some(p) = next {
        let page = app.get_json(&p).await;
        let items = page[list].as_array().expect("items").clone();
        assert!(items.len() <= 2, "{page}");
        seen.extend(items.iter().map(|i| i[id].to_string()));
        next = page["next"].as_str().map(str::to_owned);
    }
    seen.sort();
    seen.dedup();
    seen.len()
}

#[tokio::test]
async fn the_allowlist_is_listed_in_pages() {
    let app = spawn_app_with(|_| {}).await;
    let entry = |i| json!({"radio": "ble", "identifier": format!("c4:00:00:00:01:0{i}")});
    let seen = paged_after_five(&app, "/api/v1/allowlist", entry, "allowlist", "identifier").await;
    assert_eq!(seen, 5);
}

#[tokio::test]
async fn safe_zones_are_listed_in_pages() {
    let app = spawn_app_with(|_| {}).await;
    let zone = |i| json!({"name": format!("z{i}"), "latitude": 52.5, "longitude": 13.4 + f64::from(i) * 0.01, "radius_m": 50});
    let seen = paged_after_five(&app, "/api/v1/safe-zones", zone, "safe_zones", "id").await;
    assert_eq!(seen, 5);
}

#[tokio::test]
async fn a_safe_zone_at_null_island_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    let zone = json!({"name": "gps off", "latitude": 0.0, "longitude": 0.0, "radius_m": 100});
    let resp = app
        .call(
            Method::POST,
            "/api/v1/safe-zones",
            Some(TEST_KEY),
            Some(&zone),
        )
        .await;
    problem(resp, 400).await;
}

fn keys_cli(app: &crate::helpers::TestApp, args: &[&str]) -> (bool, String) {
    let out = crate::helpers::shadowcheck()
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", app.database.app_url())
        .output()
        .expect("keys");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A name that is also another key's prefix matches two keys: nothing is revoked.
#[tokio::test]
async fn a_revoke_matching_several_keys_revokes_none() {
    let app = spawn_app_with(|_| {}).await;
    let first = app.create_key("first", &["read"]);
    let prefix = &first[..11];
    app.create_key(prefix, &["read"]);
    let (ok, out) = keys_cli(&app, &["revoke", prefix]);
    assert!(!ok, "{out}");
    assert!(out.contains("matches 2 active keys"), "{out}");
    let still = app
        .call(Method::GET, "/api/v1/stats", Some(&first), None)
        .await;
    assert_eq!(still.status(), 200, "the first key still works");
}

#[tokio::test]
async fn key_names_with_line_breaks_or_escapes_are_refused() {
    let app = spawn_app_with(|_| {}).await;
    for name in ["two\nlines", "red\u{1b}[31m", " padded", "bootstrap"] {
        let (ok, out) = keys_cli(&app, &["create", "--name", name, "--scope", "read"]);
        assert!(!ok, "{name:?} accepted: {out}");
    }
}

/// SSIDs are chosen by whoever runs the access point: an export opened in a spreadsheet shows
/// a formula, never runs it, and no export format carries raw control characters.
#[tokio::test]
async fn exports_make_hostile_text_harmless() {
    let app = spawn_app_with(|_| {}).await;
    let ssids = [
        "=HYPERLINK(\"http://e.vil\",\"x\")",
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "\u{1b}[31mred\u{1}",
    ];
    let batch: Vec<Value> = ssids
        .iter()
        .enumerate()
        .map(|(i, ssid)| {
            json!({"detected_at": "2026-09-01T00:00:00Z", "latitude": 1, "longitude": 1,
            "signal_type": "wifi", "bssid": format!("a4:00:00:00:0e:0{i}"), "ssid": ssid})
        })
        .collect();
    let stored = app.post_json(&Value::Array(batch)).await;
    assert_eq!(
        stored.status(),
        201,
        "{}",
        stored.text().await.unwrap_or_default()
    );
    let csv = app
        .get("/api/v1/detections?f=csv")
        .await
        .bytes()
        .await
        .expect("csv");
    let mut reader = csv::Reader::from_reader(&csv[..]);
    let at = reader
        .headers()
        .expect("headers")
        .iter()
        .position(|h| h == "ssid")
        .expect("ssid");
    let cells: Vec<String> = reader
        .records()
        .map(|r| r.expect("row")[at].to_owned())
        .collect();
    assert_eq!(cells.len(), 4);
    for cell in &cells {
        assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell:?}");
        assert!(!cell.chars().any(char::is_control), "{cell:?}");
    }
    let fgb = app
        .get("/api/v1/detections?f=fgb")
        .await
        .bytes()
        .await
        .expect("fgb");
    assert!(
        !fgb.windows(4).any(|w| w == b"\x1b[31"),
        "ESC kept in FlatGeobuf"
    );
}

/// `shadowcheck import FILE` against this app's database: success, and what it printed.
fn import_cli(app: &crate::helpers::TestApp, file: &std::path::Path) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = crate::helpers::shadowcheck()
        .arg("import")
        .arg(file)
        .env("DATABASE_URL", app.database.app_url())
        .output()
        .expect("import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

const KISMET_DEVICES: &str =
    "CREATE TABLE KISMET (kismet_version TEXT, db_version INT, db_module TEXT);
    INSERT INTO KISMET VALUES ('2023.07.R1', 9, 'kismetlog');";

/// A 4 KB log whose `devices` is a view recursing without end: refused at once, not read.
#[tokio::test]
async fn a_kismet_log_whose_devices_is_a_view_is_refused_at_once() {
    let app = spawn_app_with(|_| {}).await;
    let dir = crate::helpers::shared_temp_dir("shadowcheck-hostile-kismet-");
    let file = dir.join("Kismet-view.kismet");
    let conn = rusqlite::Connection::open(&file).expect("create");
    conn.execute_batch(&format!(
        "{KISMET_DEVICES}
         CREATE VIEW devices AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
           SELECT i AS first_time, i AS last_time, 'IEEE802.11' AS phyname, 'a4:00:00:00:00:01' AS devmac,
                  -50 AS strongest_signal, 1.0 AS min_lat, 1.0 AS min_lon, 1.0 AS max_lat, 1.0 AS max_lon,
                  1.0 AS avg_lat, 1.0 AS avg_lon, 'Wi-Fi AP' AS type,
                  printf('%.*c', 15000000, 'x') AS device FROM n;"
    ))
    .expect("schema");
    drop(conn);
    let (ok, out, took) = import_cli(&app, &file);
    assert!(!ok, "{out}");
    assert!(out.contains("is a view, not a table"), "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A stored device record over the bound is one rejected row; the rest of the log is imported.
#[tokio::test]
async fn an_oversized_kismet_device_record_is_one_rejected_row() {
    let app = spawn_app_with(|_| {}).await;
    let dir = crate::helpers::shared_temp_dir("shadowcheck-hostile-kismet-");
    let file = dir.join("Kismet-big.kismet");
    let conn = rusqlite::Connection::open(&file).expect("create");
    conn.execute_batch(&format!(
        "{KISMET_DEVICES}
         CREATE TABLE devices (first_time INT, last_time INT, devkey TEXT, phyname TEXT, devmac TEXT, strongest_signal INT,
            min_lat REAL, min_lon REAL, max_lat REAL, max_lon REAL, avg_lat REAL, avg_lon REAL, bytes_data INT, type TEXT, device BLOB);
         INSERT INTO devices VALUES (1700000000, 1700000000, '', 'IEEE802.11', 'A4:2B:B0:AA:00:01', -48, 52.5, 13.4, 52.5, 13.4, 52.5, 13.4, 0, 'Wi-Fi AP',
            '{{\"kismet.device.base.name\": \"small\"}}');
         INSERT INTO devices VALUES (1700000100, 1700000100, '', 'IEEE802.11', 'A4:2B:B0:AA:00:02', -48, 52.5, 13.4, 52.5, 13.4, 52.5, 13.4, 0, 'Wi-Fi AP',
            '{{\"kismet.device.base.name\": \"' || printf('%.*c', 5000000, 'x') || '\"}}');"
    ))
    .expect("schema");
    drop(conn);
    let (ok, out, _) = import_cli(&app, &file);
    assert!(ok, "{out}");
    assert!(out.contains("larger than 4194304 bytes"), "{out}");
    assert_eq!(app.count("bssid = 'a4:2b:b0:aa:00:01'").await, 1);
    assert_eq!(app.count("bssid = 'a4:2b:b0:aa:00:02'").await, 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// A `read_url` naming a database without ShadowCheck's schema is never used for reads: every
/// read is served by the primary, and the detailed health says why the replica is not used.
#[tokio::test]
async fn a_read_url_without_our_schema_is_not_used() {
    let other = crate::helpers::empty_database().await;
    let app = spawn_app_with(|s| {
        s.database.read_url = Some(shadowcheck::config::Secret::new(other.clone()));
    })
    .await;
    let item = json!({"detected_at": "2026-09-01T00:00:00Z", "latitude": 1, "longitude": 1,
        "signal_type": "wifi", "bssid": "a4:00:00:00:0d:0d"});
    assert_eq!(app.post_json(&item).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for path in [
        "/api/v1/detections?limit=5",
        "/api/v1/stats",
        "/api/v1/transmitters",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    let detailed = app.get_json("/api/v1/health/detailed").await;
    assert_eq!(detailed["replica"]["status"], "down", "{detailed}");
    assert!(
        detailed["replica"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("no ShadowCheck schema"),
        "{detailed}"
    );
}

/// A counter (or histogram count) of a server's own scrape, summed over the matching series.
async fn scraped(metrics_addr: &str, series: &str) -> f64 {
    metric_sum(&scrape(metrics_addr).await, series)
}

/// A storm of whole-table questions (the stats, TileJSON, the OGC collections, the world tile)
/// costs one computation each, not one per request. (A server process of its own: its metrics
/// count only this test's queries.)
#[tokio::test]
async fn whole_table_answers_are_computed_once_per_storm() {
    let app = spawn_app_with(|_| {}).await;
    many_detections(&app, 2_000).await;
    let url = app.database.app_url();
    let serve = ServeProcess::start(&[("DATABASE_URL", url.as_str())], None);
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let stats_series = "shadowcheck_db_query_duration_seconds_count{query=\"stats_summary\"}";
    let tile_series = "shadowcheck_tile_build_seconds_count{layer=\"detections\"";
    let paths = [
        "/api/v1/stats",
        "/tiles/detections.json",
        "/ogc/collections/detections",
        "/tiles/detections/0/0/0.pbf",
    ];
    let storm: Vec<_> = (0..12)
        .map(|i| {
            let client = client.clone();
            let url = serve.url(paths[i % paths.len()]);
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for answer in storm {
        let status = answer.await.expect("join").expect("answer");
        assert_eq!(status, 200);
    }
    assert_eq!(
        scraped(&serve.metrics_addr, stats_series).await,
        1.0,
        "the stats were computed more than once"
    );
    assert_eq!(
        scraped(&serve.metrics_addr, tile_series).await,
        1.0,
        "the world tile was built more than once"
    );
}

/// `Accept: text/csv;q=0` means "not CSV": the paged GeoJSON answer, not an export.
#[tokio::test]
async fn an_accept_q_of_zero_refuses_that_export() {
    let app = spawn_app_with(|_| {}).await;
    let resp = app
        .client
        .get(app.url("/api/v1/detections"))
        .header("accept", "text/csv;q=0")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(kind.starts_with("application/geo+json"), "{kind}");
}
