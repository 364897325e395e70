//! The Docker engine the stack runs on: started here when none runs (and stopped again), the
//! Compose v2 plugin, forwarding out of the docker bridges blocked while the test runs, and the
//! images under the names the compose file uses.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command to its end; stdout and stderr together, and whether it succeeded.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Like `run`, but a failure is a test failure naming the command and what it printed.
pub fn must(cmd: &mut Command) -> String {
    let (ok, out) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{out}");
    out
}

/// A path in the checkout under test. Cargo runs test binaries from the package root; the
/// compile-time manifest directory may be another checkout's (the quick-start test builds every
/// target from a fresh copy into the shared target directory).
pub fn repo(path: &str) -> PathBuf {
    let root = std::env::current_dir().expect("current directory");
    assert!(
        root.join("tests/engine/stand-ins/build").exists(),
        "run from the repository root (cargo test does): {}",
        root.display()
    );
    root.join(path)
}

pub fn docker() -> Command {
    Command::new("docker")
}

/// The engine: the one already running, or a `dockerd` this test started (and stops on drop).
pub struct Engine {
    started: Option<Child>,
}

impl Engine {
    pub fn ensure() -> Self {
        let answers = || run(docker().args(["info", "--format", "{{.ServerVersion}}"])).0;
        if answers() {
            return Self { started: None };
        }
        let log = repo("target/engine/dockerd.log");
        std::fs::create_dir_all(log.parent().expect("dir")).expect("log dir");
        let file = std::fs::File::create(&log).expect("dockerd log");
        // No iptables management: nothing is NATed out; published ports use docker-proxy.
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip6tables=false"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start dockerd (scripts/test installs docker.io)");
        let engine = Self {
            started: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        engine
    }

    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(child) = &mut self.started {
            // SAFETY: signalling the dockerd child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// While it lives, nothing from a docker bridge is forwarded to any other interface: containers
/// reach each other and the host's published ports, never the world.
pub struct ForwardBlock {
    rules: Vec<(&'static str, Vec<&'static str>)>,
}

impl ForwardBlock {
    pub fn install() -> Self {
        let mut rules = Vec::new();
        for tool in ["iptables", "ip6tables"] {
            for bridge in ["docker0", "br-+"] {
                let rule = vec!["FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "DROP"];
                let (ok, out) = run(Command::new(tool).arg("-I").args(&rule));
                if tool == "iptables" {
                    assert!(ok, "{tool} -I {rule:?}: {out}");
                }
                if ok {
                    rules.push((tool, rule));
                }
            }
        }
        Self { rules }
    }
}

impl Drop for ForwardBlock {
    fn drop(&mut self) {
        for (tool, rule) in &self.rules {
            let _ = run(Command::new(tool).arg("-D").args(rule));
        }
    }
}

/// The stand-in base images (tests/engine/stand-ins), then the API image from the shipped
/// Dockerfile, built on the engine exactly as the README says.
pub fn build_images() {
    must(&mut Command::new(repo("tests/engine/stand-ins/build")));
    let commit = run(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo(".")))
    .1;
    must(
        docker()
            .args(["build", "-q", "-f", "docker/Dockerfile"])
            .arg("--build-arg")
            .arg(format!("SHADOWCHECK_GIT_COMMIT={}", commit.trim()))
            .args(["-t", "shadowcheck:latest", "."])
            .current_dir(repo("."))
            .env("DOCKER_BUILDKIT", "0"),
    );
}

/// Every volume the engine holds, by name (anonymous ones included).
pub fn volumes() -> Vec<String> {
    let out = must(docker().args(["volume", "ls", "-q"]));
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}
