//! The embedded default: a PostgreSQL + PostGIS cluster that the binary initialises, starts,
//! reuses and stops under a data directory, so a laptop needs no database set-up at all.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster belongs to the `postgres`
//! system user and every server command runs through `runuser`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::distributions::{Alphanumeric, DistString};

use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{0}")]
    Setup(String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, EmbeddedError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A running cluster this process uses: started by it, found running from a previous, killed
/// run, or shared with another ShadowCheck process on the same data directory (a `keys create`
/// beside a running `serve`). The last process to leave stops it (`Users`).
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    port: u16,
    password: Secret,
    run_as_postgres: bool,
    users: Users,
    stopped: bool,
}

/// The processes using a cluster, one empty file each (`<pid>-<start time>`) under
/// `DATA/postgres-users`: a process leaving stops the cluster only when no other live one is
/// listed, so a command run beside a server never stops the server's database. Entries of dead
/// processes (a killed run) are ignored and removed.
#[derive(Debug)]
struct Users {
    dir: PathBuf,
    me: String,
}

impl Users {
    fn new(data_dir: &Path) -> Self {
        let pid = std::process::id();
        Self {
            dir: data_dir.join("postgres-users"),
            me: format!("{pid}-{}", start_time(pid).unwrap_or(0)),
        }
    }

    fn join(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let mine = self.dir.join(&self.me);
        std::fs::write(&mine, b"").map_err(io_err(&mine))
    }

    /// Leaves; returns the live processes still using the cluster.
    fn leave(&self) -> Vec<u32> {
        let _ = std::fs::remove_file(self.dir.join(&self.me));
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut others = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_user(&name) {
                Some((pid, started)) if start_time(pid) == Some(started) => others.push(pid),
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        others
    }
}

fn parse_user(name: &str) -> Option<(u32, u64)> {
    let (pid, started) = name.split_once('-')?;
    Some((pid.parse().ok()?, started.parse().ok()?))
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat` field 22): with the pid it
/// names one process, even after the pid is reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The PostgreSQL major version installed from Debian packages when none is present.
const DEFAULT_MAJOR: &str = "15";
const SUPERUSER: &str = "postgres";
pub const DATABASE: &str = "shadowcheck";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The newest installed PostgreSQL server binaries, if any (Debian layout).
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn postgis_installed(bin_dir: &Path) -> bool {
    let major = bin_dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or(DEFAULT_MAJOR);
    Path::new(&format!(
        "/usr/share/postgresql/{major}/extension/postgis.control"
    ))
    .exists()
}

fn run(mut cmd: Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| EmbeddedError::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(EmbeddedError::Command {
            command: shown,
            detail: format!(
                "{}; {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Installs PostgreSQL and PostGIS from Debian packages. Only possible as root; otherwise the
/// error says which packages to install.
pub fn ensure_packages() -> Result<PathBuf> {
    if let Some(bin) = find_bin_dir() {
        if postgis_installed(&bin) {
            return Ok(bin);
        }
    }
    let major = find_bin_dir()
        .and_then(|b| b.parent()?.file_name()?.to_str().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_MAJOR.to_owned());
    let packages = [
        format!("postgresql-{major}"),
        format!("postgresql-{major}-postgis-3"),
    ];
    if !is_root() {
        return Err(EmbeddedError::Setup(format!(
            "PostgreSQL with PostGIS is not installed; install the Debian packages {} \
             (or run as root once so ShadowCheck installs them), or set DATABASE_URL",
            packages.join(" ")
        )));
    }
    tracing::info!(packages = %packages.join(" "), "installing PostgreSQL + PostGIS from Debian packages");
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(install)?;
    find_bin_dir()
        .filter(|b| postgis_installed(b))
        .ok_or_else(|| EmbeddedError::Setup("PostGIS still missing after apt-get install".into()))
}

/// Picks a free loopback port. Racy in principle; the start retries on a clash.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(io_err(Path::new("127.0.0.1:0")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io_err(Path::new("127.0.0.1:0")))
}

impl EmbeddedPostgres {
    /// Initialises the cluster under `data_dir/postgres` if needed, starts it (or adopts one
    /// left running by a killed previous run) and creates the application database.
    pub fn start(data_dir: &Path) -> Result<Self> {
        let bin_dir = ensure_packages()?;
        let run_as_postgres = is_root();
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let data_dir = data_dir.canonicalize().map_err(io_err(data_dir))?;
        let cluster_dir = data_dir.join("postgres");
        let password_file = data_dir.join("postgres-password");

        if run_as_postgres {
            check_traversable(&data_dir)?;
        }

        let password = if password_file.exists() {
            Secret::new(read_trimmed(&password_file)?)
        } else {
            let generated = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
            write_private(&password_file, &generated)?;
            Secret::new(generated)
        };

        let mut pg = Self {
            bin_dir,
            cluster_dir,
            port: 0,
            password,
            run_as_postgres,
            users: Users::new(&data_dir),
            stopped: false,
        };
        if !pg.cluster_dir.join("PG_VERSION").exists() {
            pg.init()?;
        }
        // Listed before it may start: another process leaving now sees us and leaves it running.
        pg.users.join()?;
        let started = match pg.running_port() {
            Some(port) => {
                tracing::info!(port, dir = %pg.cluster_dir.display(), "using embedded PostgreSQL already running (another ShadowCheck process, or one left by a killed run)");
                pg.port = port;
                Ok(())
            }
            None => pg.launch(None).or_else(|e| match pg.running_port() {
                // Another process on this data directory started it a moment before us.
                Some(port) => {
                    pg.port = port;
                    Ok(())
                }
                None => Err(e),
            }),
        };
        if let Err(e) = started {
            pg.users.leave();
            pg.stopped = true;
            return Err(e);
        }
        pg.ensure_database()?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        if self.run_as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn init(&self) -> Result<()> {
        tracing::info!(dir = %self.cluster_dir.display(), "initialising embedded PostgreSQL cluster");
        std::fs::create_dir_all(&self.cluster_dir).map_err(io_err(&self.cluster_dir))?;
        // initdb reads the password from a file; it must be readable by the cluster's owner and
        // is removed right after.
        let pwfile = self.cluster_dir.with_file_name(".initdb-pw");
        write_private(&pwfile, self.password.expose())?;
        if self.run_as_postgres {
            chown_postgres(&self.cluster_dir)?;
            chown_postgres(&pwfile)?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.cluster_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        let result = run(cmd);
        let _ = std::fs::remove_file(&pwfile);
        result.map(|_| ())
    }

    /// The port of a postmaster already serving this cluster, if one is alive.
    fn running_port(&self) -> Option<u16> {
        let mut status = self.command("pg_ctl");
        status.arg("status").arg("-D").arg(&self.cluster_dir);
        run(status).ok()?;
        // postmaster.pid line 4 is the port.
        let pid_file = std::fs::read_to_string(self.cluster_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    /// Starts the postmaster on `port` (or a free one), retrying on a port clash.
    fn launch(&mut self, port: Option<u16>) -> Result<()> {
        let log = self.cluster_dir.join("server.log");
        let mut last_error = None;
        for _ in 0..3 {
            let port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            let mut cmd = self.command("pg_ctl");
            cmd.arg("start")
                .arg("-D")
                .arg(&self.cluster_dir)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                // Loopback TCP only; no Unix socket so nothing clashes with a system cluster.
                .arg(format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
                ));
            match run(cmd) {
                Ok(_) => {
                    tracing::info!(port, dir = %self.cluster_dir.display(), "embedded PostgreSQL started");
                    self.port = port;
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        Err(EmbeddedError::Setup(format!(
            "embedded PostgreSQL did not start ({}); server log: {}",
            last_error.map(|e| e.to_string()).unwrap_or_default(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )))
    }

    fn ensure_database(&self) -> Result<()> {
        let admin = self.url("postgres");
        let exists = psql(
            &self.bin_dir,
            admin.expose(),
            &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
        )?;
        if exists != "1" {
            psql(
                &self.bin_dir,
                admin.expose(),
                &format!("CREATE DATABASE {DATABASE}"),
            )?;
        }
        Ok(())
    }

    /// The PostgreSQL binaries (initdb, pg_ctl, psql, ...) this cluster runs on.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> Secret {
        Secret::new(format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password.expose(),
            self.port
        ))
    }

    /// Starts a stopped cluster again on the same port, so existing URLs keep working.
    pub fn restart(&mut self) -> Result<()> {
        if !self.stopped {
            return Ok(());
        }
        self.users.join()?;
        self.launch(Some(self.port))?;
        self.stopped = false;
        Ok(())
    }

    /// This process is done with the cluster: a fast shutdown (active sessions are ended,
    /// committed data is durable) unless another live ShadowCheck process still uses it.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        let others = self.users.leave();
        if !others.is_empty() {
            self.stopped = true;
            tracing::info!(processes = ?others, "embedded PostgreSQL left running for the other processes using it");
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.cluster_dir)
            .args(["-m", "fast", "-w"]);
        run(cmd)?;
        self.stopped = true;
        tracing::info!("embedded PostgreSQL stopped");
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "could not stop embedded PostgreSQL");
        }
    }
}

/// Runs one SQL command with the cluster's own `psql` (from `bin_dir`) against `url`; its output,
/// trimmed (unaligned, tuples only).
pub fn psql(bin_dir: &Path, url: &str, sql: &str) -> Result<String> {
    // Not through `run`: its error shows the command line, and the URL holds a password.
    let out = Command::new(bin_dir.join("psql"))
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .map_err(|e| EmbeddedError::Command {
            command: "psql".to_owned(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(EmbeddedError::Command {
            command: format!("psql -c {sql:?}"),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The `postgres` user must be able to walk into the data directory.
fn check_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor).map_err(io_err(ancestor))?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(EmbeddedError::Setup(format!(
                "the postgres user cannot enter {} (mode {:o}); choose another --data-dir or chmod o+x it",
                ancestor.display(),
                meta.permissions().mode() & 0o7777
            )));
        }
    }
    Ok(())
}

fn chown_postgres(path: &Path) -> Result<()> {
    run({
        let mut cmd = Command::new("chown");
        cmd.arg("-R").arg("postgres:postgres").arg(path);
        cmd
    })
    .map(|_| ())
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .map_err(io_err(path))?
        .trim()
        .to_owned())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))
}
