//! Rogue networks and cells: flags with their evidence, never folded silently into a score.
//! A row's own flags (an attack tool's address block, a fixed-looking access point that moves,
//! a cell seen farther apart than any cell covers) and flags that need its neighbours (an evil
//! twin, a cell whose area code changed).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::registry::{Entry, MacKind};
use super::SignalType;

/// One flag: its name and what it rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub flag: RogueFlag,
    pub evidence: Value,
}

/// The rogue flags, named so clients can filter on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RogueFlag {
    AttackToolPrefix,
    MobileAp,
    CellTooFar,
    EvilTwin,
    CellAreaChange,
}

impl RogueFlag {
    pub const ALL: [RogueFlag; 5] = [
        Self::AttackToolPrefix,
        Self::MobileAp,
        Self::CellTooFar,
        Self::EvilTwin,
        Self::CellAreaChange,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AttackToolPrefix => "attack_tool_prefix",
            Self::MobileAp => "mobile_ap",
            Self::CellTooFar => "cell_too_far",
            Self::EvilTwin => "evil_twin",
            Self::CellAreaChange => "cell_area_change",
        }
    }
}

impl std::str::FromStr for RogueFlag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.as_str()).collect();
                format!("must be one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for RogueFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The flags' names as stored in the registry's `flags` documents.
pub const ATTACK_TOOL_PREFIX: &str = RogueFlag::AttackToolPrefix.as_str();
pub const MOBILE_AP: &str = RogueFlag::MobileAp.as_str();
pub const CELL_TOO_FAR: &str = RogueFlag::CellTooFar.as_str();
pub const EVIL_TWIN: &str = RogueFlag::EvilTwin.as_str();
pub const CELL_AREA_CHANGE: &str = RogueFlag::CellAreaChange.as_str();

/// Address blocks registered to makers of attack tools.
pub const ATTACK_PREFIXES: &[(&str, &str)] = &[("00:13:37", "Hak5 (WiFi Pineapple)")];

/// A vendor-addressed access point whose fixes spread wider than this (p95 from its estimated
/// position) is not where a fixed access point would be.
pub const MOBILE_AP_SPREAD_M: f64 = 1_000.0;
/// The widest a real cell reaches is about 35 km (GSM timing advance) and a few extended-range
/// LTE cells more: fixes spread wider than this from one estimated position are two places.
pub const CELL_MAX_SPREAD_M: f64 = 40_000.0;
/// Same SSID, different security, within this distance: one area.
pub const EVIL_TWIN_RADIUS_M: f64 = 500.0;

/// The class of a wifi network's advertised security, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Open,
    Wep,
    Wpa,
    Wpa2,
    Wpa3,
    /// 802.1X/EAP: as strong as WPA3 for comparing twins.
    Enterprise,
}

impl Security {
    pub const ALL: [Security; 6] = [
        Self::Open,
        Self::Wep,
        Self::Wpa,
        Self::Wpa2,
        Self::Wpa3,
        Self::Enterprise,
    ];

    /// The class of an advertised security string (`[WPA2-PSK-CCMP][ESS]`, `WPA3`, `open`, ...).
    pub fn classify(caps: &str) -> Self {
        let c = caps.to_ascii_uppercase();
        if c.contains("EAP") || c.contains("802.1X") || c.contains("ENTERPRISE") {
            Self::Enterprise
        } else if c.contains("WPA3") || c.contains("SAE") || c.contains("OWE") {
            Self::Wpa3
        } else if c.contains("WPA2") || c.contains("RSN") {
            Self::Wpa2
        } else if c.contains("WPA") {
            Self::Wpa
        } else if c.contains("WEP") {
            Self::Wep
        } else {
            Self::Open
        }
    }

    /// As stored in the registry's `security` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Wep => "wep",
            Self::Wpa => "wpa",
            Self::Wpa2 => "wpa2",
            Self::Wpa3 => "wpa3",
            Self::Enterprise => "enterprise",
        }
    }

    /// A stored class; `None` for a name this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Stronger security ranks higher; WPA3 and enterprise rank alike.
    pub fn rank(self) -> u8 {
        match self {
            Self::Open => 0,
            Self::Wep => 1,
            Self::Wpa => 2,
            Self::Wpa2 => 3,
            Self::Wpa3 | Self::Enterprise => 4,
        }
    }
}

/// The flags an entry earns on its own.
pub fn own_flags(e: &Entry) -> Vec<Flag> {
    let mut out = Vec::new();
    if e.key.radio != SignalType::Cellular {
        for (prefix, tool) in ATTACK_PREFIXES {
            if e.key.identifier.starts_with(prefix) {
                out.push(Flag {
                    flag: RogueFlag::AttackToolPrefix,
                    evidence: json!({"prefix": prefix, "registered_to": tool}),
                });
            }
        }
    }
    let spread = e.spread_m.unwrap_or(0.0);
    match e.key.radio {
        SignalType::Wifi
            if e.key.mac_kind() == Some(MacKind::Universal) && spread > MOBILE_AP_SPREAD_M =>
        {
            out.push(Flag {
                flag: RogueFlag::MobileAp,
                evidence: json!({
                    "spread_m": spread.round(),
                    "threshold_m": MOBILE_AP_SPREAD_M,
                    "mac_kind": "universal",
                    "fixes": e.fixes,
                    "reason": "a vendor-addressed access point seen at places kilometres apart: a mobile hotspot, or one travelling with someone",
                }),
            });
        }
        SignalType::Cellular if spread > CELL_MAX_SPREAD_M => {
            out.push(Flag {
                flag: RogueFlag::CellTooFar,
                evidence: json!({
                    "spread_m": spread.round(),
                    "threshold_m": CELL_MAX_SPREAD_M,
                    "fixes": e.fixes,
                    "reason": "the same cell identity heard farther apart than any cell covers: a copied identity (IMSI catcher) or a wrong cell database entry",
                }),
            });
        }
        _ => {}
    }
    out
}

/// A nearby access point with a shared SSID.
#[derive(Clone, Debug)]
pub struct Twin {
    pub identifier: String,
    pub security: Vec<Security>,
    pub distance_m: f64,
}

/// An evil-twin flag when a neighbour serves one of this network's names with security that
/// shares nothing with this one's (open beside WPA2, say). Both sides are flagged: the
/// evidence says which is weaker.
pub fn evil_twin(security: &[Security], names: &[String], twins: &[Twin]) -> Option<Flag> {
    if security.is_empty() {
        return None;
    }
    let differing: Vec<&Twin> = twins
        .iter()
        .filter(|t| !t.security.is_empty() && !t.security.iter().any(|s| security.contains(s)))
        .collect();
    if differing.is_empty() {
        return None;
    }
    let best = |s: &[Security]| s.iter().map(|c| c.rank()).max().unwrap_or(0);
    let mine = best(security);
    let weaker = differing.iter().any(|t| best(&t.security) > mine);
    Some(Flag {
        flag: RogueFlag::EvilTwin,
        evidence: json!({
            "names": names,
            "security": security,
            "weaker_than_a_twin": weaker,
            "radius_m": EVIL_TWIN_RADIUS_M,
            "twins": differing.iter().map(|t| json!({
                "identifier": t.identifier,
                "security": t.security,
                "distance_m": t.distance_m.round(),
            })).collect::<Vec<_>>(),
        }),
    })
}

/// A flag when the same cell (mcc, mnc, cell id) is heard under several area codes.
pub fn cell_area_change(identifier: &str, same_cell: &[String]) -> Option<Flag> {
    let others: Vec<&String> = same_cell.iter().filter(|o| *o != identifier).collect();
    if others.is_empty() {
        return None;
    }
    let area = |id: &str| id.split('-').nth(2).unwrap_or("").to_owned();
    let mut areas: Vec<String> = others.iter().map(|o| area(o)).collect();
    areas.push(area(identifier));
    areas.sort();
    areas.dedup();
    Some(Flag {
        flag: RogueFlag::CellAreaChange,
        evidence: json!({
            "area_codes": areas,
            "also_heard_as": others,
            "reason": "one cell identity under several location/tracking area codes: IMSI catchers announce a new area to make phones register",
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::registry::TransmitterKey;
    use chrono::Utc;

    fn entry(radio: &str, id: &str, spread: f64) -> Entry {
        let mut e = Entry::empty(TransmitterKey::parse(radio, id).expect("key"), Utc::now());
        e.spread_m = Some(spread);
        e
    }

    #[test]
    fn security_classes() {
        let class = Security::classify;
        assert_eq!(class("[WPA2-PSK-CCMP][RSN-PSK-CCMP][ESS]"), Security::Wpa2);
        assert_eq!(class("[ESS]"), Security::Open);
        assert_eq!(class("[WPA2-EAP-CCMP][ESS]"), Security::Enterprise);
        assert_eq!(class("[RSN-SAE-CCMP][ESS]"), Security::Wpa3);
        assert_eq!(class("[WEP][ESS]"), Security::Wep);
    }

    #[test]
    fn own_flags_need_their_evidence() {
        let names = |f: Vec<Flag>| f.into_iter().map(|f| f.flag.as_str()).collect::<Vec<_>>();
        assert_eq!(
            names(own_flags(&entry("wifi", "00:13:37:aa:bb:cc", 10.0))),
            vec![ATTACK_TOOL_PREFIX]
        );
        assert_eq!(
            names(own_flags(&entry("wifi", "a4:2b:b0:00:00:01", 3_000.0))),
            vec![MOBILE_AP]
        );
        // A randomised (phone hotspot) address is mobile by design; a fixed AP stays put.
        assert!(own_flags(&entry("wifi", "a6:2b:b0:00:00:01", 3_000.0)).is_empty());
        assert!(own_flags(&entry("wifi", "a4:2b:b0:00:00:01", 80.0)).is_empty());
        assert_eq!(
            names(own_flags(&entry("cellular", "262-1-1000-5001", 90_000.0))),
            vec![CELL_TOO_FAR]
        );
        assert!(own_flags(&entry("cellular", "262-1-1000-5001", 9_000.0)).is_empty());
    }

    #[test]
    fn a_network_name_served_with_disjoint_security_nearby_is_an_evil_twin() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let sec = |v: &[&str]| {
            v.iter()
                .map(|x| Security::parse(x).expect("class"))
                .collect::<Vec<_>>()
        };
        let twin = |id: &str, classes: &[&str]| Twin {
            identifier: id.into(),
            security: sec(classes),
            distance_m: 40.0,
        };
        let names = s(&["CoffeeShop"]);
        let open = evil_twin(&sec(&["open"]), &names, &[twin("a", &["wpa2"])]).expect("flag");
        assert_eq!(open.evidence["weaker_than_a_twin"], true);
        let legit = evil_twin(&sec(&["wpa2"]), &names, &[twin("b", &["open"])]).expect("flag");
        assert_eq!(legit.evidence["weaker_than_a_twin"], false);
        // An enterprise network's many access points agree: nothing to flag.
        assert!(evil_twin(
            &sec(&["wpa2"]),
            &names,
            &[twin("c", &["wpa2"]), twin("d", &["wpa2", "wpa3"])]
        )
        .is_none());
    }

    #[test]
    fn a_cell_heard_under_two_area_codes_is_flagged() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = cell_area_change(
            "262-1-1000-5001",
            &s(&["262-1-1099-5001", "262-1-1000-5001"]),
        )
        .expect("flag");
        assert_eq!(f.evidence["area_codes"], json!(["1000", "1099"]));
        assert!(cell_area_change("262-1-1000-5001", &s(&["262-1-1000-5001"])).is_none());
    }
}
