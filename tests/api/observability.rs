//! Metrics, Loki log shipping and OTLP traces, checked on the real binary against local receivers
//! that decode the real wire formats (Loki push: snappy-compressed protobuf; OTLP/HTTP protobuf).
//! No real Loki or collector runs here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::helpers::{fresh_database, ServeProcess};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_SPAN}-01")
}

async fn start(extra: &[(&str, String)]) -> ServeProcess {
    let url = fresh_database().await.app_url();
    let mut env: Vec<(&str, &str)> = vec![("DATABASE_URL", url.as_str())];
    env.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    ServeProcess::start(&env, None)
}

/// Parses Prometheus text exposition into `name{sorted labels}` → value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut pairs: Vec<&str> = labels
                    .trim_end_matches('}')
                    .split("\",")
                    .map(|p| p.trim_end_matches('"'))
                    .collect();
                pairs.sort_unstable();
                format!("{name}{{{}}}", pairs.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value);
    }
    out
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}")).collect();
    pairs.sort_unstable();
    format!("{name}{{{}}}", pairs.join(","))
}

async fn scrape(serve: &ServeProcess) -> HashMap<String, f64> {
    parse_metrics(&crate::probes::scrape(&serve.metrics_addr).await)
}

fn detection(kind: &str, n: u32) -> Value {
    let base = json!({"detected_at": "2026-10-01T12:00:00Z", "latitude": 52.5, "longitude": 13.4});
    let extra = match kind {
        "wifi" => json!({"signal_type": "wifi", "bssid": format!("a4:00:00:00:00:{n:02x}")}),
        "bluetooth" => {
            json!({"signal_type": "bluetooth", "bt_address": format!("b4:00:00:00:00:{n:02x}")})
        }
        "ble" => json!({"signal_type": "ble", "bt_address": format!("c4:00:00:00:00:{n:02x}")}),
        _ => json!({"signal_type": "cellular", "mcc": 262, "mnc": 1, "cell_id": 1000 + n}),
    };
    let mut item = base;
    item.as_object_mut()
        .expect("obj")
        .extend(extra.as_object().expect("obj").clone());
    item
}

#[tokio::test]
async fn metrics_count_a_known_workload_exactly() {
    let serve = start(&[]).await;
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let post = |body: Value| {
        client
            .post(serve.url("/api/v1/detections"))
            .json(&body)
            .send()
    };

    let good: Vec<Value> = [
        "wifi",
        "wifi",
        "bluetooth",
        "bluetooth",
        "ble",
        "ble",
        "cellular",
        "cellular",
    ]
    .iter()
    .enumerate()
    .map(|(i, k)| detection(k, i as u32))
    .collect();
    assert_eq!(
        post(Value::Array(good.clone()))
            .await
            .expect("post")
            .status(),
        201
    );
    assert_eq!(post(Value::Array(good)).await.expect("post").status(), 200);
    let partial = json!([detection("wifi", 100), detection("wifi", 101), detection("wifi", 102),
        {"signal_type": "ble", "detected_at": "2026-10-01T12:00:00Z", "latitude": 1, "longitude": 1},
        {"latitude": 1}]);
    assert_eq!(post(partial).await.expect("post").status(), 200);
    let bad = client
        .post(serve.url("/api/v1/detections"))
        .header("content-type", "application/json")
        .body("[{")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    for _ in 0..2 {
        assert_eq!(
            client
                .get(serve.url("/api/v1/detections/999999"))
                .send()
                .await
                .expect("get")
                .status(),
            404
        );
    }

    let m = scrape(&serve).await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        m.get(&key(name, labels)).copied().unwrap_or(f64::NAN)
    };
    let route = "/api/v1/detections";
    for (status, n) in [("201", 1.0), ("200", 2.0), ("400", 1.0)] {
        let labels = [("method", "POST"), ("route", route), ("status", status)];
        assert_eq!(
            get("shadowcheck_http_requests_total", &labels),
            n,
            "POST {status}"
        );
        assert_eq!(
            get("shadowcheck_http_request_duration_seconds_count", &labels),
            n
        );
        let inf = [
            ("method", "POST"),
            ("route", route),
            ("status", status),
            ("le", "+Inf"),
        ];
        assert_eq!(
            get("shadowcheck_http_request_duration_seconds_bucket", &inf),
            n
        );
    }
    let by_id = [
        ("method", "GET"),
        ("route", "/api/v1/detections/{id}"),
        ("status", "404"),
    ];
    assert_eq!(get("shadowcheck_http_requests_total", &by_id), 2.0);
    for le in ["0.001", "10"] {
        let labels = [
            ("method", "GET"),
            ("route", "/api/v1/detections/{id}"),
            ("status", "404"),
            ("le", le),
        ];
        assert!(
            !get("shadowcheck_http_request_duration_seconds_bucket", &labels).is_nan(),
            "bucket le={le}"
        );
    }
    assert!(
        !m.keys().any(|k| k.contains("999999")),
        "raw path leaked into labels"
    );
    assert_eq!(get("shadowcheck_http_requests_in_flight", &[]), 0.0);

    let ingest = |kind: &str, outcome: &str| {
        get(
            "shadowcheck_ingest_detections_total",
            &[("signal_type", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(ingest("wifi", "accepted"), 5.0);
    assert_eq!(ingest("wifi", "duplicate"), 2.0);
    for kind in ["bluetooth", "ble", "cellular"] {
        assert_eq!(ingest(kind, "accepted"), 2.0, "{kind}");
        assert_eq!(ingest(kind, "duplicate"), 2.0, "{kind}");
    }
    assert_eq!(ingest("ble", "rejected"), 1.0);
    assert_eq!(ingest("unknown", "rejected"), 1.0);
    assert_eq!(get("shadowcheck_ingest_batch_size_count", &[]), 3.0);
    assert_eq!(get("shadowcheck_ingest_batch_size_sum", &[]), 21.0);
    assert_eq!(
        get(
            "shadowcheck_db_query_duration_seconds_count",
            &[("query", "insert_batch")]
        ),
        3.0
    );

    assert_eq!(get("shadowcheck_db_health", &[]), 1.0);
    assert_eq!(
        get("shadowcheck_db_pool_connections", &[("state", "max")]),
        10.0
    );
    assert!(get("shadowcheck_db_pool_connections", &[("state", "idle")]) >= 0.0);
    let build = m
        .iter()
        .find(|(k, _)| k.starts_with("shadowcheck_build_info{"))
        .expect("build_info");
    assert_eq!(*build.1, 1.0);
    assert!(build.0.contains("version=\"0.1.0"));
    assert!(get("process_resident_memory_bytes", &[]) > 1e6);
    assert!(get("process_cpu_seconds_total", &[]) > 0.0);
    assert!(get("process_open_fds", &[]) > 3.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started = get("process_start_time_seconds", &[]);
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "start time {started} vs now {now}"
    );
}

type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A Loki stand-in: decodes real push requests (snappy block + protobuf) into (labels, line).
async fn loki_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = Router::new().route(
        "/loki/api/v1/push",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                use loki_api::prost::Message;
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(&body)
                    .expect("snappy block");
                let push =
                    loki_api::logproto::PushRequest::decode(raw.as_slice()).expect("protobuf");
                let mut sink = sink.lock().expect("lock");
                for stream in push.streams {
                    for entry in stream.entries {
                        assert!(entry.timestamp.is_some());
                        sink.push((stream.labels.clone(), entry.line));
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn logs_reach_loki_with_bounded_labels() {
    let (loki_url, received) = loki_receiver().await;
    let serve = start(&[
        ("SHADOWCHECK__LOKI__URL", loki_url),
        ("SHADOWCHECK__LOKI__ENVIRONMENT", "test".into()),
        ("SHADOWCHECK__LOKI__FLUSH_INTERVAL_MS", "100".into()),
    ])
    .await;
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let resp = client
        .get(serve.url("/api/v1/detections?limit=1"))
        .header("x-request-id", "obs-req-1")
        .header("traceparent", traceparent())
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("obs-req-1")
    );
    let generated = client
        .get(serve.url("/api/v1/health"))
        .send()
        .await
        .expect("get");
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let (labels, line) = loop {
        let found = received
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, line)| line.contains("obs-req-1") && line.contains("shadowcheck::access"))
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "access log never reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Labels: exactly service, environment, level (low cardinality); the rest are fields.
    let mut names: Vec<&str> = labels
        .trim_matches(['{', '}'])
        .split(", ")
        .map(|kv| kv.split('=').next().unwrap_or(""))
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["environment", "level", "service"], "{labels}");
    assert!(
        labels.contains("service=\"shadowcheck\"")
            && labels.contains("environment=\"test\"")
            && labels.contains("level=\"info\""),
        "{labels}"
    );
    let fields: Value = serde_json::from_str(&line).expect("json line");
    assert_eq!(fields["request_id"], "obs-req-1");
    assert_eq!(fields["trace_id"], TRACE_ID);
    assert_eq!(fields["route"], "/api/v1/detections");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["method"], "GET");
    assert!(fields["latency_ms"].as_f64().is_some());
    // The client (no trusted proxy here: the peer itself) and the peer with its port.
    assert_eq!(fields["client_addr"], "127.0.0.1");
    assert!(fields["peer_addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));

    // The same event also went to stdout as JSON.
    assert!(serve
        .log_lines()
        .iter()
        .any(|l| l.contains("obs-req-1") && l.contains("\"status\":200")));
}

/// A TCP server that accepts connections and never answers.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(200) {
            held.push(stream);
        }
    });
    url
}

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("addr"))
}

#[tokio::test]
async fn a_dead_or_silent_loki_costs_requests_nothing() {
    for loki_url in [closed_port(), silent_server()] {
        let serve = start(&[
            ("SHADOWCHECK__LOKI__URL", loki_url.clone()),
            ("SHADOWCHECK__LOKI__QUEUE_CAPACITY", "50".into()),
            ("SHADOWCHECK__LOKI__BATCH_SIZE", "10".into()),
            ("SHADOWCHECK__LOKI__FLUSH_INTERVAL_MS", "50".into()),
            ("SHADOWCHECK__LOKI__TIMEOUT_MS", "300".into()),
        ])
        .await;
        let client = crate::helpers::client();
        serve.wait_ready(&client).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..300 {
            let sent = Instant::now();
            let resp = client
                .get(serve.url("/api/v1/health/live"))
                .send()
                .await
                .expect("get");
            assert_eq!(resp.status(), 200);
            slowest = slowest.max(sent.elapsed());
        }
        // Prompt: a shipping failure never sits in a request's path.
        assert!(
            slowest < Duration::from_secs(2),
            "{loki_url}: slowest request {slowest:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let detailed: Value = client
                .get(serve.url("/api/v1/health/detailed"))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            let loki = &detailed["exporters"]["loki"];
            assert_eq!(loki["enabled"], true);
            assert!(
                loki["queued"].as_u64().expect("queued") <= 50,
                "{loki_url}: queue over its bound: {loki}"
            );
            if loki["failed"].as_u64().unwrap_or(0) > 0 && loki["dropped"].as_u64().unwrap_or(0) > 0
            {
                let error = loki["last_error"].as_str().expect("last_error");
                // Unauthenticated: the exporter's URL (it may carry credentials) is scrubbed.
                let host = loki_url.trim_start_matches("http://");
                assert!(!error.contains(host), "{loki_url} shown: {error}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{loki_url}: failures/drops never counted: {loki}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let m = scrape(&serve).await;
        assert!(
            m.get("shadowcheck_log_shipping_failures_total")
                .copied()
                .unwrap_or(0.0)
                > 0.0
        );
        assert!(
            m.get("shadowcheck_log_events_dropped_total")
                .copied()
                .unwrap_or(0.0)
                > 0.0
        );
        // One warning per outage, not one per retry.
        let warnings = serve
            .log_lines()
            .iter()
            .filter(|l| l.contains("cannot ship logs to Loki"))
            .count();
        assert_eq!(warnings, 1, "{loki_url}");
    }
}

type Spans = Arc<Mutex<Vec<(String, String, String)>>>;

/// An OTLP/HTTP collector stand-in: decodes ExportTraceServiceRequest protobuf into
/// (trace id, parent span id, name).
async fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let sink = Arc::clone(&spans);
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
                use prost::Message;
                let request =
                    ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
                let mut sink = sink.lock().expect("lock");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            let hex =
                                |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                            sink.push((hex(&span.trace_id), hex(&span.parent_span_id), span.name));
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_spans_reach_the_collector_by_exit_under_its_trace_id() {
    let (endpoint, spans) = otlp_receiver().await;
    let mut serve = start(&[("SHADOWCHECK__OTEL__ENDPOINT", endpoint)]).await;
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let resp = client
        .get(serve.url("/api/v1/detections?limit=5"))
        .header("traceparent", traceparent())
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    // SIGTERM: the batch processor must flush before exit.
    let status = tokio::task::block_in_place(|| serve.terminate());
    assert_eq!(status.code(), Some(0));
    let spans = spans.lock().expect("lock").clone();
    let request = spans
        .iter()
        .find(|(trace, _, name)| trace == TRACE_ID && name == "GET /api/v1/detections")
        .unwrap_or_else(|| panic!("no request span with the incoming trace id in {spans:?}"));
    assert_eq!(
        request.1, PARENT_SPAN,
        "the request span's parent is the caller's span"
    );
    assert!(
        spans
            .iter()
            .any(|(trace, _, name)| trace == TRACE_ID && name == "search"),
        "no database span in the trace: {spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_collector_costs_requests_nothing() {
    let mut serve = start(&[
        ("SHADOWCHECK__OTEL__ENDPOINT", closed_port()),
        ("SHADOWCHECK__OTEL__TIMEOUT_MS", "300".into()),
    ])
    .await;
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    for _ in 0..50 {
        let sent = Instant::now();
        assert_eq!(
            client
                .get(serve.url("/api/v1/detections?limit=1"))
                .send()
                .await
                .expect("get")
                .status(),
            200
        );
        assert!(sent.elapsed() < Duration::from_secs(2));
    }
    let status = tokio::task::block_in_place(|| serve.terminate());
    assert_eq!(status.code(), Some(0));
    let errors = serve
        .log_lines()
        .iter()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .count();
    assert_eq!(errors, 0, "error lines: {:?}", serve.log_lines());
}
