//! A week of ordinary life: five workdays of walking 400 m to a station, a 25-minute train ride
//! in a crowd, an office day among colleagues and the same ride home, then a weekend at home with
//! a walk to the shops; the phone scans BLE every 15 s while moving and every 2 minutes while
//! still, from 7:00 to 22:00. Around: devices at home, shops passed twice a day, colleagues, a
//! new crowd on every train — and two regulars who ride the same morning train every workday.
//! Nobody follows. With `planted`, an AirTag (a new address each day) is slipped into the bag
//! on Wednesday morning: it is the only thing that should be warned about.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::walks::{sighting, Address, Kind, Walk, Walks};
use crate::{mac, offset};

/// A stationary transmitter.
struct Fixed {
    at: (f64, f64),
    range_m: f64,
    address: String,
    kind: Kind,
}

/// One recorded stretch, uploaded after it: its scans' positions and times.
struct Leg {
    /// (seconds from the stretch's start, position)
    path: Vec<(f64, (f64, f64))>,
    /// Who else rides along (the train's passengers): (address, kind).
    riders: Vec<(String, Kind)>,
}

fn line(from: (f64, f64), to: (f64, f64), seconds: f64, step: f64) -> Vec<(f64, (f64, f64))> {
    let mut out = Vec::new();
    let mut t = 0.0;
    while t <= seconds {
        let f = t / seconds;
        out.push((
            t,
            (from.0 + (to.0 - from.0) * f, from.1 + (to.1 - from.1) * f),
        ));
        t += step;
    }
    out
}

fn still(at: (f64, f64), seconds: f64, step: f64) -> Vec<(f64, (f64, f64))> {
    line(at, at, seconds, step)
}

/// Generates a week from `start` (UTC midnight of a Monday), randomised by `seed`.
pub fn generate(seed: u64, start: DateTime<Utc>, planted: bool) -> Walks {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = uuid::Uuid::from_u128(rng.gen()).to_string();
    let home = (rng.gen_range(45.0..55.0), rng.gen_range(2.0..20.0));
    let heading: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
    let toward = |from: (f64, f64), metres: f64| {
        offset(from, metres * heading.cos(), metres * heading.sin())
    };
    let station = toward(home, 400.0);
    let city = toward(station, 15_000.0);
    let office = offset(city, 250.0, 150.0);
    let shops_at = offset(home, -300.0, 200.0);
    let mut addresses = Vec::new();
    let mut stationary = |at: (f64, f64), spread: f64, n: usize, owner: &str, rng: &mut StdRng| {
        (0..n)
            .map(|i| {
                let kind = match i % 4 {
                    0 => Kind::AppleDevice,
                    1 if owner == "home" => Kind::AirTag,
                    _ => Kind::Plain,
                };
                let f = Fixed {
                    at: offset(
                        at,
                        rng.gen_range(-spread..spread),
                        rng.gen_range(-spread..spread),
                    ),
                    range_m: rng.gen_range(30.0..60.0),
                    address: mac(rng, 0xd0 | (i as u8 % 4) << 2),
                    kind,
                };
                addresses.push(Address {
                    identifier: f.address.clone(),
                    owner: owner.into(),
                    carried: false,
                    tracker: matches!(kind, Kind::AirTag),
                });
                f
            })
            .collect::<Vec<_>>()
    };
    let mut fixed = stationary(home, 10.0, 4, "home", &mut rng);
    // Shops and flats along the walk to the station, passed twice every workday.
    for k in 1..4 {
        let on = toward(home, 100.0 * f64::from(k));
        fixed.extend(stationary(on, 25.0, 3, "neighbour", &mut rng));
    }
    fixed.extend(stationary(office, 20.0, 10, "colleague", &mut rng));
    fixed.extend(stationary(shops_at, 30.0, 6, "shop", &mut rng));
    let regulars: Vec<(String, Kind)> = (0..2)
        .map(|i| {
            let kind = if i == 0 {
                Kind::AppleDevice
            } else {
                Kind::Plain
            };
            (mac(&mut rng, 0xd4), kind)
        })
        .collect();
    for (id, _) in &regulars {
        addresses.push(Address {
            identifier: id.clone(),
            owner: "regular".into(),
            carried: false,
            tracker: false,
        });
    }

    let mut walks = Vec::new();
    let mut airtag = None;
    for day in 0..7i64 {
        let midnight = start + Duration::days(day);
        if planted && day >= 2 {
            // An AirTag changes its address once a day.
            let id = mac(&mut rng, 0xc5);
            addresses.push(Address {
                identifier: id.clone(),
                owner: "airtag".into(),
                carried: true,
                tracker: true,
            });
            airtag = Some(id);
        }
        let mut legs: Vec<(DateTime<Utc>, Leg)> = Vec::new();
        let at = |h: f64| midnight + Duration::seconds((h * 3600.0) as i64);
        let crowd = |rng: &mut StdRng, addresses: &mut Vec<Address>, morning: bool| {
            let mut riders: Vec<(String, Kind)> = (0..20)
                .map(|_| {
                    let first = 0x40 | rng.gen_range(0..8u8) << 2;
                    let id = mac(rng, first);
                    addresses.push(Address {
                        identifier: id.clone(),
                        owner: "passenger".into(),
                        carried: false,
                        tracker: false,
                    });
                    (id, Kind::AppleDevice)
                })
                .collect();
            if morning {
                riders.extend(regulars.iter().cloned());
            }
            riders
        };
        if day < 5 {
            let leave = 7.75 + rng.gen_range(0.0..0.25);
            legs.push((
                at(7.0),
                Leg {
                    path: still(home, (leave - 7.0) * 3600.0, 120.0),
                    riders: vec![],
                },
            ));
            // The walk, the ride (its passengers only there) and the walk to the office.
            let riders = crowd(&mut rng, &mut addresses, true);
            legs.push((
                at(leave),
                Leg {
                    path: line(home, station, 300.0, 15.0),
                    riders: vec![],
                },
            ));
            legs.push((
                at(leave) + Duration::seconds(300),
                Leg {
                    path: line(station, city, 1_500.0, 15.0),
                    riders,
                },
            ));
            legs.push((
                at(leave) + Duration::seconds(1_800),
                Leg {
                    path: line(city, office, 240.0, 15.0),
                    riders: vec![],
                },
            ));
            let back = 17.0 + rng.gen_range(0.0..1.0);
            let arrive = leave + 2_040.0 / 3600.0;
            legs.push((
                at(arrive),
                Leg {
                    path: still(office, (back - arrive) * 3600.0, 120.0),
                    riders: vec![],
                },
            ));
            let evening = crowd(&mut rng, &mut addresses, false);
            legs.push((
                at(back),
                Leg {
                    path: line(office, city, 240.0, 15.0),
                    riders: vec![],
                },
            ));
            legs.push((
                at(back) + Duration::seconds(240),
                Leg {
                    path: line(city, station, 1_500.0, 15.0),
                    riders: evening,
                },
            ));
            legs.push((
                at(back) + Duration::seconds(1_740),
                Leg {
                    path: line(station, home, 300.0, 15.0),
                    riders: vec![],
                },
            ));
            let home_at = back + 2_040.0 / 3600.0;
            legs.push((
                at(home_at),
                Leg {
                    path: still(home, (22.0 - home_at) * 3600.0, 120.0),
                    riders: vec![],
                },
            ));
        } else {
            legs.push((
                at(7.0),
                Leg {
                    path: still(home, 4.0 * 3600.0, 120.0),
                    riders: vec![],
                },
            ));
            legs.push((
                at(11.0),
                Leg {
                    path: line(home, shops_at, 420.0, 15.0),
                    riders: vec![],
                },
            ));
            legs.push((
                at(11.0) + Duration::seconds(420),
                Leg {
                    path: still(shops_at, 1_200.0, 120.0),
                    riders: vec![],
                },
            ));
            legs.push((
                at(11.5) + Duration::seconds(120),
                Leg {
                    path: line(shops_at, home, 420.0, 15.0),
                    riders: vec![],
                },
            ));
            legs.push((
                at(12.0),
                Leg {
                    path: still(home, 10.0 * 3600.0, 120.0),
                    riders: vec![],
                },
            ));
        }
        for (started, leg) in legs {
            let mut detections = Vec::new();
            for (t, p) in &leg.path {
                let when = started + Duration::milliseconds((t * 1000.0) as i64);
                let stamp = when.to_rfc3339_opts(SecondsFormat::Millis, true);
                let fix = offset(*p, rng.gen_range(-6.0..6.0), rng.gen_range(-6.0..6.0));
                let mut seen = |address: &str, kind: Kind, rssi: i64, rng: &mut StdRng| {
                    detections.push(sighting(&stamp, fix, address, kind, rssi, &device, rng));
                };
                if let Some(id) = &airtag {
                    if rng.gen_bool(0.7) {
                        seen(id, Kind::AirTag, rng.gen_range(-75..-55), &mut rng);
                    }
                }
                for (id, kind) in &leg.riders {
                    if rng.gen_bool(0.6) {
                        seen(id, *kind, rng.gen_range(-85..-60), &mut rng);
                    }
                }
                for f in &fixed {
                    let d = shadowcheck_domain::domain::geo::haversine_m(f.at, fix);
                    if d <= f.range_m && rng.gen_bool(0.7) {
                        seen(&f.address, f.kind, -50 - (d / 2.0) as i64, &mut rng);
                    }
                }
            }
            if !detections.is_empty() {
                walks.push(Walk {
                    started,
                    detections,
                });
            }
        }
    }
    Walks::heard(device, home, walks, addresses)
}
