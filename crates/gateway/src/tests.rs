//! Gateway tests with real frames.

use super::*;

const GW_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c]);
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn gateway() -> Gateway {
    Gateway::new(
        GatewayConfig {
            mac: GW_MAC,
            ip: Some(Ipv4Addr::new(192, 168, 122, 1)),
            prefix: 24,
            mtu: 1500,
            ipv6: None,
        },
        None,
        None,
        std::time::Instant::now(),
    )
}

fn t0() -> Now {
    Now {
        wall: SystemTime::UNIX_EPOCH,
        mono: std::time::Instant::now(),
    }
}

/// An ARP request "who has 192.168.122.1? tell 192.168.122.10" as a Linux guest sends it.
const ARP_WHO_HAS_GW: [u8; 42] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00, 0x01,
    0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 192, 168, 122, 10,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 122, 1,
];

#[test]
fn answers_arp_for_its_address() {
    let mut gw = gateway();
    gw.handle_frame(t0(), &ARP_WHO_HAS_GW);
    let reply = gw.poll_transmit().expect("an ARP reply");
    assert!(gw.poll_transmit().is_none());
    assert_eq!(reply.len(), 60, "padded to the Ethernet minimum");
    assert_eq!(&reply[..6], &GUEST_MAC, "to the asker");
    assert_eq!(&reply[6..12], &GW_MAC.0);
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    let expected_arp: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // reply
        0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c, 192, 168, 122, 1, // sender: the gateway
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 192, 168, 122, 10, // target: the asker
    ];
    assert_eq!(&reply[14..42], &expected_arp);
    assert_eq!(gw.stats().arp_replies, 1);
}

#[test]
fn ignores_arp_for_other_addresses_and_bad_arp() {
    let mut gw = gateway();
    let mut other = ARP_WHO_HAS_GW;
    other[41] = 7;
    gw.handle_frame(t0(), &other);
    gw.handle_frame(t0(), &ARP_WHO_HAS_GW[..30]);
    assert!(gw.poll_transmit().is_none());
    assert_eq!(gw.stats().ignored, 1);
    assert_eq!(gw.stats().malformed, 1);
}

#[test]
fn gratuitous_arp_announces_the_gateway() {
    let mut gw = gateway();
    gw.announce();
    let f = gw.poll_transmit().expect("gratuitous ARP");
    assert_eq!(&f[..6], &[0xff; 6]);
    assert_eq!(&f[20..22], &[0x00, 0x01], "request");
    assert_eq!(&f[28..32], &[192, 168, 122, 1], "sender ip");
    assert_eq!(&f[38..42], &[192, 168, 122, 1], "target ip = sender ip");
}

fn echo_request(dst_mac: [u8; 6], dst_ip: [u8; 4]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(GUEST_MAC, dst_mac)
        .ipv4([192, 168, 122, 10], dst_ip, 64)
        .icmpv4_echo_request(0x1234, 7);
    let mut f = Vec::new();
    b.write(&mut f, b"abcdefgh").unwrap();
    f
}

#[test]
fn answers_ping_to_its_address() {
    let mut gw = gateway();
    gw.handle_frame(t0(), &echo_request(GW_MAC.0, [192, 168, 122, 1]));
    let reply = gw.poll_transmit().expect("echo reply");
    let p = etherparse::SlicedPacket::from_ethernet(&reply).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not ipv4")
    };
    assert_eq!(ip.header().source_addr(), Ipv4Addr::new(192, 168, 122, 1));
    assert_eq!(
        ip.header().destination_addr(),
        Ipv4Addr::new(192, 168, 122, 10)
    );
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!("not icmp")
    };
    let Icmpv4Type::EchoReply(echo) = icmp.icmp_type() else {
        panic!("not a reply")
    };
    assert_eq!((echo.id, echo.seq), (0x1234, 7));
    assert_eq!(icmp.payload(), b"abcdefgh");
    // checksums are valid: etherparse recomputes them on write; verify the ICMP one
    let sum = icmp.header().icmp_type.calc_checksum(icmp.payload());
    assert_eq!(sum, icmp.checksum());
    assert_eq!(gw.stats().echo_replies, 1);
}

#[test]
fn ignores_ping_to_other_hosts_and_frames_for_other_macs() {
    let mut gw = gateway();
    gw.handle_frame(t0(), &echo_request(GW_MAC.0, [192, 168, 122, 9]));
    gw.handle_frame(t0(), &echo_request([2, 0, 0, 0, 0, 1], [192, 168, 122, 1]));
    gw.handle_frame(t0(), &[0u8; 10]);
    assert!(gw.poll_transmit().is_none());
    assert_eq!(gw.stats().ignored, 2);
    assert_eq!(gw.stats().malformed, 1);
}

#[test]
fn queue_is_bounded() {
    let mut gw = gateway();
    for _ in 0..MAX_QUEUED + 10 {
        gw.handle_frame(t0(), &ARP_WHO_HAS_GW);
    }
    assert_eq!(gw.stats().queue_full, 10);
    assert_eq!(
        std::iter::from_fn(|| gw.poll_transmit()).count(),
        MAX_QUEUED
    );
}
