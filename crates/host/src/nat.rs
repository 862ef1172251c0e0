//! The host side of NAT: the sockets the NAT engine's flows are re-originated from.
//!
//! The engine (`vnet-nat`) decides; this module owns one host socket per flow,
//! registered in the driver's mio loop, and carries out the engine's actions: open a TCP
//! connection (non-blocking), a connected UDP socket or an ICMP ping socket; send a
//! datagram; close. Host readiness comes back as [`NatHost::handle`].

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use vnet_config::{ForwardProto, PortForward};
use vnet_nat::{Action, FlowId, HostStream, Nat, OpenError, Proto};

use crate::Source;

#[derive(Debug)]
enum Sock {
    Connecting(TcpStream),
    Tcp(TcpStream),
    Udp(UdpSocket),
    /// An ICMP echo flow on the shared raw socket, under this echo id.
    RawIcmp {
        target: std::net::Ipv4Addr,
        id: u16,
    },
    /// An inbound UDP flow: replies go out of forwarded port `listener` to `client`.
    Inbound {
        listener: usize,
        client: SocketAddr,
    },
}

/// Forwarded host ports at most (each port of a range is one listener).
pub const MAX_LISTENERS: usize = 65_536;

#[derive(Debug)]
enum ListenSock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// One forwarded host port.
#[derive(Debug)]
struct Listener {
    fwd: PortForward,
    host_port: u16,
    sock: ListenSock,
}

/// The raw ICMP socket echo flows share when the kernel refuses ping sockets
/// (`net.ipv4.ping_group_range`); needs CAP_NET_RAW. Each flow gets an echo id of its
/// own; replies are matched by (source, id).
#[derive(Debug)]
struct RawIcmp {
    sock: UdpSocket,
    by_id: HashMap<u16, FlowId>,
    next_id: u16,
}

/// [`HostStream`] over a mio TCP stream.
struct Stream<'a>(&'a mut TcpStream);

impl HostStream for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }
}

/// The host sockets of the NAT flows.
#[derive(Debug)]
pub struct NatHost {
    registry: Registry,
    socks: HashMap<FlowId, Sock>,
    raw: Option<RawIcmp>,
    listeners: HashMap<usize, Listener>,
    /// `<nat><address start end>`: host source addresses (flows spread over them).
    bind_addrs: Option<(u32, u32)>,
    /// `<nat><port start end>`: host source ports for UDP and TCP.
    bind_ports: Option<(u16, u16)>,
    /// Rotates through the address and port ranges.
    cursor: u32,
    /// Sockets that could not be opened (fd limit, permissions).
    pub open_failures: u64,
}

fn token(flow: FlowId) -> Token {
    Source::NatFlow(flow).token()
}

impl NatHost {
    /// Readiness of one of its sockets (a [`Source::NatFlow`], [`Source::NatListener`]
    /// or [`Source::NatRawIcmp`]) handed to the engine; false for any other source.
    pub fn handle(&mut self, nat: &mut Nat, now: Instant, source: Source) -> bool {
        match source {
            Source::NatFlow(flow) => self.on_event(nat, now, flow),
            Source::NatListener(idx) => self.on_listener(nat, now, idx),
            Source::NatRawIcmp => self.on_raw_icmp(nat, now),
            _ => return false,
        }
        true
    }

    /// Host sockets for the engine's flows, registered with `registry`; `nat` is the
    /// network's `<forward><nat>` (source address and port ranges).
    pub fn new(registry: Registry, nat: Option<&vnet_config::Nat>) -> Self {
        Self {
            bind_addrs: nat
                .and_then(|n| n.addresses)
                .map(|(a, b)| (u32::from(a), u32::from(b).max(u32::from(a)))),
            bind_ports: nat.and_then(|n| n.ports).map(|(a, b)| (a, b.max(a))),
            cursor: 0,
            registry,
            socks: HashMap::new(),
            raw: None,
            listeners: HashMap::new(),
            open_failures: 0,
        }
    }

    /// Carries out the engine's actions and pumps its dirty flows until it has nothing
    /// more to ask.
    pub fn run(&mut self, nat: &mut Nat, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(a) = nat.poll_action() {
                busy = true;
                self.act(nat, now, a);
            }
            while let Some(flow) = nat.poll_dirty() {
                busy = true;
                if let Some(Sock::Tcp(s)) = self.socks.get_mut(&flow) {
                    nat.pump(now, flow, &mut Stream(s));
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn act(&mut self, nat: &mut Nat, now: Instant, a: Action) {
        match a {
            Action::Open {
                flow,
                proto,
                target,
            } => match self.open(flow, proto, target) {
                Ok(()) => {}
                Err(e) => {
                    self.open_failures += 1;
                    if proto == Proto::Tcp {
                        let why = if e.kind() == ErrorKind::ConnectionRefused {
                            OpenError::Refused
                        } else {
                            OpenError::Unreachable
                        };
                        nat.opened(now, flow, Err(why));
                    }
                }
            },
            Action::Datagram { flow, mut data } => {
                match self.socks.get(&flow) {
                    // a full socket buffer drops the datagram, as a router would
                    Some(Sock::Udp(s)) => {
                        let _ = s.send(&data);
                    }
                    Some(Sock::Inbound { listener, client }) => {
                        if let Some(Listener {
                            sock: ListenSock::Udp(u),
                            ..
                        }) = self.listeners.get(listener)
                        {
                            let _ = u.send_to(&data, *client);
                        }
                    }
                    Some(Sock::RawIcmp { target, id }) => {
                        if let Some(raw) = &self.raw {
                            let msg = &mut data;
                            if let Some(b) = msg.get_mut(4..6) {
                                b.copy_from_slice(&id.to_be_bytes());
                            }
                            if let Some(b) = msg.get_mut(2..4) {
                                b.copy_from_slice(&[0, 0]);
                            }
                            let sum = icmp_checksum(msg);
                            if let Some(b) = msg.get_mut(2..4) {
                                b.copy_from_slice(&sum.to_be_bytes());
                            }
                            let _ = raw
                                .sock
                                .send_to(msg, SocketAddr::V4(SocketAddrV4::new(*target, 0)));
                        }
                    }
                    _ => {}
                }
                nat.recycle(data);
            }
            Action::Close { flow } => {
                if let Some(mut s) = self.socks.remove(&flow) {
                    let _ = match &mut s {
                        Sock::Connecting(t) | Sock::Tcp(t) => self.registry.deregister(t),
                        Sock::Udp(u) => self.registry.deregister(u),
                        Sock::RawIcmp { id, .. } => {
                            if let Some(raw) = self.raw.as_mut() {
                                raw.by_id.remove(id);
                            }
                            Ok(())
                        }
                        Sock::Inbound { .. } => Ok(()),
                    };
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Binds `s` to the configured `<nat>` address and port ranges, if any (never for
    /// the host's loopback).
    fn bind_source(&mut self, s: &Socket, target: SocketAddrV4) -> io::Result<()> {
        if target.ip().is_loopback() || (self.bind_addrs.is_none() && self.bind_ports.is_none()) {
            return Ok(());
        }
        let addr = |c: u32| {
            self.bind_addrs
                .map_or(std::net::Ipv4Addr::UNSPECIFIED, |(a, b)| {
                    std::net::Ipv4Addr::from(a + c % (b - a).saturating_add(1))
                })
        };
        let Some((lo, hi)) = self.bind_ports else {
            self.cursor = self.cursor.wrapping_add(1);
            return s.bind(&SocketAddr::V4(SocketAddrV4::new(addr(self.cursor), 0)).into());
        };
        let span = u32::from(hi - lo) + 1;
        let mut last = io::Error::other("no source port free in the <nat><port> range");
        for _ in 0..span.min(64) {
            self.cursor = self.cursor.wrapping_add(1);
            let port = lo + u16::try_from(self.cursor % span).unwrap_or(0);
            match s.bind(&SocketAddr::V4(SocketAddrV4::new(addr(self.cursor), port)).into()) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn open(&mut self, flow: FlowId, proto: Proto, addr: SocketAddr) -> io::Result<()> {
        let domain = Domain::for_address(addr);
        let sock = match proto {
            Proto::Tcp => {
                let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
                s.set_nonblocking(true)?;
                s.set_nodelay(true)?;
                if let SocketAddr::V4(target) = addr {
                    self.bind_source(&s, target)?;
                }
                match s.connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc_einprogress()) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let mut t = TcpStream::from_std(std::net::TcpStream::from(s));
                self.registry.register(
                    &mut t,
                    token(flow),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Sock::Connecting(t)
            }
            Proto::Udp | Proto::Icmp => {
                let s = if proto == Proto::Udp {
                    Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?
                } else if let SocketAddr::V6(_) = addr {
                    // an ICMPv6 ping socket (the same net.ipv4.ping_group_range allows
                    // it); no raw fallback for IPv6
                    Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::ICMPV6))?
                } else {
                    // an unprivileged ping socket where net.ipv4.ping_group_range allows
                    // it, else the shared raw socket
                    match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
                        Ok(s) => s,
                        Err(e) if matches!(e.raw_os_error(), Some(1 | 13)) => {
                            let SocketAddr::V4(target) = addr else {
                                return Err(e);
                            };
                            let id = self.raw_icmp_id(flow)?;
                            self.socks.insert(
                                flow,
                                Sock::RawIcmp {
                                    target: *target.ip(),
                                    id,
                                },
                            );
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                };
                s.set_nonblocking(true)?;
                if let (Proto::Udp, SocketAddr::V4(target)) = (proto, addr) {
                    self.bind_source(&s, target)?;
                }
                s.connect(&addr.into())?;
                let mut u = UdpSocket::from_std(std::net::UdpSocket::from(s));
                self.registry
                    .register(&mut u, token(flow), Interest::READABLE)?;
                Sock::Udp(u)
            }
        };
        self.socks.insert(flow, sock);
        Ok(())
    }

    /// An echo id on the shared raw ICMP socket for `flow` (opening the socket once).
    fn raw_icmp_id(&mut self, flow: FlowId) -> io::Result<u16> {
        if self.raw.is_none() {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
            s.set_nonblocking(true)?;
            let mut sock = UdpSocket::from_std(std::net::UdpSocket::from(s));
            self.registry
                .register(&mut sock, Source::NatRawIcmp.token(), Interest::READABLE)?;
            self.raw = Some(RawIcmp {
                sock,
                by_id: HashMap::new(),
                next_id: 1,
            });
        }
        let raw = self
            .raw
            .as_mut()
            .ok_or_else(|| io::Error::other("no raw socket"))?;
        if raw.by_id.len() >= usize::from(u16::MAX) {
            return Err(io::Error::other("echo ids exhausted"));
        }
        while raw.by_id.contains_key(&raw.next_id) {
            raw.next_id = raw.next_id.wrapping_add(1).max(1);
        }
        let id = raw.next_id;
        raw.next_id = raw.next_id.wrapping_add(1).max(1);
        raw.by_id.insert(id, flow);
        Ok(id)
    }

    /// Echo replies on the shared raw ICMP socket.
    fn on_raw_icmp(&mut self, nat: &mut Nat, now: Instant) {
        let Some(raw) = self.raw.as_mut() else {
            return;
        };
        let mut buf = [0u8; 65536];
        loop {
            let (n, from) = match raw.sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // a raw IPv4 socket delivers the IP header too
            let pkt = buf.get(..n).unwrap_or_default();
            let ihl = usize::from(pkt.first().map_or(5, |b| b & 0x0f)) * 4;
            let Some(icmp) = pkt.get(ihl..) else { continue };
            if icmp.first() != Some(&0) || icmp.len() < 8 {
                continue; // not an echo reply
            }
            let id = u16::from_be_bytes([icmp[4], icmp[5]]);
            let Some(&flow) = raw.by_id.get(&id) else {
                continue;
            };
            let matches = matches!(
                (self.socks.get(&flow), from),
                (Some(Sock::RawIcmp { target, .. }), SocketAddr::V4(f)) if f.ip() == target
            );
            if matches {
                nat.datagram(now, flow, icmp);
            }
        }
        self.run(nat, now);
    }

    /// Readiness of a flow's host socket.
    fn on_event(&mut self, nat: &mut Nat, now: Instant, flow: FlowId) {
        let Some(sock) = self.socks.get_mut(&flow) else {
            return;
        };
        match sock {
            Sock::Connecting(t) => {
                let result = match t.take_error() {
                    Ok(Some(e)) | Err(e) => Some(Err(e)),
                    Ok(None) => match t.peer_addr() {
                        Ok(_) => Some(Ok(())),
                        Err(e) if e.kind() == ErrorKind::NotConnected => None,
                        Err(e) => Some(Err(e)),
                    },
                };
                match result {
                    None => {} // still connecting
                    Some(Ok(())) => {
                        if let Some(Sock::Connecting(t)) = self.socks.remove(&flow) {
                            self.socks.insert(flow, Sock::Tcp(t));
                        }
                        nat.opened(now, flow, Ok(()));
                        if let Some(Sock::Tcp(t)) = self.socks.get_mut(&flow) {
                            nat.pump(now, flow, &mut Stream(t));
                        }
                    }
                    Some(Err(e)) => {
                        let why = if e.kind() == ErrorKind::ConnectionRefused {
                            OpenError::Refused
                        } else {
                            OpenError::Unreachable
                        };
                        nat.opened(now, flow, Err(why));
                    }
                }
            }
            Sock::Tcp(t) => nat.pump(now, flow, &mut Stream(t)),
            Sock::RawIcmp { .. } | Sock::Inbound { .. } => {}
            Sock::Udp(u) => {
                let mut buf = [0u8; 65536];
                loop {
                    match u.recv(&mut buf) {
                        Ok(n) => nat.datagram(now, flow, buf.get(..n).unwrap_or_default()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // WouldBlock, or an ICMP error queued on the socket
                        Err(_) => break,
                    }
                }
            }
        }
        self.run(nat, now);
    }

    /// Open host sockets.
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// Opens the host ports of `fwd` (all or none).
    pub fn add_forward(&mut self, fwd: &PortForward) -> io::Result<()> {
        let mut opened = Vec::new();
        let addr = fwd.listen_address();
        for port in fwd.host_ports() {
            let r = self.open_listener(fwd, addr, port);
            match r {
                Ok(idx) => opened.push(idx),
                Err(e) => {
                    for idx in opened {
                        self.close_listener(idx);
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{} port {}: {e}", fwd.proto, SocketAddr::new(addr, port)),
                    ));
                }
            }
        }
        Ok(())
    }

    fn open_listener(
        &mut self,
        fwd: &PortForward,
        addr: std::net::IpAddr,
        port: u16,
    ) -> io::Result<usize> {
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(io::Error::other("too many forwarded ports"));
        }
        let idx = (0..MAX_LISTENERS)
            .find(|i| !self.listeners.contains_key(i))
            .ok_or_else(|| io::Error::other("too many forwarded ports"))?;
        let at = SocketAddr::new(addr, port);
        let tok = Source::NatListener(idx).token();
        // an IPv6 listener takes IPv6 only: `::` and `0.0.0.0` on one port are two
        // forwards, to guests of their own family
        let (kind, proto) = match fwd.proto {
            ForwardProto::Tcp => (Type::STREAM, Protocol::TCP),
            ForwardProto::Udp => (Type::DGRAM, Protocol::UDP),
        };
        let s = Socket::new(Domain::for_address(at), kind, Some(proto))?;
        if at.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(fwd.proto == ForwardProto::Tcp)?;
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        let sock = match fwd.proto {
            ForwardProto::Tcp => {
                s.listen(1024)?;
                let mut l = TcpListener::from_std(std::net::TcpListener::from(s));
                self.registry.register(&mut l, tok, Interest::READABLE)?;
                ListenSock::Tcp(l)
            }
            ForwardProto::Udp => {
                let mut u = UdpSocket::from_std(std::net::UdpSocket::from(s));
                self.registry.register(&mut u, tok, Interest::READABLE)?;
                ListenSock::Udp(u)
            }
        };
        self.listeners.insert(
            idx,
            Listener {
                fwd: fwd.clone(),
                host_port: port,
                sock,
            },
        );
        Ok(idx)
    }

    fn close_listener(&mut self, idx: usize) {
        if let Some(mut l) = self.listeners.remove(&idx) {
            let _ = match &mut l.sock {
                ListenSock::Tcp(t) => self.registry.deregister(t),
                ListenSock::Udp(u) => self.registry.deregister(u),
            };
        }
    }

    /// Closes the host ports of `fwd` (flows already open go on).
    pub fn remove_forward(&mut self, fwd: &PortForward) {
        let idx: Vec<usize> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.fwd == *fwd)
            .map(|(i, _)| *i)
            .collect();
        for i in idx {
            self.close_listener(i);
        }
    }

    /// A forwarded host port is ready: accept connections / read datagrams.
    fn on_listener(&mut self, nat: &mut Nat, now: Instant, idx: usize) {
        let Some(l) = self.listeners.get(&idx) else {
            return;
        };
        let Some(guest_port) = l.fwd.guest_port_for(l.host_port) else {
            return;
        };
        let guest = SocketAddr::new(l.fwd.to, guest_port);
        match &l.sock {
            ListenSock::Tcp(listener) => loop {
                let (mut stream, peer) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let _ = stream.set_nodelay(true);
                let Some(flow) = nat.accept_inbound(now, unmapped(peer), guest) else {
                    continue; // refused by the bounds: dropping the stream closes it
                };
                if self
                    .registry
                    .register(
                        &mut stream,
                        token(flow),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_ok()
                {
                    self.socks.insert(flow, Sock::Tcp(stream));
                }
            },
            ListenSock::Udp(u) => {
                let mut buf = [0u8; 65536];
                loop {
                    let (n, from) = match u.recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    };
                    let data = buf.get(..n).unwrap_or_default();
                    if let Some(flow) = nat.inbound_datagram(now, unmapped(from), guest, data) {
                        self.socks.entry(flow).or_insert(Sock::Inbound {
                            listener: idx,
                            client: from,
                        });
                    }
                }
            }
        }
        self.run(nat, now);
    }
}

/// The Internet checksum of an ICMP message.
fn icmp_checksum(msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in msg.chunks(2) {
        let w = match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// `EINPROGRESS` (Linux).
const fn libc_einprogress() -> i32 {
    115
}

/// `a`, with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn unmapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}
