//! Frame buffers and their pool.

use crate::vnet_hdr::{VirtioNetHdr, VNET_HDR_LEN};

/// The largest frame a port reads: a 64 KiB GSO super-frame plus Ethernet and VLAN headers.
pub const MAX_FRAME_LEN: usize = 65_536 + 18;

/// One frame: `[virtio-net header (12 bytes) | Ethernet frame]` in one fixed-size
/// allocation, so a TAP read fills both with one system call and a TAP write sends both.
#[derive(Clone)]
pub struct FrameBuf {
    data: Box<[u8]>,
    /// Bytes of Ethernet frame after the header.
    len: usize,
}

impl std::fmt::Debug for FrameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuf")
            .field("hdr", &self.vnet_hdr())
            .field("len", &self.len)
            .finish()
    }
}

impl Default for FrameBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuf {
    /// An empty buffer able to hold the largest frame.
    pub fn new() -> Self {
        Self {
            data: vec![0u8; VNET_HDR_LEN + MAX_FRAME_LEN].into_boxed_slice(),
            len: 0,
        }
    }

    /// Makes this buffer hold the same header and frame as `other`, without
    /// allocating.
    pub fn copy_from(&mut self, other: &Self) {
        let n = VNET_HDR_LEN + other.len;
        self.data[..n].copy_from_slice(&other.data[..n]);
        self.len = other.len;
    }

    /// A buffer holding `frame` with an all-zero header (no offloads).
    ///
    /// Frames longer than [`MAX_FRAME_LEN`] are truncated.
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut b = Self::new();
        b.set_frame(frame);
        b
    }

    /// Replaces the contents with `frame` and an all-zero header (no offloads). Frames
    /// longer than [`MAX_FRAME_LEN`] are truncated.
    pub fn set_frame(&mut self, frame: &[u8]) {
        let n = frame.len().min(MAX_FRAME_LEN);
        self.data[..VNET_HDR_LEN].fill(0);
        self.data[VNET_HDR_LEN..VNET_HDR_LEN + n].copy_from_slice(&frame[..n]);
        self.len = n;
    }

    /// Marks a TCP frame (IPv4, or IPv6 without extension headers) as
    /// checksum-offloaded, as a guest kernel with offloads sends it: a partial checksum
    /// (the TCP checksum field set to the pseudo-header sum,
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`), and, when it is longer than `mtu` (the IP MTU of
    /// the segment), a TSO super-frame of segments of the MSS that fits `mtu`. A
    /// receiving kernel takes it as it is; one that forwards it completes or segments
    /// it. Only for ports that take virtio-net headers. Returns whether it did.
    pub fn offload_tcp(&mut self, mtu: usize) -> bool {
        let f = self.frame();
        // (IP header length, IP packet length, pseudo-header sum without the TCP
        // length, GSO type)
        let (ihl, total, mut sum, gso_type) = match f.get(12..14) {
            Some([0x08, 0x00]) => {
                let Some(&vihl) = f.get(14) else { return false };
                let ihl = usize::from(vihl & 0x0f) * 4;
                if vihl >> 4 != 4 || ihl < 20 || f.get(14 + 9) != Some(&6) {
                    return false;
                }
                // fragments are left alone
                if f.get(20..22)
                    .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x3fff != 0)
                {
                    return false;
                }
                let Some(total) = f
                    .get(16..18)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return false;
                };
                (ihl, total, words(f.get(26..34)), VirtioNetHdr::GSO_TCPV4)
            }
            Some([0x86, 0xdd]) => {
                // next header TCP right after the fixed header (no extension headers)
                if f.get(14).map(|v| v >> 4) != Some(6) || f.get(20) != Some(&6) {
                    return false;
                }
                let Some(payload) = f
                    .get(18..20)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return false;
                };
                (
                    40,
                    40 + payload,
                    words(f.get(22..54)),
                    VirtioNetHdr::GSO_TCPV6,
                )
            }
            _ => return false,
        };
        let tcp = 14 + ihl;
        let Some(&off) = f.get(tcp + 12) else {
            return false;
        };
        let thl = usize::from(off >> 4) * 4;
        if thl < 20 || total < ihl + thl || mtu <= ihl + thl || f.len() < 14 + total {
            return false;
        }
        // the pseudo-header sum: addresses, protocol, TCP length
        sum += 6 + u32::try_from(total - ihl).unwrap_or(0);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let Ok(pseudo) = u16::try_from(sum) else {
            return false;
        };
        let (Ok(hdr_len), Ok(gso_size), Ok(csum_start)) = (
            u16::try_from(tcp + thl),
            u16::try_from(mtu - ihl - thl),
            u16::try_from(tcp),
        ) else {
            return false;
        };
        let gso = total > mtu;
        self.frame_mut()[tcp + 16..tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
        self.set_vnet_hdr(&VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: if gso {
                gso_type
            } else {
                VirtioNetHdr::GSO_NONE
            },
            hdr_len: if gso { hdr_len } else { 0 },
            gso_size: if gso { gso_size } else { 0 },
            csum_start,
            csum_offset: 16,
            num_buffers: 0,
        });
        true
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> &[u8] {
        &self.data[VNET_HDR_LEN..VNET_HDR_LEN + self.len]
    }

    /// The Ethernet frame, writable (for in-place header rewrites).
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[VNET_HDR_LEN..VNET_HDR_LEN + self.len]
    }

    /// Length of the Ethernet frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The virtio-net header.
    pub fn vnet_hdr(&self) -> VirtioNetHdr {
        VirtioNetHdr::parse(&self.data).unwrap_or_default()
    }

    /// Replaces the virtio-net header.
    pub fn set_vnet_hdr(&mut self, hdr: &VirtioNetHdr) {
        let _ = hdr.emit(&mut self.data);
    }

    /// Header and frame, as written to a port that takes virtio-net headers.
    pub(crate) fn with_hdr(&self) -> &[u8] {
        &self.data[..VNET_HDR_LEN + self.len]
    }

    /// The whole buffer, for a read that fills header and frame.
    pub(crate) fn raw_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Header area and frame area, for a read or write that places them separately.
    pub(crate) fn split_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        self.data.split_at_mut(VNET_HDR_LEN)
    }

    /// Header area and the frame, for a write that sends them from separate places.
    pub(crate) fn split(&self) -> (&[u8], &[u8]) {
        (&self.data[..VNET_HDR_LEN], self.frame())
    }

    /// Sets the frame length after a read of `n` bytes of frame.
    pub(crate) fn set_len(&mut self, n: usize) {
        self.len = n.min(MAX_FRAME_LEN);
    }
}

/// The sum of the big-endian 16-bit words of `b` (addresses of a pseudo-header).
fn words(b: Option<&[u8]>) -> u32 {
    b.unwrap_or_default()
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum()
}
