//! The `docker compose` stack's files, checked without an engine (tests/engine boots it on one):
//! the compose model
//! against the official schema and our hardening rules, Prometheus config and alerts with the
//! real promtool, the Grafana dashboard's PromQL, metric names against a real scrape, the image's
//! entrypoint and health check against the real binary, the database init script and backups
//! against a real PostgreSQL.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use serde_yaml::Value as Yaml;

use crate::helpers::{fresh_database, repo, shadowcheck, shared_temp_dir, ServeProcess};

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo("compose/docker-compose.yml")).expect("compose file");
    let mut doc: Yaml = serde_yaml::from_str(&text).expect("compose YAML");
    doc.apply_merge().expect("merge keys");
    doc
}

fn services(doc: &Yaml) -> Vec<(String, Yaml)> {
    doc["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("name").to_owned(), v.clone()))
        .collect()
}

/// Runs a command to its end: whether it succeeded, and stdout then stderr.
pub(crate) fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/test installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn compose_file_validates_against_the_official_schema() {
    // The shared copy is authoritative when present; the vendored copy keeps clones self-contained.
    let shared = repo("../shared/schemas/compose-spec.json");
    let schema = if shared.exists() {
        shared
    } else {
        repo("tests/support/compose-spec.json")
    };
    let (ok, out) = run(Command::new("python3")
        .arg(repo("tests/support/validate_compose.py"))
        .arg(&schema)
        .arg(repo("compose/docker-compose.yml")));
    assert!(ok, "{out}");
    assert!(out.contains("valid"));
}

/// Durations like "30s", "1m30s" in seconds.
fn seconds(d: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in d.chars() {
        if c.is_ascii_digit() {
            number.push(c);
        } else {
            let n: u64 = number.parse().unwrap_or(0);
            number.clear();
            total += match c {
                'h' => n * 3600,
                'm' => n * 60,
                's' => n,
                _ => 0,
            };
        }
    }
    total
}

#[test]
fn every_service_is_hardened() {
    let doc = compose();
    let one_shot: HashSet<&str> = ["migrate"].into();
    // Root only where the image's job needs it, with the reason in the compose file.
    let root_allowed: HashSet<&str> = ["alloy"].into();
    let declared_secrets: BTreeSet<String> = doc["secrets"]
        .as_mapping()
        .expect("secrets")
        .keys()
        .map(|k| k.as_str().expect("name").to_owned())
        .collect();
    let mut published = BTreeSet::new();
    for (name, svc) in services(&doc) {
        let name = name.as_str();
        assert_eq!(svc["read_only"], Yaml::Bool(true), "{name}: read_only");
        assert!(
            svc["cap_drop"]
                .as_sequence()
                .is_some_and(|c| c.contains(&Yaml::from("ALL"))),
            "{name}: cap_drop ALL"
        );
        assert!(
            svc["security_opt"]
                .as_sequence()
                .is_some_and(|s| s.contains(&Yaml::from("no-new-privileges:true"))),
            "{name}: no-new-privileges"
        );
        // Compose refuses `pids_limit` beside deploy limits that do not repeat it: one place.
        assert!(svc["pids_limit"].is_null(), "{name}: pids_limit");
        assert!(
            svc["deploy"]["resources"]["limits"]["pids"]
                .as_u64()
                .is_some_and(|p| p > 0),
            "{name}: deploy.resources.limits.pids"
        );
        for kind in ["limits", "reservations"] {
            let r = &svc["deploy"]["resources"][kind];
            assert!(
                !r["cpus"].is_null() && !r["memory"].is_null(),
                "{name}: {kind}"
            );
        }
        assert_eq!(
            svc["logging"]["driver"],
            Yaml::from("json-file"),
            "{name}: log driver"
        );
        assert!(
            !svc["logging"]["options"]["max-size"].is_null()
                && !svc["logging"]["options"]["max-file"].is_null(),
            "{name}: log rotation"
        );
        let image = svc["image"].as_str().unwrap_or("");
        assert!(
            !image.is_empty() && !image.ends_with(":latest") && image.contains(':'),
            "{name}: image pinned: {image}"
        );
        let user = svc["user"].as_str().unwrap_or("");
        assert!(!user.is_empty(), "{name}: explicit user");
        if !root_allowed.contains(name) {
            assert!(
                !user.starts_with("0:") && user != "0" && user != "root",
                "{name}: runs as root"
            );
        }
        if one_shot.contains(name) {
            assert_eq!(svc["restart"], Yaml::from("no"), "{name}: one-shot restart");
        } else {
            assert_eq!(
                svc["restart"],
                Yaml::from("unless-stopped"),
                "{name}: restart"
            );
            assert!(
                svc["healthcheck"]["test"]
                    .as_sequence()
                    .is_some_and(|t| !t.is_empty()),
                "{name}: healthcheck"
            );
        }
        // Secrets: every *_FILE variable reads a secret the service mounts and the file declares.
        let mounted: BTreeSet<String> = svc["secrets"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(env) = svc["environment"].as_mapping() {
            for (k, v) in env {
                let key = k.as_str().expect("env key");
                let value = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{v:?}"));
                if key.ends_with("_FILE") {
                    let secret = value
                        .strip_prefix("/run/secrets/")
                        .unwrap_or_else(|| panic!("{name}: {key} not a secret path"));
                    assert!(
                        mounted.contains(secret),
                        "{name}: {key} reads {secret}, not mounted"
                    );
                    assert!(
                        declared_secrets.contains(secret),
                        "{name}: {secret} not declared"
                    );
                }
                let upper = key.to_ascii_uppercase();
                if (upper.contains("PASSWORD")
                    || upper.contains("SECRET")
                    || upper.ends_with("_KEY"))
                    && !upper.ends_with("_FILE")
                {
                    panic!("{name}: {key} carries a secret in plain environment");
                }
            }
        }
        for secret in &mounted {
            assert!(
                declared_secrets.contains(secret),
                "{name}: mounts undeclared secret {secret}"
            );
        }
        // Health-gated start order.
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (dep, cond) in deps {
                let c = cond["condition"].as_str().unwrap_or("");
                assert!(
                    matches!(c, "service_healthy" | "service_completed_successfully"),
                    "{name} -> {dep:?}: condition {c}"
                );
            }
        }
        if let Some(ports) = svc["ports"].as_sequence() {
            published.insert(name.to_owned());
            for p in ports {
                let p = p.as_str().expect("short port syntax");
                assert!(
                    p.starts_with("${SHADOWCHECK_BIND_ADDRESS:-127.0.0.1}:"),
                    "{name}: port {p} not bound to loopback by default"
                );
            }
        }
    }
    assert_eq!(
        published,
        BTreeSet::from(["proxy".to_owned(), "grafana".to_owned()]),
        "only the TLS proxy and Grafana are published"
    );
    // Every secret file is required: no silent fallback to a default.
    for (secret, def) in doc["secrets"].as_mapping().expect("secrets") {
        let file = def["file"].as_str().expect("file secret");
        assert!(
            file.starts_with("${SHADOWCHECK_SECRETS_DIR:?"),
            "{secret:?}: {file}"
        );
    }
    // The database is reachable only on the internal network.
    assert_eq!(doc["networks"]["backend"]["internal"], Yaml::Bool(true));
    assert_eq!(
        doc["services"]["postgis"]["networks"],
        serde_yaml::from_str::<Yaml>("[backend]").expect("yaml")
    );
    let pg_image = doc["services"]["postgis"]["image"].as_str().expect("image");
    assert!(pg_image.starts_with("postgis/postgis:17-3.5"), "{pg_image}");
    // The API's stop grace period outlasts its drain timeout plus the telemetry flush.
    let api = &doc["services"]["api"];
    let drain: u64 = api["environment"]["SHADOWCHECK__SERVER__DRAIN_TIMEOUT_SECS"]
        .as_str()
        .expect("drain")
        .parse()
        .expect("number");
    let grace = seconds(api["stop_grace_period"].as_str().expect("grace"));
    assert!(
        grace >= drain + 5 + 5,
        "stop_grace_period {grace}s vs drain {drain}s"
    );
    assert_eq!(
        api["depends_on"]["migrate"]["condition"],
        Yaml::from("service_completed_successfully")
    );
}

/// The API's and migrate's environment as real Compose resolves it (defaults interpolated), with
/// the secret files replaced by local ones, is a valid configuration for the real binary.
#[test]
fn compose_environment_is_a_valid_configuration() {
    let stack = crate::stack_tools::fresh_stack();
    let project = crate::stack_tools::resolved_project(&stack);
    let dir = shared_temp_dir("shadowcheck-compose-env-");
    for name in ["api", "migrate"] {
        let mut cmd = shadowcheck();
        cmd.arg("check-config");
        let env = project["services"][name]["environment"]
            .as_object()
            .expect("env");
        for (key, v) in env {
            let mut value = v.as_str().expect("string value").to_owned();
            if let Some(secret) = value.strip_prefix("/run/secrets/") {
                let file = dir.join(secret);
                let content = if secret.ends_with("_url") {
                    "postgres://u:p@postgis:5432/shadowcheck"
                } else {
                    "sc_test_secret_value_0123456789abcdef"
                };
                std::fs::write(&file, content).expect("write");
                value = file.display().to_string();
            }
            cmd.env(key, value);
        }
        let (ok, out) = run(&mut cmd);
        assert!(ok, "{name}: {out}");
        assert!(
            !out.contains("sc_test_secret_value"),
            "{name}: secret printed"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(stack);
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let (ok, out) = run(Command::new("promtool").args(args).current_dir(dir));
    assert!(ok, "promtool {args:?}: {out}");
    out
}

#[test]
fn the_prometheus_files_pass_promtool() {
    let dir = repo("docker/prometheus");
    promtool(&["check", "config", "prometheus.yml"], &dir);
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(out.contains("15 rules found"), "{out}");
    let out = promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts");
    for name in [
        "ServiceDown",
        "DatabaseConnectionFailing",
        "HighErrorRate",
        "HighLatencyP95",
        "HighMemoryUsage",
        "IngestRejectSpike",
        "MaintenanceDown",
        "BackupTooOld",
        "RetentionFailing",
        "FollowerDetected",
        "RegistryFallingBehind",
        "DiskSpaceLow",
        "DiskSpaceCritical",
        "ReadReplicaDown",
        "ReadReplicaLagging",
    ] {
        assert!(alerts.contains(&format!("alert: {name}")), "{name}");
        let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).expect("tests");
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{name} has no unit test"
        );
    }
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo("docker/grafana/dashboards/shadowcheck.json"))
        .expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        if panel["datasource"]["type"] != "prometheus" {
            continue;
        }
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

/// Grafana's variables, replaced by what they expand to, so promtool can parse the query.
fn expand_grafana(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
}

#[test]
fn every_dashboard_query_parses() {
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 15,
        "dashboard has {} Prometheus queries",
        exprs.len()
    );
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"record": format!("dashboard:query_{i}"), "expr": expand_grafana(e)}))
        .collect();
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = shared_temp_dir("shadowcheck-dash-");
    std::fs::write(
        dir.join("dashboard-rules.yml"),
        serde_yaml::to_string(&file).expect("yaml"),
    )
    .expect("write");
    let out = promtool(&["check", "rules", "dashboard-rules.yml"], &dir);
    assert!(
        out.contains(&format!("{} rules found", exprs.len())),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
        } else {
            if word.starts_with("shadowcheck_") || word.starts_with("process_") {
                names.insert(word.clone());
            }
            word.clear();
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_stack_queries_is_exported() {
    let url = fresh_database().await.app_url();
    // The database doubles as its own read replica, so the replica's gauges are exported too.
    let serve = ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__DATABASE__READ_URL", url.as_str()),
        ],
        None,
    );
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    // One of each kind of traffic, so every histogram has been observed.
    let item = json!({"detected_at": "2026-10-01T00:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "wifi", "bssid": "a4:00:00:00:00:01"});
    client
        .post(serve.url("/api/v1/detections"))
        .json(&json!([item, {"bogus": 1}]))
        .send()
        .await
        .expect("post");
    client
        .get(serve.url("/api/v1/detections?limit=1"))
        .send()
        .await
        .expect("get");
    // The registry updater's gauges come from a background task that starts with the service:
    // scraped once it has measured, not before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = reqwest::get(format!("http://{}/metrics", serve.metrics_addr))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        if text.contains("shadowcheck_registry_lag_seconds")
            && text.contains("shadowcheck_db_replica_lag_seconds")
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the registry updater never reported its lag"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // The storage and retention metrics come from `shadowcheck maintenance`.
    let dir = shared_temp_dir("shadowcheck-maintenance-metrics-");
    let port = shadowcheck::db::embedded::free_port().expect("port");
    let mut maintenance = shadowcheck()
        .args([
            "maintenance",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DATABASE_URL", &url)
        .env("SHADOWCHECK__MAINTENANCE__BACKUP_DIR", &dir)
        .env(
            "SHADOWCHECK__MAINTENANCE__VOLUMES",
            format!("data={}", dir.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start maintenance");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let maintenance_text = loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            break r.text().await.expect("text");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance never served metrics"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let _ = maintenance.kill();
    let _ = maintenance.wait();
    let _ = std::fs::remove_dir_all(dir);
    let exported: BTreeSet<String> = text
        .lines()
        .chain(maintenance_text.lines())
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect();

    let mut used = BTreeSet::new();
    for e in dashboard_exprs() {
        used.extend(metric_names(&e));
    }
    let alerts: Yaml = serde_yaml::from_str(
        &std::fs::read_to_string(repo("docker/prometheus/alerts.yml")).expect("alerts"),
    )
    .expect("yaml");
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            used.extend(metric_names(rule["expr"].as_str().expect("expr")));
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "used in rules/dashboards but not exported: {missing:?}"
    );
}

#[tokio::test]
async fn the_images_commands_exist_in_the_binary() {
    let dockerfile = std::fs::read_to_string(repo("docker/Dockerfile")).expect("Dockerfile");
    let json_array = |prefix: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line"));
        let start = line.find('[').expect("exec form");
        serde_json::from_str(&line[start..]).expect("JSON array")
    };
    let health = json_array("CMD [\"/usr/local/bin/shadowcheck\"");
    let entrypoint = json_array("ENTRYPOINT");
    assert_eq!(entrypoint, vec!["/usr/local/bin/shadowcheck"]);
    let cmd = json_array("CMD [\"serve\"");
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(
        dockerfile.lines().any(|l| l.starts_with("USER 10001")),
        "non-root numeric user"
    );

    // Every subcommand the image and the compose file use exists.
    let doc = compose();
    let mut subcommands: BTreeSet<String> = [health[1].clone(), cmd[0].clone()].into();
    for (_, svc) in services(&doc).into_iter().filter(|(_, s)| {
        s["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("shadowcheck:"))
    }) {
        subcommands.insert(svc["command"][0].as_str().expect("command").to_owned());
        let test = svc["healthcheck"]["test"].as_sequence().map(|t| {
            t.iter()
                .filter_map(|v| v.as_str())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        if let Some(test) = test {
            assert_eq!(test[1], "/usr/local/bin/shadowcheck");
            subcommands.insert(test[2].clone());
        }
    }
    assert!(
        subcommands.contains("healthcheck")
            && subcommands.contains("migrate")
            && subcommands.contains("serve"),
        "{subcommands:?}"
    );
    for sub in &subcommands {
        let (ok, out) = run(shadowcheck().args([sub.as_str(), "--help"]));
        assert!(ok, "`shadowcheck {sub}` does not exist: {out}");
    }

    // And the health check really tells up from down.
    let url = fresh_database().await.app_url();
    let serve = ServeProcess::start(&[("DATABASE_URL", url.as_str())], None);
    serve.wait_ready(&crate::helpers::client()).await;
    // As in the container: the probe finds the port in the same settings the server reads.
    let (ok, out) = run(shadowcheck()
        .args(&health[1..])
        .env("SHADOWCHECK__SERVER__LISTEN", &serve.addr));
    assert!(ok, "healthcheck against a ready server failed: {out}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (ok, _) = run(shadowcheck().args([
        "healthcheck",
        "--url",
        &format!("http://{closed}/api/v1/health/ready"),
        "--timeout-secs",
        "2",
    ]));
    assert!(!ok, "healthcheck passed against nothing");
}

#[tokio::test]
/// A dump restored over the live database it came from (partitions, later rows and all) gives
/// back exactly what was dumped: `pg_restore --clean` failed here on partitions' constraints.
async fn restore_over_the_live_database_gives_back_exactly_the_dump() {
    let app = crate::helpers::spawn_app().await;
    assert_eq!(
        app.post_json(&Value::Array(crate::helpers::mixed_batch(500, 5)))
            .await
            .status(),
        201
    );
    // A second month, so more than one partition is dumped and restored.
    let old = json!({"detected_at": "2019-03-01T00:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "wifi", "bssid": "a4:00:00:00:09:01"});
    assert_eq!(app.post_json(&old).await.status(), 201);
    let before: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, md5(d::text) FROM sigint.signal_detections d ORDER BY id")
            .fetch_all(&app.db)
            .await
            .expect("rows");
    assert_eq!(before.len(), 501);
    let url: String = app.database_url();
    app.db.close().await;
    // The service stops first: its registry updater must not hold locks while the schema is
    // dropped (a deadlock otherwise, depending on timing), as an operator stops the API to restore.
    app.lifecycle.begin_shutdown();
    let _ = app.server.await;

    let dir = shared_temp_dir("shadowcheck-backup-");
    let (ok, out) = run(Command::new(repo("scripts/backup"))
        .env("DATABASE_URL", &url)
        .args(["--dir"])
        .arg(&dir));
    assert!(ok, "backup: {out}");
    let dumps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let dump = &dumps[0];
    assert!(dump.to_string_lossy().ends_with(".dump"));

    // Written after the dump, in a month of its own: the restore takes it away again.
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query("SELECT sigint.ensure_partition('2021-06-01')")
        .execute(&pool)
        .await
        .expect("partition");
    sqlx::query(
        "INSERT INTO sigint.signal_detections (detected_at, location, signal_type, bssid) \
         VALUES ('2021-06-02', ST_SetSRID(ST_MakePoint(1, 1), 4326), 'wifi', 'a4:00:00:00:09:02')",
    )
    .execute(&pool)
    .await
    .expect("a later row");
    pool.close().await;

    let (ok, out) = run(Command::new(repo("scripts/restore"))
        .env("DATABASE_URL", &url)
        .arg(dump));
    assert!(ok, "restore: {out}");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let after: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, md5(d::text) FROM sigint.signal_detections d ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(after, before, "every detection restored, byte for byte");
    let app_may_delete: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('shadowcheck_app', 'sigint.registry_queue', 'DELETE')",
    )
    .fetch_one(&pool)
    .await
    .expect("grant");
    assert!(
        app_may_delete,
        "the API role's grants come back with the dump"
    );
    assert!(
        shadowcheck::db::migrations_current(&shadowcheck::db::Pool::new(
            pool.clone(),
            &shadowcheck::config::Settings::default().database
        ))
        .await
        .expect("ledger"),
        "migration ledger restored"
    );
    // Restored partitions still accept new months through the partition function.
    let made: String = sqlx::query_scalar("SELECT sigint.ensure_partition('2018-05-01')")
        .fetch_one(&pool)
        .await
        .expect("partition");
    assert_eq!(made, "signal_detections_y2018m05");
    pool.close().await;

    // Retention: dumps older than --keep-days are deleted, fresh ones kept; non-dumps untouched.
    let stale = dir.join("shadowcheck-20000101T000000Z.dump");
    std::fs::copy(dump, &stale).expect("copy");
    let old_time = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .expect("open")
        .set_modified(old_time)
        .expect("mtime");
    std::fs::write(dir.join("notes.txt"), "keep me").expect("write");
    let (ok, out) = run(Command::new(repo("scripts/backup"))
        .env("DATABASE_URL", &url)
        .args(["--keep-days", "7", "--dir"])
        .arg(&dir));
    assert!(ok, "second backup: {out}");
    assert!(!stale.exists(), "stale dump kept: {out}");
    assert!(dump.exists() && dir.join("notes.txt").exists());

    // A file that is not a dump is refused before anything is touched.
    let (ok, _) = run(Command::new(repo("scripts/restore"))
        .env("DATABASE_URL", &url)
        .arg(dir.join("notes.txt")));
    assert!(!ok);
    let _ = std::fs::remove_dir_all(dir);
}

/// The app role the init script makes (every test's API runs as it) may store and read rows but
/// not change the schema, drop months or empty the detections.
#[tokio::test]
async fn the_api_role_cannot_alter_the_schema() {
    let db = fresh_database().await;
    let app = sqlx::PgPool::connect(&db.app_url())
        .await
        .expect("connect as app");
    // A month it may make (through the owner's function), but not drop.
    sqlx::query("SELECT sigint.ensure_partition('2015-07-01')")
        .execute(&app)
        .await
        .expect("the app role makes a month");
    for ddl in [
        "ALTER TABLE sigint.signal_detections ADD COLUMN sneaky int",
        "DROP TABLE sigint.idempotency_keys",
        "CREATE TABLE sigint.sneaky (x int)",
        "CREATE TABLE public.sneaky (x int)",
        "SELECT sigint.drop_partitions_before('2020-01-01')",
        "TRUNCATE sigint.signal_detections",
        "DELETE FROM sigint.signal_detections",
        "DELETE FROM sigint.transmitters",
    ] {
        let err = sqlx::query(ddl).execute(&app).await.expect_err(ddl);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{ddl}: {err}");
    }
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&app)
            .await
            .expect("role");
    assert!(!superuser);
}
