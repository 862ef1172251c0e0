//! The smoltcp device of the engine: two frame queues.

use std::collections::VecDeque;

use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

/// Frames in and out of a smoltcp interface.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: VecDeque<Vec<u8>>,
    /// The Ethernet MTU (IP MTU plus 14).
    pub(crate) mtu: usize,
    /// TCP checksums of segments to guests are left to the driver (which marks them
    /// partial in the virtio-net header): smoltcp neither verifies nor computes them.
    pub(crate) tcp_csum_offload: bool,
}

pub(crate) struct Rx(Vec<u8>);
pub(crate) struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
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
