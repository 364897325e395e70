use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{mixed_batch, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_liveness_probes_answer_200() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/health",
        "/api/v1/health/live",
        "/api/v1/health/startup",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn readiness_reports_each_dependency() {
    let app = spawn_app().await;
    let ready = app.get("/api/v1/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["migrations"]["status"], "ok");
}

#[tokio::test]
async fn detailed_health_describes_the_process_without_secrets() {
    let app = spawn_app().await;
    let detailed: Value = app.get_json("/api/v1/health/detailed").await;
    assert_eq!(detailed["status"], "ok");
    assert_eq!(detailed["database"]["status"], "ok");
    assert_eq!(detailed["pool"]["max"], 4);
    assert!(detailed["memory"]["resident_bytes"].as_u64().expect("rss") > 1_000_000);
    assert_eq!(detailed["exporters"]["loki"]["enabled"], false);
    assert!(detailed["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(
        !detailed.to_string().contains("postgres://"),
        "detailed health leaks the database URL"
    );
}

/// Labelled by route template, never by the raw path (a client cannot mint label values).
#[tokio::test]
async fn metrics_label_requests_by_route_template() {
    let app = spawn_app().await;
    assert_eq!(app.get("/api/v1/detections/424242").await.status(), 404);
    let metrics = crate::probes::scrape(&app.metrics_addr).await;
    assert!(
        metrics.contains(r#"route="/api/v1/detections/{id}""#),
        "{metrics}"
    );
    // A path, not the bare number: a byte count or a sum may contain those digits by chance.
    assert!(!metrics.contains("/api/v1/detections/424242"), "{metrics}");
}

#[tokio::test]
async fn shutdown_commits_an_in_flight_ingest_before_exiting() {
    let app = spawn_app_with(|s| s.server.drain_timeout_secs = 30).await;
    // Hold a lock the ingest needs, so the request is provably inside the handler when the
    // shutdown starts.
    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE sigint.idempotency_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let request = app
        .client
        .post(app.url("/api/v1/detections"))
        .header("Idempotency-Key", "drain-1")
        .json(&Value::Array(mixed_batch(500, 11)));
    let in_flight = tokio::spawn(request.send());
    app.wait_for_lock_waiter("the ingest").await;
    app.lifecycle.begin_shutdown();
    // New connections are refused once draining has begun.
    let refused_deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(app.addr).await.is_ok() {
        assert!(
            Instant::now() < refused_deadline,
            "listener still accepting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    blocker.commit().await.expect("release");
    let resp = in_flight
        .await
        .expect("join")
        .expect("in-flight request completed");
    assert_eq!(resp.status(), 201);
    let stored = app.count("true").await;
    app.server.await.expect("join").expect("clean drain");
    assert_eq!(stored, 500);
}
