//! A port's device: a TAP switchd made or attached to, or an existing interface
//! through an AF_PACKET socket.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use vnet_control::PortKind;
use vnet_ports::{DgramPort, FrameBuf, IoStats, NetnsRef, PacketPort, StreamPort, Tap};

pub(crate) enum Dev {
    /// A TAP (with offloads or without: it makes frames plain itself).
    Tap(Tap),
    Packet(PacketPort),
    /// A QEMU stream connection, and what `port-list` shows as its interface.
    Stream(StreamPort, String),
    /// A QEMU dgram peer (its socket path as the interface).
    Dgram(DgramPort, String),
}

impl Dev {
    pub(crate) fn kind(&self) -> PortKind {
        match self {
            Self::Tap(_) => PortKind::Tap,
            Self::Packet(_) => PortKind::Netdev,
            Self::Stream(..) => PortKind::Stream,
            Self::Dgram(..) => PortKind::Dgram,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Tap(t) => t.name(),
            Self::Packet(p) => p.name(),
            Self::Stream(_, n) | Self::Dgram(_, n) => n,
        }
    }

    pub(crate) fn netns(&self) -> Option<&NetnsRef> {
        match self {
            Self::Tap(t) => t.netns(),
            Self::Packet(p) => p.netns(),
            Self::Stream(..) | Self::Dgram(..) => None,
        }
    }

    /// Frames the kernel dropped before switchd read them (packet ports only).
    pub(crate) fn rx_overflows(&self) -> u64 {
        match self {
            Self::Packet(p) => p.rx_overflows(),
            _ => 0,
        }
    }

    pub(crate) fn is_persistent(&self) -> bool {
        matches!(self, Self::Tap(t) if t.is_persistent())
    }

    pub(crate) fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        match self {
            Self::Tap(t) => t.recv(buf),
            Self::Packet(p) => p.recv(buf),
            Self::Stream(s, _) => s.recv(buf),
            // read on the network's shared datagram socket, not per port
            Self::Dgram(..) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    pub(crate) fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        match self {
            Self::Tap(t) => t.send(buf),
            Self::Packet(p) => p.send(buf),
            Self::Stream(s, _) => s.send(buf),
            Self::Dgram(d, _) => d.send(buf),
        }
    }

    /// What the device did: system calls, offload work.
    pub(crate) fn stats(&self) -> IoStats {
        match self {
            Self::Tap(t) => t.stats(),
            Self::Packet(p) => p.stats(),
            Self::Stream(s, _) => s.stats(),
            Self::Dgram(d, _) => d.stats(),
        }
    }

    /// Writes what a stream or dgram port still holds for its peer.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stream(s, _) => s.flush(),
            Self::Dgram(d, _) => d.flush(),
            _ => Ok(()),
        }
    }

    /// Whether the port's descriptor is polled for reading (a dgram port's own socket
    /// only sends: its peer's frames arrive on the network's shared socket).
    pub(crate) fn readable(&self) -> bool {
        !matches!(self, Self::Dgram(..))
    }

    /// Whether the port is polled for writability (it queues for a slow peer).
    pub(crate) fn writable(&self) -> bool {
        matches!(self, Self::Stream(..) | Self::Dgram(..))
    }

    /// Whether a send error means the peer is gone for good (a dgram peer's socket
    /// was closed or removed), so the port goes.
    pub(crate) fn peer_gone(&self, e: &io::Error) -> bool {
        matches!(self, Self::Dgram(..))
            && matches!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED) | Some(libc::ENOENT) | Some(libc::ENOTCONN)
            )
    }

    /// Whether a read error is passing (the interface went down or is being
    /// reconfigured; it may come back), as opposed to the device being gone.
    pub(crate) fn transient(&self, e: &io::Error) -> bool {
        matches!(self, Self::Packet(_))
            && matches!(
                e.raw_os_error(),
                Some(libc::ENETDOWN) | Some(libc::ENOBUFS) | Some(libc::EMSGSIZE)
            )
    }
}

impl AsRawFd for Dev {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Tap(t) => t.as_raw_fd(),
            Self::Packet(p) => p.as_raw_fd(),
            Self::Stream(s, _) => s.as_raw_fd(),
            Self::Dgram(d, _) => d.as_raw_fd(),
        }
    }
}
