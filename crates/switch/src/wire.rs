//! A zero-copy view of the Ethernet II header, with the 802.1Q tag when present.
//!
//! The header is read in place from the buffer a port handed in; nothing is copied.
//!
//! # No-panic contract
//! [`EthernetFrame::new_checked`] verifies the length once; after that every getter
//! reads inside the verified range. [`EthernetFrame::new_unchecked`] is for buffers the
//! caller built itself (emit); its getters panic on a short buffer, like smoltcp's.

use crate::addr::{MacAddr, VlanId};

/// Errors from parsing a frame. Small and `Copy`: a bad frame is counted, not reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is shorter than the header it must hold.
    #[error("truncated frame")]
    Truncated,
}

/// Byte ranges of the header fields.
mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) const DST: Field = 0..6;
    pub(crate) const SRC: Field = 6..12;
    pub(crate) const ETHERTYPE: Field = 12..14;
    pub(crate) const TCI: Field = 14..16;
}

/// Length of an Ethernet II header without a tag.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet II header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// Ethernet frame types the switch and its services care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4, 0x0800.
    Ipv4,
    /// ARP, 0x0806.
    Arp,
    /// An 802.1Q tag follows, 0x8100.
    Vlan,
    /// IPv6, 0x86dd.
    Ipv6,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => Self::Ipv4,
            0x0806 => Self::Arp,
            0x8100 => Self::Vlan,
            0x86dd => Self::Ipv6,
            other => Self::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

/// An Ethernet frame in a buffer.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length (for frames the caller builds).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted input, checking that it holds a whole header
    /// (18 bytes when the frame carries an 802.1Q tag).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds the whole header, tag included.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.ethertype() == EtherType::Vlan && b.len() < TAGGED_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        let b = self.buffer.as_ref();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        let b = self.buffer.as_ref();
        MacAddr([b[6], b[7], b[8], b[9], b[10], b[11]])
    }

    /// The outer EtherType (0x8100 for a tagged frame).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The VLAN of an 802.1Q-tagged frame; `None` for an untagged frame.
    #[inline]
    pub fn vlan_id(&self) -> Option<VlanId> {
        if self.ethertype() != EtherType::Vlan {
            return None;
        }
        let b = &self.buffer.as_ref()[field::TCI];
        VlanId::new(u16::from_be_bytes([b[0], b[1]]) & 0x0fff)
    }

    /// Everything after the (untagged) 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the outer EtherType.
    pub fn set_ethertype(&mut self, ty: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ty).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP request from 52:54:00:12:34:56, as captured (broadcast, 42 bytes).
    const ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 192,
        168, 122, 10, 0, 0, 0, 0, 0, 0, 192, 168, 122, 1,
    ];

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.src_addr(), MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload().len(), 28);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 42];
        buf[14..].copy_from_slice(&ARP_REQUEST[14..]);
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(MacAddr::BROADCAST);
        f.set_src_addr(MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        f.set_ethertype(EtherType::Arp);
        assert_eq!(buf, ARP_REQUEST);
    }

    #[test]
    fn tagged_frame_and_truncation() {
        let mut tagged = [0u8; 18];
        tagged[..12].copy_from_slice(&ARP_REQUEST[..12]);
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        tagged[14..16].copy_from_slice(&[0x20, 0x64]); // PCP 1, VID 100
        tagged[16..18].copy_from_slice(&[0x08, 0x00]);
        let f = EthernetFrame::new_checked(&tagged[..]).unwrap();
        assert_eq!(f.vlan_id(), VlanId::new(100));
        assert_eq!(
            EthernetFrame::new_checked(&tagged[..17]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            EthernetFrame::new_checked(&ARP_REQUEST[..13]).err(),
            Some(WireError::Truncated)
        );
    }
}
