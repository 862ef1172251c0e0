//! Scenario tests of the sans-IO server: real DHCP message bytes in, bytes out, a fake
//! clock.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use proptest::prelude::*;

use crate::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const MAC1: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const MAC2: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02];
const MAC3: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x03];
const HOUR: u64 = 3600;

/// A DHCPDISCOVER from busybox 1.35 `udhcpc -x hostname:vm1` on 52:54:00:12:34:56,
/// the UDP payload cut from a capture (xid 7d02a236, no broadcast flag; options 53,
/// 57 = 576, 55 = [1 3 6 12 15 28 42], 12 = "vm1", 60 = "udhcp 1.35.0", 61 = 01+MAC).
const UDHCPC_DISCOVER: &str = "\
010106007d02a236000000000000000000000000000000000000000052540012\
3456000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000000\
000000000000000000000000638253633501013902024037070103060c0f1c2a\
0c03766d313c0c756468637020312e33352e303d0701525400123456ff000000\
000000000000000000000000";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 122, last)
}

fn config() -> ServerConfig {
    let mut c = ServerConfig::new(
        SERVER,
        24,
        vec![PoolRange {
            start: ip(10),
            end: ip(19),
            lease: LeaseDuration::Finite(Duration::from_secs(HOUR)),
        }],
    );
    c.domain = Some("example.test".into());
    c.mtu = Some(1400);
    c
}

const META: PacketMeta = PacketMeta {
    src_mac: MAC1,
    src_ip: Ipv4Addr::UNSPECIFIED,
    dst_ip: Ipv4Addr::BROADCAST,
};

/// A client message of `kind` from `mac`, broadcast flag clear.
fn msg(kind: MessageType, mac: [u8; 6]) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1234_5678, z, z, z, z, &mac);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

fn encode(m: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn decode(reply: &Reply) -> Message {
    Message::decode(&mut Decoder::new(&reply.payload)).unwrap()
}

/// The raw value of option `code` in an encoded message.
fn raw_opt(payload: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut rest = &payload[240..];
    while let [c, tail @ ..] = rest {
        match *c {
            0 => rest = tail,
            255 => return None,
            _ => {
                let len = usize::from(tail[0]);
                if *c == code {
                    return Some(tail[1..1 + len].to_vec());
                }
                rest = &tail[1 + len..];
            }
        }
    }
    None
}

fn u32_opt(payload: &[u8], code: u8) -> Option<u32> {
    raw_opt(payload, code).map(|v| u32::from_be_bytes(v.try_into().unwrap()))
}

struct Harness {
    server: Server,
    now: u64,
}

impl Harness {
    fn new(config: ServerConfig) -> Self {
        Self {
            server: Server::new(config, Vec::new(), at(1000)),
            now: 1000,
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now += secs;
        if self
            .server
            .poll_timeout()
            .is_some_and(|t| t <= at(self.now))
        {
            self.server.handle_timeout(at(self.now));
        }
    }

    fn send(&mut self, m: &Message) -> Option<Reply> {
        self.server.handle(at(self.now), &META, &encode(m)).unwrap()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    fn logs(&mut self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e.log_line("default"))
            .collect()
    }

    /// DISCOVER → the offered address (asserting an OFFER came back).
    fn discover(&mut self, mac: [u8; 6]) -> Ipv4Addr {
        let reply = self
            .send(&msg(MessageType::Discover, mac))
            .expect("an offer");
        let offer = decode(&reply);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        offer.yiaddr()
    }

    /// REQUEST in SELECTING state for `addr`.
    fn select(&mut self, mac: [u8; 6], addr: Ipv4Addr) -> Message {
        let mut m = msg(MessageType::Request, mac);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
        decode(&self.send(&m).expect("a reply"))
    }

    /// DISCOVER, OFFER, REQUEST, ACK: the leased address.
    fn dora(&mut self, mac: [u8; 6]) -> Ipv4Addr {
        let offered = self.discover(mac);
        let ack = self.select(mac, offered);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), offered);
        offered
    }

    /// RENEWING: REQUEST with ciaddr, unicast.
    fn renew(&mut self, mac: [u8; 6], addr: Ipv4Addr) -> Reply {
        let mut m = msg(MessageType::Request, mac);
        m.set_ciaddr(addr);
        self.send(&m).expect("a reply")
    }

    fn release(&mut self, mac: [u8; 6], addr: Ipv4Addr) {
        let mut m = msg(MessageType::Release, mac);
        m.set_ciaddr(addr);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        assert!(self.send(&m).is_none());
    }

    fn assert_nak(reply: &Reply, reason: &str) {
        let m = decode(reply);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(reply.dst, ReplyDest::Broadcast);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(raw_opt(&reply.payload, 56).unwrap(), reason.as_bytes());
    }
}

#[test]
fn busybox_udhcpc_discover_gets_an_offer() {
    let mut h = Harness::new(config());
    let payload = hex(UDHCPC_DISCOVER);
    assert_eq!(payload.len(), 300);
    let reply = h.server.handle(at(1000), &META, &payload).unwrap().unwrap();
    // No broadcast flag, no ciaddr: unicast to yiaddr/chaddr (RFC 2131 §4.1).
    assert_eq!(
        reply.dst,
        ReplyDest::Unicast {
            ip: ip(10),
            mac: MAC1
        }
    );
    let p = &reply.payload;
    assert!(p.len() >= 300);
    assert_eq!(&p[..4], &[2, 1, 6, 0], "BOOTREPLY, Ethernet");
    assert_eq!(&p[4..8], &[0x7d, 0x02, 0xa2, 0x36], "xid copied");
    assert_eq!(&p[16..20], &[192, 168, 122, 10], "yiaddr");
    assert_eq!(&p[28..34], &MAC1, "chaddr");
    assert_eq!(&p[236..240], &[99, 130, 83, 99], "magic cookie");
    assert_eq!(raw_opt(p, 53).unwrap(), [2], "OFFER");
    assert_eq!(
        raw_opt(p, 12).unwrap(),
        b"vm1",
        "the client's own host name"
    );
    assert_eq!(
        raw_opt(p, 61).unwrap(),
        [1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]
    );
    assert_eq!(
        h.events(),
        vec![
            Event::Discover {
                mac: MAC1,
                hostname: Some("vm1".into())
            },
            Event::Offer {
                ip: ip(10),
                mac: MAC1
            },
        ]
    );
    assert_eq!(h.server.stats().received.discover, 1);
    assert_eq!(h.server.stats().sent.offer, 1);
}

#[test]
fn full_dora_with_options() {
    let mut h = Harness::new(config());
    let mut discover = msg(MessageType::Discover, MAC1);
    discover.set_flags(Flags::default().set_broadcast());
    discover
        .opts_mut()
        .insert(DhcpOption::Hostname("vm1.example.test".into()));
    let offer = h.send(&discover).unwrap();
    assert_eq!(offer.dst, ReplyDest::Broadcast, "broadcast bit set");
    let p = &offer.payload;
    assert_eq!(raw_opt(p, 1).unwrap(), [255, 255, 255, 0]);
    assert_eq!(raw_opt(p, 3).unwrap(), [192, 168, 122, 1]);
    assert_eq!(raw_opt(p, 6).unwrap(), [192, 168, 122, 1]);
    assert_eq!(raw_opt(p, 12).unwrap(), b"vm1", "first label only");
    assert_eq!(raw_opt(p, 15).unwrap(), b"example.test");
    assert_eq!(raw_opt(p, 26).unwrap(), [0x05, 0x78]);
    assert_eq!(raw_opt(p, 28).unwrap(), [192, 168, 122, 255]);
    assert_eq!(u32_opt(p, 51), Some(3600));
    assert_eq!(raw_opt(p, 54).unwrap(), [192, 168, 122, 1]);
    assert_eq!(u32_opt(p, 58), Some(1800));
    assert_eq!(u32_opt(p, 59), Some(3150));
    // RFC 3397: DNS wire format.
    assert_eq!(raw_opt(p, 119).unwrap(), b"\x07example\x04test\x00");
    assert_eq!(raw_opt(p, 61), None, "no client id sent, none echoed");
    let offered = decode(&offer).yiaddr();
    assert_eq!(offered, ip(10));

    let mut request = msg(MessageType::Request, MAC1);
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER));
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offered));
    request
        .opts_mut()
        .insert(DhcpOption::Hostname("vm1".into()));
    let ack = h.send(&request).unwrap();
    assert_eq!(
        ack.dst,
        ReplyDest::Unicast {
            ip: ip(10),
            mac: MAC1
        }
    );
    let m = decode(&ack);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.yiaddr(), ip(10));
    assert_eq!(u32_opt(&ack.payload, 51), Some(3600));

    let lease = Lease {
        mac: MAC1,
        client_id: None,
        ip: ip(10),
        hostname: Some("vm1".into()),
        expires: Some(at(1000 + HOUR)),
    };
    assert_eq!(
        h.server.leases().cloned().collect::<Vec<_>>(),
        vec![lease.clone()]
    );
    assert!(h.server.is_assigned(ip(10)));
    assert!(!h.server.is_assigned(ip(11)));
    assert_eq!(h.server.poll_timeout(), Some(at(1000 + HOUR)));
    let events = h.events();
    assert!(events.contains(&Event::LeaseGranted(lease)));
    let logs: Vec<_> = events
        .iter()
        .filter_map(|e| e.log_line("default"))
        .collect();
    assert_eq!(
        logs,
        [
            "DHCPDISCOVER(default) 52:54:00:12:34:56",
            "DHCPOFFER(default) 192.168.122.10 52:54:00:12:34:56",
            "DHCPREQUEST(default) 192.168.122.10 52:54:00:12:34:56",
            "DHCPACK(default) 192.168.122.10 52:54:00:12:34:56 vm1",
        ]
    );
    let s = h.server.stats();
    assert_eq!((s.received.discover, s.received.request), (1, 1));
    assert_eq!((s.sent.offer, s.sent.ack), (1, 1));

    // A second client gets the next address; the first keeps its own on a new DISCOVER.
    assert_eq!(h.dora(MAC2), ip(11));
    assert_eq!(h.discover(MAC1), ip(10));
}

#[test]
fn sticky_address_after_release_and_expiry() {
    let mut h = Harness::new(config());
    assert_eq!(h.dora(MAC1), ip(10));
    assert_eq!(h.dora(MAC2), ip(11));
    h.release(MAC1, ip(10));
    assert!(h.server.lease(ip(10)).is_none());
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::LeaseReleased(l) if l.ip == ip(10))));
    // A newcomer does not take the released address while .12 is free ...
    assert_eq!(h.dora(MAC3), ip(12));
    // ... and MAC1 gets its old one back.
    assert_eq!(h.dora(MAC1), ip(10));

    // Expiry: MAC2 lets its lease run out, then comes back.
    h.advance(HOUR + 1);
    assert!(h.server.leases().next().is_none());
    assert_eq!(h.dora(MAC3), ip(12));
    assert_eq!(h.dora(MAC2), ip(11));
}

#[test]
fn sticky_expired_lease_loaded_from_the_database() {
    let old = Lease {
        mac: MAC1,
        client_id: None,
        ip: ip(15),
        hostname: None,
        expires: Some(at(900)),
    };
    let live = Lease {
        mac: MAC2,
        ip: ip(10),
        expires: Some(at(5000)),
        ..old.clone()
    };
    let mut h = Harness {
        server: Server::new(config(), vec![old.clone(), live.clone()], at(1000)),
        now: 1000,
    };
    assert_eq!(h.events(), vec![Event::LeaseExpired(old)]);
    assert_eq!(h.server.leases().cloned().collect::<Vec<_>>(), vec![live]);
    assert_eq!(h.discover(MAC3), ip(11));
    assert_eq!(h.discover(MAC1), ip(15));
}

#[test]
fn requested_address_is_honoured_when_free() {
    let mut h = Harness::new(config());
    let mut d = msg(MessageType::Discover, MAC1);
    d.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(17)));
    assert_eq!(decode(&h.send(&d).unwrap()).yiaddr(), ip(17));
    // Out of the ranges: ignored.
    let mut d = msg(MessageType::Discover, MAC2);
    d.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(100)));
    assert_eq!(decode(&h.send(&d).unwrap()).yiaddr(), ip(10));
    // Offered to someone else a moment ago: not given twice.
    let mut d = msg(MessageType::Discover, MAC3);
    d.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(17)));
    assert_eq!(decode(&h.send(&d).unwrap()).yiaddr(), ip(11));
}

#[test]
fn reservation_by_mac_with_name_and_lease_time() {
    let mut c = config();
    c.hosts.push(Reservation {
        mac: Some(MAC2),
        name: Some("db".into()),
        ip: Some(ip(50)), // Outside the range: only for its owner.
        lease: LeaseDuration::Finite(Duration::from_secs(2 * HOUR)),
        ..Reservation::default()
    });
    let mut h = Harness::new(c);
    assert!(h.server.is_assigned(ip(50)));
    // Another client asking for the reserved address does not get it.
    let mut d = msg(MessageType::Discover, MAC1);
    d.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(50)));
    assert_eq!(decode(&h.send(&d).unwrap()).yiaddr(), ip(10));
    let mut r = msg(MessageType::Request, MAC1);
    r.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(50)));
    Harness::assert_nak(&h.send(&r).unwrap(), "address reserved");

    let mut d = msg(MessageType::Discover, MAC2);
    d.opts_mut().insert(DhcpOption::Hostname("whatever".into()));
    let offer = h.send(&d).unwrap();
    assert_eq!(decode(&offer).yiaddr(), ip(50));
    assert_eq!(raw_opt(&offer.payload, 12).unwrap(), b"db");
    assert_eq!(u32_opt(&offer.payload, 51), Some(7200));
    let ack = h.select(MAC2, ip(50));
    assert_eq!(ack.yiaddr(), ip(50));
    let lease = h.server.lease(ip(50)).unwrap();
    assert_eq!(lease.hostname.as_deref(), Some("db"));
    assert_eq!(lease.expires, Some(at(1000 + 2 * HOUR)));
}

#[test]
fn reservation_by_client_id() {
    let id = vec![0xff, 0, 0, 0, 1, 0, 1, 0x2a];
    let mut c = config();
    c.hosts.push(Reservation {
        client_id: Some(id.clone()),
        name: Some("win".into()),
        ip: Some(ip(15)),
        lease: LeaseDuration::Infinite,
        ..Reservation::default()
    });
    let mut h = Harness::new(c);
    // Same MAC, no client id: not the reserved host.
    assert_eq!(h.discover(MAC1), ip(10));
    let mut d = msg(MessageType::Discover, MAC1);
    d.opts_mut()
        .insert(DhcpOption::ClientIdentifier(id.clone()));
    let offer = h.send(&d).unwrap();
    assert_eq!(decode(&offer).yiaddr(), ip(15));
    assert_eq!(raw_opt(&offer.payload, 12).unwrap(), b"win");
    assert_eq!(raw_opt(&offer.payload, 61).unwrap(), id, "RFC 6842 echo");
    // Infinite: option 51 = 0xffffffff, no T1/T2.
    assert_eq!(u32_opt(&offer.payload, 51), Some(0xffff_ffff));
    assert_eq!(u32_opt(&offer.payload, 58), None);
    assert_eq!(u32_opt(&offer.payload, 59), None);
    let mut r = msg(MessageType::Request, MAC1);
    r.opts_mut()
        .insert(DhcpOption::ClientIdentifier(id.clone()));
    r.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    r.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(15)));
    assert_eq!(
        decode(&h.send(&r).unwrap()).opts().msg_type(),
        Some(MessageType::Ack)
    );
    let lease = h.server.lease(ip(15)).unwrap();
    assert_eq!(lease.client_id.as_deref(), Some(&id[..]));
    assert_eq!(lease.expires, None);
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn reservation_added_live_wins_at_the_next_renewal() {
    let mut h = Harness::new(config());
    assert_eq!(h.dora(MAC1), ip(10));
    let mut c = config();
    c.hosts.push(Reservation {
        mac: Some(MAC2),
        ip: Some(ip(10)),
        ..Reservation::default()
    });
    h.server.set_config(c);
    assert!(h.server.is_assigned(ip(10)));
    h.events();
    h.advance(HOUR / 2);
    let nak = h.renew(MAC1, ip(10));
    Harness::assert_nak(&nak, "address reserved");
    assert!(h.server.lease(ip(10)).is_none());
    let logs = h.logs();
    assert_eq!(
        logs,
        [
            "DHCPREQUEST(default) 192.168.122.10 52:54:00:12:34:56",
            "DHCPNAK(default) 192.168.122.10 52:54:00:12:34:56 address reserved",
        ]
    );
    // The owner gets it; the old holder moves on.
    assert_eq!(h.dora(MAC2), ip(10));
    assert_eq!(h.dora(MAC1), ip(11));

    // A reservation for a client holding another address moves it at renewal.
    let mut c = h.server.config().clone();
    c.hosts.push(Reservation {
        mac: Some(MAC1),
        ip: Some(ip(18)),
        ..Reservation::default()
    });
    h.server.set_config(c);
    Harness::assert_nak(&h.renew(MAC1, ip(11)), "static lease available");
    assert_eq!(h.dora(MAC1), ip(18));
}

#[test]
fn renew_and_rebind_timing() {
    let mut h = Harness::new(config());
    assert_eq!(h.dora(MAC1), ip(10));
    // T1 = 1800 s: RENEWING, unicast to the server; the reply goes to ciaddr.
    h.advance(1800);
    let reply = h.renew(MAC1, ip(10));
    assert_eq!(
        reply.dst,
        ReplyDest::Unicast {
            ip: ip(10),
            mac: MAC1
        }
    );
    let ack = decode(&reply);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.ciaddr(), ip(10));
    assert_eq!(ack.yiaddr(), ip(10));
    assert_eq!(u32_opt(&reply.payload, 58), Some(1800));
    assert_eq!(u32_opt(&reply.payload, 59), Some(3150));
    assert_eq!(
        h.server.lease(ip(10)).unwrap().expires,
        Some(at(2800 + HOUR))
    );
    assert_eq!(h.server.poll_timeout(), Some(at(2800 + HOUR)));
    // T2 = 3150 s later: REBINDING, broadcast with ciaddr set; still unicast to ciaddr.
    h.advance(3150);
    let mut m = msg(MessageType::Request, MAC1);
    m.set_ciaddr(ip(10));
    m.set_flags(Flags::default().set_broadcast());
    let reply = h.send(&m).unwrap();
    assert_eq!(
        reply.dst,
        ReplyDest::Unicast {
            ip: ip(10),
            mac: MAC1
        }
    );
    assert_eq!(
        h.server.lease(ip(10)).unwrap().expires,
        Some(at(5950 + HOUR))
    );
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::LeaseGranted(l) if l.ip == ip(10))));
    assert_eq!(h.server.leases().count(), 1);
}

#[test]
fn expiry_frees_the_address_at_poll_timeout() {
    let mut h = Harness::new(config());
    assert_eq!(h.dora(MAC1), ip(10));
    h.events();
    let t = h.server.poll_timeout().unwrap();
    assert_eq!(t, at(1000 + HOUR));
    h.server.handle_timeout(t - Duration::from_secs(1));
    assert!(h.server.is_assigned(ip(10)));
    h.server.handle_timeout(t);
    assert!(!h.server.is_assigned(ip(10)));
    assert_eq!(h.server.poll_timeout(), None);
    let events = h.events();
    assert!(matches!(events.as_slice(), [Event::LeaseExpired(l)] if l.ip == ip(10)));
    // A renewal after expiry is granted again while the address is free (dnsmasq).
    h.now = 1000 + HOUR + 10;
    let ack = decode(&h.renew(MAC1, ip(10)));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
}

#[test]
fn init_reboot() {
    let mut h = Harness::new(config());
    assert_eq!(h.dora(MAC1), ip(10));
    // Its own address: ACK.
    let mut m = msg(MessageType::Request, MAC1);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(10)));
    assert_eq!(
        decode(&h.send(&m).unwrap()).opts().msg_type(),
        Some(MessageType::Ack)
    );
    // Moved from another network: NAK, broadcast.
    let mut m = msg(MessageType::Request, MAC2);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 5)));
    Harness::assert_nak(&h.send(&m).unwrap(), "wrong network");
    assert_eq!(
        h.logs().last().unwrap(),
        "DHCPNAK(default) 10.0.0.5 52:54:00:aa:bb:02 wrong network"
    );
    assert_eq!(h.server.stats().sent.nak, 1);
}

#[test]
fn request_for_a_foreign_or_taken_address_is_refused() {
    let mut h = Harness::new(config());
    assert_eq!(h.dora(MAC1), ip(10));
    // Taken by MAC1.
    let reply = h.send(&{
        let mut m = msg(MessageType::Request, MAC2);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(10)));
        m
    });
    Harness::assert_nak(&reply.unwrap(), "address in use");
    // In the subnet but outside the ranges, the server's own, a renewal of a taken one.
    let mut m = msg(MessageType::Request, MAC2);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(200)));
    Harness::assert_nak(&h.send(&m).unwrap(), "address not available");
    let mut m = msg(MessageType::Request, MAC2);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(SERVER));
    Harness::assert_nak(&h.send(&m).unwrap(), "address not available");
    Harness::assert_nak(&h.renew(MAC2, ip(10)), "address in use");
    assert_eq!(
        h.server.lease(ip(10)).unwrap().mac,
        MAC1,
        "MAC1 keeps its lease"
    );
    assert_eq!(h.server.leases().count(), 1);
}

#[test]
fn request_for_another_server_is_dropped_quietly() {
    let mut h = Harness::new(config());
    assert_eq!(h.discover(MAC1), ip(10));
    let mut m = msg(MessageType::Request, MAC1);
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(
            192, 168, 122, 254,
        )));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(55)));
    assert!(h.send(&m).is_none());
    assert_eq!(h.server.stats().other_server, 1);
    // The offer is withdrawn: the next client may have .10.
    assert_eq!(h.discover(MAC2), ip(10));
}

#[test]
fn decline_quarantines_then_the_address_returns() {
    let mut c = config();
    c.ranges[0].end = ip(11);
    c.decline_quarantine = Duration::from_secs(300);
    let mut h = Harness::new(c);
    assert_eq!(h.dora(MAC1), ip(10));
    h.events();
    let mut m = msg(MessageType::Decline, MAC1);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(10)));
    assert!(h.send(&m).is_none());
    let events = h.events();
    assert_eq!(
        events[0],
        Event::Decline {
            ip: ip(10),
            mac: MAC1
        }
    );
    assert!(matches!(&events[1], Event::LeaseReleased(l) if l.ip == ip(10)));
    assert!(h.server.lease(ip(10)).is_none());
    assert!(h.server.is_assigned(ip(10)), "quarantined");
    assert_eq!(h.server.poll_timeout(), Some(at(1300)));
    // MAC1 gets another address; with .11 taken the pool is empty until the quarantine ends.
    assert_eq!(h.dora(MAC1), ip(11));
    assert!(h.send(&msg(MessageType::Discover, MAC2)).is_none());
    // A spoofed DECLINE for an address the sender does not hold does nothing.
    let mut m = msg(MessageType::Decline, MAC2);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(11)));
    assert!(h.send(&m).is_none());
    assert!(h.server.lease(ip(11)).is_some());
    h.advance(300);
    assert!(!h.server.is_assigned(ip(10)));
    assert_eq!(h.dora(MAC2), ip(10));
    assert_eq!(h.server.stats().received.decline, 2);
}

#[test]
fn addresses_seen_in_use_on_the_segment_are_not_offered() {
    let mut c = config();
    c.ranges[0].end = ip(11);
    let mut h = Harness::new(c);
    // MAC3 uses .10 statically (the gateway saw it in an ARP packet): no one else is
    // offered it, without dnsmasq's ping delay.
    h.server.note_in_use(at(h.now), None, ip(10), MAC3);
    h.server
        .note_in_use(at(h.now), None, Ipv4Addr::new(10, 0, 0, 1), MAC3); // not ours: ignored
    assert_eq!(h.dora(MAC1), ip(11));
    assert!(
        h.send(&msg(MessageType::Discover, MAC2)).is_none(),
        "pool exhausted"
    );
    // a request for it is refused
    let mut m = msg(MessageType::Request, MAC2);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(10)));
    Harness::assert_nak(&h.send(&m).expect("a NAK"), "address in use");
    // the station using it may lease it
    assert_eq!(h.dora(MAC3), ip(10));
    h.release(MAC3, ip(10));
    // seen again after the release; forgotten SEEN_HOLD after it was last seen
    h.server.note_in_use(at(h.now), None, ip(10), MAC3);
    h.advance(SEEN_HOLD.as_secs() - 1);
    assert!(h.send(&msg(MessageType::Discover, MAC2)).is_none());
    h.advance(1);
    assert_eq!(h.dora(MAC2), ip(10));
    // the lease holder's own traffic does not mark its address
    h.server.note_in_use(at(h.now), None, ip(10), MAC2);
    h.advance(60);
    let ack = decode(&h.renew(MAC2, ip(10)));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
}

#[test]
fn release_returns_the_address() {
    let mut c = config();
    c.ranges[0].end = ip(10);
    let mut h = Harness::new(c);
    assert_eq!(h.dora(MAC1), ip(10));
    assert!(h.send(&msg(MessageType::Discover, MAC2)).is_none());
    // A RELEASE from someone else, or naming another server, does nothing.
    let mut m = msg(MessageType::Release, MAC2);
    m.set_ciaddr(ip(10));
    assert!(h.send(&m).is_none());
    assert!(h.server.lease(ip(10)).is_some());
    h.events();
    h.release(MAC1, ip(10));
    let events = h.events();
    assert_eq!(
        events[0],
        Event::Release {
            ip: ip(10),
            mac: MAC1
        }
    );
    assert!(matches!(&events[1], Event::LeaseReleased(l) if l.ip == ip(10) && l.mac == MAC1));
    assert_eq!(
        events[0].log_line("default").unwrap(),
        "DHCPRELEASE(default) 192.168.122.10 52:54:00:12:34:56"
    );
    assert_eq!(h.dora(MAC2), ip(10));
}

#[test]
fn pool_exhaustion_sends_nothing_and_reports_it() {
    let mut c = config();
    c.ranges[0].end = ip(11);
    let mut h = Harness::new(c);
    assert_eq!(h.dora(MAC1), ip(10));
    assert_eq!(h.dora(MAC2), ip(11));
    h.events();
    assert!(h.send(&msg(MessageType::Discover, MAC3)).is_none());
    assert_eq!(
        h.events(),
        vec![
            Event::Discover {
                mac: MAC3,
                hostname: None
            },
            Event::PoolExhausted { mac: MAC3 },
        ]
    );
    assert_eq!(
        Event::PoolExhausted { mac: MAC3 }
            .log_line("default")
            .unwrap(),
        "DHCP(default) no address available for 52:54:00:aa:bb:03"
    );
    assert_eq!(h.server.stats().pool_exhausted, 1);
    // The holders still renew.
    assert_eq!(
        decode(&h.renew(MAC1, ip(10))).opts().msg_type(),
        Some(MessageType::Ack)
    );
}

#[test]
fn offers_do_not_exhaust_the_pool() {
    let mut c = config();
    c.ranges[0].end = ip(11);
    let mut h = Harness::new(c);
    assert_eq!(h.discover(MAC1), ip(10));
    assert_eq!(h.discover(MAC2), ip(11));
    // Both addresses are held for pending offers; a third client still gets one.
    assert_eq!(h.discover(MAC3), ip(10));
    // First to request wins; the other gets a NAK and starts over.
    assert_eq!(
        h.select(MAC3, ip(10)).opts().msg_type(),
        Some(MessageType::Ack)
    );
    let nak = h.select(MAC1, ip(10));
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut h = Harness::new(config());
    let mut m = msg(MessageType::Inform, MAC1);
    m.set_ciaddr(ip(77));
    let reply = h.send(&m).unwrap();
    assert_eq!(
        reply.dst,
        ReplyDest::Unicast {
            ip: ip(77),
            mac: MAC1
        }
    );
    let ack = decode(&reply);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr(), ip(77));
    assert_eq!(
        u32_opt(&reply.payload, 51),
        None,
        "RFC 2131 §4.3.5: no lease time"
    );
    assert_eq!(raw_opt(&reply.payload, 3).unwrap(), [192, 168, 122, 1]);
    assert_eq!(raw_opt(&reply.payload, 6).unwrap(), [192, 168, 122, 1]);
    assert!(h.server.leases().next().is_none());
    assert_eq!(
        h.logs(),
        ["DHCPINFORM(default) 192.168.122.77 52:54:00:12:34:56"]
    );
    assert_eq!(h.server.stats().received.inform, 1);
    assert_eq!(h.server.stats().sent.ack, 1);
}

#[test]
fn bad_input_is_dropped_and_counted() {
    let mut h = Harness::new(config());
    let good = hex(UDHCPC_DISCOVER);
    let mut cases: Vec<(Vec<u8>, DropReason)> = vec![
        (Vec::new(), DropReason::Truncated),
        (good[..239].to_vec(), DropReason::Truncated),
        // Cut inside option 55's value.
        (good[..250].to_vec(), DropReason::Truncated),
    ];
    let mut bad_cookie = good.clone();
    bad_cookie[236] = 0;
    cases.push((bad_cookie, DropReason::Malformed));
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    cases.push((reply_op, DropReason::NotRequest));
    let mut htype = good.clone();
    htype[1] = 6;
    cases.push((htype, DropReason::BadHardware));
    let mut hlen = good.clone();
    hlen[2] = 200;
    cases.push((hlen, DropReason::BadHardware));
    let mut relayed = good.clone();
    relayed[24..28].copy_from_slice(&[10, 0, 0, 1]);
    cases.push((relayed, DropReason::Relayed));
    // Option 53 turned into a pad-free unknown option 250: no message type.
    let mut no_type = good.clone();
    no_type[240] = 250;
    cases.push((no_type, DropReason::NoMessageType));
    let mut offer = good.clone();
    offer[242] = 2;
    cases.push((offer, DropReason::UnexpectedMessageType));
    // A REQUEST naming no address at all.
    cases.push((
        encode(&msg(MessageType::Request, MAC1)),
        DropReason::NoRequestedAddress,
    ));

    for (bytes, reason) in &cases {
        assert_eq!(
            h.server.handle(at(1000), &META, bytes),
            Err(*reason),
            "{}",
            reason.as_str()
        );
    }
    let s = h.server.stats();
    assert_eq!(s.dropped(DropReason::Truncated), 3);
    assert_eq!(s.dropped(DropReason::BadHardware), 2);
    assert_eq!(s.dropped(DropReason::Malformed), 1);
    assert_eq!(s.dropped_total(), u64::try_from(cases.len()).unwrap());
    assert!(h.server.leases().next().is_none());
    assert_eq!(DropReason::Truncated.to_string(), "truncated message");
}

#[test]
fn options_that_trip_the_decoder_are_ignored() {
    // dhcproto 0.15 debug-asserts on these lengths (BLQ base time 152 must be 4 bytes,
    // rapid commit 80 empty, client FQDN 81 at least 3, BLQ status 151 at least 1).
    let mut h = Harness::new(config());
    let mut d = hex(UDHCPC_DISCOVER);
    d[256..261].copy_from_slice(&[152, 3, b'v', b'm', b'1']); // Was option 12.
    d[285..292].copy_from_slice(&[80, 1, 0, 81, 1, 0, 151]); // Was option 61.
    d[292..294].copy_from_slice(&[0, 255]);
    let reply = h.server.handle(at(1000), &META, &d).unwrap().unwrap();
    assert_eq!(decode(&reply).yiaddr(), ip(10));
}

#[test]
fn minimum_lease_is_two_minutes() {
    let mut c = config();
    c.ranges[0].lease = LeaseDuration::Finite(Duration::from_secs(30));
    let mut h = Harness::new(c);
    let offer = h.send(&msg(MessageType::Discover, MAC1)).unwrap();
    assert_eq!(u32_opt(&offer.payload, 51), Some(120));
    assert_eq!(u32_opt(&offer.payload, 58), Some(60));
    assert_eq!(u32_opt(&offer.payload, 59), Some(105));
    h.select(MAC1, ip(10));
    assert_eq!(h.server.lease(ip(10)).unwrap().expires, Some(at(1120)));
}

#[test]
fn infinite_range_lease() {
    let mut c = config();
    c.ranges[0].lease = LeaseDuration::Infinite;
    let mut h = Harness::new(c);
    let ack = h.select(MAC1, ip(12));
    assert_eq!(ack.yiaddr(), ip(12));
    assert_eq!(
        ack.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(u32::MAX))
    );
    assert_eq!(h.server.lease(ip(12)).unwrap().expires, None);
    h.advance(100 * 365 * 24 * HOUR);
    assert!(h.server.lease(ip(12)).is_some());
}

#[test]
fn bootp_and_isolated_network_options() {
    let mut c = config();
    c.router = None;
    c.dns_servers.clear();
    c.domain = None;
    c.mtu = None;
    c.bootp = Some(BootpConfig {
        file: "pxelinux.0".into(),
        server: Some(ip(2)),
    });
    let mut h = Harness::new(c);
    let offer = h.send(&msg(MessageType::Discover, MAC1)).unwrap();
    let m = decode(&offer);
    assert_eq!(m.siaddr(), ip(2));
    let p = &offer.payload;
    assert_eq!(&p[108..119], b"pxelinux.0\0", "file");
    assert_eq!(raw_opt(p, 66).unwrap(), b"192.168.122.2");
    assert_eq!(raw_opt(p, 67).unwrap(), b"pxelinux.0");
    for absent in [3, 6, 15, 26, 119] {
        assert_eq!(raw_opt(p, absent), None, "option {absent}");
    }
}

#[test]
fn from_network_drives_a_server() {
    let net = vnet_config::Network::from_xml(
        "<network><name>lab</name><forward mode='nat'/>
           <ip address='10.0.5.1' prefix='24'>
             <dhcp>
               <range start='10.0.5.10' end='10.0.5.99'/>
               <host mac='52:54:00:12:34:56' name='web' ip='10.0.5.5'/>
             </dhcp>
           </ip></network>",
    )
    .unwrap();
    let c = ServerConfig::from_network(&net).unwrap();
    let mut server = Server::new(c, Vec::new(), at(0));
    let reply = server
        .handle(at(0), &META, &hex(UDHCPC_DISCOVER))
        .unwrap()
        .unwrap();
    let offer = decode(&reply);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 5, 5));
    assert_eq!(raw_opt(&reply.payload, 12).unwrap(), b"web");
    assert_eq!(raw_opt(&reply.payload, 3).unwrap(), [10, 0, 5, 1]);
}

// --- Properties -------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Discover {
        client: u8,
        requested: Option<u8>,
    },
    Select {
        client: u8,
        addr: u8,
    },
    InitReboot {
        client: u8,
        addr: u8,
    },
    Renew {
        client: u8,
        addr: u8,
    },
    Release {
        client: u8,
        addr: u8,
    },
    Decline {
        client: u8,
        addr: u8,
    },
    Advance {
        secs: u16,
    },
    Reserve {
        client: u8,
        addr: u8,
    },
    /// The gateway saw `client` on `port` use `addr` (ARP).
    Seen {
        client: u8,
        addr: u8,
        port: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0u8..8;
    let addr = 0u8..32; // .0–.31: the range is .10–.17, the rest is around it.
    prop_oneof![
        (client.clone(), proptest::option::of(addr.clone()))
            .prop_map(|(client, requested)| Op::Discover { client, requested }),
        (client.clone(), addr.clone()).prop_map(|(client, addr)| Op::Select { client, addr }),
        (client.clone(), addr.clone()).prop_map(|(client, addr)| Op::InitReboot { client, addr }),
        (client.clone(), addr.clone()).prop_map(|(client, addr)| Op::Renew { client, addr }),
        (client.clone(), addr.clone()).prop_map(|(client, addr)| Op::Release { client, addr }),
        (client.clone(), addr.clone()).prop_map(|(client, addr)| Op::Decline { client, addr }),
        (0u16..5000).prop_map(|secs| Op::Advance { secs }),
        (client.clone(), addr.clone()).prop_map(|(client, addr)| Op::Reserve { client, addr }),
        (client, addr, 0u8..3).prop_map(|(client, addr, port)| Op::Seen { client, addr, port }),
    ]
}

fn client_mac(c: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, c]
}

/// Whether `addr` may be leased to `mac` under `config`: in the ranges and not reserved
/// for someone else, or reserved for `mac`.
fn allowed(config: &ServerConfig, addr: Ipv4Addr, mac: [u8; 6]) -> bool {
    let reserved: Vec<_> = config.hosts.iter().filter(|h| h.ip == Some(addr)).collect();
    if reserved.iter().any(|h| h.mac == Some(mac)) {
        return true;
    }
    reserved.is_empty() && config.in_ranges(addr) && addr != config.server_ip
}

fn check_invariants(server: &Server, config: &ServerConfig) -> Result<(), TestCaseError> {
    let mut seen = std::collections::HashSet::new();
    let mut clients = std::collections::HashSet::new();
    for l in server.leases() {
        prop_assert!(seen.insert(l.ip), "two leases for {}", l.ip);
        prop_assert!(clients.insert(l.mac), "two leases for one client");
        prop_assert!(config.in_subnet(l.ip));
    }
    prop_assert!(server.leases().count() <= config.lease_limit());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The server never hands one address to two clients at once, and never offers or
    /// grants an address outside the ranges (or another client's reservation).
    #[test]
    fn no_double_leases_and_no_offers_outside_the_ranges(ops in proptest::collection::vec(op(), 1..80)) {
        let mut config = ServerConfig::new(SERVER, 24, vec![PoolRange {
            start: ip(10),
            end: ip(17),
            lease: LeaseDuration::Finite(Duration::from_secs(600)),
        }]);
        config.decline_quarantine = Duration::from_secs(300);
        let mut server = Server::new(config.clone(), Vec::new(), at(0));
        server.set_port_cap(Some(3));
        let mut now = 0u64;
        for op in ops {
            let (kind, client, m) = match op {
                Op::Advance { secs } => {
                    now += u64::from(secs);
                    server.handle_timeout(at(now));
                    check_invariants(&server, &config)?;
                    continue;
                }
                Op::Reserve { client, addr } => {
                    config.hosts.retain(|h| h.mac != Some(client_mac(client)) && h.ip != Some(ip(addr)));
                    config.hosts.push(Reservation {
                        mac: Some(client_mac(client)),
                        ip: Some(ip(addr)),
                        ..Reservation::default()
                    });
                    server.set_config(config.clone());
                    continue;
                }
                Op::Seen { client, addr, port } => {
                    // ports 0 and 1, and one the driver did not name; the cap is 3
                    let port = (port < 2).then_some(u32::from(port));
                    server.note_in_use(at(now), port, ip(addr), client_mac(client));
                    server.seen().check(3);
                    continue;
                }
                Op::Discover { client, requested } => {
                    let mut m = msg(MessageType::Discover, client_mac(client));
                    if let Some(a) = requested {
                        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(a)));
                    }
                    (MessageType::Discover, client, m)
                }
                Op::Select { client, addr } => {
                    let mut m = msg(MessageType::Request, client_mac(client));
                    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
                    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(addr)));
                    (MessageType::Request, client, m)
                }
                Op::InitReboot { client, addr } => {
                    let mut m = msg(MessageType::Request, client_mac(client));
                    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(addr)));
                    (MessageType::Request, client, m)
                }
                Op::Renew { client, addr } => {
                    let mut m = msg(MessageType::Request, client_mac(client));
                    m.set_ciaddr(ip(addr));
                    (MessageType::Request, client, m)
                }
                Op::Release { client, addr } => {
                    let mut m = msg(MessageType::Release, client_mac(client));
                    m.set_ciaddr(ip(addr));
                    (MessageType::Release, client, m)
                }
                Op::Decline { client, addr } => {
                    let mut m = msg(MessageType::Decline, client_mac(client));
                    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(addr)));
                    (MessageType::Decline, client, m)
                }
            };
            let mac = client_mac(client);
            let before: Vec<Lease> = server.leases().cloned().collect();
            let reply = server.handle(at(now), &META, &encode(&m)).unwrap();
            if let Some(reply) = reply {
                let r = decode(&reply);
                match r.opts().msg_type() {
                    Some(MessageType::Offer) => {
                        prop_assert_eq!(kind, MessageType::Discover);
                        prop_assert!(allowed(&config, r.yiaddr(), mac), "offered {}", r.yiaddr());
                        prop_assert!(
                            before.iter().all(|l| l.ip != r.yiaddr() || l.mac == mac),
                            "offered {} leased to another", r.yiaddr()
                        );
                    }
                    Some(MessageType::Ack) => {
                        prop_assert!(allowed(&config, r.yiaddr(), mac), "granted {}", r.yiaddr());
                        prop_assert_eq!(server.lease(r.yiaddr()).map(|l| l.mac), Some(mac));
                    }
                    Some(MessageType::Nak) => prop_assert_eq!(reply.dst, ReplyDest::Broadcast),
                    other => prop_assert!(false, "unexpected reply {:?}", other),
                }
            }
            check_invariants(&server, &config)?;
        }
    }

    /// Arbitrary bytes (and mutations of a real DISCOVER) never panic, and whatever is
    /// accepted keeps the lease table sound.
    #[test]
    fn arbitrary_input_is_handled(
        raw in proptest::collection::vec(any::<u8>(), 0..600),
        flips in proptest::collection::vec((240usize..300, any::<u8>()), 0..8),
    ) {
        let config = config();
        let mut server = Server::new(config.clone(), Vec::new(), at(0));
        let _ = server.handle(at(0), &META, &raw);
        let mut d = hex(UDHCPC_DISCOVER);
        for (i, b) in flips {
            d[i] = b;
        }
        let _ = server.handle(at(1), &META, &d);
        let mut r = d.clone();
        r[242] = 3; // As a REQUEST.
        let _ = server.handle(at(2), &META, &r);
        check_invariants(&server, &config)?;
        for l in server.leases() {
            prop_assert!(config.in_ranges(l.ip));
        }
    }
}

#[test]
fn a_port_gets_at_most_its_cap_of_clients() {
    let mut s = Server::new(config(), vec![], at(0));
    s.set_port_cap(Some(2));
    let discover = |s: &mut Server, mac: [u8; 6], port: u32, t: u64| {
        s.handle_from(
            at(t),
            &META,
            Some(port),
            &encode(&msg(MessageType::Discover, mac)),
        )
        .unwrap()
    };
    let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
    assert!(discover(&mut s, mac(1), 7, 0).is_some());
    assert!(discover(&mut s, mac(2), 7, 0).is_some());
    // a third client MAC from the same port: ignored, counted
    assert!(discover(&mut s, mac(3), 7, 0).is_none());
    assert_eq!(s.stats().port_capped, 1);
    // the first two are still served; another port is not affected
    assert!(discover(&mut s, mac(1), 7, 1).is_some());
    assert!(discover(&mut s, mac(3), 8, 1).is_some());
    // offers that were never taken stop counting once they lapse
    assert!(discover(&mut s, mac(4), 7, 1 + OFFER_HOLD.as_secs() + 1).is_some());
    // without a port (or a cap) nothing is bounded
    assert!(s
        .handle(at(100), &META, &encode(&msg(MessageType::Discover, mac(9))))
        .unwrap()
        .is_some());
}

// --- Addresses seen in use: bounded per MAC and per port (issue #17) ---------------------

/// The 241 addresses .10–.250, as one range: what the guest of #17 named in its ARP
/// requests.
fn pool_of_241() -> ServerConfig {
    let mut c = config();
    c.ranges[0].end = ip(250);
    c
}

/// The gateway reporting an ARP packet from `mac` on `port` naming `addr` as sender.
fn arp_seen(s: &mut Server, t: u64, port: u32, addr: Ipv4Addr, mac: [u8; 6]) {
    s.note_in_use(at(t), Some(port), addr, mac);
}

/// A DISCOVER from `mac` arriving on `port`: the address offered, if any.
fn discover_on(s: &mut Server, t: u64, port: u32, mac: [u8; 6]) -> Option<Ipv4Addr> {
    let meta = PacketMeta {
        src_mac: mac,
        ..META
    };
    let payload = encode(&msg(MessageType::Discover, mac));
    let reply = s.handle_from(at(t), &meta, Some(port), &payload).unwrap()?;
    let offer = decode(&reply);
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    Some(offer.yiaddr())
}

/// DISCOVER, OFFER, REQUEST, ACK for `mac` on `port`: the address leased, if any.
fn dora_on(s: &mut Server, t: u64, port: u32, mac: [u8; 6]) -> Option<Ipv4Addr> {
    let offered = discover_on(s, t, port, mac)?;
    let mut m = msg(MessageType::Request, mac);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(offered));
    let meta = PacketMeta {
        src_mac: mac,
        ..META
    };
    let ack = s
        .handle_from(at(t), &meta, Some(port), &encode(&m))
        .unwrap()
        .expect("an ACK");
    let ack = decode(&ack);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), offered);
    Some(offered)
}

#[test]
fn one_mac_claiming_the_whole_pool_by_arp_keeps_only_its_newest_addresses() {
    for cap in [None, Some(32)] {
        let mut s = Server::new(pool_of_241(), vec![], at(0));
        s.set_port_cap(cap);
        // #17: 241 ARP requests from one guest's own MAC, each naming a pool address
        for n in 10..=250 {
            arp_seen(&mut s, 1, 1, ip(n), MAC3);
        }
        // a new client on another port still gets an offer: busybox's captured DISCOVER
        let reply = s
            .handle_from(at(2), &META, Some(2), &hex(UDHCPC_DISCOVER))
            .unwrap()
            .expect("an offer, not \"no address available\"");
        let offer = decode(&reply);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), ip(10));
        assert_eq!(s.stats().pool_exhausted, 0);
        // the guest keeps its newest two; the others were forgotten and counted
        s.seen().check(SEEN_PER_PORT);
        assert_eq!(
            s.seen().iter().map(|(a, _)| a).collect::<Vec<_>>(),
            [ip(249), ip(250)]
        );
        assert_eq!(s.stats().claims_evicted(ClaimEviction::PerMac), 239);
        assert_eq!(s.stats().claims_evicted_total(), 239);
        // the rest of the pool can be leased; what the guest still holds is not offered
        // (until SEEN_HOLD after it was last seen)
        let mut leased = Vec::new();
        for c in 0..=240u8 {
            let Some(a) = dora_on(&mut s, 3, 3 + u32::from(c), [0x02, 0, 0, 0, 1, c]) else {
                break;
            };
            leased.push(a);
        }
        assert_eq!(leased.len(), 239);
        assert!(!leased.contains(&ip(249)) && !leased.contains(&ip(250)));
    }
}

#[test]
fn many_macs_on_one_port_hold_at_most_the_port_bound() {
    for (cap, bound) in [(None, SEEN_PER_PORT), (Some(4), 4)] {
        let mut s = Server::new(pool_of_241(), vec![], at(0));
        s.set_port_cap(cap);
        // a guest on port 1 sends ARP from 241 MACs, one pool address each
        for n in 10..=250u8 {
            arp_seen(&mut s, 1, 1, ip(n), [0x02, 0, 0, 0, 0, n]);
        }
        // new clients on other ports get all the rest of the pool
        let mut leased = 0;
        for c in 0..=240u8 {
            if dora_on(&mut s, 2, 100 + u32::from(c), [0x02, 0, 0, 0, 1, c]).is_none() {
                break;
            }
            leased += 1;
        }
        assert_eq!(leased, 241 - bound);
        // port 1 kept its newest `bound` claims; older ones were forgotten and counted
        s.seen().check(bound);
        let kept: Vec<_> = s.seen().iter().map(|(a, c)| (a, c.port)).collect();
        let newest = (251 - bound..=250).map(|n| (ip(u8::try_from(n).unwrap()), Some(1)));
        assert_eq!(kept, newest.collect::<Vec<_>>());
        assert_eq!(
            s.stats().claims_evicted(ClaimEviction::PerPort),
            241 - bound as u64
        );
        assert_eq!(s.stats().claims_evicted(ClaimEviction::PerMac), 0);
    }
}

#[test]
fn a_static_station_keeps_its_address_while_another_port_floods() {
    let mut s = Server::new(pool_of_241(), vec![], at(0));
    s.set_port_cap(Some(32));
    arp_seen(&mut s, 0, 5, ip(200), MAC2);
    for n in 10..=199u8 {
        arp_seen(&mut s, 1, 1, ip(n), [0x02, 0, 0, 0, 0, n]);
        arp_seen(&mut s, 1, 1, ip(n), MAC3);
    }
    s.seen().check(32);
    assert_eq!(s.seen().get(ip(200)).map(|c| c.mac), Some(MAC2));
    // no one else is given .200 while MAC2 is seen using it
    for c in 0..=240u8 {
        let a = dora_on(&mut s, 2, 100 + u32::from(c), [0x02, 0, 0, 0, 1, c]);
        assert_ne!(a, Some(ip(200)));
    }
    // and MAC2 itself may lease it
    let meta = PacketMeta {
        src_mac: MAC2,
        ..META
    };
    let mut m = msg(MessageType::Discover, MAC2);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(200)));
    let reply = s
        .handle_from(at(3), &meta, Some(5), &encode(&m))
        .unwrap()
        .unwrap();
    assert_eq!(decode(&reply).yiaddr(), ip(200));
}

#[test]
fn counters_name_every_field_once() {
    let names: Vec<String> = Stats::default()
        .counters()
        .map(|(k, _)| k.into_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for want in [
        "received_discover",
        "sent_ack",
        "pool_exhausted",
        "encode_errors",
        "claims_evicted_per-mac",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert_eq!(
        names.len(),
        16 + DropReason::ALL.len() + ClaimEviction::ALL.len() + 4
    );
}
