//! A scenario as the WiGLE app on an Android phone exports it (WiGLE CSV 1.6): what a user
//! brings to `shadowcheck import`. WiGLE keeps a BLE advertisement's company id, never its
//! payload, so a Find My tag and an iPhone look alike in it.

use serde_json::Value;

use crate::Scenario;

const HEADER: &str = "WigleWifi-1.6,appRelease=2.70,model=Pixel 7,release=14,device=panther,\
display=TQ3A,board=panther,brand=google,star=Sol,body=3,subBody=0\n\
MAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,\
AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n";

/// The scenario's own device's Wi-Fi and BLE rows (the other rows are another device's, or
/// cells WiGLE keys differently).
pub fn csv(s: &Scenario) -> String {
    let mut out = String::from(HEADER);
    let mine = s
        .detections
        .iter()
        .filter(|d| d["device_id"] == s.device.as_str());
    for d in mine {
        if let Some(row) = row(d) {
            out.push_str(&row);
        }
    }
    out
}

fn row(d: &Value) -> Option<String> {
    let text = |key: &str| d[key].as_str().unwrap_or("").replace(',', " ");
    let (mac, name, auth, rssi, company, kind) = match d["signal_type"].as_str()? {
        "wifi" => (
            text("bssid"),
            text("ssid"),
            text("security"),
            &d["signal_strength_dbm"],
            String::new(),
            "WIFI",
        ),
        "ble" => (
            text("bt_address"),
            text("bt_name"),
            "Misc [LE]".to_owned(),
            &d["bt_rssi"],
            d["ble_manufacturer_id"]
                .as_i64()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            "BLE",
        ),
        _ => return None,
    };
    // WiGLE writes UTC to the second as "yyyy-MM-dd HH:mm:ss".
    let at = d["detected_at"].as_str()?;
    let first_seen = format!("{} {}", at.get(..10)?, at.get(11..19)?);
    Some(format!(
        "{mac},{name},{auth},{first_seen},0,0,{},{},{},0,{},,{company},{kind}\n",
        rssi.as_i64().unwrap_or(-70),
        d["latitude"],
        d["longitude"],
        d["accuracy_meters"].as_f64().unwrap_or(10.0),
    ))
}
