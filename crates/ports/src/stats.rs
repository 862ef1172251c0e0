//! What a port's device did: system calls and offload work.

use crate::vnet_hdr::VirtioNetHdr;

/// Counters of one port's device, for `switchctl stats`: how many system calls it
/// took and what offload work crossed it or was done in software for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Read system calls (including those that found nothing).
    pub reads: u64,
    /// Write system calls (one per frame or segment; a stream port's may carry many).
    pub writes: u64,
    /// GSO super-frames received (a peer that segments nothing sends none).
    pub gso_in: u64,
    /// GSO super-frames sent whole (the device segments them, or its guest takes them).
    pub gso_out: u64,
    /// Super-frames cut in software because the device takes plain frames only.
    pub segmented: u64,
    /// Frames those cuts produced.
    pub segments: u64,
    /// Checksums completed in software (one per segment, and one per partial-checksum
    /// frame sent to a device that cannot complete it).
    pub csums: u64,
}

impl IoStats {
    /// Counts a frame with header `h` made plain in software into `made` frames.
    pub(crate) fn count_plain(&mut self, h: &VirtioNetHdr, made: usize) {
        let made = u64::try_from(made).unwrap_or(u64::MAX);
        if h.is_gso() {
            self.segmented += 1;
            self.segments += made;
            self.csums += made;
        } else if h.flags & VirtioNetHdr::F_NEEDS_CSUM != 0 {
            self.csums += 1;
        }
    }

    /// Counts a frame sent with header `h` as it is.
    pub(crate) fn count_whole(&mut self, h: &VirtioNetHdr) {
        if h.is_gso() {
            self.gso_out += 1;
        }
    }
}
