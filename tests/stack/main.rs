//! The compose stack's files, checked by the real tools that read them (Docker Compose v2,
//! promtool, amtool, nginx, PgBouncer, actionlint) and by the API they configure. Needs the tools
//! `scripts/test` installs: built with the feature `tool-tests`.

#[path = "../api/helpers.rs"]
#[allow(dead_code)] // each suite uses its part of the shared helpers
mod helpers;
mod stack;
mod stack_tools;
