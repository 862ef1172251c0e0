//! The router of route/open modes (`vnet_gateway::route::Router`, IPv4 and IPv6):
//! frames from the segment and from the uplink (any bytes, and IPv4/IPv6 packets with
//! fuzzed addresses, TTL / hop limit, protocol and length), ARP replies and neighbor
//! advertisements answering its questions, and time.
//!
//! Checked after every step:
//! - a frame routed to the uplink leaves from the uplink's MAC, one to the segment from
//!   the gateway's; its TTL or hop limit is one less than it came with, and an IPv4
//!   header checksum is still right;
//! - nothing for a multicast, broadcast, link-local or unspecified destination is
//!   routed;
//! - every frame the router queues itself parses as Ethernet (ARP, or IP).

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use libfuzzer_sys::fuzz_target;
use vnet_gateway::route::v6::{Prefix6, RouterConfig6};
use vnet_gateway::route::{Prefix, Router, RouterConfig, UplinkRoute, Verdict};

const GW_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const UP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

#[derive(Debug, Arbitrary)]
enum Op {
    Raw {
        uplink: bool,
        bytes: Vec<u8>,
    },
    V4 {
        uplink: bool,
        src: u8,
        dst: u8,
        ttl: u8,
        len: u8,
    },
    V6 {
        uplink: bool,
        src: u8,
        dst: u8,
        hop: u8,
        len: u16,
    },
    /// An answer for the next hop `who` (ARP reply or neighbor advertisement).
    Answer {
        uplink: bool,
        v6: bool,
        who: u8,
    },
    Advance {
        millis: u16,
    },
}

fn v4(i: u8) -> Ipv4Addr {
    match i % 8 {
        0 => Ipv4Addr::new(192, 168, 140, 10 + i % 5),
        1 => Ipv4Addr::new(192, 168, 140, 1),
        2 => Ipv4Addr::new(10, 97, 0, 2),
        3 => Ipv4Addr::new(10, 97, 0, 1),
        4 => Ipv4Addr::new(10, 50, 1, i),
        5 => Ipv4Addr::BROADCAST,
        6 => Ipv4Addr::new(224, 0, 0, 1),
        _ => Ipv4Addr::new(203, 0, 113, i),
    }
}

fn v6(i: u8) -> Ipv6Addr {
    match i % 9 {
        0 => Ipv6Addr::new(0xfd00, 0x140, 0, 0, 0, 0, 0, 0x10 + u16::from(i % 5)),
        1 => Ipv6Addr::new(0xfd00, 0x140, 0, 0, 0, 0, 0, 1),
        2 => Ipv6Addr::new(0x2001, 0xdb8, 0x97, 0, 0, 0, 0, 2),
        3 => Ipv6Addr::new(0x2001, 0xdb8, 0x97, 0, 0, 0, 0, 1),
        4 => Ipv6Addr::new(0xfd00, 0x150, 0, 0, 0, 0, 0, u16::from(i)),
        5 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        6 => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        7 => Ipv6Addr::UNSPECIFIED,
        _ => Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, u16::from(i)),
    }
}

fn router() -> Router {
    let ip6 = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
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
        ipv6: Some(RouterConfig6 {
            gateway_ip: ip6("fd00:140::1"),
            gateway_ll: ip6("fe80::5054:ff:fe00:1"),
            segment: vec![Prefix6::new(ip6("fd00:140::1"), 64)],
            behind_guests: vec![(Prefix6::new(ip6("fd00:150::"), 48), ip6("fd00:140::20"))],
            uplink_ip: ip6("2001:db8:97::1"),
            uplink_routes: vec![
                (Prefix6::new(ip6("2001:db8:97::"), 64), None),
                (Prefix6::new(ip6("::"), 0), Some(ip6("2001:db8:97::2"))),
            ],
            uplink_mtu: 1280,
        }),
    })
}

fn ipv4_checksum_ok(f: &[u8]) -> bool {
    let Some(&vihl) = f.get(14) else { return false };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let Some(h) = f.get(14..14 + ihl) else {
        return false;
    };
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// The checks on a frame the router let through with `verdict` (it came with TTL or
/// hop limit `before`).
fn check_routed(verdict: Verdict, before: Option<u8>, f: &[u8]) {
    let (src_mac, routed) = match verdict {
        Verdict::Uplink => (UP_MAC, true),
        Verdict::Segment => (GW_MAC, true),
        _ => ([0; 6], false),
    };
    if !routed {
        return;
    }
    assert_eq!(&f[6..12], &src_mac, "{verdict:?} from the wrong MAC");
    let p = SlicedPacket::from_ethernet(f).expect("a routed frame parses");
    match p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let dst = ip.header().destination_addr();
            assert!(
                !dst.is_multicast() && !dst.is_broadcast(),
                "routed to {dst}"
            );
            assert_eq!(Some(ip.header().ttl() + 1), before, "TTL not one less");
            assert!(
                ipv4_checksum_ok(f),
                "IPv4 checksum broken by the TTL update"
            );
        }
        Some(NetSlice::Ipv6(ip)) => {
            let dst = ip.header().destination_addr();
            assert!(
                !dst.is_multicast() && !dst.is_unicast_link_local() && !dst.is_unspecified(),
                "routed to {dst}"
            );
            assert_eq!(
                Some(ip.header().hop_limit() + 1),
                before,
                "hop limit not one less"
            );
        }
        other => panic!("routed a frame that is not IP: {other:?}"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut r = router();
    let t0 = Instant::now();
    let mut now = t0;
    for op in ops.into_iter().take(256) {
        let (uplink, mut frame, before) = match op {
            Op::Raw { uplink, bytes } => (uplink, bytes, None),
            Op::V4 {
                uplink,
                src,
                dst,
                ttl,
                len,
            } => {
                let (s, d) = if uplink {
                    (LAN_MAC, UP_MAC)
                } else {
                    (GUEST_MAC, GW_MAC)
                };
                let mut f = Vec::new();
                let _ = PacketBuilder::ethernet2(s, d)
                    .ipv4(v4(src).octets(), v4(dst).octets(), ttl)
                    .udp(5000, 53)
                    .write(&mut f, &vec![0; usize::from(len)]);
                (uplink, f, Some(ttl))
            }
            Op::V6 {
                uplink,
                src,
                dst,
                hop,
                len,
            } => {
                let (s, d) = if uplink {
                    (LAN_MAC, UP_MAC)
                } else {
                    (GUEST_MAC, GW_MAC)
                };
                let mut f = Vec::new();
                let _ = PacketBuilder::ethernet2(s, d)
                    .ipv6(v6(src).octets(), v6(dst).octets(), hop)
                    .udp(5000, 53)
                    .write(&mut f, &vec![0; usize::from(len % 1600)]);
                (uplink, f, Some(hop))
            }
            Op::Answer {
                uplink,
                v6: six,
                who,
            } => {
                let mac = if uplink { LAN_MAC } else { GUEST_MAC };
                let to_mac = if uplink { UP_MAC } else { GW_MAC };
                let mut f = Vec::new();
                if six {
                    let a = v6(who);
                    let mut body = a.octets().to_vec();
                    body.extend_from_slice(&[2, 1]);
                    body.extend_from_slice(&mac);
                    let _ = PacketBuilder::ethernet2(mac, to_mac)
                        .ipv6(a.octets(), v6(3).octets(), 255)
                        .icmpv6(etherparse::Icmpv6Type::Unknown {
                            type_u8: 136,
                            code_u8: 0,
                            bytes5to8: [0x60, 0, 0, 0],
                        })
                        .write(&mut f, &body);
                } else {
                    let arp = etherparse::ArpEthIpv4Packet {
                        operation: etherparse::ArpOperation::REPLY,
                        sender_mac: mac,
                        sender_ipv4: v4(who).octets(),
                        target_mac: to_mac,
                        target_ipv4: v4(3).octets(),
                    };
                    f.extend_from_slice(&to_mac);
                    f.extend_from_slice(&mac);
                    f.extend_from_slice(&[0x08, 0x06]);
                    f.extend_from_slice(&arp.to_bytes());
                }
                (uplink, f, None)
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                r.poll(now);
                (false, Vec::new(), None)
            }
        };
        if !frame.is_empty() {
            let verdict = if uplink {
                r.from_uplink(now, &[], &mut frame)
            } else {
                r.from_segment(now, &[], &mut frame)
            };
            if before.is_some() {
                check_routed(verdict, before, &frame);
            }
        }
        let mut queued: Vec<(Vec<u8>, Vec<u8>)> = std::iter::from_fn(|| r.poll_uplink()).collect();
        queued.extend(std::iter::from_fn(|| r.poll_segment()));
        for (_, f) in queued {
            assert!(f.len() >= 14, "a frame shorter than its Ethernet header");
            if f.get(12..14) != Some(&[0x08, 0x06][..]) {
                assert!(
                    SlicedPacket::from_ethernet(&f).is_ok_and(|p| p.net.is_some()),
                    "a queued frame that does not parse: {f:?}"
                );
            }
        }
    }
});
