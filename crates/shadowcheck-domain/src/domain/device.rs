//! Capture devices: what reports detections (a phone, a Kismet rig, an ESP32 wardriver, a
//! stumbler) or stands still and listens (a fixed sensor, whose surveyed position its rows
//! without a fix take).

use std::fmt;
use std::str::FromStr;

use super::Position;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Phone,
    KismetRig,
    Esp32,
    Stumbler,
    FixedSensor,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 5] = [
        Self::Phone,
        Self::KismetRig,
        Self::Esp32,
        Self::Stumbler,
        Self::FixedSensor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::KismetRig => "kismet_rig",
            Self::Esp32 => "esp32",
            Self::Stumbler => "stumbler",
            Self::FixedSensor => "fixed_sensor",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown kind `{s}`: use phone, kismet_rig, esp32, stumbler or fixed_sensor"
                )
            })
    }
}

/// A device's display name: 1 to 128 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceName(String);

impl DeviceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let n = trimmed.chars().count();
        if n == 0 || n > 128 {
            return Err("must be 1 to 128 characters".to_owned());
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(Self(trimmed.to_owned()))
    }
}

/// A free-text note on a device: at most 500 characters, printable (line breaks allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceNote(String);

impl DeviceNote {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceNote {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().count() > 500 || s.chars().any(|c| c.is_control() && c != '\n') {
            return Err("must be at most 500 printable characters".to_owned());
        }
        Ok(Self(s.to_owned()))
    }
}

/// Where a stationary device stands and how well that is known (metres, in [0.1, 10000]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedPosition {
    pub position: Position,
    pub accuracy_m: f64,
}

impl FixedPosition {
    pub fn new(position: Position, accuracy_m: f64) -> Result<Self, String> {
        if !(accuracy_m.is_finite() && (0.1..=10_000.0).contains(&accuracy_m)) {
            return Err("accuracy_m must be a number of metres in [0.1, 10000]".to_owned());
        }
        Ok(Self {
            position,
            accuracy_m,
        })
    }
}

/// A device as registered: only a fixed sensor has a position, and a fixed sensor has one.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSpec {
    pub name: DeviceName,
    pub kind: DeviceKind,
    pub fixed: Option<FixedPosition>,
    pub note: Option<DeviceNote>,
}

impl DeviceSpec {
    pub fn new(
        name: DeviceName,
        kind: DeviceKind,
        fixed: Option<FixedPosition>,
        note: Option<DeviceNote>,
    ) -> Result<Self, String> {
        match (kind, &fixed) {
            (DeviceKind::FixedSensor, None) => {
                return Err(
                    "a fixed_sensor needs its position (latitude, longitude, accuracy_m)"
                        .to_owned(),
                )
            }
            (kind, Some(_)) if kind != DeviceKind::FixedSensor => {
                return Err(format!(
                    "a {kind} moves: only a fixed_sensor has a position"
                ))
            }
            _ => {}
        }
        Ok(Self {
            name,
            kind,
            fixed,
            note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> DeviceName {
        "shelf".parse().expect("valid")
    }

    #[test]
    fn a_fixed_sensor_without_a_position_is_refused() {
        assert!(DeviceSpec::new(name(), DeviceKind::FixedSensor, None, None).is_err());
    }

    #[test]
    fn a_moving_device_with_a_position_is_refused() {
        let fixed =
            FixedPosition::new(Position::new(1.0, 2.0).expect("valid"), 5.0).expect("valid");
        assert!(DeviceSpec::new(name(), DeviceKind::Phone, Some(fixed), None).is_err());
    }

    #[test]
    fn kinds_read_back_as_written() {
        for kind in DeviceKind::ALL {
            assert_eq!(kind.as_str().parse::<DeviceKind>(), Ok(kind));
        }
    }

    #[test]
    fn blank_names_are_refused() {
        assert!("  ".parse::<DeviceName>().is_err());
    }
}
