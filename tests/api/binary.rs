//! The real `shadowcheck` binary: check-config, migrate, and the embedded default end to end.

use serde_json::{json, Value};

use crate::helpers::{empty_database, shadowcheck, shared_temp_dir, ServeProcess};

#[test]
fn check_config_prints_the_settings_with_secrets_redacted() {
    let dir = shared_temp_dir("shadowcheck-cfg-");
    let secret = dir.join("db-url");
    std::fs::write(&secret, "postgres://app:s3cr3t-pw@db:5432/shadowcheck\n").expect("write");
    let out = shadowcheck()
        .arg("check-config")
        .env("SHADOWCHECK__DATABASE__URL_FILE", &secret)
        .env("SHADOWCHECK__QUERY__MAX_LIMIT", "20000")
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("max_limit = 20000"), "{stdout}");
    assert!(stdout.contains("[redacted]"), "{stdout}");
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_names_a_misspelt_key_in_a_file() {
    let dir = shared_temp_dir("shadowcheck-cfg-");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:5000\"\nlistne = 1\n").expect("write");
    let out = shadowcheck()
        .args(["--config"])
        .arg(&file)
        .arg("check-config")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listne"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_names_an_unreadable_value_from_the_environment() {
    let out = shadowcheck()
        .arg("check-config")
        .env("SHADOWCHECK__DATABASE__MAX_CONNECTIONS", "many")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_connections"));
}

#[tokio::test]
async fn migrate_subcommand_applies_the_schema() {
    let url = empty_database().await;
    let out = shadowcheck()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
        .fetch_one(&pool)
        .await
        .expect("table");
    assert_eq!(n, 0);
    // Running it again is a no-op.
    let out = shadowcheck()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run");
    assert!(out.status.success());
}

/// The first key the embedded default prints on stderr. Stderr is read by another thread than
/// the stdout line that says the server listens, so it may arrive a moment later: wait for it.
fn printed_key(serve: &ServeProcess) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let key = serve
            .log_lines()
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with("sc_") && l.len() == 46)
            .map(str::to_owned);
        if key.is_some() || std::time::Instant::now() > deadline {
            return key;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn bearer(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_embedded_default_keeps_its_data_across_a_restart() {
    let dir = shared_temp_dir("shadowcheck-embedded-");
    let data = dir.join("data");

    // The one-command quick start: no database URL, no key configured.
    let mut serve = ServeProcess::start_exactly(&[], Some(&data));
    let addr = serve.addr.clone();
    let key = printed_key(&serve).expect("the first start prints an admin key");
    let client = bearer(&key);
    serve.wait_ready(&client).await;
    let item = json!({"detected_at": "2026-06-01T08:00:00Z", "latitude": 48.85, "longitude": 2.35,
                      "signal_type": "ble", "bt_address": "c0:ff:ee:00:00:01"});
    let anonymous = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/detections"))
        .json(&item)
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 401);
    let resp = client
        .post(format!("http://{addr}/api/v1/detections"))
        .json(&item)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 201);
    let status = serve.terminate();
    assert_eq!(status.code(), Some(0), "graceful exit");
    assert!(data.join("postgres/PG_VERSION").exists());
    assert!(
        !data.join("postgres/postmaster.pid").exists(),
        "embedded PostgreSQL left running"
    );
    // The key is not in the JSON logs (which go to Loki), only on the terminal once.
    assert_eq!(
        serve
            .log_lines()
            .iter()
            .filter(|l| l.contains(&key))
            .count(),
        1
    );

    // The second start reuses the cluster, finds the data, keeps the key, prints no new one.
    let mut serve = ServeProcess::start_exactly(&[], Some(&data));
    let addr = serve.addr.clone();
    assert!(
        printed_key(&serve).is_none(),
        "a second admin key was created"
    );
    serve.wait_ready(&client).await;
    let stats: Value = client
        .get(format!("http://{addr}/api/v1/stats"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["total"], 1);
    let resp = client
        .post(format!("http://{addr}/api/v1/detections"))
        .json(&item)
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status(),
        200,
        "the same detection again is a duplicate"
    );
    assert_eq!(serve.terminate().code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

/// The README's workflow: `keys create` (or `import`) with the server's `--data-dir` while it
/// runs. The command uses the server's cluster and leaves it running; the server stays ready and
/// stops its cluster itself when it exits.
#[tokio::test]
async fn a_command_beside_a_running_server_leaves_its_database_running() {
    let dir = shared_temp_dir("shadowcheck-beside-");
    let data = dir.join("data");
    let mut serve = ServeProcess::start_exactly(&[], Some(&data));
    let key = printed_key(&serve).expect("first key");
    let client = bearer(&key);
    serve.wait_ready(&client).await;
    let out = shadowcheck()
        .args([
            "keys",
            "create",
            "--name",
            "phone",
            "--scope",
            "ingest",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("keys create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        data.join("postgres/postmaster.pid").exists(),
        "the command stopped the cluster"
    );
    let ready = client
        .get(serve.url("/api/v1/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let phone_key = stdout
        .lines()
        .find(|l| l.starts_with("sc_"))
        .expect("the new key on stdout");
    let phone = bearer(phone_key);
    let item = json!({"detected_at": "2026-06-01T08:00:00Z", "latitude": 48.85, "longitude": 2.35,
                      "signal_type": "ble", "bt_address": "c0:ff:ee:00:00:02"});
    let stored = phone
        .post(serve.url("/api/v1/detections"))
        .json(&item)
        .send()
        .await
        .expect("post");
    assert_eq!(stored.status(), 201);
    assert_eq!(serve.terminate().code(), Some(0), "graceful exit");
    assert!(
        !data.join("postgres/postmaster.pid").exists(),
        "the server, the last user, stops the cluster"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_log_format_follows_whether_stdout_is_a_terminal() {
    let url = empty_database().await;
    // Piped (a collector, a file): every line is a JSON object.
    let out = shadowcheck()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run");
    assert!(out.status.success());
    let piped = String::from_utf8_lossy(&out.stdout);
    assert!(piped.contains("migrations applied"), "{piped}");
    for line in piped.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
            "not JSON: {line}"
        );
    }
    // On a terminal (`script` gives the binary a pseudo-terminal): readable lines, not JSON.
    let mut on_tty = std::process::Command::new("script");
    on_tty
        .args([
            "-qec",
            &format!("{} migrate", crate::helpers::BIN),
            "/dev/null",
        ])
        .env("DATABASE_URL", &url);
    for (key, _) in std::env::vars() {
        if key.starts_with("SHADOWCHECK__") {
            on_tty.env_remove(key);
        }
    }
    let out = on_tty.output().expect("run under script");
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    let line = shown
        .lines()
        .find(|l| l.contains("migrations applied"))
        .unwrap_or_else(|| panic!("no log line on the terminal: {shown}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        serde_json::from_str::<Value>(line.trim()).is_err(),
        "{line}"
    );
    // Config still forces JSON on a terminal.
    on_tty.env("SHADOWCHECK__LOG__FORMAT", "json");
    let out = on_tty.output().expect("run under script");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown
            .lines()
            .any(|l| l.contains("migrations applied") && l.trim().starts_with('{')),
        "{shown}"
    );
}
