//! The router of route and open modes: guest packets leave unchanged (no NAT) through
//! the uplink interface, packets for the guest subnet come in from it. Sans-IO: frames
//! and a timestamp in, verdicts and generated frames out.
//!
//! The router rewrites frames in place (Ethernet addresses, TTL, IPv4 header
//! checksum) so the caller can send the very buffer it read, virtio-net header and all:
//! a guest's 64 KiB TSO frame leaves as one write and is segmented by the kernel on the
//! way out. Next hops are resolved by the router itself: ARP on the uplink (from the
//! uplink's own MAC and address) and on the segment (from the gateway's). A packet
//! whose next hop is not known yet waits (bounded) for the ARP answer; a next hop that
//! does not answer in [`ARP_TIMEOUT`] gets its waiting packets an ICMP host
//! unreachable. TTL expiry gets an ICMP time exceeded from the gateway's address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{ArpEthIpv4Packet, ArpOperation, EtherType, Icmpv4Type, PacketBuilder};

/// How long a next hop has to answer ARP before its waiting packets are refused.
pub const ARP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a resolved next hop is trusted before it is asked again.
pub const NEIGHBOUR_TTL: Duration = Duration::from_secs(300);
/// Packets waiting for ARP answers, all next hops together; more are dropped.
pub const MAX_WAITING: usize = 256;
/// Entries of each neighbour table; a full table starts over.
pub const MAX_NEIGHBOURS: usize = 4096;
/// Generated frames waiting to be sent; more are dropped.
const MAX_QUEUED: usize = 1024;

/// An IPv4 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address.
    pub addr: Ipv4Addr,
    /// Its length.
    pub len: u8,
}

impl Prefix {
    /// `addr`/`len`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        Self {
            addr,
            len: len.min(32),
        }
    }

    fn mask(self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0)
    }

    /// Whether `ip` lies inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

/// A route of the uplink side: a prefix reached directly (`via` none) or through a
/// router on the uplink's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkRoute {
    /// Destinations.
    pub dst: Prefix,
    /// The next hop, on the uplink's link; none for a directly connected prefix.
    pub via: Option<Ipv4Addr>,
}

/// What the router needs to know.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// The gateway's MAC and address, and the guest segment's prefix.
    pub gateway_mac: [u8; 6],
    /// The gateway's address.
    pub gateway_ip: Ipv4Addr,
    /// The guest segment.
    pub segment: Prefix,
    /// `<route>`s: prefixes behind a guest (the `via` address, inside the segment).
    pub behind_guests: Vec<(Prefix, Ipv4Addr)>,
    /// The uplink interface's MAC and address (the host's own, on that link).
    pub uplink_mac: [u8; 6],
    /// The uplink's address.
    pub uplink_ip: Ipv4Addr,
    /// Routes through the uplink (the host's routes on that interface).
    pub uplink_routes: Vec<UplinkRoute>,
    /// IPv6 routing, when the network and the uplink have IPv6 addresses.
    pub ipv6: Option<v6::RouterConfig6>,
}

/// Where a frame goes after [`Router::from_segment`] or [`Router::from_uplink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten; send it out of the uplink.
    Uplink,
    /// Rewritten; send it into the segment (as from the gateway port).
    Segment,
    /// Kept until its next hop answers ARP (it comes out of the poll queues).
    Waiting,
    /// Dropped (an ICMP error may be queued).
    Dropped,
    /// For the host itself (the uplink's own address): hand it to the host kernel
    /// unchanged (through the host port, if there is one).
    Host,
    /// Not the router's (not IPv4 routed through it): the caller handles it.
    NotMine,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Packets sent out of the uplink.
    pub out: u64,
    /// Packets sent into the segment.
    pub r#in: u64,
    /// TTL expired (time exceeded sent).
    pub ttl_expired: u64,
    /// No route (net unreachable sent).
    pub no_route: u64,
    /// Next hop did not answer ARP (host unreachable sent).
    pub unresolved: u64,
    /// Dropped because too many packets waited for ARP.
    pub waiting_full: u64,
    /// IPv6 packets larger than the uplink's MTU (packet too big sent).
    pub too_big: u64,
    /// Malformed packets.
    pub malformed: u64,
}

impl RouterStats {
    /// Every counter by name (`net-info`, metrics), in a fixed order.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("out", self.out),
            ("in", self.r#in),
            ("ttl_expired", self.ttl_expired),
            ("no_route", self.no_route),
            ("unresolved", self.unresolved),
            ("waiting_full", self.waiting_full),
            ("too_big", self.too_big),
            ("malformed", self.malformed),
        ]
        .into_iter()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Uplink,
    Segment,
}

struct Waiting {
    side: Side,
    hop: IpAddr,
    since: Instant,
    /// Who sent it (its frame is rewritten already), for an ICMP error.
    sender_mac: [u8; 6],
    /// The virtio-net header and frame, as the caller passed them.
    hdr: Vec<u8>,
    frame: Vec<u8>,
}

/// The router. See the module doc.
pub struct Router {
    cfg: RouterConfig,
    neighbours: HashMap<(Side, IpAddr), ([u8; 6], Instant)>,
    asked: HashMap<(Side, IpAddr), Instant>,
    waiting: VecDeque<Waiting>,
    to_uplink: VecDeque<(Vec<u8>, Vec<u8>)>,
    to_segment: VecDeque<(Vec<u8>, Vec<u8>)>,
    stats: RouterStats,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

const TTL_OFF: usize = 14 + 8;

impl Router {
    /// A router for `cfg`.
    pub fn new(cfg: RouterConfig) -> Self {
        Self {
            cfg,
            neighbours: HashMap::new(),
            asked: HashMap::new(),
            waiting: VecDeque::new(),
            to_uplink: VecDeque::new(),
            to_segment: VecDeque::new(),
            stats: RouterStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// A frame a guest sent to the gateway's MAC (`hdr`: its virtio-net header, kept
    /// with it if it has to wait). Routes IPv4 for other subnets; learns the sender.
    pub fn from_segment(&mut self, now: Instant, hdr: &[u8], frame: &mut [u8]) -> Verdict {
        if frame.get(12..14) == Some(&[0x86, 0xdd][..]) {
            return self.route_segment6(now, hdr, frame);
        }
        if frame.get(12..14) == Some(&[0x08, 0x06][..]) {
            self.arp(now, Side::Segment, frame);
            return Verdict::NotMine;
        }
        let Some((src, dst)) = ipv4_addrs(frame) else {
            return Verdict::NotMine;
        };
        if frame.get(0..6) != Some(&self.cfg.gateway_mac[..])
            || dst == self.cfg.gateway_ip
            || self.cfg.segment.contains(dst)
            || dst.is_multicast()
            || dst.is_broadcast()
        {
            return Verdict::NotMine;
        }
        if self.cfg.segment.contains(src) {
            if let Some(mac) = frame.get(6..12).and_then(|m| <[u8; 6]>::try_from(m).ok()) {
                self.learn(now, Side::Segment, src.into(), mac);
            }
        }
        if dst == self.cfg.uplink_ip {
            return Verdict::Host;
        }
        self.forward(now, hdr, frame, dst)
    }

    /// A frame read from the uplink: ARP answers to the router's questions, and IPv4
    /// for the guest segment (or a prefix behind a guest) addressed to the uplink's MAC.
    pub fn from_uplink(&mut self, now: Instant, hdr: &[u8], frame: &mut [u8]) -> Verdict {
        if frame.get(12..14) == Some(&[0x86, 0xdd][..]) {
            return self.route_uplink6(now, hdr, frame);
        }
        if frame.get(12..14) == Some(&[0x08, 0x06][..]) {
            self.arp(now, Side::Uplink, frame);
            return Verdict::NotMine;
        }
        let Some((_, dst)) = ipv4_addrs(frame) else {
            return Verdict::NotMine;
        };
        if frame.get(0..6) != Some(&self.cfg.uplink_mac[..])
            || dst == self.cfg.gateway_ip
            || !(self.cfg.segment.contains(dst)
                || self.cfg.behind_guests.iter().any(|(p, _)| p.contains(dst)))
        {
            return Verdict::NotMine;
        }
        self.forward(now, hdr, frame, dst)
    }

    fn forward(&mut self, now: Instant, hdr: &[u8], frame: &mut [u8], dst: Ipv4Addr) -> Verdict {
        let Some(&ttl) = frame.get(TTL_OFF) else {
            self.stats.malformed += 1;
            return Verdict::Dropped;
        };
        if ttl <= 1 {
            self.stats.ttl_expired += 1;
            self.icmp_error(
                frame,
                Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
            );
            return Verdict::Dropped;
        }
        let Some((side, hop)) = self.next_hop(dst) else {
            self.stats.no_route += 1;
            self.icmp_error(
                frame,
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Network),
            );
            return Verdict::Dropped;
        };
        let sender_mac = mac_at(frame, 6);
        decrement_ttl(frame);
        self.send_via(now, hdr, frame, side, hop.into(), sender_mac)
    }

    /// Sends `frame` (its TTL or hop limit taken care of) to next hop `hop` on `side`:
    /// at once when its MAC is known, else after it answers (ARP or neighbor
    /// discovery).
    fn send_via(
        &mut self,
        now: Instant,
        hdr: &[u8],
        frame: &mut [u8],
        side: Side,
        hop: IpAddr,
        sender_mac: [u8; 6],
    ) -> Verdict {
        let (src_mac, verdict) = match side {
            Side::Uplink => (self.cfg.uplink_mac, Verdict::Uplink),
            Side::Segment => (self.cfg.gateway_mac, Verdict::Segment),
        };
        frame[6..12].copy_from_slice(&src_mac);
        match self.neighbour(now, side, hop) {
            Some(mac) => {
                frame[0..6].copy_from_slice(&mac);
                match side {
                    Side::Uplink => self.stats.out += 1,
                    Side::Segment => self.stats.r#in += 1,
                }
                verdict
            }
            None => {
                if self.waiting.len() >= MAX_WAITING {
                    self.stats.waiting_full += 1;
                    return Verdict::Dropped;
                }
                self.waiting.push_back(Waiting {
                    side,
                    hop,
                    since: now,
                    sender_mac,
                    hdr: hdr.to_vec(),
                    frame: frame.to_vec(),
                });
                self.ask(now, side, hop);
                Verdict::Waiting
            }
        }
    }

    /// The side and next hop for `dst`: the segment (a guest, or the guest a `<route>`
    /// points at), else the longest uplink route.
    fn next_hop(&self, dst: Ipv4Addr) -> Option<(Side, Ipv4Addr)> {
        if self.cfg.segment.contains(dst) {
            return Some((Side::Segment, dst));
        }
        if let Some((_, via)) = self
            .cfg
            .behind_guests
            .iter()
            .filter(|(p, _)| p.contains(dst))
            .max_by_key(|(p, _)| p.len)
        {
            return Some((Side::Segment, *via));
        }
        self.cfg
            .uplink_routes
            .iter()
            .filter(|r| r.dst.contains(dst))
            .max_by_key(|r| r.dst.len)
            .map(|r| (Side::Uplink, r.via.unwrap_or(dst)))
    }

    fn neighbour(&self, now: Instant, side: Side, ip: IpAddr) -> Option<[u8; 6]> {
        self.neighbours
            .get(&(side, ip))
            .filter(|(_, t)| now.saturating_duration_since(*t) < NEIGHBOUR_TTL)
            .map(|(m, _)| *m)
    }

    fn learn(&mut self, now: Instant, side: Side, ip: IpAddr, mac: [u8; 6]) {
        if self.neighbours.len() >= MAX_NEIGHBOURS && !self.neighbours.contains_key(&(side, ip)) {
            self.neighbours.clear();
        }
        self.neighbours.insert((side, ip), (mac, now));
    }

    fn arp(&mut self, now: Instant, side: Side, frame: &[u8]) {
        let Some(arp) = frame
            .get(14..)
            .and_then(|b| etherparse::ArpPacket::from_slice(b).ok())
            .and_then(|p| p.try_eth_ipv4().ok())
        else {
            return;
        };
        let (me, in_side) = match side {
            Side::Uplink => (self.cfg.uplink_ip, true),
            Side::Segment => (
                self.cfg.gateway_ip,
                self.cfg.segment.contains(arp.sender_ipv4_addr()),
            ),
        };
        // answers to the router's questions, and any sender it is waiting for
        let sender = IpAddr::V4(arp.sender_ipv4_addr());
        let wanted = self.asked.contains_key(&(side, sender));
        if in_side && (arp.target_ipv4_addr() == me || wanted) && !sender.is_unspecified() {
            self.learn(now, side, sender, arp.sender_mac);
            if wanted {
                self.asked.remove(&(side, sender));
                self.release(now, side, sender);
            }
        }
    }

    /// Sends the packets that waited for `hop`.
    fn release(&mut self, now: Instant, side: Side, hop: IpAddr) {
        let Some(mac) = self.neighbour(now, side, hop) else {
            return;
        };
        let mut keep = VecDeque::with_capacity(self.waiting.len());
        for mut w in std::mem::take(&mut self.waiting) {
            if w.side == side && w.hop == hop {
                w.frame[0..6].copy_from_slice(&mac);
                match side {
                    Side::Uplink => {
                        self.stats.out += 1;
                        self.to_uplink.push_back((w.hdr, w.frame));
                    }
                    Side::Segment => {
                        self.stats.r#in += 1;
                        self.to_segment.push_back((w.hdr, w.frame));
                    }
                }
            } else {
                keep.push_back(w);
            }
        }
        self.waiting = keep;
    }

    fn ask(&mut self, now: Instant, side: Side, hop: IpAddr) {
        if self
            .asked
            .get(&(side, hop))
            .is_some_and(|t| now.saturating_duration_since(*t) < ARP_TIMEOUT / 3)
        {
            return;
        }
        self.asked.entry((side, hop)).or_insert(now);
        let hop = match hop {
            IpAddr::V4(h) => h,
            IpAddr::V6(h) => {
                self.solicit(side, h);
                return;
            }
        };
        let (mac, ip) = match side {
            Side::Uplink => (self.cfg.uplink_mac, self.cfg.uplink_ip),
            Side::Segment => (self.cfg.gateway_mac, self.cfg.gateway_ip),
        };
        let arp = ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: mac,
            sender_ipv4: ip.octets(),
            target_mac: [0; 6],
            target_ipv4: hop.octets(),
        }
        .to_arp_packet();
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&EtherType::ARP.0.to_be_bytes());
        f.extend_from_slice(&arp.to_bytes());
        self.queue(side, f);
    }

    /// Time passes: next hops that did not answer get their packets refused (ICMP host
    /// unreachable to each sender), and questions are repeated.
    pub fn poll(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut keep = VecDeque::with_capacity(self.waiting.len());
        for w in std::mem::take(&mut self.waiting) {
            if now.saturating_duration_since(w.since) >= ARP_TIMEOUT {
                expired.push(w);
            } else {
                keep.push_back(w);
            }
        }
        self.waiting = keep;
        for w in expired {
            self.stats.unresolved += 1;
            self.asked.remove(&(w.side, w.hop));
            if w.hop.is_ipv6() {
                self.icmp6_error_to(w.sender_mac, &w.frame, v6::ADDRESS_UNREACHABLE);
                continue;
            }
            self.icmp_error_to(
                w.sender_mac,
                &w.frame,
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
            );
        }
        let pending: Vec<(Side, IpAddr)> = self.waiting.iter().map(|w| (w.side, w.hop)).collect();
        for (side, hop) in pending {
            self.ask(now, side, hop);
        }
        self.asked
            .retain(|_, t| now.saturating_duration_since(*t) < ARP_TIMEOUT * 2);
    }

    /// When [`Router::poll`] has something to do next, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        self.waiting.front().map(|w| w.since + ARP_TIMEOUT / 3)
    }

    /// The next frame for the uplink: (virtio-net header, frame); the header is empty
    /// for frames the router made.
    pub fn poll_uplink(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.to_uplink.pop_front()
    }

    /// The next frame for the segment, as sent by the gateway port.
    pub fn poll_segment(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.to_segment.pop_front()
    }

    fn queue(&mut self, side: Side, frame: Vec<u8>) {
        let q = match side {
            Side::Uplink => &mut self.to_uplink,
            Side::Segment => &mut self.to_segment,
        };
        if q.len() < MAX_QUEUED {
            q.push_back((Vec::new(), frame));
        }
    }

    /// An ICMP error about `frame` (as received) back to its sender, from the gateway
    /// address, out of the side the sender is on. Never about ICMP errors.
    fn icmp_error(&mut self, frame: &[u8], ty: Icmpv4Type) {
        self.icmp_error_to(mac_at(frame, 6), frame, ty);
    }

    /// [`Router::icmp_error`] to `src_mac` (the sender of a frame rewritten since).
    fn icmp_error_to(&mut self, src_mac: [u8; 6], frame: &[u8], ty: Icmpv4Type) {
        let Some((src, _)) = ipv4_addrs(frame) else {
            return;
        };
        let Some(ihl) = frame.get(14).map(|b| usize::from(b & 0x0f) * 4) else {
            return;
        };
        // not about ICMP errors (types other than echo request/reply)
        if frame.get(14 + 9) == Some(&1) && frame.get(14 + ihl).is_some_and(|t| *t != 0 && *t != 8)
        {
            return;
        }
        let side = if self.cfg.segment.contains(src) {
            Side::Segment
        } else {
            Side::Uplink
        };
        let (from_mac, from_ip) = match side {
            Side::Segment => (self.cfg.gateway_mac, self.cfg.gateway_ip),
            Side::Uplink => (self.cfg.uplink_mac, self.cfg.gateway_ip),
        };
        let quote_len = (ihl + 8).min(frame.len().saturating_sub(14));
        let quote = &frame[14..14 + quote_len];
        let b = PacketBuilder::ethernet2(from_mac, src_mac)
            .ipv4(from_ip.octets(), src.octets(), 64)
            .icmpv4(ty);
        let mut out = Vec::with_capacity(b.size(quote.len()));
        if b.write(&mut out, quote).is_ok() {
            self.queue(side, out);
        }
    }
}

fn mac_at(frame: &[u8], at: usize) -> [u8; 6] {
    frame
        .get(at..at + 6)
        .and_then(|m| <[u8; 6]>::try_from(m).ok())
        .unwrap_or_default()
}

fn ipv4_addrs(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) || frame.get(14).map(|b| b >> 4) != Some(4) {
        return None;
    }
    let s: [u8; 4] = frame.get(26..30)?.try_into().ok()?;
    let d: [u8; 4] = frame.get(30..34)?.try_into().ok()?;
    Some((Ipv4Addr::from(s), Ipv4Addr::from(d)))
}

/// TTL minus one, with the header checksum updated incrementally (RFC 1624).
fn decrement_ttl(frame: &mut [u8]) {
    let Some(ttl) = frame.get_mut(TTL_OFF) else {
        return;
    };
    *ttl = ttl.saturating_sub(1);
    let Some(c) = frame.get_mut(14 + 10..14 + 12) else {
        return;
    };
    // the TTL is the high byte of its 16-bit word: the sum drops by 0x0100
    // HC' = ~(~HC + ~m + m') with m' = m - 0x100, so ~m + m' = 0xfeff
    let old = u16::from_be_bytes([c[0], c[1]]);
    let mut sum = u32::from(!old) + 0xfeff;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let new = !u16::try_from(sum).unwrap_or(u16::MAX);
    c.copy_from_slice(&new.to_be_bytes());
}

pub mod v6;

#[cfg(test)]
mod tests {
    use super::*;

    const GW_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const UP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
    const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

    fn router() -> Router {
        Router::new(RouterConfig {
            gateway_mac: GW_MAC,
            gateway_ip: Ipv4Addr::new(192, 168, 140, 1),
            segment: Prefix::new(Ipv4Addr::new(192, 168, 140, 0), 24),
            behind_guests: vec![(
                Prefix::new(Ipv4Addr::new(10, 50, 0, 0), 16),
                Ipv4Addr::new(192, 168, 140, 20),
            )],
            uplink_mac: UP_MAC,
            uplink_ip: Ipv4Addr::new(10, 97, 0, 1),
            uplink_routes: vec![
                UplinkRoute {
                    dst: Prefix::new(Ipv4Addr::new(10, 97, 0, 0), 24),
                    via: None,
                },
                UplinkRoute {
                    dst: Prefix::new(Ipv4Addr::UNSPECIFIED, 0),
                    via: Some(Ipv4Addr::new(10, 97, 0, 2)),
                },
            ],
            ipv6: None,
        })
    }

    fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src, dst, ttl)
            .udp(1000, 2000);
        let mut f = Vec::new();
        b.write(&mut f, b"hello").unwrap();
        f
    }

    fn arp_reply(mac: [u8; 6], ip: [u8; 4], to_mac: [u8; 6], to_ip: [u8; 4]) -> Vec<u8> {
        let a = ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: mac,
            sender_ipv4: ip,
            target_mac: to_mac,
            target_ipv4: to_ip,
        }
        .to_arp_packet();
        let mut f = Vec::new();
        f.extend_from_slice(&to_mac);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&a.to_bytes());
        f
    }

    fn checksum_ok(f: &[u8]) -> bool {
        let h = etherparse::Ipv4HeaderSlice::from_slice(&f[14..])
            .unwrap()
            .to_header();
        h.calc_header_checksum() == h.header_checksum
    }

    #[test]
    fn a_guest_packet_waits_for_arp_then_leaves_rewritten_with_ttl_minus_one() {
        let mut r = router();
        let t = Instant::now();
        let mut f = udp(GUEST_MAC, GW_MAC, [192, 168, 140, 10], [10, 200, 0, 5], 64);
        assert_eq!(r.from_segment(t, &[0; 12], &mut f), Verdict::Waiting);
        // an ARP request for the default router, from the uplink's own address
        let (_, ask) = r.poll_uplink().expect("ARP request");
        assert_eq!(&ask[0..6], &[0xff; 6]);
        assert_eq!(&ask[6..12], &UP_MAC);
        assert_eq!(&ask[38..42], &[10, 97, 0, 2]);
        let mut reply = arp_reply(LAN_MAC, [10, 97, 0, 2], UP_MAC, [10, 97, 0, 1]);
        assert_eq!(r.from_uplink(t, &[], &mut reply), Verdict::NotMine);
        let (hdr, out) = r.poll_uplink().expect("the waiting packet");
        assert_eq!(hdr, [0; 12]);
        assert_eq!(&out[0..6], &LAN_MAC);
        assert_eq!(&out[6..12], &UP_MAC);
        assert_eq!(out[TTL_OFF], 63);
        assert!(checksum_ok(&out));
        // the next one goes at once, and the sender was learned for the way back
        let mut f2 = udp(GUEST_MAC, GW_MAC, [192, 168, 140, 10], [10, 200, 0, 5], 64);
        assert_eq!(r.from_segment(t, &[], &mut f2), Verdict::Uplink);
        let mut back = udp(LAN_MAC, UP_MAC, [10, 200, 0, 5], [192, 168, 140, 10], 60);
        assert_eq!(r.from_uplink(t, &[], &mut back), Verdict::Segment);
        assert_eq!(&back[0..6], &GUEST_MAC);
        assert_eq!(&back[6..12], &GW_MAC);
        assert_eq!(back[TTL_OFF], 59);
        assert!(checksum_ok(&back));
    }

    #[test]
    fn ttl_expiry_gets_time_exceeded_from_the_gateway() {
        let mut r = router();
        let t = Instant::now();
        let mut f = udp(GUEST_MAC, GW_MAC, [192, 168, 140, 10], [10, 200, 0, 5], 1);
        assert_eq!(r.from_segment(t, &[], &mut f), Verdict::Dropped);
        let (_, icmp) = r.poll_segment().expect("time exceeded");
        let p = etherparse::SlicedPacket::from_ethernet(&icmp).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!()
        };
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(192, 168, 140, 1));
        assert_eq!(&icmp[0..6], &GUEST_MAC);
        let Some(etherparse::TransportSlice::Icmpv4(i)) = p.transport else {
            panic!()
        };
        assert!(matches!(i.icmp_type(), Icmpv4Type::TimeExceeded(_)));
    }

    #[test]
    fn a_silent_next_hop_gets_host_unreachable_and_other_traffic_is_not_mine() {
        let mut r = router();
        let t = Instant::now();
        // a prefix behind a guest that never answers ARP
        let mut f = udp(LAN_MAC, UP_MAC, [10, 200, 0, 5], [10, 50, 1, 1], 64);
        assert_eq!(r.from_uplink(t, &[], &mut f), Verdict::Waiting);
        let (_, ask) = r.poll_segment().expect("ARP on the segment");
        assert_eq!(&ask[38..42], &[192, 168, 140, 20]);
        r.poll(t + ARP_TIMEOUT);
        let (_, icmp) = r.poll_uplink().expect("host unreachable");
        assert_eq!(&icmp[0..6], &LAN_MAC);
        assert_eq!(icmp[14 + 20], 3, "destination unreachable");
        assert_eq!(icmp[14 + 21], 1, "host");
        assert_eq!(r.stats().unresolved, 1);
        // traffic for the host itself, or for the gateway's address, is not the router's
        let mut own = udp(LAN_MAC, UP_MAC, [10, 200, 0, 5], [10, 97, 0, 1], 64);
        assert_eq!(r.from_uplink(t, &[], &mut own), Verdict::NotMine);
        let mut gw = udp(
            GUEST_MAC,
            GW_MAC,
            [192, 168, 140, 10],
            [192, 168, 140, 1],
            64,
        );
        assert_eq!(r.from_segment(t, &[], &mut gw), Verdict::NotMine);
    }
}
