//! What ShadowCheck concludes from stored detections, kept up to date beside ingest: the
//! transmitter registry (one row per radio and identifier) and the following detector.

pub mod following;
pub mod registry;
