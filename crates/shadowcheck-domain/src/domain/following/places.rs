//! Places (fixed-centre circles), safe zones, and the device's moving and dwelling minutes.

use chrono::{DateTime, Utc};

use super::{
    Fix, PathPoint, Zone, DWELL_MIN_MINUTES, DWELL_RADIUS_M, MOVING_M_PER_MINUTE, PLACE_RADIUS_M,
};
use crate::domain::geo::haversine_m;

pub(super) struct Cluster {
    pub lat: f64,
    pub lon: f64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub n: usize,
}

/// Leader clustering in time order with fixed centres: each fix joins the first place whose
/// centre (the fix that started it) is within [`PLACE_RADIUS_M`], or starts one. A centre that
/// followed the mean of its fixes would drift along a steady walk and keep it one place for
/// hundreds of metres. Returns the places and each fix's place. Places are found through a grid
/// of cells a little larger than the radius, so thousands of fixes cost a few neighbouring cells
/// each, not every place.
pub(super) fn cluster(fixes: &[&Fix]) -> (Vec<Cluster>, Vec<usize>) {
    let mut places: Vec<Cluster> = Vec::new();
    let mut of_fix = Vec::with_capacity(fixes.len());
    let lat_step = 0.0015; // ~167 m
    let lon_step = fixes
        .first()
        .map_or(lat_step, |f| lat_step / f.lat.to_radians().cos().max(0.05));
    let cell = |lat: f64, lon: f64| {
        (
            (lat / lat_step).floor() as i64,
            (lon / lon_step).floor() as i64,
        )
    };
    let mut grid: std::collections::HashMap<(i64, i64), Vec<usize>> = Default::default();
    for f in fixes {
        // A centre within the radius is at most one cell away.
        let (cy, cx) = cell(f.lat, f.lon);
        let mut found: Option<usize> = None;
        for dy in -1..=1 {
            for dx in -1..=1 {
                for &i in grid.get(&(cy + dy, cx + dx)).into_iter().flatten() {
                    let p = &places[i];
                    if found.is_none_or(|j| i < j)
                        && haversine_m((p.lat, p.lon), (f.lat, f.lon)) <= PLACE_RADIUS_M
                    {
                        found = Some(i);
                    }
                }
            }
        }
        match found {
            Some(i) => {
                let p = &mut places[i];
                p.n += 1;
                p.first = p.first.min(f.at);
                p.last = p.last.max(f.at);
                of_fix.push(i);
            }
            None => {
                places.push(Cluster {
                    lat: f.lat,
                    lon: f.lon,
                    first: f.at,
                    last: f.at,
                    n: 1,
                });
                grid.entry((cy, cx)).or_default().push(places.len() - 1);
                of_fix.push(places.len() - 1);
            }
        }
    }
    (places, of_fix)
}

pub(super) fn zone_of(zones: &[Zone], lat: f64, lon: f64) -> Option<&Zone> {
    zones
        .iter()
        .find(|z| haversine_m((z.lat, z.lon), (lat, lon)) <= z.radius_m)
}

/// Minutes in which the device moved, from its per-minute path.
pub(super) fn moving_minutes(path: &[PathPoint]) -> Vec<DateTime<Utc>> {
    path.windows(2)
        .filter_map(|w| {
            let minutes = (w[1].minute - w[0].minute).num_minutes();
            if !(1..=2).contains(&minutes) {
                return None;
            }
            let speed = haversine_m((w[0].lat, w[0].lon), (w[1].lat, w[1].lon)) / minutes as f64;
            (speed >= MOVING_M_PER_MINUTE).then_some(w[1].minute)
        })
        .collect()
}

/// The minutes in which the device had stopped: runs of its path that stay within
/// [`DWELL_RADIUS_M`] of where they began for at least [`DWELL_MIN_MINUTES`] (a café, an office,
/// a home; not a train's halt at a station). Sorted.
pub(super) fn dwell_minutes(path: &[PathPoint]) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=path.len() {
        let ends = i == path.len() || {
            let (a, b) = (&path[start], &path[i]);
            let gap = (b.minute - path[i - 1].minute).num_minutes();
            gap > 2 || haversine_m((a.lat, a.lon), (b.lat, b.lon)) > DWELL_RADIUS_M
        };
        if ends {
            let run = &path[start..i];
            if let (Some(first), Some(last)) = (run.first(), run.last()) {
                if (last.minute - first.minute).num_minutes() >= DWELL_MIN_MINUTES {
                    out.extend(run.iter().map(|p| p.minute));
                }
            }
            start = i;
        }
    }
    out
}
