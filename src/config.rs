//! Settings: built-in defaults < optional file < environment (`SHADOWCHECK__SECTION__KEY`) <
//! command-line flags. Any key may instead be given as `<key>_file` naming a file that holds the
//! value (Docker secrets). This is the only module that reads settings.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

/// A value that must never be printed: `Debug` and `Serialize` both redact it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub ingest: IngestSettings,
    pub query: QuerySettings,
    pub log: LogSettings,
    pub loki: LokiSettings,
    pub otel: OtelSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub privacy: PrivacySettings,
    pub retention: RetentionSettings,
    pub maintenance: MaintenanceSettings,
    pub registry: RegistrySettings,
    pub map: MapSettings,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapSettings {
    /// A tile with more matching points than this is drawn as grid cells with counts.
    pub tile_max_points: u32,
    /// Cells a side of an aggregated tile (its 4096 units divided into this many).
    pub tile_grid: u32,
    /// Memory for built tiles, shared by every layer and filter; oldest dropped first.
    pub tile_cache_bytes: usize,
    /// A cached tile is rebuilt after this long even when this process stored nothing there
    /// (another replica's ingest, the detector's scores).
    pub tile_cache_ttl_secs: u64,
    /// Basemap for the page at `/`: a MapLibre style URL. Empty: a plain offline background.
    pub basemap_style_url: String,
}

impl Default for MapSettings {
    fn default() -> Self {
        Self {
            tile_max_points: 2_000,
            tile_grid: 64,
            tile_cache_bytes: 64 << 20,
            tile_cache_ttl_secs: 30,
            basemap_style_url: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Keep the transmitter registry up to date from new detections while serving.
    pub enabled: bool,
    /// Detections folded into the registry per transaction.
    pub chunk_rows: u32,
    /// Pause between polls once the queue is empty.
    pub idle_ms: u64,
    /// (transmitter, capture device) pairs rescored per transaction by the following detector.
    pub score_pairs: u32,
    /// A pair waits this long after new sightings before it is rescored, so a transmitter seen
    /// in every chunk is scored once per interval rather than once per chunk.
    pub score_settle_ms: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            chunk_rows: 500,
            idle_ms: 500,
            score_pairs: 100,
            score_settle_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Whole UTC months of detections kept before the current one; older monthly partitions are
    /// dropped. 0 keeps everything.
    pub months: u32,
    /// How often retention is applied (by `serve` when its role may drop partitions, and by
    /// `shadowcheck maintenance`).
    pub interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            months: 0,
            interval_secs: 3_600,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceSettings {
    /// Where `scripts/backup` writes its dumps; the newest verified one is reported as
    /// `shadowcheck_backup_last_success_timestamp_seconds` by `shadowcheck maintenance`.
    pub backup_dir: Option<PathBuf>,
    /// `name=path` pairs whose filesystem size and free space are reported
    /// (`shadowcheck_volume_size_bytes`, `shadowcheck_volume_free_bytes`).
    #[serde(deserialize_with = "comma_list")]
    pub volumes: Vec<String>,
}

impl DatabaseSettings {
    /// Connections one key may hold at once: the setting, or half the pool (at least 1).
    pub fn connections_per_key(&self) -> usize {
        let share = match self.max_connections_per_key {
            0 => self.max_connections / 2,
            n => n,
        };
        share.max(1) as usize
    }
}

impl MaintenanceSettings {
    /// The volumes as `(name, path)`; `validate` guarantees the form.
    pub fn volume_paths(&self) -> Vec<(String, PathBuf)> {
        self.volumes
            .iter()
            .filter_map(|v| v.split_once('='))
            .map(|(name, path)| (name.trim().to_owned(), PathBuf::from(path.trim())))
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExclusionZone {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    /// Drop access points whose SSID ends in `_nomap` or contains `_optout` (their owners asked
    /// not to be mapped). They are tagged `nomap` either way.
    pub drop_nomap: bool,
    /// Drop detections of locally administered (randomised) MACs; tagged `randomized-mac` either way.
    pub drop_randomized_macs: bool,
    /// Circles around a home or office whose detections are never stored. In the environment,
    /// a JSON list: `[{"lat": 52.52, "lon": 13.40, "radius_m": 300}]`.
    #[serde(deserialize_with = "zones")]
    pub exclusion_zones: Vec<ExclusionZone>,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            drop_nomap: true,
            drop_randomized_macs: false,
            exclusion_zones: Vec::new(),
        }
    }
}

fn zones<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ExclusionZone>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<ExclusionZone>),
        Json(String),
    }
    match Form::deserialize(d)? {
        Form::List(z) => Ok(z),
        Form::Json(text) if text.trim().is_empty() => Ok(Vec::new()),
        Form::Json(text) => serde_json::from_str(&text).map_err(serde::de::Error::custom),
    }
}

impl PrivacySettings {
    pub fn policy(&self) -> crate::domain::privacy::PrivacyPolicy {
        crate::domain::privacy::PrivacyPolicy {
            drop_nomap: self.drop_nomap,
            drop_randomized_macs: self.drop_randomized_macs,
            exclusion_zones: self
                .exclusion_zones
                .iter()
                .filter_map(|z| {
                    crate::domain::Position::new(z.lat, z.lon)
                        .ok()
                        .map(|p| (p, z.radius_m))
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// A key with every scope, e.g. from a Docker secret (`auth.bootstrap_key_file`).
    pub bootstrap_key: Option<Secret>,
    /// Let clients without a key read (GET) detections, tiles, features and stats.
    pub anonymous_read: bool,
    /// The same, under the name the map documentation uses (either one turns it on).
    pub public_read: bool,
    /// How long a verified key is trusted without asking the database again; revocation takes
    /// effect within this time.
    pub cache_ttl_secs: u64,
    /// Requests one key may have in progress at once (429 beyond), so a single key cannot
    /// hold every server slot; never more than `database.max_connections_per_key`, since each
    /// request may hold a connection. 0 leaves only that database share.
    pub max_concurrent_per_key: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            bootstrap_key: None,
            anonymous_read: false,
            public_read: false,
            cache_ttl_secs: 10,
            max_concurrent_per_key: 32,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Sustained requests per second, and burst, for one API key.
    pub per_key_per_second: u32,
    pub per_key_burst: u32,
    /// Sustained requests per second, and burst, for one client address (before authentication,
    /// so guessing keys is slow too).
    pub per_client_per_second: u32,
    pub per_client_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_key_per_second: 50,
            per_key_burst: 100,
            per_client_per_second: 100,
            per_client_burst: 200,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain and private key; TLS is terminated in-process when both are set.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// An empty value (an empty secret file, `VAR=`) means unset: the compose stack mounts an empty
/// read URL when there is no replica.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.filter(|v| !v.trim().is_empty()).map(Secret::new))
}

/// Accepts a list or a comma-separated string (how lists arrive from environment variables).
fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(items) => items,
        Form::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LokiSettings {
    /// Base URL of Loki (`http://loki:3100`); shipping is off when absent. A secret because it
    /// may carry basic-auth credentials.
    pub url: Option<Secret>,
    /// Value of the `environment` stream label.
    pub environment: String,
    /// Most log events held while Loki is slow or down; beyond it the oldest are dropped.
    pub queue_capacity: usize,
    /// Most events in one push.
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    /// Bound on one push request, so a Loki that never answers cannot pin the queue.
    pub timeout_ms: u64,
}

impl Default for LokiSettings {
    fn default() -> Self {
        Self {
            url: None,
            environment: "development".to_owned(),
            queue_capacity: 10_000,
            batch_size: 1_000,
            flush_interval_ms: 1_000,
            timeout_ms: 3_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelSettings {
    /// OTLP/HTTP endpoint base (`http://collector:4318`); tracing export is off when absent.
    pub endpoint: Option<String>,
    pub service_name: String,
    /// Fraction of new traces sampled (incoming sampled parents are always followed).
    pub sample_ratio: f64,
    pub timeout_ms: u64,
}

impl Default for OtelSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "shadowcheck".to_owned(),
            sample_ratio: 1.0,
            timeout_ms: 3_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// API listener.
    pub listen: SocketAddr,
    /// Prometheus metrics listener, kept apart so it is never exposed with the API.
    pub metrics_listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub drain_timeout_secs: u64,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Bound on handling one request, body included (cuts off endless bodies); 408 after it.
    pub request_timeout_secs: u64,
    /// Bound on receiving a request's headers (cuts off slowloris clients), and on a new
    /// connection sending its first request (silent sockets, HTTP/2 with no stream).
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed (keep-alive included).
    pub idle_timeout_secs: u64,
    /// A connection whose reader takes no bytes for this long is closed, mid-response too (an
    /// export nobody reads no longer holds its turn).
    pub write_stall_timeout_secs: u64,
    /// Open connections at most (also bounded by the file descriptor limit); at the cap the
    /// longest-idle one is closed to make room, so probes always get in.
    pub max_connections: usize,
    /// Largest request head (request line + headers); 431 above.
    pub max_header_bytes: usize,
    /// Requests handled at once; beyond it new ones are shed with 503 instead of queueing.
    /// Health probes do not count against it.
    pub max_concurrent_requests: usize,
    /// Slowest a request body may arrive, after `body_grace_secs`: a client trickling bytes
    /// cannot hold a slot (or an import) open. 408 below it.
    pub min_body_bytes_per_sec: u64,
    pub body_grace_secs: u64,
    /// Bodies larger than `large_body_bytes` (declared, read or inflated) handled at once; more
    /// wait, so concurrent maximum-size bodies cannot multiply the process's memory.
    pub max_large_bodies: usize,
    pub large_body_bytes: usize,
    /// Proxies (CIDRs) whose X-Forwarded-For is believed for the client address.
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
    /// Origins allowed to call the API from a browser (CORS); empty means same-origin only.
    #[serde(deserialize_with = "comma_list")]
    pub cors_allowed_origins: Vec<String>,
    /// Send Strict-Transport-Security (set when a TLS-terminating proxy fronts the API; always
    /// sent when TLS is terminated in-process).
    pub hsts: bool,
    pub tls: TlsSettings,
    /// How many API processes serve this database (the compose `scale` profile sets it).
    /// Only checked: more than one cannot use the embedded database.
    pub api_replicas: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// PostgreSQL URL; when absent the binary runs its own cluster under `data_dir`.
    pub url: Option<Secret>,
    /// Where the embedded cluster lives.
    pub data_dir: PathBuf,
    pub max_connections: u32,
    /// Database connections one API key's requests may hold at once (each request holds at
    /// most one), so a single caller cannot starve the others; 0 = half the pool, at least 1.
    pub max_connections_per_key: u32,
    pub min_connections: u32,
    /// Bound on waiting for a pooled connection on the request path.
    pub acquire_timeout_ms: u64,
    /// Bound on one health probe of the database.
    pub health_timeout_ms: u64,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// First delay between connection attempts at start-up; doubles (with jitter) up to the max.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Give up after this many start-up attempts; 0 means never.
    pub retry_max_attempts: u32,
    /// Longest any one statement of the API may run (PostgreSQL `statement_timeout`), so a
    /// costly query cannot hold connections from everyone else; 0 means unbounded.
    pub statement_timeout_ms: u64,
    /// A streaming replica (or a pooler in front of one) for reads: searches, tiles, OGC API
    /// and exports. Writes and reads of one's own writes stay on `url`. When it is down or
    /// lags more than `read_max_lag_secs`, reads go to `url` instead (logged and counted).
    #[serde(deserialize_with = "empty_is_none")]
    pub read_url: Option<Secret>,
    /// Replay lag beyond which reads leave the replica for the primary; 0 = any lag.
    pub read_max_lag_secs: u64,
    /// The URLs point at a transaction-mode pooler (PgBouncer `pool_mode = transaction`):
    /// every statement runs inside an explicit transaction (the server is only ours until
    /// the transaction ends), prepared statements are not cached, and the statement timeout
    /// is set per transaction instead of as a start-up parameter (PgBouncer refuses those).
    pub transaction_pooler: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most detections accepted in one request.
    pub max_batch_items: usize,
    /// How far in the future (device clock skew) a detection time may be.
    pub max_future_skew_secs: i64,
    /// Largest file accepted by `POST /api/v1/imports` (streamed, never held in memory).
    pub max_import_bytes: u64,
    /// Bound on one file import over HTTP (large files take minutes).
    pub import_timeout_secs: u64,
    /// How long an `Idempotency-Key` answer is kept for replay.
    pub idempotency_ttl_hours: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySettings {
    pub default_limit: u32,
    pub max_limit: u32,
    /// Exports (`f=csv|fgb|geojson|geojsonseq|kml`) streaming at once; each holds a database
    /// connection while it runs. Beyond this: 503 with Retry-After.
    pub max_concurrent_exports: usize,
    /// Exports one key may run at once (429 beyond), so one reader never holds every turn.
    pub max_exports_per_key: usize,
    /// Longest an export's query may run (a slow reader slows it down).
    pub export_timeout_secs: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `pretty` when the log stream is a terminal, `json` otherwise (pipes, files, containers).
    Auto,
    Json,
    Pretty,
}

impl LogFormat {
    /// What `auto` means for a stream that is (or is not) a terminal.
    pub fn resolve(self, terminal: bool) -> LogFormat {
        match self {
            Self::Auto if terminal => Self::Pretty,
            Self::Auto => Self::Json,
            other => other,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing` env-filter directive, e.g. `info,sqlx=warn`.
    pub level: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            drain_timeout_secs: 15,
            body_limit_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 60,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            write_stall_timeout_secs: 60,
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            max_concurrent_requests: 256,
            min_body_bytes_per_sec: 1024,
            body_grace_secs: 10,
            max_large_bodies: 2,
            large_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            hsts: false,
            tls: TlsSettings::default(),
            api_replicas: 1,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: PathBuf::from("./data"),
            max_connections: 10,
            max_connections_per_key: 0,
            min_connections: 0,
            acquire_timeout_ms: 3_000,
            health_timeout_ms: 1_000,
            migrate_on_start: true,
            retry_initial_ms: 250,
            retry_max_ms: 10_000,
            retry_max_attempts: 0,
            statement_timeout_ms: 30_000,
            read_url: None,
            read_max_lag_secs: 30,
            transaction_pooler: false,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_batch_items: 10_000,
            max_future_skew_secs: 300,
            max_import_bytes: 1024 * 1024 * 1024,
            import_timeout_secs: 3_600,
            idempotency_ttl_hours: 24,
        }
    }
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            default_limit: 1_000,
            max_limit: 10_000,
            max_concurrent_exports: 2,
            max_exports_per_key: 1,
            export_timeout_secs: 3_600,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info,sqlx=warn".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}`: cannot read file {path}: {source}")]
    SecretFile {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// Where settings come from besides the defaults. `env` is passed in (not read from the process)
/// so tests never mutate the process environment.
#[derive(Debug, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: HashMap<String, String>,
    /// Command-line flags as `(key, value)`, the highest precedence.
    pub overrides: Vec<(String, String)>,
}

impl Settings {
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let defaults = config::Config::try_from(&Settings::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(file) = &sources.file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file.as_path()));
        }
        // The conventional DATABASE_URL, below the namespaced variables.
        let mut env = sources.env.clone();
        if let Some(url) = sources.env.get("DATABASE_URL") {
            env.entry("SHADOWCHECK__DATABASE__URL".to_owned())
                .or_insert_with(|| url.clone());
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SHADOWCHECK")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let layered: serde_json::Value = builder.build()?.try_deserialize()?;
        let resolved = resolve_secret_files(layered)?;

        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&resolved)?);
        for (key, value) in &sources.overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Cross-field checks the types alone cannot express; each names its key.
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("key `{key}`: {why}")));
        if self.retention.interval_secs < 60 {
            return bad("retention.interval_secs", "must be at least 60");
        }
        if self.retention.months > 1_200 {
            return bad(
                "retention.months",
                "must be at most 1200 (0 keeps everything)",
            );
        }
        for volume in &self.maintenance.volumes {
            let well_formed = volume.split_once('=').is_some_and(|(name, path)| {
                !name.trim().is_empty() && path.trim().starts_with('/')
            });
            if !well_formed {
                return bad(
                    "maintenance.volumes",
                    "entries are name=/absolute/path, separated by commas",
                );
            }
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if self.database.max_connections_per_key > self.database.max_connections {
            return bad(
                "database.max_connections_per_key",
                "must not exceed database.max_connections",
            );
        }
        if self.database.min_connections > self.database.max_connections {
            return bad(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        if self.database.acquire_timeout_ms == 0 {
            return bad("database.acquire_timeout_ms", "must be positive");
        }
        if self.database.retry_initial_ms == 0
            || self.database.retry_initial_ms > self.database.retry_max_ms
        {
            return bad(
                "database.retry_initial_ms",
                "must be positive and at most database.retry_max_ms",
            );
        }
        if self.ingest.max_batch_items == 0 {
            return bad("ingest.max_batch_items", "must be at least 1");
        }
        if self.ingest.max_future_skew_secs < 0 {
            return bad("ingest.max_future_skew_secs", "must not be negative");
        }
        // Zero would purge every key at once; a year is more than any retry needs.
        if !(1..=8_760).contains(&self.ingest.idempotency_ttl_hours) {
            return bad("ingest.idempotency_ttl_hours", "must be between 1 and 8760");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return bad("log.level", &format!("not a tracing filter: {e}"));
        }
        if self.query.default_limit == 0 || self.query.default_limit > self.query.max_limit {
            return bad(
                "query.default_limit",
                "must be between 1 and query.max_limit",
            );
        }
        if self.registry.score_pairs == 0 {
            return bad("registry.score_pairs", "must be at least 1");
        }
        if !(1..=100_000).contains(&self.map.tile_max_points) {
            return bad("map.tile_max_points", "must be between 1 and 100000");
        }
        if ![8, 16, 32, 64, 128, 256, 512].contains(&self.map.tile_grid) {
            return bad(
                "map.tile_grid",
                "must be one of 8, 16, 32, 64, 128, 256, 512",
            );
        }
        let style = &self.map.basemap_style_url;
        if !(style.is_empty() || style.starts_with("http://") || style.starts_with("https://")) {
            return bad("map.basemap_style_url", "must be an http(s) URL or empty");
        }
        if self.registry.chunk_rows == 0 {
            return bad("registry.chunk_rows", "must be at least 1");
        }
        if self.server.max_large_bodies == 0 {
            return bad("server.max_large_bodies", "must be at least 1");
        }
        if self.server.body_limit_bytes < 1024 {
            return bad("server.body_limit_bytes", "must be at least 1024");
        }
        for cidr in &self.server.trusted_proxies {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                return bad(
                    "server.trusted_proxies",
                    &format!("`{cidr}` is not an IP address or CIDR"),
                );
            }
        }
        for origin in &self.server.cors_allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return bad(
                    "server.cors_allowed_origins",
                    &format!("`{origin}` is not an origin like https://map.example.org"),
                );
            }
        }
        if self.server.tls.cert_file.is_some() != self.server.tls.key_file.is_some() {
            return bad(
                "server.tls.cert_file",
                "cert_file and key_file must be given together",
            );
        }
        if self.server.max_header_bytes < 8192 {
            return bad("server.max_header_bytes", "must be at least 8192");
        }
        for (key, value) in [
            ("server.idle_timeout_secs", self.server.idle_timeout_secs),
            (
                "server.write_stall_timeout_secs",
                self.server.write_stall_timeout_secs,
            ),
            ("server.max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                return bad(key, "must be positive");
            }
        }
        if self.server.request_timeout_secs == 0
            || self.server.header_read_timeout_secs == 0
            || self.server.max_concurrent_requests == 0
        {
            return bad(
                "server.request_timeout_secs",
                "timeouts and max_concurrent_requests must be positive",
            );
        }
        if self.rate_limit.per_key_per_second == 0
            || self.rate_limit.per_client_per_second == 0
            || self.rate_limit.per_key_burst == 0
            || self.rate_limit.per_client_burst == 0
        {
            return bad(
                "rate_limit.per_key_per_second",
                "rates and bursts must be at least 1",
            );
        }
        if let Some(key) = &self.auth.bootstrap_key {
            if key.expose().len() < 24 {
                return bad("auth.bootstrap_key", "must be at least 24 characters");
            }
        }
        for zone in &self.privacy.exclusion_zones {
            if crate::domain::Position::new(zone.lat, zone.lon).is_err()
                || !(zone.radius_m > 0.0 && zone.radius_m <= 100_000.0)
            {
                return bad(
                    "privacy.exclusion_zones",
                    "each zone needs a valid lat/lon and 0 < radius_m <= 100000",
                );
            }
        }
        if self.loki.queue_capacity == 0 || self.loki.batch_size == 0 {
            return bad(
                "loki.queue_capacity",
                "queue_capacity and batch_size must be at least 1",
            );
        }
        if let Some(url) = &self.loki.url {
            if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) {
                return bad("loki.url", "must be an http:// or https:// URL");
            }
        }
        if let Some(endpoint) = &self.otel.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return bad("otel.endpoint", "must be an http:// or https:// URL");
            }
        }
        if !(0.0..=1.0).contains(&self.otel.sample_ratio) {
            return bad("otel.sample_ratio", "must be between 0 and 1");
        }
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.read_url", &self.database.read_url),
        ] {
            if let Some(url) = url {
                let u = url.expose();
                if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                    return bad(key, "must start with postgres:// or postgresql://");
                }
            }
        }
        if self.database.url.is_none() {
            // The embedded cluster lives in one process's data directory: it cannot be shared.
            if self.server.api_replicas > 1 {
                return bad(
                    "server.api_replicas",
                    "more than one API replica needs database.url (DATABASE_URL): the embedded \
                     database belongs to a single process",
                );
            }
            if self.database.read_url.is_some() || self.database.transaction_pooler {
                return bad(
                    "database.read_url",
                    "read_url and transaction_pooler need database.url: the embedded database \
                     has no replica or pooler",
                );
            }
        }
        if self.server.api_replicas == 0 {
            return bad("server.api_replicas", "must be at least 1");
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Replaces every `<key>_file = PATH` with `<key> = <contents of PATH>` (trailing newline
/// trimmed). Giving both forms of one key is an error, so a forgotten variable cannot silently win.
/// Settings whose own names end in `_file` because their value is a path: not the
/// `<key>_file` indirection.
const PATH_SETTINGS: &[&str] = &["server.tls.cert_file", "server.tls.key_file"];

fn resolve_secret_files(value: serde_json::Value) -> Result<serde_json::Value, ConfigError> {
    fn walk(prefix: &str, value: serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        let serde_json::Value::Object(map) = value else {
            return Ok(value);
        };
        let mut out = serde_json::Map::new();
        for (key, val) in map {
            let full = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match (key.strip_suffix("_file"), &val) {
                (Some(base), serde_json::Value::String(path))
                    if !base.is_empty() && !PATH_SETTINGS.contains(&full.as_str()) =>
                {
                    let contents = read_secret_file(&full, Path::new(path))?;
                    if out.contains_key(base) {
                        return Err(ConfigError::Invalid(format!(
                            "key `{full}` and `{}` are both set; give only one",
                            full.trim_end_matches("_file")
                        )));
                    }
                    out.insert(base.to_owned(), serde_json::Value::String(contents));
                }
                _ => {
                    let walked = walk(&full, val)?;
                    if out.contains_key(&key) {
                        return Err(ConfigError::Invalid(format!(
                            "key `{full}` and `{full}_file` are both set; give only one"
                        )));
                    }
                    out.insert(key, walked);
                }
            }
        }
        Ok(serde_json::Value::Object(out))
    }
    // Unset optional keys arrive as null; a null `url` must not clash with `url_file`.
    walk("", strip_nulls(value))
}

fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    let contents = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    Ok(contents.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load(&Sources::default()).expect("defaults load");
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(s.server.metrics_listen.to_string(), "127.0.0.1:9090");
        assert!(s.database.url.is_none());
    }

    #[test]
    fn tls_paths_from_the_environment_are_paths_not_file_indirections() {
        let sources = Sources {
            env: env(&[
                (
                    "SHADOWCHECK__SERVER__TLS__CERT_FILE",
                    "/run/secrets/cert.pem",
                ),
                ("SHADOWCHECK__SERVER__TLS__KEY_FILE", "/run/secrets/key.pem"),
            ]),
            ..Sources::default()
        };
        let s = Settings::load(&sources).expect("load");
        assert_eq!(
            s.server.tls.cert_file.as_deref(),
            Some(Path::new("/run/secrets/cert.pem"))
        );
        assert_eq!(
            s.server.tls.key_file.as_deref(),
            Some(Path::new("/run/secrets/key.pem"))
        );
    }

    #[test]
    fn env_beats_file_and_cli_beats_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[query]\ndefault_limit = 7\nmax_limit = 50\n").expect("write");
        let sources = Sources {
            file: Some(file),
            env: env(&[("SHADOWCHECK__QUERY__DEFAULT_LIMIT", "9")]),
            overrides: vec![],
        };
        let s = Settings::load(&sources).expect("load");
        assert_eq!((s.query.default_limit, s.query.max_limit), (9, 50));
        let sources = Sources {
            overrides: vec![("server.listen".into(), "127.0.0.1:6000".into())],
            env: env(&[("SHADOWCHECK__SERVER__LISTEN", "127.0.0.1:7000")]),
            ..Sources::default()
        };
        assert_eq!(
            Settings::load(&sources).expect("load").server.listen.port(),
            6000
        );
    }

    #[test]
    fn secret_from_file_and_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://u:hunter2@db/x\n").expect("write");
        let sources = Sources {
            env: env(&[(
                "SHADOWCHECK__DATABASE__URL_FILE",
                file.to_str().expect("utf8"),
            )]),
            ..Sources::default()
        };
        let s = Settings::load(&sources).expect("load");
        assert_eq!(
            s.database.url.as_ref().map(Secret::expose),
            Some("postgres://u:hunter2@db/x")
        );
        let shown = s.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn several_api_replicas_or_a_replica_refuse_the_embedded_database() {
        let load = |pairs: &[(&str, &str)]| {
            Settings::load(&Sources {
                env: env(pairs),
                ..Sources::default()
            })
        };
        for refused in [
            vec![("SHADOWCHECK__SERVER__API_REPLICAS", "2")],
            vec![("SHADOWCHECK__DATABASE__READ_URL", "postgres://r/db")],
            vec![("SHADOWCHECK__DATABASE__TRANSACTION_POOLER", "true")],
        ] {
            let e = load(&refused).expect_err("embedded database with scale-out settings");
            assert!(e.to_string().contains("database.url"), "{e}");
        }
        let s = load(&[
            ("DATABASE_URL", "postgres://a/b"),
            ("SHADOWCHECK__SERVER__API_REPLICAS", "3"),
            ("SHADOWCHECK__DATABASE__READ_URL", "postgres://r/db"),
        ])
        .expect("an external database scales");
        assert_eq!(s.server.api_replicas, 3);
        assert_eq!(
            s.database.read_url.as_ref().map(Secret::expose),
            Some("postgres://r/db")
        );
        // An empty read URL (the compose stack's file when there is no replica) means none.
        let s = load(&[
            ("DATABASE_URL", "postgres://a/b"),
            ("SHADOWCHECK__DATABASE__READ_URL", ""),
        ])
        .expect("empty read url");
        assert!(s.database.read_url.is_none());
        assert!(load(&[
            ("DATABASE_URL", "postgres://a/b"),
            ("SHADOWCHECK__DATABASE__READ_URL", "mysql://r/db"),
        ])
        .is_err());
    }

    #[test]
    fn database_url_env_is_honoured_below_namespaced() {
        let s = Settings::load(&Sources {
            env: env(&[("DATABASE_URL", "postgres://a/b")]),
            ..Sources::default()
        })
        .expect("load");
        assert_eq!(
            s.database.url.as_ref().map(Secret::expose),
            Some("postgres://a/b")
        );
        let s = Settings::load(&Sources {
            env: env(&[
                ("DATABASE_URL", "postgres://a/b"),
                ("SHADOWCHECK__DATABASE__URL", "postgres://c/d"),
            ]),
            ..Sources::default()
        })
        .expect("load");
        assert_eq!(
            s.database.url.as_ref().map(Secret::expose),
            Some("postgres://c/d")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "SHADOWCHECK__DATABASE__MAX_CONNECTIONS",
                "lots",
                "max_connections",
            ),
            ("SHADOWCHECK__SERVER__LISTEN", "not-an-address", "listen"),
            (
                "SHADOWCHECK__DATABASE__MAX_CONNECTIONS",
                "0",
                "database.max_connections",
            ),
            ("SHADOWCHECK__DATABASE__URL", "mysql://x", "database.url"),
            (
                "SHADOWCHECK__DATABASE__URL_FILE",
                "/nonexistent/secret",
                "database.url_file",
            ),
            ("SHADOWCHECK__SERVER__BOGUS", "1", "bogus"),
        ];
        for (key, value, named) in cases {
            let err = Settings::load(&Sources {
                env: env(&[(key, value)]),
                ..Sources::default()
            })
            .expect_err(key)
            .to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
    }
}
