//! The NAT engine's IPv6 side (`NatConfig::ipv6`): guest IPv6 frames (any bytes after
//! a valid Ethernet + IPv6 header, and TCP, UDP and ICMPv6 echo from fuzzed addresses),
//! host-side reports and time, in any order.
//!
//! Checked after every step:
//! - an `Open` of a flow an IPv6 frame started goes to an IPv6 target off the segment
//!   that is not link-local, multicast or unspecified; to `::1` only with host access,
//!   and only for the gateway's own address;
//! - every frame the engine emits is Ethernet from the gateway's MAC and parses as
//!   IPv6 (to a guest address inside the prefix, or a neighbor solicitation for one)
//!   or IPv4;
//! - the flows never pass `max_flows`.

#![no_main]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use libfuzzer_sys::fuzz_target;
use vnet_nat::{Action, FlowId, HostStream, Nat, NatConfig, OpenError, Proto};

const GW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 1);

#[derive(Debug, Arbitrary)]
struct Input {
    host_access: bool,
    max_flows: u8,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// A valid Ethernet + IPv6 header (fuzzed next header, hop limit, payload length)
    /// and any bytes after it.
    Ip {
        guest: u8,
        remote: u8,
        next: u8,
        len: Option<u16>,
        rest: Vec<u8>,
    },
    Tcp {
        guest: u8,
        remote: u8,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: Vec<u8>,
    },
    Udp {
        guest: u8,
        remote: u8,
        dport: u16,
        payload: Vec<u8>,
    },
    Echo {
        guest: u8,
        remote: u8,
        id: u16,
        payload: Vec<u8>,
    },
    Opened {
        pick: u8,
        result: u8,
    },
    Datagram {
        pick: u8,
        data: Vec<u8>,
    },
    Pump {
        pick: u8,
        data: Vec<u8>,
        eof: bool,
    },
    Accept {
        client: u8,
        guest: u8,
        port: u16,
    },
    Advance {
        millis: u16,
    },
}

fn guest6(g: u8) -> Ipv6Addr {
    match g % 8 {
        0..=3 => Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 0x10 + u16::from(g % 4)),
        4 => GW6,
        5 => "fe80::5".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        6 => Ipv6Addr::UNSPECIFIED,
        _ => Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 5), // outside the prefix
    }
}

fn guest_mac(g: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x00, 0x66, g % 8]
}

fn remote6(r: u8) -> Ipv6Addr {
    match r % 9 {
        0 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7),
        1 => GW6,
        2 => Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 0x20), // on the segment
        3 => "fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        4 => "ff02::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        5 => Ipv6Addr::LOCALHOST,
        6 => Ipv6Addr::UNSPECIFIED,
        7 => "::ffff:10.0.0.1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        _ => Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(r)),
    }
}

fn in_prefix(a: Ipv6Addr) -> bool {
    u128::from(a) >> 64 == u128::from(GW6) >> 64
}

/// A host stream in memory.
#[derive(Default)]
struct Mem {
    data: Vec<u8>,
    eof: bool,
}

impl HostStream for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn check(nat: &mut Nat, host_access: bool, max_flows: usize, flows: &mut Vec<(FlowId, Proto)>) {
    while let Some(a) = nat.poll_action() {
        if let Action::Open {
            flow,
            proto,
            target,
        } = a
        {
            if let SocketAddr::V6(t) = target {
                let ip = *t.ip();
                assert!(
                    !ip.is_multicast() && !ip.is_unspecified() && !ip.is_unicast_link_local(),
                    "open to {target}"
                );
                if ip.is_loopback() {
                    assert!(host_access, "host access while it is off: {target}");
                } else {
                    assert!(!in_prefix(ip), "open to the segment: {target}");
                }
            }
            flows.push((flow, proto));
        }
    }
    while let Some(f) = nat.poll_transmit() {
        assert_eq!(&f[6..12], &GW_MAC, "a frame not from the gateway");
        {
            let p = SlicedPacket::from_ethernet(&f).expect("an engine frame parses");
            match p.net {
                Some(NetSlice::Ipv6(ip)) => {
                    let dst = ip.header().destination_addr();
                    // or a neighbor solicitation for a guest it has not seen
                    let solicited = dst.segments()[..6] == [0xff02, 0, 0, 0, 0, 1]
                        && ip.payload().payload.first() == Some(&135);
                    assert!(
                        in_prefix(dst) || solicited,
                        "an IPv6 frame to {dst}, outside the prefix"
                    );
                }
                Some(NetSlice::Ipv4(_)) => {}
                other => panic!("an engine frame that is not IP: {other:?}"),
            }
        }
        nat.recycle(f);
    }
    assert!(nat.stats().flows <= max_flows, "past max_flows");
}

fn pick(flows: &[(FlowId, Proto)], p: u8, want: Option<Proto>) -> Option<FlowId> {
    let list: Vec<FlowId> = flows
        .iter()
        .filter(|(_, pr)| want.is_none_or(|w| *pr == w))
        .map(|(f, _)| *f)
        .collect();
    if list.is_empty() {
        return None;
    }
    list.get(usize::from(p) % list.len()).copied()
}

fuzz_target!(|input: Input| {
    let mut cfg = NatConfig::new(GW_MAC, GW, 24);
    cfg.ipv6 = vec![(GW6, 64)];
    cfg.host_access = input.host_access;
    let max_flows = 1 + usize::from(input.max_flows % 16);
    cfg.limits.max_flows = max_flows;
    cfg.limits.tcp_buffer = 8192;
    cfg.limits.tcp_buffer_min = 2048;
    cfg.limits.tcp_memory = 32 * 1024;
    let t0 = Instant::now();
    let mut now = t0;
    let mut nat = Nat::new(cfg, t0, 7);
    let mut flows: Vec<(FlowId, Proto)> = Vec::new();
    for op in input.ops.into_iter().take(256) {
        let mut frame = Vec::new();
        match op {
            Op::Ip {
                guest,
                remote,
                next,
                len,
                rest,
            } => {
                frame.extend_from_slice(&GW_MAC);
                frame.extend_from_slice(&guest_mac(guest));
                frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                let l = len.unwrap_or(u16::try_from(rest.len()).unwrap_or(u16::MAX));
                frame.extend_from_slice(&l.to_be_bytes());
                frame.extend_from_slice(&[next, 64]);
                frame.extend_from_slice(&guest6(guest).octets());
                frame.extend_from_slice(&remote6(remote).octets());
                frame.extend_from_slice(&rest);
            }
            Op::Tcp {
                guest,
                remote,
                sport,
                dport,
                seq,
                ack,
                flags,
                payload,
            } => {
                let mut b = PacketBuilder::ethernet2(guest_mac(guest), GW_MAC)
                    .ipv6(guest6(guest).octets(), remote6(remote).octets(), 64)
                    .tcp(sport, dport, seq, 65535);
                if flags & 1 != 0 {
                    b = b.syn();
                }
                if flags & 2 != 0 {
                    b = b.ack(ack);
                }
                if flags & 4 != 0 {
                    b = b.fin();
                }
                if flags & 8 != 0 {
                    b = b.rst();
                }
                if flags & 16 != 0 {
                    b = b.psh();
                }
                let _ = b.write(&mut frame, &payload);
            }
            Op::Udp {
                guest,
                remote,
                dport,
                payload,
            } => {
                let _ = PacketBuilder::ethernet2(guest_mac(guest), GW_MAC)
                    .ipv6(guest6(guest).octets(), remote6(remote).octets(), 64)
                    .udp(40000, dport)
                    .write(&mut frame, &payload);
            }
            Op::Echo {
                guest,
                remote,
                id,
                payload,
            } => {
                let _ = PacketBuilder::ethernet2(guest_mac(guest), GW_MAC)
                    .ipv6(guest6(guest).octets(), remote6(remote).octets(), 64)
                    .icmpv6_echo_request(id, 1)
                    .write(&mut frame, &payload);
            }
            Op::Opened { pick: p, result } => {
                if let Some(id) = pick(&flows, p, Some(Proto::Tcp)) {
                    let r = match result % 3 {
                        0 => Ok(()),
                        1 => Err(OpenError::Refused),
                        _ => Err(OpenError::Unreachable),
                    };
                    nat.opened(now, id, r);
                }
            }
            Op::Datagram { pick: p, data } => {
                if let Some(id) = pick(&flows, p, None) {
                    nat.datagram(now, id, &data);
                }
            }
            Op::Pump { pick: p, data, eof } => {
                if let Some(id) = pick(&flows, p, Some(Proto::Tcp)) {
                    nat.pump(now, id, &mut Mem { data, eof });
                }
            }
            Op::Accept {
                client,
                guest,
                port,
            } => {
                let c = SocketAddr::new(IpAddr::V6(remote6(client)), 50000);
                let g = SocketAddr::new(IpAddr::V6(guest6(guest % 4)), port);
                if let Some(id) = nat.accept_inbound(now, c, g) {
                    flows.push((id, Proto::Tcp));
                }
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                nat.handle_timeout(now);
            }
        }
        if !frame.is_empty() {
            nat.handle_frame(now, &frame);
        }
        while let Some(id) = nat.poll_dirty() {
            nat.pump(now, id, &mut Mem::default());
        }
        check(&mut nat, input.host_access, max_flows, &mut flows);
    }
});
