//! TAP devices with virtio-net headers and offloads.
//!
//! A [`Tap`] is created non-blocking with `IFF_VNET_HDR` (12-byte header) and
//! `TUNSETOFFLOAD` (checksum, TSO4/6, ECN, and USO4/6 where the kernel has it), so the
//! kernel side of the device advertises segmentation offloads and a TCP stream crosses
//! the switch as 64 KiB super-frames. A TAP created inside another network namespace is
//! made there directly (a short-lived thread enters the namespace, opens `/dev/net/tun`
//! and creates the device under its final name), so no rename or move is needed and the
//! descriptor keeps working from the switch's own namespace.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;

use crate::buf::FrameBuf;
use crate::soft;
use crate::stats::IoStats;
use crate::sys;
use crate::vnet_hdr::{VirtioNetHdr, VNET_HDR_LEN};
use crate::{validate_ifname, Error};

/// A network namespace, by name (as `ip netns` names them) or by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsRef {
    name: String,
    path: PathBuf,
}

impl NetnsRef {
    /// Where `ip netns` keeps its namespaces.
    pub const NETNS_RUN_DIR: &'static str = "/run/netns";

    /// A namespace by `ip netns` name, or by path if `s` contains a `/`.
    pub fn new(s: &str) -> Self {
        let path = if s.contains('/') {
            PathBuf::from(s)
        } else {
            PathBuf::from(Self::NETNS_RUN_DIR).join(s)
        };
        Self {
            name: s.to_owned(),
            path,
        }
    }

    /// The name (or path) as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(crate) fn open(&self) -> Result<File, Error> {
        File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NetnsNotFound {
                name: self.name.clone(),
                path: self.path.display().to_string(),
            },
            _ => Error::Netns {
                name: self.name.clone(),
                source: e,
            },
        })
    }
}

/// How to create a TAP.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TapOptions {
    /// Interface name; `None` lets the kernel choose one from `vnet%d`.
    pub name: Option<String>,
    /// Create the device inside this network namespace instead of the caller's.
    pub netns: Option<NetnsRef>,
    /// Keep the device when the descriptor closes (`TUNSETPERSIST`).
    pub persistent: bool,
    /// Attach to an existing persistent TAP of that name instead of failing.
    pub attach_existing: bool,
    /// MAC address of the device (the kernel picks a random one otherwise).
    pub mac: Option<[u8; 6]>,
    /// Bring the device up once created (default on).
    pub up: bool,
    /// Offer checksum and segmentation offloads to the kernel side (default on). Off,
    /// the guest's stack checksums and segments itself, and [`Tap::send`] makes frames
    /// plain before writing them.
    pub offloads: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        Self {
            name: None,
            netns: None,
            persistent: false,
            attach_existing: false,
            mac: None,
            up: true,
            offloads: true,
        }
    }
}

/// An open TAP device. Dropping it closes the descriptor, which removes the device
/// unless it is persistent.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    netns: Option<NetnsRef>,
    persistent: bool,
    offloads: u32,
    stats: IoStats,
    /// Headers of the segment being written, for a TAP without offloads.
    scratch: Vec<u8>,
}

const OFFLOADS_BASE: u32 = sys::TUN_F_CSUM | sys::TUN_F_TSO4 | sys::TUN_F_TSO6 | sys::TUN_F_TSO_ECN;
const OFFLOADS_USO: u32 = sys::TUN_F_USO4 | sys::TUN_F_USO6;

impl Tap {
    /// Creates (or, with `attach_existing`, attaches to) a TAP device.
    pub fn create(opts: &TapOptions) -> Result<Self, Error> {
        if let Some(n) = &opts.name {
            validate_ifname(n)?;
        }
        let Some(ns) = &opts.netns else {
            return Self::create_here(opts);
        };
        let ns_file = ns.open()?;
        let opts2 = opts.clone();
        let name = ns.name.clone();
        std::thread::Builder::new()
            .name("tap-netns".into())
            .spawn(move || {
                sys::setns_net(&ns_file).map_err(|source| Error::Netns { name, source })?;
                Self::create_here(&opts2)
            })
            .map_err(|source| Error::Netns {
                name: ns.name.clone(),
                source,
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Netns {
                    name: ns.name.clone(),
                    source: io::Error::other("namespace thread panicked"),
                })
            })
    }

    /// Creates the device in the calling thread's network namespace.
    fn create_here(opts: &TapOptions) -> Result<Self, Error> {
        let fd = sys::open_tun().map_err(Error::OpenTun)?;
        let want = opts.name.as_deref().unwrap_or("vnet%d");
        let mut flags = sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR;
        if !opts.attach_existing {
            flags |= sys::IFF_TUN_EXCL;
        }
        let ioctl = |op, name: &str| {
            let name = name.to_owned();
            move |source| Error::Ioctl { op, name, source }
        };
        let name = sys::tun_set_iff(fd.as_fd(), want, flags).map_err(|e| {
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::EEXIST) | Some(libc::EINVAL)
            ) {
                Error::IfnameInUse {
                    name: want.to_owned(),
                }
            } else {
                ioctl("TUNSETIFF", want)(e)
            }
        })?;
        const _: () = assert!(VNET_HDR_LEN == 12);
        sys::tun_set_vnet_hdr_sz(fd.as_fd(), 12).map_err(ioctl("TUNSETVNETHDRSZ", &name))?;
        let offloads = if !opts.offloads {
            sys::tun_set_offload(fd.as_fd(), 0).map_err(ioctl("TUNSETOFFLOAD", &name))?;
            0
        } else {
            match sys::tun_set_offload(fd.as_fd(), OFFLOADS_BASE | OFFLOADS_USO) {
                Ok(()) => OFFLOADS_BASE | OFFLOADS_USO,
                Err(_) => {
                    sys::tun_set_offload(fd.as_fd(), OFFLOADS_BASE)
                        .map_err(ioctl("TUNSETOFFLOAD", &name))?;
                    OFFLOADS_BASE
                }
            }
        };
        if opts.persistent {
            sys::tun_set_persist(fd.as_fd(), true).map_err(ioctl("TUNSETPERSIST", &name))?;
        }
        if let Some(mac) = opts.mac {
            sys::tun_set_hwaddr(fd.as_fd(), &name, mac).map_err(ioctl("SIOCSIFHWADDR", &name))?;
        }
        if opts.up {
            sys::set_link_up(&name).map_err(ioctl("SIOCSIFFLAGS", &name))?;
        }
        Ok(Self {
            file: File::from(fd),
            name,
            netns: opts.netns.clone(),
            persistent: opts.persistent,
            offloads,
            stats: IoStats::default(),
            scratch: Vec::new(),
        })
    }

    /// The device's name (in its namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the device lives in, when not the caller's.
    pub fn netns(&self) -> Option<&NetnsRef> {
        self.netns.as_ref()
    }

    /// Whether the device outlives the descriptor.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether frames written may carry offloads (GSO, partial checksums); when not,
    /// [`Tap::send`] makes them plain first ([`crate::soft`]).
    pub fn takes_offloads(&self) -> bool {
        self.offloads != 0
    }

    /// Whether UDP segmentation offload (USO) was accepted by the kernel.
    pub fn has_uso(&self) -> bool {
        self.offloads & OFFLOADS_USO != 0
    }

    /// Makes the device persistent or not. A device made non-persistent disappears when
    /// this `Tap` is dropped.
    pub fn set_persistent(&mut self, on: bool) -> Result<(), Error> {
        sys::tun_set_persist(self.file.as_fd(), on).map_err(|source| Error::Ioctl {
            op: "TUNSETPERSIST",
            name: self.name.clone(),
            source,
        })?;
        self.persistent = on;
        Ok(())
    }

    /// Gives the device (in the caller's namespace) an IPv4 address on a /`prefix`
    /// subnet, as the host side of a segment.
    pub fn set_ipv4(&self, addr: std::net::Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0);
        sys::set_ipv4(&self.name, addr.octets(), mask.to_be_bytes()).map_err(|source| {
            Error::Ioctl {
                op: "SIOCSIFADDR",
                name: self.name.clone(),
                source,
            }
        })
    }

    /// Adds IPv6 address `addr`/`prefix` to the device (the namespace it was opened
    /// in; IPv6 must be enabled on it).
    pub fn add_ipv6(&self, addr: std::net::Ipv6Addr, prefix: u8) -> Result<(), Error> {
        sys::add_ipv6(&self.name, addr.octets(), prefix).map_err(|source| Error::Ioctl {
            op: "SIOCSIFADDR (IPv6)",
            name: self.name.clone(),
            source,
        })
    }

    /// Reads one frame (virtio-net header and Ethernet frame) into `buf`.
    ///
    /// Returns the Ethernet frame's length; `WouldBlock` when no frame is queued.
    pub fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        self.stats.reads += 1;
        let n = self.file.read(buf.raw_mut())?;
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            buf.set_len(0);
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short TAP read"));
        };
        buf.set_len(len);
        if buf.vnet_hdr().is_gso() {
            self.stats.gso_in += 1;
        }
        Ok(len)
    }

    /// Writes one frame with its virtio-net header. A TAP without offloads gets it
    /// plain: a super-frame cut into segments and a partial checksum completed in
    /// software ([`soft`]), each segment written from its rewritten headers and its
    /// part of `buf` (no copy of the payload).
    pub fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        let h = buf.vnet_hdr();
        if self.offloads != 0 || (!h.is_gso() && h.flags & VirtioNetHdr::F_NEEDS_CSUM == 0) {
            self.stats.writes += 1;
            self.stats.count_whole(&h);
            let data = buf.with_hdr();
            let n = self.file.write(data)?;
            if n != data.len() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short TAP write"));
            }
            return Ok(());
        }
        const PLAIN: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
        let Self {
            file,
            scratch,
            stats,
            ..
        } = self;
        let mut res = Ok(());
        let made = soft::for_each_plain_parts(buf, scratch, |head, tail| {
            stats.writes += 1;
            match sys::writev(file.as_fd(), &[&PLAIN, head, tail]) {
                Ok(n) if n == VNET_HDR_LEN + head.len() + tail.len() => {}
                Ok(_) => {
                    res = Err(io::Error::new(io::ErrorKind::WriteZero, "short TAP write"));
                }
                Err(e) => res = Err(e),
            }
        })
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "cannot segment the frame in software",
            )
        })?;
        self.stats.count_plain(&h, made);
        res
    }

    /// Another handle on the same device (a duplicated descriptor), for writing to it
    /// from a second thread. Its counters start at zero. The device stays while any
    /// handle is open.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            file: self.file.try_clone()?,
            name: self.name.clone(),
            netns: self.netns.clone(),
            persistent: self.persistent,
            offloads: self.offloads,
            stats: IoStats::default(),
            scratch: Vec::new(),
        })
    }

    /// What the device did so far.
    pub fn stats(&self) -> IoStats {
        self.stats
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
