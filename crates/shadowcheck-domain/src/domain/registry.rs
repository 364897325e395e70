//! The transmitter registry's arithmetic: which transmitter a detection belongs to, and how a
//! registry entry absorbs new sightings (counts, days, capture devices, names, best signal, and
//! a signal-weighted position estimate with its spread). Pure: the updater reads and writes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::geo::{haversine_m, MAX_FIX_ACCURACY_M};
use super::rogue::{self, Flag};
use super::tracker::{self, Advert, Classification};
use super::{Mac, SignalType};

/// Capture devices and names kept per transmitter; the counts beyond are not needed to answer
/// "who saw it" and would let one busy transmitter grow without bound.
pub const MAX_DEVICES: usize = 256;
pub const MAX_NAMES: usize = 32;
/// Fixes kept (a uniform sample, the lowest hashes of detection ids) to estimate the spread.
pub const SAMPLE_SIZE: usize = 64;

/// A transmitter: its radio and its identifier (lowercase colon-separated MAC, or
/// `mcc-mnc-lac-cell_id` for a cell, the lac empty when unknown).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransmitterKey {
    pub radio: SignalType,
    pub identifier: String,
}

impl TransmitterKey {
    pub fn mac(radio: SignalType, mac: Mac) -> Self {
        Self {
            radio,
            identifier: mac.to_string(),
        }
    }

    pub fn cell(mcc: i16, mnc: i16, lac: Option<i32>, cell_id: i64) -> Self {
        let lac = lac.map(|l| l.to_string()).unwrap_or_default();
        Self {
            radio: SignalType::Cellular,
            identifier: format!("{mcc}-{mnc}-{lac}-{cell_id}"),
        }
    }

    /// From a URL: a radio name and an identifier in any MAC notation, or a cell tuple.
    pub fn parse(radio: &str, identifier: &str) -> Result<Self, String> {
        let radio: SignalType = radio.parse().map_err(|_| {
            format!("unknown radio `{radio}`: use wifi, bluetooth, ble or cellular")
        })?;
        if radio != SignalType::Cellular {
            let mac: Mac = identifier.parse().map_err(|e| format!("{e}"))?;
            return Ok(Self::mac(radio, mac));
        }
        let parts: Vec<&str> = identifier.split('-').collect();
        let bad = || "a cell is mcc-mnc-lac-cell_id, e.g. 262-1-1000-10001 (lac may be empty)";
        let [mcc, mnc, lac, cell] = parts.as_slice() else {
            return Err(bad().to_owned());
        };
        let mcc = mcc.parse().map_err(|_| bad())?;
        let mnc = mnc.parse().map_err(|_| bad())?;
        let lac = if lac.is_empty() {
            None
        } else {
            Some(lac.parse().map_err(|_| bad())?)
        };
        let cell = cell.parse().map_err(|_| bad())?;
        Ok(Self::cell(mcc, mnc, lac, cell))
    }

    /// The cell tuple, for cells.
    pub fn cell_parts(&self) -> Option<(i16, i16, Option<i32>, i64)> {
        if self.radio != SignalType::Cellular {
            return None;
        }
        let parts: Vec<&str> = self.identifier.split('-').collect();
        let [mcc, mnc, lac, cell] = parts.as_slice() else {
            return None;
        };
        Some((
            mcc.parse().ok()?,
            mnc.parse().ok()?,
            lac.parse().ok(),
            cell.parse().ok()?,
        ))
    }

    /// The organisation the address block is registered to, by longest prefix over the IEEE
    /// MA-S (36-bit), MA-M (28-bit) and MA-L (24-bit) registries (and IAB, CID), as the
    /// `oui-data` crate embeds them. Only for addresses a vendor assigned: a locally
    /// administered (randomised) address names no vendor, whatever its first octets match.
    pub fn vendor(&self) -> Option<&'static str> {
        if self.radio == SignalType::Cellular {
            return None;
        }
        let mac: Mac = self.identifier.parse().ok()?;
        if mac.is_locally_administered() {
            return None;
        }
        let hex: String = mac.octets().iter().map(|o| format!("{o:02X}")).collect();
        oui_data::lookup(&hex).map(|r| r.organization())
    }

    /// How the address was assigned: `universal` (a vendor's) or `local` (set by software,
    /// usually privacy randomisation), from the 0x02 bit of the first octet for wifi and classic
    /// Bluetooth. For BLE that bit does not tell (random addresses carry their type in the
    /// advertisement's TxAdd flag, which captures rarely record), so it is left unknown.
    pub fn mac_kind(&self) -> Option<MacKind> {
        match self.radio {
            SignalType::Wifi | SignalType::Bluetooth => {
                let mac: Mac = self.identifier.parse().ok()?;
                Some(if mac.is_locally_administered() {
                    MacKind::Local
                } else {
                    MacKind::Universal
                })
            }
            SignalType::Ble | SignalType::Cellular => None,
        }
    }
}

/// How a hardware address was assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacKind {
    /// From a vendor's registered block.
    Universal,
    /// Set by software, usually privacy randomisation.
    Local,
}

impl MacKind {
    /// As stored in the registry's `mac_kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Universal => "universal",
            Self::Local => "local",
        }
    }
}

/// One stored detection, as the registry sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    pub id: i64,
    pub key: TransmitterKey,
    pub at: DateTime<Utc>,
    /// (latitude, longitude); `None` when the capture had no fix.
    pub fix: Option<(f64, f64)>,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
    pub signal_dbm: Option<i32>,
    pub device: Option<Uuid>,
    pub name: Option<String>,
    /// Wifi: the advertised security string.
    pub security: Option<String>,
    /// BLE: what the capture recorded of the advertisement.
    pub manufacturer_id: Option<i32>,
    pub service_uuids: Vec<String>,
    pub advertisement: Option<String>,
}

/// Running sums of the position estimate: weighted unit vectors (so the centroid is right
/// across the antimeridian and near the poles) and a uniform sample of fixes for the spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    w: f64,
    x: f64,
    y: f64,
    z: f64,
    /// (hash of the detection id, lat, lon), lowest hashes first; single precision (about a
    /// metre) is plenty for a spread and halves what each registry row carries.
    sample: Vec<(u64, f32, f32)>,
}

/// A fix's weight: its received amplitude, so the strongest readings (closest to the
/// transmitter) dominate; a fix without a signal counts as a weak one (-100 dBm).
fn weight(signal_dbm: Option<i32>) -> f64 {
    let dbm = signal_dbm.unwrap_or(-100).clamp(-120, 0) as f64;
    10f64.powf((dbm + 100.0) / 20.0)
}

/// SplitMix64: a well-mixed hash of the detection id, for an order-independent sample.
fn mix(id: i64) -> u64 {
    let mut z = (id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Estimate {
    /// The sums (4 × f64) then each sample (u64 hash, f32 lat, f32 lon), little-endian: what the
    /// registry row stores.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 16 * self.sample.len());
        for v in [self.w, self.x, self.y, self.z] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (h, lat, lon) in &self.sample {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&lat.to_le_bytes());
            out.extend_from_slice(&lon.to_le_bytes());
        }
        out
    }

    /// Reads [`Estimate::to_bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 32 || (b.len() - 32) % 16 != 0 || (b.len() - 32) / 16 > SAMPLE_SIZE {
            return None;
        }
        let f64_at = |i: usize| Some(f64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let mut e = Estimate {
            w: f64_at(0)?,
            x: f64_at(8)?,
            y: f64_at(16)?,
            z: f64_at(24)?,
            sample: Vec::with_capacity((b.len() - 32) / 16),
        };
        for c in b[32..].chunks_exact(16) {
            e.sample.push((
                u64::from_le_bytes(c[0..8].try_into().ok()?),
                f32::from_le_bytes(c[8..12].try_into().ok()?),
                f32::from_le_bytes(c[12..16].try_into().ok()?),
            ));
        }
        Some(e)
    }

    fn add(&mut self, s: &Sighting, (lat_deg, lon_deg): (f64, f64)) {
        let w = weight(s.signal_dbm);
        let (lat, lon) = (lat_deg.to_radians(), lon_deg.to_radians());
        self.w += w;
        self.x += w * lat.cos() * lon.cos();
        self.y += w * lat.cos() * lon.sin();
        self.z += w * lat.sin();
        let h = mix(s.id);
        if let Err(at) = self.sample.binary_search_by_key(&h, |p| p.0) {
            if at < SAMPLE_SIZE {
                self.sample.insert(at, (h, lat_deg as f32, lon_deg as f32));
                self.sample.truncate(SAMPLE_SIZE);
            }
        }
    }

    /// The weighted centroid (lat, lon), once any fix counted.
    fn centroid(&self) -> Option<(f64, f64)> {
        let norm = (self.x * self.x + self.y * self.y + self.z * self.z).sqrt();
        if self.w <= 0.0 || norm < 1e-12 * self.w {
            return None;
        }
        let lat = self.z.atan2(self.x.hypot(self.y)).to_degrees();
        let lon = self.y.atan2(self.x).to_degrees();
        Some((lat, lon))
    }

    /// The 95th percentile distance of the sampled fixes from `center`.
    fn spread_m(&self, center: (f64, f64)) -> Option<f64> {
        let mut d: Vec<f64> = self
            .sample
            .iter()
            .map(|(_, lat, lon)| haversine_m(center, (f64::from(*lat), f64::from(*lon))))
            .collect();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let rank = ((0.95 * d.len() as f64).ceil() as usize).clamp(1, d.len());
        Some(d[rank - 1])
    }
}

/// One registry row.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: TransmitterKey,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub detections: i64,
    pub days: Vec<NaiveDate>,
    pub devices: Vec<Uuid>,
    pub names: Vec<String>,
    pub best_signal_dbm: Option<i32>,
    pub best_signal_at: Option<DateTime<Utc>>,
    /// (lat, lon) of the strongest reading.
    pub best_location: Option<(f64, f64)>,
    /// (lat, lon) estimated, and the p95 distance of accurate fixes from it.
    pub location: Option<(f64, f64)>,
    pub spread_m: Option<f64>,
    /// Fixes that counted towards the estimate.
    pub fixes: i64,
    pub estimate: Estimate,
    /// Security classes seen (wifi), weakest first.
    pub security: Vec<rogue::Security>,
    /// The most telling tracker classification seen.
    pub tracker: Option<Classification>,
    /// The entry's own rogue flags, recomputed by [`Entry::settle`].
    pub flags: Vec<Flag>,
}

impl Entry {
    /// An entry that has seen nothing yet.
    pub fn empty(key: TransmitterKey, at: DateTime<Utc>) -> Self {
        Self {
            key,
            first_seen: at,
            last_seen: at,
            detections: 0,
            days: Vec::new(),
            devices: Vec::new(),
            names: Vec::new(),
            best_signal_dbm: None,
            best_signal_at: None,
            best_location: None,
            location: None,
            spread_m: None,
            fixes: 0,
            estimate: Estimate::default(),
            security: Vec::new(),
            tracker: None,
            flags: Vec::new(),
        }
    }

    /// Folds in one sighting of this transmitter; call [`Entry::settle`] after a batch.
    pub fn absorb(&mut self, s: &Sighting) {
        self.first_seen = self.first_seen.min(s.at);
        self.last_seen = self.last_seen.max(s.at);
        self.detections += 1;
        let day = s.at.date_naive();
        if let Err(at) = self.days.binary_search(&day) {
            self.days.insert(at, day);
        }
        if let Some(device) = s.device {
            if self.devices.len() < MAX_DEVICES && !self.devices.contains(&device) {
                self.devices.push(device);
            }
        }
        if let Some(name) = s.name.as_deref().filter(|n| !n.is_empty()) {
            if self.names.len() < MAX_NAMES && !self.names.iter().any(|n| n == name) {
                self.names.push(name.to_owned());
            }
        }
        // The strongest signal at a known place: where the transmitter most likely is.
        if let (Some(dbm), Some(fix)) = (s.signal_dbm, s.fix) {
            if self.best_signal_dbm.is_none_or(|best| dbm > best) {
                self.best_signal_dbm = Some(dbm);
                self.best_signal_at = Some(s.at);
                self.best_location = Some(fix);
            }
        }
        if let Some(fix) = s
            .fix
            .filter(|_| s.accuracy_m.is_none_or(|a| a <= MAX_FIX_ACCURACY_M))
        {
            self.fixes += 1;
            self.estimate.add(s, fix);
        }
        if let Some(caps) = s.security.as_deref() {
            let class = rogue::Security::classify(caps);
            if let Err(at) = self.security.binary_search(&class) {
                self.security.insert(at, class);
            }
        }
        let advertised =
            s.manufacturer_id.is_some() || !s.service_uuids.is_empty() || s.advertisement.is_some();
        if advertised {
            let seen = tracker::classify(&Advert {
                manufacturer_id: s.manufacturer_id,
                service_uuids: &s.service_uuids,
                payload_hex: s.advertisement.as_deref(),
            });
            if let Some(c) = seen {
                if self.tracker.as_ref().is_none_or(|t| c.rank() > t.rank()) {
                    self.tracker = Some(c);
                }
            }
        }
    }

    /// Recomputes the position and spread from the running sums.
    pub fn settle(&mut self) {
        self.location = self.estimate.centroid();
        self.spread_m = self.location.and_then(|c| self.estimate.spread_m(c));
        self.flags = rogue::own_flags(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(id: i64, lat: f64, lon: f64, dbm: Option<i32>, acc: Option<f64>) -> Sighting {
        Sighting {
            id,
            key: TransmitterKey::parse("wifi", "A4-00-00-00-00-01").expect("key"),
            at: DateTime::from_timestamp(1_699_920_000 + id * 3_600, 0).expect("time"),
            fix: Some((lat, lon)),
            accuracy_m: acc,
            altitude_m: None,
            signal_dbm: dbm,
            device: None,
            name: Some(format!("net-{}", id % 2)),
            security: None,
            manufacturer_id: None,
            service_uuids: Vec::new(),
            advertisement: None,
        }
    }

    #[test]
    fn keys_print_one_way_whatever_was_parsed() {
        let k = TransmitterKey::parse("wifi", "A4-00-00-00-00-01").expect("wifi");
        assert_eq!(k.identifier, "a4:00:00:00:00:01");
        assert_eq!(k.mac_kind(), Some(MacKind::Universal));
        // Longest prefix: an MA-L block, and an MA-S block inside another vendor's range.
        let tp_link = TransmitterKey::parse("wifi", "a4:2b:b0:12:34:56").expect("wifi");
        assert_eq!(tp_link.vendor(), Some("TP-LINK TECHNOLOGIES CO.,LTD."));
        let randomised = TransmitterKey::parse("wifi", "a6:2b:b0:12:34:56").expect("wifi");
        assert_eq!(randomised.vendor(), None);
        let k = TransmitterKey::parse("bluetooth", "02:00:00:00:00:01").expect("bt");
        assert_eq!(k.mac_kind(), Some(MacKind::Local));
        let cell = TransmitterKey::parse("cellular", "262-1--10001").expect("cell");
        assert_eq!(cell.cell_parts(), Some((262, 1, None, 10001)));
        assert_eq!(
            TransmitterKey::cell(262, 1, Some(7), 5).identifier,
            "262-1-7-5"
        );
        for (radio, id) in [
            ("wifi", "00:00:00:00:00:00"),
            ("ble", "ff:ff:ff:ff:ff:ff"),
            ("radio", "a4:00:00:00:00:01"),
            ("cellular", "262-1-10001"),
        ] {
            assert!(TransmitterKey::parse(radio, id).is_err(), "{radio} {id}");
        }
    }

    #[test]
    fn the_estimate_weights_strong_accurate_fixes_even_across_the_antimeridian() {
        let mut e = Entry::empty(sighting(0, 0.0, 0.0, None, None).key, Utc::now());
        // Two strong fixes either side of the antimeridian, one weak fix far off, one inaccurate.
        for s in [
            sighting(1, 10.0, 179.999, Some(-40), Some(5.0)),
            sighting(2, 10.0, -179.999, Some(-40), Some(5.0)),
            sighting(3, 10.5, 179.0, Some(-95), Some(10.0)),
            sighting(4, 40.0, 0.0, Some(-30), Some(500.0)),
        ] {
            e.absorb(&s);
        }
        e.settle();
        let (lat, lon) = e.location.expect("located");
        assert!((lat - 10.0).abs() < 0.01, "{lat}");
        assert!(lon.abs() > 179.9, "{lon}");
        assert_eq!(e.detections, 4);
        assert_eq!(e.fixes, 3);
        assert_eq!(e.best_signal_dbm, Some(-30));
        assert_eq!(e.best_location, Some((40.0, 0.0)));
        assert_eq!(e.names, vec!["net-1".to_owned(), "net-0".to_owned()]);
        assert_eq!(e.days.len(), 1);
        // The far weak fix is in the sample: the spread is about its distance.
        let spread = e.spread_m.expect("spread");
        assert!(spread > 100_000.0, "{spread}");
    }

    #[test]
    fn absorbing_in_any_order_gives_the_same_entry() {
        let sightings: Vec<Sighting> = (0..200)
            .map(|i| {
                sighting(
                    i,
                    52.0 + (i % 7) as f64 * 1e-4,
                    13.0,
                    Some(-50 - (i % 30) as i32),
                    Some(8.0),
                )
            })
            .collect();
        let build = |order: &mut dyn Iterator<Item = &Sighting>| {
            let mut e = Entry::empty(sightings[0].key.clone(), sightings[0].at);
            for s in order {
                e.absorb(s);
            }
            e.settle();
            e
        };
        let forward = build(&mut sightings.iter());
        let backward = build(&mut sightings.iter().rev());
        let bytes = forward.estimate.to_bytes();
        assert_eq!(bytes.len(), 32 + 16 * SAMPLE_SIZE);
        assert_eq!(
            Estimate::from_bytes(&bytes).as_ref(),
            Some(&forward.estimate)
        );
        assert_eq!(Estimate::from_bytes(&bytes[..40]), None);
        assert_eq!(forward.estimate.sample, backward.estimate.sample);
        assert_eq!(forward.estimate.sample.len(), SAMPLE_SIZE);
        assert_eq!(forward.days, backward.days);
        assert_eq!(forward.first_seen, backward.first_seen);
        let (a, b) = (forward.location.expect("a"), backward.location.expect("b"));
        assert!((a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9);
    }
}
