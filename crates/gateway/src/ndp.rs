//! IPv6 on the segment: the gateway's addresses (a link-local one made from its MAC, and
//! each `<ip family='ipv6'>`), neighbor discovery for them (RFC 4861), router
//! advertisements (answers to solicitations and unsolicited ones, with the prefixes, the
//! MTU, and the DNS server and search domain of RFC 8106), ICMPv6 echo, and "no route"
//! for what guests send it to route (nothing off the segment is reached over IPv6 yet).
//!
//! As dnsmasq's `enable-ra` with `ra-only` ranges, the prefixes are for SLAAC (autonomous
//! and on-link). Sans IO: [`Ndp::handle`] takes an IPv6 packet and returns the reply
//! frame, if any; [`Ndp::handle_timeout`] returns the unsolicited advertisements.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use etherparse::icmpv6::{
    DestUnreachableCode, NeighborAdvertisementHeader, RouterAdvertisementHeader,
};
use etherparse::{IcmpEchoHeader, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv6Slice, PacketBuilder};
use vnet_switch::MacAddr;

/// One `<ip family='ipv6'>` of the network: the gateway's address and its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Prefix {
    /// The gateway's address in the prefix.
    pub addr: Ipv6Addr,
    /// The prefix length (64 for SLAAC to work).
    pub len: u8,
    /// Advertised for SLAAC (the A flag): when the prefix has no DHCPv6 range, as
    /// dnsmasq's `ra-only`; with one, addresses come from DHCPv6 ("managed").
    pub autonomous: bool,
}

/// The IPv6 side of the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ipv6Config {
    /// The gateway's addresses and the prefixes advertised, in `<ip>` order.
    pub prefixes: Vec<Ipv6Prefix>,
    /// The router lifetime advertised, seconds: 0 says "not a default router" (an
    /// isolated network has no way out).
    pub router_lifetime: u16,
    /// Advertise the gateway as the DNS server (RDNSS).
    pub dns: bool,
    /// The search domain advertised (DNSSL), the network's `<domain>`.
    pub domain: Option<String>,
    /// A DHCPv6 server hands out addresses: the M and O flags are set.
    pub managed: bool,
}

/// Counters of the gateway's IPv6 side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NdpStats {
    /// Router solicitations answered.
    pub router_solicitations: u64,
    /// Router advertisements sent (answers and unsolicited ones).
    pub router_adverts: u64,
    /// Neighbor solicitations for the gateway's addresses answered.
    pub neighbor_solicitations: u64,
    /// ICMPv6 echo replies sent.
    pub echo_replies: u64,
    /// Destination unreachable (no route) sent for packets the gateway cannot route.
    pub unreachable: u64,
    /// Destination unreachable not sent: over the rate limit.
    pub unreachable_limited: u64,
    /// IPv6 packets dropped as malformed: truncated, a bad checksum, neighbor discovery
    /// with a hop limit other than 255 or a code other than 0, bad option lengths.
    pub malformed: u64,
    /// IPv6 packets for no service of the gateway (neighbor advertisements, MLD,
    /// solicitations for other addresses).
    pub ignored: u64,
}

impl NdpStats {
    /// Every counter by name, for `net-info` and metrics.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("router_solicitations", self.router_solicitations),
            ("router_adverts", self.router_adverts),
            ("neighbor_solicitations", self.neighbor_solicitations),
            ("echo_replies", self.echo_replies),
            ("unreachable", self.unreachable),
            ("unreachable_limited", self.unreachable_limited),
            ("malformed", self.malformed),
            ("ignored", self.ignored),
        ]
        .into_iter()
    }
}

/// The interval of the first unsolicited advertisements (RFC 4861
/// MAX_INITIAL_RTR_ADVERT_INTERVAL), and how many there are.
const INITIAL_INTERVAL: Duration = Duration::from_secs(16);
const INITIAL_ADVERTS: u8 = 3;
/// The interval of the unsolicited advertisements after those (within RFC 4861's
/// MinRtrAdvInterval..MaxRtrAdvInterval defaults, 200..600 s).
const INTERVAL: Duration = Duration::from_secs(300);
/// Prefix lifetimes advertised (valid and preferred), seconds: dnsmasq's default lease
/// time; the unsolicited advertisements renew them long before they end.
const PREFIX_LIFETIME: u32 = 3600;
/// RDNSS and DNSSL lifetime, seconds (RFC 8106 §5.1: at least 3 × MaxRtrAdvInterval).
const DNS_LIFETIME: u32 = 1800;
/// The shortest time between two multicast advertisements answering solicitations
/// (RFC 4861 §6.2.6 MIN_DELAY_BETWEEN_RAS): a guest soliciting from `::` in a loop does
/// not make the gateway flood the segment.
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// ICMPv6 errors sent per second at most (RFC 4443 §2.4 (f)).
const ERRORS_PER_SEC: u32 = 10;
/// What of the offending packet an error carries: the IPv6 minimum MTU less the
/// error's own headers (RFC 4443 §3.1).
const ERROR_QUOTE: usize = 1280 - 40 - 8;

/// The all-nodes group, ff02::1.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The link-local address of `mac` (modified EUI-64, RFC 4291 appendix A).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    mac.ipv6_link_local()
}

/// The Ethernet address of IPv6 multicast group `group` (RFC 2464 §7).
fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The solicited-node group of `addr` (RFC 4291 §2.7.1).
fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The options of a neighbor discovery message (RFC 4861 §4.6): each at least 8 bytes
/// and a whole number of 8 bytes. `None` when one is truncated or has length 0.
fn options(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (&kind, &len) = (b.first()?, b.get(1)?);
        let n = usize::from(len) * 8;
        if n == 0 {
            return None;
        }
        out.push((kind, b.get(2..n)?));
        b = b.get(n..)?;
    }
    Some(out)
}

/// The gateway's IPv6 side. See the module doc.
#[derive(Debug)]
pub struct Ndp {
    mac: MacAddr,
    link_local: Ipv6Addr,
    cfg: Ipv6Config,
    mtu: u16,
    /// When the next unsolicited advertisement is due (`None`: at once).
    next_advert: Option<Instant>,
    /// Unsolicited advertisements sent.
    adverts_sent: u8,
    /// The current second of the error rate limit, and errors sent in it.
    errors: (Option<Instant>, u32),
    /// When the last multicast advertisement answering a solicitation left.
    last_multicast: Option<Instant>,
    stats: NdpStats,
}

impl Ndp {
    /// The IPv6 side of a gateway with MAC `mac` on a segment of IP MTU `mtu`.
    pub fn new(mac: MacAddr, cfg: Ipv6Config, mtu: u16) -> Self {
        Self {
            mac,
            link_local: link_local(mac),
            cfg,
            mtu,
            next_advert: None,
            adverts_sent: 0,
            errors: (None, 0),
            last_multicast: None,
            stats: NdpStats::default(),
        }
    }

    /// The gateway's link-local address.
    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    /// What it advertises.
    pub fn config(&self) -> &Ipv6Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> NdpStats {
        self.stats
    }

    /// Whether `addr` is one of the gateway's addresses.
    pub fn is_ours(&self, addr: Ipv6Addr) -> bool {
        addr == self.link_local || self.cfg.prefixes.iter().any(|p| p.addr == addr)
    }

    /// Whether `addr` is on the segment: link-local, or in an advertised prefix.
    fn on_link(&self, addr: Ipv6Addr) -> bool {
        let (a, mask) = (u128::from(addr), |len: u8| {
            u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0)
        });
        addr.is_unicast_link_local()
            || self
                .cfg
                .prefixes
                .iter()
                .any(|p| a & mask(p.len) == u128::from(p.addr) & mask(p.len))
    }

    /// The address the gateway's DNS server is advertised at: its first global one,
    /// else the link-local.
    pub fn dns_addr(&self) -> Ipv6Addr {
        self.cfg
            .prefixes
            .first()
            .map_or(self.link_local, |p| p.addr)
    }

    /// When [`Ndp::handle_timeout`] is next due.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        self.next_advert.unwrap_or(now)
    }

    /// The unsolicited advertisement, when it is due (three at 16 s intervals from the
    /// start, then one every 5 minutes).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_advert.is_some_and(|t| t > now) {
            return None;
        }
        self.adverts_sent = self.adverts_sent.saturating_add(1);
        let wait = if self.adverts_sent < INITIAL_ADVERTS {
            INITIAL_INTERVAL
        } else {
            INTERVAL
        };
        self.next_advert = now.checked_add(wait);
        self.router_advert(multicast_mac(ALL_NODES), ALL_NODES)
    }

    /// An IPv6 packet (`packet`, the Ethernet payload) from `src_mac` to `dst_mac` that
    /// reached the gateway port; the reply frame, if it answers.
    pub fn handle(
        &mut self,
        now: Instant,
        src_mac: MacAddr,
        dst_mac: MacAddr,
        packet: &[u8],
    ) -> Option<Vec<u8>> {
        if src_mac == self.mac {
            // the host port's kernel shares the gateway's identity (its duplicate
            // address detection for the shared addresses must not fail), or a spoofer
            self.stats.ignored += 1;
            return None;
        }
        let Ok(ip) = Ipv6Slice::from_slice(packet) else {
            self.stats.malformed += 1;
            return None;
        };
        let h = ip.header();
        let (src, dst) = (h.source_addr(), h.destination_addr());
        if ip.payload().ip_number != IpNumber::IPV6_ICMP {
            return self.not_icmp(now, (src_mac, dst_mac), &ip, packet);
        }
        let body = ip.payload().payload;
        let icmp = match Icmpv6Slice::from_slice(body) {
            Ok(i) if i.is_checksum_valid(src.octets(), dst.octets()) => i,
            _ => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let nd = |i: &Icmpv6Slice<'_>| h.hop_limit() == 255 && i.code_u8() == 0;
        match icmp.icmp_type() {
            Icmpv6Type::RouterSolicitation => {
                // reserved (4 bytes), then options; from :: there may be no SLLAO
                let opts = body.get(8..).and_then(options);
                let sllao = opts
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|(k, _)| *k == 1));
                if !nd(&icmp) || opts.is_none() || (src.is_unspecified() && sllao) {
                    self.stats.malformed += 1;
                    return None;
                }
                self.stats.router_solicitations += 1;
                if src.is_unspecified() {
                    let recent = self
                        .last_multicast
                        .is_some_and(|t| now.saturating_duration_since(t) < MIN_DELAY_BETWEEN_RAS);
                    if recent {
                        return None;
                    }
                    self.last_multicast = Some(now);
                    self.router_advert(multicast_mac(ALL_NODES), ALL_NODES)
                } else {
                    self.router_advert(src_mac.0, src)
                }
            }
            Icmpv6Type::NeighborSolicitation => {
                let target = body.get(8..24).and_then(|t| <[u8; 16]>::try_from(t).ok());
                let opts = body.get(24..).and_then(options);
                let (Some(target), Some(opts), true) = (target, opts, nd(&icmp)) else {
                    self.stats.malformed += 1;
                    return None;
                };
                let target = Ipv6Addr::from(target);
                // duplicate address detection (from ::) goes to the solicited-node group
                // and carries no source link-layer address (RFC 4861 §7.1.1)
                let dad = src.is_unspecified();
                if target.is_multicast()
                    || (dad && (dst != solicited_node(target) || opts.iter().any(|(k, _)| *k == 1)))
                {
                    self.stats.malformed += 1;
                    return None;
                }
                if !self.is_ours(target) {
                    self.stats.ignored += 1;
                    return None;
                }
                self.stats.neighbor_solicitations += 1;
                let (to_mac, to) = if dad {
                    (multicast_mac(ALL_NODES), ALL_NODES)
                } else {
                    (src_mac.0, src)
                };
                self.neighbor_advert(to_mac, to, target, !dad)
            }
            Icmpv6Type::EchoRequest(echo) if self.is_ours(dst) => {
                self.stats.echo_replies += 1;
                let reply = Icmpv6Type::EchoReply(IcmpEchoHeader {
                    id: echo.id,
                    seq: echo.seq,
                });
                self.frame(src_mac.0, dst, src, 64, reply, icmp.payload())
            }
            Icmpv6Type::EchoRequest(_) => self.not_icmp(now, (src_mac, dst_mac), &ip, packet),
            _ => {
                self.stats.ignored += 1;
                None
            }
        }
    }

    /// A packet that is not for an ICMPv6 service: for an address off the segment, sent
    /// to the gateway's MAC to be routed, "no route" (rate limited); else ignored.
    fn not_icmp(
        &mut self,
        now: Instant,
        (src_mac, dst_mac): (MacAddr, MacAddr),
        ip: &Ipv6Slice<'_>,
        packet: &[u8],
    ) -> Option<Vec<u8>> {
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        let routed = dst_mac == self.mac && !dst.is_multicast() && !self.on_link(dst);
        // never an error about an error (RFC 4443 §2.4 (e)), nor to a source that is not
        // a unicast address
        let error = ip.payload().ip_number == IpNumber::IPV6_ICMP
            && ip.payload().payload.first().is_some_and(|t| *t < 128);
        if !routed || error || src.is_unspecified() || src.is_multicast() {
            self.stats.ignored += 1;
            return None;
        }
        let (second, sent) = &mut self.errors;
        if second.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
            *second = Some(now);
            *sent = 0;
        }
        if *sent >= ERRORS_PER_SEC {
            self.stats.unreachable_limited += 1;
            return None;
        }
        *sent += 1;
        self.stats.unreachable += 1;
        let quote = packet
            .get(..ERROR_QUOTE.min(packet.len()))
            .unwrap_or_default();
        let unreachable = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute);
        self.frame(src_mac.0, self.dns_addr(), src, 64, unreachable, quote)
    }

    /// An ICMPv6 message in a frame from the gateway.
    fn frame(
        &self,
        to_mac: [u8; 6],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        kind: Icmpv6Type,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let b = PacketBuilder::ethernet2(self.mac.0, to_mac)
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(kind);
        let mut frame = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut frame, payload).ok()?;
        Some(frame)
    }

    /// A router advertisement to `to` (RFC 4861 §4.2, §6.2.3): from the link-local
    /// address, hop limit 255; the gateway's MAC, the MTU (when not 1500), each prefix
    /// (on-link, autonomous), the DNS server and the search domain.
    fn router_advert(&mut self, to_mac: [u8; 6], to: Ipv6Addr) -> Option<Vec<u8>> {
        // reachable time and retransmission timer: unspecified
        let mut p = vec![0u8; 8];
        p.extend_from_slice(&[1, 1]);
        p.extend_from_slice(&self.mac.0);
        if self.mtu != 1500 {
            p.extend_from_slice(&[5, 1, 0, 0]);
            p.extend_from_slice(&u32::from(self.mtu).to_be_bytes());
        }
        for pre in &self.cfg.prefixes {
            // L (on-link), and A (autonomous: SLAAC) unless DHCPv6 hands out the addresses
            let flags = if pre.autonomous { 0xc0 } else { 0x80 };
            p.extend_from_slice(&[3, 4, pre.len, flags]);
            p.extend_from_slice(&PREFIX_LIFETIME.to_be_bytes());
            p.extend_from_slice(&PREFIX_LIFETIME.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
            let masked = u128::from(pre.addr)
                & u128::MAX
                    .checked_shl(128 - u32::from(pre.len.min(128)))
                    .unwrap_or(0);
            p.extend_from_slice(&masked.to_be_bytes());
        }
        if self.cfg.dns {
            p.extend_from_slice(&[25, 3, 0, 0]);
            p.extend_from_slice(&DNS_LIFETIME.to_be_bytes());
            p.extend_from_slice(&self.dns_addr().octets());
        }
        if let Some(names) = self.cfg.domain.as_deref().and_then(dns_names) {
            let len = 8 + names.len().div_ceil(8) * 8;
            p.extend_from_slice(&[31, u8::try_from(len / 8).ok()?, 0, 0]);
            p.extend_from_slice(&DNS_LIFETIME.to_be_bytes());
            p.extend_from_slice(&names);
            p.resize(p.len() + (len - 8 - names.len()), 0);
        }
        let ra = Icmpv6Type::RouterAdvertisement(RouterAdvertisementHeader {
            cur_hop_limit: 64,
            managed_address_config: self.cfg.managed,
            other_config: self.cfg.managed,
            router_lifetime: self.cfg.router_lifetime,
        });
        let f = self.frame(to_mac, self.link_local, to, 255, ra, &p)?;
        self.stats.router_adverts += 1;
        Some(f)
    }

    /// A neighbor advertisement for `target` (one of the gateway's addresses), with the
    /// router and override flags and the gateway's MAC (RFC 4861 §7.2.4).
    fn neighbor_advert(
        &self,
        to_mac: [u8; 6],
        to: Ipv6Addr,
        target: Ipv6Addr,
        solicited: bool,
    ) -> Option<Vec<u8>> {
        let mut p = target.octets().to_vec();
        p.extend_from_slice(&[2, 1]);
        p.extend_from_slice(&self.mac.0);
        let na = Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
            router: true,
            solicited,
            r#override: true,
        });
        self.frame(to_mac, target, to, 255, na, &p)
    }
}

/// `domain` as DNS labels (RFC 1035 §3.1), for DNSSL; `None` when a label is empty or
/// longer than 63 bytes.
fn dns_names(domain: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for label in domain.trim_end_matches('.').split('.') {
        let n = u8::try_from(label.len())
            .ok()
            .filter(|n| (1..=63).contains(n))?;
        out.push(n);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    //! With frames a Linux 6.x guest sent (captured with tcpdump on a veth; the guest is
    //! 52:54:00:12:34:56, the gateway's MAC is the host end's, 22:ec:7c:ef:07:66).

    use super::*;

    const GW: MacAddr = MacAddr([0x22, 0xec, 0x7c, 0xef, 0x07, 0x66]);
    const GUEST: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    /// Router solicitation from fe80::5054:ff:fe12:3456 to ff02::2, with its SLLAO.
    const RS: [u8; 70] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x10, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x85, 0x00, 0x71, 0xb5, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    /// Neighbor solicitation for the gateway's link-local, to its solicited-node group.
    const NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0xef, 0x07, 0x66, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xef, 0x07, 0x66, 0x87, 0x00, 0xc5, 0x8d, 0x00, 0x00,
        0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xec, 0x7c, 0xff, 0xfe,
        0xef, 0x07, 0x66, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    /// Duplicate address detection for the gateway's link-local (from ::, with a nonce
    /// option), as the host end sent it when it came up.
    const DAD: [u8; 86] = [
        0x33, 0x33, 0xff, 0xef, 0x07, 0x66, 0x22, 0xec, 0x7c, 0xef, 0x07, 0x66, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xef, 0x07, 0x66, 0x87, 0x00, 0x62, 0x68, 0x00, 0x00,
        0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xec, 0x7c, 0xff, 0xfe,
        0xef, 0x07, 0x66, 0x0e, 0x01, 0xbb, 0xae, 0x74, 0x50, 0x2f, 0x20,
    ];

    /// `ping -6 -s 8 fe80::20ec:7cff:feef:766%eth0`: echo request id 9471, seq 1.
    const ECHO: [u8; 70] = [
        0x22, 0xec, 0x7c, 0xef, 0x07, 0x66, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60,
        0x07, 0xdd, 0x52, 0x00, 0x10, 0x3a, 0x40, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x20, 0xec, 0x7c, 0xff, 0xfe, 0xef, 0x07, 0x66, 0x80, 0x00, 0x29, 0xa5, 0x24, 0xff,
        0x00, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    ];

    fn ndp() -> Ndp {
        let cfg = Ipv6Config {
            prefixes: vec![Ipv6Prefix {
                addr: "fd00:1::1".parse().unwrap(),
                len: 64,
                autonomous: true,
            }],
            router_lifetime: 1800,
            dns: true,
            domain: Some("example".into()),
            managed: false,
        };
        Ndp::new(GW, cfg, 1500)
    }

    fn handle(n: &mut Ndp, frame: &[u8]) -> Option<Vec<u8>> {
        let dst = MacAddr(frame[..6].try_into().unwrap());
        n.handle(Instant::now(), GUEST, dst, &frame[14..])
    }

    /// The reply's Ethernet destination, IPv6 source, destination and hop limit, and
    /// its ICMPv6 message (checksum checked).
    fn parse(f: &[u8]) -> ([u8; 6], Ipv6Addr, Ipv6Addr, u8, Vec<u8>) {
        let ip = Ipv6Slice::from_slice(&f[14..]).unwrap();
        let (s, d) = (ip.header().source_addr(), ip.header().destination_addr());
        let icmp = Icmpv6Slice::from_slice(ip.payload().payload).unwrap();
        assert!(icmp.is_checksum_valid(s.octets(), d.octets()));
        (
            f[..6].try_into().unwrap(),
            s,
            d,
            ip.header().hop_limit(),
            icmp.slice().to_vec(),
        )
    }

    #[test]
    fn the_link_local_address_is_the_modified_eui64_of_the_mac() {
        assert_eq!(
            link_local(GUEST),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            ndp().link_local(),
            "fe80::20ec:7cff:feef:766".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_solicitation_is_answered_with_the_prefix_dns_and_domain() {
        let mut n = ndp();
        let ra = handle(&mut n, &RS).expect("an advertisement");
        let (mac, src, dst, hops, m) = parse(&ra);
        assert_eq!(mac, GUEST.0, "unicast to the soliciting guest");
        assert_eq!((src, hops), (n.link_local(), 255));
        assert_eq!(dst, "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
        // type 134, hop limit 64, no M/O flags, lifetime 1800
        assert_eq!(&m[..8], &[134, 0, m[2], m[3], 64, 0, 0x07, 0x08]);
        let opts = options(&m[16..]).unwrap();
        let kinds: Vec<u8> = opts.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [1, 3, 25, 31]);
        assert_eq!(opts[0].1, &GW.0);
        // the prefix: /64, on-link and autonomous, fd00:1::
        assert_eq!(&opts[1].1[..2], &[64, 0xc0]);
        assert_eq!(
            &opts[1].1[14..],
            &"fd00:1::".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            &opts[2].1[6..],
            &"fd00:1::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&opts[3].1[6..15], b"\x07example\x00");
        assert_eq!(n.stats().router_solicitations, 1);
    }

    #[test]
    fn neighbor_solicitations_for_the_gateway_are_answered_dad_to_all_nodes() {
        let mut n = ndp();
        let na = handle(&mut n, &NS).expect("an advertisement");
        let (mac, src, _, hops, m) = parse(&na);
        assert_eq!((mac, src, hops), (GUEST.0, n.link_local(), 255));
        // router, solicited, override; the target; the gateway's MAC
        assert_eq!((m[0], m[4]), (136, 0xe0));
        assert_eq!(&m[8..24], &n.link_local().octets());
        assert_eq!(&m[24..], &[2, 1, 0x22, 0xec, 0x7c, 0xef, 0x07, 0x66]);
        let na = handle(&mut n, &DAD).expect("the address is defended");
        let (mac, _, dst, _, m) = parse(&na);
        assert_eq!(
            (mac, dst, m[4]),
            (multicast_mac(ALL_NODES), ALL_NODES, 0xa0)
        );
        // another station's address: not ours to answer
        let mut other = NS;
        other[77] = 0x67;
        let cs = u16::from_be_bytes([other[56], other[57]]) - 1;
        other[56..58].copy_from_slice(&cs.to_be_bytes());
        assert!(handle(&mut n, &other).is_none());
        assert_eq!(n.stats().ignored, 1);
    }

    #[test]
    fn echo_to_the_gateway_is_answered() {
        let mut n = ndp();
        let r = handle(&mut n, &ECHO).expect("a reply");
        let (mac, src, dst, _, m) = parse(&r);
        assert_eq!((mac, src), (GUEST.0, n.link_local()));
        assert_eq!(dst, "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
        assert_eq!(&m[..2], &[129, 0]);
        assert_eq!(&m[4..], &ECHO[58..], "id, seq and data echoed");
    }

    #[test]
    fn malformed_discovery_is_counted_and_not_answered() {
        let mut n = ndp();
        // hop limit 64: not from the link
        let mut hops = RS;
        hops[21] = 64;
        // a flipped checksum
        let mut sum = RS;
        sum[57] ^= 1;
        // an option of length 0 (checksum fixed up for the change)
        let mut zero = RS;
        zero[63] = 0;
        let cs = u16::from_be_bytes([zero[56], zero[57]]) + 1;
        zero[56..58].copy_from_slice(&cs.to_be_bytes());
        for bad in [&hops[..], &sum, &zero, &RS[..40]] {
            assert!(handle(&mut n, bad).is_none());
        }
        assert_eq!(n.stats().malformed, 4);
        assert_eq!(n.stats().router_adverts, 0);
    }

    #[test]
    fn what_it_cannot_route_gets_no_route_at_most_ten_a_second() {
        let mut n = ndp();
        // UDP from the guest's address in the prefix to 2001:db8::1, to the gateway MAC
        let b = PacketBuilder::ethernet2(GUEST.0, GW.0)
            .ipv6(
                "fd00:1::5".parse::<Ipv6Addr>().unwrap().octets(),
                "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
                64,
            )
            .udp(5000, 53);
        let mut f = Vec::new();
        b.write(&mut f, b"query").unwrap();
        let now = Instant::now();
        let first = n.handle(now, GUEST, GW, &f[14..]).expect("no route");
        let (_, src, dst, _, m) = parse(&first);
        assert_eq!(
            (src, dst),
            (n.dns_addr(), "fd00:1::5".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!(&m[..2], &[1, 0]);
        assert_eq!(&m[8..], &f[14..], "the packet quoted");
        for _ in 1..20 {
            let _ = n.handle(now, GUEST, GW, &f[14..]);
        }
        assert_eq!(
            (n.stats().unreachable, n.stats().unreachable_limited),
            (10, 10)
        );
        assert!(n
            .handle(now + Duration::from_secs(1), GUEST, GW, &f[14..])
            .is_some());
    }

    #[test]
    fn solicitations_from_the_unspecified_address_get_a_multicast_answer_every_3_s() {
        let mut n = ndp();
        // RS from :: to ff02::2 (the captured one's destination), no options
        let all_routers: [u8; 16] = RS[38..54].try_into().unwrap();
        let b = PacketBuilder::ethernet2(GUEST.0, multicast_mac(ALL_NODES))
            .ipv6([0; 16], all_routers, 255)
            .icmpv6(Icmpv6Type::RouterSolicitation);
        let mut f = Vec::new();
        b.write(&mut f, &[]).unwrap();
        let t = Instant::now();
        assert!(n.handle(t, GUEST, GW, &f[14..]).is_some());
        assert!(n
            .handle(t + Duration::from_secs(1), GUEST, GW, &f[14..])
            .is_none());
        let later = n
            .handle(t + MIN_DELAY_BETWEEN_RAS, GUEST, GW, &f[14..])
            .expect("again");
        assert_eq!(parse(&later).2, ALL_NODES);
        assert_eq!(n.stats().router_solicitations, 3);
    }

    #[test]
    fn unsolicited_advertisements_go_to_all_nodes_three_fast_then_slow() {
        let mut n = ndp();
        let t = Instant::now();
        assert_eq!(n.poll_timeout(t), t);
        let ra = n.handle_timeout(t).expect("at once");
        assert_eq!(parse(&ra).2, ALL_NODES);
        assert!(n.handle_timeout(t).is_none());
        assert_eq!(n.poll_timeout(t), t + INITIAL_INTERVAL);
        assert!(n.handle_timeout(t + INITIAL_INTERVAL).is_some());
        assert!(n.handle_timeout(t + INITIAL_INTERVAL * 2).is_some());
        assert_eq!(n.poll_timeout(t), t + INITIAL_INTERVAL * 2 + INTERVAL);
    }
}
