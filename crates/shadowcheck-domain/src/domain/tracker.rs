//! Tracker signatures: which Bluetooth LE advertisements come from item trackers, read from the
//! payload where a capture recorded it. A manufacturer id alone says who made the chip, not
//! what the device is: 76 is "an Apple device", never "an AirTag".

use serde::Serialize;

/// What a BLE transmitter is, as far as its advertisement tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackerClass {
    /// Apple Find My network accessory in separated mode: AirTag, or a third-party Find My tag
    /// (manufacturer data 0x004C, type 0x12).
    AppleFindMy,
    /// Tile (service 0xFEED / 0xFEEC).
    Tile,
    /// Chipolo (service 0xFE33 / 0xFE65).
    Chipolo,
    /// Samsung Galaxy SmartTag (service 0xFD5A).
    SamsungSmarttag,
    /// Google Find My Device network (service data 0xFEAA, frame 0x40 or 0x41).
    GoogleFindMy,
    /// Pebblebee (service 0xFA25).
    Pebblebee,
    /// Any Apple device (company 76 without a Find My payload): a phone, a watch, earbuds.
    AppleDevice,
}

impl TrackerClass {
    pub const ALL: [TrackerClass; 7] = [
        Self::AppleFindMy,
        Self::Tile,
        Self::Chipolo,
        Self::SamsungSmarttag,
        Self::GoogleFindMy,
        Self::Pebblebee,
        Self::AppleDevice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppleFindMy => "apple_find_my",
            Self::Tile => "tile",
            Self::Chipolo => "chipolo",
            Self::SamsungSmarttag => "samsung_smarttag",
            Self::GoogleFindMy => "google_find_my",
            Self::Pebblebee => "pebblebee",
            Self::AppleDevice => "apple_device",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// An item tracker, made to be carried and located (not merely a brand).
    pub fn is_tracker(self) -> bool {
        self != Self::AppleDevice
    }
}

/// A classification and what it rests on.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    pub class: TrackerClass,
    /// e.g. "advertisement: manufacturer data 0x004C type 0x12 (Find My, separated)".
    pub evidence: String,
}

impl Classification {
    /// How much it tells: a payload-read tracker beats a brand.
    pub fn rank(&self) -> u8 {
        if self.class.is_tracker() {
            2
        } else {
            1
        }
    }
}

/// What a capture recorded of one advertisement.
#[derive(Clone, Copy, Debug, Default)]
pub struct Advert<'a> {
    pub manufacturer_id: Option<i32>,
    /// Normalised (see `detection::normalise_service_uuid`).
    pub service_uuids: &'a [String],
    /// Lower-case hex of the AD structures.
    pub payload_hex: Option<&'a str>,
}

const APPLE: u16 = 0x004C;
const APPLE_FIND_MY: u8 = 0x12;

/// Services that name a tracker by themselves.
const TRACKER_SERVICES: &[(u16, TrackerClass)] = &[
    (0xFEED, TrackerClass::Tile),
    (0xFEEC, TrackerClass::Tile),
    (0xFE33, TrackerClass::Chipolo),
    (0xFE65, TrackerClass::Chipolo),
    (0xFD5A, TrackerClass::SamsungSmarttag),
    (0xFA25, TrackerClass::Pebblebee),
];

/// 0xFEAA is also Eddystone: only its Find My Device frames (0x40, 0x41) name a tracker.
const GOOGLE_FMDN: u16 = 0xFEAA;

/// The AD structures of a payload: (type, data). Stops at the first malformed length.
fn structures(bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i] as usize;
        if len == 0 || i + 1 + len > bytes.len() {
            break;
        }
        out.push((bytes[i + 1], &bytes[i + 2..i + 1 + len]));
        i += 1 + len;
    }
    out
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn le16(data: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([*data.first()?, *data.get(1)?]))
}

fn tracker_service(uuid: u16) -> Option<TrackerClass> {
    TRACKER_SERVICES
        .iter()
        .find(|(u, _)| *u == uuid)
        .map(|(_, c)| *c)
}

/// Reads the payload: manufacturer data, service data and 16-bit service lists.
fn from_payload(bytes: &[u8]) -> Option<Classification> {
    let mut apple = false;
    for (kind, data) in structures(bytes) {
        match kind {
            // Manufacturer specific data: company id (little-endian), then the company's bytes.
            0xFF if le16(data) == Some(APPLE) => {
                if data.get(2) == Some(&APPLE_FIND_MY) {
                    return Some(Classification {
                        class: TrackerClass::AppleFindMy,
                        evidence: "advertisement: manufacturer data 0x004C type 0x12 (Find My, separated from its owner)".into(),
                    });
                }
                apple = true;
            }
            // Service data, 16-bit UUID.
            0x16 => {
                let Some(uuid) = le16(data) else { continue };
                if uuid == GOOGLE_FMDN && matches!(data.get(2), Some(0x40 | 0x41)) {
                    return Some(Classification {
                        class: TrackerClass::GoogleFindMy,
                        evidence: format!(
                            "advertisement: service data 0xFEAA frame 0x{:02X} (Find My Device network)",
                            data[2]
                        ),
                    });
                }
                if let Some(class) = tracker_service(uuid) {
                    return Some(Classification {
                        class,
                        evidence: format!("advertisement: service data 0x{uuid:04X}"),
                    });
                }
            }
            // Incomplete / complete list of 16-bit service UUIDs.
            0x02 | 0x03 => {
                for uuid in data.chunks_exact(2).filter_map(le16) {
                    if let Some(class) = tracker_service(uuid) {
                        return Some(Classification {
                            class,
                            evidence: format!("advertisement: service UUID 0x{uuid:04X}"),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    apple.then(|| Classification {
        class: TrackerClass::AppleDevice,
        evidence: "advertisement: Apple manufacturer data without a Find My payload".into(),
    })
}

/// Classifies one advertisement: the payload first, then the declared service UUIDs, then the
/// manufacturer id alone (which only ever says "Apple device").
pub fn classify(advert: &Advert<'_>) -> Option<Classification> {
    let from_bytes = advert
        .payload_hex
        .and_then(decode_hex)
        .and_then(|b| from_payload(&b));
    if let Some(c) = from_bytes.as_ref().filter(|c| c.class.is_tracker()) {
        return Some(c.clone());
    }
    for uuid in advert.service_uuids {
        let Some(short) = (uuid.len() == 4)
            .then(|| u16::from_str_radix(uuid, 16).ok())
            .flatten()
        else {
            continue;
        };
        if let Some(class) = tracker_service(short) {
            return Some(Classification {
                class,
                evidence: format!("service UUID 0x{short:04X}"),
            });
        }
    }
    if from_bytes.is_some() {
        return from_bytes;
    }
    (advert.manufacturer_id == Some(i32::from(APPLE))).then(|| Classification {
        class: TrackerClass::AppleDevice,
        evidence: "manufacturer id 76 (Apple) only: not enough to tell an AirTag from a phone"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(hex: &str) -> Option<TrackerClass> {
        classify(&Advert {
            payload_hex: Some(hex),
            ..Advert::default()
        })
        .map(|c| c.class)
    }

    #[test]
    fn reads_tracker_payloads() {
        // AirTag in separated mode: flags, then 0xFF 4C 00 12 19 <status> <key bytes...>.
        assert_eq!(
            payload("0201061eff4c00121910aabbccddeeff00112233445566778899aabbccddeeff0011"),
            Some(TrackerClass::AppleFindMy)
        );
        // An iPhone's Nearby Info (type 0x10) is an Apple device, not a tracker.
        assert_eq!(
            payload("02011a0aff4c001005031c0a1b2c"),
            Some(TrackerClass::AppleDevice)
        );
        // Tile: 16-bit service list with 0xFEED; SmartTag service data 0xFD5A.
        assert_eq!(payload("0201060303edfe"), Some(TrackerClass::Tile));
        assert_eq!(
            payload("07165afd01020304"),
            Some(TrackerClass::SamsungSmarttag)
        );
        assert_eq!(payload("051633fe0102"), Some(TrackerClass::Chipolo));
        assert_eq!(payload("051625fa0102"), Some(TrackerClass::Pebblebee));
        // Google FMDN frame 0x41 vs an Eddystone-UID frame (0x00) under the same UUID.
        assert_eq!(payload("0616aafe41aabb"), Some(TrackerClass::GoogleFindMy));
        assert_eq!(payload("0616aafe00aabb"), None);
        // Malformed lengths stop the walk without panicking.
        assert_eq!(payload("ff"), None);
        assert_eq!(payload("05ff4c"), None);
        assert_eq!(payload("zz"), None);
    }

    #[test]
    fn a_manufacturer_id_alone_says_only_apple_device() {
        let c = classify(&Advert {
            manufacturer_id: Some(76),
            ..Advert::default()
        })
        .expect("apple");
        assert_eq!(c.class, TrackerClass::AppleDevice);
        assert!(!c.class.is_tracker());
        assert!(c.evidence.contains("not enough"));
        assert_eq!(
            classify(&Advert {
                manufacturer_id: Some(6),
                ..Advert::default()
            }),
            None
        );
        let uuids = vec!["180f".to_owned(), "feec".to_owned()];
        let c = classify(&Advert {
            manufacturer_id: Some(76),
            service_uuids: &uuids,
            payload_hex: None,
        })
        .expect("tile");
        assert_eq!(c.class, TrackerClass::Tile);
        assert_eq!(c.rank(), 2);
    }
}
