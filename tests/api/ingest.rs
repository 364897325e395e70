use serde_json::{json, Value};

use crate::helpers::{mixed_batch, problem, spawn_app, spawn_app_with};

fn wifi(bssid: &str, at: &str) -> Value {
    json!({"detected_at": at, "latitude": 52.52, "longitude": 13.405, "signal_type": "wifi", "bssid": bssid,
           "device_id": "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a01"})
}

#[tokio::test]
async fn mixed_batch_of_1000_is_stored_with_201() {
    let app = spawn_app().await;
    let batch = mixed_batch(1000, 1);
    let resp = app.post_json(&Value::Array(batch)).await;
    assert_eq!(resp.status(), 201);
    let report: Value = resp.json().await.expect("json");
    assert_eq!(
        report,
        json!({"accepted": 1000, "duplicates": 0, "rejected": 0, "filtered": 0, "errors": []})
    );
    assert_eq!(app.count("true").await, 1000);
    for (kind, n) in [
        ("wifi", 250),
        ("bluetooth", 250),
        ("ble", 250),
        ("cellular", 250),
    ] {
        assert_eq!(
            app.count(&format!("signal_type = '{kind}'")).await,
            n,
            "{kind}"
        );
    }
    // MACs were normalised, tags and raw columns kept.
    assert_eq!(app.count("bssid::text LIKE 'a4:%'").await, 250);
    assert_eq!(
        app.count("tags = ARRAY['beacon', 'randomized-mac']").await,
        250
    );
}

#[tokio::test]
async fn retried_batch_stores_nothing_twice() {
    let app = spawn_app().await;
    let batch = Value::Array(mixed_batch(200, 2));
    assert_eq!(app.post_json(&batch).await.status(), 201);
    let resp = app.post_json(&batch).await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.expect("json");
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["duplicates"], 200);
    assert_eq!(app.count("true").await, 200);
}

#[tokio::test]
async fn a_detection_repeated_in_one_batch_is_stored_once_even_without_a_device() {
    let app = spawn_app().await;
    let mut a = wifi("aa:bb:cc:00:00:01", "2026-01-05T10:00:00Z");
    a.as_object_mut().expect("obj").remove("device_id");
    let b = json!({"detected_at": "2026-01-05T10:00:00.000Z", "latitude": 1.0, "longitude": 1.0,
                   "signal_type": "wifi", "bssid": "AA-BB-CC-00-00-01"});
    let resp = app.post_json(&json!([a, b])).await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.expect("json");
    assert_eq!(
        (report["accepted"].as_u64(), report["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(app.count("true").await, 1);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let app = spawn_app().await;
    let batch = json!([wifi("aa:bb:cc:00:00:02", "2026-02-01T00:00:00Z"), {"bogus": 1}]);
    let send = |body: Value, key: &'static str| {
        let client = app.client.clone();
        let url = app.url("/api/v1/detections");
        async move {
            client
                .post(url)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .expect("send")
        }
    };
    let first = send(batch.clone(), "req-1").await;
    assert_eq!(first.status(), 200);
    let first_body: Value = first.json().await.expect("json");
    assert_eq!(first_body["accepted"], 1);
    let again = send(batch.clone(), "req-1").await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.json::<Value>().await.expect("json"), first_body);
    assert_eq!(app.count("true").await, 1);
    // Same key, different body: refused, nothing stored.
    let other = send(
        json!([wifi("aa:bb:cc:00:00:03", "2026-02-01T00:00:00Z")]),
        "req-1",
    )
    .await;
    let body = problem(other, 409).await;
    assert!(body["detail"]
        .as_str()
        .expect("detail")
        .contains("different body"));
    assert_eq!(app.count("true").await, 1);
    // Malformed key.
    let bad = app
        .client
        .post(app.url("/api/v1/detections"))
        .header("Idempotency-Key", "")
        .json(&batch)
        .send()
        .await
        .expect("send");
    problem(bad, 400).await;
}

#[tokio::test]
async fn a_partly_invalid_batch_stores_the_valid_rows_naming_the_rest() {
    let app = spawn_app().await;
    let batch = json!([
        wifi("aa:bb:cc:00:00:04", "2026-03-01T00:00:00Z"),
        {"detected_at": "2026-03-01T00:00:00Z", "latitude": 91.0, "longitude": 13.0, "signal_type": "wifi", "bssid": "aa:bb:cc:00:00:05"},
        {"detected_at": "not a time", "latitude": 52.0, "longitude": 13.0, "signal_type": "ble", "bt_address": "ff:ff:ff:ff:ff:ff"},
        {"detected_at": "2026-03-01T00:00:00Z", "latitude": 52.0, "longitude": 13.0, "signal_type": "cellular", "mcc": 262, "mnc": 1, "cell_id": 268435456},
        {"detected_at": "2026-03-01T00:00:00Z", "latitude": 52.0, "longitude": 13.0, "signal_type": "wifi", "bssid": "aa:bb:cc:00:00:06", "signal_strength_dbm": 12},
        {"detected_at": "2126-03-01T00:00:00Z", "latitude": 52.0, "longitude": 13.0, "signal_type": "bluetooth", "bt_address": "aa:bb:cc:00:00:07"},
        {"detected_at": "2026-03-01T00:00:00Z", "latitude": 52.0, "longitude": 13.0, "signal_type": "wifi", "bssid": "aa:bb:cc:00:00:08", "ssid": "x".repeat(33)},
        "not an object",
        wifi("aa:bb:cc:00:00:09", "2026-03-01T00:00:01Z"),
    ]);
    let resp = app.post_json(&batch).await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.expect("json");
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"], 7);
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().expect("index"),
                e["field"].as_str().expect("field").to_owned(),
            )
        })
        .collect();
    for expected in [
        (1, "latitude"),
        (2, "detected_at"),
        (2, "bt_address"),
        (3, "cell_id"),
        (4, "signal_strength_dbm"),
        (5, "detected_at"),
        (6, "ssid"),
        (7, ""),
    ] {
        assert!(
            errors.contains(&(expected.0, expected.1.to_owned())),
            "{expected:?} not in {errors:?}"
        );
    }
    assert!(
        errors.iter().all(|(i, _)| ![0, 8].contains(i)),
        "valid items reported: {errors:?}"
    );
    assert_eq!(app.ids("true").await.len(), 2);
}

#[tokio::test]
async fn an_all_invalid_batch_is_422_storing_nothing() {
    let app = spawn_app().await;
    let resp = app
        .post_json(&json!([{"signal_type": "wifi"}, {"latitude": "north"}]))
        .await;
    let body = problem(resp, 422).await;
    let errors = body["errors"].as_array().expect("errors");
    assert!(errors
        .iter()
        .any(|e| e["index"] == 0 && e["field"] == "bssid"));
    assert!(errors
        .iter()
        .any(|e| e["index"] == 1 && e["field"] == "latitude"));
    assert_eq!(app.count("true").await, 0);
    problem(app.post_json(&json!([])).await, 422).await;
}

#[tokio::test]
async fn the_detectors_verdict_sent_by_a_client_is_refused() {
    let app = spawn_app().await;
    let mut item = wifi("aa:bb:cc:00:03:01", "2026-04-01T00:00:00Z");
    item["is_suspicious"] = json!(true);
    item["surveillance_score"] = json!(99);
    let body = problem(app.post_json(&json!([item])).await, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["is_suspicious", "surveillance_score"], "{body}");
    assert_eq!(app.count("true").await, 0);
}

#[tokio::test]
async fn every_documented_body_shape_is_accepted() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json(&wifi("aa:bb:cc:00:01:01", "2026-04-01T00:00:00Z"))
            .await
            .status(),
        201
    );
    let wrapped = json!({"detections": [wifi("aa:bb:cc:00:01:02", "2026-04-01T00:00:00Z")]});
    assert_eq!(app.post_json(&wrapped).await.status(), 201);
    let nd = format!(
        "{}\n{}\r\n{{broken\n\n",
        wifi("aa:bb:cc:00:01:03", "2026-04-01T00:00:00Z"),
        wifi("aa:bb:cc:00:01:04", "2026-04-01T00:00:00Z")
    );
    let resp = app
        .client
        .post(app.url("/api/v1/detections"))
        .header("content-type", "application/x-ndjson")
        .body(nd)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.expect("json");
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(report["errors"][0]["index"], 2);
    assert_eq!(app.count("true").await, 4);
}

#[tokio::test]
async fn bad_requests_get_a_4xx_problem_body() {
    let app = spawn_app_with(|s| {
        s.server.body_limit_bytes = 64 * 1024;
        s.ingest.max_batch_items = 50;
    })
    .await;
    let post = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut req = app.client.post(app.url("/api/v1/detections")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    problem(
        post(Some("application/json"), b"[{\"a\":".to_vec())
            .await
            .expect("send"),
        400,
    )
    .await;
    problem(
        post(Some("application/json"), b"\"just a string\"".to_vec())
            .await
            .expect("send"),
        400,
    )
    .await;
    problem(
        post(Some("text/csv"), b"a,b".to_vec()).await.expect("send"),
        415,
    )
    .await;
    problem(post(None, b"[]".to_vec()).await.expect("send"), 415).await;
    let big = serde_json::to_vec(&mixed_batch(400, 3)).expect("json");
    assert!(big.len() > 64 * 1024);
    problem(
        post(Some("application/json"), big).await.expect("send"),
        413,
    )
    .await;
    let many = serde_json::to_vec(&mixed_batch(51, 3)).expect("json");
    let body = problem(
        post(Some("application/json"), many).await.expect("send"),
        413,
    )
    .await;
    assert!(body["detail"]
        .as_str()
        .expect("detail")
        .contains("limit is 50"));
    // A streamed body without Content-Length is cut at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let streamed = app
        .client
        .post(app.url("/api/v1/detections"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("send");
    problem(streamed, 413).await;
    problem(
        app.client
            .delete(app.url("/api/v1/detections"))
            .send()
            .await
            .expect("send"),
        405,
    )
    .await;
    problem(app.get("/api/v1/nowhere").await, 404).await;
    assert_eq!(app.count("true").await, 0);
}

#[tokio::test]
async fn migrations_create_the_designed_schema() {
    let app = spawn_app().await;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = 'sigint' AND table_name = 'signal_detections' ORDER BY ordinal_position",
    )
    .fetch_all(&app.db)
    .await
    .expect("columns");
    for c in [
        "id",
        "detected_at",
        "capture_duration_ms",
        "location",
        "altitude_meters",
        "accuracy_meters",
        "signal_type",
        "protocol_version",
        "ssid",
        "bssid",
        "channel",
        "frequency_mhz",
        "signal_strength_dbm",
        "bt_address",
        "bt_name",
        "bt_class",
        "bt_rssi",
        "cell_id",
        "lac",
        "mcc",
        "mnc",
        "network_type",
        "device_id",
        "device_name",
        "is_suspicious",
        "surveillance_score",
        "raw_data",
        "tags",
        "created_at",
        "updated_at",
    ] {
        assert!(columns.contains(&c.to_owned()), "missing column {c}");
    }
    // The updated_at trigger fires on every partition.
    app.post_json(&wifi("aa:bb:cc:00:02:01", "2019-06-01T00:00:00Z"))
        .await;
    let (created, updated): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "UPDATE sigint.signal_detections SET is_suspicious = true RETURNING created_at, updated_at",
    )
    .fetch_one(&app.db)
    .await
    .expect("update");
    assert!(updated > created);
    // Old data lives in its own month partition and is dropped by DDL, not DELETE.
    let dropped: Vec<String> =
        sqlx::query_scalar("SELECT sigint.drop_partitions_before('2020-01-01')")
            .fetch_all(&app.db)
            .await
            .expect("drop");
    assert_eq!(dropped, vec!["signal_detections_y2019m06".to_owned()]);
    assert_eq!(app.count("true").await, 0);
    // And ingest for that month works again afterwards.
    assert_eq!(
        app.post_json(&wifi("aa:bb:cc:00:02:01", "2019-06-01T00:00:00Z"))
            .await
            .status(),
        201
    );
    // The last-24-hours view.
    app.post_json(&wifi("aa:bb:cc:00:02:02", &chrono::Utc::now().to_rfc3339()))
        .await;
    let recent: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.recent_detections")
        .fetch_one(&app.db)
        .await
        .expect("view");
    assert_eq!(recent, 1);
}

#[tokio::test]
async fn expired_idempotency_keys_are_purged() {
    let app = spawn_app().await;
    let batch = json!([wifi("aa:bb:cc:00:05:01", "2026-02-01T00:00:00Z")]);
    assert_eq!(post_twice_and_purge_the_old_key(&app, &batch).await, 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM sigint.idempotency_keys")
            .fetch_all(&app.db)
            .await
            .expect("keys");
    assert_eq!(left, vec!["new-key".to_owned()]);
}

/// A late retry with a purged key gets no replay, but the natural key still dedupes.
#[tokio::test]
async fn a_retry_with_a_purged_key_stores_nothing_twice() {
    let app = spawn_app().await;
    let batch = json!([wifi("aa:bb:cc:00:05:01", "2026-02-01T00:00:00Z")]);
    post_twice_and_purge_the_old_key(&app, &batch).await;
    let resp = app
        .client
        .post(app.url("/api/v1/detections"))
        .header("Idempotency-Key", "old-key")
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let report: Value = resp.json().await.expect("json");
    assert_eq!(
        (report["accepted"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(app.count("true").await, 1);
}

/// Posts `batch` under `old-key` and `new-key`, ages `old-key` past a day and purges keys older
/// than 24 h: how many were purged.
async fn post_twice_and_purge_the_old_key(app: &crate::helpers::TestApp, batch: &Value) -> u64 {
    for key in ["old-key", "new-key"] {
        let resp = app
            .client
            .post(app.url("/api/v1/detections"))
            .header("Idempotency-Key", key)
            .json(batch)
            .send()
            .await
            .expect("send");
        assert!(resp.status().is_success());
    }
    sqlx::query("UPDATE sigint.idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'old-key'")
        .execute(&app.db)
        .await
        .expect("age");
    let pool = shadowcheck::db::Pool::new(
        app.db.clone(),
        &shadowcheck::config::Settings::default().database,
    );
    shadowcheck::db::idempotency::purge(&pool, 24)
        .await
        .expect("purge")
}

/// Large bodies take turns (one at a time here) instead of being refused or lost, and one
/// oversized item is refused alone, unparsed, while the rest of its batch is stored.
#[tokio::test]
async fn large_bodies_take_turns() {
    let app = app_with_one_large_body_turn().await;
    let posts = (0..4u64).map(|i| {
        let app = &app;
        async move {
            let resp = app.post_json(&Value::Array(mixed_batch(150, 40 + i))).await;
            let status = resp.status().as_u16();
            let report: Value = resp.json().await.expect("report");
            (status, report)
        }
    });
    let mut accepted = 0;
    for (status, report) in futures_util::future::join_all(posts).await {
        assert!(status == 200 || status == 201, "{status}: {report}");
        accepted += report["accepted"].as_i64().expect("accepted");
    }
    assert!(accepted > 0);
    assert_eq!(app.count("true").await, accepted);
}

#[tokio::test]
async fn an_oversized_item_is_refused_alone() {
    let app = app_with_one_large_body_turn().await;
    let mut batch = mixed_batch(2, 99);
    batch[1]["raw_data"] = json!({"pad": "x".repeat(300 * 1024)});
    let resp = app.post_json(&Value::Array(batch)).await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.expect("report");
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    assert_eq!(report["errors"][0]["index"], 1, "{report}");
    assert!(
        report["errors"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("limit is 262144")),
        "{report}"
    );
}

/// Bodies over 1 KiB are large, and one at a time may be read; the key's share of the pool
/// admits four at once, so only the body turns serialise them.
async fn app_with_one_large_body_turn() -> crate::helpers::TestApp {
    spawn_app_with(|s| {
        s.server.max_large_bodies = 1;
        s.server.large_body_bytes = 1024;
        s.database.max_connections = 10;
        s.database.max_connections_per_key = 5;
    })
    .await
}

/// A capture without a fix (no coordinates, or 0,0) is stored without a position: it is in the
/// stats and in searches without an area, as a feature without geometry, and in no spatial
/// search.
#[tokio::test]
async fn a_detection_without_a_fix_is_stored_off_the_map() {
    let app = spawn_app().await;
    let mut missing = wifi("aa:bb:cc:00:06:01", "2026-04-01T00:00:00Z");
    let o = missing.as_object_mut().expect("object");
    o.remove("latitude");
    o.remove("longitude");
    let mut zero = wifi("aa:bb:cc:00:06:02", "2026-04-01T00:00:00Z");
    zero["latitude"] = json!(0.0);
    zero["longitude"] = json!(0.0);
    assert_eq!(app.post_json(&json!([missing, zero])).await.status(), 201);
    let all = app.get_json("/api/v1/detections").await;
    let features = all["features"].as_array().expect("features");
    assert_eq!(features.len(), 2);
    for f in features {
        assert_eq!(f["geometry"], Value::Null, "{f}");
        assert!(f["properties"]["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "no-fix")));
    }
    // No tile key either, so no tile's cells count them.
    assert_eq!(
        app.count_sql("SELECT count(*) FROM sigint.signal_detections WHERE tile_key IS NOT NULL")
            .await,
        0
    );
    let boxed = app.get_json("/api/v1/detections?bbox=-1,-1,1,1").await;
    assert_eq!(boxed["numberReturned"], 0, "{boxed}");
    let near = app
        .get_json("/api/v1/detections?lat=0&lon=0&nearest=5")
        .await;
    assert_eq!(near["numberReturned"], 0, "{near}");
    let stats = app.get_json("/api/v1/stats").await;
    assert_eq!(stats["total"], 2);
}

#[tokio::test]
async fn half_a_position_is_refused() {
    let app = spawn_app().await;
    let mut half = wifi("aa:bb:cc:00:06:03", "2026-04-01T00:00:00Z");
    half.as_object_mut().expect("object").remove("longitude");
    let body = problem(app.post_json(&json!([half])).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "longitude", "{body}");
}
