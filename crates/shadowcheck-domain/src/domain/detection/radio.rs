//! The fields of each radio: what a wifi access point, a Bluetooth or BLE device, or a cell
//! reports, each read with the bounds of the field table.

use super::reader::Reader;
use crate::domain::fields::NETWORK_TYPES;
use crate::domain::mac::Mac;

/// A wifi access point as a capture device heard it.
#[derive(Default)]
pub(super) struct Wifi {
    /// 802.11 limits an SSID to 32 octets.
    pub ssid: Option<String>,
    pub bssid: Option<Mac>,
    /// 2.4, 5 and 6 GHz channel numbers run up to 233.
    pub channel: Option<i32>,
    pub frequency_mhz: Option<i32>,
    pub signal_strength_dbm: Option<i32>,
    /// The advertised security string.
    pub security: Option<String>,
}

impl Wifi {
    pub fn read(r: &mut Reader<'_>) -> Self {
        Self {
            ssid: r.string_of("ssid"),
            bssid: r.mac("bssid"),
            channel: r.int_of("channel").map(|v| v as i32),
            frequency_mhz: r.int_of("frequency_mhz").map(|v| v as i32),
            signal_strength_dbm: r.int_of("signal_strength_dbm").map(|v| v as i32),
            security: r.string_of("security"),
        }
    }
}

/// A classic Bluetooth or BLE device and what its advertisement said.
#[derive(Default)]
pub(super) struct Bluetooth {
    pub address: Option<Mac>,
    /// The Bluetooth remote name is at most 248 octets.
    pub name: Option<String>,
    /// Class of Device is a 24-bit field.
    pub class: Option<i32>,
    pub rssi: Option<i32>,
    pub manufacturer_id: Option<i32>,
    pub service_uuids: Vec<String>,
    pub advertisement: Option<String>,
}

impl Bluetooth {
    pub fn read(r: &mut Reader<'_>) -> Self {
        Self {
            address: r.mac("bt_address"),
            name: r.string_of("bt_name"),
            class: r.int_of("bt_class").map(|v| v as i32),
            rssi: r.int_of("bt_rssi").map(|v| v as i32),
            manufacturer_id: r.int_of("ble_manufacturer_id").map(|v| v as i32),
            service_uuids: r.service_uuids("ble_service_uuids"),
            advertisement: r.hex("ble_advertisement"),
        }
    }
}

/// A cell: its identity, sized by its radio generation.
#[derive(Default)]
pub(super) struct Cellular {
    pub network_type: Option<String>,
    pub cell_id: Option<i64>,
    pub lac: Option<i32>,
    pub mcc: Option<i16>,
    pub mnc: Option<i16>,
}

impl Cellular {
    pub fn read(r: &mut Reader<'_>) -> Self {
        let network_type = r.string("network_type", 16).and_then(|s| {
            let upper = s.trim().to_ascii_uppercase();
            if NETWORK_TYPES.contains(&upper.as_str()) {
                Some(upper)
            } else {
                r.fail(
                    "network_type",
                    format!("must be one of {}", NETWORK_TYPES.join(", ")),
                );
                None
            }
        });
        let is_nr = network_type.as_deref() == Some("NR");
        // NR cell identities are 36 bits and NR tracking areas 24 bits; older radios are smaller.
        let cell_id = r.int(
            "cell_id",
            1,
            if is_nr { (1 << 36) - 1 } else { (1 << 28) - 1 },
        );
        let lac = r
            .int("lac", 1, if is_nr { (1 << 24) - 1 } else { 65_533 })
            .map(|v| v as i32);
        Self {
            network_type,
            cell_id,
            lac,
            mcc: r.int_of("mcc").map(|v| v as i16),
            mnc: r.int_of("mnc").map(|v| v as i16),
        }
    }
}
