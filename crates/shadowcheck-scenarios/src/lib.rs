//! Synthetic captures with known truth, for the detector's scenario tests and the benchmark's
//! precision/recall: a capture device leaves home, travels through six places over about four
//! hours and comes back. Around it: a tag in its bag, its owner's own phone, a neighbour's
//! access point at home, a bus full of phones for 20 minutes, a mobile hotspot met twice, an
//! evil twin at a café and a fake cell under a changed area code; and two harder cases, a phone
//! that follows for part of the day without any tracker signature and a delivery van's hotspot
//! met at three stops. Randomised by seed: how often each is heard, where the follower joins,
//! how long the bus ride lasts.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub mod walks;
pub mod week;
pub mod wigle;

/// Who a transmitter is in the story, and what the detector should say about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    pub radio: &'static str,
    pub identifier: String,
    pub role: &'static str,
    /// Should reach `suspicious` or `alert`.
    pub follower: bool,
    /// A rogue flag it should carry.
    pub flag: Option<&'static str>,
    /// Designed to be unambiguous (the scenario test asserts these); the others are the
    /// benchmark's harder cases, measured as precision and recall.
    pub certain: bool,
}

pub struct Scenario {
    pub device: String,
    pub home: (f64, f64),
    /// The owner's own phone, to allow-list.
    pub own_phone: (&'static str, String),
    pub detections: Vec<Value>,
    /// Every transmitter with a role (background access points are negatives too).
    pub truth: Vec<Truth>,
}

const M_PER_DEG_LAT: f64 = 111_320.0;

fn offset((lat, lon): (f64, f64), north_m: f64, east_m: f64) -> (f64, f64) {
    (
        lat + north_m / M_PER_DEG_LAT,
        lon + east_m / (M_PER_DEG_LAT * lat.to_radians().cos()),
    )
}

fn mac(rng: &mut StdRng, first: u8) -> String {
    let b: [u8; 5] = rng.gen();
    format!(
        "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// An AirTag-style Find My advertisement: one 30-byte AD structure (company 0x004C, type
/// 0x12, length 0x19, status) with a random key.
fn find_my_payload(rng: &mut StdRng) -> String {
    let key: [u8; 24] = rng.gen();
    let mut hex = String::from("1eff4c00121910");
    for b in key {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Generates one scenario starting at `start` (UTC), with randomness from `seed`.
pub fn generate(seed: u64, start: DateTime<Utc>) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = uuid::Uuid::from_u128(rng.gen()).to_string();
    let home = (rng.gen_range(45.0..55.0), rng.gen_range(2.0..20.0));
    // The day: 30 minutes at home, six legs of ~1.5 km at 250 m/min each followed by a 15
    // minute stay, then straight home.
    let heading: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
    let mut stops = vec![home];
    for _ in 0..6 {
        let h = heading + rng.gen_range(-0.6..0.6);
        let d = rng.gen_range(1_300.0..1_800.0);
        let last = *stops.last().unwrap_or(&home);
        stops.push(offset(last, d * h.cos(), d * h.sin()));
    }
    stops.push(home);
    // (minute, position, at stop index or None when moving)
    let mut timeline: Vec<((f64, f64), Option<usize>)> = Vec::new();
    for _ in 0..30 {
        timeline.push((home, Some(0)));
    }
    for leg in 1..stops.len() {
        let (a, b) = (stops[leg - 1], stops[leg]);
        let dist = shadowcheck_domain::domain::geo::haversine_m(a, b);
        let minutes = (dist / 250.0).ceil().max(1.0) as usize;
        for m in 1..=minutes {
            let f = m as f64 / minutes as f64;
            timeline.push(((a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f), None));
        }
        let stay = if leg == stops.len() - 1 { 30 } else { 15 };
        for _ in 0..stay {
            timeline.push((b, Some(leg)));
        }
    }
    let at = |minute: usize, rng: &mut StdRng| {
        (start + Duration::minutes(minute as i64) + Duration::seconds(rng.gen_range(0..50)))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let jitter = |p: (f64, f64), rng: &mut StdRng| {
        offset(p, rng.gen_range(-15.0..15.0), rng.gen_range(-15.0..15.0))
    };
    let mut detections = Vec::new();
    let mut truth = Vec::new();

    let tag = mac(&mut rng, 0xc4);
    let payload = find_my_payload(&mut rng);
    let phone = mac(&mut rng, 0x5a);
    let neighbour = mac(&mut rng, 0xa4);
    let hotspot = mac(&mut rng, 0x00).replacen("00:", "3c:", 1);
    let (twin_good, twin_evil) = (mac(&mut rng, 0xa4), mac(&mut rng, 0xb8));
    let cafe = format!("Cafe-{}", rng.gen_range(100..999));
    let cell_id: i64 = rng.gen_range(1_000..200_000);
    let bus_phones: Vec<String> = (0..25).map(|_| mac(&mut rng, 0x46)).collect();
    let follower = mac(&mut rng, 0x72);
    let far_device = uuid::Uuid::from_u128(rng.gen()).to_string();
    let copied_cell: i64 = rng.gen_range(200_000..400_000);
    let pineapple = mac(&mut rng, 0x00).replacen("00:", "00:13:37:", 1)[..17].to_owned();
    let van = mac(&mut rng, 0x00).replacen("00:", "9c:", 1);
    // How well each is heard, this run.
    let p_tag = rng.gen_range(0.5..0.9);
    let p_follower = rng.gen_range(0.3..0.8);
    // The bus: 10 to 40 minutes from the end of the second stop.
    let bus_len = rng.gen_range(10..=40);
    let bus_from = timeline
        .iter()
        .position(|(_, s)| *s == Some(2))
        .map_or(100, |i| i + 16);
    // The follower joins at a random minute on the move and stays 70 to 120 minutes.
    let moving: Vec<usize> = (0..timeline.len())
        .filter(|&i| timeline[i].1.is_none())
        .collect();
    let follow_from = moving[rng.gen_range(0..moving.len() / 2)];
    let follow_to = follow_from + rng.gen_range(70..=120);
    // The van stops where the device stops, three times out of six.
    let mut van_stops: Vec<usize> = (1..=6).collect();
    for i in (1..van_stops.len()).rev() {
        van_stops.swap(i, rng.gen_range(0..=i));
    }
    van_stops.truncate(3);
    let stop_aps: Vec<[String; 3]> = (0..stops.len())
        .map(|_| {
            [
                mac(&mut rng, 0xa4),
                mac(&mut rng, 0xa4),
                mac(&mut rng, 0xa4),
            ]
        })
        .collect();
    for (minute, &(pos, stop)) in timeline.iter().enumerate() {
        let here = jitter(pos, &mut rng);
        let base = |lat: f64, lon: f64, at: String| {
            json!({"detected_at": at, "latitude": lat, "longitude": lon,
                   "accuracy_meters": 8.0, "device_id": device})
        };
        // A local access point wherever the device is (one new one per minute on the move),
        // so the device's path is known minute by minute; a few fixes are inaccurate.
        let ap = match stop {
            Some(s) => stop_aps[s % stops.len()][minute % 3].clone(),
            None => mac(&mut rng, 0xa4),
        };
        let mut item = base(here.0, here.1, at(minute, &mut rng));
        item["signal_type"] = json!("wifi");
        item["bssid"] = json!(ap);
        item["ssid"] = json!(format!("ap-{ap}"));
        item["security"] = json!("[WPA2-PSK-CCMP][ESS]");
        item["signal_strength_dbm"] = json!(rng.gen_range(-85..-55));
        if rng.gen_bool(0.05) {
            item["accuracy_meters"] = json!(250.0);
        }
        detections.push(item);
        // The tag rides along from the first minute to the last.
        if rng.gen_bool(p_tag) {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("ble");
            item["bt_address"] = json!(tag);
            item["bt_rssi"] = json!(rng.gen_range(-60..-40));
            item["ble_manufacturer_id"] = json!(76);
            item["ble_advertisement"] = json!(payload);
            detections.push(item);
        }
        // The owner's phone travels too.
        if rng.gen_bool(0.8) {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("ble");
            item["bt_address"] = json!(phone);
            item["bt_rssi"] = json!(rng.gen_range(-55..-35));
            item["ble_manufacturer_id"] = json!(76);
            detections.push(item);
        }
        if stop == Some(0) || stop == Some(stops.len() - 1) {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("wifi");
            item["bssid"] = json!(neighbour);
            item["ssid"] = json!("Neighbour");
            item["security"] = json!("[WPA2-PSK-CCMP][ESS]");
            item["signal_strength_dbm"] = json!(rng.gen_range(-80..-65));
            detections.push(item);
            if minute % 5 == 0 {
                let mut item = base(here.0, here.1, at(minute, &mut rng));
                item["signal_type"] = json!("cellular");
                item["mcc"] = json!(262);
                item["mnc"] = json!(1);
                item["lac"] = json!(1000);
                item["cell_id"] = json!(cell_id);
                item["network_type"] = json!("LTE");
                detections.push(item);
            }
        }
        // The hotspot is met twice: at the second and the fifth stop.
        if matches!(stop, Some(2) | Some(5)) && rng.gen_bool(0.7) {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("wifi");
            item["bssid"] = json!(hotspot);
            item["ssid"] = json!("Car-Hotspot");
            item["security"] = json!("[WPA2-PSK-CCMP][ESS]");
            item["signal_strength_dbm"] = json!(rng.gen_range(-70..-50));
            detections.push(item);
        }
        // The café at the third stop: its network and an open impostor of the same name.
        if stop == Some(3) {
            for (bssid, security) in [(&twin_good, "[WPA2-PSK-CCMP][ESS]"), (&twin_evil, "[ESS]")] {
                let mut item = base(here.0, here.1, at(minute, &mut rng));
                item["signal_type"] = json!("wifi");
                item["bssid"] = json!(bssid);
                item["ssid"] = json!(cafe);
                item["security"] = json!(security);
                item["signal_strength_dbm"] = json!(rng.gen_range(-70..-45));
                detections.push(item);
            }
        }
        // The fake cell: the home cell's identity under another area code, at the fourth stop.
        if stop == Some(4) && minute % 3 == 0 {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("cellular");
            item["mcc"] = json!(262);
            item["mnc"] = json!(1);
            item["lac"] = json!(1099);
            item["cell_id"] = json!(cell_id);
            item["network_type"] = json!("LTE");
            detections.push(item);
        }
        // A copied identity: a cell that really stands 150 km away (a second capture device
        // hears it there at the same time) heard at the fourth stop too.
        if stop == Some(4) && minute % 3 == 1 {
            let far = offset(home, 150_000.0, 0.0);
            for (lat, lon, dev) in [
                (here.0, here.1, device.as_str()),
                (far.0, far.1, far_device.as_str()),
            ] {
                let mut item = base(lat, lon, at(minute, &mut rng));
                item["device_id"] = json!(dev);
                item["signal_type"] = json!("cellular");
                item["mcc"] = json!(262);
                item["mnc"] = json!(2);
                item["lac"] = json!(2000);
                item["cell_id"] = json!(copied_cell);
                item["network_type"] = json!("LTE");
                detections.push(item);
            }
        }
        // An attack tool's access point (a WiFi Pineapple) at the fifth stop.
        if stop == Some(5) && minute % 2 == 0 {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("wifi");
            item["bssid"] = json!(pineapple);
            item["ssid"] = json!("Free WiFi");
            item["security"] = json!("[ESS]");
            item["signal_strength_dbm"] = json!(rng.gen_range(-75..-50));
            detections.push(item);
        }
        if (follow_from..follow_to).contains(&minute) && rng.gen_bool(p_follower) {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("ble");
            item["bt_address"] = json!(follower);
            item["bt_rssi"] = json!(rng.gen_range(-85..-60));
            detections.push(item);
        }
        if stop.is_some_and(|s| van_stops.contains(&s)) && minute % 2 == 0 && rng.gen_bool(0.5) {
            let mut item = base(here.0, here.1, at(minute, &mut rng));
            item["signal_type"] = json!("wifi");
            item["bssid"] = json!(van);
            item["ssid"] = json!("Delivery-Van");
            item["security"] = json!("[WPA2-PSK-CCMP][ESS]");
            item["signal_strength_dbm"] = json!(rng.gen_range(-80..-60));
            detections.push(item);
        }
        if (bus_from..bus_from + bus_len).contains(&minute) {
            for p in &bus_phones {
                if rng.gen_bool(0.9) {
                    let mut item = base(here.0, here.1, at(minute, &mut rng));
                    item["signal_type"] = json!("ble");
                    item["bt_address"] = json!(p);
                    item["bt_rssi"] = json!(rng.gen_range(-90..-60));
                    detections.push(item);
                }
            }
        }
    }
    let t = |radio, identifier: &str, role, follower, flag| Truth {
        radio,
        identifier: identifier.to_owned(),
        role,
        follower,
        flag,
        certain: true,
    };
    truth.push(t("ble", &tag, "tag", true, None));
    truth.push(t("ble", &phone, "own phone", false, None));
    truth.push(t(
        "wifi",
        &neighbour,
        "neighbour's access point",
        false,
        None,
    ));
    truth.push(t(
        "wifi",
        &hotspot,
        "mobile hotspot",
        false,
        Some(shadowcheck_domain::domain::rogue::MOBILE_AP),
    ));
    truth.push(t(
        "wifi",
        &twin_good,
        "café network",
        false,
        Some(shadowcheck_domain::domain::rogue::EVIL_TWIN),
    ));
    truth.push(t(
        "wifi",
        &twin_evil,
        "evil twin",
        false,
        Some(shadowcheck_domain::domain::rogue::EVIL_TWIN),
    ));
    for p in &bus_phones {
        truth.push(t("ble", p, "bus passenger", false, None));
    }
    truth.push(Truth {
        certain: false,
        ..t("ble", &follower, "follower without a tag", true, None)
    });
    truth.push(Truth {
        certain: false,
        ..t(
            "wifi",
            &van,
            "delivery van",
            false,
            Some(shadowcheck_domain::domain::rogue::MOBILE_AP),
        )
    });
    let real = format!("262-1-1000-{cell_id}");
    let fake = format!("262-1-1099-{cell_id}");
    truth.push(t(
        "cellular",
        &format!("262-2-2000-{copied_cell}"),
        "copied cell",
        false,
        Some(shadowcheck_domain::domain::rogue::CELL_TOO_FAR),
    ));
    truth.push(t(
        "wifi",
        &pineapple,
        "WiFi Pineapple",
        false,
        Some(shadowcheck_domain::domain::rogue::ATTACK_TOOL_PREFIX),
    ));
    truth.push(t(
        "cellular",
        &real,
        "home cell",
        false,
        Some(shadowcheck_domain::domain::rogue::CELL_AREA_CHANGE),
    ));
    truth.push(t(
        "cellular",
        &fake,
        "fake cell",
        false,
        Some(shadowcheck_domain::domain::rogue::CELL_AREA_CHANGE),
    ));
    Scenario {
        device,
        home,
        own_phone: ("ble", phone),
        detections,
        truth,
    }
}
