//! The read side's shared services: what answers map requests beyond one SQL statement.

pub mod summary;
pub mod tile_cache;
