//! DHCPv6 messages (any bytes, and mutations of a SOLICIT from ISC dhclient turned into
//! every client message type) and clock steps through `vnet_dhcp::v6::Server6`,
//! checking every reply (not just "no panic"): it decodes, is an ADVERTISE or REPLY with
//! the request's transaction id and the server's own DUID, and every address it grants
//! is in the range or reserved; the leases stay unique per address and within bounds.
//!
//! `cargo +nightly fuzz run dhcp6_handle` (from `fuzz/`).

#![no_main]

use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vnet_dhcp::dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
use vnet_dhcp::dhcproto::{Decodable, Decoder};
use vnet_dhcp::v6::{parse_duid, Config6, Host6, Server6, MAX_LEASES6};
use vnet_dhcp::LeaseDuration;

/// A SOLICIT from ISC dhclient 4.4 (52:54:00:12:34:56).
const SOLICIT: [u8; 56] = [
    0x01, 0xbf, 0x74, 0x05, 0x00, 0x01, 0x00, 0x0e, 0x00, 0x01, 0x00, 0x01, 0x32, 0xa5, 0xd0, 0x44,
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x00, 0x06, 0x00, 0x08, 0x00, 0x17, 0x00, 0x18, 0x00, 0x27,
    0x00, 0x1f, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x0c, 0x00, 0x12, 0x34, 0x56,
    0x00, 0x00, 0x0e, 0x10, 0x00, 0x00, 0x15, 0x18,
];
const SERVER_DUID: [u8; 10] = [0, 3, 0, 1, 0x52, 0x54, 0, 0x0a, 0x0b, 0x0c];

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any bytes.
    Raw(Vec<u8>),
    /// The SOLICIT as message type `kind`, from client `client`, with the server id
    /// (ours or none), bytes changed.
    Mutated {
        kind: u8,
        client: u8,
        ours: bool,
        edits: Vec<(u8, u8)>,
    },
    /// Time passes (seconds).
    Wait(u16),
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fuzz_target!(|ops: Vec<Op>| {
    let (start, end) = (ip("fd00::1:10"), ip("fd00::1:1f"));
    let reserved = ip("fd00::1:99");
    let mut s = Server6::new(Config6 {
        server_duid: SERVER_DUID.to_vec(),
        ranges: vec![(start, end, LeaseDuration::Finite(Duration::from_secs(60)))],
        hosts: vec![Host6 {
            duid: parse_duid("0:3:0:1:0:16:3e:11:22:33"),
            name: Some("peter".into()),
            ip: reserved,
            lease: LeaseDuration::Infinite,
        }],
        dns: vec![ip("fd00::1")],
        domain: Some("example".into()),
    });
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for op in ops.into_iter().take(256) {
        let msg = match op {
            Op::Raw(b) => b,
            Op::Mutated {
                kind,
                client,
                ours,
                edits,
            } => {
                let mut m = SOLICIT.to_vec();
                m[0] = 1 + kind % 13;
                m[21] = client; // the last byte of the client's DUID
                if ours {
                    m.extend_from_slice(&[0, 2, 0, 10]);
                    m.extend_from_slice(&SERVER_DUID);
                }
                for (at, v) in edits.into_iter().take(8) {
                    let i = usize::from(at) % m.len();
                    m[i] = v;
                }
                m
            }
            Op::Wait(secs) => {
                now += Duration::from_secs(u64::from(secs));
                continue;
            }
        };
        let Some(reply) = s.handle(now, &msg) else {
            continue;
        };
        let r = Message::decode(&mut Decoder::new(&reply)).expect("a reply decodes");
        assert!(matches!(
            r.msg_type(),
            MessageType::Advertise | MessageType::Reply
        ));
        assert_eq!(r.xid(), msg[1..4], "the request's transaction id");
        assert!(matches!(
            r.opts().get(OptionCode::ServerId),
            Some(DhcpOption::ServerId(id)) if id == &SERVER_DUID
        ));
        for o in r.opts().iter() {
            if let DhcpOption::IANA(ia) = o {
                for a in ia.opts.iter() {
                    if let DhcpOption::IAAddr(a) = a {
                        let granted = a.valid_life > 0;
                        assert!(
                            !granted || (start..=end).contains(&a.addr) || a.addr == reserved,
                            "granted {} outside the range",
                            a.addr
                        );
                    }
                }
            }
        }
        let leases: Vec<_> = s.leases().collect();
        assert!(leases.len() <= MAX_LEASES6);
        let mut addrs: Vec<_> = leases.iter().map(|l| l.ip).collect();
        addrs.dedup();
        assert_eq!(addrs.len(), leases.len(), "one lease per address");
    }
});
