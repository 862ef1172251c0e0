//! IPv6 for the router of route and open modes: guest IPv6 leaves unchanged through
//! the uplink, IPv6 for the guests' prefixes (and `<route family='ipv6'>` prefixes
//! behind a guest) comes in from it. Next hops are found by neighbor discovery on each
//! side (a solicitation from the uplink's address or the gateway's link-local one); the
//! hop limit is decremented (IPv6 has no header checksum), and errors are ICMPv6 from
//! the gateway's address: time exceeded (hop limit 1), no route, address unreachable (a
//! next hop that never answers), packet too big (a packet larger than the uplink's MTU).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use etherparse::icmpv6::{DestUnreachableCode, TimeExceededCode};
use etherparse::{Icmpv6Type, PacketBuilder};

use super::{mac_at, Router, Side, Verdict};

/// An IPv6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix6 {
    /// An address inside it.
    pub addr: Ipv6Addr,
    /// Its length.
    pub len: u8,
}

impl Prefix6 {
    /// `addr`/`len`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Self {
        Self {
            addr,
            len: len.min(128),
        }
    }

    /// Whether `ip` lies inside.
    pub fn contains(self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.len))
            .unwrap_or(0);
        u128::from(ip) & mask == u128::from(self.addr) & mask
    }
}

/// What the router needs to route IPv6.
#[derive(Clone, Debug)]
pub struct RouterConfig6 {
    /// The gateway's (first) IPv6 address: ICMPv6 errors come from it.
    pub gateway_ip: Ipv6Addr,
    /// The gateway's link-local address: solicitations on the segment come from it.
    pub gateway_ll: Ipv6Addr,
    /// The guest segment's prefixes (the network's IPv6 `<ip>`s).
    pub segment: Vec<Prefix6>,
    /// `<route family='ipv6'>`s: prefixes behind a guest (the `via` address).
    pub behind_guests: Vec<(Prefix6, Ipv6Addr)>,
    /// The uplink's own IPv6 address (the host's, on that link): solicitations on the
    /// uplink come from it, and packets to it are the host's.
    pub uplink_ip: Ipv6Addr,
    /// Routes through the uplink: a prefix, and its next hop on the uplink's link
    /// (`None`: directly connected).
    pub uplink_routes: Vec<(Prefix6, Option<Ipv6Addr>)>,
    /// The uplink's IP MTU: a larger packet gets a packet too big.
    pub uplink_mtu: usize,
}

/// ICMPv6 address unreachable (a next hop that never answered).
pub(super) const ADDRESS_UNREACHABLE: Icmpv6Type =
    Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Address);

/// Source and destination of an IPv6 frame.
fn addrs6(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if frame.get(12..14) != Some(&[0x86, 0xdd][..]) || frame.get(14).map(|b| b >> 4) != Some(6) {
        return None;
    }
    let s: [u8; 16] = frame.get(22..38)?.try_into().ok()?;
    let d: [u8; 16] = frame.get(38..54)?.try_into().ok()?;
    Some((Ipv6Addr::from(s), Ipv6Addr::from(d)))
}

/// The target of an ICMPv6 neighbor advertisement (no extension headers), if `frame` is
/// one.
fn advert_target(frame: &[u8]) -> Option<Ipv6Addr> {
    if frame.get(20) != Some(&58) || frame.get(54) != Some(&136) || frame.get(21) != Some(&255) {
        return None;
    }
    let t: [u8; 16] = frame.get(62..78)?.try_into().ok()?;
    Some(Ipv6Addr::from(t))
}

impl Router {
    fn cfg6(&self) -> Option<&RouterConfig6> {
        self.cfg.ipv6.as_ref()
    }

    fn on_segment6(&self, ip: Ipv6Addr) -> bool {
        self.cfg6()
            .is_some_and(|c| c.segment.iter().any(|p| p.contains(ip)))
    }

    /// A guest's IPv6 frame to the gateway's MAC: routed when it is for a destination
    /// off the segment; neighbor advertisements answer the router's solicitations.
    pub(super) fn route_segment6(&mut self, now: Instant, hdr: &[u8], frame: &mut [u8]) -> Verdict {
        let Some(cfg) = self.cfg6() else {
            return Verdict::NotMine;
        };
        let Some((src, dst)) = addrs6(frame) else {
            return Verdict::NotMine;
        };
        if let Some(target) = advert_target(frame) {
            self.advert(now, Side::Segment, target, frame);
            return Verdict::NotMine;
        }
        let uplink_ip = cfg.uplink_ip;
        if frame.get(0..6) != Some(&self.cfg.gateway_mac[..])
            || dst.is_multicast()
            || dst.is_unicast_link_local()
            || dst.is_unspecified()
            || self.on_segment6(dst)
        {
            return Verdict::NotMine;
        }
        if self.on_segment6(src) {
            self.learn(now, Side::Segment, IpAddr::V6(src), mac_at(frame, 6));
        }
        if dst == uplink_ip {
            return Verdict::Host;
        }
        self.forward6(now, hdr, frame, dst)
    }

    /// An IPv6 frame from the uplink: neighbor advertisements for the router, and
    /// packets for the guests' prefixes addressed to the uplink's MAC.
    pub(super) fn route_uplink6(&mut self, now: Instant, hdr: &[u8], frame: &mut [u8]) -> Verdict {
        let Some(cfg) = self.cfg6() else {
            return Verdict::NotMine;
        };
        let Some((_, dst)) = addrs6(frame) else {
            return Verdict::NotMine;
        };
        if let Some(target) = advert_target(frame) {
            self.advert(now, Side::Uplink, target, frame);
            return Verdict::NotMine;
        }
        let behind = cfg.behind_guests.iter().any(|(p, _)| p.contains(dst));
        if frame.get(0..6) != Some(&self.cfg.uplink_mac[..])
            || !(self.on_segment6(dst) || behind)
            || cfg.segment.iter().any(|p| p.addr == dst)
        {
            return Verdict::NotMine;
        }
        self.forward6(now, hdr, frame, dst)
    }

    /// Takes a neighbor advertisement's answer when the router asked for `target`.
    fn advert(&mut self, now: Instant, side: Side, target: Ipv6Addr, frame: &[u8]) {
        let key = IpAddr::V6(target);
        if !self.asked.contains_key(&(side, key)) {
            return;
        }
        // the target link-layer address option (type 2), else the frame's sender
        let mac = frame
            .get(78..)
            .and_then(|opts| {
                let mut o = opts;
                while o.len() >= 8 {
                    let len = usize::from(o[1]) * 8;
                    if len == 0 {
                        return None;
                    }
                    if o[0] == 2 && len >= 8 {
                        return o.get(2..8).and_then(|m| <[u8; 6]>::try_from(m).ok());
                    }
                    o = o.get(len..)?;
                }
                None
            })
            .unwrap_or_else(|| mac_at(frame, 6));
        self.learn(now, side, key, mac);
        self.asked.remove(&(side, key));
        self.release(now, side, key);
    }

    fn forward6(&mut self, now: Instant, hdr: &[u8], frame: &mut [u8], dst: Ipv6Addr) -> Verdict {
        let Some(&hop_limit) = frame.get(21) else {
            self.stats.malformed += 1;
            return Verdict::Dropped;
        };
        if hop_limit <= 1 {
            self.stats.ttl_expired += 1;
            let ty = Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded);
            self.icmp6_error_to(mac_at(frame, 6), frame, ty);
            return Verdict::Dropped;
        }
        let Some((side, hop)) = self.next_hop6(dst) else {
            self.stats.no_route += 1;
            let ty = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute);
            self.icmp6_error_to(mac_at(frame, 6), frame, ty);
            return Verdict::Dropped;
        };
        // a packet the uplink cannot carry whole (a TSO super-frame is cut to its MSS
        // by the kernel on the way out: not this)
        let mtu = self.cfg6().map_or(usize::MAX, |c| c.uplink_mtu);
        let gso = hdr.get(1).is_some_and(|g| *g != 0);
        if side == Side::Uplink && !gso && frame.len().saturating_sub(14) > mtu {
            self.stats.too_big += 1;
            let ty = Icmpv6Type::PacketTooBig {
                mtu: u32::try_from(mtu).unwrap_or(1280),
            };
            self.icmp6_error_to(mac_at(frame, 6), frame, ty);
            return Verdict::Dropped;
        }
        let sender_mac = mac_at(frame, 6);
        frame[21] = hop_limit - 1;
        self.send_via(now, hdr, frame, side, IpAddr::V6(hop), sender_mac)
    }

    /// The side and next hop for `dst`: the segment (a guest, or the guest a
    /// `<route family='ipv6'>` points at), else the longest uplink route.
    fn next_hop6(&self, dst: Ipv6Addr) -> Option<(Side, Ipv6Addr)> {
        let cfg = self.cfg6()?;
        if self.on_segment6(dst) {
            return Some((Side::Segment, dst));
        }
        if let Some((_, via)) = cfg
            .behind_guests
            .iter()
            .filter(|(p, _)| p.contains(dst))
            .max_by_key(|(p, _)| p.len)
        {
            return Some((Side::Segment, *via));
        }
        cfg.uplink_routes
            .iter()
            .filter(|(p, _)| p.contains(dst))
            .max_by_key(|(p, _)| p.len)
            .map(|(_, via)| (Side::Uplink, via.unwrap_or(dst)))
    }

    /// A neighbor solicitation for `hop` on `side`, to its solicited-node group, with
    /// the router's link-layer address.
    pub(super) fn solicit(&mut self, side: Side, hop: Ipv6Addr) {
        let Some(cfg) = self.cfg6() else {
            return;
        };
        let (mac, from) = match side {
            Side::Uplink => (self.cfg.uplink_mac, cfg.uplink_ip),
            Side::Segment => (self.cfg.gateway_mac, cfg.gateway_ll),
        };
        let o = hop.octets();
        let group = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(o[13]),
            u16::from_be_bytes([o[14], o[15]]),
        );
        let g = group.octets();
        let mut body = Vec::with_capacity(24);
        body.extend_from_slice(&o);
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&mac);
        let b = PacketBuilder::ethernet2(mac, [0x33, 0x33, g[12], g[13], g[14], g[15]])
            .ipv6(from.octets(), g, 255)
            .icmpv6(Icmpv6Type::Unknown {
                type_u8: 135,
                code_u8: 0,
                bytes5to8: [0; 4],
            });
        let mut f = Vec::with_capacity(b.size(body.len()));
        if b.write(&mut f, &body).is_ok() {
            self.queue(side, f);
        }
    }

    /// An ICMPv6 error about `frame` (as received, or rewritten since: its sender was
    /// `src_mac`) back to its sender, from the gateway's address, out of the side the
    /// sender is on. Never about ICMPv6 errors.
    pub(super) fn icmp6_error_to(&mut self, src_mac: [u8; 6], frame: &[u8], ty: Icmpv6Type) {
        let Some(cfg) = self.cfg6() else {
            return;
        };
        let Some((src, _)) = addrs6(frame) else {
            return;
        };
        if src.is_unspecified() || src.is_multicast() {
            return;
        }
        // not about ICMPv6 errors (types below 128)
        if frame.get(20) == Some(&58) && frame.get(54).is_some_and(|t| *t < 128) {
            return;
        }
        let from_ip = cfg.gateway_ip;
        let side = if self.on_segment6(src) || src.is_unicast_link_local() {
            Side::Segment
        } else {
            Side::Uplink
        };
        let from_mac = match side {
            Side::Segment => self.cfg.gateway_mac,
            Side::Uplink => self.cfg.uplink_mac,
        };
        // as much of the packet as fits in the minimum MTU (RFC 4443 §2.4)
        let quote = frame.get(14..).unwrap_or_default();
        let quote = quote.get(..quote.len().min(1280 - 48)).unwrap_or(quote);
        let b = PacketBuilder::ethernet2(from_mac, src_mac)
            .ipv6(from_ip.octets(), src.octets(), 64)
            .icmpv6(ty);
        let mut out = Vec::with_capacity(b.size(quote.len()));
        if b.write(&mut out, quote).is_ok() {
            self.queue(side, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::super::{RouterConfig, UplinkRoute, Verdict, ARP_TIMEOUT};
    use super::*;
    use crate::route::Prefix;

    const GW_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const UP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
    const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn router() -> Router {
        Router::new(RouterConfig {
            gateway_mac: GW_MAC,
            gateway_ip: std::net::Ipv4Addr::new(192, 168, 140, 1),
            segment: Prefix::new(std::net::Ipv4Addr::new(192, 168, 140, 0), 24),
            behind_guests: Vec::new(),
            uplink_mac: UP_MAC,
            uplink_ip: std::net::Ipv4Addr::new(10, 97, 0, 1),
            uplink_routes: vec![UplinkRoute {
                dst: Prefix::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
                via: None,
            }],
            ipv6: Some(RouterConfig6 {
                gateway_ip: ip("fd00:140::1"),
                gateway_ll: ip("fe80::5054:ff:fe00:1"),
                segment: vec![Prefix6::new(ip("fd00:140::1"), 64)],
                behind_guests: vec![(Prefix6::new(ip("fd00:150::"), 48), ip("fd00:140::20"))],
                uplink_ip: ip("2001:db8:97::1"),
                uplink_routes: vec![
                    (Prefix6::new(ip("2001:db8:97::"), 64), None),
                    (Prefix6::new(ip("::"), 0), Some(ip("2001:db8:97::2"))),
                ],
                uplink_mtu: 1280,
            }),
        })
    }

    fn udp6(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: &str,
        dst: &str,
        hop: u8,
        len: usize,
    ) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(ip(src).octets(), ip(dst).octets(), hop)
            .udp(5000, 53);
        let mut f = Vec::new();
        b.write(&mut f, &vec![0u8; len]).unwrap();
        f
    }

    /// A neighbor advertisement from `mac`/`addr` to `to` (solicited, with its TLLAO).
    fn advert(mac: [u8; 6], addr: &str, to_mac: [u8; 6], to: &str) -> Vec<u8> {
        let mut body = ip(addr).octets().to_vec();
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&mac);
        let b = PacketBuilder::ethernet2(mac, to_mac)
            .ipv6(ip(addr).octets(), ip(to).octets(), 255)
            .icmpv6(Icmpv6Type::Unknown {
                type_u8: 136,
                code_u8: 0,
                bytes5to8: [0x60, 0, 0, 0],
            });
        let mut f = Vec::new();
        b.write(&mut f, &body).unwrap();
        f
    }

    fn icmp6_type(f: &[u8]) -> Option<(Ipv6Addr, Icmpv6Type)> {
        let p = SlicedPacket::from_ethernet(f).ok()?;
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            return None;
        };
        let src = ip.header().source_addr();
        match p.transport? {
            TransportSlice::Icmpv6(i) => Some((src, i.icmp_type())),
            _ => None,
        }
    }

    #[test]
    fn a_guest_packet_waits_for_the_next_hops_advert_then_leaves_with_hop_limit_minus_one() {
        let mut r = router();
        let t = Instant::now();
        let mut f = udp6(GUEST_MAC, GW_MAC, "fd00:140::10", "2001:db8:5::1", 64, 10);
        assert_eq!(r.from_segment(t, &[], &mut f), Verdict::Waiting);
        // a solicitation for the default router from the uplink's address
        let (_, ns) = r.poll_uplink().expect("a solicitation");
        assert_eq!(&ns[0..2], &[0x33, 0x33]);
        assert_eq!(icmp6_type(&ns).map(|(s, _)| s), Some(ip("2001:db8:97::1")));
        let mut na = advert(LAN_MAC, "2001:db8:97::2", UP_MAC, "2001:db8:97::1");
        assert_eq!(r.from_uplink(t, &[], &mut na), Verdict::NotMine);
        let (_, out) = r.poll_uplink().expect("the packet");
        assert_eq!(&out[0..6], &LAN_MAC);
        assert_eq!(&out[6..12], &UP_MAC);
        assert_eq!(out[21], 63);
        // the reverse: a LAN packet for a guest, resolved on the segment
        let mut back = udp6(LAN_MAC, UP_MAC, "2001:db8:5::1", "fd00:140::10", 64, 10);
        // the guest's address was learned from its own packet
        assert_eq!(r.from_uplink(t, &[], &mut back), Verdict::Segment);
        assert_eq!(&back[0..6], &GUEST_MAC);
        assert_eq!(&back[6..12], &GW_MAC);
        // a prefix behind a guest goes to that guest
        let mut behind = udp6(LAN_MAC, UP_MAC, "2001:db8:5::1", "fd00:150::7", 64, 10);
        assert_eq!(r.from_uplink(t, &[], &mut behind), Verdict::Waiting);
        let (_, ns) = r.poll_segment().expect("a solicitation on the segment");
        assert_eq!(
            icmp6_type(&ns).map(|(s, _)| s),
            Some(ip("fe80::5054:ff:fe00:1"))
        );
        assert_eq!(&ns[62..78], &ip("fd00:140::20").octets());
    }

    #[test]
    fn hop_limit_one_too_big_and_silent_next_hops_get_icmpv6_errors_from_the_gateway() {
        let mut r = router();
        let t = Instant::now();
        let mut f = udp6(GUEST_MAC, GW_MAC, "fd00:140::10", "2001:db8:5::1", 1, 10);
        assert_eq!(r.from_segment(t, &[], &mut f), Verdict::Dropped);
        let (_, e) = r.poll_segment().expect("time exceeded");
        assert_eq!(
            icmp6_type(&e),
            Some((
                ip("fd00:140::1"),
                Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded)
            ))
        );
        let mut big = udp6(GUEST_MAC, GW_MAC, "fd00:140::10", "2001:db8:5::1", 64, 1400);
        assert_eq!(r.from_segment(t, &[], &mut big), Verdict::Dropped);
        let (_, e) = r.poll_segment().expect("packet too big");
        assert_eq!(
            icmp6_type(&e).map(|(_, ty)| ty),
            Some(Icmpv6Type::PacketTooBig { mtu: 1280 })
        );
        // on-link, nobody answers: address unreachable after the timeout
        let mut f = udp6(GUEST_MAC, GW_MAC, "fd00:140::10", "2001:db8:97::99", 64, 10);
        assert_eq!(r.from_segment(t, &[], &mut f), Verdict::Waiting);
        r.poll(t + ARP_TIMEOUT + Duration::from_millis(1));
        let errors: Vec<_> = std::iter::from_fn(|| r.poll_segment())
            .filter_map(|(_, f)| icmp6_type(&f))
            .collect();
        assert!(
            errors.contains(&(ip("fd00:140::1"), ADDRESS_UNREACHABLE)),
            "{errors:?}"
        );
        assert_eq!(r.stats().too_big, 1);
        assert_eq!(r.stats().unresolved, 1);
        // on-segment, link-local and multicast destinations are not the router's
        for dst in ["fd00:140::20", "fe80::1", "ff02::1"] {
            let mut f = udp6(GUEST_MAC, GW_MAC, "fd00:140::10", dst, 64, 10);
            assert_eq!(r.from_segment(t, &[], &mut f), Verdict::NotMine, "{dst}");
        }
    }
}
