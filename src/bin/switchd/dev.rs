//! A port's device: a TAP switchd made or attached to, or an existing interface
//! through an AF_PACKET socket.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use vnet_control::PortKind;
use vnet_ports::{FrameBuf, NetnsRef, PacketPort, Tap};

pub(crate) enum Dev {
    Tap(Tap),
    Packet(PacketPort),
}

impl Dev {
    pub(crate) fn kind(&self) -> PortKind {
        match self {
            Self::Tap(_) => PortKind::Tap,
            Self::Packet(_) => PortKind::Netdev,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Tap(t) => t.name(),
            Self::Packet(p) => p.name(),
        }
    }

    pub(crate) fn netns(&self) -> Option<&NetnsRef> {
        match self {
            Self::Tap(t) => t.netns(),
            Self::Packet(p) => p.netns(),
        }
    }

    /// Frames the kernel dropped before switchd read them (packet ports only).
    pub(crate) fn rx_overflows(&self) -> u64 {
        match self {
            Self::Tap(_) => 0,
            Self::Packet(p) => p.rx_overflows(),
        }
    }

    pub(crate) fn is_persistent(&self) -> bool {
        matches!(self, Self::Tap(t) if t.is_persistent())
    }

    pub(crate) fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        match self {
            Self::Tap(t) => t.recv(buf),
            Self::Packet(p) => p.recv(buf),
        }
    }

    pub(crate) fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        match self {
            Self::Tap(t) => t.send(buf),
            Self::Packet(p) => p.send(buf),
        }
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
        }
    }
}
