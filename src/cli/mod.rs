//! The `shadowcheck` command line: parse, load settings, run the chosen subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod healthcheck;
mod import;

use crate::app::Application;
use crate::config::{LogFormat, Secret, Settings, Sources};
use crate::db::embedded::{self, EmbeddedPostgres};
use crate::lifecycle::Lifecycle;
use crate::telemetry::Exporters;

#[derive(Debug, Parser)]
#[command(
    name = "shadowcheck",
    version,
    about = "Resilient geospatial signal-ingest API (wifi, bluetooth, BLE, cellular) on PostGIS"
)]
pub struct Cli {
    /// Optional settings file (TOML or JSON); environment variables SHADOWCHECK__SECTION__KEY override it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stdout (auto: human-readable on a terminal, JSON lines otherwise).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Data directory of the embedded PostgreSQL (used when no database URL is configured).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API (and, without DATABASE_URL, the embedded PostgreSQL).
    Serve {
        /// API listen address.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Prometheus metrics listen address.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit non-zero if it is invalid.
    CheckConfig,
    /// Import capture files: WiGLE CSV (.csv, .csv.gz), geosubmit v2 JSON (.json, .json.gz) and
    /// Kismet logs (.kismet).
    Import {
        /// Validate only; store nothing (needs no database).
        #[arg(long)]
        dry_run: bool,
        /// Capture device UUID for every file (default: derived from each file's header).
        #[arg(long)]
        device_id: Option<String>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Manage API keys (stored as hashes; a new key is shown once).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Scheduled upkeep for the compose stack: drops monthly partitions older than
    /// `retention.months` (needs the schema owner's database URL) and serves the backup age and
    /// volume free space on the metrics listener, until SIGTERM.
    Maintenance {
        /// Prometheus metrics listen address.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Probe a running instance (for container HEALTHCHECKs: the image has no curl); exit 0 when
    /// the URL answers 2xx within the timeout, 1 otherwise.
    Healthcheck {
        /// Default: this configuration's own listener (`server.listen` on loopback, https when
        /// `server.tls` is set), or http://127.0.0.1:5000/api/v1/health/ready without one.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (once).
    Create {
        /// A unique name, e.g. the capture device or client it is for.
        #[arg(long)]
        name: String,
        /// ingest, read, operator or admin (admin implies all); repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List keys: name, prefix, scopes, created, last used, revoked.
    List,
    /// Revoke a key by name or prefix.
    Revoke { name_or_prefix: String },
}

impl Cli {
    fn sources(&self) -> Sources {
        let mut overrides = Vec::new();
        if let Some(dir) = &self.data_dir {
            overrides.push(("database.data_dir".to_owned(), dir.display().to_string()));
        }
        if let Some(format) = self.log_format {
            let name = match format {
                LogFormat::Auto => "auto",
                LogFormat::Json => "json",
                LogFormat::Pretty => "pretty",
            };
            overrides.push(("log.format".to_owned(), name.to_owned()));
        }
        if let Command::Serve {
            listen,
            metrics_listen,
        } = &self.command
        {
            if let Some(addr) = listen {
                overrides.push(("server.listen".to_owned(), addr.clone()));
            }
            if let Some(addr) = metrics_listen {
                overrides.push(("server.metrics_listen".to_owned(), addr.clone()));
            }
        }
        if let Command::Maintenance {
            metrics_listen: Some(addr),
        } = &self.command
        {
            overrides.push(("server.metrics_listen".to_owned(), addr.clone()));
        }
        Sources {
            file: self.config.clone(),
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    // Needs no settings, so a broken configuration cannot hide a healthy server (or vice versa).
    if let Command::Healthcheck { url, timeout_secs } = &cli.command {
        let url = url.clone().unwrap_or_else(|| {
            healthcheck::default_url(Settings::load(&cli.sources()).ok().as_ref())
        });
        return healthcheck::run(&url, Duration::from_secs(*timeout_secs));
    }
    let settings = match Settings::load(&cli.sources()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shadowcheck: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        print!("{}", settings.to_redacted_toml());
        eprintln!("shadowcheck: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let telemetry = crate::telemetry::init(&settings);
    let exporters = Arc::clone(&telemetry.exporters);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shadowcheck: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => serve(settings, exporters).await,
            Command::Migrate => migrate(settings).await,
            Command::Keys { action } => keys(settings, action).await,
            Command::Import {
                dry_run,
                device_id,
                paths,
            } => import::import(settings, dry_run, device_id, paths).await,
            Command::Maintenance { .. } => match settings.database.url.clone() {
                Some(url) => crate::maintenance::run(settings, url).await,
                // The embedded cluster belongs to `serve`, which applies retention itself.
                None => Err(anyhow::anyhow!(
                    "maintenance needs database.url (DATABASE_URL): the schema owner's URL of a \
                     database server; with the embedded default, `serve` applies retention itself"
                )),
            },
            Command::CheckConfig | Command::Healthcheck { .. } => Ok(()),
        }
    });
    // Logs and spans of the shutdown itself are flushed too.
    telemetry.shutdown(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "shadowcheck failed");
            eprintln!("shadowcheck: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configured database URL, or one for an embedded cluster this call starts.
async fn database(settings: &Settings) -> anyhow::Result<(Secret, Option<EmbeddedPostgres>)> {
    if let Some(url) = &settings.database.url {
        return Ok((url.clone(), None));
    }
    let dir = settings.database.data_dir.clone();
    tracing::info!(data_dir = %dir.display(), "no database URL configured; using the embedded PostgreSQL");
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir))
        .await
        .context("embedded PostgreSQL start-up panicked")??;
    Ok((pg.url(embedded::DATABASE), Some(pg)))
}

async fn serve(settings: Settings, exporters: Arc<Exporters>) -> anyhow::Result<()> {
    let lifecycle = Lifecycle::new();
    lifecycle.listen_for_signals();
    let (url, embedded) = database(&settings).await?;
    if embedded.is_some() && settings.auth.bootstrap_key.is_none() {
        first_run_key(&url, &settings).await?;
    }
    let app = Application::build(settings, &url, lifecycle)
        .await?
        .with_exporters(exporters);
    tracing::info!(
        listen = %app.local_addr()?,
        metrics_listen = %app.metrics_addr()?,
        version = env!("CARGO_PKG_VERSION"),
        "shadowcheck listening"
    );
    let served = app.run_until_stopped().await;
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    served?;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let (url, embedded) = database(&settings).await?;
    let pool = crate::db::lazy_pool(&url, &settings.database)?;
    crate::db::migrate(&pool)
        .await
        .context("migration failed")?;
    pool.inner().close().await;
    tracing::info!("migrations applied");
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    Ok(())
}

/// The embedded default's first start: with no key anywhere, create an admin key and show it
/// once, so the one-command quick start can ingest right away.
async fn first_run_key(url: &Secret, settings: &Settings) -> anyhow::Result<()> {
    let pool = crate::db::lazy_pool(url, &settings.database)?;
    crate::db::migrate_if_pending(&pool)
        .await
        .context("migration failed")?;
    let mut tx = pool.begin().await?;
    if crate::db::keys::count_active(&mut *tx).await? == 0 {
        let key = crate::auth::NewKey::generate();
        let scopes: Vec<String> = crate::auth::Scope::ALL
            .iter()
            .map(|s| s.to_string())
            .collect();
        crate::db::keys::insert(&mut *tx, "initial-admin", &key.prefix, &key.hash, &scopes).await?;
        tx.commit().await?;
        eprintln!(
            "\n  ShadowCheck created an admin API key (shown only this once; create more with `shadowcheck keys create`):\n\n    {}\n\n  Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`.\n",
            key.secret
        );
        tracing::info!(name = "initial-admin", prefix = %key.prefix, "created the first API key");
    } else {
        // Ended here, not by dropping it: a transaction left to its drop-time rollback kept
        // `close()` below waiting on a connection that stayed idle in transaction.
        tx.rollback().await?;
    }
    pool.inner().close().await;
    Ok(())
}

async fn keys(settings: Settings, action: KeysAction) -> anyhow::Result<()> {
    let (url, embedded) = database(&settings).await?;
    let pool = crate::db::lazy_pool(&url, &settings.database)?;
    if embedded.is_some() {
        crate::db::migrate_if_pending(&pool)
            .await
            .context("migration failed")?;
    }
    // One transaction per command: the same directly and through a transaction-mode pooler.
    let result = async {
        let mut tx = pool.begin().await?;
        match run_keys(&mut tx, action).await {
            Ok(()) => Ok::<_, anyhow::Error>(tx.commit().await?),
            Err(e) => {
                // Ended explicitly: `close()` must not wait on a drop-time rollback.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
    .await;
    pool.inner().close().await;
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    result
}

async fn run_keys(conn: &mut sqlx::PgConnection, action: KeysAction) -> anyhow::Result<()> {
    use crate::auth::{NewKey, Scope};
    match action {
        KeysAction::Create { name, scopes } => {
            let mut parsed: Vec<String> = Vec::new();
            for s in scopes.iter().flat_map(|s| s.split(',')) {
                let scope: Scope = s.trim().parse().map_err(anyhow::Error::msg)?;
                if !parsed.contains(&scope.to_string()) {
                    parsed.push(scope.to_string());
                }
            }
            if name.trim().is_empty() || name.chars().count() > 64 {
                anyhow::bail!("--name must be 1 to 64 characters");
            }
            // Names are shown in listings, logs and ownership: no line breaks, escapes or other
            // control characters, and not the names of keys that are not in the table.
            if name.chars().any(|c| c.is_control()) || name != name.trim() {
                anyhow::bail!(
                    "--name must be printable, without control characters or surrounding spaces"
                );
            }
            if matches!(name.as_str(), "bootstrap" | "anonymous") {
                anyhow::bail!("--name `{name}` is reserved");
            }
            let key = NewKey::generate();
            match crate::db::keys::insert(&mut *conn, &name, &key.prefix, &key.hash, &parsed).await
            {
                Ok(record) => {
                    eprintln!(
                        "created key `{}` (prefix {}, scopes {}); it is shown only now:",
                        record.name,
                        record.key_prefix,
                        parsed.join(",")
                    );
                    println!("{}", key.secret);
                    Ok(())
                }
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                    anyhow::bail!("a key named `{name}` already exists")
                }
                Err(e) => Err(e.into()),
            }
        }
        KeysAction::List => {
            println!(
                "{:<24} {:<12} {:<20} {:<25} {:<25} REVOKED",
                "NAME", "PREFIX", "SCOPES", "CREATED", "LAST USED"
            );
            let show = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into())
            };
            for k in crate::db::keys::list(&mut *conn).await? {
                println!(
                    "{:<24} {:<12} {:<20} {:<25} {:<25} {}",
                    k.name,
                    k.key_prefix,
                    k.scopes.join(","),
                    show(Some(k.created_at)),
                    show(k.last_used_at),
                    show(k.revoked_at)
                );
            }
            Ok(())
        }
        KeysAction::Revoke { name_or_prefix } => {
            use crate::db::keys::Revocation;
            match crate::db::keys::revoke(&mut *conn, &name_or_prefix).await? {
                Revocation::Revoked(k) => {
                    eprintln!("revoked key `{}` (prefix {})", k.name, k.key_prefix);
                    Ok(())
                }
                Revocation::NoneMatched => {
                    anyhow::bail!("no active key named or prefixed `{name_or_prefix}`")
                }
                Revocation::Ambiguous(keys) => anyhow::bail!(
                    "`{name_or_prefix}` matches {} active keys ({}); nothing was revoked: give the key's name",
                    keys.len(),
                    keys.iter()
                        .map(|k| format!("`{}` prefix {}", k.name, k.key_prefix))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    }
}
