//! The README's quick start, read out of README.md and run as written in a fresh copy of the
//! checkout, so the two cannot drift.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::shared_temp_dir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The commands of the README's "Quick start" block, comments stripped.
fn quick_start_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start"))
        .expect("a `## Quick start` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block in the quick start");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// What `git clone` of this working tree would hold (tracked and new, unignored files, and a
/// repository).
fn fresh_copy() -> PathBuf {
    let dir = shared_temp_dir("shadowcheck-quickstart-");
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(ROOT)
        .output()
        .expect("git ls-files");
    assert!(listed.status.success());
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let from = Path::new(ROOT).join(&name);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dir.join(&name);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &to).expect("copy");
    }
    // A clone has a .git: without one, build.rs (which watches .git/HEAD) would rebuild the
    // crate on every cargo call.
    let init = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&dir)
        .status()
        .expect("git init");
    assert!(init.success());
    dir
}

/// Runs `line` with bash in `dir`, sharing this build's target directory so nothing is built
/// twice, and none of the test process's own settings.
fn bash(line: &str, dir: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", line]).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SHADOWCHECK") || key == "DATABASE_URL" || key.starts_with("RUST_TEST") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", Path::new(ROOT).join("target"));
    cmd
}

/// Stops the serve process when the test fails while it runs: a panic would leave it, and the
/// cluster it started, running after the suite.
struct StopOnPanic(i32);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: signalling our own child; serve stops its cluster on SIGTERM.
            unsafe { libc::kill(self.0, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

#[tokio::test]
async fn readme_quick_start_runs_as_written() {
    let commands = quick_start_commands();
    assert_eq!(commands.len(), 2, "two commands: {commands:?}");
    let serve_line = commands
        .iter()
        .find(|c| c.ends_with(" serve"))
        .expect("a serve command");
    let test_line = commands
        .iter()
        .find(|c| *c != serve_line)
        .expect("a test command");
    // CI must run exactly the README's test command.
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == test_line),
        ".ci/run does not call `{test_line}`"
    );

    let dir = fresh_copy();
    // The serve line exactly as printed (on free ports): it builds, creates its own database
    // under ./data, prints the first key, serves, and stops cleanly on SIGTERM.
    let mut child = bash(serve_line, &dir)
        .env("SHADOWCHECK__SERVER__LISTEN", "127.0.0.1:0")
        .env("SHADOWCHECK__SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the serve line");
    let _stop = StopOnPanic(child.id() as i32);
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let out_tx = tx.clone();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send((true, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((false, line));
        }
    });
    // A cold release build on two cores takes minutes.
    let mut deadline = Instant::now() + Duration::from_secs(1500);
    let mut key = None;
    let mut addr = None;
    let mut seen = Vec::new();
    // The key (stderr) and the address (stdout) come on two pipes read by two threads, so
    // either can arrive first.
    while addr.is_none() || key.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining.min(Duration::from_secs(5))) {
            Ok((is_stdout, line)) => {
                if !is_stdout && line.trim().starts_with("sc_") {
                    key = Some(line.trim().to_owned());
                }
                if is_stdout {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if let Some(a) = v["listen"].as_str() {
                            addr = Some(a.to_owned());
                            // Listening means start-up is over: the key is already written.
                            deadline = deadline.min(Instant::now() + Duration::from_secs(10));
                        }
                    }
                }
                seen.push(line);
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("`{serve_line}` exited with {status}:\n{}", seen.join("\n"));
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "`{serve_line}` did not print its address and first admin key:\n{}",
            seen.join("\n")
        );
    }
    let (Some(addr), Some(key)) = (addr, key) else {
        unreachable!("the loop ends with both")
    };
    let client = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client
            .get(format!("http://{addr}/api/v1/health/ready"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < ready_by, "never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = client
        .post(format!("http://{addr}/api/v1/detections"))
        .bearer_auth(&key)
        .json(
            &json!({"detected_at": "2026-03-01T10:00:00Z", "latitude": 52.52, "longitude": 13.405,
                      "signal_type": "wifi", "bssid": "a4:2b:b0:11:22:33"}),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(stored.status(), 201);
    assert!(
        dir.join("data").is_dir(),
        "the embedded cluster lives in ./data"
    );
    an_import_then_the_map(&dir, &addr, &key).await;
    // SAFETY: signalling our own child (cargo run execs the binary, so this reaches serve).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "graceful exit");

    // The test line: the same set-up and build, without running the suite inside itself
    // (CI runs it as written; see the assertion on .ci/run above).
    let out = bash(&format!("{test_line} --no-run"), &dir)
        .output()
        .expect("run the test line");
    assert!(
        out.status.success(),
        "`{test_line} --no-run` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The quick start's next step as the README gives it: a day from the WiGLE app imported
/// beside the running server, then, with the real tools (tool-tests), `/` in headless Chromium
/// offline: the data framed, land and sea apart at zoom 3, the tag that rode along listed, and
/// its track drawn when it is clicked.
async fn an_import_then_the_map(dir: &Path, addr: &str, key: &str) {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let import_line = "cargo run --release -- import";
    assert!(
        readme.contains(&format!("`{import_line} ")),
        "the quick start names `{import_line} FILE...`"
    );
    let day = shadowcheck_scenarios::generate(7, chrono::Utc::now() - chrono::Duration::days(2));
    let file = "WigleWifi_day.csv";
    std::fs::write(dir.join(file), shadowcheck_scenarios::wigle::csv(&day)).expect("write");
    let out = bash(&format!("{import_line} {file}"), dir)
        .output()
        .expect("run the import");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`{import_line} {file}` failed:\n{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tag = day
        .truth
        .iter()
        .find(|t| t.role == "tag")
        .expect("the day has a tag");
    // The running server's detector scores what the import queued.
    let client = reqwest::Client::new();
    let listed_by = Instant::now() + Duration::from_secs(120);
    loop {
        let threats: Value = client
            .get(format!("http://{addr}/api/v1/threats"))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET threats")
            .json()
            .await
            .expect("json");
        if threats.to_string().contains(&tag.identifier) {
            break;
        }
        assert!(
            Instant::now() < listed_by,
            "the tag is not a threat after the import ({printed}): {threats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !cfg!(feature = "tool-tests") {
        return;
    }
    let shots = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{addr}/");
    let path = |name: &str| shots.path().join(name).to_string_lossy().into_owned();
    // Where the day went: its stops.
    let places: Vec<[f64; 2]> = day
        .detections
        .iter()
        .filter(|d| d["bt_address"] == tag.identifier.as_str())
        .step_by(40)
        .map(|d| {
            [
                d["longitude"].as_f64().expect("lon"),
                d["latitude"].as_f64().expect("lat"),
            ]
        })
        .collect();
    let map = crate::maps::page_script(
        "map_check.mjs",
        &[
            &url,
            key,
            &json!(places).to_string(),
            "[]",
            &path("map.png"),
        ],
        &[("ZOOM3", crate::maps::ZOOM3_MADRID_AND_THE_ATLANTIC)],
    )
    .await;
    eprintln!("map after the quick start and an import: {map}");
    crate::maps::assert_page_clean(&map);
    crate::maps::assert_drawn_in_the_open(&map);
    crate::maps::assert_land_and_sea_differ(&map);
    assert_eq!(
        map["timeline"]["reachable"], true,
        "the threats list covers the timeline: {map}"
    );
    let threats = crate::maps::page_script(
        "threats_check.mjs",
        &[
            &url,
            key,
            &tag.identifier,
            &path("threats.png"),
            &path("report.pdf"),
        ],
        &[],
    )
    .await;
    eprintln!("threats after the quick start and an import: {threats}");
    crate::maps::assert_page_clean(&threats);
    crate::maps::assert_listed_with_its_track(&threats);
}
