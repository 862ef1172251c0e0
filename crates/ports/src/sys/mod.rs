//! Every system call of the crate that needs `unsafe`, each with its invariant.
//!
//! The rest of the crate calls these safe wrappers; nothing outside `sys` uses `unsafe`.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, c_short, c_ulong};

/// `_IOW('T', 202, int)`
const TUNSETIFF: c_ulong = 0x4004_54ca;
/// `_IOW('T', 203, int)`
const TUNSETPERSIST: c_ulong = 0x4004_54cb;
/// `_IOW('T', 208, unsigned int)`
const TUNSETOFFLOAD: c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`
const TUNSETVNETHDRSZ: c_ulong = 0x4004_54d8;

/// TAP (Ethernet) device.
pub(crate) const IFF_TAP: c_short = 0x0002;
/// No packet-information prefix.
pub(crate) const IFF_NO_PI: c_short = 0x1000;
/// Frames carry a virtio-net header.
pub(crate) const IFF_VNET_HDR: c_short = 0x4000;
/// Fail if the name exists already.
pub(crate) const IFF_TUN_EXCL: c_short = -0x8000; // 0x8000 as a c_short

pub(crate) const TUN_F_CSUM: u32 = 0x01;
pub(crate) const TUN_F_TSO4: u32 = 0x02;
pub(crate) const TUN_F_TSO6: u32 = 0x04;
pub(crate) const TUN_F_TSO_ECN: u32 = 0x08;
pub(crate) const TUN_F_USO4: u32 = 0x20;
pub(crate) const TUN_F_USO6: u32 = 0x40;

fn ifreq_with_name(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is a plain C struct (a name array and a union of integers and
    // plain structs); all-zero bytes are a valid value of it.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= ifr.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(ifr)
}

fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens `/dev/net/tun`, non-blocking and close-on-exec, in the calling thread's
/// network namespace (the namespace a TAP created on it will live in).
pub(crate) fn open_tun() -> io::Result<OwnedFd> {
    const PATH: &CStr = c"/dev/net/tun";
    // SAFETY: PATH is a valid NUL-terminated string; open has no other preconditions.
    let fd = check(unsafe {
        libc::open(
            PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `TUNSETIFF`: creates (or attaches to) the TAP `name` (empty: the kernel picks
/// one from `pattern`) and returns the device's name.
pub(crate) fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: c_short) -> io::Result<String> {
    let mut ifr = ifreq_with_name(name)?;
    ifr.ifr_ifru.ifru_flags = flags;
    // SAFETY: fd is an open /dev/net/tun descriptor; TUNSETIFF reads and writes one
    // ifreq, and ifr is a live, properly aligned ifreq for the duration of the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr as *mut libc::ifreq) })?;
    Ok(ifreq_name(&ifr))
}

/// `TUNSETVNETHDRSZ`: the size of the virtio-net header on every frame.
pub(crate) fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, size: c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; `size` lives on the
    // stack for the whole call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &size as *const c_int) })?;
    Ok(())
}

/// `TUNSETOFFLOAD`: the offloads this reader accepts (`TUN_F_*`).
pub(crate) fn tun_set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, c_ulong::from(flags)) })?;
    Ok(())
}

/// `TUNSETPERSIST`: keep the device after the last descriptor closes.
pub(crate) fn tun_set_persist(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value, no pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, c_ulong::from(on)) })?;
    Ok(())
}

/// `SIOCSIFHWADDR` on a TAP descriptor: sets the device's MAC address.
pub(crate) fn tun_set_hwaddr(fd: BorrowedFd<'_>, name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: writing a plain-data union field of a zeroed ifreq.
    unsafe {
        ifr.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (d, s) in ifr.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *d = s as libc::c_char;
        }
    }
    // SAFETY: the tun driver handles SIOCSIFHWADDR on an attached descriptor, reading one
    // ifreq; ifr is live and aligned for the call.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCSIFHWADDR,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    Ok(())
}

/// An IPv4 datagram socket, to address interface ioctls to (in the calling thread's
/// network namespace).
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory preconditions.
    let raw =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sets `IFF_UP` on interface `name` in the calling thread's network namespace.
pub(crate) fn set_link_up(name: &str) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of the live ifreq.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    // IFF_UP is 0x1: it fits a c_short.
    const UP: c_short = 0x1;
    // SAFETY: ifru_flags was just written by the kernel; reading and updating a c_short.
    unsafe { ifr.ifr_ifru.ifru_flags |= UP };
    // SAFETY: SIOCSIFFLAGS reads the name and flags of the live ifreq.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    Ok(())
}

/// Moves the calling thread into the network namespace `ns` refers to.
pub(crate) fn setns_net(ns: &File) -> io::Result<()> {
    // SAFETY: ns is an open namespace file; setns affects only the calling thread's
    // network namespace (CLONE_NEWNET), which the caller has chosen to change.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Receive buffer of packet sockets, bytes.
const PACKET_RCVBUF: c_int = 4 << 20;

/// `PACKET_VNET_HDR` (linux/if_packet.h): frames carry a 10-byte `virtio_net_hdr`.
const PACKET_VNET_HDR: c_int = 15;
/// `PACKET_IGNORE_OUTGOING` (Linux 4.20): do not deliver frames the host transmits.
const PACKET_IGNORE_OUTGOING: c_int = 23;

/// `AF_PACKET` (17), as `sockaddr_ll.sll_family` holds it.
const AF_PACKET_FAMILY: u16 = 17;
const _: () = assert!(libc::PACKET_MR_PROMISC == 1);
const _: () = assert!(libc::AF_PACKET == 17);

/// `PACKET_MR_PROMISC` (linux/if_packet.h), as `packet_mreq.mr_type` holds it.
const PACKET_MR_PROMISC: u16 = 1;

/// The size of `T` as a socket length (the structs passed are a few dozen bytes).
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// The interface index of `name` in the calling thread's network namespace.
pub(crate) fn if_index(name: &str) -> io::Result<c_int> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a NUL-terminated string that lives across the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    c_int::try_from(idx).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

fn set_int_opt(fd: BorrowedFd<'_>, level: c_int, opt: c_int, val: c_int) -> io::Result<()> {
    // SAFETY: val is a live c_int and its exact size is passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&val as *const c_int).cast(),
            socklen_of::<c_int>(),
        )
    })?;
    Ok(())
}

/// An `AF_PACKET` raw socket bound to interface `ifindex`, non-blocking, with
/// virtio-net headers, not seeing what the host transmits on that interface, and, when
/// `promisc`, putting the interface in promiscuous mode for as long as it is open.
pub(crate) fn packet_socket(ifindex: c_int, promisc: bool) -> io::Result<OwnedFd> {
    // ETH_P_ALL (0x0003), in network byte order as the socket calls want it
    let proto = 0x0003_u16.to_be();
    // SAFETY: socket has no memory preconditions.
    let raw = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            c_int::from(proto),
        )
    })?;
    // SAFETY: socket just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let b = fd.as_fd();
    set_int_opt(b, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
    // A deeper receive queue absorbs bursts of small frames (the default holds a few
    // hundred); FORCE needs CAP_NET_ADMIN, the plain one is capped by rmem_max.
    if set_int_opt(b, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, PACKET_RCVBUF).is_err() {
        let _ = set_int_opt(b, libc::SOL_SOCKET, libc::SO_RCVBUF, PACKET_RCVBUF);
    }
    // Older kernels lack it; then the switch sees its own transmissions, which its
    // learning tolerates (the source MACs are on other ports) but which cost work.
    let _ = set_int_opt(b, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    if promisc {
        // SAFETY: packet_mreq is a plain C struct; all-zero bytes are a valid value.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        // SAFETY: mr is a live packet_mreq and its exact size is passed.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mr as *const libc::packet_mreq).cast(),
                socklen_of::<libc::packet_mreq>(),
            )
        })?;
    }
    // SAFETY: sockaddr_ll is a plain C struct; all-zero bytes are a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = AF_PACKET_FAMILY;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a live sockaddr_ll and its exact size is passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            socklen_of::<libc::sockaddr_ll>(),
        )
    })?;
    Ok(fd)
}

/// Reads one datagram into two buffers (`readv`). Returns the bytes read.
pub(crate) fn readv2(fd: BorrowedFd<'_>, a: &mut [u8], b: &mut [u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        },
    ];
    // SAFETY: both iovecs point into live, exclusively borrowed buffers of the given
    // lengths, which the kernel may write up to their lengths.
    let n = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), 2) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Writes one datagram from two buffers (`writev`). Returns the bytes written.
pub(crate) fn writev2(fd: BorrowedFd<'_>, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        },
    ];
    // SAFETY: both iovecs point into live buffers of the given lengths; writev only
    // reads them.
    let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), 2) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Writes one frame from up to four buffers back to back (`writev`). Returns the bytes
/// written.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[&[u8]]) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    let n = bufs.len().min(iov.len());
    for (v, b) in iov.iter_mut().zip(bufs) {
        *v = libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
    }
    let cnt = c_int::try_from(n).unwrap_or(0);
    // SAFETY: the first `cnt` iovecs point into live buffers of the given lengths;
    // writev only reads them.
    let w = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), cnt) };
    usize::try_from(w).map_err(|_| io::Error::last_os_error())
}

/// Sets the IPv4 address and netmask of interface `name` in the calling thread's
/// network namespace (`SIOCSIFADDR`, `SIOCSIFNETMASK`; the kernel adds the subnet's
/// route when the link is up).
pub(crate) fn set_ipv4(name: &str, addr: [u8; 4], mask: [u8; 4]) -> io::Result<()> {
    let sock = ioctl_socket()?;
    for (req, a) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
        let mut ifr = ifreq_with_name(name)?;
        // SAFETY: sockaddr_in is a plain C struct; all-zero bytes are a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = AF_INET_FAMILY;
        sin.sin_addr.s_addr = u32::from_ne_bytes(a);
        // SAFETY: ifru_addr is a sockaddr, 16 bytes, the size of sockaddr_in; writing
        // the sockaddr_in's bytes over it is how SIOCSIFADDR expects the address.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&sin as *const libc::sockaddr_in).cast::<u8>(),
                (&mut ifr.ifr_ifru.ifru_addr as *mut libc::sockaddr).cast::<u8>(),
                size_of::<libc::sockaddr_in>(),
            );
        }
        // SAFETY: the ioctl reads the name and address of the live ifreq.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), req, &mut ifr as *mut libc::ifreq) })?;
    }
    Ok(())
}

/// Adds IPv6 address `addr`/`prefix` to interface `name` in the calling thread's
/// network namespace (`SIOCSIFADDR` on an `AF_INET6` socket, with an `in6_ifreq`).
pub(crate) fn add_ipv6(name: &str, addr: [u8; 16], prefix: u8) -> io::Result<()> {
    let ifindex = if_index(name)?;
    // SAFETY: socket has no memory preconditions.
    let raw =
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket just returned this descriptor and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: in6_ifreq is a plain C struct (an address and two integers); all-zero
    // bytes are a valid value of it.
    let mut req: libc::in6_ifreq = unsafe { std::mem::zeroed() };
    req.ifr6_addr.s6_addr = addr;
    req.ifr6_prefixlen = u32::from(prefix);
    req.ifr6_ifindex = ifindex;
    // SAFETY: the ioctl reads the live in6_ifreq, whose exact type SIOCSIFADDR expects
    // on an AF_INET6 socket.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFADDR,
            &mut req as *mut libc::in6_ifreq,
        )
    })?;
    Ok(())
}

/// `AF_INET` (2), as `sockaddr_in.sin_family` holds it.
const AF_INET_FAMILY: u16 = 2;
const _: () = assert!(libc::AF_INET == 2);
const _: () = assert!(size_of::<libc::sockaddr_in>() == size_of::<libc::sockaddr>());

/// The MAC address and (first) IPv4 address of interface `name` in the calling
/// thread's network namespace (`SIOCGIFHWADDR`, `SIOCGIFADDR`); no address is `None`.
pub(crate) fn if_mac_ipv4(name: &str) -> io::Result<([u8; 6], Option<[u8; 4]>)> {
    let sock = ioctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: SIOCGIFHWADDR reads the name and writes ifru_hwaddr of the live ifreq.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFHWADDR,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    let mut mac = [0u8; 6];
    // SAFETY: ifru_hwaddr was just written by the kernel; reading its bytes.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    for (d, s) in mac.iter_mut().zip(data) {
        *d = s as u8;
    }
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: SIOCGIFADDR reads the name and writes ifru_addr of the live ifreq.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFADDR,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            return Ok((mac, None));
        }
        return Err(e);
    }
    // SAFETY: for AF_INET, ifru_addr holds a sockaddr_in (same size, asserted above);
    // read_unaligned copies it out without alignment assumptions.
    let sin: libc::sockaddr_in = unsafe {
        std::ptr::read_unaligned((&ifr.ifr_ifru.ifru_addr as *const libc::sockaddr).cast())
    };
    Ok((mac, Some(sin.sin_addr.s_addr.to_ne_bytes())))
}

/// `PACKET_STATISTICS` (linux/if_packet.h).
const PACKET_STATISTICS: c_int = 6;

/// Frames the kernel dropped on a packet socket because its receive queue was full,
/// since the last call (`PACKET_STATISTICS` resets the counters when read).
pub(crate) fn packet_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: tpacket_stats is two unsigned ints; all-zero bytes are a valid value.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = socklen_of::<libc::tpacket_stats>();
    // SAFETY: st and len are live and len holds st's exact size; the kernel writes at
    // most len bytes into st.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    })?;
    Ok(st.tp_drops)
}
