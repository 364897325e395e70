//! Integration tests: the real router over HTTP against a real PostgreSQL + PostGIS, and the
//! real binary for the command line and the embedded default.

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
mod query;
mod quickstart;
mod scale;
mod security;
mod stack;
mod stack_tools;
mod transmitters;
