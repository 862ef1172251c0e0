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

    /// Sets the frame length after a read of `n` bytes of frame.
    pub(crate) fn set_len(&mut self, n: usize) {
        self.len = n.min(MAX_FRAME_LEN);
    }
}
