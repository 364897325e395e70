//! Settings: built-in defaults < optional file < environment (`SHADOWCHECK__SECTION__KEY`) <
//! command-line flags. Any key may instead be given as `<key>_file` naming a file that holds the
//! value (Docker secrets). This is the only module that reads settings. One file per section:
//! each field with its default beside it (`section!`), and the section's own validation.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

/// Declares a settings section: every field with its default beside it, `Default` from them.
/// Unknown keys are refused; a missing key takes its default.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }
    };
}

mod auth;
mod database;
mod ingest;
mod map;
mod notify;
mod privacy;
mod query;
mod registry;
mod server;
mod telemetry;
mod upkeep;

pub use auth::{AuthSettings, RateLimitSettings};
pub use database::DatabaseSettings;
pub use ingest::IngestSettings;
pub use map::MapSettings;
pub use notify::NotifySettings;
pub use privacy::{ExclusionZone, PrivacySettings};
pub use query::QuerySettings;
pub use registry::RegistrySettings;
pub use server::{ServerSettings, TlsSettings};
pub use telemetry::{LogFormat, LogSettings, LokiSettings, OtelSettings};
pub use upkeep::{MaintenanceSettings, RetentionSettings};

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
    pub notify: NotifySettings,
}

/// A setting that cannot be used: its key and why.
fn invalid(key: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("key `{key}`: {why}"))
}

/// An `http://` or `https://` URL (what Loki, OTLP, styles and origins must be).
fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
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

    /// Each section's own checks, then those across sections; each error names its key.
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.database.validate()?;
        self.ingest.validate()?;
        self.query.validate()?;
        self.log.validate()?;
        self.loki.validate()?;
        self.otel.validate()?;
        self.auth.validate()?;
        self.rate_limit.validate()?;
        self.privacy.validate()?;
        self.retention.validate()?;
        self.maintenance.validate()?;
        self.registry.validate()?;
        self.map.validate()?;
        self.notify.validate()?;
        if self.database.url.is_none() {
            // The embedded cluster lives in one process's data directory: it cannot be shared.
            if self.server.api_replicas > 1 {
                return Err(invalid(
                    "server.api_replicas",
                    "more than one API replica needs database.url (DATABASE_URL): the embedded \
                     database belongs to a single process",
                ));
            }
            if self.database.read_url.is_some() || self.database.transaction_pooler {
                return Err(invalid(
                    "database.read_url",
                    "read_url and transaction_pooler need database.url: the embedded database \
                     has no replica or pooler",
                ));
            }
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
    fn later_sources_override_earlier_ones() {
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
    fn a_secret_read_from_a_file_is_redacted() {
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
