//! Short walks near home with trackers in the bag, shaped like the public captures the detector
//! failed on: a phone carried on 16 walks of 5–7 minutes over four days (four a day), ~500 m of
//! path each, never more than ~300 m from home, scanning BLE every 10–25 s and recording only
//! while walking. In the bag: a Tile that keeps one address, an AirTag and a Chipolo that change
//! address once a day, and a Galaxy SmartTag that changes address every few minutes (never two
//! at once). Around: shops, parked cars and flats along the routes (some of them trackers
//! themselves, left at home by their owners), devices at home, and passers-by heard once or
//! twice.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::{mac, offset};

/// One address of a transmitter in the story.
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub identifier: String,
    /// The tracker it belongs to (`tile`, `airtag`, ...), or what else it is.
    pub owner: String,
    /// Carried by the walker: every address of it should be warned about.
    pub carried: bool,
    /// Announces an item tracker's signature.
    pub tracker: bool,
}

/// A walk: its detections, in time order, and when it started.
pub struct Walk {
    pub started: DateTime<Utc>,
    pub detections: Vec<Value>,
}

pub struct Walks {
    pub device: String,
    pub home: (f64, f64),
    pub walks: Vec<Walk>,
    pub addresses: Vec<Address>,
}

impl Walks {
    /// The story, its truth kept to the addresses the device actually heard.
    pub(crate) fn heard(
        device: String,
        home: (f64, f64),
        walks: Vec<Walk>,
        addresses: Vec<Address>,
    ) -> Self {
        let heard: std::collections::BTreeSet<&str> = walks
            .iter()
            .flat_map(|w| w.detections.iter())
            .filter_map(|d| d["bt_address"].as_str())
            .collect();
        let addresses = addresses
            .into_iter()
            .filter(|a| heard.contains(a.identifier.as_str()))
            .collect();
        Self {
            device,
            home,
            walks,
            addresses,
        }
    }
}

/// A BLE advertiser: how it announces itself.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Tile,
    AirTag,
    Chipolo,
    SmartTag,
    /// An Apple phone, watch or earbuds (company 76, no Find My payload).
    AppleDevice,
    /// Anything else (a TV, a fitness band, a car).
    Plain,
}

pub(crate) fn advert(kind: Kind, rng: &mut StdRng) -> Value {
    match kind {
        Kind::Tile => json!({"ble_service_uuids": ["feed"]}),
        Kind::Chipolo => json!({"ble_service_uuids": ["fe33"]}),
        Kind::SmartTag => json!({"ble_service_uuids": ["fd5a"]}),
        Kind::AirTag => {
            json!({"ble_manufacturer_id": 76, "ble_advertisement": crate::find_my_payload(rng)})
        }
        Kind::AppleDevice => json!({"ble_manufacturer_id": 76}),
        Kind::Plain => json!({}),
    }
}

/// One BLE sighting by the capture device: the fix, the address, its signal and advertisement.
pub(crate) fn sighting(
    stamp: &str,
    fix: (f64, f64),
    address: &str,
    kind: Kind,
    rssi: i64,
    device: &str,
    rng: &mut StdRng,
) -> Value {
    let mut item = json!({
        "detected_at": stamp, "latitude": fix.0, "longitude": fix.1,
        "accuracy_meters": rng.gen_range(4.0..12.0), "signal_type": "ble",
        "bt_address": address, "bt_rssi": rssi, "device_id": device,
    });
    if let (Some(o), Value::Object(extra)) = (item.as_object_mut(), advert(kind, rng)) {
        o.extend(extra);
    }
    item
}

/// A stationary transmitter: where it is and how far it is heard.
struct Fixed {
    at: (f64, f64),
    range_m: f64,
    address: String,
    kind: Kind,
}

/// Generates four days of walks from `start` (UTC midnight of the first day), randomised by
/// `seed`.
pub fn generate(seed: u64, start: DateTime<Utc>) -> Walks {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = uuid::Uuid::from_u128(rng.gen()).to_string();
    let home = (rng.gen_range(45.0..55.0), rng.gen_range(2.0..20.0));
    let mut addresses = Vec::new();
    // Three routes: loops of ~500 m whose far side is 200–300 m from home.
    let routes: Vec<Vec<(f64, f64)>> = (0..3)
        .map(|_| {
            let heading: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
            let reach = rng.gen_range(200.0..300.0);
            let width = rng.gen_range(40.0..90.0);
            let corners = [
                (0.0, 0.0),
                (reach * 0.5, width),
                (reach, width * 0.5),
                (reach, -width * 0.5),
                (reach * 0.5, -width),
                (0.0, 0.0),
            ];
            corners
                .iter()
                .map(|(along, across)| {
                    let north = along * heading.cos() - across * heading.sin();
                    let east = along * heading.sin() + across * heading.cos();
                    offset(home, north, east)
                })
                .collect()
        })
        .collect();
    // Along the routes: shops, cars and flats; a few are trackers their owners left behind.
    let mut fixed: Vec<Fixed> = Vec::new();
    for route in &routes {
        for leg in route.windows(2) {
            for _ in 0..rng.gen_range(5..9) {
                let f = rng.gen_range(0.0..1.0);
                let on = (
                    leg[0].0 + (leg[1].0 - leg[0].0) * f,
                    leg[0].1 + (leg[1].1 - leg[0].1) * f,
                );
                let kind = match rng.gen_range(0..10) {
                    0 => Kind::Tile,
                    1 => Kind::AirTag,
                    2..=4 => Kind::AppleDevice,
                    _ => Kind::Plain,
                };
                fixed.push(Fixed {
                    at: offset(on, rng.gen_range(-25.0..25.0), rng.gen_range(-25.0..25.0)),
                    range_m: rng.gen_range(25.0..60.0),
                    address: {
                        let first = 0xd0 | rng.gen_range(0..4u8) << 2;
                        mac(&mut rng, first)
                    },
                    kind,
                });
            }
        }
    }
    // At home: heard at the start and end of every walk.
    for kind in [Kind::Plain, Kind::Plain, Kind::AppleDevice, Kind::AirTag] {
        fixed.push(Fixed {
            at: offset(home, rng.gen_range(-10.0..10.0), rng.gen_range(-10.0..10.0)),
            range_m: 40.0,
            address: mac(&mut rng, 0xe0),
            kind,
        });
    }
    for f in &fixed {
        addresses.push(Address {
            identifier: f.address.clone(),
            owner: "stationary".into(),
            carried: false,
            tracker: matches!(f.kind, Kind::Tile | Kind::AirTag),
        });
    }
    // The bag.
    let tile = mac(&mut rng, 0xc4);
    addresses.push(Address {
        identifier: tile.clone(),
        owner: "tile".into(),
        carried: true,
        tracker: true,
    });
    let mut walks = Vec::new();
    let mut smarttag = (mac(&mut rng, 0xc8), DateTime::<Utc>::MIN_UTC);
    for day in 0..4 {
        // The AirTag and the Chipolo change address once a day.
        let airtag = mac(&mut rng, 0xc5);
        let chipolo = mac(&mut rng, 0xc6);
        for (owner, id) in [("airtag", &airtag), ("chipolo", &chipolo)] {
            addresses.push(Address {
                identifier: id.clone(),
                owner: owner.into(),
                carried: true,
                tracker: true,
            });
        }
        for hour in [8, 12, 16, 20] {
            let started = start
                + Duration::days(day)
                + Duration::hours(hour)
                + Duration::minutes(rng.gen_range(0..50));
            let route = &routes[rng.gen_range(0..routes.len())];
            let minutes = rng.gen_range(5.0..7.0);
            let mut t = 0.0;
            let mut detections = Vec::new();
            while t < minutes * 60.0 {
                let at = started + Duration::milliseconds((t * 1000.0) as i64);
                let p = along(route, t / (minutes * 60.0));
                let fix = offset(p, rng.gen_range(-6.0..6.0), rng.gen_range(-6.0..6.0));
                let stamp = at.to_rfc3339_opts(SecondsFormat::Millis, true);
                let mut seen = |address: &str, kind: Kind, rssi: i64, rng: &mut StdRng| {
                    detections.push(sighting(&stamp, fix, address, kind, rssi, &device, rng));
                };
                // Carried tags are heard on most scans.
                if rng.gen_bool(0.8) {
                    seen(&tile, Kind::Tile, rng.gen_range(-70..-50), &mut rng);
                }
                if rng.gen_bool(0.7) {
                    seen(&airtag, Kind::AirTag, rng.gen_range(-75..-55), &mut rng);
                }
                if rng.gen_bool(0.6) {
                    seen(&chipolo, Kind::Chipolo, rng.gen_range(-80..-55), &mut rng);
                }
                // The SmartTag's address lives 2 to 5 minutes; the next one follows at once.
                if at >= smarttag.1 {
                    smarttag = (
                        mac(&mut rng, 0xc8),
                        at + Duration::seconds(rng.gen_range(120..300)),
                    );
                    addresses.push(Address {
                        identifier: smarttag.0.clone(),
                        owner: "smarttag".into(),
                        carried: true,
                        tracker: true,
                    });
                }
                if rng.gen_bool(0.7) {
                    let id = smarttag.0.clone();
                    seen(&id, Kind::SmartTag, rng.gen_range(-80..-55), &mut rng);
                }
                for f in &fixed {
                    let d = shadowcheck_domain::domain::geo::haversine_m(f.at, fix);
                    if d <= f.range_m && rng.gen_bool(0.7) {
                        seen(&f.address, f.kind, -50 - (d / 2.0) as i64, &mut rng);
                    }
                }
                // Passers-by: a phone or a watch heard once or twice, never again.
                if rng.gen_bool(0.3) {
                    let first = 0x40 | rng.gen_range(0..8u8) << 2;
                    let id = mac(&mut rng, first);
                    addresses.push(Address {
                        identifier: id.clone(),
                        owner: "passer-by".into(),
                        carried: false,
                        tracker: false,
                    });
                    seen(&id, Kind::AppleDevice, rng.gen_range(-90..-60), &mut rng);
                }
                t += rng.gen_range(10.0..25.0);
            }
            walks.push(Walk {
                started,
                detections,
            });
        }
    }
    // A SmartTag address made after the last scan was never heard.
    Walks::heard(device, home, walks, addresses)
}

/// The point `f` (0 to 1) of the way round `route`, by distance.
fn along(route: &[(f64, f64)], f: f64) -> (f64, f64) {
    let legs: Vec<f64> = route
        .windows(2)
        .map(|w| shadowcheck_domain::domain::geo::haversine_m(w[0], w[1]))
        .collect();
    let total: f64 = legs.iter().sum();
    let mut left = f.clamp(0.0, 1.0) * total;
    for (i, len) in legs.iter().enumerate() {
        if left <= *len || i == legs.len() - 1 {
            let g = if *len > 0.0 {
                (left / len).min(1.0)
            } else {
                0.0
            };
            let (a, b) = (route[i], route[i + 1]);
            return (a.0 + (b.0 - a.0) * g, a.1 + (b.1 - a.1) * g);
        }
        left -= len;
    }
    route[0]
}
