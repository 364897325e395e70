//! ShadowCheck: a resilient geospatial signal-ingest API.

/// The transmitter registry, kept up to date beside ingest.
pub mod analysis;
/// Wiring: builds the state, router and listeners; the serve loop and background tasks.
pub mod app;
/// API keys, scopes and the per-key rate limit.
pub mod auth;
/// Command-line interface and subcommands.
pub mod cli;
/// Settings from defaults, file, environment and flags.
pub mod config;
/// PostgreSQL: pools (primary, read replica, failover), migrations, embedded cluster, SQL.
pub mod db;
/// Detections, MAC addresses, positions and searches: the rules, without I/O
/// (crates/shadowcheck-domain: no sqlx, no axum).
pub use shadowcheck_domain::domain;
/// `ApiError` and its mapping to problem+json.
pub mod error;
/// Capture-device and GIS formats: WiGLE CSV, geosubmit v2, Kismet logs, the exports
/// (crates/shadowcheck-domain).
pub use shadowcheck_domain::formats;
/// HTTP handlers, one module per resource.
pub mod http;
/// Decoding, validating and storing ingest batches.
pub mod ingest;
/// Start-up, readiness, draining and signals.
pub mod lifecycle;

pub mod maintenance;
/// Live warnings: event streams for open pages, pushes to webhooks and ntfy.
pub mod notify;
/// The read side: the map tile cache.
pub mod query;
/// What handlers share: settings, lifecycle, auth, ingest service, pool.
pub mod state;
/// Logs and metrics set-up.
pub mod telemetry;
