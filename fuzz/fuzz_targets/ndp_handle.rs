//! IPv6 packets (any bytes, and mutations of a router solicitation, a neighbor
//! solicitation and an echo request a Linux guest sent) and clock steps through the
//! gateway's IPv6 side, `vnet_gateway::ndp::Ndp`, checking every frame it sends (not
//! just "no panic"): a well-formed IPv6 packet from the gateway's MAC and one of its
//! addresses, a valid ICMPv6 checksum, hop limit 255 on neighbor discovery, at most one
//! reply per packet, and ICMPv6 errors within the rate limit.
//!
//! `cargo +nightly fuzz run ndp_handle` (from `fuzz/`).

#![no_main]

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use etherparse::{Icmpv6Slice, IpNumber, Ipv6Slice};
use libfuzzer_sys::fuzz_target;
use vnet_gateway::ndp::{Ipv6Config, Ipv6Prefix, Ndp};
use vnet_switch::MacAddr;

const GW: MacAddr = MacAddr([0x22, 0xec, 0x7c, 0xef, 0x07, 0x66]);
const GUEST: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

/// The IPv6 packets of a router solicitation, a neighbor solicitation for the gateway's
/// link-local and an echo request to it, from a Linux guest (52:54:00:12:34:56).
const SEEDS: [&[u8]; 3] = [
    &[
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x85, 0x00, 0x71, 0xb5, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ],
    &[
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xef, 0x07, 0x66, 0x87, 0x00, 0xc5, 0x8d, 0x00,
        0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xec, 0x7c, 0xff,
        0xfe, 0xef, 0x07, 0x66, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ],
    &[
        0x60, 0x07, 0xdd, 0x52, 0x00, 0x10, 0x3a, 0x40, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x20, 0xec, 0x7c, 0xff, 0xfe, 0xef, 0x07, 0x66, 0x80, 0x00, 0x29, 0xa5, 0x24,
        0xff, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    ],
];

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any bytes, to the gateway's MAC or to a multicast group.
    Raw { multicast: bool, bytes: Vec<u8> },
    /// A seed with bytes changed (checksums left as they fall).
    Mutated {
        seed: u8,
        edits: Vec<(u8, u8)>,
        cut: Option<u8>,
    },
    /// Time passes (milliseconds), unsolicited advertisements fall due.
    Wait(u16),
}

fn check(n: &Ndp, frame: &[u8]) {
    assert_eq!(&frame[6..12], &GW.0, "from the gateway's MAC");
    assert_eq!(&frame[12..14], &[0x86, 0xdd]);
    let ip = Ipv6Slice::from_slice(&frame[14..]).expect("a well-formed IPv6 packet");
    let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
    assert!(n.is_ours(src), "from one of the gateway's addresses: {src}");
    assert_eq!(ip.payload().ip_number, IpNumber::IPV6_ICMP);
    let icmp = Icmpv6Slice::from_slice(ip.payload().payload).expect("ICMPv6");
    assert!(icmp.is_checksum_valid(src.octets(), dst.octets()));
    if (133..=137).contains(&icmp.type_u8()) {
        assert_eq!(
            ip.header().hop_limit(),
            255,
            "neighbor discovery stays on the link"
        );
    }
    assert!(frame.len() <= 14 + 1280, "within the IPv6 minimum MTU");
}

fuzz_target!(|ops: Vec<Op>| {
    let cfg = Ipv6Config {
        prefixes: vec![Ipv6Prefix {
            addr: "fd00:1::1".parse::<Ipv6Addr>().unwrap(),
            len: 64,
            autonomous: true,
        }],
        router_lifetime: 1800,
        dns: true,
        domain: Some("example".into()),
        managed: false,
    };
    let mut n = Ndp::new(GW, cfg, 1500);
    let mut now = Instant::now();
    let start = now;
    for op in ops.into_iter().take(256) {
        let (dst, packet) = match op {
            Op::Raw { multicast, bytes } => {
                let dst = if multicast {
                    MacAddr([0x33, 0x33, 0, 0, 0, 2])
                } else {
                    GW
                };
                (dst, bytes)
            }
            Op::Mutated { seed, edits, cut } => {
                let mut p = SEEDS[usize::from(seed) % SEEDS.len()].to_vec();
                for (at, v) in edits.into_iter().take(8) {
                    let i = usize::from(at) % p.len();
                    p[i] = v;
                }
                if let Some(c) = cut {
                    p.truncate(usize::from(c));
                }
                (MacAddr([0x33, 0x33, 0, 0, 0, 2]), p)
            }
            Op::Wait(ms) => {
                now += Duration::from_millis(u64::from(ms));
                while n.poll_timeout(now) <= now {
                    let Some(f) = n.handle_timeout(now) else {
                        break;
                    };
                    check(&n, &f);
                }
                continue;
            }
        };
        if let Some(f) = n.handle(now, GUEST, dst, &packet) {
            check(&n, &f);
        }
    }
    // at most ten errors in each second that passed (and one more second's worth)
    let seconds = now.saturating_duration_since(start).as_secs() + 1;
    assert!(n.stats().unreachable <= 10 * (seconds + 1));
});
