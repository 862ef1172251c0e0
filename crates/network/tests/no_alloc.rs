//! A whole network (the libvirt default one: switch, gateway with DHCP, DNS and NAT)
//! allocates nothing per frame on the guest-to-guest path in steady state: a counting
//! global allocator watches a million frames through `Network::handle_frame` (known
//! unicast over IPv4 and IPv6, ARP broadcasts the gateway also sees, runts) after a
//! warm-up.

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vnet_network::{Io, Network, Now, Options, PortId};
use vnet_ports::FrameBuf;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Counts what the network sends; keeps nothing.
struct Count(u64);

impl Io for Count {
    fn transmit(&mut self, _port: PortId, _buf: &mut FrameBuf, _take: bool) -> bool {
        self.0 += 1;
        true
    }
}

fn mac(i: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0x10, i]
}

fn ip(i: u8) -> [u8; 4] {
    [192, 168, 122, 10 + i]
}

/// A UDP datagram from guest `from` to guest `to`, Ethernet-addressed to it.
fn unicast(from: u8, to: u8) -> Vec<u8> {
    let mut f = mac(to).to_vec();
    f.extend_from_slice(&mac(from));
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4, 20 + 8 + 18 bytes, TTL 64, UDP
    f.extend_from_slice(&[0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&ip(from));
    f.extend_from_slice(&ip(to));
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x88, 0, 26, 0, 0]);
    f.resize(64, 0);
    f
}

/// An IPv6 UDP datagram from guest `from`'s link-local address to guest `to`'s.
fn unicast6(from: u8, to: u8) -> Vec<u8> {
    let ll = |i: u8| vnet_switch::MacAddr(mac(i)).ipv6_link_local().octets();
    let mut f = mac(to).to_vec();
    f.extend_from_slice(&mac(from));
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 16, 17, 64]);
    f.extend_from_slice(&ll(from));
    f.extend_from_slice(&ll(to));
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x88, 0, 16, 0, 0]);
    f.resize(14 + 40 + 16, 0);
    f
}

/// A broadcast ARP request from guest `from` for guest `to`'s address.
fn arp(from: u8, to: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac(from));
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac(from));
    f.extend_from_slice(&ip(from));
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip(to));
    f.resize(60, 0);
    f
}

#[test]
fn a_million_frames_through_the_default_network_allocate_nothing() {
    let mut def = vnet_config::Network::libvirt_default();
    def.fill_defaults(&[]);
    let mut now = Now::system();
    let mut net = Network::from_config(&def, Options::default(), now).expect("network");
    let ports: Vec<PortId> = (0..4)
        .map(|_| net.add_port(Default::default()).expect("port"))
        .collect();
    let n = 16u8;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| unicast(i, (i * 5 + 3) % n)).collect();
    let arps: Vec<Vec<u8>> = (0..n).map(|i| arp(i, (i + 1) % n)).collect();
    let frames6: Vec<Vec<u8>> = (0..n).map(|i| unicast6(i, (i * 5 + 3) % n)).collect();
    let runt = vec![0u8; 10];
    let mut buf = FrameBuf::new();
    let mut io = Count(0);
    let mut run = |net: &mut Network, rounds: usize, now: &mut Now, io: &mut Count| {
        for r in 0..rounds {
            let i = r % usize::from(n);
            // guest i always sends from port i % 4, so its MAC never moves
            let port = ports[i % 4];
            buf.set_frame(&frames[i]);
            net.handle_frame(*now, port, &mut buf, io);
            if r % 10 == 0 {
                buf.set_frame(&frames6[i]);
                net.handle_frame(*now, port, &mut buf, io);
            }
            if r % 100 == 0 {
                buf.set_frame(&arps[i]);
                net.handle_frame(*now, port, &mut buf, io);
                buf.set_frame(&runt);
                net.handle_frame(*now, port, &mut buf, io);
            }
            if r % 10_000 == 0 {
                now.mono += Duration::from_millis(10);
                now.wall += Duration::from_millis(10);
                net.poll(*now, &mut buf, io);
            }
        }
    };
    // warm-up: every guest learned, the gateway's tables hold every sender
    run(&mut net, 200_000, &mut now, &mut io);
    let sent = io.0;
    let region = Region::new(GLOBAL);
    run(&mut net, 1_000_000, &mut now, &mut io);
    let stats = region.change();
    assert!(
        io.0 > sent + 1_000_000,
        "frames were forwarded: {}",
        io.0 - sent
    );
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "allocations in steady state: {stats:?}"
    );
}
