//! Where a scan was made, from the transmitters it heard whose positions the registry knows —
//! the way ichnaea and beaconDB answer "where am I": the heard networks that agree with each
//! other (one cluster), weighted by how strongly each was heard and how well its own position is
//! known. Pure: the caller looks the transmitters up; `/v1/geolocate` and the positioning of
//! GPS-less detections both ask this.

use super::geo::haversine_m;
use super::{Mac, Position, SignalType};

/// Wi-Fi and Bluetooth answers need two agreeing networks, as in ichnaea: one access point alone
/// could be someone's home, and a moved one would be believed.
pub const MIN_NETWORKS: usize = 2;
/// Networks heard together are within this of each other; farther ones are another cluster (a
/// moved access point, a mobile hotspot).
pub const CLUSTER_M: f64 = 500.0;
/// A transmitter whose own fixes spread wider than this has moved (or is mobile): not used.
pub const MAX_SPREAD_M: f64 = 1_000.0;
/// The best accuracy claimed for a Wi-Fi/Bluetooth answer, and the least for a cell's.
pub const MIN_ACCURACY_M: f64 = 10.0;
pub const MIN_CELL_ACCURACY_M: f64 = 1_000.0;
/// Assumed when a network is reported without a signal strength.
const DEFAULT_SIGNAL_DBM: i32 = -80;

/// A heard transmitter whose position the registry knows.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    pub radio: SignalType,
    pub position: Position,
    /// How far the registry's own fixes of it spread (p95), metres.
    pub spread_m: f64,
    pub signal_dbm: Option<i32>,
}

/// What an answer rests on (ichnaea reports no basis; the detections keep it in their accuracy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    Networks,
    Cell,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub position: Position,
    pub accuracy_m: f64,
    pub basis: Basis,
    /// How many transmitters the answer used.
    pub used: usize,
}

/// Whether a heard address may be looked up: randomised (locally administered) addresses name
/// no fixed transmitter, and `_nomap` networks opted out of location services.
pub fn usable(mac: &Mac, ssid: Option<&str>) -> bool {
    !mac.is_locally_administered() && !ssid.is_some_and(|s| s.ends_with("_nomap"))
}

/// The position of a scan: the strongest cluster of at least [`MIN_NETWORKS`] Wi-Fi/Bluetooth
/// transmitters, else the best-placed cell; `None` when neither exists.
pub fn locate(heard: &[Known]) -> Option<Estimate> {
    let placed = |k: &&Known| k.spread_m.is_finite() && k.spread_m <= MAX_SPREAD_M;
    let networks: Vec<&Known> = heard
        .iter()
        .filter(|k| k.radio != SignalType::Cellular)
        .filter(placed)
        .collect();
    if let Some(estimate) = best_cluster(&networks) {
        return Some(estimate);
    }
    // A cell alone: its own estimate, no better than a cell's reach.
    heard
        .iter()
        .filter(|k| k.radio == SignalType::Cellular)
        .max_by(|a, b| weight(a).total_cmp(&weight(b)))
        .map(|cell| Estimate {
            position: cell.position,
            accuracy_m: cell.spread_m.max(MIN_CELL_ACCURACY_M),
            basis: Basis::Cell,
            used: 1,
        })
}

/// Stronger signals are nearer: weighted by received power (10^(dBm/10)), so the strongest
/// network dominates as it should in a dense area; a transmitter whose own position is loosely
/// known counts for less (by the square root of its spread). Chosen on the real held-out scans
/// of bench section (h): amplitude weighting or a full 1/spread did worse there.
fn weight(k: &Known) -> f64 {
    let dbm = k.signal_dbm.unwrap_or(DEFAULT_SIGNAL_DBM).clamp(-110, -20);
    10f64.powf(f64::from(dbm + 110) / 10.0) / k.spread_m.max(MIN_ACCURACY_M).sqrt()
}

fn best_cluster(networks: &[&Known]) -> Option<Estimate> {
    let mut ranked: Vec<&Known> = networks.to_vec();
    ranked.sort_by(|a, b| weight(b).total_cmp(&weight(a)));
    // Leader clustering, strongest first: a network joins the first cluster whose leader is
    // within CLUSTER_M.
    let mut clusters: Vec<Vec<&Known>> = Vec::new();
    for k in ranked {
        let at = (k.position.lat(), k.position.lon());
        match clusters.iter_mut().find(|c| {
            let leader = c[0].position;
            haversine_m(at, (leader.lat(), leader.lon())) <= CLUSTER_M
        }) {
            Some(cluster) => cluster.push(k),
            None => clusters.push(vec![k]),
        }
    }
    let total = |c: &Vec<&Known>| c.iter().map(|k| weight(k)).sum::<f64>();
    let best = clusters
        .into_iter()
        .filter(|c| c.len() >= MIN_NETWORKS)
        .max_by(|a, b| a.len().cmp(&b.len()).then(total(a).total_cmp(&total(b))))?;
    let sum = total(&best);
    let lat = best
        .iter()
        .map(|k| k.position.lat() * weight(k))
        .sum::<f64>()
        / sum;
    let lon = best
        .iter()
        .map(|k| k.position.lon() * weight(k))
        .sum::<f64>()
        / sum;
    let position = Position::new(lat, lon).ok()?;
    // How far the members lie from the answer, plus how loosely they themselves are placed.
    let accuracy_m = best
        .iter()
        .map(|k| {
            let d = haversine_m((lat, lon), (k.position.lat(), k.position.lon()));
            (d + k.spread_m) * weight(k)
        })
        .sum::<f64>()
        / sum;
    Some(Estimate {
        position,
        accuracy_m: accuracy_m.max(MIN_ACCURACY_M),
        basis: Basis::Networks,
        used: best.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wifi(lat: f64, lon: f64, dbm: i32) -> Known {
        Known {
            radio: SignalType::Wifi,
            position: Position::new(lat, lon).expect("valid"),
            spread_m: 30.0,
            signal_dbm: Some(dbm),
        }
    }

    #[test]
    fn one_network_alone_places_nothing() {
        assert_eq!(locate(&[wifi(52.0, 13.0, -50)]), None);
    }

    #[test]
    fn two_networks_place_the_scan_nearer_the_stronger() {
        let e = locate(&[wifi(52.0, 13.0, -40), wifi(52.0, 13.002, -80)]).expect("valid");
        assert_eq!(e.basis, Basis::Networks);
        assert!(e.position.lon() < 13.001, "{e:?}");
        assert!(
            e.accuracy_m >= MIN_ACCURACY_M && e.accuracy_m < 200.0,
            "{e:?}"
        );
    }

    #[test]
    fn a_moved_access_point_is_outvoted_by_the_cluster() {
        let e = locate(&[
            wifi(52.0, 13.0, -70),
            wifi(52.0005, 13.0, -70),
            wifi(48.0, 2.0, -30),
        ])
        .expect("valid");
        assert_eq!(e.used, 2);
        assert!((e.position.lat() - 52.0).abs() < 0.01, "{e:?}");
    }

    #[test]
    fn a_transmitter_that_moves_is_not_used() {
        let mut roaming = wifi(52.0, 13.001, -40);
        roaming.spread_m = 5_000.0;
        assert_eq!(locate(&[wifi(52.0, 13.0, -50), roaming]), None);
    }

    #[test]
    fn a_cell_answers_with_a_cells_reach_when_no_networks_agree() {
        let cell = Known {
            radio: SignalType::Cellular,
            position: Position::new(52.0, 13.0).expect("valid"),
            spread_m: 200.0,
            signal_dbm: None,
        };
        let e = locate(&[cell, wifi(10.0, 10.0, -50)]).expect("valid");
        assert_eq!(e.basis, Basis::Cell);
        assert_eq!(e.accuracy_m, MIN_CELL_ACCURACY_M);
    }

    #[test]
    fn randomised_and_nomap_networks_are_not_looked_up() {
        let fixed: Mac = "00:11:22:33:44:55".parse().expect("valid");
        let random: Mac = "da:11:22:33:44:55".parse().expect("valid");
        assert!(usable(&fixed, Some("Home")));
        assert!(!usable(&fixed, Some("Home_nomap")));
        assert!(!usable(&random, None));
    }
}
