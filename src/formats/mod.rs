//! Capture-device formats (WiGLE CSV, geosubmit v2) turned into detections in our own JSON shape,
//! so every format goes through the same validation and privacy policy as `POST /detections`.

pub mod cli;
pub mod geosubmit;
pub mod import;
pub mod kismet;
pub mod wigle;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A stable device id derived from a description of the device (e.g. a WiGLE pre-header or an
/// API key name), so re-imports of the same capture deduplicate.
pub fn device_uuid(description: &str) -> Uuid {
    let digest = Sha256::digest(description.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
