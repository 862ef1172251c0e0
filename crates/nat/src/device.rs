//! The smoltcp device of the engine: two frame queues, and the buffers of frames that
//! went, reused for the next ones (so a flow in steady state allocates nothing).

use std::collections::VecDeque;

use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

/// Buffers kept for reuse (each at most a 64 KiB frame).
const SPARE_MAX: usize = 32;

/// Frames in and out of a smoltcp interface.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: VecDeque<Vec<u8>>,
    /// Buffers for frames smoltcp sends.
    pub(crate) free: Vec<Vec<u8>>,
    /// Buffers of frames smoltcp took.
    pub(crate) spent: Vec<Vec<u8>>,
    /// The Ethernet MTU (IP MTU plus 14).
    pub(crate) mtu: usize,
    /// TCP checksums of segments to guests are left to the driver (which marks them
    /// partial in the virtio-net header): smoltcp neither verifies nor computes them.
    pub(crate) tcp_csum_offload: bool,
}

impl Queues {
    /// An empty buffer, reused if one is spare.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        let mut v = self
            .free
            .pop()
            .or_else(|| self.spent.pop())
            .unwrap_or_default();
        v.clear();
        v
    }

    /// A copy of `data` in a reused buffer.
    pub(crate) fn copy_of(&mut self, data: &[u8]) -> Vec<u8> {
        let mut v = self.buffer();
        v.extend_from_slice(data);
        v
    }

    /// A spent receive buffer serves a send as well as a free one.
    fn refill(&mut self) {
        if self.free.is_empty() {
            if let Some(v) = self.spent.pop() {
                self.free.push(v);
            }
        }
    }

    /// Takes back a buffer the engine handed out.
    pub(crate) fn recycle(&mut self, v: Vec<u8>) {
        if self.free.len() < SPARE_MAX {
            self.free.push(v);
        }
    }
}

pub(crate) struct Rx<'a>(Vec<u8>, &'a mut Vec<Vec<u8>>);
pub(crate) struct Tx<'a>(&'a mut VecDeque<Vec<u8>>, &'a mut Vec<Vec<u8>>);

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let Rx(frame, spent) = self;
        let r = f(&frame);
        if spent.len() < SPARE_MAX {
            spent.push(frame);
        }
        r
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.1.pop().unwrap_or_default();
        frame.clear();
        frame.resize(len, 0);
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        self.refill();
        Some((Rx(frame, &mut self.spent), Tx(&mut self.tx, &mut self.free)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        self.refill();
        Some(Tx(&mut self.tx, &mut self.free))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        // Guests with checksum offload send TCP segments with a partial checksum (the
        // virtio-net header says so and the TAP vouches for them). Compute on send only.
        caps.checksum.tcp = if self.tcp_csum_offload {
            Checksum::None
        } else {
            Checksum::Tx
        };
        caps.checksum.ipv4 = Checksum::Tx;
        caps
    }
}
