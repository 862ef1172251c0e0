//! vnet's NAT engine: guest flows re-originated from host sockets, the way passt and
//! slirp do it, so masquerading needs no kernel forwarding and no firewall rule.
//!
//! The engine is sans-IO. Frames guests send to the gateway's MAC for addresses off the
//! segment come in ([`Nat::handle_frame`]); frames for the guests go out
//! ([`Nat::poll_transmit`]). What must happen on the host side comes out as
//! [`Action`]s: open a TCP connection, a UDP socket or an ICMP ping socket to a target;
//! send a datagram; close. The driver owns the sockets and reports back: a TCP connect
//! finished ([`Nat::opened`]), a datagram arrived ([`Nat::datagram`]), and moves TCP
//! bytes both ways through [`Nat::pump`], which reads from and writes to the host socket
//! through the [`HostStream`] trait straight into and out of the TCP buffers — so flow
//! control is end to end: the engine reads from a host socket only while the guest's
//! window has room and takes bytes from a guest only while the host socket takes them.
//!
//! - **TCP**: a guest's SYN starts a host `connect`; the guest is answered only once it
//!   succeeds (SYN-ACK), is refused (RST: "connection refused" at once) or fails
//!   (ICMP host unreachable). The guest-facing TCP endpoint is a `smoltcp` interface in
//!   any-IP mode: one socket per flow, bound to the remote address the guest asked for.
//!   Half-close both ways, idle timeout.
//! - **UDP**: one flow per (guest address, remote address), a connected host socket;
//!   replies come back from that remote only. Timeouts as conntrack: 30 s without a
//!   reply, 180 s once replied.
//! - **ICMP echo**: one flow per (guest, remote, echo id) over a ping socket; replies
//!   get the guest's echo id back.
//! - **Host access**: a guest connecting to the gateway's own address (on a port the
//!   gateway does not serve) reaches the host's loopback, as libvirt guests reach the
//!   host at 192.168.122.1; [`NatConfig::host_access`] turns it off.
//! - **Port forwards**: the driver accepts on the host and calls
//!   [`Nat::accept_inbound`] / [`Nat::inbound_datagram`]; the guest sees the real
//!   client address.
//! - **Bounds**: flows per network and per guest, half-open TCP flows per guest
//!   ([`Limits`]); past them new flows are refused (RST or ICMP administratively
//!   prohibited) and counted.
//! - **Half-open flows**: the guest-facing socket of a flow listens on the remote
//!   address the guest asked for only for the instant it is fed that guest's SYN; a
//!   flow whose guest resets the SYN-ACK (a SYN scan) ends at once, and a handshake
//!   not finished within [`Limits::tcp_handshake_timeout`] is reset. So a guest's
//!   half-open flow never takes another guest's connection to the same remote.
//!
//! - **IPv6** (`NatConfig::ipv6`, `<nat ipv6='yes'>`): the same flows for guests in
//!   the network's IPv6 prefixes, from host IPv6 sockets (TCP, UDP, ICMPv6 echo over a
//!   ping socket); errors as ICMPv6 destination unreachable; host access to `::1`.
//!
//! Not done yet: IP fragments (dropped), ICMP errors from the host side relayed to guests
//! for UDP, TCP urgent data.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod device;
mod engine;

pub use engine::{neighbor_advert, Nat};

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Configuration of the NAT engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// The gateway's MAC (frames to guests come from it).
    pub gateway_mac: [u8; 6],
    /// The gateway's address.
    pub gateway_ip: Ipv4Addr,
    /// The segment's prefix length.
    pub prefix: u8,
    /// The gateway's IPv6 addresses with their prefix lengths, when the network
    /// translates IPv6 too (`<nat ipv6='yes'>`): guest IPv6 from these prefixes leaves
    /// through host sockets like IPv4, and a guest connecting to one of them reaches the
    /// host's `::1` (host access). Empty: IPv4 only.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// The segment's IP MTU.
    pub mtu: usize,
    /// Whether guests reach the host's loopback through the gateway address.
    pub host_access: bool,
    /// Whether guests take TCP super-frames (their ports have virtio-net offloads): the
    /// engine then raises the MSS of guests' SYNs so the guest-facing TCP sends segments
    /// of up to 64 KiB, which the driver marks for segmentation offload. It also leaves
    /// the TCP checksum of segments to guests uncomputed: the driver must mark every TCP
    /// frame to a guest as a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub guest_tso: bool,
    /// Bounds and timeouts.
    pub limits: Limits,
}

/// Bounds and timeouts of the NAT engine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Flows at once in the network.
    pub max_flows: usize,
    /// Flows at once per guest address.
    pub max_flows_per_guest: usize,
    /// A UDP flow without a reply ends after this long without traffic.
    pub udp_unreplied: Duration,
    /// A UDP flow that had a reply ends after this long without traffic.
    pub udp_assured: Duration,
    /// An ICMP echo flow ends after this long without traffic.
    pub icmp_timeout: Duration,
    /// A TCP flow ends (both sides reset) after this long without traffic.
    pub tcp_idle: Duration,
    /// A TCP connect that has not finished by then is reported unreachable.
    pub tcp_connect_timeout: Duration,
    /// A TCP flow whose guest-facing handshake has not finished this long after it
    /// began (the SYN-ACK to the guest, or the SYN to it for a port forward) is reset
    /// both ways. On the virtual segment a handshake takes one round trip; this leaves
    /// room for three retransmissions (smoltcp's RTO starts at 1 s and doubles: the
    /// SYN-ACK goes at 0, 1, 3 and 7 s).
    pub tcp_handshake_timeout: Duration,
    /// Half-open TCP flows at once per guest address: flows a guest's SYN started
    /// whose handshake has not finished (the host connect in progress, or the SYN-ACK
    /// not yet acknowledged). Past it the guest's SYN gets a RST. This bounds what a SYN
    /// scan from one guest holds (host sockets in connect, flow slots) without touching
    /// its established flows, which [`max_flows_per_guest`](Self::max_flows_per_guest)
    /// bounds. It must stay above a legitimate burst: a guest opening 500 connections
    /// at once has them all half-open for a moment (its SYNs come in before the first
    /// host connect is reported), so the default is 512, half the per-guest bound.
    pub max_half_open_per_guest: usize,
    /// Size of each of a TCP flow's two buffers (guest side) while the flows' buffers
    /// together stay within [`tcp_memory`](Self::tcp_memory). The buffer to a guest is
    /// what the engine keeps in flight toward it, so it bounds one flow's throughput.
    pub tcp_buffer: usize,
    /// Size of each buffer of a flow opened when the budget is spent: flows past the
    /// budget still work, with less in flight.
    pub tcp_buffer_min: usize,
    /// Budget for the big buffers of all TCP flows together, in bytes. Worst case memory
    /// for TCP buffers is this plus `max_flows` × 2 × `tcp_buffer_min`.
    pub tcp_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_flows: 4096,
            max_flows_per_guest: 1024,
            udp_unreplied: Duration::from_secs(30),
            udp_assured: Duration::from_secs(180),
            icmp_timeout: Duration::from_secs(30),
            tcp_idle: Duration::from_secs(7200),
            tcp_connect_timeout: Duration::from_secs(20),
            tcp_handshake_timeout: Duration::from_secs(10),
            max_half_open_per_guest: 512,
            tcp_buffer: 1024 * 1024,
            tcp_buffer_min: 64 * 1024,
            tcp_memory: 128 * 1024 * 1024,
        }
    }
}

impl NatConfig {
    /// A configuration for the gateway `mac`/`ip` on a /`prefix` segment, MTU 1500,
    /// host access on, default limits.
    pub fn new(gateway_mac: [u8; 6], gateway_ip: Ipv4Addr, prefix: u8) -> Self {
        Self {
            gateway_mac,
            gateway_ip,
            prefix,
            ipv6: Vec::new(),
            mtu: 1500,
            host_access: true,
            guest_tso: true,
            limits: Limits::default(),
        }
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.gateway_ip) & mask
    }

    /// Whether `ip` is inside one of the IPv6 prefixes.
    fn in_prefix6(&self, ip: Ipv6Addr) -> bool {
        self.ipv6.iter().any(|(a, len)| {
            let mask = u128::MAX
                .checked_shl(128 - u32::from((*len).min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(*a) & mask
        })
    }

    /// Whether `ip` is one of the gateway's own addresses.
    fn is_gateway(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a == self.gateway_ip,
            IpAddr::V6(a) => self.ipv6.iter().any(|(g, _)| *g == a),
        }
    }

    /// Whether a guest may send from `ip`: inside the segment (IPv4) or one of the
    /// translated prefixes (IPv6), and not the gateway's own or an unspecified address.
    fn is_guest(&self, ip: IpAddr) -> bool {
        let inside = match ip {
            IpAddr::V4(a) => self.in_subnet(a),
            IpAddr::V6(a) => self.in_prefix6(a),
        };
        inside && !ip.is_unspecified() && !self.is_gateway(ip)
    }
}

/// A flow's id: never reused in the life of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// A transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo.
    Icmp,
}

impl Proto {
    /// `tcp`, `udp` or `icmp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
        }
    }
}

/// What the driver must do on the host side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a host socket for `flow` to `target`: TCP, a non-blocking connect (report
    /// with [`Nat::opened`]); UDP, a connected datagram socket; ICMP, a ping socket
    /// "connected" to the target address (port 0).
    Open {
        /// The flow.
        flow: FlowId,
        /// Its protocol.
        proto: Proto,
        /// Where to connect (IPv4 or IPv6, as the guest's flow).
        target: SocketAddr,
    },
    /// Send a datagram on `flow`'s socket: a UDP payload, or an ICMP echo request
    /// (type 8 header and data; the kernel sets id and checksum).
    Datagram {
        /// The flow.
        flow: FlowId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close `flow`'s host socket: the flow is over.
    Close {
        /// The flow.
        flow: FlowId,
    },
}

/// Why a host connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The remote refused (the guest gets a RST).
    Refused,
    /// The remote is unreachable or did not answer (the guest gets ICMP host
    /// unreachable).
    Unreachable,
}

/// A connected host TCP socket, as [`Nat::pump`] uses it (non-blocking: `WouldBlock`
/// when there is nothing to read or no room to write).
pub trait HostStream {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes from `buf`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Shuts the writing half (the guest closed its side).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// One flow, as `switchctl nat-flows` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowInfo {
    /// Its id.
    pub id: FlowId,
    /// Its protocol.
    pub proto: Proto,
    /// The guest's end.
    pub guest: SocketAddr,
    /// The remote end, as the guest sees it.
    pub remote: SocketAddr,
    /// Where the host side goes (differs from `remote` for host access).
    pub target: SocketAddr,
    /// Opened from outside (a port forward).
    pub inbound: bool,
    /// A short state name.
    pub state: &'static str,
    /// Bytes from the guest to the remote.
    pub bytes_out: u64,
    /// Bytes from the remote to the guest.
    pub bytes_in: u64,
    /// Time since the flow began.
    pub age: Duration,
}

/// Why a guest frame the engine was handed made no flow and no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a well-formed Ethernet + IP packet.
    Malformed,
    /// From a source outside the network's subnet, the gateway's own or 0.0.0.0.
    ForeignSource,
    /// Not IPv4, or IPv6 on a network that does not translate it (no
    /// [`NatConfig::ipv6`] prefixes).
    NotIpv4,
    /// An IP fragment (not reassembled).
    Fragment,
    /// A transport other than TCP, UDP and ICMP.
    OtherTransport,
    /// ICMP (or ICMPv6) other than an echo request.
    NotEchoRequest,
    /// To a destination the network does not translate (the host's loopback with host
    /// access off, a multicast or broadcast address, ...).
    NoTarget,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 7] = [
        Self::Malformed,
        Self::ForeignSource,
        Self::NotIpv4,
        Self::Fragment,
        Self::OtherTransport,
        Self::NotEchoRequest,
        Self::NoTarget,
    ];

    /// The reason's name in counters (`dropped_<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::ForeignSource => "foreign_source",
            Self::NotIpv4 => "not_ipv4",
            Self::Fragment => "fragment",
            Self::OtherTransport => "other_transport",
            Self::NotEchoRequest => "not_echo_request",
            Self::NoTarget => "no_target",
        }
    }

    /// Whether the frame was bad (counted in [`Stats::dropped`]) rather than only not
    /// something the engine translates (counted in [`Stats::ignored`]).
    pub fn is_bad(self) -> bool {
        matches!(self, Self::Malformed | Self::ForeignSource)
    }

    fn index(self) -> usize {
        match self {
            Self::Malformed => 0,
            Self::ForeignSource => 1,
            Self::NotIpv4 => 2,
            Self::Fragment => 3,
            Self::OtherTransport => 4,
            Self::NotEchoRequest => 5,
            Self::NoTarget => 6,
        }
    }
}

/// Counters of the NAT engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Flows now.
    pub flows: usize,
    /// TCP flows opened.
    pub tcp_flows: u64,
    /// UDP flows opened.
    pub udp_flows: u64,
    /// ICMP echo flows opened.
    pub icmp_flows: u64,
    /// New flows refused because of [`Limits`].
    pub refused_limit: u64,
    /// TCP SYNs refused because the guest had
    /// [`Limits::max_half_open_per_guest`] half-open flows (also counted in
    /// `refused_limit`).
    pub refused_half_open: u64,
    /// TCP connects the remote refused.
    pub refused_remote: u64,
    /// TCP connects that failed as unreachable.
    pub unreachable: u64,
    /// Frames from sources outside the segment, or unparsable, dropped.
    pub dropped: u64,
    /// Frames not handled (IPv6, fragments, other protocols).
    pub ignored: u64,
    /// Flows ended by a timeout.
    pub timeouts: u64,
    /// TCP flows ended because the guest-facing handshake did not finish within
    /// [`Limits::tcp_handshake_timeout`] (also counted in `timeouts`).
    pub handshake_timeouts: u64,
    /// TCP flows ended before their handshake finished because the guest reset it (a
    /// RST answering the SYN-ACK, as a SYN scan's kernel sends) or its SYN was not one
    /// the guest-facing TCP takes.
    pub handshake_aborts: u64,
    /// Guest frames dropped, by reason: read with [`Stats::dropped_for`].
    drops: [u64; DropReason::ALL.len()],
}

impl Stats {
    /// Guest frames dropped for `reason`.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// Counts a frame dropped for `reason` (in its total, `dropped` or `ignored`, too).
    pub(crate) fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
        let total = if reason.is_bad() {
            &mut self.dropped
        } else {
            &mut self.ignored
        };
        *total = total.saturating_add(1);
    }

    /// Every counter and gauge by name (the field names, and `dropped_<reason>` per
    /// [`DropReason`]): what listings and metrics show, so none is left out.
    pub fn counters(&self) -> impl Iterator<Item = (std::borrow::Cow<'static, str>, u64)> + '_ {
        [
            ("flows", u64::try_from(self.flows).unwrap_or(u64::MAX)),
            ("tcp_flows", self.tcp_flows),
            ("udp_flows", self.udp_flows),
            ("icmp_flows", self.icmp_flows),
            ("refused_limit", self.refused_limit),
            ("refused_half_open", self.refused_half_open),
            ("refused_remote", self.refused_remote),
            ("unreachable", self.unreachable),
            ("dropped", self.dropped),
            ("ignored", self.ignored),
            ("timeouts", self.timeouts),
            ("handshake_timeouts", self.handshake_timeouts),
            ("handshake_aborts", self.handshake_aborts),
        ]
        .into_iter()
        .map(|(k, v)| (std::borrow::Cow::Borrowed(k), v))
        .chain(DropReason::ALL.into_iter().map(|r| {
            (
                std::borrow::Cow::Owned(format!("dropped_{}", r.as_str())),
                self.dropped_for(r),
            )
        }))
    }
}

#[cfg(test)]
mod tests;
