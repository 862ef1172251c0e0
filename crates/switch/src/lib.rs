//! A sans-IO Ethernet learning switch: the embeddable core of vnet.
//!
//! [`Switch`] decides where each frame goes. It owns no sockets, reads no clock and
//! allocates nothing per frame: the caller hands in the ingress port, the frame bytes and
//! the current [`Instant`]; the switch answers with a [`Verdict`] (one egress port, flood,
//! or drop with a [`DropReason`]). Moving the bytes is the caller's job, so the same core
//! runs over TAP devices in `switchd`, over QEMU sockets, or over in-memory queues.
//!
//! What it does:
//! - learns source MACs per (VLAN, MAC) into a bounded forwarding database with aging
//!   (300 s by default) and station moves; when full it evicts from the port holding the
//!   most entries, so one port cannot flush the others ([`fdb`]);
//! - floods broadcast, multicast and unknown unicast to every port but the ingress;
//!   never sends a frame back out its ingress port;
//! - per-port flags: learning on/off and isolated (an isolated port reaches only
//!   non-isolated ports, like libvirt's `<port isolated='yes'/>`);
//! - per-port counters: rx/tx frames and bytes, flooded frames, drops by reason.
//!
//! What it does not do (yet): VLAN membership and tag push/pop (frames are keyed by their
//! 802.1Q VID but flooded to every port), STP, IGMP snooping, port security. The gateway,
//! DHCP, DNS and the forwarding engines live in other crates.
//!
//! # Example
//! ```
//! use vnet_switch::{Config, Instant, PortConfig, Switch, Verdict};
//!
//! let mut sw = Switch::new(Config::default());
//! let a = sw.add_port(PortConfig::default()).unwrap();
//! let b = sw.add_port(PortConfig::default()).unwrap();
//!
//! // a frame from 02:..:0a to 02:..:0b arrives on port a
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x0b]);
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0a]);
//! let now = Instant::from_secs(1);
//! // b is unknown yet: flood (to b only, never back to a)
//! assert_eq!(sw.handle_frame(now, a, &frame), Verdict::Flood);
//! assert_eq!(sw.flood_targets(a).collect::<Vec<_>>(), vec![b]);
//! // the reply teaches the switch where b is; a was learned from the first frame
//! frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x0a]);
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0b]);
//! assert_eq!(sw.handle_frame(now, b, &frame), Verdict::Forward(a));
//! ```
//!
//! See `examples/in_memory.rs` for a switch driven over in-memory ports.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod addr;
pub mod fdb;
mod time;
pub mod wire;

use std::time::Duration;

pub use addr::{MacAddr, ParseMacError, PortId, VlanId};
pub use fdb::{Fdb, FdbEntry, FdbStats, Learned, StationMove};
pub use time::Instant;

/// Switch-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Bound on forwarding-database entries (default 8192).
    pub fdb_max_entries: usize,
    /// Time after which an entry not refreshed is forgotten (default 300 s).
    pub aging_time: Duration,
    /// Bound on the number of ports (default 1024, at most 65536).
    pub max_ports: usize,
    /// Frames per second each port may have flooded (broadcast, multicast, unknown
    /// unicast), with bursts of a tenth of a second's worth; past it they are dropped
    /// and counted (`flood-limited`). 0: no limit. Default 20 000.
    pub flood_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fdb_max_entries: 8192,
            aging_time: Duration::from_secs(300),
            max_ports: 1024,
            flood_limit: 20_000,
        }
    }
}

impl Config {
    /// Sets [`Config::fdb_max_entries`].
    #[must_use]
    pub fn with_fdb_max_entries(mut self, n: usize) -> Self {
        self.fdb_max_entries = n;
        self
    }

    /// Sets [`Config::flood_limit`].
    #[must_use]
    pub fn with_flood_limit(mut self, per_second: u32) -> Self {
        self.flood_limit = per_second;
        self
    }

    /// Sets [`Config::aging_time`].
    #[must_use]
    pub fn with_aging_time(mut self, t: Duration) -> Self {
        self.aging_time = t;
        self
    }

    /// Sets [`Config::max_ports`].
    #[must_use]
    pub fn with_max_ports(mut self, n: usize) -> Self {
        self.max_ports = n;
        self
    }
}

/// Per-port flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortConfig {
    /// Learn source MACs of frames arriving on this port (default on).
    pub learning: bool,
    /// Isolated ports exchange frames only with non-isolated ports (default off).
    pub isolated: bool,
    /// Anti-spoofing for what the port sends (default none: a trusted port).
    pub security: Option<PortSecurity>,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self {
            learning: true,
            isolated: false,
            security: None,
        }
    }
}

/// The flood bucket's size for `rate` frames per second: a tenth of a second's worth,
/// at least 64.
fn flood_burst(rate: u32) -> u32 {
    (rate / 10).max(64)
}

/// Addresses a protected port may send from, at most this many IPv4 ones.
pub const MAX_PORT_ADDRS: usize = 8;

/// IPv6 addresses a protected port may send from (besides its MAC's link-local), at
/// most this many: learned from its duplicate address detection, the newest kept.
pub const MAX_PORT_ADDRS6: usize = 8;

/// Port security, what libvirt's `clean-traffic` filter gives: the port may send only
/// from its MAC (the given one, or the first it uses), IPv4 only from its addresses
/// (leased or reserved; `0.0.0.0` only for DHCP requests), ARP only naming itself, and
/// no DHCP server replies. IPv6 only from its MAC's link-local address and the
/// addresses it claimed with duplicate address detection (SLAAC, DHCPv6, any other
/// link-local; `::` only for ICMPv6), neighbor advertisements only for those, and no
/// router advertisements or redirects (RA guard, RFC 6105) or DHCPv6 server messages.
/// Frames of other kinds are checked for the MAC only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSecurity {
    /// The port's MAC; `None` until the port sends its first frame.
    pub mac: Option<MacAddr>,
    addrs: [[u8; 4]; MAX_PORT_ADDRS],
    n: u8,
    addrs6: [[u8; 16]; MAX_PORT_ADDRS6],
    n6: u8,
    /// Where the next claimed IPv6 address goes once the list is full (the oldest).
    next6: u8,
}

/// The target of a duplicate address detection probe (a neighbor solicitation from
/// `::`, RFC 4862 §5.4.2) in `frame`, if it is one.
fn dad_target(frame: &[u8]) -> Option<[u8; 16]> {
    let p = frame.get(14..)?;
    let probe = frame.get(12..14)? == [0x86, 0xdd]
        && p.get(6) == Some(&58)
        && p.get(8..24)? == [0; 16]
        && p.get(40) == Some(&135);
    probe.then(|| p.get(48..64)?.try_into().ok()).flatten()
}

/// The modified EUI-64 link-local address of `mac`, as bytes.
fn link_local(mac: MacAddr) -> [u8; 16] {
    mac.ipv6_link_local().octets()
}

impl PortSecurity {
    /// Protection bound to `mac` (or, with `None`, to the first source MAC seen).
    pub fn new(mac: Option<MacAddr>) -> Self {
        Self {
            mac,
            ..Self::default()
        }
    }

    /// The IPv4 addresses the port may send from.
    pub fn addrs(&self) -> impl Iterator<Item = std::net::Ipv4Addr> + '_ {
        self.addrs[..usize::from(self.n)]
            .iter()
            .map(|a| std::net::Ipv4Addr::from(*a))
    }

    /// Replaces the allowed IPv4 addresses (the first [`MAX_PORT_ADDRS`] of them).
    pub fn set_addrs(&mut self, addrs: impl IntoIterator<Item = std::net::Ipv4Addr>) {
        self.n = 0;
        for a in addrs.into_iter().take(MAX_PORT_ADDRS) {
            self.addrs[usize::from(self.n)] = a.octets();
            self.n += 1;
        }
    }

    fn allows(&self, ip: &[u8]) -> bool {
        self.addrs[..usize::from(self.n)]
            .iter()
            .any(|a| a[..] == *ip)
    }

    /// The IPv6 addresses the port claimed (duplicate address detection), oldest first
    /// until the list wrapped.
    pub fn addrs6(&self) -> impl Iterator<Item = std::net::Ipv6Addr> + '_ {
        self.addrs6[..usize::from(self.n6)]
            .iter()
            .map(|a| std::net::Ipv6Addr::from(*a))
    }

    /// Whether the port claimed IPv6 address `ip`.
    pub fn holds6(&self, ip: &[u8]) -> bool {
        self.addrs6[..usize::from(self.n6)]
            .iter()
            .any(|a| a[..] == *ip)
    }

    fn allows6(&self, ip: &[u8]) -> bool {
        self.holds6(ip) || self.mac.is_some_and(|m| link_local(m)[..] == *ip)
    }

    fn claim6(&mut self, ip: [u8; 16]) {
        if self.holds6(&ip) {
            return;
        }
        if usize::from(self.n6) < MAX_PORT_ADDRS6 {
            self.addrs6[usize::from(self.n6)] = ip;
            self.n6 += 1;
        } else {
            let at = usize::from(self.next6) % MAX_PORT_ADDRS6;
            self.addrs6[at] = ip;
            self.next6 = u8::try_from((at + 1) % MAX_PORT_ADDRS6).unwrap_or(0);
        }
    }

    /// Checks an IPv6 packet `p` (the Ethernet payload). `taken`: its duplicate
    /// address detection probe (if it is one) is for an address another port holds.
    fn check6(&mut self, p: &[u8], taken: bool) -> Option<DropReason> {
        let (Some(&next), Some(sip)) = (p.get(6), p.get(8..24)) else {
            return Some(DropReason::SpoofedIp);
        };
        // one hop-by-hop options header (MLD reports carry one) before the upper layer
        let (proto, l4) = match next {
            0 => (
                p.get(40).copied(),
                p.get(41).map(|l| 40 + (usize::from(*l) + 1) * 8),
            ),
            n => (Some(n), Some(40)),
        };
        let upper = l4.and_then(|o| p.get(o..)).unwrap_or_default();
        let unspecified = sip == [0; 16];
        match (proto, upper.first()) {
            // router advertisement, redirect: only the gateway routes
            (Some(58), Some(134 | 137)) => return Some(DropReason::RogueRouter),
            (Some(58), Some(136)) => {
                let target = upper.get(8..24).unwrap_or_default();
                if !self.allows6(target) {
                    return Some(DropReason::SpoofedNd);
                }
            }
            (Some(58), Some(135)) if unspecified => {
                let Some(target) = upper.get(8..24).and_then(|t| <[u8; 16]>::try_from(t).ok())
                else {
                    return Some(DropReason::SpoofedNd);
                };
                if taken {
                    return Some(DropReason::SpoofedNd);
                }
                self.claim6(target);
                return None;
            }
            // DHCPv6 server or relay messages come from port 547
            (Some(17), _) if upper.get(..2) == Some(&[0x02, 0x23]) => {
                return Some(DropReason::RogueDhcp)
            }
            _ => {}
        }
        if unspecified {
            // :: only for neighbor discovery and MLD (ICMPv6)
            return (proto != Some(58)).then_some(DropReason::SpoofedIp);
        }
        (!self.allows6(sip)).then_some(DropReason::SpoofedIp)
    }

    /// Checks a frame (already known to be at least a header long) against the
    /// protection; `None` if it may pass.
    fn check(
        &mut self,
        src: MacAddr,
        eth: &wire::EthernetFrame<&[u8]>,
        taken6: bool,
    ) -> Option<DropReason> {
        match self.mac {
            None => self.mac = Some(src),
            Some(m) if m != src => return Some(DropReason::SpoofedMac),
            Some(_) => {}
        }
        let p = eth.payload();
        match eth.ethertype() {
            wire::EtherType::Arp => {
                // sender MAC at 8..14, sender IP at 14..18
                let (Some(smac), Some(sip)) = (p.get(8..14), p.get(14..18)) else {
                    return Some(DropReason::SpoofedArp);
                };
                if smac != src.0 || (sip != [0, 0, 0, 0] && !self.allows(sip)) {
                    return Some(DropReason::SpoofedArp);
                }
                None
            }
            wire::EtherType::Ipv4 => {
                let (Some(&vihl), Some(&proto), Some(sip)) = (p.first(), p.get(9), p.get(12..16))
                else {
                    return Some(DropReason::SpoofedIp);
                };
                let l4 = usize::from(vihl & 0x0f) * 4;
                let ports = p.get(l4..l4 + 4).map(|b| {
                    (
                        u16::from_be_bytes([b[0], b[1]]),
                        u16::from_be_bytes([b[2], b[3]]),
                    )
                });
                if proto == 17 && ports.is_some_and(|(sp, _)| sp == 67) {
                    return Some(DropReason::RogueDhcp);
                }
                let dhcp_request = proto == 17 && ports == Some((68, 67));
                if self.allows(sip) || (sip == [0, 0, 0, 0] && dhcp_request) {
                    None
                } else {
                    Some(DropReason::SpoofedIp)
                }
            }
            wire::EtherType::Ipv6 => self.check6(p, taken6),
            _ => None,
        }
    }
}

impl PortConfig {
    /// Sets [`PortConfig::learning`].
    #[must_use]
    pub fn with_learning(mut self, on: bool) -> Self {
        self.learning = on;
        self
    }

    /// Sets [`PortConfig::isolated`].
    #[must_use]
    pub fn with_isolated(mut self, on: bool) -> Self {
        self.isolated = on;
        self
    }

    /// Sets [`PortConfig::security`].
    #[must_use]
    pub fn with_security(mut self, security: Option<PortSecurity>) -> Self {
        self.security = security;
        self
    }
}

/// Why a frame was dropped. Every drop is counted on its ingress (or egress) port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than an Ethernet header (or a tagged frame shorter than a tagged header).
    Runt,
    /// Source MAC is all zeros.
    ZeroSource,
    /// Source MAC is a group (multicast or broadcast) address.
    MulticastSource,
    /// The destination was learned on the ingress port itself: the frame stays local.
    LocalDestination,
    /// Unicast between two isolated ports.
    Isolated,
    /// The ingress port is not (or no longer) a port of this switch.
    UnknownPort,
    /// The egress port could not take the frame (reported by the driver).
    TxFailed,
    /// A protected port sent from a MAC not its own.
    SpoofedMac,
    /// A protected port sent IPv4 from an address not its own.
    SpoofedIp,
    /// A protected port sent ARP naming another sender.
    SpoofedArp,
    /// A protected port sent a DHCP server message (UDP from port 67, DHCPv6 from 547).
    RogueDhcp,
    /// The port flooded more frames than its flood rate limit allows.
    FloodLimited,
    /// A protected port sent an IPv6 router advertisement or redirect (RA guard).
    RogueRouter,
    /// A protected port sent a neighbor advertisement for an address not its own, or
    /// probed (duplicate address detection) for an address another port holds.
    SpoofedNd,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 14] = [
        Self::Runt,
        Self::ZeroSource,
        Self::MulticastSource,
        Self::LocalDestination,
        Self::Isolated,
        Self::UnknownPort,
        Self::TxFailed,
        Self::SpoofedMac,
        Self::SpoofedIp,
        Self::SpoofedArp,
        Self::RogueDhcp,
        Self::FloodLimited,
        Self::RogueRouter,
        Self::SpoofedNd,
    ];

    /// A short stable name, for counters and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Runt => "runt",
            Self::ZeroSource => "zero-source-mac",
            Self::MulticastSource => "multicast-source-mac",
            Self::LocalDestination => "local-destination",
            Self::Isolated => "isolated",
            Self::UnknownPort => "unknown-port",
            Self::TxFailed => "tx-failed",
            Self::SpoofedMac => "spoofed-mac",
            Self::SpoofedIp => "spoofed-ip",
            Self::SpoofedArp => "spoofed-arp",
            Self::RogueDhcp => "rogue-dhcp",
            Self::FloodLimited => "flood-limited",
            Self::RogueRouter => "rogue-router",
            Self::SpoofedNd => "spoofed-nd",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Runt => 0,
            Self::ZeroSource => 1,
            Self::MulticastSource => 2,
            Self::LocalDestination => 3,
            Self::Isolated => 4,
            Self::UnknownPort => 5,
            Self::TxFailed => 6,
            Self::SpoofedMac => 7,
            Self::SpoofedIp => 8,
            Self::SpoofedArp => 9,
            Self::RogueDhcp => 10,
            Self::FloodLimited => 11,
            Self::RogueRouter => 12,
            Self::SpoofedNd => 13,
        }
    }
}

/// Drop counters, one per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    /// Frames dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    fn bump(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }
}

/// Counters of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortCounters {
    /// Frames received from the port.
    pub rx_frames: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port (forwarded or flooded).
    pub tx_frames: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Frames received on the port that were flooded.
    pub flooded: u64,
    /// Dropped frames by reason.
    pub drops: DropCounters,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it out this one port.
    Forward(PortId),
    /// Send it out every port of [`Switch::flood_targets`].
    Flood,
    /// Drop it (already counted).
    Drop(DropReason),
}

/// Errors from managing ports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The switch already has [`Config::max_ports`] ports.
    #[error("too many ports (at most {max})")]
    TooManyPorts {
        /// The bound.
        max: usize,
    },
    /// No port with this id.
    #[error("no such port {0}")]
    NoSuchPort(PortId),
}

#[derive(Debug)]
struct Port {
    config: PortConfig,
    counters: PortCounters,
    /// Flood tokens left (token bucket of [`Config::flood_limit`]), and when they were
    /// last topped up.
    flood_tokens: u32,
    flood_refill: Instant,
}

/// A learning switch. Owns no sockets and reads no clock; see the crate doc.
#[derive(Debug)]
pub struct Switch {
    config: Config,
    fdb: Fdb,
    /// Indexed by [`PortId`]; `None` for a free id.
    ports: Vec<Option<Port>>,
    /// Ids of the present ports, in the order added.
    active: Vec<PortId>,
    /// Frames offered on an id that is not a port.
    unknown_port_drops: u64,
    next_sweep: Instant,
}

impl Switch {
    /// A switch with no ports.
    pub fn new(config: Config) -> Self {
        let max_ports = config.max_ports.clamp(1, usize::from(u16::MAX) + 1);
        let config = Config {
            max_ports,
            ..config
        };
        let fdb = Fdb::new(config.fdb_max_entries, config.aging_time);
        Self {
            next_sweep: Instant::ZERO + sweep_interval(config.aging_time),
            config,
            fdb,
            ports: Vec::new(),
            active: Vec::new(),
            unknown_port_drops: 0,
        }
    }

    /// The switch's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adds a port and returns its id (the lowest free one).
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, Error> {
        let idx = match self.ports.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.ports.len() < self.config.max_ports => {
                self.ports.push(None);
                self.ports.len() - 1
            }
            None => {
                return Err(Error::TooManyPorts {
                    max: self.config.max_ports,
                })
            }
        };
        let id = PortId(u16::try_from(idx).map_err(|_| Error::TooManyPorts {
            max: self.config.max_ports,
        })?);
        self.ports[idx] = Some(Port {
            config,
            counters: PortCounters::default(),
            flood_tokens: flood_burst(self.config.flood_limit),
            flood_refill: Instant::ZERO,
        });
        self.active.push(id);
        Ok(id)
    }

    /// Removes a port and forgets every station learned on it.
    pub fn remove_port(&mut self, id: PortId) -> Result<(), Error> {
        let slot = self
            .ports
            .get_mut(id.index())
            .ok_or(Error::NoSuchPort(id))?;
        if slot.take().is_none() {
            return Err(Error::NoSuchPort(id));
        }
        self.active.retain(|p| *p != id);
        self.fdb.flush_port(id);
        Ok(())
    }

    /// Changes a port's flags.
    pub fn set_port_config(&mut self, id: PortId, config: PortConfig) -> Result<(), Error> {
        self.port_mut(id).ok_or(Error::NoSuchPort(id))?.config = config;
        Ok(())
    }

    /// A port's flags.
    pub fn port_config(&self, id: PortId) -> Option<PortConfig> {
        self.port(id).map(|p| p.config)
    }

    /// Replaces the IPv4 addresses a protected port may send from; false if the port
    /// is not protected (or does not exist).
    pub fn set_port_addrs(
        &mut self,
        id: PortId,
        addrs: impl IntoIterator<Item = std::net::Ipv4Addr>,
    ) -> bool {
        match self.port_mut(id).and_then(|p| p.config.security.as_mut()) {
            Some(sec) => {
                sec.set_addrs(addrs);
                true
            }
            None => false,
        }
    }

    /// A port's counters.
    pub fn port_counters(&self, id: PortId) -> Option<PortCounters> {
        self.port(id).map(|p| p.counters)
    }

    /// Ids of the present ports, in the order they were added.
    pub fn ports(&self) -> &[PortId] {
        &self.active
    }

    /// Frames offered on an id that was not a port.
    pub fn unknown_port_drops(&self) -> u64 {
        self.unknown_port_drops
    }

    /// The forwarding database (read-only).
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// Whether a protected port other than `except` claimed IPv6 address `ip`.
    fn held6_elsewhere(&self, except: PortId, ip: &[u8; 16]) -> bool {
        self.ports.iter().enumerate().any(|(i, p)| {
            i != except.index()
                && p.as_ref()
                    .and_then(|p| p.config.security.as_ref())
                    .is_some_and(|s| s.holds6(ip) || s.mac.is_some_and(|m| link_local(m) == *ip))
        })
    }

    fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.index())?.as_ref()
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports.get_mut(id.index())?.as_mut()
    }

    /// Decides where a frame that arrived on `ingress` goes, learning its source.
    ///
    /// `frame` starts at the Ethernet header (no virtio-net header). Receive and transmit
    /// counters are updated here, as if the caller delivers what the verdict says; a
    /// delivery that fails is reported with [`Switch::count_tx_failure`].
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> Verdict {
        let len = frame.len() as u64;
        // a protected port's duplicate address detection: does another port hold the
        // address? (rare frames; looked at before the ingress port is borrowed)
        // (the frame's bytes first: for anything but a DAD probe that is one compare of
        // the EtherType, with no port lookup)
        let taken6 = dad_target(frame).is_some_and(|t| {
            self.port(ingress)
                .is_some_and(|p| p.config.security.is_some())
                && self.held6_elsewhere(ingress, &t)
        });
        let Some(port) = self.ports.get_mut(ingress.index()).and_then(Option::as_mut) else {
            self.unknown_port_drops += 1;
            return Verdict::Drop(DropReason::UnknownPort);
        };
        port.counters.rx_frames += 1;
        port.counters.rx_bytes += len;
        let (learning, ingress_isolated) = (port.config.learning, port.config.isolated);

        let Ok(eth) = wire::EthernetFrame::new_checked(frame) else {
            return Self::drop_on(port, DropReason::Runt);
        };
        let src = eth.src_addr();
        if src.is_multicast() {
            return Self::drop_on(port, DropReason::MulticastSource);
        }
        if src.is_zero() {
            return Self::drop_on(port, DropReason::ZeroSource);
        }
        if let Some(sec) = port.config.security.as_mut() {
            if let Some(reason) = sec.check(src, &eth, taken6) {
                return Self::drop_on(port, reason);
            }
        }
        let dst = eth.dst_addr();
        let vlan = eth.vlan_id().unwrap_or(VlanId::UNTAGGED);
        if learning {
            self.fdb.learn(now, vlan, src, ingress);
        }

        let egress = if dst.is_multicast() {
            None
        } else {
            self.fdb.lookup(now, vlan, dst)
        };
        match egress {
            Some(e) if e == ingress => self.drop_at(ingress, DropReason::LocalDestination),
            Some(e) => {
                let Some(out) = self.ports.get_mut(e.index()).and_then(Option::as_mut) else {
                    // An entry for a removed port cannot exist (remove_port flushes it);
                    // be safe and flood.
                    return self.flood(ingress, ingress_isolated, len);
                };
                if ingress_isolated && out.config.isolated {
                    return self.drop_at(ingress, DropReason::Isolated);
                }
                out.counters.tx_frames += 1;
                out.counters.tx_bytes += len;
                Verdict::Forward(e)
            }
            None => {
                if !self.take_flood_token(now, ingress) {
                    return self.drop_at(ingress, DropReason::FloodLimited);
                }
                self.flood(ingress, ingress_isolated, len)
            }
        }
    }

    /// Takes one flood token of `port`, topping the bucket up for the time passed.
    fn take_flood_token(&mut self, now: Instant, port: PortId) -> bool {
        let rate = self.config.flood_limit;
        if rate == 0 {
            return true;
        }
        let Some(p) = self.port_mut(port) else {
            return true;
        };
        let elapsed = now.saturating_duration_since(p.flood_refill);
        let add = u64::from(rate)
            .saturating_mul(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
            / 1_000_000;
        if add > 0 {
            let burst = flood_burst(rate);
            p.flood_tokens = u32::try_from(u64::from(p.flood_tokens) + add)
                .unwrap_or(u32::MAX)
                .min(burst);
            p.flood_refill = now;
        }
        if p.flood_tokens == 0 {
            return false;
        }
        p.flood_tokens -= 1;
        true
    }

    fn drop_on(port: &mut Port, reason: DropReason) -> Verdict {
        port.counters.drops.bump(reason);
        Verdict::Drop(reason)
    }

    fn drop_at(&mut self, id: PortId, reason: DropReason) -> Verdict {
        if let Some(p) = self.port_mut(id) {
            p.counters.drops.bump(reason);
        }
        Verdict::Drop(reason)
    }

    fn flood(&mut self, ingress: PortId, ingress_isolated: bool, len: u64) -> Verdict {
        for &id in &self.active {
            if id == ingress {
                if let Some(Some(p)) = self.ports.get_mut(id.index()) {
                    p.counters.flooded += 1;
                }
                continue;
            }
            if let Some(Some(p)) = self.ports.get_mut(id.index()) {
                if ingress_isolated && p.config.isolated {
                    continue;
                }
                p.counters.tx_frames += 1;
                p.counters.tx_bytes += len;
            }
        }
        Verdict::Flood
    }

    /// The ports a frame flooded from `ingress` goes to: every port but `ingress`, and
    /// no isolated port when `ingress` is isolated.
    pub fn flood_targets(&self, ingress: PortId) -> impl Iterator<Item = PortId> + '_ {
        let ingress_isolated = self.port(ingress).is_some_and(|p| p.config.isolated);
        self.active.iter().copied().filter(move |&id| {
            id != ingress && !(ingress_isolated && self.port(id).is_some_and(|p| p.config.isolated))
        })
    }

    /// Records that delivering a frame to `egress` failed (queue full, device gone).
    pub fn count_tx_failure(&mut self, egress: PortId, len: usize) {
        if let Some(p) = self.port_mut(egress) {
            p.counters.tx_frames = p.counters.tx_frames.saturating_sub(1);
            p.counters.tx_bytes = p.counters.tx_bytes.saturating_sub(len as u64);
            p.counters.drops.bump(DropReason::TxFailed);
        }
    }

    /// When [`Switch::handle_timeout`] next has work (freeing aged entries).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_sweep)
    }

    /// Does timed work due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.fdb.sweep(now);
            self.next_sweep = now + sweep_interval(self.config.aging_time);
        }
    }

    /// Forgets every learned station.
    pub fn flush_fdb(&mut self) {
        self.fdb.clear();
    }
}

/// How often aged entries are freed: a tenth of the aging time, between 1 s and 30 s.
fn sweep_interval(aging: Duration) -> Duration {
    (aging / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

#[cfg(test)]
mod tests;
