//! DNS queries (raw bytes, queries built from fuzzed fields, and mutations of a query
//! in dig's shape), upstream answers (raw, and well-formed answers to what was sent,
//! mutated), clock steps, lease names and live reconfiguration through
//! `vnet_dns::Server`, checking its invariants after every step (not just "no panic"):
//! in-flight counts match the waiting clients and stay within the global and
//! per-client limits, every index points at a live entry, the cache, lease names and
//! queues stay within their bounds, timeouts are never overdue, upstream queries go
//! only to configured upstreams, and every answer is a DNS response with the query's
//! id that fits the client's transport.
//!
//! `cargo +nightly fuzz run dns_handle` (from `fuzz/`).

#![no_main]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vnet_dns::{
    DnsConfig, Forwarder, HostRecord, NamedAddress, Server, SrvRecord, Subnet, Transport,
    TxtRecord, UpstreamQuery,
};

/// A query for vm1.example.com A in the shape dig 9.18 sends it: RD and AD set, an
/// OPT record (UDP size 1232) with an 8-byte client cookie.
const DIG_QUERY: &[u8] = &[
    0x8d, 0x5e, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, b'v', b'm', b'1',
    0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x08,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
];

const NAMES: [&str; 8] = [
    "vm1",
    "vm1.example.com",
    "www.example.org",
    "x.corp.example",
    "ads.blocked.example",
    "5.122.168.192.in-addr.arpa",
    "_ldap._tcp.example.com",
    "0123456789abcdef.loop-check.vnet",
];

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any bytes at all, from a guest (or, for client 7, an outsider).
    Raw {
        client: u8,
        tcp: bool,
        bytes: Vec<u8>,
    },
    /// A well-formed query with fuzzed fields.
    Built {
        client: u8,
        tcp: bool,
        id: u16,
        flags: u16,
        name: u8,
        qtype: u16,
        qclass: bool,
        edns: Option<(u16, u8)>,
    },
    /// The dig-shaped query with a few bytes changed.
    Captured {
        client: u8,
        edits: Vec<(u8, u8)>,
    },
    /// Any bytes from an upstream (or a stranger).
    RawUpstream {
        from: u8,
        bytes: Vec<u8>,
    },
    /// An answer to one of the queries sent upstream, from where it went (or not).
    Answer {
        pick: u8,
        rcode: u8,
        ttl: u32,
        records: u8,
        truncated: bool,
        wrong_from: bool,
        edits: Vec<(u16, u8)>,
    },
    /// Send an upstream query back in as a client query (a loop).
    Loop {
        pick: u8,
    },
    Advance {
        millis: u16,
    },
    Lease {
        last: u8,
        name: u8,
    },
    Unlease {
        last: u8,
    },
    /// Live net-update or a resolv.conf change.
    Reconfigure {
        variant: u8,
    },
    SystemUpstreams {
        mask: u8,
    },
}

const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);

fn upstream(i: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1 + i % 4], 53))
}

fn client(c: u8) -> SocketAddr {
    if c % 8 == 7 {
        SocketAddr::from(([203, 0, 113, 9], 5353))
    } else {
        SocketAddr::from(([192, 168, 122, 10 + c % 8], 40_000))
    }
}

fn config(variant: u8) -> DnsConfig {
    let mut c = DnsConfig::new(GW, 24);
    c.domain = Some("example.com".into());
    c.local_only = variant & 1 != 0;
    c.forward_plain_names = variant & 2 == 0;
    c.isolated = variant & 4 != 0;
    c.hosts.push(HostRecord {
        ip: IpAddr::V4(GW),
        names: vec!["host".into(), "gateway".into()],
    });
    c.reservations.push(NamedAddress {
        ip: IpAddr::V4(Ipv4Addr::new(192, 168, 122, 5)),
        name: "web".into(),
    });
    c.txt.push(TxtRecord {
        name: "big".into(),
        value: "x".repeat(usize::from(variant) * 8),
    });
    c.srv.push(SrvRecord {
        service: "ldap".into(),
        protocol: "tcp".into(),
        domain: None,
        target: Some("dc.example.com".into()),
        port: 389,
        priority: 0,
        weight: 0,
    });
    c.forwarders.push(Forwarder {
        addr: Some(upstream(3)),
        domain: Some("corp.example".into()),
    });
    c.forwarders.push(Forwarder {
        addr: None,
        domain: Some("blocked.example".into()),
    });
    if variant & 8 != 0 {
        c.forwarders.push(Forwarder {
            addr: Some(upstream(2)),
            domain: None,
        });
        // Our own address as an upstream: must never be used.
        c.forwarders.push(Forwarder {
            addr: Some(SocketAddr::new(IpAddr::V4(GW), 53)),
            domain: None,
        });
    }
    if variant & 16 != 0 {
        c.local_ptr.push(Subnet {
            addr: IpAddr::V4(GW),
            prefix: 24,
        });
    }
    c.limits.max_in_flight = 16;
    c.limits.max_in_flight_per_client = 4;
    c.limits.cache_entries = 8;
    c.limits.lease_names = 4;
    c.limits.max_upstreams = 3;
    c
}

/// Encodes a DNS name (labels only; the fuzzer's names are all valid).
fn push_name(p: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
}

fn built(
    id: u16,
    flags: u16,
    name: &str,
    qtype: u16,
    qclass: u16,
    edns: Option<(u16, u8)>,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&(flags & 0x7fff).to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    push_name(&mut p, name);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    if let Some((size, version)) = edns {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&[0, version % 2, 0x80, 0, 0, 0]);
    }
    p
}

/// An answer to `q`: its header with QR/RA, `rcode`, its question, `records` A records
/// (for the question's name, by compression pointer), and `truncated`.
fn answer(q: &UpstreamQuery, rcode: u8, ttl: u32, records: u8, truncated: bool) -> Vec<u8> {
    let mut p = q.payload.clone();
    // Drop the query's OPT record: cut after the question.
    let Some(end) = question_end(&p) else {
        return p;
    };
    p.truncate(end);
    if let Some(b) = p.get_mut(2) {
        *b |= 0x80 | if truncated { 0x02 } else { 0 };
    }
    if let Some(b) = p.get_mut(3) {
        *b = 0x80 | (rcode % 6);
    }
    let n = records % 40;
    p[6..8].copy_from_slice(&u16::from(n).to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    for i in 0..n {
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        p.extend_from_slice(&ttl.to_be_bytes());
        p.extend_from_slice(&[0, 4, 198, 51, 100, i]);
    }
    p
}

fn question_end(p: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*p.get(i)?);
        i += 1 + len;
        if len == 0 {
            return Some(i + 4).filter(|e| *e <= p.len());
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut variant = 0u8;
    let mut server = Server::with_seed(config(variant), 0x5eed);
    let mut system: Vec<SocketAddr> = vec![upstream(0), upstream(1)];
    server.set_system_upstreams(system.clone());
    let mut now = Instant::now();
    let mut sent: VecDeque<UpstreamQuery> = VecDeque::new();
    for op in ops.into_iter().take(256) {
        // The id the direct answer must carry, if the query had a header, and the
        // client's transport.
        let mut query: Option<(SocketAddr, Transport, Vec<u8>)> = None;
        match op {
            Op::Raw {
                client: c,
                tcp,
                bytes,
            } => {
                let t = if tcp { Transport::Tcp } else { Transport::Udp };
                query = Some((client(c), t, bytes));
            }
            Op::Built {
                client: c,
                tcp,
                id,
                flags,
                name,
                qtype,
                qclass,
                edns,
            } => {
                let t = if tcp { Transport::Tcp } else { Transport::Udp };
                let n = NAMES[usize::from(name) % NAMES.len()];
                let b = built(id, flags, n, qtype, if qclass { 1 } else { 3 }, edns);
                query = Some((client(c), t, b));
            }
            Op::Captured { client: c, edits } => {
                let mut b = DIG_QUERY.to_vec();
                let len = b.len();
                for (at, v) in edits {
                    if let Some(x) = b.get_mut(usize::from(at) % len) {
                        *x = v;
                    }
                }
                query = Some((client(c), Transport::Udp, b));
            }
            Op::RawUpstream { from, bytes } => server.handle_upstream(now, upstream(from), &bytes),
            Op::Answer {
                pick,
                rcode,
                ttl,
                records,
                truncated,
                wrong_from,
                edits,
            } => {
                if !sent.is_empty() {
                    let i = usize::from(pick) % sent.len();
                    if let Some(q) = sent.remove(i) {
                        let mut b = answer(&q, rcode, ttl, records, truncated);
                        if !b.is_empty() {
                            let len = b.len();
                            for (at, v) in edits {
                                if let Some(x) = b.get_mut(usize::from(at) % len) {
                                    *x = v;
                                }
                            }
                        }
                        let from = if wrong_from {
                            SocketAddr::from(([198, 18, 0, 200], 53))
                        } else {
                            q.to
                        };
                        server.handle_upstream(now, from, &b);
                    }
                }
            }
            Op::Loop { pick } => {
                if !sent.is_empty() {
                    let i = usize::from(pick) % sent.len();
                    if let Some(q) = sent.get(i) {
                        query = Some((client(1), Transport::Udp, q.payload.clone()));
                    }
                }
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                if server.poll_timeout().is_some_and(|t| t <= now) {
                    server.handle_timeout(now);
                }
                assert!(
                    server.poll_timeout().is_none_or(|t| t > now),
                    "overdue timeout"
                );
            }
            Op::Lease { last, name } => {
                let n =
                    ["vm1", "web", "bad name", "db.example.com", "x.other"][usize::from(name) % 5];
                server.set_lease_name(Ipv4Addr::new(192, 168, 122, 100 + last % 16), n);
            }
            Op::Unlease { last } => {
                server.remove_lease_name(Ipv4Addr::new(192, 168, 122, 100 + last % 16));
            }
            Op::Reconfigure { variant: v } => {
                variant = v;
                server.set_config(config(variant));
            }
            Op::SystemUpstreams { mask } => {
                system = (0..4)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(upstream)
                    .collect();
                server.set_system_upstreams(system.clone());
            }
        }
        if let Some((from, transport, bytes)) = query {
            if let Some(r) = server.handle_query(now, from, transport, &bytes) {
                assert!(r.len() >= 12, "a DNS header");
                assert!(r[2] & 0x80 != 0, "a response");
                assert_eq!(&r[..2], &bytes[..2], "the query's id");
                assert!(
                    from.ip() != IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
                    "an outsider answered"
                );
                if transport == Transport::Udp {
                    assert!(r.len() <= 4096, "UDP answer too large: {}", r.len());
                }
            }
        }
        while let Some(q) = server.poll_upstream() {
            assert_ne!(q.to.ip(), IpAddr::V4(GW), "asked ourselves");
            assert!(
                (0..4).map(upstream).any(|u| u == q.to),
                "unknown upstream {}",
                q.to
            );
            assert!(q.payload.len() >= 12 && q.payload[2] & 0x80 == 0, "a query");
            sent.push_back(q);
            if sent.len() > 64 {
                sent.pop_front();
            }
        }
        while let Some(a) = server.poll_answer() {
            assert!(
                a.payload.len() >= 12 && a.payload[2] & 0x80 != 0,
                "a response"
            );
            if a.transport == Transport::Udp {
                assert!(a.payload.len() <= 4096);
            }
        }
        while let Some(e) = server.poll_event() {
            let _ = e.log_line("fuzz");
        }
        if let Err(e) = server.check_invariants() {
            panic!("{e}");
        }
        let st = server.stats();
        assert!(st.in_flight <= 16 && st.cache_entries <= 8 && st.lease_names <= 4);
        let _ = server.records();
    }
});
