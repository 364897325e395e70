//! Keys, scopes, rate limits and the hardened HTTP edge, against the real router and binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    fresh_database, problem, shadowcheck, spawn_app_with, ServeProcess, TestApp, TEST_KEY,
};

fn item(mac: &str) -> Value {
    json!({"detected_at": "2026-09-01T00:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "ble", "bt_address": mac})
}

/// `shadowcheck keys ...` against the test app's database; returns stdout.
fn keys(app_db_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = shadowcheck()
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", app_db_url)
        .output()
        .expect("run keys");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A second device's ingest key, made with `shadowcheck keys create`.
async fn second_ingest_key(app: &TestApp) -> String {
    let url = app.database.app_url();
    let (ok, key, err) = keys(&url, &["create", "--name", "device-b", "--scope", "ingest"]);
    assert!(ok, "{err}");
    key.trim().to_owned()
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, app.url(path));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("send")
}

/// An app whose keys are checked on every request (no cache), with a `read` key
/// (`map-frontend`) and an `ingest` key (`pixel-7`) made by the CLI.
async fn app_with_two_keys() -> (TestApp, String, String) {
    let app = spawn_app_with(|s| s.auth.cache_ttl_secs = 0).await;
    let url = app.database.app_url();
    let (ok, reader, err) = keys(
        &url,
        &["create", "--name", "map-frontend", "--scope", "read"],
    );
    assert!(ok, "{err}");
    let (ok, device, err) = keys(&url, &["create", "--name", "pixel-7", "--scope", "ingest"]);
    assert!(ok, "{err}");
    (app, reader.trim().to_owned(), device.trim().to_owned())
}

#[tokio::test]
async fn keys_create_issues_distinct_prefixed_secrets() {
    let (_app, reader, device) = app_with_two_keys().await;
    assert!(reader.starts_with("sc_") && device.starts_with("sc_") && reader != device);
}

#[tokio::test]
async fn keys_create_refuses_a_taken_name_or_an_unknown_scope() {
    let (app, _, _) = app_with_two_keys().await;
    let url = app.database.app_url();
    let (ok, _, err) = keys(&url, &["create", "--name", "pixel-7", "--scope", "ingest"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = keys(&url, &["create", "--name", "x", "--scope", "superuser"]);
    assert!(!ok && err.contains("unknown scope"), "{err}");
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_401() {
    let (app, _, _) = app_with_two_keys().await;
    let resp = send(
        &app,
        Method::POST,
        "/api/v1/detections",
        None,
        Some(item("c0:00:00:00:01:01")),
    )
    .await;
    assert!(resp.headers().get("www-authenticate").is_some());
    problem(resp, 401).await;
    problem(
        send(&app, Method::GET, "/api/v1/detections", None, None).await,
        401,
    )
    .await;
    let garbage = Some("sc_not_a_real_key_at_all_000000000000000000000");
    problem(
        send(&app, Method::GET, "/api/v1/stats", garbage, None).await,
        401,
    )
    .await;
}

#[tokio::test]
async fn a_key_without_the_needed_scope_is_403() {
    let (app, reader, device) = app_with_two_keys().await;
    let post = Some(item("c0:00:00:00:01:02"));
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/detections",
            Some(&reader),
            post,
        )
        .await,
        403,
    )
    .await;
    problem(
        send(&app, Method::GET, "/api/v1/detections", Some(&device), None).await,
        403,
    )
    .await;
}

#[tokio::test]
async fn a_key_with_the_needed_scope_is_served() {
    let (app, reader, device) = app_with_two_keys().await;
    let post = Some(item("c0:00:00:00:01:03"));
    let stored = send(
        &app,
        Method::POST,
        "/api/v1/detections",
        Some(&device),
        post,
    )
    .await;
    assert_eq!(stored.status(), 201);
    let read = send(&app, Method::GET, "/api/v1/detections", Some(&reader), None).await;
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn x_api_key_works_like_bearer() {
    let (app, reader, _) = app_with_two_keys().await;
    let via_header = reqwest::Client::new()
        .get(app.url("/api/v1/stats"))
        .header("x-api-key", &reader)
        .send()
        .await
        .expect("send");
    assert_eq!(via_header.status(), 200);
}

/// GIS clients that can only send a user name and password (QGIS, `curl -u`) send the key as
/// the password, or as the user name with no password; a wrong key is still refused.
#[tokio::test]
async fn a_key_as_basic_credentials_works_like_bearer() {
    let (app, reader, _) = app_with_two_keys().await;
    let get = |user: &str, password: Option<&str>| {
        reqwest::Client::new()
            .get(app.url("/ogc/collections/detections/items"))
            .basic_auth(user, password)
            .send()
    };
    assert_eq!(
        get("qgis", Some(&reader)).await.expect("send").status(),
        200
    );
    assert_eq!(get(&reader, None).await.expect("send").status(), 200);
    assert_eq!(
        get("qgis", Some("sc_wrong")).await.expect("send").status(),
        401
    );
    assert_eq!(get("", None).await.expect("send").status(), 401);
}

/// Readiness and the API description are public: probes and clients read them before any key.
#[tokio::test]
async fn public_documents_need_no_key() {
    let (app, _, _) = app_with_two_keys().await;
    for path in ["/api/v1/health/ready", "/api/v1/openapi.json"] {
        assert_eq!(
            send(&app, Method::GET, path, None, None).await.status(),
            200
        );
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_from_then_on() {
    let (app, _, device) = app_with_two_keys().await;
    let url = app.database.app_url();
    let (ok, _, err) = keys(&url, &["revoke", "pixel-7"]);
    assert!(ok, "{err}");
    let post = Some(item("c0:00:00:00:01:04"));
    let body = problem(
        send(
            &app,
            Method::POST,
            "/api/v1/detections",
            Some(&device),
            post,
        )
        .await,
        401,
    )
    .await;
    assert!(body["detail"].as_str().expect("detail").contains("revoked"));
    let (ok, _, _) = keys(&url, &["revoke", "pixel-7"]);
    assert!(!ok, "revoking twice");
}

#[tokio::test]
async fn the_key_listing_never_shows_a_secret() {
    let (app, reader, device) = app_with_two_keys().await;
    let (ok, listing, _) = keys(&app.database.app_url(), &["list"]);
    assert!(ok);
    assert!(
        listing.contains("map-frontend")
            && listing.contains("pixel-7")
            && listing.contains(&device[..11])
    );
    assert!(!listing.contains(&device) && !listing.contains(&reader));
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes() {
    let (app, reader, device) = app_with_two_keys().await;
    let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT name, row_to_json(k)::text, key_hash FROM sigint.api_keys k ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .expect("rows");
    for (name, row, hash) in &rows {
        for secret in [&reader, &device] {
            assert!(
                !row.contains(secret.as_str()),
                "{name}: plaintext key stored"
            );
        }
        let expected = if name == "map-frontend" {
            &reader
        } else {
            &device
        };
        assert_eq!(
            hash.as_slice(),
            Sha256::digest(expected.as_bytes()).as_slice(),
            "{name}: hash"
        );
    }
}

#[tokio::test]
async fn a_used_key_records_when_it_was_last_used() {
    let (app, reader, _) = app_with_two_keys().await;
    let read = send(&app, Method::GET, "/api/v1/stats", Some(&reader), None).await;
    assert_eq!(read.status(), 200);
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM sigint.api_keys WHERE name = 'map-frontend'")
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert!(used.is_some(), "last_used_at recorded");
}

#[tokio::test]
async fn anonymous_read_when_the_operator_allows_it() {
    let app = spawn_app_with(|s| s.auth.anonymous_read = true).await;
    assert_eq!(
        send(&app, Method::GET, "/api/v1/detections", None, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&app, Method::GET, "/api/v1/stats", None, None)
            .await
            .status(),
        200
    );
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/detections",
            None,
            Some(item("c0:00:00:00:02:01")),
        )
        .await,
        401,
    )
    .await;
}

#[tokio::test]
async fn bursts_above_the_limit_get_429_then_recover() {
    let app = spawn_app_with(|s| {
        s.rate_limit.enabled = true;
        s.rate_limit.per_key_per_second = 2;
        s.rate_limit.per_key_burst = 5;
        s.rate_limit.per_client_per_second = 1000;
        s.rate_limit.per_client_burst = 1000;
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    let started = std::time::Instant::now();
    for _ in 0..12 {
        let resp = app.get("/api/v1/stats").await;
        if resp.status() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = problem(resp, 429).await;
            assert_eq!(body["type"], "urn:shadowcheck:problem:rate-limited");
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    // The burst, plus what refilled meanwhile (2 per second) on a slow machine.
    let refilled = (started.elapsed().as_secs_f64() * 2.0).floor() as usize;
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (5..=5 + refilled).contains(&served),
        "{statuses:?} in {:?}",
        started.elapsed()
    );
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let wait = retry_after.expect("Retry-After");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Probes are exempt from every limit.
    for _ in 0..20 {
        assert_eq!(app.get("/api/v1/health/live").await.status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        app.get("/api/v1/stats").await.status(),
        200,
        "recovered after Retry-After"
    );
}

#[tokio::test]
async fn per_client_limit_trusts_forwarded_for_only_from_trusted_proxies() {
    let limited = |trusted: bool| {
        move |s: &mut shadowcheck::config::Settings| {
            s.rate_limit.enabled = true;
            s.rate_limit.per_client_per_second = 1;
            s.rate_limit.per_client_burst = 2;
            if trusted {
                s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
            }
        }
    };
    let call = |app: &TestApp, xff: &'static str| {
        let req = app
            .client
            .get(app.url("/api/v1/stats"))
            .header("x-forwarded-for", xff);
        async move { req.send().await.expect("send").status().as_u16() }
    };
    // Behind a trusted proxy: each forwarded client has its own bucket.
    let app = spawn_app_with(limited(true)).await;
    assert_eq!(
        [
            call(&app, "10.0.0.1").await,
            call(&app, "10.0.0.1").await,
            call(&app, "10.0.0.1").await
        ],
        [200, 200, 429]
    );
    assert_eq!(
        call(&app, "10.0.0.2").await,
        200,
        "another client behind the proxy"
    );
    // Spoofing the header from an untrusted peer changes nothing: one bucket for the peer.
    let app = spawn_app_with(limited(false)).await;
    assert_eq!(
        [
            call(&app, "10.0.0.1").await,
            call(&app, "10.0.0.2").await,
            call(&app, "10.0.0.3").await
        ],
        [200, 200, 429]
    );
}

#[tokio::test]
async fn stalling_clients_are_cut_off_while_others_are_served() {
    let app = spawn_app_with(|s| {
        s.server.header_read_timeout_secs = 1;
        s.server.request_timeout_secs = 2;
    })
    .await;
    let addr = app.addr;
    // Slowloris: a header line every 300 ms, never finishing the head.
    let slowloris = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let started = Instant::now();
        let _ = conn.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n");
        for i in 0..40 {
            std::thread::sleep(Duration::from_millis(300));
            if conn
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .is_err()
            {
                break;
            }
        }
        let mut buf = [0u8; 512];
        let _ = conn.read(&mut buf);
        started.elapsed()
    });
    // An endless chunked body, 1 KiB every 100 ms.
    let endless = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let head = format!(
            "POST /api/v1/detections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let _ = conn.write_all(head.as_bytes());
        let started = Instant::now();
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        let mut answer = Vec::new();
        while started.elapsed() < Duration::from_secs(10) {
            if conn.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    // Meanwhile everyone else is served.
    for _ in 0..10 {
        assert_eq!(app.get("/api/v1/stats").await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow = tokio::task::spawn_blocking(move || slowloris.join().expect("join"))
        .await
        .expect("join");
    assert!(
        slow < Duration::from_secs(5),
        "slowloris connection held for {slow:?}"
    );
    let (took, answer) = tokio::task::spawn_blocking(move || endless.join().expect("join"))
        .await
        .expect("join");
    assert!(
        took < Duration::from_secs(6),
        "endless body held for {took:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(app.count("true").await, 0);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app_with(|_| {}).await;
    let resp = app.get("/api/v1/health").await;
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        assert_eq!(
            resp.headers().get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    assert!(
        resp.headers().get("strict-transport-security").is_none(),
        "HSTS only behind TLS"
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let app = spawn_app_with(|_| {}).await;
    let huge = "x".repeat(40 * 1024);
    let resp = reqwest::Client::new()
        .get(app.url("/api/v1/health"))
        .header("x-big", huge)
        .send()
        .await
        .expect("send");
    let body = crate::helpers::problem(resp, 431).await;
    assert_eq!(body["type"], "urn:shadowcheck:problem:headers-too-large");
}

/// A request hyper cannot parse is answered by hyper itself, still as a problem.
#[tokio::test]
async fn an_unparseable_request_gets_a_problem_body() {
    let app = spawn_app_with(|_| {}).await;
    let addr = app.addr;
    let answer = tokio::task::spawn_blocking(move || {
        crate::probes::raw_exchange(
            addr,
            b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
        )
    })
    .await
    .expect("join");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{answer}"
    );
    let problem: serde_json::Value = serde_json::from_str(body).expect(&answer);
    assert_eq!(problem["status"], 400, "{answer}");
    assert_eq!(problem["type"], "urn:shadowcheck:problem:bad-request");
}

#[tokio::test]
async fn cors_admits_only_the_listed_origins() {
    let app =
        spawn_app_with(|s| s.server.cors_allowed_origins = vec!["https://map.example.org".into()])
            .await;
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/detections"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://map.example.org")
        .await
        .expect("preflight");
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://map.example.org")
    );
    let other = preflight("https://evil.example.com")
        .await
        .expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_listed_origins_cors_is_same_origin_only() {
    let plain = spawn_app_with(|_| {}).await;
    let resp = reqwest::Client::new()
        .get(plain.url("/api/v1/health"))
        .header("origin", "https://map.example.org")
        .send()
        .await
        .expect("send");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn overload_is_shed_with_503_not_queued() {
    let app = spawn_app_with(|s| s.server.max_concurrent_requests = 1).await;
    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE sigint.idempotency_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let busy = tokio::spawn(
        app.client
            .post(app.url("/api/v1/detections"))
            .header("Idempotency-Key", "k1")
            .json(&item("c0:00:00:00:03:01"))
            .send(),
    );
    app.wait_for_lock_waiter("the busy request").await;
    let started = Instant::now();
    let shed = app.get("/api/v1/stats").await;
    assert!(shed.headers().get("retry-after").is_some());
    let body = problem(shed, 503).await;
    assert_eq!(body["type"], "urn:shadowcheck:problem:overloaded");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed, not queued"
    );
    blocker.commit().await.expect("release");
    assert_eq!(busy.await.expect("join").expect("send").status(), 201);
    assert_eq!(app.get("/api/v1/stats").await.status(), 200);
}

#[tokio::test]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs openssl: feature tool-tests (scripts/test)"
)]
async fn tls_is_terminated_in_process() {
    let dir = crate::helpers::shared_temp_dir("shadowcheck-tls-");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (c, k) = (cert.clone(), key.clone());
    let app = spawn_app_with(move |s| {
        s.server.tls.cert_file = Some(c);
        s.server.tls.key_file = Some(k);
    })
    .await;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = crate::helpers::tls_connector(&cert);
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "HSTS with TLS: {answer}"
    );
    // Plain HTTP on the TLS port gets nowhere.
    assert!(reqwest::Client::new()
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .is_err());
    // The container health check with the same settings probes over HTTPS and finds it ready;
    // with TLS settings removed it would speak HTTP to a TLS port and fail.
    // Off the test's runtime, which also serves the in-process app.
    let probe = |with_tls: bool| {
        let mut cmd = crate::helpers::shadowcheck();
        cmd.args(["healthcheck", "--timeout-secs", "5"])
            .env("SHADOWCHECK__SERVER__LISTEN", app.addr.to_string());
        if with_tls {
            cmd.env("SHADOWCHECK__SERVER__TLS__CERT_FILE", &cert)
                .env("SHADOWCHECK__SERVER__TLS__KEY_FILE", &key);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run healthcheck"))
    };
    let out = probe(true).await.expect("join");
    assert!(
        out.status.success(),
        "HTTPS health check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !probe(false).await.expect("join").status.success(),
        "HTTP to a TLS port passed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Random and hostile inputs to every endpoint: never a 5xx, never a dead server.
#[tokio::test]
async fn hostile_inputs_never_cause_a_server_error() {
    let app = spawn_app_with(|s| s.server.body_limit_bytes = 256 * 1024).await;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let hostile_strings = [
        "",
        "\u{0}",
        "%00",
        "'; DROP TABLE sigint.signal_detections; --",
        "\u{202e}evil",
        "🛰️📡",
        "NaN",
        "Infinity",
        "-0",
        "1e999",
        "9223372036854775808",
        "-9223372036854775809",
        "0x1F",
        "null",
        "[]",
        "{}",
        "\\",
        "\"",
        "../../etc/passwd",
        "aa:bb:cc:dd:ee:ff:00",
        "2026-02-30T25:61:61Z",
        "+275760-09-13T00:00:00Z",
    ];
    let fields = [
        "detected_at",
        "latitude",
        "longitude",
        "signal_type",
        "bssid",
        "bt_address",
        "ssid",
        "channel",
        "frequency_mhz",
        "signal_strength_dbm",
        "cell_id",
        "lac",
        "mcc",
        "mnc",
        "network_type",
        "device_id",
        "raw_data",
        "tags",
        "bt_class",
        "surveillance_score",
        "capture_duration_ms",
        "accuracy_meters",
        "altitude_meters",
        "is_suspicious",
    ];
    let random_json = |rng: &mut StdRng, depth: u32| -> Value {
        fn go(rng: &mut StdRng, depth: u32, strings: &[&str]) -> Value {
            match rng.gen_range(0..9) {
                0 => Value::Null,
                1 => Value::Bool(rng.gen()),
                2 => json!(rng.gen::<i64>()),
                3 => json!(rng.gen::<f64>() * 1e300),
                4 => json!(strings[rng.gen_range(0..strings.len())]),
                5 => json!(rng.gen::<u64>()),
                6 if depth > 0 => Value::Array(
                    (0..rng.gen_range(0..4))
                        .map(|_| go(rng, depth - 1, strings))
                        .collect(),
                ),
                7 if depth > 0 => {
                    let mut m = serde_json::Map::new();
                    for _ in 0..rng.gen_range(0..4) {
                        m.insert(
                            strings[rng.gen_range(0..strings.len())].to_owned(),
                            go(rng, depth - 1, strings),
                        );
                    }
                    Value::Object(m)
                }
                _ => json!("x".repeat(rng.gen_range(0..300))),
            }
        }
        go(rng, depth, &hostile_strings)
    };
    let mut sent = 0;
    for round in 0..400 {
        let (method, path, ctype, body): (&str, String, &str, Vec<u8>) = match round % 8 {
            // A plausible detection with one field replaced by something hostile.
            0 | 1 => {
                let mut d = item("c0:00:00:00:04:01");
                let field = fields[rng.gen_range(0..fields.len())];
                d[field] = random_json(&mut rng, 2);
                (
                    "POST",
                    "/api/v1/detections".into(),
                    "application/json",
                    serde_json::to_vec(&json!([d])).expect("json"),
                )
            }
            2 => (
                "POST",
                "/api/v1/detections".into(),
                "application/json",
                serde_json::to_vec(&random_json(&mut rng, 4)).expect("json"),
            ),
            3 => {
                let csv = "MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,Type\n\
                           a0:4f:d4:3b:fb:a1,\"x,y\",[WPA2],2017-10-29 18:21:43,1,-45,32.1,35.2,663.6,57.8,WIFI\n";
                let ctype =
                    ["text/csv", "application/json", "application/x-ndjson"][rng.gen_range(0..3)];
                (
                    "POST",
                    "/api/v1/detections".into(),
                    ctype,
                    csv.as_bytes().to_vec(),
                )
            }
            4 => {
                let bytes: Vec<u8> = (0..rng.gen_range(0..4096)).map(|_| rng.gen()).collect();
                let ctype = [
                    "application/json",
                    "application/x-ndjson",
                    "application/octet-stream",
                ][rng.gen_range(0..3)];
                ("POST", "/api/v1/detections".into(), ctype, bytes)
            }
            5 => {
                let params = [
                    "bbox",
                    "lat",
                    "lon",
                    "radius_m",
                    "nearest",
                    "start",
                    "end",
                    "signal_type",
                    "bssid",
                    "ssid",
                    "limit",
                    "after",
                    "device_id",
                    "min_signal_dbm",
                    "is_suspicious",
                    "zzz",
                ];
                let mut q = form_urlencoded::Serializer::new(String::new());
                for _ in 0..rng.gen_range(1..6) {
                    let v = match rng.gen_range(0..3) {
                        0 => hostile_strings[rng.gen_range(0..hostile_strings.len())].to_owned(),
                        1 => format!("{}", rng.gen::<f64>() * 400.0 - 200.0),
                        _ => format!(
                            "{},{},{},{}",
                            rng.gen::<i32>(),
                            rng.gen::<f32>(),
                            rng.gen::<i16>(),
                            rng.gen::<f64>()
                        ),
                    };
                    q.append_pair(params[rng.gen_range(0..params.len())], &v);
                }
                (
                    "GET",
                    format!("/api/v1/detections?{}", q.finish()),
                    "",
                    vec![],
                )
            }
            6 => {
                let id = hostile_strings[rng.gen_range(0..hostile_strings.len())];
                let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
                ("GET", format!("/api/v1/detections/{id}"), "", vec![])
            }
            _ => {
                let paths = [
                    "/api/v1/stats?x=%ff%fe",
                    "/api/v1/health/detailed?%00",
                    "/api/v1/openapi.json",
                    "/api/v1/../../etc",
                    "/api/v1/detections/%2e%2e",
                ];
                (
                    "GET",
                    paths[rng.gen_range(0..paths.len())].into(),
                    "",
                    vec![],
                )
            }
        };
        let mut req = app
            .client
            .request(method.parse().expect("method"), app.url(&path));
        if !ctype.is_empty() {
            req = req.header("content-type", ctype);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        let resp = req.send().await.expect("server answered");
        let status = resp.status();
        assert!(
            !status.is_server_error(),
            "{method} {path} ({ctype}) -> {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        sent += 1;
    }
    assert_eq!(sent, 400);
    assert_eq!(
        app.get("/api/v1/health/ready").await.status(),
        200,
        "still healthy"
    );
}

/// The OpenAPI document lists every endpoint, and each query parameter the handlers read (from
/// the same structs that read them).
#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_with_its_parameters() {
    let app = spawn_app_with(|_| {}).await;
    let doc: Value = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/api/v1/detections", "post"),
        ("/api/v1/detections", "get"),
        ("/api/v1/detections/{id}", "get"),
        ("/api/v1/stats", "get"),
        ("/api/v1/health/live", "get"),
        ("/api/v1/health/ready", "get"),
        ("/api/v1/health/startup", "get"),
        ("/api/v1/health/detailed", "get"),
        ("/api/v1/transmitters", "get"),
        ("/api/v1/transmitters/{radio}/{identifier}", "get"),
        ("/api/v1/threats", "get"),
        ("/tiles/{layer}/{z}/{x}/{y}.pbf", "get"),
        ("/tiles/{layer}.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let names = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let search = names("/api/v1/detections");
    for name in [
        "bbox",
        "lat",
        "lon",
        "radius_m",
        "nearest",
        "start",
        "end",
        "signal_type",
        "bssid",
        "bt_address",
        "ssid",
        "device_id",
        "is_suspicious",
        "min_signal_dbm",
        "min_score",
        "limit",
        "after",
        "f",
    ] {
        assert!(search.iter().any(|n| n == name), "{name} not in {search:?}");
    }
    let registry = names("/api/v1/transmitters");
    for name in ["radio", "tracker", "level", "flag", "sort", "bbox", "after"] {
        assert!(
            registry.iter().any(|n| n == name),
            "{name} not in {registry:?}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let ogc: Value = app.get_json("/ogc/api").await;
    assert_eq!(ogc["openapi"], "3.0.3");
}

/// schemathesis (from PyPI) fuzzes the real binary from both API descriptions — the REST API's
/// 3.1 document, then the OGC API's 3.0 one against its own base — without finding a server
/// error, a status code or a content type the documents do not declare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs schemathesis (PyPI): feature tool-tests (scripts/test)"
)]
async fn schemathesis_finds_no_server_error_from_either_description() {
    let url = fresh_database().await.app_url();
    let serve = ServeProcess::start(&[("DATABASE_URL", url.as_str())], None);
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    for (schema, base) in [
        (serve.url("/api/v1/openapi.json"), serve.url("")),
        (serve.url("/ogc/api"), serve.url("/ogc")),
    ] {
        let out = tokio::task::spawn_blocking(move || {
            Command::new("schemathesis")
                .args(["run", &schema, "--url", &base])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance",
                ])
                .args([
                    "--max-examples",
                    "25",
                    "--seed",
                    "7",
                    "--request-timeout",
                    "10",
                ])
                .args(["-H", &format!("Authorization: Bearer {TEST_KEY}")])
                // An event stream stays open until the client goes: each example would wait
                // out the request timeout. Its own test reads it (tests/api/detector.rs).
                .args(["--exclude-path", "/api/v1/threats/events"])
                .env("NO_COLOR", "1")
                .output()
                .expect("schemathesis is installed by scripts/test (pip install schemathesis)")
        })
        .await
        .expect("join");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "schemathesis found problems:\n{text}");
        assert!(text.contains("passed"), "{text}");
    }
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_api_key() {
    let app = spawn_app_with(|_| {}).await;
    let other = second_ingest_key(&app).await;
    let post = |key: String, body: Value| {
        let url = app.url("/api/v1/detections");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {key}"))
                .header("idempotency-key", "shared-value")
                .json(&body)
                .send()
                .await
                .expect("send")
        }
    };
    let a_batch = json!([item("c0:00:00:00:0a:01")]);
    let b_batch = json!([item("c0:00:00:00:0b:01")]);
    assert_eq!(
        post(TEST_KEY.to_owned(), a_batch.clone()).await.status(),
        201
    );
    // Another key with the same value and another body: its own request, stored, not a 409.
    let resp = post(other.clone(), b_batch.clone()).await;
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    // The same body under another key is not A's stored answer either.
    let resp = post(other.clone(), a_batch.clone()).await;
    assert_eq!(resp.status(), 409, "B's own key now holds B's body");
    // Each key still replays its own first answer.
    let resp = post(TEST_KEY.to_owned(), a_batch).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let resp = post(other, b_batch).await;
    assert_eq!(
        resp.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(
        app.count("bt_address IN ('c0:00:00:00:0a:01', 'c0:00:00:00:0b:01')")
            .await,
        2
    );
}

/// Opens a POST with the given key whose body never finishes: the request holds its slots.
fn held_upload(addr: std::net::SocketAddr, key: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /api/v1/detections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    );
    conn.write_all(head.as_bytes()).expect("write");
    conn
}

/// POSTs `item` as `key` until the answer is `wanted` (the held requests of a test may not have
/// reached their handlers yet), for at most 10 s; the last answer.
async fn post_until(app: &TestApp, key: &str, item: Value, wanted: u16) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = send(
            app,
            reqwest::Method::POST,
            "/api/v1/detections",
            Some(key),
            Some(item.clone()),
        )
        .await;
        if resp.status() == wanted || Instant::now() > deadline {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_key_cannot_hold_every_slot() {
    let app = spawn_app_with(|s| {
        s.server.max_concurrent_requests = 3;
        s.auth.max_concurrent_per_key = 2;
        s.server.body_grace_secs = 60;
    })
    .await;
    let other = second_ingest_key(&app).await;
    // Key A holds two requests open (slow bodies); its third is refused, not queued.
    let held: Vec<TcpStream> = (0..2).map(|_| held_upload(app.addr, TEST_KEY)).collect();
    let third = post_until(&app, TEST_KEY, item("c0:00:00:00:0c:01"), 429).await;
    assert_eq!(third.status(), 429, "a third request of the same key");
    // Another key is still served, and the readiness probe answers.
    let resp = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/detections",
        Some(&other),
        Some(item("c0:00:00:00:0c:02")),
    )
    .await;
    assert_eq!(resp.status(), 201);
    // Now fill the last global slot too: B's slow body. Probes still answer, others are shed.
    let held_b = held_upload(app.addr, &other);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = send(
            &app,
            reqwest::Method::GET,
            "/api/v1/stats",
            Some(&other),
            None,
        )
        .await;
        if resp.status() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "the server never filled up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for probe in [
        "/api/v1/health/ready",
        "/api/v1/health/live",
        "/api/v1/health/detailed",
    ] {
        assert_eq!(app.get(probe).await.status(), 200, "{probe}");
    }
    drop(held);
    drop(held_b);
}

/// A key never holds more than its share of the database pool (half of it by default): with a
/// pool of 4, key A's third concurrent request waits for A's own first two, and is refused (429)
/// when they do not finish within the acquire timeout, while key B and the readiness probe are
/// served at once; when one of A's requests ends, A is served again.
#[tokio::test]
async fn one_key_holds_at_most_its_share_of_the_database_pool() {
    let app = spawn_app_with(|s| {
        s.database.max_connections = 4;
        s.database.acquire_timeout_ms = 2_000;
        s.auth.max_concurrent_per_key = 32;
        s.server.body_grace_secs = 60;
    })
    .await;
    let other = second_ingest_key(&app).await;
    let mut held: Vec<TcpStream> = (0..2).map(|_| held_upload(app.addr, TEST_KEY)).collect();
    let third = post_until(&app, TEST_KEY, item("c0:00:00:00:0d:01"), 429).await;
    assert_eq!(third.status(), 429, "A's third request beyond its share");
    let problem = problem(third, 429).await;
    assert_eq!(problem["type"], "urn:shadowcheck:problem:rate-limited");
    let started = Instant::now();
    let resp = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/detections",
        Some(&other),
        Some(item("c0:00:00:00:0d:02")),
    )
    .await;
    assert_eq!(resp.status(), 201, "key B is served");
    // B never waits for A's share (A's own third request waited the full 2 s).
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "key B waited for A's share: {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/api/v1/health/ready").await.status(), 200);
    // One of A's requests ends: A is served again.
    drop(held.pop());
    let again = post_until(&app, TEST_KEY, item("c0:00:00:00:0d:03"), 201).await;
    assert_eq!(again.status(), 201, "A never got its permit back");
    drop(held);
}

#[tokio::test]
async fn trickled_bodies_are_cut_off_at_the_minimum_pace() {
    let app = spawn_app_with(|s| {
        s.server.min_body_bytes_per_sec = 1024;
        s.server.body_grace_secs = 1;
        s.server.request_timeout_secs = 60;
    })
    .await;
    let addr = app.addr;
    // 16 bytes a second under the 60 s request timeout: refused once the grace is spent.
    let trickle = std::thread::spawn(move || {
        let mut conn = held_upload(addr, TEST_KEY);
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let started = Instant::now();
        let mut answer = Vec::new();
        while started.elapsed() < Duration::from_secs(20) {
            let _ = conn.write_all(b"                ");
            let mut buf = [0u8; 1024];
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(950)),
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    let (took, answer) = tokio::task::spawn_blocking(move || trickle.join().expect("join"))
        .await
        .expect("join");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-too-slow"), "{answer}");
    assert!(took < Duration::from_secs(20), "held for {took:?}");
    // An import trickled the same way (a valid header, then a row now and then) is cut off too.
    let header = "WigleWifi-1.6,appRelease=test,model=x,release=1,device=x,display=x,board=x,brand=x\nMAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n";
    let stream = futures_util::stream::unfold(0u32, move |i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let chunk = if i == 0 {
            header.to_owned()
        } else {
            format!("a4:00:00:00:01:{i:02x},x,[ESS],2026-02-01 10:00:{:02},6,2437,-70,52.5,13.4,40,5,,,WIFI\n", i % 60)
        };
        (i < 60).then_some((Ok::<_, std::io::Error>(chunk.into_bytes()), i + 1))
    });
    let resp = app
        .client
        .post(app.url("/api/v1/imports"))
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    let resp = resp.expect("an answer before the upload ends");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 408, "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["type"], "urn:shadowcheck:problem:request-too-slow");
}

/// An app with one request connection, taken by a stats query that cannot finish (the test
/// holds the table locked): the app, the lock, and the stuck request.
async fn app_with_a_stuck_query() -> (
    TestApp,
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let app = spawn_app_with(|s| {
        s.database.max_connections = 1;
        s.database.statement_timeout_ms = 1_500;
    })
    .await;
    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE sigint.signal_detections IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let stuck = tokio::spawn(app.client.get(app.url("/api/v1/stats")).send());
    app.wait_for_lock_waiter("the costly query").await;
    (app, blocker, stuck)
}

#[tokio::test]
async fn a_costly_query_is_cut_off_at_the_statement_timeout() {
    let (app, blocker, stuck) = app_with_a_stuck_query().await;
    let resp = stuck.await.expect("join").expect("send");
    let body = problem(resp, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("statement_timeout_ms"),
        "{body}"
    );
    blocker.rollback().await.expect("release");
    assert_eq!(app.get("/api/v1/stats").await.status(), 200);
}

/// The only request connection is taken; the probe has its own.
#[tokio::test]
async fn readiness_answers_while_every_request_connection_is_taken() {
    let (app, _blocker, _stuck) = app_with_a_stuck_query().await;
    let ready = app.get("/api/v1/health/ready").await;
    assert_eq!(
        ready.status(),
        200,
        "{}",
        ready.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn hostile_request_ids_are_replaced() {
    let app = spawn_app_with(|_| {}).await;
    let echoed = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let resp = app
        .client
        .get(app.url("/api/v1/health"))
        .header("x-request-id", "trace-42.a:b_c")
        .send()
        .await
        .expect("send");
    assert_eq!(echoed(&resp), "trace-42.a:b_c");
    for hostile in ["x".repeat(8_000), "a b".to_owned(), "<script>".to_owned()] {
        let resp = app
            .client
            .get(app.url("/api/v1/health"))
            .header("x-request-id", hostile.as_str())
            .send()
            .await
            .expect("send");
        let id = echoed(&resp);
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "{hostile:.20} echoed as {id:.40}"
        );
    }
}
