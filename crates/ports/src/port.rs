//! One interface over every kind of port, in the spirit of smoltcp's `phy::Device`: a
//! driver holds `Box<dyn Port>` and never matches on the kind, so a new kind of port
//! (vhost-user, VXLAN) adds an implementation, not a case in every method of the driver.
//!
//! The driver's loop reads a ready port with [`Drain`]: frames until the port has no
//! more (`EAGAIN`) or a per-turn budget is spent, each read's error already classified
//! ([`Port::classify`]), so every driver handles "the interface went down" and "the peer
//! is gone" the same way.

use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;

use crate::{DgramPort, FrameBuf, IoStats, NetnsRef, PacketPort, StreamPort, Tap};

/// What kind of device a port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortType {
    /// A TAP device ([`Tap`]).
    Tap,
    /// An existing interface through an `AF_PACKET` socket ([`PacketPort`]).
    Packet,
    /// A QEMU `-netdev stream` connection ([`StreamPort`]).
    Stream,
    /// A QEMU `-netdev dgram` peer ([`DgramPort`]).
    Dgram,
    /// A vhost-user frontend ([`crate::VhostUserPort`]).
    VhostUser,
}

/// Which readiness of a port's descriptor the driver should poll for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Frames arrive on the descriptor.
    pub readable: bool,
    /// The port queues frames for a slow peer: poll for room to flush them.
    pub writable: bool,
}

/// What an I/O error of a port means for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Nothing now: try again when the descriptor is ready (`WouldBlock`).
    Again,
    /// This frame is lost, the port is fine (a signal, a frame the port refused).
    Skip,
    /// The device is passing through a state it comes back from (the interface went
    /// down, is being reconfigured): keep the port.
    Transient,
    /// The port's peer or device is gone for good: remove the port.
    Gone,
}

/// A port of a switch: where frames enter and leave. All ports are non-blocking
/// descriptors that the caller registers with its event loop ([`Port::readiness`]).
pub trait Port: AsRawFd + Send + std::fmt::Debug {
    /// The kind of device.
    fn port_type(&self) -> PortType;

    /// The interface name (a socket port: what identifies its peer).
    fn name(&self) -> &str;

    /// The namespace the interface is in, when not the caller's.
    fn netns(&self) -> Option<&NetnsRef> {
        None
    }

    /// The next frame into `buf` (its virtio-net header first); its length.
    /// `WouldBlock` when there is none.
    fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize>;

    /// Sends the frame in `buf`, made what the port takes (segmented and checksummed
    /// in software for a port without offloads).
    fn send(&mut self, buf: &FrameBuf) -> io::Result<()>;

    /// Writes what the port still holds for a slow peer.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// What the device did: system calls, offload work.
    fn stats(&self) -> IoStats;

    /// Frames the kernel dropped before they were read.
    fn rx_overflows(&self) -> u64 {
        0
    }

    /// Whether the port tells its peer about frames in batches ([`end_batch`](Self::end_batch)):
    /// a vhost-user guest is interrupted once per batch, not once per frame.
    fn batches(&self) -> bool {
        false
    }

    /// The frames sent (and flushed) since the last call were one batch: tell the peer.
    /// A driver that [`batches`](Self::batches) calls it at the end of each turn of its
    /// loop in which it sent to the port.
    fn end_batch(&mut self) {}

    /// Frames the device lost, by reason, beyond [`rx_overflows`](Self::rx_overflows)
    /// (`port-list` shows them beside the switch's drops).
    fn drops(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The state of the port's peer, for a port whose peer comes and goes while the
    /// port stays (a vhost-user frontend: `connected`, `listening`).
    fn peer_state(&self) -> Option<&'static str> {
        None
    }

    /// Whether the device outlives the port (a persistent TAP).
    fn is_persistent(&self) -> bool {
        false
    }

    /// What to poll its descriptor for.
    fn readiness(&self) -> Readiness {
        Readiness {
            readable: true,
            writable: false,
        }
    }

    /// What an error of [`recv`](Self::recv), [`send`](Self::send) or
    /// [`flush`](Self::flush) means for the port.
    fn classify(&self, e: &io::Error) -> ErrorClass {
        common_class(e)
    }

    /// The port as a TAP, if it is one (persistence, writer threads).
    fn as_tap(&self) -> Option<&Tap> {
        None
    }

    /// The port as a TAP, if it is one.
    fn as_tap_mut(&mut self) -> Option<&mut Tap> {
        None
    }
}

/// The classes every kind of port shares: `WouldBlock` is [`ErrorClass::Again`];
/// `Interrupted` and `InvalidData` (a frame the port refused) are
/// [`ErrorClass::Skip`]; anything else is [`ErrorClass::Gone`].
pub(crate) fn common_class(e: &io::Error) -> ErrorClass {
    match e.kind() {
        ErrorKind::WouldBlock => ErrorClass::Again,
        ErrorKind::Interrupted | ErrorKind::InvalidData => ErrorClass::Skip,
        _ => ErrorClass::Gone,
    }
}

impl Port for Tap {
    fn port_type(&self) -> PortType {
        PortType::Tap
    }
    fn name(&self) -> &str {
        Self::name(self)
    }
    fn netns(&self) -> Option<&NetnsRef> {
        Self::netns(self)
    }
    fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        Self::recv(self, buf)
    }
    fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        Self::send(self, buf)
    }
    fn stats(&self) -> IoStats {
        Self::stats(self)
    }
    fn is_persistent(&self) -> bool {
        Self::is_persistent(self)
    }
    fn as_tap(&self) -> Option<&Tap> {
        Some(self)
    }
    fn as_tap_mut(&mut self) -> Option<&mut Tap> {
        Some(self)
    }
}

impl Port for PacketPort {
    fn port_type(&self) -> PortType {
        PortType::Packet
    }
    fn name(&self) -> &str {
        Self::name(self)
    }
    fn netns(&self) -> Option<&NetnsRef> {
        Self::netns(self)
    }
    fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        Self::recv(self, buf)
    }
    fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        Self::send(self, buf)
    }
    fn stats(&self) -> IoStats {
        Self::stats(self)
    }
    fn rx_overflows(&self) -> u64 {
        Self::rx_overflows(self)
    }
    /// An interface that went down or is being reconfigured comes back: `ENETDOWN`,
    /// `ENOBUFS` and `EMSGSIZE` (an MTU change) keep the port.
    fn classify(&self, e: &io::Error) -> ErrorClass {
        match e.raw_os_error() {
            Some(libc::ENETDOWN | libc::ENOBUFS | libc::EMSGSIZE) => ErrorClass::Transient,
            _ => common_class(e),
        }
    }
}

impl Port for StreamPort {
    fn port_type(&self) -> PortType {
        PortType::Stream
    }
    fn name(&self) -> &str {
        Self::label(self)
    }
    fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        Self::recv(self, buf)
    }
    fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        Self::send(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Self::flush(self)
    }
    fn stats(&self) -> IoStats {
        Self::stats(self)
    }
    fn readiness(&self) -> Readiness {
        Readiness {
            readable: true,
            writable: true,
        }
    }
}

impl Port for DgramPort {
    fn port_type(&self) -> PortType {
        PortType::Dgram
    }
    fn name(&self) -> &str {
        Self::label(self)
    }
    /// A dgram peer's frames arrive on the network's shared socket, not on this one:
    /// reading it gives nothing.
    fn recv(&mut self, _buf: &mut FrameBuf) -> io::Result<usize> {
        Err(ErrorKind::WouldBlock.into())
    }
    fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        Self::send(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Self::flush(self)
    }
    fn stats(&self) -> IoStats {
        Self::stats(self)
    }
    /// Its own socket only sends.
    fn readiness(&self) -> Readiness {
        Readiness {
            readable: false,
            writable: true,
        }
    }
    /// A peer whose socket was closed or removed is gone; other send errors too.
    fn classify(&self, e: &io::Error) -> ErrorClass {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED | libc::ENOENT | libc::ENOTCONN) => ErrorClass::Gone,
            _ => common_class(e),
        }
    }
}

/// One step of reading a ready port.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// A frame is in the buffer.
    Frame,
    /// The port is passing through a state it comes back from ([`ErrorClass::Transient`]);
    /// reading goes on.
    Transient(io::Error),
    /// The port is gone ([`ErrorClass::Gone`]): the caller removes it; reading stops.
    Gone(io::Error),
}

/// Reads one ready port until it has no more frames (`EAGAIN`) or `budget` frames
/// were read, whichever comes first, so one busy port does not starve the others:
///
/// ```no_run
/// # use vnet_ports::{Drain, FrameBuf, Port, Step};
/// # fn turn(port: &mut dyn Port, buf: &mut FrameBuf) {
/// let mut drain = Drain::new(64);
/// while let Some(step) = drain.next(port, buf) {
///     match step {
///         Step::Frame => { /* switch the frame in `buf` */ }
///         Step::Transient(e) => eprintln!("{}: {e}; waiting for it", port.name()),
///         Step::Gone(e) => { eprintln!("{}: {e}", port.name()); break }
///         _ => {}
///     }
/// }
/// let drained = drain.drained(); // false: the budget ran out, come back next turn
/// # }
/// ```
///
/// Frames the port skips ([`ErrorClass::Skip`]) count against the budget (a port that
/// only produces bad frames still yields its turn) and are not reported.
#[derive(Debug)]
pub struct Drain {
    left: usize,
    drained: bool,
}

impl Drain {
    /// A drain that reads at most `budget` frames.
    pub fn new(budget: usize) -> Self {
        Self {
            left: budget,
            drained: false,
        }
    }

    /// The next step; `None` once the port has nothing more or the budget is spent.
    pub fn next(&mut self, port: &mut dyn Port, buf: &mut FrameBuf) -> Option<Step> {
        while self.left > 0 && !self.drained {
            self.left -= 1;
            match port.recv(buf) {
                Ok(_) => return Some(Step::Frame),
                Err(e) => match port.classify(&e) {
                    ErrorClass::Again => self.drained = true,
                    ErrorClass::Skip => {}
                    ErrorClass::Transient => return Some(Step::Transient(e)),
                    ErrorClass::Gone => {
                        self.drained = true;
                        return Some(Step::Gone(e));
                    }
                },
            }
        }
        None
    }

    /// Whether reading stopped because the port had nothing more (or is gone), rather
    /// than because the budget ran out.
    pub fn drained(&self) -> bool {
        self.drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn frame(n: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = n;
        f
    }

    /// Writes `frames` QEMU-stream framed into `peer`.
    fn write_frames(peer: &mut UnixStream, frames: &[Vec<u8>]) {
        use std::io::Write;
        for f in frames {
            let len = u32::try_from(f.len()).unwrap_or(0).to_be_bytes();
            peer.write_all(&len).unwrap();
            peer.write_all(f).unwrap();
        }
    }

    #[test]
    fn a_drain_reads_until_eagain_then_reports_drained() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut port: Box<dyn Port> = Box::new(StreamPort::new(a).unwrap());
        write_frames(&mut b, &[frame(1), frame(2), frame(3)]);
        let mut buf = FrameBuf::new();
        let mut drain = Drain::new(64);
        let mut seen = Vec::new();
        while let Some(step) = drain.next(port.as_mut(), &mut buf) {
            assert!(matches!(step, Step::Frame), "{step:?}");
            seen.push(buf.frame()[14]);
        }
        assert_eq!(seen, [1, 2, 3]);
        assert!(drain.drained());
    }

    #[test]
    fn a_drain_stops_at_its_budget_and_the_rest_waits() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut port = StreamPort::new(a).unwrap();
        write_frames(&mut b, &[frame(1), frame(2), frame(3)]);
        let mut buf = FrameBuf::new();
        let mut drain = Drain::new(2);
        let mut n = 0;
        while drain.next(&mut port, &mut buf).is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
        assert!(!drain.drained());
        let mut drain = Drain::new(2);
        assert!(matches!(drain.next(&mut port, &mut buf), Some(Step::Frame)));
        assert_eq!(buf.frame()[14], 3);
        assert!(drain.next(&mut port, &mut buf).is_none());
        assert!(drain.drained());
    }

    #[test]
    fn a_closed_peer_is_gone() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut port = StreamPort::new(a).unwrap();
        drop(b);
        let mut buf = FrameBuf::new();
        let mut drain = Drain::new(8);
        assert!(matches!(
            drain.next(&mut port, &mut buf),
            Some(Step::Gone(_))
        ));
        assert!(drain.next(&mut port, &mut buf).is_none());
        assert!(drain.drained());
    }

    #[test]
    fn errors_are_classified_per_kind() {
        let (a, _b) = UnixStream::pair().unwrap();
        let stream = StreamPort::new(a).unwrap();
        let down = io::Error::from_raw_os_error(libc::ENETDOWN);
        assert_eq!(stream.classify(&down), ErrorClass::Gone);
        assert_eq!(
            stream.classify(&ErrorKind::WouldBlock.into()),
            ErrorClass::Again
        );
        assert_eq!(
            stream.classify(&ErrorKind::Interrupted.into()),
            ErrorClass::Skip
        );
        assert_eq!(
            stream.readiness(),
            Readiness {
                readable: true,
                writable: true
            }
        );
    }
}
