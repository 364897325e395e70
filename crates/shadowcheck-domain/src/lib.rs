//! ShadowCheck's pure core: what a detection is and the rules it obeys (`domain`), and the
//! capture devices' and GIS clients' formats read and written without I/O policy (`formats`).
//! No SQL, no HTTP: this crate does not depend on sqlx or axum, so purity is a build error,
//! not a review comment.

/// Detections, MAC addresses, positions, searches, the registry's and the detector's rules.
pub mod domain;
/// WiGLE CSV, geosubmit v2, Kismet logs in; GeoJSON, FlatGeobuf, CSV, KML out.
pub mod formats;
