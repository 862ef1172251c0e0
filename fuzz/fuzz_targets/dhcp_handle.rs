//! DHCP messages (raw bytes, messages built from fuzzed fields, and mutations of a
//! captured busybox DISCOVER) and clock steps through `vnet_dhcp::Server`, checking its
//! invariants after every step (not just "no panic"): no two active leases share an
//! address or a client, every lease is inside the ranges or is its owner's reservation,
//! the lease table stays within its bound, and every reply is a well-formed BOOTREPLY.
//!
//! `cargo +nightly fuzz run dhcp_handle` (from `fuzz/`).

#![no_main]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vnet_dhcp::{
    LeaseDuration, PacketMeta, PoolRange, ReplyDest, Reservation, Server, ServerConfig,
};

/// The options of a DHCPDISCOVER from busybox 1.35 udhcpc (52:54:00:12:34:56, host name
/// vm1), cut from a capture.
const UDHCPC_DISCOVER_OPTIONS: &[u8] = &[
    0x35, 0x01, 0x01, 0x39, 0x02, 0x02, 0x40, 0x37, 0x07, 0x01, 0x03, 0x06, 0x0c, 0x0f, 0x1c, 0x2a,
    0x0c, 0x03, 0x76, 0x6d, 0x31, 0x3c, 0x0c, 0x75, 0x64, 0x68, 0x63, 0x70, 0x20, 0x31, 0x2e, 0x33,
    0x35, 0x2e, 0x30, 0x3d, 0x07, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xff,
];

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any bytes at all.
    Raw {
        meta: u8,
        bytes: Vec<u8>,
    },
    /// A well-formed header with fuzzed fields and options.
    Built {
        meta: u8,
        kind: u8,
        client: u8,
        flags: u16,
        ciaddr: u8,
        requested: Option<u8>,
        server_id: Option<u8>,
        client_id: bool,
        extra_options: Vec<u8>,
    },
    /// The captured DISCOVER with a few bytes changed.
    Captured {
        edits: Vec<(u16, u8)>,
    },
    Advance {
        secs: u16,
    },
    /// Add or drop a reservation (live net-update).
    Reserve {
        client: u8,
        addr: u8,
    },
}

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn mac(client: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x12, 0x34, 0x50 + client % 8]
}

fn metas(i: u8) -> PacketMeta {
    match i % 3 {
        0 => PacketMeta {
            src_mac: mac(6),
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
        },
        1 => PacketMeta {
            src_mac: mac(1),
            src_ip: ip(12),
            dst_ip: SERVER_IP,
        },
        _ => PacketMeta {
            src_mac: mac(2),
            src_ip: ip(200),
            dst_ip: Ipv4Addr::BROADCAST,
        },
    }
}

fn header(kind: u8, client: u8, flags: u16, ciaddr: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[..4].copy_from_slice(&[1, 1, 6, 0]);
    p[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, client]);
    p[10..12].copy_from_slice(&flags.to_be_bytes());
    p[12..16].copy_from_slice(&ciaddr.octets());
    p[28..34].copy_from_slice(&mac(client));
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, kind]);
    p
}

/// `ever_reserved`: every address a reservation has named (a lease on an address whose
/// reservation was removed lives on until its next renewal).
fn check(server: &Server, config: &ServerConfig, ever_reserved: &HashSet<Ipv4Addr>) {
    let mut ips = HashSet::new();
    let mut clients = HashSet::new();
    let mut count = 0;
    for l in server.leases() {
        count += 1;
        assert!(ips.insert(l.ip), "two leases for {}", l.ip);
        assert!(
            clients.insert((l.mac, l.client_id.clone())),
            "two leases for one client"
        );
        assert!(
            config.in_ranges(l.ip) || ever_reserved.contains(&l.ip),
            "lease {} outside the ranges and never reserved",
            l.ip
        );
        assert_ne!(l.ip, config.server_ip);
    }
    assert!(count <= config.lease_limit());
}

fuzz_target!(|ops: Vec<Op>| {
    let mut config = ServerConfig::new(
        SERVER_IP,
        24,
        vec![PoolRange {
            start: ip(10),
            end: ip(17),
            lease: LeaseDuration::Finite(Duration::from_secs(600)),
        }],
    );
    config.hosts.push(Reservation {
        mac: Some(mac(3)),
        ip: Some(ip(5)),
        ..Reservation::default()
    });
    config.hosts.push(Reservation {
        client_id: Some(vec![1, 2, 3]),
        name: Some("byid".into()),
        ip: Some(ip(13)),
        lease: LeaseDuration::Infinite,
        ..Reservation::default()
    });
    let mut ever_reserved: HashSet<Ipv4Addr> = config.hosts.iter().filter_map(|h| h.ip).collect();
    let mut server = Server::new(config.clone(), Vec::new(), SystemTime::UNIX_EPOCH);
    let mut now = SystemTime::UNIX_EPOCH;
    for op in ops.into_iter().take(256) {
        let (meta, payload) = match op {
            Op::Advance { secs } => {
                now += Duration::from_secs(u64::from(secs));
                if server.poll_timeout().is_some_and(|t| t <= now) {
                    server.handle_timeout(now);
                }
                assert!(server.poll_timeout().is_none_or(|t| t > now));
                check(&server, &config, &ever_reserved);
                continue;
            }
            Op::Reserve { client, addr } => {
                config
                    .hosts
                    .retain(|h| h.mac != Some(mac(client)) && h.ip != Some(ip(addr)));
                if addr % 2 == 0 {
                    let addr = ip(addr % 32);
                    ever_reserved.insert(addr);
                    config.hosts.push(Reservation {
                        mac: Some(mac(client)),
                        ip: Some(addr),
                        ..Reservation::default()
                    });
                }
                server.set_config(config.clone());
                continue;
            }
            Op::Raw { meta, bytes } => (metas(meta), bytes),
            Op::Built {
                meta,
                kind,
                client,
                flags,
                ciaddr,
                requested,
                server_id,
                client_id,
                extra_options,
            } => {
                let ciaddr = if ciaddr < 32 {
                    ip(ciaddr)
                } else {
                    Ipv4Addr::UNSPECIFIED
                };
                let mut p = header(kind % 9, client, flags, ciaddr);
                if let Some(r) = requested {
                    p.extend_from_slice(&[50, 4, 10, 0, 0, r % 32]);
                }
                if let Some(s) = server_id {
                    p.extend_from_slice(&[54, 4, 10, 0, 0, s % 3]);
                }
                if client_id {
                    p.extend_from_slice(&[61, 3, 1, 2, 3]);
                }
                p.extend_from_slice(&extra_options);
                p.push(255);
                (metas(meta), p)
            }
            Op::Captured { edits } => {
                let mut p = header(1, 6, 0, Ipv4Addr::UNSPECIFIED);
                p.truncate(240);
                p.extend_from_slice(&UDHCPC_DISCOVER_OPTIONS);
                p.resize(300, 0);
                for (at, b) in edits {
                    let len = p.len();
                    if let Some(x) = p.get_mut(usize::from(at) % len) {
                        *x = b;
                    }
                }
                (metas(0), p)
            }
        };
        if let Ok(Some(reply)) = server.handle(now, &meta, &payload) {
            assert!(reply.payload.len() >= 300);
            assert_eq!(&reply.payload[..3], &[2, 1, 6], "a BOOTREPLY for Ethernet");
            assert_eq!(&reply.payload[236..240], &[99, 130, 83, 99]);
            if let ReplyDest::Unicast { ip, .. } = reply.dst {
                assert!(!ip.is_unspecified());
            }
        }
        while server.poll_event().is_some() {}
        check(&server, &config, &ever_reserved);
    }
});
