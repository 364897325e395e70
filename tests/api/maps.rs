//! Map serving: vector tiles read by a third-party decoder (PyPI `mapbox-vector-tile`),
//! TileJSON, tile caching and revalidation.

use std::collections::BTreeSet;
use std::f64::consts::PI;

use serde_json::{json, Value};

use crate::helpers::{mixed_batch, problem, spawn_app, spawn_app_with, TestApp, CENTRES};

/// The XYZ tile holding a position (written here from the web-mercator formulas, not taken
/// from the product).
fn tile_of(lat: f64, lon: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let lat = lat.to_radians();
    let y = ((1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / PI) / 2.0 * n).floor() as u32;
    (x, y)
}

/// Stores `mixed_batch(n, seed)` through the API.
async fn load(app: &TestApp, n: usize, seed: u64) {
    let status = app
        .post_json(&Value::Array(mixed_batch(n, seed)))
        .await
        .status();
    assert_eq!(status, 201);
}

/// Every stored detection 99 more times, 10 ms apart (QGIS 3.22 reads a time's seconds as a
/// 32-bit float and truncates it to the millisecond, so times 1 ms apart may read the same): a
/// large table in SQL, after the API has made the month's partitions.
async fn hundredfold(pool: &sqlx::PgPool) {
    sqlx::query(
        "INSERT INTO sigint.signal_detections (detected_at, location, accuracy_meters, signal_type, ssid, bssid,
             channel, frequency_mhz, signal_strength_dbm, bt_address, bt_name, bt_class, bt_rssi, cell_id, lac, mcc,
             mnc, network_type, device_id, is_suspicious, tags)
         SELECT detected_at + n * interval '10 milliseconds', location, accuracy_meters, signal_type, ssid, bssid,
             channel, frequency_mhz, signal_strength_dbm, bt_address, bt_name, bt_class, bt_rssi, cell_id, lac, mcc,
             mnc, network_type, device_id, is_suspicious, tags
         FROM sigint.signal_detections, generate_series(1, 99) AS n",
    )
    .execute(pool)
    .await
    .expect("copies");
}

/// Decodes tile bytes with the third-party decoder.
fn decode(bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tile.pbf");
    std::fs::write(&path, bytes).expect("write tile");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/mvt_decode.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "mapbox-vector-tile could not decode our tile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("decoder prints JSON")
}

async fn tile(app: &TestApp, path: &str) -> (u16, Option<String>, Vec<u8>) {
    let resp = app.get(path).await;
    let status = resp.status().as_u16();
    if status == 200 {
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.mapbox-vector-tile"
        );
    }
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("etag").to_owned());
    (status, etag, resp.bytes().await.expect("body").to_vec())
}

async fn ids_sql(app: &TestApp, sql: &str) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_all(&app.db)
        .await
        .expect("ids")
        .into_iter()
        .collect()
}

fn features<'a>(decoded: &'a Value, layer: &str) -> &'a Vec<Value> {
    decoded[layer]["features"]
        .as_array()
        .unwrap_or_else(|| panic!("layer {layer} in {decoded}"))
}

/// The tile key stored with each detection is the one the tile ranges are computed from in
/// Rust, for stored rows and at the edges of the world; a row without a position has none.
#[tokio::test]
async fn stored_tile_keys_agree_with_the_tile_ranges() {
    use shadowcheck::domain::tile::key_of;
    let app = spawn_app().await;
    load(&app, 300, 5).await;
    let rows: Vec<(f64, f64, Option<i64>)> = sqlx::query_as(
        "SELECT ST_X(location), ST_Y(location), tile_key FROM sigint.signal_detections \
         WHERE location IS NOT NULL",
    )
    .fetch_all(&app.db)
    .await
    .expect("rows");
    assert!(rows.len() > 250, "{}", rows.len());
    for (lon, lat, key) in rows {
        assert_eq!(key, Some(key_of(lon, lat)), "{lon},{lat}");
    }
    for (lon, lat) in [
        (-180.0, 90.0),
        (180.0, -90.0),
        (0.0, 0.0),
        (-0.000_000_1, 0.000_000_1),
        (179.999_999_9, -85.0),
        (13.404_954, 52.520_008),
    ] {
        let key: i64 = sqlx::query_scalar("SELECT sigint.tile_key($1, $2)")
            .bind(lon)
            .bind(lat)
            .fetch_one(&app.db)
            .await
            .expect("key");
        assert_eq!(key, key_of(lon, lat), "{lon},{lat}");
    }
    let keyless: bool = sqlx::query_scalar("SELECT sigint.tile_key(NULL, 1.0) IS NULL")
        .fetch_one(&app.db)
        .await
        .expect("no key");
    assert!(keyless);
}

#[tokio::test]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs the mapbox-vector-tile decoder (PyPI): feature tool-tests (scripts/test)"
)]
async fn detection_tiles_hold_exactly_the_matching_points_as_points_or_counted_cells() {
    let app = spawn_app().await;
    load(&app, 1200, 3).await;
    let (lat, lon) = CENTRES[0];
    let z = 13;
    let (x, y) = tile_of(lat, lon, z);
    let inside_buffered = format!(
        "ST_Intersects(ST_Transform(location, 3857), ST_TileEnvelope({z}, {x}, {y}, margin => 64.0 / 4096))"
    );

    // Points: every detection in the tile (and its 64-unit buffer), with its properties.
    let (status, _, bytes) = tile(&app, &format!("/tiles/detections/{z}/{x}/{y}.pbf")).await;
    assert_eq!(status, 200);
    let decoded = decode(&bytes);
    assert_eq!(decoded["detections"]["extent"], 4096);
    let got: BTreeSet<i64> = features(&decoded, "detections")
        .iter()
        .map(|f| f["id"].as_i64().expect("integer feature id"))
        .collect();
    let expected = ids_sql(
        &app,
        &format!("SELECT id FROM sigint.signal_detections WHERE {inside_buffered}"),
    )
    .await;
    assert!(
        expected.len() > 20,
        "fixture too sparse: {}",
        expected.len()
    );
    assert_eq!(got, expected);
    // Each point where it belongs: tile units of its own lon/lat, within rounding.
    let n = f64::from(1u32 << z);
    for f in features(&decoded, "detections").iter().take(50) {
        let id = f["id"].as_i64().expect("id");
        let (plon, plat): (f64, f64) = sqlx::query_as(
            "SELECT ST_X(location), ST_Y(location) FROM sigint.signal_detections WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("row");
        let tx = ((plon + 180.0) / 360.0 * n - f64::from(x)) * 4096.0;
        let r = plat.to_radians();
        let ty = ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / PI) / 2.0 * n - f64::from(y)) * 4096.0;
        let c = &f["geometry"]["coordinates"];
        assert_eq!(f["geometry"]["type"], "Point");
        let (gx, gy) = (c[0].as_f64().expect("x"), c[1].as_f64().expect("y"));
        assert!(
            (gx - tx).abs() <= 1.0 && (gy - ty).abs() <= 1.0,
            "{id}: {gx},{gy} vs {tx},{ty}"
        );
        let p = &f["properties"];
        assert!(["wifi", "bluetooth", "ble", "cellular"]
            .contains(&p["signal_type"].as_str().expect("type")));
        assert!(p["detected_at"].as_str().expect("time").ends_with('Z'));
        assert!(p["identifier"].is_string());
    }

    // Filters as the search API: only wifi, only this device.
    let (status, _, bytes) = tile(
        &app,
        &format!(
            "/tiles/detections/{z}/{x}/{y}.pbf?signal_type=wifi&device_id={}",
            crate::helpers::DEVICES[0]
        ),
    )
    .await;
    assert_eq!(status, 200);
    let decoded = decode(&bytes);
    let got: BTreeSet<i64> = features(&decoded, "detections")
        .iter()
        .map(|f| f["id"].as_i64().expect("id"))
        .collect();
    let expected = ids_sql(
        &app,
        &format!(
            "SELECT id FROM sigint.signal_detections WHERE {inside_buffered} AND signal_type = 'wifi' AND device_id = '{}'",
            crate::helpers::DEVICES[0]
        ),
    )
    .await;
    assert!(!expected.is_empty());
    assert_eq!(got, expected);

    // Too dense for points: the same tile from a server drawing at most 20 points a tile is
    // cells whose counts add up to every detection in the tile itself.
    let dense = spawn_app_with(|s| {
        s.map.tile_max_points = 20;
        s.map.tile_grid = 16;
    })
    .await;
    load(&dense, 1200, 3).await;
    let (status, _, bytes) = tile(&dense, &format!("/tiles/detections/{z}/{x}/{y}.pbf")).await;
    assert_eq!(status, 200);
    let decoded = decode(&bytes);
    let cells = features(&decoded, "detections");
    assert!(
        cells.len() > 1 && cells.len() <= 16 * 16,
        "{} cells",
        cells.len()
    );
    let mut total = 0;
    for c in cells {
        let p = &c["properties"];
        assert_eq!(p["cluster"], true);
        let count = p["count"].as_i64().expect("count");
        let by_type: i64 = ["wifi", "bluetooth", "ble", "cellular"]
            .iter()
            .map(|t| p[*t].as_i64().expect("per type"))
            .sum();
        assert_eq!(count, by_type);
        assert!(p["first_seen"].as_str() <= p["last_seen"].as_str());
        let xy = &c["geometry"]["coordinates"];
        for v in [xy[0].as_f64().expect("x"), xy[1].as_f64().expect("y")] {
            assert!(
                (0.0..=4096.0).contains(&v),
                "cell centre outside the tile: {v}"
            );
        }
        total += count;
    }
    let in_tile = dense
        .count(&format!(
            "ST_Intersects(ST_Transform(location, 3857), ST_TileEnvelope({z}, {x}, {y}))"
        ))
        .await;
    assert_eq!(total, in_tile);

    // Nothing there: 204. Bad addresses and filters: 400 naming them; unknown layer: 404.
    let (px, py) = tile_of(-30.0, -140.0, z);
    let (status, _, body) = tile(&app, &format!("/tiles/detections/{z}/{px}/{py}.pbf")).await;
    assert_eq!((status, body.len()), (204, 0));
    for (path, parameter) in [
        ("/tiles/detections/23/0/0.pbf", "z"),
        ("/tiles/detections/2/4/0.pbf", "y"),
        ("/tiles/detections/2/1/1.png", "y"),
        ("/tiles/detections/2/1/1.pbf?bbox=1,2,3,4", "bbox"),
        (
            "/tiles/detections/2/1/1.pbf?signal_type=radar",
            "signal_type",
        ),
        ("/tiles/transmitters/2/1/1.pbf?ssid=x", "ssid"),
        ("/tiles/detections/2/1/1.pbf?min_score=101", "min_score"),
    ] {
        let body = problem(app.get(path).await, 400).await;
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
    }
    problem(app.get("/tiles/wardrive/1/1/1.pbf").await, 404).await;
    let anonymous = reqwest::Client::new()
        .get(app.url(&format!("/tiles/detections/{z}/{x}/{y}.pbf")))
        .send()
        .await
        .expect("GET");
    problem(anonymous, 401).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs the mapbox-vector-tile decoder (PyPI): feature tool-tests (scripts/test)"
)]
async fn a_commit_in_a_tiles_area_rebuilds_it_at_once() {
    let app = spawn_app().await;
    let (lat, lon) = CENTRES[1];
    let path = tile_path_at(lat, lon);
    // Before any data: nothing to draw.
    let (status, empty_tag, _) = tile(&app, &path).await;
    assert_eq!(status, 204);
    assert_eq!(
        app.post_json(&one_wifi(lat, lon, "a4:00:00:00:00:01"))
            .await
            .status(),
        201
    );
    let (status, tag1, bytes) = tile(&app, &path).await;
    assert_eq!(
        status, 200,
        "a commit in the tile's area replaced the empty tile"
    );
    assert_ne!(tag1, empty_tag);
    assert_eq!(features(&decode(&bytes), "detections").len(), 1);
    // A commit far away leaves it current; one inside the tile changes it at once.
    assert_eq!(
        app.post_json(&one_wifi(35.68, 139.76, "a4:00:00:00:00:02"))
            .await
            .status(),
        201
    );
    let (status, tag2, _) = tile(&app, &path).await;
    assert_eq!((status, &tag2), (200, &tag1));
    let inside = one_wifi(lat + 0.0001, lon + 0.0001, "a4:00:00:00:00:03");
    assert_eq!(app.post_json(&inside).await.status(), 201);
    let (status, tag3, bytes) = tile(&app, &path).await;
    assert_eq!(status, 200);
    assert_ne!(tag3, tag1);
    assert_eq!(features(&decode(&bytes), "detections").len(), 2);
}

/// Revalidation: the tile's own tag is 304 with no body.
#[tokio::test]
async fn a_tiles_etag_revalidates_with_304() {
    let app = spawn_app().await;
    let (lat, lon) = CENTRES[1];
    let path = tile_path_at(lat, lon);
    assert_eq!(
        app.post_json(&one_wifi(lat, lon, "a4:00:00:00:00:01"))
            .await
            .status(),
        201
    );
    let (status, tag, _) = tile(&app, &path).await;
    assert_eq!(status, 200);
    let resp = app
        .client
        .get(app.url(&path))
        .header("if-none-match", tag.clone().expect("etag"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"].to_str().ok(), tag.as_deref());
}

/// The zoom-14 detections tile holding a point.
fn tile_path_at(lat: f64, lon: f64) -> String {
    let z = 14;
    let (x, y) = tile_of(lat, lon, z);
    format!("/tiles/detections/{z}/{x}/{y}.pbf")
}

/// A batch of one wifi detection, now.
fn one_wifi(lat: f64, lon: f64, mac: &str) -> Value {
    json!([{"signal_type": "wifi", "bssid": mac, "latitude": lat, "longitude": lon,
            "detected_at": chrono::Utc::now().to_rfc3339()}])
}

#[tokio::test]
async fn tilejson_describes_the_layer_with_its_filtered_tile_url() {
    let app = spawn_app().await;
    load(&app, 400, 9).await;
    let doc = app
        .get_json("/tiles/detections.json?signal_type=wifi")
        .await;
    assert_eq!(doc["tilejson"], "3.0.0");
    let url = doc["tiles"][0].as_str().expect("tile url");
    assert_eq!(
        url,
        format!(
            "http://{}/tiles/detections/{{z}}/{{x}}/{{y}}.pbf?signal_type=wifi",
            app.addr
        )
    );
    assert_eq!(doc["vector_layers"][0]["id"], "detections");
    assert!(doc["vector_layers"][0]["fields"]["count"].is_string());
    assert_eq!(doc["minzoom"], 0);
    assert_eq!(doc["maxzoom"], 22);
    assert_eq!(doc["bounds"].as_array().map(Vec::len), Some(4));
    problem(app.get("/tiles/detections.xml").await, 404).await;
    problem(app.get("/tiles/nothing.json").await, 404).await;
}

/// The registry places transmitters; their layer draws them with registry fields.
#[tokio::test]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs the mapbox-vector-tile decoder (PyPI): feature tool-tests (scripts/test)"
)]
async fn the_transmitters_layer_draws_the_registrys_rows() {
    let app = spawn_app().await;
    load(&app, 400, 9).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while app
        .count_sql("SELECT count(*) FROM sigint.transmitters WHERE location IS NOT NULL")
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "registry placed nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (lat, lon) = CENTRES[2];
    let (x, y) = tile_of(lat, lon, 11);
    let (status, _, bytes) = tile(&app, &format!("/tiles/transmitters/11/{x}/{y}.pbf")).await;
    assert_eq!(status, 200);
    let decoded = decode(&bytes);
    let drawn = features(&decoded, "transmitters");
    assert!(!drawn.is_empty());
    for f in drawn {
        let p = &f["properties"];
        let known = app
            .count_sql(&format!(
                "SELECT count(*) FROM sigint.transmitters WHERE identifier = '{}' AND radio = '{}'",
                p["identifier"].as_str().expect("identifier"),
                p["signal_type"].as_str().expect("radio")
            ))
            .await;
        assert_eq!(known, 1, "{p}");
        assert!(p["detections"].as_i64().expect("detections") >= 1);
        assert!(p["level"].is_string());
    }
}

/// GDAL's command-line tools against this app, authenticated with the test key.
fn gdal(app: &TestApp, tool: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(tool)
        .args(args)
        .env(
            "GDAL_HTTP_HEADERS",
            format!("Authorization: Bearer {}", crate::helpers::TEST_KEY),
        )
        .env("GDAL_HTTP_TIMEOUT", "60")
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (Debian gdal-bin): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} against {} failed: {stdout}\n{}",
        app.addr,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn geojson_fids(path: &std::path::Path) -> BTreeSet<i64> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(path).expect("ogr2ogr output")).expect("GeoJSON");
    doc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_i64().expect("preserved integer fid"))
        .collect()
}

// GDAL blocks its thread while the server answers it: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs GDAL: feature tool-tests (scripts/test)"
)]
async fn gdal_copies_the_ogc_collections() {
    let app = spawn_app().await;
    load(&app, 600, 5).await;
    let source = format!("OAPIF:http://{}/ogc", app.addr);
    let listing = gdal(&app, "ogrinfo", &["-ro", &source]);
    assert!(listing.contains("1: detections"), "{listing}");
    assert!(listing.contains("2: transmitters"), "{listing}");

    // A filtered copy, paged 40 at a time: GDAL sends the box and the attribute filter to the
    // server and follows `next` links; every matching detection arrives once.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("wifi.geojson");
    gdal(
        &app,
        "ogr2ogr",
        &[
            "-f",
            "GeoJSON",
            out.to_str().expect("path"),
            &source,
            "detections",
            "-oo",
            "PAGE_SIZE=40",
            "-preserve_fid",
            "-spat",
            "13.38",
            "52.49",
            "13.45",
            "52.55",
            "-where",
            "signal_type = 'wifi'",
        ],
    );
    let expected = ids_sql(
        &app,
        "SELECT id FROM sigint.signal_detections WHERE location && ST_MakeEnvelope(13.38, 52.49, 13.45, 52.55, 4326) AND signal_type = 'wifi'",
    )
    .await;
    assert!(
        expected.len() > 40,
        "fixture too small to page: {}",
        expected.len()
    );
    assert_eq!(geojson_fids(&out), expected);

    // The registry as a layer, once it has caught up with the batch.
    let distinct = "SELECT count(*) FROM (SELECT DISTINCT signal_type, bssid, bt_address, mcc, mnc, lac, cell_id FROM sigint.signal_detections) s";
    let transmitters = app.count_sql(distinct).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while app
        .count_sql("SELECT count(*) FROM sigint.transmitters")
        .await
        < transmitters
    {
        assert!(
            std::time::Instant::now() < deadline,
            "registry did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let out = dir.path().join("transmitters.geojson");
    gdal(
        &app,
        "ogr2ogr",
        &[
            "-f",
            "GeoJSON",
            out.to_str().expect("path"),
            &source,
            "transmitters",
            "-preserve_fid",
        ],
    );
    let expected = ids_sql(&app, "SELECT id FROM sigint.transmitters").await;
    assert_eq!(geojson_fids(&out), expected);
}

#[tokio::test]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs GDAL: feature tool-tests (scripts/test)"
)]
async fn ogc_items_page_through_every_filter() {
    let app = spawn_app().await;
    load(&app, 300, 8).await;
    let landing = app.get_json("/ogc").await;
    let rels: Vec<&str> = landing["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["rel"].as_str().expect("rel"))
        .collect();
    for rel in ["self", "service-desc", "conformance", "data"] {
        assert!(rels.contains(&rel), "{landing}");
    }
    let conformance = app.get_json("/ogc/conformance").await;
    assert!(conformance["conformsTo"]
        .as_array()
        .expect("classes")
        .contains(&json!(
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"
        )));
    let collection = app.get_json("/ogc/collections/detections").await;
    assert_eq!(collection["itemType"], "feature");
    assert_eq!(
        collection["extent"]["spatial"]["bbox"][0]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    // A closed interval includes its end; an instant is exactly that time.
    let (a, b): (String, String) = sqlx::query_as(
        "SELECT to_char(min(detected_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                to_char(percentile_disc(0.5) WITHIN GROUP (ORDER BY detected_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
         FROM sigint.signal_detections WHERE signal_type IN ('wifi', 'ble')",
    )
    .fetch_one(&app.db)
    .await
    .expect("times");
    let cases = [
        (
            format!("{a}/{b}"),
            format!("detected_at BETWEEN '{a}' AND '{b}'"),
        ),
        (format!("../{b}"), format!("detected_at <= '{b}'")),
        (format!("{b}/.."), format!("detected_at >= '{b}'")),
        (b.clone(), format!("detected_at = '{b}'")),
    ];
    for (datetime, sql) in cases {
        let mut got = BTreeSet::new();
        let mut next = Some(format!(
            "/ogc/collections/detections/items?datetime={}&signal_type=wifi,ble&limit=25",
            datetime.replace('+', "%2B")
        ));
        let mut pages = 0;
        while let Some(url) = next.take() {
            let resp = app
                .get(url.trim_start_matches(&format!("http://{}", app.addr)))
                .await;
            assert_eq!(resp.status(), 200, "{url}");
            assert_eq!(resp.headers()["content-type"], "application/geo+json");
            let page: Value = resp.json().await.expect("page");
            pages += 1;
            for f in page["features"].as_array().expect("features") {
                assert!(got.insert(f["id"].as_i64().expect("integer id")));
            }
            next = page["links"]
                .as_array()
                .expect("links")
                .iter()
                .find(|l| l["rel"] == "next")
                .map(|l| l["href"].as_str().expect("href").to_owned());
            // The page asked for has the size asked for; the pages a client follows on are
            // at least the default page size (GDAL asks for 10 and follows `next` as given).
            let size = if pages == 1 { 25 } else { 1000 };
            assert!(page["features"].as_array().expect("features").len() <= size);
            if let Some(n) = &next {
                assert!(
                    n.contains("datetime=")
                        && n.contains("signal_type=")
                        && n.contains("limit=1000"),
                    "{n}"
                );
            }
        }
        let expected = ids_sql(
            &app,
            &format!("SELECT id FROM sigint.signal_detections WHERE {sql} AND signal_type IN ('wifi', 'ble')"),
        )
        .await;
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(got, expected, "datetime={datetime}");
        assert_eq!(pages, 1 + expected.len().saturating_sub(25).div_ceil(1000));
    }

    // One feature by its id; unknown ids and collections are 404, bad filters 400.
    let id = *ids_sql(&app, "SELECT id FROM sigint.signal_detections LIMIT 1")
        .await
        .iter()
        .next()
        .expect("a row");
    let one = app
        .get_json(&format!("/ogc/collections/detections/items/{id}"))
        .await;
    assert_eq!(one["id"], id);
    assert_eq!(one["type"], "Feature");
    problem(
        app.get("/ogc/collections/detections/items/999999999").await,
        404,
    )
    .await;
    problem(app.get("/ogc/collections/detections/items/abc").await, 404).await;
    problem(app.get("/ogc/collections/wardrives").await, 404).await;
    for (query, parameter) in [
        ("datetime=last-week", "datetime"),
        ("bbox=1,2,3", "bbox"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
        ("bbox-crs=EPSG:3857", "bbox-crs"),
    ] {
        let body = problem(
            app.get(&format!("/ogc/collections/detections/items?{query}"))
                .await,
            400,
        )
        .await;
        assert_eq!(body["parameter"], parameter, "{query}");
    }
    // Above the maximum page size is the maximum, not an error.
    let page = app
        .get_json("/ogc/collections/detections/items?limit=999999999")
        .await;
    assert_eq!(page["numberReturned"], 300);
}

/// `ogr2ogr` converts `input` (with open options) to GeoJSON; the `id` property of every
/// feature, and the features themselves.
fn gdal_read(app: &TestApp, input: &std::path::Path, open_options: &[&str]) -> Vec<Value> {
    let out = input.with_extension("read.geojson");
    let mut args = vec![
        "-f",
        "GeoJSON",
        out.to_str().expect("path"),
        input.to_str().expect("path"),
    ];
    for o in open_options {
        args.extend(["-oo", o]);
    }
    gdal(app, "ogr2ogr", &args);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("converted")).expect("GeoJSON");
    doc["features"].as_array().expect("features").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs GDAL: feature tool-tests (scripts/test)"
)]
async fn exports_in_every_format_are_read_by_gdal() {
    let app = spawn_app().await;
    load(&app, 500, 11).await;
    let filter = "signal_type=wifi,ble&bbox=13.35,52.49,13.47,52.56";
    let expected = ids_sql(
        &app,
        "SELECT id FROM sigint.signal_detections WHERE signal_type IN ('wifi', 'ble') AND location && ST_MakeEnvelope(13.35, 52.49, 13.47, 52.56, 4326)",
    )
    .await;
    assert!(expected.len() > 100);
    let (one, lon, lat): (i64, f64, f64) = sqlx::query_as(&format!(
        "SELECT id, ST_X(location), ST_Y(location) FROM sigint.signal_detections WHERE id = {}",
        expected.iter().next().expect("an id")
    ))
    .fetch_one(&app.db)
    .await
    .expect("row");
    let dir = tempfile::tempdir().expect("tempdir");
    for (f, media, options) in [
        ("fgb", "application/flatgeobuf", vec![]),
        ("geojsonseq", "application/geo+json-seq", vec![]),
        ("geojson", "application/geo+json", vec![]),
        ("kml", "application/vnd.google-earth.kml+xml", vec![]),
        (
            "csv",
            "text/csv; charset=utf-8",
            vec![
                "X_POSSIBLE_NAMES=longitude",
                "Y_POSSIBLE_NAMES=latitude",
                "AUTODETECT_TYPE=YES",
            ],
        ),
    ] {
        let resp = app.get(&format!("/api/v1/detections?f={f}&{filter}")).await;
        assert_eq!(resp.status(), 200, "{f}");
        assert_eq!(resp.headers()["content-type"], media);
        assert!(resp.headers()["content-disposition"]
            .to_str()
            .expect("disposition")
            .starts_with("attachment"));
        let path = dir.path().join(format!("export.{f}"));
        std::fs::write(&path, resp.bytes().await.expect("body")).expect("write");
        let features = gdal_read(&app, &path, &options);
        let ids: BTreeSet<i64> = features
            .iter()
            .map(|f| f["properties"]["id"].as_i64().expect("integer id property"))
            .collect();
        assert_eq!(ids, expected, "{f}");
        let feature = features
            .iter()
            .find(|x| x["properties"]["id"] == one)
            .expect("the feature");
        let c = &feature["geometry"]["coordinates"];
        assert!(
            (c[0].as_f64().expect("x") - lon).abs() < 1e-7
                && (c[1].as_f64().expect("y") - lat).abs() < 1e-7,
            "{f}: {c}"
        );
        assert!(
            ["wifi", "ble"].contains(&feature["properties"]["signal_type"].as_str().expect("type")),
            "{f}"
        );
    }
    // By Accept instead of `f`; a wrong `f` is a 400 naming it.
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/detections?{filter}")))
        .header("accept", "application/flatgeobuf")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.headers()["content-type"], "application/flatgeobuf");
    assert_eq!(&resp.bytes().await.expect("body")[..3], b"fgb");
    let body = problem(app.get("/api/v1/detections?f=shp").await, 400).await;
    assert_eq!(body["parameter"], "f");
}

/// 500,000 rows exported by the real binary as FlatGeobuf: the server's peak memory stays flat
/// (the rows held at once would be hundreds of MiB), and GDAL counts every row in the file.
/// (Every format shares the streaming path; the small test above reads each one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs GDAL: feature tool-tests (scripts/test)"
)]
async fn half_a_million_rows_export_in_bounded_memory() {
    use futures_util::StreamExt;
    let url = crate::helpers::fresh_database().await.app_url();
    // The registry would spend both cores folding the rows; it has nothing to do with exports.
    let serve = crate::helpers::ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__REGISTRY__ENABLED", "false"),
        ],
        None,
    );
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    // 5,000 detections through the API (which makes their partitions), each then copied 99
    // times in SQL a microsecond apart.
    for seed in 0..5 {
        let resp = client
            .post(serve.url("/api/v1/detections"))
            .json(&Value::Array(mixed_batch(1000, 100 + seed)))
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), 201);
    }
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    hundredfold(&pool).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(total, 500_000);
    let mib = |b: u64| b / (1024 * 1024);
    let before = serve.peak_rss_bytes();
    let started = std::time::Instant::now();
    // FlatGeobuf: to a file, which GDAL reads and counts.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("all.fgb");
    let mut file = std::fs::File::create(&path).expect("file");
    let resp = client
        .get(serve.url("/api/v1/detections?f=fgb"))
        .timeout(std::time::Duration::from_secs(900))
        .send()
        .await
        .expect("GET fgb");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        std::io::Write::write_all(&mut file, &chunk.expect("chunk")).expect("write");
    }
    drop(file);
    let after = serve.peak_rss_bytes();
    eprintln!(
        "export of 500k rows as FlatGeobuf: {:.1} s; peak RSS {} MiB before, {} MiB after; {} MiB file",
        started.elapsed().as_secs_f64(),
        mib(before),
        mib(after),
        mib(std::fs::metadata(&path).expect("size").len())
    );
    assert!(
        after.saturating_sub(before) < 48 * 1024 * 1024,
        "peak memory grew with the export: {} -> {} MiB",
        mib(before),
        mib(after)
    );
    let out = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("ogrinfo")
            .args(["-ro", "-so", "-al", path.to_str().expect("path")])
            .output()
            .expect("ogrinfo runs");
        drop(dir);
        out
    })
    .await
    .expect("join");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("Feature Count: 500000"), "{info}");
    pool.close().await;
}

/// A page test script from tests/support run by node against the page (headless Chromium via
/// npm puppeteer-core, installed by scripts/test into target/tools); its JSON report.
pub(crate) async fn page_script(script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let script = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .args(&args)
            .envs(env)
            .env(
                "TOOLS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools"),
            )
            .output()
            .expect("node runs (scripts/test installs puppeteer-core and pngjs)")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "page script failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("report")
}

/// The page script finished, and the browser complained of nothing on this server.
pub(crate) fn assert_page_clean(report: &Value) {
    assert!(report.get("failure").is_none(), "{report}");
    assert_eq!(
        report["problems"],
        json!([]),
        "the browser complained: {report}"
    );
}

/// map_check.mjs's ZOOM3: Madrid's land and the Atlantic, no detections near either.
pub(crate) const ZOOM3_MADRID_AND_THE_ATLANTIC: &str =
    r#"{"center": [-10, 45], "land": [-3.7, 40.4], "sea": [-20, 45]}"#;

/// map_check.mjs saw features drawn at every known place, each in the open strip between the
/// panels (the page framed the data).
pub(crate) fn assert_drawn_in_the_open(report: &Value) {
    let free = |i: usize| report["free"][i].as_f64().expect("panel edge") as i64;
    for p in report["points"].as_array().expect("points") {
        let x = p["pixel"][0].as_i64().expect("x");
        assert!(
            x > free(0) && x < free(1),
            "a known place is under a panel or off the map: {report}"
        );
        assert_eq!(p["drawn"], true, "nothing drawn at a detection: {report}");
    }
}

/// map_check.mjs's zoom 3 screenshot: the offline basemap's land and sea are visibly apart.
pub(crate) fn assert_land_and_sea_differ(report: &Value) {
    let rgb = |which: &str| -> Vec<i64> {
        report["zoom3"][which]
            .as_array()
            .expect("colour")
            .iter()
            .map(|c| c.as_i64().expect("channel"))
            .collect()
    };
    let (land, sea) = (rgb("land"), rgb("sea"));
    let difference: i64 = land.iter().zip(&sea).map(|(a, b)| (a - b).abs()).sum();
    assert!(
        difference > 60,
        "land and sea look alike at zoom 3: {report}"
    );
}

/// threats_check.mjs found the threat listed in words and its track drawn at every place.
pub(crate) fn assert_listed_with_its_track(report: &Value) {
    assert!(
        report["listed"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Seen with this capture device")),
        "{report}"
    );
    let places = report["places"].as_array().expect("places");
    assert!(!places.is_empty(), "{report}");
    assert!(
        places.iter().all(|p| p["drawn"] == true),
        "the track is not drawn at every place: {report}"
    );
}

/// The page at `/` in headless Chromium (Debian `chromium`, driven by npm `puppeteer-core`),
/// offline, with the default settings: it asks for a key, frames the data, draws our tiles
/// with no console errors over the built-in basemap (the online style cannot load), and the
/// screenshot shows features where the detections are (single points, and a dense group drawn
/// as a cell) and land where there are none; at zoom 3 land and sea differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs Chromium and npm puppeteer-core: feature tool-tests (scripts/test)"
)]
async fn the_map_page_draws_detections_in_chromium() {
    let app = spawn_app_with(|s| s.map.tile_max_points = 20).await;
    let now = chrono::Utc::now();
    let at = |i: i64| (now - chrono::Duration::seconds(60 + i)).to_rfc3339();
    let singles = [
        (52.50, 13.33, "wifi"),
        (52.54, 13.45, "ble"),
        (52.47, 13.42, "cellular"),
        (52.56, 13.48, "bluetooth"),
    ];
    let mut batch: Vec<Value> = singles
        .iter()
        .enumerate()
        .map(|(i, (lat, lon, kind))| match *kind {
            "wifi" => json!({"signal_type": "wifi", "bssid": format!("a4:00:00:00:01:{i:02x}"), "ssid": "<b>café</b>",
                              "latitude": lat, "longitude": lon, "detected_at": at(i as i64)}),
            "cellular" => json!({"signal_type": "cellular", "mcc": 262, "mnc": 1, "lac": 7, "cell_id": 99,
                                  "latitude": lat, "longitude": lon, "detected_at": at(i as i64)}),
            other => json!({"signal_type": other, "bt_address": format!("c4:00:00:00:01:{i:02x}"),
                            "latitude": lat, "longitude": lon, "detected_at": at(i as i64)}),
        })
        .collect();
    // 60 detections within 150 m: more than the 20 points a tile may hold.
    for i in 0..60 {
        batch.push(json!({"signal_type": "ble", "bt_address": format!("c4:00:00:00:02:{i:02x}"),
            "latitude": 52.52 + f64::from(i % 8) * 0.0002, "longitude": 13.38 + f64::from(i / 8) * 0.0002,
            "detected_at": at(100 + i64::from(i))}));
    }
    assert_eq!(app.post_json(&Value::Array(batch)).await.status(), 201);

    let points: Vec<[f64; 2]> = singles
        .iter()
        .map(|(lat, lon, _)| [*lon, *lat])
        .chain([[13.3814, 52.5207]])
        .collect();
    let background = [[13.47, 52.49], [13.36, 52.555]];
    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("map.png");
    let url = app.url("/");
    let args = [
        url.as_str(),
        "-",
        &serde_json::to_string(&points).expect("json"),
        &serde_json::to_string(&background).expect("json"),
        shot.to_str().expect("path"),
    ];
    let report = page_script(
        "map_check.mjs",
        &args,
        &[
            ("KEY_TO_TYPE", crate::helpers::TEST_KEY),
            ("ZOOM3", ZOOM3_MADRID_AND_THE_ATLANTIC),
        ],
    )
    .await;
    eprintln!("map page: {report}");
    assert!(
        report.get("failure").is_none(),
        "the page did not finish: {report}"
    );
    assert_eq!(report["asked_for_key"], true, "{report}");
    assert_eq!(
        report["problems"],
        json!([]),
        "the browser complained: {report}"
    );
    assert!(
        report["rendered"].as_i64().expect("rendered") >= 5,
        "{report}"
    );
    assert_drawn_in_the_open(&report);
    for p in report["background"].as_array().expect("background") {
        assert_eq!(
            p["drawn"], false,
            "something drawn where there is no data: {report}"
        );
    }
    // The timeline filters the map: an hour ending at the last detection shows everything, a
    // replay of a day without data nothing.
    assert_eq!(report["timeline"]["hour"], report["rendered"], "{report}");
    assert_eq!(report["timeline"]["replay"], 0, "{report}");
    assert!(
        report["timeline"]["label"]
            .as_str()
            .is_some_and(|l| l.starts_with("Jan 1")),
        "{report}"
    );
    // Offline, the default online style could not load: the built-in basemap is drawn.
    assert_eq!(report["basemap"], "offline", "{report}");
    assert_land_and_sea_differ(&report);
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
    // To look at it: SHADOWCHECK_MAP_SCREENSHOT=/some/file.png cargo test the_map_page
    if let Ok(keep) = std::env::var("SHADOWCHECK_MAP_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("copy screenshot");
        let z3 = |p: &str| p.replace(".png", "-z3.png");
        std::fs::copy(z3(shot.to_str().expect("path")), z3(&keep)).expect("copy zoom-3 screenshot");
    }
}

/// An app under the production read budget (not the tests' unlimited one) holding 100,000
/// detections, for the GIS clients' copies.
async fn app_with_100k_detections(seed: u64) -> TestApp {
    let app = spawn_app_with(|s| s.rate_limit.enabled = true).await;
    load(&app, 1_000, seed).await;
    hundredfold(&app.db).await;
    app
}

/// A GIS client with its defaults (GDAL 3.6 asks for 10 features a page) copies a large
/// collection through the OGC API without being cut off by the read budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs GDAL: feature tool-tests (scripts/test)"
)]
async fn gdal_copies_100k_features_with_default_settings() {
    let app = app_with_100k_detections(23).await;
    let source = format!("OAPIF:http://{}/ogc", app.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("all.geojsonl");
    let started = std::time::Instant::now();
    gdal(
        &app,
        "ogr2ogr",
        &[
            "-f",
            "GeoJSONSeq",
            out.to_str().expect("path"),
            &source,
            "detections",
        ],
    );
    let copied = std::fs::read_to_string(&out)
        .expect("copy")
        .lines()
        .filter(|l| l.contains("\"Feature\""))
        .count();
    eprintln!(
        "ogr2ogr copied {copied} features in {:?}",
        started.elapsed()
    );
    assert_eq!(copied, 100_000);
}

/// QGIS (3.22, its OAPIF provider with default settings, the key as the basic-auth password)
/// opens the collection and reads every feature, as saving the layer does, under the
/// production read budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs QGIS (Debian python3-qgis): feature tool-tests (scripts/test)"
)]
async fn qgis_copies_the_detections_with_default_settings() {
    let app = app_with_100k_detections(29).await;
    let runtime = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/qgis_copy.py"
        ))
        .args([
            &format!("http://{}/ogc", app.addr),
            "detections",
            crate::helpers::TEST_KEY,
        ])
        .env("QT_QPA_PLATFORM", "offscreen")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .await
        .expect("python3 runs (Debian python3-qgis)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "QGIS failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy: Value = serde_json::from_str(&stdout).expect("qgis_copy.py prints JSON");
    eprintln!(
        "QGIS read {} features in {:?}",
        copy["count"],
        started.elapsed()
    );
    assert_eq!(copy["valid"], true, "{copy}");
    // Every stored row once: as many features as rows, none the same row twice.
    assert_eq!(copy["count"], 100_000, "{}", copy["error"]);
    assert_eq!(copy["distinct"], 100_000);
}

/// An OGC bbox whose west edge is east of its east edge spans the antimeridian (OGC API –
/// Features 1, /req/core/fc-bbox-definition): both sides of the date line, nothing between.
#[tokio::test]
async fn an_ogc_bbox_across_the_antimeridian_finds_both_sides() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let at = |lon: f64, n: u8| {
        json!({"detected_at": now.to_rfc3339(), "latitude": -17.7, "longitude": lon,
               "signal_type": "wifi", "bssid": format!("a4:00:00:00:00:{n:02x}"), "ssid": "fiji"})
    };
    let batch = json!([at(179.9, 1), at(-179.9, 2), at(0.0, 3), at(178.0, 4)]);
    assert_eq!(app.post_json(&batch).await.status(), 201);
    let page = app
        .get_json("/ogc/collections/detections/items?bbox=179,-18,-179,-17")
        .await;
    let mut lons: Vec<f64> = page["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["geometry"]["coordinates"][0].as_f64().expect("lon"))
        .collect();
    lons.sort_by(f64::total_cmp);
    assert_eq!(lons, vec![-179.9, 179.9], "{page}");
    // Equal edges are no box at all.
    problem(
        app.get("/ogc/collections/detections/items?bbox=10,-18,10,-17")
            .await,
        400,
    )
    .await;
}

/// A client that accepts gzip gets the tile gzipped (its own tag, revalidated like the plain
/// one); gunzipped, the third-party decoder reads the same features.
#[tokio::test]
async fn tiles_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read;
    let app = spawn_app().await;
    let (lat, lon) = CENTRES[2];
    load(&app, 300, 31).await;
    let path = tile_path_at(lat, lon);
    let (status, plain_tag, plain) = tile(&app, &path).await;
    assert_eq!(status, 200);
    let get_gzip = |tag: Option<String>| {
        let mut request = app
            .client
            .get(app.url(&path))
            .header("accept-encoding", "gzip, deflate, br");
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        request.send()
    };
    let resp = get_gzip(None).await.expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(resp.headers()["vary"]
        .to_str()
        .expect("vary")
        .contains("Accept-Encoding"));
    let tag = resp.headers()["etag"].to_str().expect("etag").to_owned();
    assert_ne!(Some(&tag), plain_tag.as_ref());
    let body = resp.bytes().await.expect("body");
    assert!(
        body.len() < plain.len(),
        "{} vs {}",
        body.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut unzipped)
        .expect("gunzip");
    assert_eq!(decode(&unzipped), decode(&plain));
    let again = get_gzip(Some(tag)).await.expect("GET");
    assert_eq!(again.status(), 304);
}

/// The threats panel as a person uses it, in headless Chromium, offline: after a day with a
/// tag in the bag is uploaded, the page lists the follower with its explanation in words;
/// clicking it draws its track where it was seen; "This is mine" puts it on the allow-list;
/// the console stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs Chromium and npm puppeteer-core: feature tool-tests (scripts/test)"
)]
async fn the_threats_panel_lists_the_follower_draws_its_track_and_takes_mine() {
    let app = spawn_app().await;
    let s = shadowcheck_scenarios::generate(7, chrono::Utc::now() - chrono::Duration::days(2));
    for chunk in s.detections.chunks(1_000) {
        assert_eq!(app.post_json(&json!(chunk)).await.status(), 201);
    }
    crate::detector::settled(&app).await;
    let follower = s
        .truth
        .iter()
        .find(|t| t.follower && t.certain)
        .expect("the scenario has a follower");
    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("threats.png");
    let pdf = dir.path().join("report.pdf");
    let url = app.url("/");
    let report = page_script(
        "threats_check.mjs",
        &[
            url.as_str(),
            crate::helpers::TEST_KEY,
            &follower.identifier,
            shot.to_str().expect("path"),
            pdf.to_str().expect("path"),
        ],
        &[],
    )
    .await;
    eprintln!("threats panel: {report}");
    assert_page_clean(&report);
    assert_listed_with_its_track(&report);
    // The report: the same words, a row per place, its track attached, printed to a PDF that
    // poppler reads back with the words in it.
    let r = &report["report"];
    assert_eq!(r["errors"], json!([]), "{report}");
    assert_eq!(r["summary"], report["listed"]["summary"]);
    assert_eq!(r["rows"], r["places"]);
    assert!(r["rows"].as_i64().expect("rows") >= 3, "{report}");
    assert!(
        r["geojson_features"].as_i64().expect("features") >= 3,
        "{report}"
    );
    let text = std::process::Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext runs (Debian poppler-utils)");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("Threat report"), "{text}");
    assert!(text.contains("Sightings by place"), "{text}");
    assert!(text.contains(&follower.identifier), "{text}");
    assert!(
        text.contains("It advertises like an Apple Find My tracker"),
        "{text}"
    );
    assert_eq!(report["marked_mine"], true);
    let allowed = app.get_json("/api/v1/allowlist").await;
    assert!(
        allowed.to_string().contains(&follower.identifier),
        "{allowed}"
    );
    if let Ok(keep) = std::env::var("SHADOWCHECK_THREATS_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("copy screenshot");
        std::fs::copy(&pdf, keep.replace(".png", ".pdf")).expect("copy report");
    }
}

/// A page left open hears of a new follower without a reload: with the production timings, the
/// banner shows it within 5 s of the upload that makes it one, and the list holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs Chromium and npm puppeteer-core: feature tool-tests (scripts/test)"
)]
async fn an_open_page_shows_a_new_follower_within_five_seconds() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let url = app.url("/");
    let page = tokio::spawn({
        let ready = ready.to_str().expect("path").to_owned();
        async move {
            page_script(
                "live_check.mjs",
                &[url.as_str(), crate::helpers::TEST_KEY, ready.as_str()],
                &[],
            )
            .await
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the page never connected its event stream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let device = "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a7d";
    let capture = crate::detector::fixless_capture(device, true);
    assert_eq!(app.post_json(&json!(capture)).await.status(), 201);
    let stored_at = chrono::Utc::now().timestamp_millis();
    let report = page.await.expect("join");
    eprintln!("live page: {report}");
    assert_page_clean(&report);
    let after_ms = report["shown_at"].as_i64().expect("shown_at") - stored_at;
    eprintln!("shown {after_ms} ms after the upload was stored");
    assert!(after_ms < 5_000, "{after_ms} ms: {report}");
    assert_eq!(report["threat"]["identifier"], "c0:ff:ee:00:00:01");
    assert!(
        report["banner"]
            .as_str()
            .is_some_and(|b| b.starts_with("New suspicious")),
        "{report}"
    );
    assert_eq!(report["listed"], true);
}

/// A real public PMTiles file (Stamen Toner, z0–3, from protomaps/PMTiles) as the basemap:
/// served by the binary with range requests, no key, and drawn by the page offline.
const TONER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real/pmtiles/stamen_toner_z3.pmtiles"
);

#[tokio::test]
async fn a_pmtiles_basemap_is_served_with_range_requests() {
    let app = spawn_app_with(|s| s.map.pmtiles_path = TONER.into()).await;
    let config = app.get_json("/map/config.json").await;
    assert_eq!(config["pmtiles"], "/map/basemap.pmtiles");
    let anonymous = reqwest::Client::new();
    let header = anonymous
        .get(app.url("/map/basemap.pmtiles"))
        .header("range", "bytes=0-126")
        .send()
        .await
        .expect("GET");
    assert_eq!(header.status(), 206);
    assert_eq!(header.headers()["content-range"], "bytes 0-126/716052");
    let bytes = header.bytes().await.expect("body");
    assert_eq!(bytes.len(), 127);
    assert_eq!(&bytes[..8], b"PMTiles\x03");
    let whole = anonymous
        .get(app.url("/map/basemap.pmtiles"))
        .send()
        .await
        .expect("GET");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.expect("body").len(), 716_052);
    let none = spawn_app().await;
    problem(none.get("/map/basemap.pmtiles").await, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs Chromium and npm puppeteer-core: feature tool-tests (scripts/test)"
)]
async fn the_page_draws_a_pmtiles_basemap_offline() {
    let app = spawn_app_with(|s| s.map.pmtiles_path = TONER.into()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("pmtiles.png");
    // Zoom 2 over the Atlantic: mid-ocean and the Sahara.
    let url = app.url("/#2/25/-15");
    let report = page_script(
        "basemap_check.mjs",
        &[
            url.as_str(),
            crate::helpers::TEST_KEY,
            "-40,30",
            "10,24",
            shot.to_str().expect("path"),
        ],
        &[],
    )
    .await;
    eprintln!("PMTiles basemap: {report}");
    assert_page_clean(&report);
    assert_eq!(report["basemap"], "pmtiles");
    assert!(
        report["ranges"]
            .as_array()
            .expect("ranges")
            .iter()
            .any(|s| s == 206),
        "the file was not read by ranges: {report}"
    );
    let sum = |which: &str| -> i64 {
        report[which]
            .as_array()
            .expect("rgb")
            .iter()
            .map(|c| c.as_i64().expect("channel"))
            .sum()
    };
    // Toner: black water, white land.
    assert!(sum("sea") < 200, "{report}");
    assert!(sum("land") > 600, "{report}");
    if let Ok(keep) = std::env::var("SHADOWCHECK_PMTILES_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("copy screenshot");
    }
}
