//! Identifiers: MAC addresses, VLAN ids and port ids.

use core::fmt;
use core::str::FromStr;

/// An IEEE 802 MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// `00:00:00:00:00:00`, never a valid station address.
    pub const ZERO: Self = Self([0; 6]);

    /// Copies an address out of the first six bytes of `bytes`.
    ///
    /// Returns `None` when `bytes` is shorter than six bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let b: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(Self(b))
    }

    /// The IPv6 link-local address made from this MAC (modified EUI-64, RFC 4291
    /// appendix A): `fe80::` with the universal/local bit flipped and `ff:fe` inserted.
    pub const fn ipv6_link_local(&self) -> std::net::Ipv6Addr {
        let m = self.0;
        std::net::Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }

    /// The address octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group address (the I/G bit is set): multicast or broadcast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The all-ones broadcast address.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// The all-zeros address.
    pub const fn is_zero(&self) -> bool {
        matches!(self.0, [0, 0, 0, 0, 0, 0])
    }

    /// A unicast address that is not all zeros: a valid station address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// Locally administered (the U/L bit is set).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The address as the low 48 bits of an integer, most significant octet first.
    pub const fn to_u64(&self) -> u64 {
        let o = self.0;
        ((o[0] as u64) << 40)
            | ((o[1] as u64) << 32)
            | ((o[2] as u64) << 24)
            | ((o[3] as u64) << 16)
            | ((o[4] as u64) << 8)
            | (o[5] as u64)
    }

    /// The inverse of [`MacAddr::to_u64`]; bits above the low 48 are ignored.
    pub const fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        Self([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

/// The error returned when a string is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets separated by ':'")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

/// An 802.1Q VLAN id (0..=4095). [`VlanId::UNTAGGED`] (0) keys frames without a tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VlanId(u16);

impl VlanId {
    /// Frames without an 802.1Q tag (and priority-tagged frames, VID 0).
    pub const UNTAGGED: Self = Self(0);

    /// A VLAN id from the low 12 bits of `vid`; returns `None` above 4095.
    pub const fn new(vid: u16) -> Option<Self> {
        if vid <= 0x0fff {
            Some(Self(vid))
        } else {
            None
        }
    }

    /// The numeric id.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A port of a [`Switch`](crate::Switch): an index chosen by the switch when the port is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl PortId {
    /// The id as an index into per-port tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display_round_trip() {
        let m: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "52:54:00:ab:cd:xyz",
            "5254:00:ab:cd:0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr::ZERO.is_zero() && !MacAddr::ZERO.is_unicast());
        assert!(MacAddr([0x52, 0x54, 0, 1, 2, 3]).is_unicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_local());
    }

    #[test]
    fn vlan_bounds() {
        assert_eq!(VlanId::new(4095).map(VlanId::get), Some(4095));
        assert_eq!(VlanId::new(4096), None);
    }
}
