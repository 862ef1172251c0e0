//! Guest frames (raw bytes; a valid Ethernet + IPv4 header with any transport bytes;
//! TCP segments, UDP datagrams and ICMP echo requests with fuzzed fields; TCP segments
//! that answer one the engine sent, so handshakes, data and closes get through), the
//! driver's answers (connects finishing, refused or unreachable; datagrams from host
//! sockets; host streams with data, end of file, a full buffer or errors), port-forward
//! connections and datagrams, ARP replies, host-access changes and clock steps through
//! `vnet_nat::Nat`, with small flow bounds. A driver model in the harness keeps the
//! flows the engine announced (`Action::Open`, inbound flows) and checks after every
//! step (not just "no panic"):
//!
//! - the flow count never exceeds `max_flows`, nor any guest's `max_flows_per_guest`;
//! - the engine's flows are exactly the flows it announced and has not closed; a flow
//!   id is never reused, is closed at most once, and gets no action after its close;
//! - an `Open` goes to a target off the segment (or to loopback, only with host
//!   access), never to a broadcast, multicast or unspecified address;
//! - every frame for a guest comes from the gateway's MAC; IPv4 ones go to an address
//!   on the segment and fit an IPv4 packet (TCP ones the MTU, without TSO);
//! - a TCP flow's byte counters match what its host stream took and gave.
//!
//! `cargo +nightly fuzz run nat_translator` (from `fuzz/`).

#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use vnet_nat::{Action, FlowId, HostStream, Nat, NatConfig, OpenError, Proto};

const GW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const PREFIX: u8 = 24;

#[derive(Debug, Arbitrary)]
struct Setup {
    max_flows: u8,
    per_guest: u8,
    guest_tso: bool,
    host_access: bool,
    mtu: u8,
}

#[derive(Debug, Arbitrary)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any bytes at all.
    Raw {
        bytes: Vec<u8>,
    },
    /// A valid Ethernet + IPv4 header (fuzzed protocol, fragment field, options and
    /// total length) and any transport bytes.
    Ip {
        guest: u8,
        remote: u8,
        proto: u8,
        frag: Option<u16>,
        options: Vec<u8>,
        total_len: Option<u16>,
        rest: Vec<u8>,
    },
    Tcp {
        guest: u8,
        sport: u8,
        remote: u8,
        dport: u8,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        mss: Option<u16>,
        options: Vec<u8>,
        payload: Vec<u8>,
    },
    /// A segment following one the engine sent to a guest (seq = its ack, ack = its
    /// seq + length, both nudged).
    Reply {
        pick: u8,
        flags: u8,
        window: u16,
        seq_off: i8,
        ack_off: i8,
        payload: Vec<u8>,
    },
    Udp {
        guest: u8,
        sport: u8,
        remote: u8,
        dport: u8,
        payload: Vec<u8>,
    },
    Echo {
        guest: u8,
        id: u8,
        remote: u8,
        seq: u16,
        payload: Vec<u8>,
    },
    /// The host connect of a pending TCP flow (or a stale id) finished.
    Opened {
        pick: u8,
        result: u8,
    },
    /// A datagram on a UDP or ICMP flow's host socket (or a stale id).
    Datagram {
        pick: u8,
        data: Vec<u8>,
    },
    /// Host data for a TCP flow's stream (and end of file), then a pump.
    HostData {
        pick: u8,
        data: Vec<u8>,
        eof: bool,
    },
    /// How much a TCP flow's host stream takes before it is full; an error to come.
    HostRoom {
        pick: u8,
        room: u16,
        fail: u8,
    },
    Pump {
        pick: u8,
    },
    Advance {
        millis: u16,
        secs: u8,
    },
    /// A connection accepted on a forwarded port.
    Accept {
        client: u8,
        guest: u8,
        port: u8,
    },
    /// A datagram on a forwarded UDP port.
    Inbound {
        client: u8,
        guest: u8,
        port: u8,
        data: Vec<u8>,
    },
    /// An ARP reply from a guest (or any bytes) to the gateway.
    Arp {
        guest: u8,
        raw: Option<Vec<u8>>,
    },
    HostAccess {
        on: bool,
    },
}

fn guest_ip(g: u8) -> Ipv4Addr {
    match g % 10 {
        0..=3 => Ipv4Addr::new(192, 168, 122, 10 + g % 4),
        4 => Ipv4Addr::new(192, 168, 122, 100 + g % 100),
        5 => Ipv4Addr::new(10, 1, 1, 1), // off the segment
        6 => GW,
        7 => Ipv4Addr::UNSPECIFIED,
        8 => Ipv4Addr::new(192, 168, 122, 255),
        _ => Ipv4Addr::new(192, 168, 122, 0),
    }
}

fn guest_mac(g: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x00, 0x00, g]
}

fn remote_ip(r: u8) -> Ipv4Addr {
    match r % 9 {
        0 => Ipv4Addr::new(10, 98, 0, 2),
        1 => Ipv4Addr::new(8, 8, 8, 8),
        2 => GW,
        3 => Ipv4Addr::new(192, 168, 122, 20), // on the segment
        4 => Ipv4Addr::BROADCAST,
        5 => Ipv4Addr::new(224, 0, 0, 251),
        6 => Ipv4Addr::UNSPECIFIED,
        7 => Ipv4Addr::LOCALHOST,
        _ => Ipv4Addr::new(203, 0, 113, r),
    }
}

fn port(p: u8) -> u16 {
    match p % 8 {
        0 => 80,
        1 => 443,
        2 => 53,
        3 => 22,
        4 => 0,
        5 => 65535,
        _ => 40_000 + u16::from(p),
    }
}

fn in_subnet(ip: Ipv4Addr) -> bool {
    u32::from(ip) >> (32 - PREFIX) == u32::from(GW) >> (32 - PREFIX)
}

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame to the gateway with an IPv4 header (checksum right) and `l4`.
#[allow(clippy::too_many_arguments)]
fn ipv4_frame(
    mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    frag: u16,
    options: &[u8],
    total_len: Option<u16>,
    l4: &[u8],
) -> Vec<u8> {
    let opts = &options[..options.len().min(40) / 4 * 4];
    let hlen = 20 + opts.len();
    let total = total_len.unwrap_or(u16::try_from(hlen + l4.len()).unwrap_or(u16::MAX));
    let mut f = Vec::with_capacity(14 + hlen + l4.len());
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.push(0x40 | (hlen / 4) as u8);
    f.push(0);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(opts);
    let c = csum(&f[14..14 + hlen]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(l4);
    f
}

#[allow(clippy::too_many_arguments)]
fn tcp_segment(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let opts_len = options.len().min(40).div_ceil(4) * 4;
    let mut t = Vec::with_capacity(20 + opts_len + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + opts_len) / 4) << 4) as u8);
    t.push(flags);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&options[..options.len().min(40)]);
    t.resize(20 + opts_len, 0); // end-of-options padding
    t.extend_from_slice(payload);
    t
}

/// A TCP segment the engine sent to a guest.
#[derive(Clone, Copy, Debug)]
struct Seg {
    guest: SocketAddrV4,
    remote: SocketAddrV4,
    guest_mac: [u8; 6],
    seq: u32,
    ack: u32,
    len: u32,
}

/// A host TCP stream in memory.
#[derive(Default)]
struct Host {
    to_read: VecDeque<u8>,
    eof: bool,
    /// Bytes it takes before it is full (`WouldBlock`).
    room: usize,
    /// 1: the next write fails; 2: the next read fails; 3: the next call is
    /// interrupted (once).
    fail: u8,
    written: u64,
    read: u64,
}

impl HostStream for Host {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match std::mem::take(&mut self.fail) {
            2 => return Err(io::ErrorKind::ConnectionReset.into()),
            3 => return Err(io::ErrorKind::Interrupted.into()),
            f => self.fail = f,
        }
        if self.to_read.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.to_read.len());
        for (b, x) in buf.iter_mut().zip(self.to_read.drain(..n)) {
            *b = x;
        }
        self.read += n as u64;
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::mem::take(&mut self.fail) {
            1 => return Err(io::ErrorKind::BrokenPipe.into()),
            3 => return Err(io::ErrorKind::Interrupted.into()),
            f => self.fail = f,
        }
        let n = buf.len().min(self.room);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.room -= n;
        self.written += n as u64;
        Ok(n)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The harness's view: what a driver knows from the engine's actions.
struct Driver {
    max_flows: usize,
    per_guest: usize,
    host_access: bool,
    guest_tso: bool,
    mtu: usize,
    /// Open flows and their protocols.
    live: HashMap<FlowId, Proto>,
    /// Every flow id ever announced.
    seen: HashSet<FlowId>,
    /// TCP flows waiting for their connect.
    pending: Vec<FlowId>,
    closed: Vec<FlowId>,
    hosts: HashMap<FlowId, Host>,
    segs: VecDeque<Seg>,
}

impl Driver {
    fn announce(&mut self, id: FlowId, proto: Proto) {
        assert!(self.seen.insert(id), "flow id {id:?} reused");
        self.live.insert(id, proto);
        if proto == Proto::Tcp {
            // A host socket with room until an op says otherwise.
            let host = Host {
                room: 1 << 20,
                ..Host::default()
            };
            self.hosts.insert(id, host);
        }
    }

    fn pick(list: &[FlowId], pick: u8) -> Option<FlowId> {
        (!list.is_empty()).then(|| list[usize::from(pick) % list.len()])
    }

    fn live_of(&self, protos: &[Proto]) -> Vec<FlowId> {
        let mut v: Vec<FlowId> = self
            .live
            .iter()
            .filter(|(_, p)| protos.contains(p))
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    /// A flow for `pick`: one of `list`, or now and then a closed or unknown id.
    fn choose(&self, list: &[FlowId], pick: u8) -> Option<FlowId> {
        if pick >= 0xf0 {
            return Some(Self::pick(&self.closed, pick).unwrap_or(FlowId(u64::from(pick))));
        }
        Self::pick(list, pick)
    }

    /// A TCP flow for the host-side ops: an open one (connected or inbound), or now
    /// and then a still connecting, closed or unknown one (pump ignores those).
    fn choose_tcp(&self, list: &[FlowId], pick: u8) -> Option<FlowId> {
        if (0xe0..0xf0).contains(&pick) {
            return Self::pick(&self.pending, pick);
        }
        self.choose(list, pick)
    }

    fn actions(&mut self, nat: &mut Nat) {
        let mut closed_now = HashSet::new();
        while let Some(a) = nat.poll_action() {
            match a {
                Action::Open {
                    flow,
                    proto,
                    target,
                } => {
                    // the engine has no IPv6 prefixes here: an IPv6 open is a bug
                    let std::net::SocketAddr::V4(target) = target else {
                        panic!("an IPv6 open on an IPv4-only engine: {target}");
                    };
                    let ip = *target.ip();
                    assert!(
                        !ip.is_broadcast() && !ip.is_multicast() && !ip.is_unspecified(),
                        "open to {target}"
                    );
                    if ip.is_loopback() {
                        assert!(
                            self.host_access,
                            "host access while it is off: open to {target}"
                        );
                    } else {
                        assert!(!in_subnet(ip), "open to the segment: {target}");
                    }
                    self.announce(flow, proto);
                    if proto == Proto::Tcp {
                        self.pending.push(flow);
                    }
                }
                Action::Datagram { flow, data } => {
                    assert!(!closed_now.contains(&flow), "datagram after close");
                    assert!(
                        matches!(self.live.get(&flow), Some(Proto::Udp | Proto::Icmp)),
                        "datagram for {flow:?}, not an open UDP/ICMP flow"
                    );
                    if self.live.get(&flow) == Some(&Proto::Icmp) {
                        assert!(data.len() >= 8 && data[0] == 8, "an echo request");
                    }
                }
                Action::Close { flow } => {
                    assert!(
                        self.live.remove(&flow).is_some(),
                        "close of {flow:?}, not open (or closed twice)"
                    );
                    closed_now.insert(flow);
                    self.pending.retain(|f| *f != flow);
                    self.hosts.remove(&flow);
                    self.closed.push(flow);
                    if self.closed.len() > 32 {
                        self.closed.remove(0);
                    }
                }
            }
        }
    }

    fn frames(&mut self, nat: &mut Nat) {
        while let Some(f) = nat.poll_transmit() {
            assert!(f.len() >= 14, "a runt frame to a guest");
            assert_eq!(f[6..12], GW_MAC, "a frame not from the gateway's MAC");
            if f[12..14] != [0x08, 0x00] {
                continue;
            }
            assert!(f.len() <= 14 + 65535, "a frame of {} bytes", f.len());
            let p = SlicedPacket::from_ethernet(&f).expect("the engine's frames parse");
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("IPv4 frame without an IPv4 header");
            };
            let dst = ip.header().destination_addr();
            assert!(in_subnet(dst), "a frame for {dst}, off the segment");
            if let Some(TransportSlice::Tcp(t)) = &p.transport {
                if !self.guest_tso {
                    assert!(
                        f.len() <= 14 + self.mtu,
                        "a TCP frame of {} bytes over MTU {}",
                        f.len(),
                        self.mtu
                    );
                }
                let mut guest_mac = [0u8; 6];
                guest_mac.copy_from_slice(&f[..6]);
                self.segs.push_back(Seg {
                    guest: SocketAddrV4::new(dst, t.destination_port()),
                    remote: SocketAddrV4::new(ip.header().source_addr(), t.source_port()),
                    guest_mac,
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    len: t.payload().len() as u32 + u32::from(t.syn()) + u32::from(t.fin()),
                });
                if self.segs.len() > 16 {
                    self.segs.pop_front();
                }
            }
        }
    }

    fn pump(&mut self, nat: &mut Nat, now: Instant, id: FlowId) {
        let mut spare = Host::default();
        let host = self.hosts.get_mut(&id).unwrap_or(&mut spare);
        nat.pump(now, id, host);
    }

    /// What a driver does after each event: actions, dirty flows, frames.
    fn settle(&mut self, nat: &mut Nat, now: Instant) {
        for _ in 0..8 {
            self.actions(nat);
            let mut busy = false;
            while let Some(id) = nat.poll_dirty() {
                busy = true;
                if self.live.get(&id) == Some(&Proto::Tcp) && !self.pending.contains(&id) {
                    self.pump(nat, now, id);
                }
            }
            if !busy {
                break;
            }
        }
        self.actions(nat);
        self.frames(nat);
    }

    fn check(&self, nat: &Nat, now: Instant) {
        let st = nat.stats();
        assert!(
            st.flows <= self.max_flows,
            "{} flows, limit {}",
            st.flows,
            self.max_flows
        );
        let flows = nat.flows(now);
        assert_eq!(flows.len(), st.flows);
        let mut per_guest: HashMap<Ipv4Addr, usize> = HashMap::new();
        for f in &flows {
            let std::net::IpAddr::V4(g) = f.guest.ip() else {
                panic!("an IPv6 flow on an IPv4-only engine: {}", f.guest);
            };
            let n = per_guest.entry(g).or_default();
            *n += 1;
            assert!(
                *n <= self.per_guest,
                "{n} flows for {}, limit {}",
                f.guest.ip(),
                self.per_guest
            );
            assert_eq!(
                self.live.get(&f.id),
                Some(&f.proto),
                "flow {:?} ({:?}) not announced, or closed",
                f.id,
                f.proto
            );
            if let Some(h) = self.hosts.get(&f.id) {
                assert_eq!(f.bytes_out, h.written, "bytes to the host");
                assert_eq!(f.bytes_in, h.read, "bytes from the host");
            }
        }
        assert_eq!(
            flows.len(),
            self.live.len(),
            "announced flows the engine lost"
        );
    }
}

fuzz_target!(|input: Input| {
    let s = input.setup;
    let mtu = [576, 1280, 1500, 9000][usize::from(s.mtu % 4)];
    let mut cfg = NatConfig::new(GW_MAC, GW, PREFIX);
    cfg.mtu = mtu;
    cfg.guest_tso = s.guest_tso;
    cfg.host_access = s.host_access;
    cfg.limits.max_flows = 1 + usize::from(s.max_flows % 16);
    cfg.limits.max_flows_per_guest = 1 + usize::from(s.per_guest % 8);
    cfg.limits.tcp_idle = Duration::from_secs(300);
    cfg.limits.tcp_buffer = 8192;
    cfg.limits.tcp_buffer_min = 2048;
    cfg.limits.tcp_memory = 32 * 1024;
    let t0 = Instant::now();
    let mut now = t0;
    let mut nat = Nat::new(cfg.clone(), t0, 7);
    let mut d = Driver {
        max_flows: cfg.limits.max_flows,
        per_guest: cfg.limits.max_flows_per_guest,
        host_access: cfg.host_access,
        guest_tso: cfg.guest_tso,
        mtu,
        live: HashMap::new(),
        seen: HashSet::new(),
        pending: Vec::new(),
        closed: Vec::new(),
        hosts: HashMap::new(),
        segs: VecDeque::new(),
    };
    for op in input.ops.into_iter().take(128) {
        match op {
            Op::Raw { bytes } => nat.handle_frame(now, &bytes),
            Op::Ip {
                guest,
                remote,
                proto,
                frag,
                options,
                total_len,
                rest,
            } => {
                let f = ipv4_frame(
                    guest_mac(guest),
                    guest_ip(guest),
                    remote_ip(remote),
                    match proto % 4 {
                        0 => 6,
                        1 => 17,
                        2 => 1,
                        _ => proto,
                    },
                    frag.unwrap_or(0x4000),
                    &options,
                    total_len,
                    &rest,
                );
                nat.handle_frame(now, &f);
            }
            Op::Tcp {
                guest,
                sport,
                remote,
                dport,
                seq,
                ack,
                flags,
                window,
                mss,
                options,
                payload,
            } => {
                let mut opts = Vec::new();
                if let Some(m) = mss {
                    opts.extend_from_slice(&[2, 4]);
                    opts.extend_from_slice(&m.to_be_bytes());
                }
                opts.extend_from_slice(&options);
                let t = tcp_segment(
                    40_000 + u16::from(sport % 8),
                    port(dport),
                    seq,
                    ack,
                    flags,
                    window,
                    &opts,
                    &payload,
                );
                let f = ipv4_frame(
                    guest_mac(guest),
                    guest_ip(guest),
                    remote_ip(remote),
                    6,
                    0x4000,
                    &[],
                    None,
                    &t,
                );
                nat.handle_frame(now, &f);
            }
            Op::Reply {
                pick,
                flags,
                window,
                seq_off,
                ack_off,
                payload,
            } => {
                if d.segs.is_empty() {
                    continue;
                }
                let s = d.segs[usize::from(pick) % d.segs.len()];
                let t = tcp_segment(
                    s.guest.port(),
                    s.remote.port(),
                    s.ack.wrapping_add_signed(i32::from(seq_off)),
                    s.seq
                        .wrapping_add(s.len)
                        .wrapping_add_signed(i32::from(ack_off)),
                    flags,
                    window,
                    &[],
                    &payload,
                );
                let f = ipv4_frame(
                    s.guest_mac,
                    *s.guest.ip(),
                    *s.remote.ip(),
                    6,
                    0x4000,
                    &[],
                    None,
                    &t,
                );
                nat.handle_frame(now, &f);
            }
            Op::Udp {
                guest,
                sport,
                remote,
                dport,
                payload,
            } => {
                let mut u = Vec::with_capacity(8 + payload.len());
                u.extend_from_slice(&(40_000 + u16::from(sport % 8)).to_be_bytes());
                u.extend_from_slice(&port(dport).to_be_bytes());
                u.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap_or(0).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                u.extend_from_slice(&payload);
                let f = ipv4_frame(
                    guest_mac(guest),
                    guest_ip(guest),
                    remote_ip(remote),
                    17,
                    0x4000,
                    &[],
                    None,
                    &u,
                );
                nat.handle_frame(now, &f);
            }
            Op::Echo {
                guest,
                id,
                remote,
                seq,
                payload,
            } => {
                let mut e = vec![8, 0, 0, 0, 0x10, id];
                e.extend_from_slice(&seq.to_be_bytes());
                e.extend_from_slice(&payload);
                let c = csum(&e);
                e[2..4].copy_from_slice(&c.to_be_bytes());
                let f = ipv4_frame(
                    guest_mac(guest),
                    guest_ip(guest),
                    remote_ip(remote),
                    1,
                    0x4000,
                    &[],
                    None,
                    &e,
                );
                nat.handle_frame(now, &f);
            }
            Op::Opened { pick, result } => {
                let Some(id) = d.choose(&d.pending, pick) else {
                    continue;
                };
                d.pending.retain(|f| *f != id);
                let r = match result % 3 {
                    0 => Ok(()),
                    1 => Err(OpenError::Refused),
                    _ => Err(OpenError::Unreachable),
                };
                nat.opened(now, id, r);
                if r.is_ok() && d.live.contains_key(&id) {
                    // The driver pumps a connect that finished (src/bin/switchd/nat.rs).
                    d.pump(&mut nat, now, id);
                }
            }
            Op::Datagram { pick, data } => {
                let list = d.live_of(&[Proto::Udp, Proto::Icmp]);
                if let Some(id) = d.choose(&list, pick) {
                    nat.datagram(now, id, &data);
                }
            }
            Op::HostData { pick, data, eof } => {
                let list = d.live_of(&[Proto::Tcp]);
                if let Some(id) = d.choose_tcp(&list, pick) {
                    if let Some(h) = d.hosts.get_mut(&id) {
                        h.to_read.extend(data);
                        h.eof |= eof;
                    }
                    d.pump(&mut nat, now, id);
                }
            }
            Op::HostRoom { pick, room, fail } => {
                let list = d.live_of(&[Proto::Tcp]);
                if let Some(id) = d.choose_tcp(&list, pick) {
                    if let Some(h) = d.hosts.get_mut(&id) {
                        h.room = usize::from(room);
                        h.fail = fail % 8;
                    }
                    d.pump(&mut nat, now, id);
                }
            }
            Op::Pump { pick } => {
                let list = d.live_of(&[Proto::Tcp]);
                if let Some(id) = d.choose_tcp(&list, pick) {
                    d.pump(&mut nat, now, id);
                }
            }
            Op::Advance { millis, secs } => {
                // As an event loop does: the timeout asked for before the clock moved
                // fires at its time (a few times at most, then the clock jumps).
                let target = now
                    + Duration::from_millis(u64::from(millis))
                    + Duration::from_secs(u64::from(secs));
                for _ in 0..16 {
                    match nat.poll_timeout(now) {
                        Some(t) if t <= target => {
                            now = now.max(t);
                            nat.handle_timeout(now);
                            d.settle(&mut nat, now);
                        }
                        _ => break,
                    }
                }
                let due = nat.poll_timeout(now);
                now = target;
                if due.is_some_and(|t| t <= now) {
                    nat.handle_timeout(now);
                }
            }
            Op::Accept {
                client,
                guest,
                port: p,
            } => {
                let client = SocketAddrV4::new(remote_ip(client), port(client));
                let guest =
                    SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 10 + guest % 4), port(p));
                if let Some(id) = nat.accept_inbound(now, client.into(), guest.into()) {
                    d.announce(id, Proto::Tcp);
                }
            }
            Op::Inbound {
                client,
                guest,
                port: p,
                data,
            } => {
                let client = SocketAddrV4::new(remote_ip(client), port(client));
                let guest =
                    SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 10 + guest % 4), port(p));
                if let Some(id) = nat.inbound_datagram(now, client.into(), guest.into(), &data) {
                    if !d.live.contains_key(&id) {
                        d.announce(id, Proto::Udp);
                    }
                }
            }
            Op::Arp { guest, raw } => {
                let f = raw.unwrap_or_else(|| {
                    let mut f = Vec::with_capacity(42);
                    f.extend_from_slice(&GW_MAC);
                    f.extend_from_slice(&guest_mac(guest));
                    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
                    f.extend_from_slice(&guest_mac(guest));
                    f.extend_from_slice(&guest_ip(guest).octets());
                    f.extend_from_slice(&GW_MAC);
                    f.extend_from_slice(&GW.octets());
                    f
                });
                nat.handle_arp(now, &f);
            }
            Op::HostAccess { on } => {
                nat.set_host_access(on);
                d.host_access = on;
            }
        }
        d.settle(&mut nat, now);
        d.check(&nat, now);
    }
});
