//! `AF_PACKET` ports: an existing interface (a veth, a NIC, a TAP someone else made)
//! attached to the switch.
//!
//! A [`PacketPort`] is a raw packet socket bound to one interface, non-blocking, with
//! `PACKET_VNET_HDR` so GSO super-frames and partial checksums pass as they do on TAP
//! ports, and `PACKET_IGNORE_OUTGOING` so the switch does not read back what it (or the
//! host) transmits there. As a bridge uplink it puts the interface in promiscuous mode
//! through a packet membership, which the kernel drops when the socket closes: a
//! crashed switchd leaves no promiscuous NIC behind.
//!
//! The kernel's `virtio_net_hdr` on packet sockets is 10 bytes (no `num_buffers`); the
//! port reads and writes it with `readv`/`writev` into the first 10 bytes of the
//! [`FrameBuf`] header so frames move between TAP and packet ports unchanged.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::buf::FrameBuf;
use crate::stats::IoStats;
use crate::sys;
use crate::tap::NetnsRef;
use crate::{validate_ifname, Error};

/// Length of the virtio-net header on packet sockets (`struct virtio_net_hdr`).
const PACKET_HDR_LEN: usize = 10;

/// How to open a packet port.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PacketOptions {
    /// The interface to attach to.
    pub ifname: String,
    /// Its network namespace, when not the caller's.
    pub netns: Option<NetnsRef>,
    /// Put the interface in promiscuous mode while the port is open (a bridge uplink
    /// must see frames for every guest's MAC).
    pub promiscuous: bool,
}

impl PacketOptions {
    /// Options for interface `ifname` in the caller's namespace, not promiscuous.
    pub fn new(ifname: &str) -> Self {
        Self {
            ifname: ifname.to_owned(),
            ..Self::default()
        }
    }
}

/// An open packet port. Dropping it closes the socket (and ends promiscuous mode).
#[derive(Debug)]
pub struct PacketPort {
    fd: OwnedFd,
    /// Receive-queue overflows counted so far (the kernel's counter resets when read).
    drops: std::cell::Cell<u64>,
    name: String,
    netns: Option<NetnsRef>,
    promiscuous: bool,
    stats: IoStats,
}

impl PacketPort {
    /// Attaches to an existing interface.
    pub fn open(opts: &PacketOptions) -> Result<Self, Error> {
        validate_ifname(&opts.ifname)?;
        let Some(ns) = &opts.netns else {
            return Self::open_here(opts);
        };
        let ns_file = ns.open()?;
        let opts2 = opts.clone();
        let name = ns.name().to_owned();
        std::thread::Builder::new()
            .name("packet-netns".into())
            .spawn(move || {
                sys::setns_net(&ns_file).map_err(|source| Error::Netns { name, source })?;
                Self::open_here(&opts2)
            })
            .map_err(|source| Error::Netns {
                name: ns.name().to_owned(),
                source,
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Netns {
                    name: ns.name().to_owned(),
                    source: io::Error::other("namespace thread panicked"),
                })
            })
    }

    fn open_here(opts: &PacketOptions) -> Result<Self, Error> {
        let name = opts.ifname.clone();
        let ifindex = sys::if_index(&name).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                Error::NoSuchInterface { name: name.clone() }
            } else {
                Error::Ioctl {
                    op: "if_nametoindex",
                    name: name.clone(),
                    source: e,
                }
            }
        })?;
        let fd = sys::packet_socket(ifindex, opts.promiscuous).map_err(|source| Error::Ioctl {
            op: "AF_PACKET socket",
            name: name.clone(),
            source,
        })?;
        Ok(Self {
            fd,
            drops: std::cell::Cell::new(0),
            name,
            netns: opts.netns.clone(),
            promiscuous: opts.promiscuous,
            stats: IoStats::default(),
        })
    }

    /// The interface's name (in its namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the interface lives in, when not the caller's.
    pub fn netns(&self) -> Option<&NetnsRef> {
        self.netns.as_ref()
    }

    /// The interface's MAC address and IPv4 address (if it has one), read now (in the
    /// caller's namespace: for an interface in another namespace, ask there).
    pub fn mac_ipv4(&self) -> Result<([u8; 6], Option<std::net::Ipv4Addr>), Error> {
        sys::if_mac_ipv4(&self.name)
            .map(|(m, a)| (m, a.map(std::net::Ipv4Addr::from)))
            .map_err(|source| Error::Ioctl {
                op: "SIOCGIFADDR",
                name: self.name.clone(),
                source,
            })
    }

    /// Frames the kernel dropped because switchd did not read them fast enough (the
    /// socket's receive queue was full), since the port opened.
    pub fn rx_overflows(&self) -> u64 {
        if let Ok(n) = sys::packet_drops(self.fd.as_fd()) {
            self.drops.set(self.drops.get() + u64::from(n));
        }
        self.drops.get()
    }

    /// Whether the port holds the interface in promiscuous mode.
    pub fn is_promiscuous(&self) -> bool {
        self.promiscuous
    }

    /// Reads one frame and its virtio-net header into `buf`.
    ///
    /// Returns the Ethernet frame's length; `WouldBlock` when none is queued. An
    /// interface that went down reports `ENETDOWN` once; the port stays usable and
    /// frames flow again when the interface comes back.
    pub fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        self.stats.reads += 1;
        let (hdr, frame) = buf.split_mut();
        let n = sys::readv2(self.fd.as_fd(), &mut hdr[..PACKET_HDR_LEN], frame)?;
        hdr[PACKET_HDR_LEN..].fill(0);
        let Some(len) = n.checked_sub(PACKET_HDR_LEN) else {
            buf.set_len(0);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short packet read",
            ));
        };
        buf.set_len(len);
        if buf.vnet_hdr().is_gso() {
            self.stats.gso_in += 1;
        }
        Ok(len)
    }

    /// What the socket did so far.
    pub fn stats(&self) -> IoStats {
        self.stats
    }

    /// Sends one frame with its virtio-net header.
    pub fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        self.stats.writes += 1;
        self.stats.count_whole(&buf.vnet_hdr());
        let (hdr, frame) = buf.split();
        let n = sys::writev2(self.fd.as_fd(), &hdr[..PACKET_HDR_LEN], frame)?;
        if n != PACKET_HDR_LEN + frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short packet write",
            ));
        }
        Ok(())
    }
}

impl AsFd for PacketPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketPort {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
