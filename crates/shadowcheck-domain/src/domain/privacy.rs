//! The privacy policy applied to every detection, whatever format it arrived in: opted-out access
//! points and randomised MACs may be dropped, and nothing inside an exclusion zone is stored.

use super::detection::{TAG_NOMAP, TAG_RANDOMIZED_MAC};
use super::{Detection, Position};

#[derive(Clone, Debug, Default)]
pub struct PrivacyPolicy {
    pub drop_nomap: bool,
    pub drop_randomized_macs: bool,
    /// Circles (centre, radius in metres) whose detections are never stored.
    pub exclusion_zones: Vec<(Position, f64)>,
}

impl PrivacyPolicy {
    /// `Some(reason)` when the policy says this detection must not be stored.
    pub fn refuses(&self, d: &Detection) -> Option<&'static str> {
        // Err on the side of excluding: a 1 % margin over the zone radius.
        if self
            .exclusion_zones
            .iter()
            .any(|(c, r)| d.position.is_some_and(|at| c.distance_m(at) <= r * 1.01))
        {
            return Some("inside an exclusion zone");
        }
        if self.drop_nomap && d.tags.iter().any(|t| t == TAG_NOMAP) {
            return Some("access point opted out of mapping (_nomap/_optout)");
        }
        if self.drop_randomized_macs && d.tags.iter().any(|t| t == TAG_RANDOMIZED_MAC) {
            return Some("randomised MAC address");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_is_right_to_a_metre_scale() {
        let berlin = Position::new(52.5200, 13.4050).expect("pos");
        let paris = Position::new(48.8566, 2.3522).expect("pos");
        let d = berlin.distance_m(paris);
        assert!((d - 877_500.0).abs() < 2_000.0, "{d}");
        assert!(berlin.distance_m(berlin) < 1e-6);
    }
}
