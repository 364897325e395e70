//! Monthly partitions are created by the product on demand, so these tests never pre-create one:
//! many creators of the same fresh month race, over SQL and over HTTP, and every one succeeds.

use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::sync::Barrier;

use crate::helpers::{fresh_database, mixed_batch, spawn_app_with};

/// `mixed_batch` moved into one month that no migration created.
fn batch_in_month(n: usize, seed: u64, year: i32, month: u32) -> Vec<Value> {
    mixed_batch(n, seed)
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            let at = format!(
                "{year}-{month:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                1 + (i / 86_400) % 28,
                (i / 3600) % 24,
                (i / 60) % 60,
                i % 60,
                seed % 1000
            );
            item["detected_at"] = json!(at);
            item
        })
        .collect()
}

async fn partitions_of(conn: &mut PgConnection, like: &str) -> Vec<String> {
    sqlx::query_scalar(
        r#"SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'sigint.signal_detections'::regclass AND c.relname LIKE $1
           ORDER BY 1"#,
    )
    .bind(like)
    .fetch_all(conn)
    .await
    .expect("partitions")
}

#[tokio::test]
async fn concurrent_creators_of_fresh_months_all_succeed() {
    let url = fresh_database().await.app_url();
    const CREATORS: usize = 8;
    for round in 0..4u32 {
        // Several fresh months per round, each raced by every creator at once.
        let months: Vec<String> = (1..=3)
            .map(|m| format!("2013-{:02}-01", round * 3 + m))
            .collect();
        let barrier = Arc::new(Barrier::new(CREATORS));
        let mut tasks = Vec::new();
        for creator in 0..CREATORS {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            let months = months.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.expect("connect");
                barrier.wait().await;
                let mut errors = Vec::new();
                for i in 0..months.len() {
                    // Creators walk the months in different orders.
                    let month = &months[(i + creator) % months.len()];
                    let made: Result<String, _> =
                        sqlx::query_scalar("SELECT sigint.ensure_partition($1::date)")
                            .bind(month)
                            .fetch_one(&mut conn)
                            .await;
                    if let Err(e) = made {
                        errors.push(format!("{month}: {e}"));
                    }
                }
                errors
            }));
        }
        let mut errors = Vec::new();
        for task in tasks {
            errors.extend(task.await.expect("join"));
        }
        assert!(errors.is_empty(), "round {round}: {errors:#?}");
    }
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let made = partitions_of(&mut conn, "signal_detections_y2013m%").await;
    assert_eq!(made.len(), 12, "{made:?}");
}

#[tokio::test]
async fn concurrent_batches_into_a_new_month_are_all_committed() {
    let app = spawn_app_with(|s| s.database.max_connections = 8).await;
    const CLIENTS: u64 = 4;
    for (year, month) in [(2019, 3), (2019, 4), (2017, 11)] {
        let barrier = Arc::new(Barrier::new(CLIENTS as usize));
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let barrier = Arc::clone(&barrier);
            let http = app.client.clone();
            let url = app.url("/api/v1/detections");
            // Distinct rows per client (the seed picks the millisecond), 1,000 per batch.
            let body = Value::Array(batch_in_month(1000, client + 1, year, month));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let resp = http.post(url).json(&body).send().await.expect("POST");
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            }));
        }
        for task in tasks {
            let (status, body) = task.await.expect("join");
            assert_eq!(status, 201, "{year}-{month:02}: {body}");
        }
        let stored = app
            .count(&format!(
                "detected_at >= '{year}-{month:02}-01' AND detected_at < '{year}-{month:02}-01'::date + interval '1 month'"
            ))
            .await;
        assert_eq!(stored, 4000, "{year}-{month:02}");
    }
    // Every month the product made keeps the fine `location` histogram (a statistics target
    // LIKE does not copy), so the planner sees how much of a city box matches.
    let targets: Vec<(String, i32)> = sqlx::query_as(
        r#"SELECT c.relname::text, a.attstattarget::int4 FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'location'
           WHERE i.inhparent = 'sigint.signal_detections'::regclass"#,
    )
    .fetch_all(&app.db)
    .await
    .expect("targets");
    assert!(targets
        .iter()
        .any(|(name, _)| name == "signal_detections_y2017m11"));
    assert!(targets.iter().all(|(_, t)| *t == 1000), "{targets:?}");
}

#[tokio::test]
async fn overlapping_batches_in_different_orders_never_fail() {
    // Two devices retrying the same rows in opposite orders must not deadlock each other into
    // a 5xx: every answer is a 2xx and every row is stored once.
    let app = spawn_app_with(|s| s.database.max_connections = 8).await;
    let rows = batch_in_month(600, 7, 2018, 6);
    let mut tasks = Vec::new();
    let barrier = Arc::new(Barrier::new(6));
    for client in 0..6usize {
        let mut body = rows.clone();
        if client % 2 == 1 {
            body.reverse();
        } else {
            body.rotate_left(client * 100);
        }
        let barrier = Arc::clone(&barrier);
        let http = app.client.clone();
        let url = app.url("/api/v1/detections");
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = http
                .post(url)
                .json(&Value::Array(body))
                .send()
                .await
                .expect("POST");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("join");
        assert!(status == 200 || status == 201, "{status}: {body}");
    }
    assert_eq!(
        app.count("detected_at >= '2018-06-01' AND detected_at < '2018-07-01'")
            .await,
        600
    );
}

#[tokio::test]
async fn a_leap_second_is_stored_in_its_own_month() {
    // 2016-12-31T23:59:60 must not be normalised into January, whose partition the batch
    // did not ask for: it is stored as the last microsecond of December.
    let app = spawn_app_with(|_| {}).await;
    let item = json!({"detected_at": "2016-12-31T23:59:60Z", "latitude": 52.52, "longitude": 13.405,
                      "signal_type": "wifi", "bssid": "a4:00:00:00:60:60"});
    let resp = app.post_json(&item).await;
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(
        app.count("detected_at = '2016-12-31T23:59:59.999999Z'")
            .await,
        1
    );
}
