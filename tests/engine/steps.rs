//! The steps, in the order a user meets them. Each states one behaviour of the stack.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::engine::{docker, must, run};
use crate::stack::{assert_all_stored, Load, Stack, SERVICES};

/// The test owns the compose project name `shadowcheck`; a user's stack of that name is left
/// alone and the test refuses to run.
pub fn no_stack_of_the_users() -> Result<(), String> {
    let out = must(docker().args([
        "ps",
        "-a",
        "-q",
        "--filter",
        "label=com.docker.compose.project=shadowcheck",
    ]));
    if out.trim().is_empty() {
        Ok(())
    } else {
        Err(
            "a compose project named `shadowcheck` already exists on this engine; \
             the stack test will not touch it (docker compose -p shadowcheck down)"
                .to_owned(),
        )
    }
}

pub async fn the_shipped_dockerfile_builds_the_api_image_on_the_engine(_: &mut Stack) {
    crate::engine::build_images();
    let version = must(docker().args(["run", "--rm", "shadowcheck:latest", "--version"]));
    assert!(version.starts_with("shadowcheck "), "{version}");
    // Distroless: no shell in the runtime image.
    let (has_shell, _) = run(docker().args([
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        "shadowcheck:latest",
        "-c",
        "true",
    ]));
    assert!(!has_shell, "the runtime image has a shell");
    assert_eq!(
        must(docker().args([
            "image",
            "inspect",
            "-f",
            "{{.Config.User}}",
            "shadowcheck:latest"
        ]))
        .trim(),
        "10001:10001"
    );
}

/// The README's "Production" block, as written: `scripts/gen-secrets`, then `cd compose && docker
/// compose up -d --wait`, naming the services that have images here (not Grafana, Loki, Alloy).
pub async fn gen_secrets_then_up_wait_boots_the_stack_within_three_minutes(stack: &mut Stack) {
    let commands = readme_production_commands();
    assert_eq!(
        commands,
        [
            "scripts/gen-secrets",
            "cd compose && docker compose up -d --wait"
        ],
        "the README's production block changed: run what it says here"
    );
    let t = Instant::now();
    must(
        Command::new("bash")
            .arg("-c")
            .arg(&commands[0])
            .current_dir(&stack.dir),
    );
    let up = format!("{} --wait-timeout 180 {}", commands[1], SERVICES.join(" "));
    must(
        Command::new("bash")
            .arg("-c")
            .arg(&up)
            .current_dir(&stack.dir),
    );
    println!("  up --wait took {:.0} s", t.elapsed().as_secs_f64());
    let states = must(&mut stack.compose(&[
        "ps",
        "-a",
        "--format",
        "{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}",
    ]));
    for line in states.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["migrate", "exited", .., "0"] => {}
            [svc, "running", "healthy", ..] if SERVICES.contains(svc) => {}
            _ => panic!("unexpected service state: {line}\n{states}"),
        }
    }
    stack.connect();
}

pub async fn ingest_through_the_tls_proxy_is_read_back(stack: &mut Stack) {
    let batch: Vec<Value> = (0..25).map(|i| crate::stack::marked("first", i)).collect();
    let (status, body) = stack
        .send(Method::POST, "/api/v1/detections", &json!(batch))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["accepted"], 25, "{body}");
    let (status, page) = stack.get("/api/v1/detections?ssid=first-7").await;
    assert_eq!(status, 200, "{page}");
    let features = page["features"].as_array().expect("features");
    assert_eq!(features.len(), 1, "{page}");
    assert_eq!(features[0]["properties"]["ssid"], "first-7");
    let (_, stats) = stack.get("/api/v1/stats").await;
    assert_eq!(stats["total"], 25, "{stats}");
}

/// Every job's targets answer Prometheus: itself, the API and maintenance.
pub async fn prometheus_scrapes_every_target(stack: &mut Stack) {
    stack
        .until("every target up", Duration::from_secs(60), || async {
            let targets = stack.prometheus("/api/v1/targets");
            let active = targets["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let jobs: BTreeSet<&str> = active
                .iter()
                .filter(|t| t["health"] == "up")
                .filter_map(|t| t["labels"]["job"].as_str())
                .collect();
            active.len() == 3
                && jobs == BTreeSet::from(["prometheus", "shadowcheck", "maintenance"])
        })
        .await;
}

/// After two rule evaluations nothing is pending or firing, in Prometheus nor in Alertmanager.
pub async fn no_alert_is_pending_or_firing_after_boot(stack: &mut Stack) {
    let evaluated = |stack: &Stack| {
        let rules = stack.prometheus("/api/v1/rules");
        rules["data"]["groups"]
            .as_array()
            .map(|groups| {
                groups.iter().all(|g| {
                    g["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"))
                })
            })
            .unwrap_or(false)
    };
    stack
        .until("rules evaluated", Duration::from_secs(60), || async {
            evaluated(stack)
        })
        .await;
    // A second evaluation (15 s apart) after the first, with every target scraped.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let listed = but_true_disk_alarms(&stack.prometheus("/api/v1/alerts")["data"]["alerts"]);
    assert!(listed.is_empty(), "alerts after boot: {listed:#?}");
    let sent = but_true_disk_alarms(&stack.alertmanager("/api/v2/alerts"));
    assert!(
        sent.is_empty(),
        "Alertmanager holds alerts after boot: {sent:#?}"
    );
}

/// A list of alerts without the true disk alarms among them.
fn but_true_disk_alarms(alerts: &Value) -> Vec<Value> {
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| !a_true_disk_alarm(a))
        .cloned()
        .collect()
}

/// `DiskSpaceLow` raised while the disk under the engine's volumes really is below its 15 %
/// threshold (the volumes share the host's disk) is the alert doing its job, not a boot fault.
fn a_true_disk_alarm(alert: &Value) -> bool {
    if alert["labels"]["alertname"] != "DiskSpaceLow" {
        return false;
    }
    let root = must(docker().args(["info", "--format", "{{.DockerRootDir}}"]));
    let df = must(Command::new("df").args(["-P", "-B1"]).arg(root.trim()));
    let numbers: Vec<f64> = df
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let &[size, _used, available] = numbers.as_slice() else {
        panic!("cannot read df: {df}");
    };
    let free = available / size;
    // A little margin: the share moves while images build and the stack writes.
    let low = free < 0.16;
    if low {
        eprintln!(
            "DiskSpaceLow is true here: {:.1} % free under {}",
            free * 100.0,
            root.trim()
        );
    }
    low
}

/// The API's log never says it was refused something by the database (the registry and the
/// detector delete from their queues; DELETE on the allow-list and safe zones).
pub async fn the_api_role_has_every_grant_it_uses(stack: &mut Stack) {
    // The registry updater has run a few passes by now.
    let logs = stack.logs("api");
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("permission denied"))
        .collect();
    assert!(
        denied.is_empty(),
        "{} lines like {:?}",
        denied.len(),
        denied.first()
    );
    let roles = stack.sql("SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity WHERE datname = 'shadowcheck'");
    assert!(
        roles.contains("shadowcheck_app"),
        "sessions on the database: {roles}"
    );
}

/// A day with a tag in the bag, uploaded through the proxy, makes the tag a threat: a page's
/// event stream opened before the upload hears of it through nginx (unbuffered), and the
/// threats list holds it.
pub async fn the_scenarios_follower_reaches_an_open_stream_and_the_threats(stack: &mut Stack) {
    // A page left open: its event stream, through the proxy, before the day is uploaded.
    let (status, mut stream) = stack
        .client()
        .open("/api/v1/threats/events")
        .await
        .expect("open the event stream");
    assert_eq!(status, 200, "GET /api/v1/threats/events");
    let start = chrono::Utc::now() - chrono::Duration::days(2);
    let scenario = shadowcheck_scenarios::generate(7, start);
    for chunk in scenario.detections.chunks(1_000) {
        let (status, body) = stack
            .send(Method::POST, "/api/v1/detections", &json!(chunk))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let tag = scenario
        .truth
        .iter()
        .find(|t| t.follower && t.certain && t.radio == "ble")
        .expect("the scenario has a tag in the bag");
    let uploaded = Instant::now();
    let event = threat_event_on(&mut stream, &tag.identifier, Duration::from_secs(180)).await;
    println!(
        "  the open stream heard of the tag {:.1} s after the upload: {event}",
        uploaded.elapsed().as_secs_f64()
    );
    stack
        .until(
            "the tag listed as a threat",
            Duration::from_secs(180),
            || async {
                let (status, body) = stack.get("/api/v1/threats?level=suspicious").await;
                status == 200
                    && body["threats"].as_array().is_some_and(|f| {
                        f.iter().any(|t| t["identifier"] == tag.identifier.as_str())
                    })
            },
        )
        .await;
    let (status, transmitters) = stack.get("/api/v1/transmitters?limit=1000").await;
    assert_eq!(status, 200);
    let listed = transmitters["features"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(listed > 10, "{listed} transmitters");
}

/// Reads a server-sent event stream until a `threat` event names `identifier`; its data line.
/// nginx buffering the stream would hold the event back until the deadline.
async fn threat_event_on(
    stream: &mut hyper::body::Incoming,
    identifier: &str,
    within: Duration,
) -> String {
    use http_body_util::BodyExt;
    let deadline = Instant::now() + within;
    let mut text = String::new();
    loop {
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if block.contains("event: threat") && block.contains(identifier) {
                return block
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, stream.frame())
            .await
            .unwrap_or_else(|_| {
                panic!("no threat event for {identifier} in {within:?}; had {text:?}")
            })
            .expect("the stream ended")
            .expect("stream");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// The detector's counter, Prometheus's FollowerDetected rule and Alertmanager, end to end.
pub async fn the_follower_alert_reaches_alertmanager(stack: &mut Stack) {
    stack
        .until(
            "FollowerDetected in Alertmanager",
            Duration::from_secs(120),
            || async {
                let alerts = stack.alertmanager("/api/v2/alerts");
                alerts.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["labels"]["alertname"] == "FollowerDetected")
                })
            },
        )
        .await;
}

pub async fn an_allowlist_entry_round_trips(stack: &mut Stack) {
    let entry = json!({"radio": "ble", "identifier": "c4:00:00:00:00:99", "note": "my own tag"});
    let (status, body) = stack.send(Method::POST, "/api/v1/allowlist", &entry).await;
    assert_eq!(status, 201, "{body}");
    let (_, list) = stack.get("/api/v1/allowlist").await;
    assert!(list.to_string().contains("c4:00:00:00:00:99"), "{list}");
    let (status, body) = stack
        .send(
            Method::DELETE,
            "/api/v1/allowlist/ble/c4:00:00:00:00:99",
            &Value::Null,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, list) = stack.get("/api/v1/allowlist").await;
    assert!(!list.to_string().contains("c4:00:00:00:00:99"), "{list}");
}

/// The service's own loop, run once more now that there is data, writes a dump it verified.
pub async fn the_backup_service_writes_a_verified_dump(stack: &mut Stack) {
    let at_start = stack.exec("backup", &["ls", "/var/lib/postgresql/backups"]);
    assert!(
        at_start.contains("shadowcheck-"),
        "no dump from the start: {at_start}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = stack.exec("backup", &["/usr/local/bin/backup-loop", "--once"]);
    assert!(out.contains("backup: wrote"), "{out}");
    // README: the restore drill copies the dumps out first.
    must(&mut stack.compose(&[
        "cp",
        "backup:/var/lib/postgresql/backups",
        "../restore-drill",
    ]));
}

pub async fn restore_of_a_backup_into_the_live_stack_succeeds(stack: &mut Stack) {
    let at_backup = stack.stored();
    let newest = std::fs::read_dir(stack.path("restore-drill"))
        .expect("restore-drill")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dump"))
        .max()
        .expect("a dump");
    // Written after the dump: gone after the restore.
    let batch: Vec<Value> = (0..5)
        .map(|i| crate::stack::marked("after-backup", i))
        .collect();
    let (status, _) = stack
        .send(Method::POST, "/api/v1/detections", &json!(batch))
        .await;
    assert_eq!(status, 201);
    assert_eq!(stack.stored(), at_backup + 5);
    let out = must(stack.script("restore").arg("--compose").arg(&newest));
    assert!(out.contains("restore: restored"), "{out}");
    assert_eq!(stack.stored(), at_backup);
    stack
        .until(
            "API ready after the restore",
            Duration::from_secs(90),
            || async { stack.get("/api/v1/stats").await.1["total"] == json!(at_backup) },
        )
        .await;
}

pub async fn restarting_postgis_under_ingest_loses_no_acknowledged_row(stack: &mut Stack) {
    let load = Load::start(stack, "pg-restart", 3_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    must(&mut stack.compose(&["restart", "postgis"]));
    stack
        .until("API ready again", Duration::from_secs(120), || async {
            stack.get("/api/v1/health/ready").await.0 == 200
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish().await;
    println!("  answers: {:?}", report.statuses);
    assert!(report.acknowledged.len() > 50, "{:?}", report.statuses);
    assert_all_stored(stack, "pg-restart", &report);
}

/// The API process dies as a crash would (SIGKILL from the host, not `docker stop`); the
/// engine's restart policy brings it back healthy.
pub async fn a_sigkilled_api_is_restarted_by_the_engine(stack: &mut Stack) {
    let id = stack.containers("api").pop().expect("api container");
    let restarts = stack.inspect(&id, "{{.RestartCount}}");
    let pid = stack.inspect(&id, "{{.State.Pid}}");
    must(std::process::Command::new("kill").args(["-KILL", &pid]));
    stack
        .until(
            "API restarted and healthy",
            Duration::from_secs(120),
            || async {
                stack.inspect(&id, "{{.RestartCount}}") != restarts
                    && stack.inspect(&id, "{{.State.Health.Status}}") == "healthy"
            },
        )
        .await;
    let (status, _) = stack.get("/api/v1/stats").await;
    assert_eq!(status, 200);
}

pub async fn deploy_under_steady_ingest_answers_every_request(stack: &mut Stack) {
    must(docker().args(["tag", "shadowcheck:latest", "shadowcheck:next"]));
    let load = Load::start(stack, "deploy", 5_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = must(stack.script("deploy").args(["next", "--wait-secs", "120"]));
    println!("{}", indent(&out));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish().await;
    println!("  answers: {:?}", report.statuses);
    assert_eq!(report.failures(), 0, "{:?}", report.statuses);
    assert_all_stored(stack, "deploy", &report);
    let env = std::fs::read_to_string(stack.path("compose/.env")).expect(".env");
    assert!(env.contains("SHADOWCHECK_VERSION=next"), "{env}");
    let ids = stack.containers("api");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        stack.inspect(&ids[0], "{{.Config.Image}}"),
        "shadowcheck:next"
    );
}

/// A release whose API cannot start (its image names a TLS certificate that is not there: its
/// migrations run, `serve` exits and the engine restarts it, again and again) never gets healthy:
/// deploy removes it and the running release keeps serving, with no failed request in between.
pub async fn a_tag_that_never_gets_healthy_is_rolled_back_by_itself(stack: &mut Stack) {
    let context = stack.path("broken-image");
    std::fs::create_dir_all(&context).expect("dir");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM shadowcheck:next\nENV SHADOWCHECK__SERVER__TLS__CERT_FILE=/missing/cert.pem \\\n    SHADOWCHECK__SERVER__TLS__KEY_FILE=/missing/key.pem\n",
    )
    .expect("Dockerfile");
    must(
        docker()
            .args(["build", "-q", "-t", "shadowcheck:broken"])
            .arg(&context)
            .env("DOCKER_BUILDKIT", "0"),
    );
    let before = stack.containers("api");
    let load = Load::start(stack, "broken", 5_000);
    let (ok, out) = run(stack.script("deploy").args(["broken", "--wait-secs", "45"]));
    println!("{}", indent(&out));
    assert!(!ok, "deploy of a broken tag succeeded");
    assert!(out.contains("rolling back to next"), "{out}");
    let report = load.finish().await;
    println!("  answers: {:?}", report.statuses);
    assert_eq!(report.failures(), 0, "{:?}", report.statuses);
    assert_all_stored(stack, "broken", &report);
    assert_eq!(stack.containers("api"), before);
    let env = std::fs::read_to_string(stack.path("compose/.env")).expect(".env");
    assert!(env.contains("SHADOWCHECK_VERSION=next"), "{env}");
    let maintenance = stack.containers("maintenance");
    assert_eq!(
        stack.inspect(&maintenance[0], "{{.Config.Image}}"),
        "shadowcheck:next"
    );
}

pub async fn down_then_up_keeps_the_data(stack: &mut Stack) {
    let before = stack.stored();
    must(&mut stack.compose(&["down"]));
    let mut up = vec!["up", "-d", "--wait", "--wait-timeout", "180"];
    up.extend_from_slice(&SERVICES);
    must(&mut stack.compose(&up));
    assert_eq!(stack.stored(), before);
    let (_, stats) = stack.get("/api/v1/stats").await;
    assert_eq!(stats["total"], json!(before), "{stats}");
}

/// `gen-secrets --scale 2`, then up: PgBouncer and a streaming replica join, two API replicas
/// write through the pooler and read from the replica.
pub async fn scale_profile_reads_from_the_replica_through_pgbouncer(stack: &mut Stack) {
    must(stack.script("gen-secrets").args(["--scale", "2"]));
    let mut up = vec!["up", "-d", "--wait", "--wait-timeout", "240"];
    up.extend_from_slice(&SERVICES);
    up.extend_from_slice(&["pgbouncer", "postgis-replica"]);
    must(&mut stack.compose(&up));
    assert_eq!(stack.containers("api").len(), 2);
    let batch: Vec<Value> = (0..10).map(|i| crate::stack::marked("scaled", i)).collect();
    let (status, body) = stack
        .send(Method::POST, "/api/v1/detections", &json!(batch))
        .await;
    assert_eq!(status, 201, "{body}");
    stack
        .until(
            "the replica serves reads",
            Duration::from_secs(90),
            || async {
                let (_, found) = stack.get("/api/v1/detections?ssid=scaled-3").await;
                let (_, detailed) = stack.get("/api/v1/health/detailed").await;
                found["features"].as_array().is_some_and(|f| f.len() == 1)
                    && detailed["replica"]["status"] == "ok"
                    && detailed["replica"]["reads_served"]
                        .as_u64()
                        .is_some_and(|n| n > 0)
            },
        )
        .await;
    let bouncer = stack.containers("pgbouncer").pop().expect("pgbouncer");
    let address = stack.inspect(
        &bouncer,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
    );
    let pooled = stack.sql_count(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'shadowcheck_app' AND host(client_addr) IN ('{}')",
        address.split_whitespace().collect::<Vec<_>>().join("','")
    ));
    assert!(
        pooled > 0,
        "no API session on the primary comes from PgBouncer ({address})"
    );
}

pub async fn one_of_two_api_replicas_stopped_under_load_loses_nothing(stack: &mut Stack) {
    let ids = stack.containers("api");
    assert_eq!(ids.len(), 2);
    let load = Load::start(stack, "replica-stop", 3_000);
    tokio::time::sleep(Duration::from_secs(4)).await;
    must(docker().args(["stop", "-t", "30", &ids[0]]));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let report = load.finish().await;
    println!("  answers: {:?}", report.statuses);
    assert_eq!(report.failures(), 0, "{:?}", report.statuses);
    assert!(report.acknowledged.len() > 50);
    assert_all_stored(stack, "replica-stop", &report);
}

/// After `down -v`: no container, network or volume of the project, and no anonymous volume
/// left by any of its containers.
pub fn down_v_leaves_no_container_network_or_volume(stack: &Stack, volumes_before: &[String]) {
    must(&mut stack.compose(&["--profile", "scale", "down", "-v", "--remove-orphans"]));
    let label = "label=com.docker.compose.project=shadowcheck";
    for kind in [
        ["ps", "-a", "-q", "--filter", label],
        ["network", "ls", "-q", "--filter", label],
        ["volume", "ls", "-q", "--filter", label],
    ] {
        let left = must(docker().args(kind));
        assert!(left.trim().is_empty(), "{kind:?} left: {left}");
    }
    let after = crate::engine::volumes();
    let new: Vec<&String> = after
        .iter()
        .filter(|v| !volumes_before.contains(v))
        .collect();
    assert!(new.is_empty(), "volumes left behind: {new:?}");
}

/// The commands of the README's "Production" block, comments stripped.
fn readme_production_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(crate::engine::repo("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Production"))
        .expect("a `## Production` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block in the production section");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What to look at when a step failed.
pub fn show_state(stack: &Stack) {
    let (_, ps) = run(&mut stack.compose(&["ps", "-a"]));
    println!("{}", indent(&ps));
    for svc in ["api", "proxy", "postgis", "pgbouncer", "postgis-replica"] {
        let logs = stack.logs(svc);
        let tail: Vec<&str> = logs.lines().rev().take(15).collect();
        println!("--- {svc} (last lines)");
        for line in tail.into_iter().rev() {
            println!("  {}", &line[..line.len().min(400)]);
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
