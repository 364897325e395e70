//! `privacy.*`: what is never stored (opted-out networks, randomised addresses, zones).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExclusionZone {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

section! {
    pub struct PrivacySettings {
        /// Drop access points whose SSID ends in `_nomap` or contains `_optout` (their owners
        /// asked not to be mapped). They are tagged `nomap` either way.
        drop_nomap: bool = true,
        /// Drop detections of locally administered (randomised) MACs; tagged `randomized-mac`
        /// either way.
        drop_randomized_macs: bool = false,
        /// Circles around a home or office whose detections are never stored. In the
        /// environment, a JSON list: `[{"lat": 52.52, "lon": 13.40, "radius_m": 300}]`.
        #[serde(deserialize_with = "zones")]
        exclusion_zones: Vec<ExclusionZone> = Vec::new(),
    }
}

fn zones<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ExclusionZone>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<ExclusionZone>),
        Json(String),
    }
    match Form::deserialize(d)? {
        Form::List(z) => Ok(z),
        Form::Json(text) if text.trim().is_empty() => Ok(Vec::new()),
        Form::Json(text) => serde_json::from_str(&text).map_err(serde::de::Error::custom),
    }
}

impl PrivacySettings {
    pub fn policy(&self) -> crate::domain::privacy::PrivacyPolicy {
        crate::domain::privacy::PrivacyPolicy {
            drop_nomap: self.drop_nomap,
            drop_randomized_macs: self.drop_randomized_macs,
            exclusion_zones: self
                .exclusion_zones
                .iter()
                .filter_map(|z| {
                    crate::domain::Position::new(z.lat, z.lon)
                        .ok()
                        .map(|p| (p, z.radius_m))
                })
                .collect(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for zone in &self.exclusion_zones {
            if crate::domain::Position::new(zone.lat, zone.lon).is_err()
                || !(zone.radius_m > 0.0 && zone.radius_m <= 100_000.0)
            {
                return Err(invalid(
                    "privacy.exclusion_zones",
                    "each zone needs a valid lat/lon and 0 < radius_m <= 100000",
                ));
            }
        }
        Ok(())
    }
}
