use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{mixed_batch, problem, spawn_app, TestApp, DEVICES};

async fn loaded_app() -> TestApp {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json(&Value::Array(mixed_batch(1000, 7)))
            .await
            .status(),
        201
    );
    app
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn filters_match_sql_exactly() {
    let app = loaded_app().await;
    let now = chrono::Utc::now();
    let start =
        (now - chrono::Duration::days(20)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end = (now - chrono::Duration::days(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let one_bssid: String = sqlx::query_scalar("SELECT bssid::text FROM sigint.signal_detections WHERE bssid IS NOT NULL ORDER BY id LIMIT 1")
        .fetch_one(&app.db).await.expect("bssid");
    let one_bt: String = sqlx::query_scalar("SELECT bt_address::text FROM sigint.signal_detections WHERE bt_address IS NOT NULL ORDER BY id LIMIT 1")
        .fetch_one(&app.db).await.expect("bt");
    // Verdicts and scores are the detector's to write (clients cannot send them); a spread of
    // them here for `is_suspicious` and `min_score`.
    sqlx::query(
        "UPDATE sigint.signal_detections SET surveillance_score = id % 100, \
         is_suspicious = (id % 17 = 0) WHERE id % 3 = 0 OR id % 17 = 0",
    )
    .execute(&app.db)
    .await
    .expect("scores");
    let enc = |s: &str| s.replace(':', "%3A").replace('+', "%2B");
    let cases: Vec<(String, String)> = vec![
        ("bbox=13.38,52.50,13.43,52.54".into(),
         "ST_Intersects(location, ST_MakeEnvelope(13.38,52.50,13.43,52.54,4326))".into()),
        ("lat=52.52&lon=13.405&radius_m=800".into(),
         "ST_Distance(location::geography, ST_SetSRID(ST_MakePoint(13.405,52.52),4326)::geography) <= 800".into()),
        ("lat=52.50&lon=13.30&radius_m=2000".into(),
         "ST_Distance(location::geography, ST_SetSRID(ST_MakePoint(13.30,52.50),4326)::geography) <= 2000".into()),
        (format!("start={}&end={}", enc(&start), enc(&end)),
         format!("detected_at >= '{start}' AND detected_at < '{end}'")),
        (format!("bbox=13.38,52.50,13.43,52.54&start={}", enc(&start)),
         format!("location && ST_MakeEnvelope(13.38,52.50,13.43,52.54,4326) AND detected_at >= '{start}'")),
        ("signal_type=wifi".into(), "signal_type = 'wifi'".into()),
        ("signal_type=ble,cellular".into(), "signal_type IN ('ble','cellular')".into()),
        (format!("bssid={}", enc(&one_bssid.to_uppercase())), format!("bssid = '{one_bssid}'")),
        (format!("bt_address={}", enc(&one_bt)), format!("bt_address = '{one_bt}'")),
        ("ssid=ET-1".into(), "ssid ILIKE '%et-1%'".into()),
        (format!("device_id={}", DEVICES[1]), format!("device_id = '{}'", DEVICES[1])),
        ("is_suspicious=true".into(), "is_suspicious".into()),
        ("is_suspicious=false".into(), "NOT is_suspicious".into()),
        ("min_signal_dbm=-60".into(), "COALESCE(signal_strength_dbm, bt_rssi) >= -60".into()),
        ("min_score=70".into(), "surveillance_score >= 70".into()),
        ("signal_type=wifi&min_signal_dbm=-50&bbox=13.2,52.4,13.6,52.6".into(),
         "signal_type = 'wifi' AND signal_strength_dbm >= -50 AND location && ST_MakeEnvelope(13.2,52.4,13.6,52.6,4326)".into()),
    ];
    for (query, sql) in cases {
        let expected = app.ids(&sql).await;
        assert!(!expected.is_empty(), "fixture gives no rows for {sql}");
        let (got, _) = app
            .all_ids(&format!("/api/v1/detections?{query}&limit=10000"))
            .await;
        assert_eq!(sorted(got), expected, "{query}");
    }
}

#[tokio::test]
async fn paging_visits_every_row_once_even_with_concurrent_inserts() {
    let app = loaded_app().await;
    let expected = app.ids("signal_type <> 'cellular'").await;
    let mut seen = Vec::new();
    let mut next = Some("/api/v1/detections?signal_type=wifi,bluetooth,ble&limit=70".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let body: Value = app.get(&path).await.json().await.expect("json");
        pages += 1;
        seen.extend(
            body["features"]
                .as_array()
                .expect("features")
                .iter()
                .map(|f| f["id"].as_i64().expect("id")),
        );
        next = body["links"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().expect("href").to_owned());
        if pages == 3 {
            // New rows arriving mid-walk must not shift or repeat what is being paged.
            assert_eq!(
                app.post_json(&Value::Array(mixed_batch(40, 99)))
                    .await
                    .status(),
                201
            );
        }
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row was visited twice");
    for id in &expected {
        assert!(unique.contains(id), "row {id} never visited");
    }
    assert!(pages >= 750 / 70);
}

/// A box page is read by walking the id index while the walk finds enough of the box, and from
/// the box's tile key ranges once it shows the box too sparse for walking; either way, and
/// across pages that change way, paging visits every row in the box once, in id order.
#[tokio::test]
async fn box_pages_visit_every_row_once_in_id_order_whether_walked_or_read_by_key() {
    let app = spawn_app().await;
    let into_box = |mut item: Value, i: usize| {
        item["latitude"] = json!(52.36 + 0.000_1 * (i % 500) as f64);
        item["longitude"] = json!(13.02 + 0.000_1 * (i % 500) as f64);
        item
    };
    // Thousands of rows, one in a hundred of them in the box (a short page is walked on from where
    // the first walk stopped; a long one is too sparse to walk), then a few hundred in the box.
    let first: Vec<Value> = mixed_batch(2_500, 21)
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if i % 100 == 0 {
                into_box(item, i)
            } else {
                item
            }
        })
        .collect();
    assert_eq!(app.post_json(&Value::Array(first)).await.status(), 201);
    let last: Vec<Value> = mixed_batch(300, 22)
        .into_iter()
        .enumerate()
        .map(|(i, item)| into_box(item, 2_500 + i))
        .collect();
    assert_eq!(app.post_json(&Value::Array(last)).await.status(), 201);
    let bbox = "13.0,52.35,13.1,52.43";
    let expected = app
        .ids("location && ST_MakeEnvelope(13.0,52.35,13.1,52.43,4326)")
        .await;
    assert_eq!(expected.len(), 25 + 300);
    let metrics = crate::probes::scrape(&app.metrics_addr).await;
    let by_key = |m: &str| {
        crate::probes::metric_sum(
            m,
            "shadowcheck_db_query_duration_seconds_count{query=\"search_box_keys\"}",
        )
    };
    let before = by_key(&metrics);
    for path in [
        format!("/api/v1/detections?bbox={bbox}&limit=1000"),
        format!("/api/v1/detections?bbox={bbox}&limit=100"),
        format!("/api/v1/detections?bbox={bbox}&limit=7"),
        format!("/ogc/collections/detections/items?bbox={bbox}&limit=100"),
    ] {
        let (got, _) = app.all_ids(&path).await;
        assert_eq!(got, expected, "{path}");
    }
    // The pages did take the key ranges (the walk alone would give the same answer, slower).
    let after = by_key(&crate::probes::scrape(&app.metrics_addr).await);
    assert!(after > before, "key ranges read: {before} -> {after}");
}

#[tokio::test]
async fn nearest_is_exact_geodesic_order() {
    let app = loaded_app().await;
    for (lat, lon, n) in [(52.52, 13.405, 10), (52.505, 13.31, 25), (52.60, 13.50, 3)] {
        let expected: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM sigint.signal_detections
             ORDER BY ST_Distance(location::geography, ST_SetSRID(ST_MakePoint({lon},{lat}),4326)::geography), id LIMIT {n}"
        ))
        .fetch_all(&app.db)
        .await
        .expect("truth");
        let body: Value = app
            .get(&format!(
                "/api/v1/detections?lat={lat}&lon={lon}&nearest={n}"
            ))
            .await
            .json()
            .await
            .expect("json");
        let features = body["features"].as_array().expect("features");
        let got: Vec<i64> = features
            .iter()
            .map(|f| f["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(got, expected, "nearest {n} to {lat},{lon}");
        let distances: Vec<f64> = features
            .iter()
            .map(|f| f["properties"]["distance_m"].as_f64().expect("distance"))
            .collect();
        assert!(distances.windows(2).all(|w| w[0] <= w[1]));
        assert!(!body["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["rel"] == "next"));
    }
    // Combined with a filter.
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM sigint.signal_detections WHERE signal_type = 'ble'
         ORDER BY ST_Distance(location::geography, ST_SetSRID(ST_MakePoint(13.4,52.52),4326)::geography), id LIMIT 5",
    )
    .fetch_all(&app.db)
    .await
    .expect("truth");
    let body: Value = app
        .get("/api/v1/detections?lat=52.52&lon=13.4&nearest=5&signal_type=ble")
        .await
        .json()
        .await
        .expect("json");
    let got: Vec<i64> = body["features"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| f["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_search_answers_a_geojson_feature_collection_with_every_field() {
    let app = app_with_one_detailed_detection().await;
    let resp = app.get("/api/v1/detections").await;
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/geo+json")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["type"], "FeatureCollection");
    assert_eq!(body["numberReturned"], 1);
    let f = &body["features"][0];
    assert_eq!(f["type"], "Feature");
    assert_eq!(
        f["geometry"],
        json!({"type": "Point", "coordinates": [13.405, 52.52]})
    );
    let p = &f["properties"];
    assert_eq!(p["bssid"], "a4:00:00:00:00:01");
    assert_eq!(p["ssid"], "Café ☕");
    assert_eq!(p["detected_at"], "2026-05-01T12:00:00.250Z");
    assert_eq!(p["raw_data"], json!({"auth": "WPA2"}));
    assert_eq!(p["tags"], json!(["home"]));
    assert_eq!(p["signal_type"], "wifi");
}

#[tokio::test]
async fn one_detection_by_id_is_the_same_feature_as_in_a_search() {
    let app = app_with_one_detailed_detection().await;
    let body = app.get_json("/api/v1/detections").await;
    let f = &body["features"][0];
    let id = f["id"].as_i64().expect("id");
    let one: Value = app
        .get(&format!("/api/v1/detections/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["type"], "Feature");
    assert_eq!(one["properties"], f["properties"]);
    problem(app.get("/api/v1/detections/999999").await, 404).await;
    problem(app.get("/api/v1/detections/abc").await, 400).await;
}

#[tokio::test]
async fn stats_summarise_what_is_stored() {
    let app = app_with_one_detailed_detection().await;
    let stats: Value = app.get("/api/v1/stats").await.json().await.expect("json");
    assert_eq!(stats["total"], 1);
    assert_eq!(
        stats["by_signal_type"],
        json!({"wifi": 1, "bluetooth": 0, "ble": 0, "cellular": 0})
    );
    assert_eq!(stats["extent"], json!([13.405, 52.52, 13.405, 52.52]));
    assert_eq!(stats["first_detected_at"], "2026-05-01T12:00:00.250Z");
}

/// An app holding one wifi detection with every optional field a client may send.
async fn app_with_one_detailed_detection() -> crate::helpers::TestApp {
    let app = spawn_app().await;
    let item = json!({"detected_at": "2026-05-01T12:00:00.250Z", "latitude": 52.52, "longitude": 13.405,
        "altitude_meters": 40.5, "accuracy_meters": 5.0, "signal_type": "wifi", "bssid": "A4:00:00:00:00:01",
        "ssid": "Café ☕", "channel": 36, "frequency_mhz": 5180, "signal_strength_dbm": -61,
        "device_id": DEVICES[0], "device_name": "pixel", "raw_data": {"auth": "WPA2"},
        "tags": ["home"], "protocol_version": "802.11ax", "capture_duration_ms": 120});
    assert_eq!(app.post_json(&item).await.status(), 201);
    app
}

#[tokio::test]
async fn invalid_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, param) in [
        ("bbox=13,52,12,53", "bbox"),
        ("bbox=a,b,c,d", "bbox"),
        ("lat=52&lon=200&radius_m=10", "lon"),
        ("lat=52&lon=13", "radius_m"),
        ("lat=52&lon=13&radius_m=0", "radius_m"),
        ("nearest=3", "nearest"),
        ("start=2026-13-01", "start"),
        ("start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z", "end"),
        ("limit=0", "limit"),
        ("limit=20000", "limit"),
        ("signal_type=zigbee", "signal_type"),
        ("bssid=00:00:00:00:00:00", "bssid"),
        ("bt_address=nope", "bt_address"),
        ("device_id=1", "device_id"),
        ("is_suspicious=yes", "is_suspicious"),
        ("min_signal_dbm=loud", "min_signal_dbm"),
        ("after=x", "after"),
        ("colour=red", "colour"),
        ("lat=52&lon=13&nearest=5&after=3", "after"),
    ] {
        let body = problem(app.get(&format!("/api/v1/detections?{query}")).await, 400).await;
        assert_eq!(body["parameter"], param, "{query}: {body}");
        assert!(body["detail"].as_str().expect("detail").contains(param));
    }
}

#[tokio::test]
async fn point_searches_are_exact_wherever_the_point_is() {
    let app = spawn_app().await;
    let mut items = Vec::new();
    for (i, (lat, lon)) in [
        (0.0, 179.995),
        (0.0, -179.995),
        (0.001, -179.99),
        (0.0, 179.9),
        (0.0, -179.9),
        (89.995, 0.0),
        (89.995, 180.0),
        (89.99, -90.0),
        (89.9, 45.0),
        (-89.995, 120.0),
        (-89.995, -60.0),
    ]
    .into_iter()
    .enumerate()
    {
        items.push(
            json!({"detected_at": "2026-03-01T10:00:00Z", "latitude": lat, "longitude": lon,
                          "signal_type": "ble", "bt_address": format!("c2:00:00:00:00:{i:02x}")}),
        );
    }
    assert_eq!(app.post_json(&Value::Array(items)).await.status(), 201);
    for (lat, lon, radius, n) in [
        (0.0, 179.999, 2_000.0, 3),
        (0.0, -179.999, 12_000.0, 4),
        (89.999, 90.0, 2_000.0, 3),
        (90.0, 0.0, 12_000.0, 5),
        (-89.999, 0.0, 2_000.0, 2),
    ] {
        let point = format!("ST_SetSRID(ST_MakePoint({lon},{lat}),4326)::geography");
        let within: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM sigint.signal_detections WHERE ST_DWithin(location::geography, {point}, {radius}) ORDER BY id"
        ))
        .fetch_all(&app.db)
        .await
        .expect("truth");
        assert!(!within.is_empty(), "{lat},{lon}: the case tests nothing");
        let (got, _) = app
            .all_ids(&format!(
                "/api/v1/detections?lat={lat}&lon={lon}&radius_m={radius}"
            ))
            .await;
        assert_eq!(got, within, "radius {radius} m around {lat},{lon}");
        let nearest: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM sigint.signal_detections ORDER BY ST_Distance(location::geography, {point}), id LIMIT {n}"
        ))
        .fetch_all(&app.db)
        .await
        .expect("truth");
        let body: Value = app
            .get(&format!(
                "/api/v1/detections?lat={lat}&lon={lon}&nearest={n}"
            ))
            .await
            .json()
            .await
            .expect("json");
        let got: Vec<i64> = body["features"]
            .as_array()
            .expect("features")
            .iter()
            .map(|f| f["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(got, nearest, "nearest {n} to {lat},{lon}");
    }
}

/// A dozen concurrent `nearest` queries at the pole across the antimeridian from one key (the
/// case that once took seconds each and emptied the pool): every answer is the exact nearest
/// set, and the readiness probe answers all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polar_nearest_searches_stay_exact_without_starving_readiness() {
    let app = spawn_app().await;
    // 3,000 transmitters on the polar cap, all longitudes, and the usual mix elsewhere.
    let mut items = Vec::new();
    for i in 0..3_000u32 {
        let lat = 89.0 + f64::from(i % 997) / 1000.0;
        let lon = -180.0 + f64::from((i * 7919) % 3600) / 10.0;
        items.push(json!({"detected_at": "2026-03-01T10:00:00Z", "latitude": lat, "longitude": lon,
                          "signal_type": "ble", "bt_address": format!("c3:00:00:{:02x}:{:02x}:{:02x}", i >> 16, (i >> 8) & 0xff, i & 0xff)}));
    }
    assert_eq!(app.post_json(&Value::Array(items)).await.status(), 201);
    assert_eq!(
        app.post_json(&Value::Array(mixed_batch(2_000, 11)))
            .await
            .status(),
        201
    );
    let (lat, lon, n) = (89.9, 179.9, 5);
    let point = format!("ST_SetSRID(ST_MakePoint({lon},{lat}),4326)::geography");
    let truth: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM sigint.signal_detections ORDER BY ST_Distance(location::geography, {point}), id LIMIT {n}"
    ))
    .fetch_all(&app.db)
    .await
    .expect("truth");
    assert_eq!(truth.len(), n);

    let path = format!("/api/v1/detections?lat={lat}&lon={lon}&nearest={n}");
    let queries = futures_util::future::join_all((0..12).map(|_| async {
        let body: Value = app.get(&path).await.json().await.expect("json");
        body["features"]
            .as_array()
            .expect("features")
            .iter()
            .map(|f| f["id"].as_i64().expect("id"))
            .collect::<Vec<i64>>()
    }));
    let probes = async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(app.get("/api/v1/health/ready").await.status().as_u16());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        statuses
    };
    let (answers, statuses) = tokio::join!(queries, probes);
    for got in answers {
        assert_eq!(got, truth, "nearest {n} to {lat},{lon}");
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "readiness during the queries: {statuses:?}"
    );
}
