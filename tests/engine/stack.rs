//! One copy of the stack's files (compose/, docker/, scripts/) in a scratch directory, driven the
//! way a user drives it: the scripts, `docker compose` in compose/, HTTPS through the proxy with
//! the generated certificate and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::engine::{docker, must, repo, run};

/// The services a user starts here: the whole stack but Grafana, Loki and Alloy, which have no
/// Debian packages to make stand-ins from (README).
pub const SERVICES: [&str; 8] = [
    "postgis",
    "migrate",
    "api",
    "proxy",
    "prometheus",
    "alertmanager",
    "backup",
    "maintenance",
];

pub struct Stack {
    pub dir: PathBuf,
    client: Option<Https>,
}

impl Stack {
    /// The repository's stack files, copied so that secrets and `.env` stay out of the checkout.
    pub fn copy() -> Self {
        let dir = std::env::temp_dir().join(format!("shadowcheck-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("stack dir");
        for part in ["compose", "docker", "scripts"] {
            must(Command::new("cp").arg("-r").arg(repo(part)).arg(&dir));
        }
        for leftover in ["compose/.env", "compose/secrets"] {
            let _ = std::fs::remove_dir_all(dir.join(leftover));
            let _ = std::fs::remove_file(dir.join(leftover));
        }
        Self { dir, client: None }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A script of the stack, run from the stack's root as the README shows.
    pub fn script(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.dir.join("scripts").join(name));
        cmd.current_dir(&self.dir);
        cmd
    }

    /// `docker compose ...` in compose/.
    pub fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = docker();
        cmd.arg("compose")
            .args(args)
            .current_dir(self.dir.join("compose"));
        cmd
    }

    /// `docker compose exec -T SERVICE ...`, which must succeed.
    pub fn exec(&self, service: &str, args: &[&str]) -> String {
        let mut all = vec!["exec", "-T", service];
        all.extend_from_slice(args);
        must(&mut self.compose(&all))
    }

    /// One value from the database, as the superuser inside the postgis container.
    pub fn sql(&self, query: &str) -> String {
        self.exec(
            "postgis",
            &["psql", "-U", "postgres", "-d", "shadowcheck", "-Atc", query],
        )
        .trim()
        .to_owned()
    }

    pub fn sql_count(&self, query: &str) -> i64 {
        let text = self.sql(query);
        text.parse()
            .unwrap_or_else(|_| panic!("{query}: not a number: {text}"))
    }

    /// A JSON answer of Prometheus's HTTP API, asked from inside its container (not published).
    pub fn prometheus(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:9090{path}");
        let text = self.exec("prometheus", &["wget", "-q", "-O", "-", &url]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// The same for Alertmanager.
    pub fn alertmanager(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:9093{path}");
        let text = self.exec("alertmanager", &["wget", "-q", "-O", "-", &url]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// IDs of the running containers of a service.
    pub fn containers(&self, service: &str) -> Vec<String> {
        must(&mut self.compose(&["ps", "--status", "running", "-q", service]))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What `docker inspect -f FORMAT` says of a container.
    pub fn inspect(&self, id: &str, format: &str) -> String {
        must(docker().args(["inspect", "-f", format, id]))
            .trim()
            .to_owned()
    }

    pub fn logs(&self, service: &str) -> String {
        run(&mut self.compose(&["logs", "--no-color", service])).1
    }

    /// The HTTPS client a user would configure: the proxy's certificate from gen-secrets as its
    /// only root, the bootstrap key from gen-secrets as its bearer token.
    pub fn connect(&mut self) {
        let ca = self.path("compose/secrets/tls_cert.pem");
        let key = std::fs::read_to_string(self.path("compose/secrets/api_key")).expect("api_key");
        self.client = Some(Https {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls_config(&ca))),
            authorization: format!("Bearer {}", key.trim()),
        });
    }

    pub fn client(&self) -> &Https {
        self.client.as_ref().expect("connect() after gen-secrets")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, &Value::Null).await
    }

    pub async fn send(&self, method: Method, path: &str, body: &Value) -> (u16, Value) {
        let (status, bytes) = self
            .client()
            .request(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Stored detections, counted in the database.
    pub fn stored(&self) -> i64 {
        self.sql_count("SELECT count(*) FROM sigint.signal_detections")
    }

    /// Polls `check` every second until it holds; panics with `what` after `within`.
    pub async fn until<F, Fut>(&self, what: &str, within: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// HTTPS to the proxy's published port, one connection per request: hyper's HTTP/1.1 client
/// over rustls (ring, as the server), trusting only the stack's certificate.
#[derive(Clone)]
pub struct Https {
    tls: tokio_rustls::TlsConnector,
    authorization: String,
}

pub const PROXY: &str = "127.0.0.1:8443";

impl Https {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Vec<u8>), String> {
        use http_body_util::BodyExt;
        let exchange = async {
            let (status, body) = self.respond(method, path, body).await?;
            let bytes = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes.to_vec()))
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| "timeout".to_owned())?
    }

    /// A GET whose body is read as it comes (an event stream): the status once the headers are
    /// in, and the body.
    pub async fn open(&self, path: &str) -> Result<(u16, hyper::body::Incoming), String> {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.respond(Method::GET, path, &Value::Null),
        )
        .await
        .map_err(|_| "timeout".to_owned())?
    }

    /// Sends one request on a new connection; the status and the body still to be read.
    async fn respond(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(u16, hyper::body::Incoming), String> {
        use http_body_util::Full;
        let tcp = tokio::net::TcpStream::connect(PROXY)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, PROXY)
            .header(hyper::header::AUTHORIZATION, &self.authorization);
        let payload = if body.is_null() {
            Vec::new()
        } else {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            serde_json::to_vec(body).expect("json")
        };
        let request = request
            .body(Full::new(bytes::Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        Ok((response.status().as_u16(), response.into_body()))
    }
}

/// rustls with ring (as the server) trusting only `ca`.
fn tls_config(ca: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("cert") {
        roots.add(cert.expect("pem")).expect("root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// One detection with a unique marker in its SSID, so that every acknowledged one can be looked
/// for afterwards.
pub fn marked(run: &str, seq: usize) -> Value {
    let at = chrono::Utc::now() - chrono::Duration::seconds(60);
    json!({
        "detected_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "latitude": 52.52 + (seq % 100) as f64 * 1e-4,
        "longitude": 13.40,
        "signal_type": "wifi",
        "bssid": format!("a4:5e:{:02x}:{:02x}:{:02x}:{:02x}", seq / 16_777_216 % 256, seq / 65_536 % 256, seq / 256 % 256, seq % 256),
        "ssid": format!("{run}-{seq}"),
        "signal_strength_dbm": -60,
    })
}

/// What a steady writer saw: each answer's status, and the markers the service acknowledged.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub statuses: BTreeMap<String, usize>,
    pub acknowledged: Vec<String>,
}

impl LoadReport {
    pub fn failures(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| !s.starts_with('2'))
            .map(|(_, n)| n)
            .sum()
    }
}

/// A writer posting one marked detection at a time through the proxy until stopped, or at most
/// `max` requests (bounded, whatever happens).
pub struct Load {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<LoadReport>,
}

impl Load {
    pub fn start(stack: &Stack, run: &str, max: usize) -> Self {
        let client = stack.client().clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let run = run.to_owned();
        let task = tokio::spawn(async move {
            let mut report = LoadReport::default();
            for seq in 0..max {
                if token.is_cancelled() {
                    break;
                }
                let item = marked(&run, seq);
                let status = match client
                    .request(Method::POST, "/api/v1/detections", &item)
                    .await
                {
                    Ok((status, _)) => status.to_string(),
                    Err(e) if e == "timeout" => e,
                    Err(_) => "connection".to_owned(),
                };
                if status.starts_with('2') {
                    report.acknowledged.push(format!("{run}-{seq}"));
                }
                *report.statuses.entry(status).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            report
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> LoadReport {
        self.stop.cancel();
        self.task.await.expect("load task")
    }
}

/// Every acknowledged marker is stored (once).
pub fn assert_all_stored(stack: &Stack, run: &str, report: &LoadReport) {
    let stored = stack.sql(&format!(
        "SELECT string_agg(ssid, ',') FROM sigint.signal_detections WHERE ssid LIKE '{run}-%'"
    ));
    let stored: std::collections::HashMap<&str, usize> =
        stored.split(',').fold(Default::default(), |mut m, s| {
            *m.entry(s).or_default() += 1;
            m
        });
    let lost: Vec<&String> = report
        .acknowledged
        .iter()
        .filter(|m| !stored.contains_key(m.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged detections are missing: {:?}",
        lost.len(),
        report.acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
}
