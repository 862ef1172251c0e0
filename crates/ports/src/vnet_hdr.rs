//! The virtio-net header (virtio 1.x `struct virtio_net_hdr_v1`, 12 bytes) that precedes
//! every frame on a TAP opened with `IFF_VNET_HDR`.
//!
//! It describes offloads: a partial checksum still to be completed (`NEEDS_CSUM`,
//! `csum_start`, `csum_offset`) and a GSO super-frame still to be segmented
//! (`gso_type`, `gso_size`, `hdr_len`). Between ports that accept the same offloads the
//! header travels with the frame unchanged. Fields are little-endian (virtio 1.x; the
//! TAP uses the host's byte order, which is little-endian on the machines vnet targets).

/// Length of the header on the wire.
pub const VNET_HDR_LEN: usize = 12;

/// A parsed virtio-net header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*` flags.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers to replicate in each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum is stored, from `csum_start`.
    pub csum_offset: u16,
    /// Number of merged buffers (always 1 here).
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// The checksum is partial and must be completed.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum was verified.
    pub const F_DATA_VALID: u8 = 2;
    /// Not a GSO frame.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 segmentation.
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload (legacy).
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 segmentation.
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation (USO).
    pub const GSO_UDP_L4: u8 = 5;
    /// ECN bit of `gso_type`.
    pub const GSO_ECN: u8 = 0x80;

    /// Reads a header from the first 12 bytes of `b`; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: u16_at(10),
        })
    }

    /// Writes the header into the first 12 bytes of `b`; `None` if `b` is shorter.
    pub fn emit(&self, b: &mut [u8]) -> Option<()> {
        let b = b.get_mut(..VNET_HDR_LEN)?;
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        Some(())
    }

    /// Whether the frame is a GSO super-frame.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !Self::GSO_ECN != Self::GSO_NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO header as the kernel writes it for a 64 KiB TCP/IPv4 super-frame.
    const TSO4: [u8; 12] = [
        0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn deconstruct_and_construct() {
        let h = VirtioNetHdr::parse(&TSO4).unwrap();
        assert_eq!(
            h,
            VirtioNetHdr {
                flags: VirtioNetHdr::F_NEEDS_CSUM,
                gso_type: VirtioNetHdr::GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
                num_buffers: 0,
            }
        );
        assert!(h.is_gso());
        let mut out = [0u8; 12];
        h.emit(&mut out).unwrap();
        assert_eq!(out, TSO4);
        assert!(VirtioNetHdr::parse(&TSO4[..11]).is_none());
        assert!(!VirtioNetHdr::default().is_gso());
    }
}
