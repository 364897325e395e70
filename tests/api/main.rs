//! Integration tests: the real router over HTTP against a real PostgreSQL + PostGIS, and the
//! real binary for the command line and the embedded default. Tests that need more than
//! PostgreSQL + PostGIS (GDAL, Chromium, PgBouncer, pg_auto_failover, openssl, schemathesis) are
//! ignored unless the feature `tool-tests` is on, as `scripts/test` does; the compose stack's
//! files are checked by their own target (`tests/stack`).

mod architecture;
mod bench;
mod binary;
mod detector;
mod faults;
mod formats;
mod grants;
mod helpers;
mod hostile;
mod ingest;
mod lifecycle;
mod maps;
mod observability;
mod partitions;
mod positions;
mod probes;
mod query;
mod quickstart;
mod scale;
mod security;
mod transmitters;
