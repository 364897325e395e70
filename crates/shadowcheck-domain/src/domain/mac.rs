use std::fmt;
use std::str::FromStr;

/// A 48-bit hardware address, parsed from the notations capture tools write
/// (`aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff`, `aabbccddeeff`) and printed as
/// lowercase colon-separated hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

impl Mac {
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Locally administered addresses are set by software, typically privacy randomisation.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("not a MAC address (expected 12 hex digits, e.g. aa:bb:cc:dd:ee:ff)")]
    Syntax,
    #[error("all-zero MAC address is not a real transmitter")]
    Zero,
    #[error("broadcast MAC address is not a real transmitter")]
    Broadcast,
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let seps: &[char] = &[':', '-', '.'];
        let groups: Vec<&str> = s.split(seps).collect();
        // Separators must be consistent with a known layout: 6×2, 3×4, or none.
        let layout_ok = match groups.len() {
            1 => s.len() == 12,
            3 => groups.iter().all(|g| g.len() == 4),
            6 => groups.iter().all(|g| g.len() == 2),
            _ => false,
        };
        if !layout_ok {
            return Err(MacError::Syntax);
        }
        let hex: String = groups.concat();
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MacError::Syntax);
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            *octet =
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| MacError::Syntax)?;
        }
        match octets {
            [0, 0, 0, 0, 0, 0] => Err(MacError::Zero),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] => Err(MacError::Broadcast),
            _ => Ok(Mac(octets)),
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_common_notation_to_one_form() {
        for s in [
            "A0:4F:D4:3B:FB:A1",
            "a0-4f-d4-3b-fb-a1",
            "a04f.d43b.fba1",
            "a04fd43bfba1",
            " a0:4f:d4:3b:fb:a1 ",
        ] {
            assert_eq!(
                s.parse::<Mac>().map(|m| m.to_string()),
                Ok("a0:4f:d4:3b:fb:a1".into()),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_station_address() {
        for s in [
            "",
            "a0:4f:d4:3b:fb",
            "a0:4f:d4:3b:fb:a1:00",
            "g0:4f:d4:3b:fb:a1",
            "a0:4fd4:3b:fb:a1:",
            "a0:4f:d4:3b:fb:a1-",
        ] {
            assert_eq!(s.parse::<Mac>(), Err(MacError::Syntax), "{s}");
        }
        assert_eq!("00:00:00:00:00:00".parse::<Mac>(), Err(MacError::Zero));
        assert_eq!("ff:ff:ff:ff:ff:ff".parse::<Mac>(), Err(MacError::Broadcast));
    }

    #[test]
    fn knows_locally_administered() {
        assert!("da:a1:19:00:00:01"
            .parse::<Mac>()
            .map(|m| m.is_locally_administered())
            .unwrap_or(false));
        assert!(!"a0:4f:d4:3b:fb:a1"
            .parse::<Mac>()
            .map(|m| m.is_locally_administered())
            .unwrap_or(true));
    }
}
