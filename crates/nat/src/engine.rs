//! The engine: flows, the smoltcp interface, and frames built for guests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use etherparse::{
    icmpv4::DestUnreachableHeader, icmpv6::DestUnreachableCode, Icmpv4Slice, Icmpv4Type,
    Icmpv6Slice, Icmpv6Type, IpHeaders, NetSlice, PacketBuilder, PacketBuilderStep, SlicedPacket,
    TcpSlice, TransportSlice,
};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv6Packet, Icmpv6Repr, IpAddress, IpCidr, IpEndpoint,
    IpListenEndpoint, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress,
};

use crate::device::Queues;
use crate::{
    Action, DropReason, FlowId, FlowInfo, HostStream, Limits, NatConfig, OpenError, Proto, Stats,
};

const TTL: u8 = 64;
/// Bound on remembered guest MACs.
const MAX_NEIGHBOURS: usize = 4096;
/// How long a synthetic ARP entry fed to smoltcp is trusted before it is fed again.
const ARP_REFRESH: Duration = Duration::from_secs(10);
/// The engine asks to be woken at least this often while flows exist (flow timeouts).
const SWEEP: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    proto: Proto,
    guest: SocketAddr,
    remote: SocketAddr,
}

/// Why a guest is told its packet went nowhere.
#[derive(Clone, Copy, Debug)]
enum Unreachable {
    /// The remote did not answer (ICMP host / ICMPv6 address unreachable).
    Host,
    /// A bound refused the flow (administratively prohibited).
    Prohibited,
}

/// smoltcp's address for `ip`.
fn smol(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

#[derive(Debug)]
enum Kind {
    /// Waiting for the host connect; the guest's SYN is replayed into smoltcp once it
    /// succeeds.
    Connecting {
        syn: Vec<u8>,
        seq: u32,
    },
    Tcp {
        handle: SocketHandle,
        host_eof: bool,
        host_shut: bool,
    },
    Udp,
    Icmp,
}

#[derive(Debug)]
struct Flow {
    key: Key,
    target: SocketAddr,
    kind: Kind,
    created: Instant,
    last: Instant,
    replied: bool,
    inbound: bool,
    /// Since when the guest-facing handshake has been waiting (the guest's SYN while
    /// connecting, then the SYN-ACK to it; the SYN to the guest for a port forward);
    /// `None` once the socket is synchronized. An outbound flow with `Some` is one of
    /// its guest's half-open flows.
    handshake: Option<Instant>,
    bytes_out: u64,
    bytes_in: u64,
}

impl Flow {
    /// Counts against its guest's [`Limits::max_half_open_per_guest`].
    fn half_open(&self) -> bool {
        self.handshake.is_some() && !self.inbound
    }
}

/// A guest's flows, as the per-guest bounds count them.
#[derive(Clone, Copy, Debug, Default)]
struct GuestFlows {
    flows: usize,
    half_open: usize,
}

/// The NAT engine. See the crate doc.
pub struct Nat {
    cfg: NatConfig,
    iface: Interface,
    dev: Queues,
    sockets: SocketSet<'static>,
    flows: HashMap<FlowId, Flow>,
    by_key: HashMap<Key, FlowId>,
    per_guest: HashMap<IpAddr, GuestFlows>,
    next: u64,
    actions: VecDeque<Action>,
    dirty: VecDeque<FlowId>,
    dirty_set: HashSet<FlowId>,
    /// Guest address → MAC, and when it was last fed to smoltcp as an ARP entry.
    neighbours: HashMap<IpAddr, ([u8; 6], Option<Instant>)>,
    epoch: Instant,
    stats: Stats,
    /// Bytes of big TCP buffers held by flows (see [`Limits::tcp_memory`]).
    tcp_memory: usize,
}

/// A guest-facing TCP socket: big buffers while the budget lasts, small ones past it.
fn tcp_socket(limits: &Limits, in_use: &mut usize) -> tcp::Socket<'static> {
    let big = limits.tcp_buffer.max(limits.tcp_buffer_min);
    let size = if in_use.saturating_add(2 * big) <= limits.tcp_memory {
        if big > limits.tcp_buffer_min {
            *in_use += 2 * big;
        }
        big
    } else {
        limits.tcp_buffer_min
    };
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    );
    sock.set_nagle_enabled(false);
    sock
}

impl std::fmt::Debug for Nat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nat")
            .field("cfg", &self.cfg)
            .field("flows", &self.flows.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Nat {
    /// An engine for `cfg`; `seed` feeds smoltcp's initial sequence numbers.
    pub fn new(cfg: NatConfig, now: Instant, seed: u64) -> Self {
        let ip_mtu = if cfg.guest_tso {
            usize::from(u16::MAX)
        } else {
            cfg.mtu
        };
        let mut dev = Queues {
            mtu: ip_mtu + 14,
            tcp_csum_offload: cfg.guest_tso,
            ..Queues::default()
        };
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.gateway_mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, SmolInstant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(
                IpAddress::Ipv4(cfg.gateway_ip),
                cfg.prefix.min(32),
            ));
            for (ip6, len) in &cfg.ipv6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(*ip6), (*len).min(128)));
            }
        });
        iface.set_any_ip(true);
        Self {
            cfg,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            flows: HashMap::new(),
            by_key: HashMap::new(),
            per_guest: HashMap::new(),
            next: 1,
            actions: VecDeque::new(),
            dirty: VecDeque::new(),
            dirty_set: HashSet::new(),
            neighbours: HashMap::new(),
            epoch: now,
            stats: Stats::default(),
            tcp_memory: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Turns host access on or off (live).
    pub fn set_host_access(&mut self, on: bool) {
        self.cfg.host_access = on;
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            flows: self.flows.len(),
            ..self.stats
        }
    }

    /// The flows, for `nat-flows`.
    pub fn flows(&self, now: Instant) -> Vec<FlowInfo> {
        let mut v: Vec<FlowInfo> = self
            .flows
            .iter()
            .map(|(id, f)| FlowInfo {
                id: *id,
                proto: f.key.proto,
                guest: f.key.guest,
                remote: f.key.remote,
                target: f.target,
                inbound: f.inbound,
                state: match &f.kind {
                    Kind::Connecting { .. } => "connecting",
                    Kind::Tcp { handle, .. } => {
                        tcp_state_name(self.sockets.get::<tcp::Socket<'_>>(*handle).state())
                    }
                    Kind::Udp | Kind::Icmp if f.replied => "replied",
                    Kind::Udp | Kind::Icmp => "unreplied",
                },
                bytes_out: f.bytes_out,
                bytes_in: f.bytes_in,
                age: now.saturating_duration_since(f.created),
            })
            .collect();
        v.sort_by_key(|f| f.id);
        v
    }

    /// The next frame for a guest (from the gateway's MAC).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.dev.tx.pop_front()
    }

    /// Gives back a frame from [`poll_transmit`](Self::poll_transmit) or a
    /// [`Action::Datagram`]'s data once used, for the engine to build the next ones in
    /// (optional: without it each frame is a new allocation).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.dev.recycle(buf);
    }

    /// The next thing the driver must do on the host side.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A TCP flow that has work for [`pump`](Self::pump) (guest data to write, room
    /// for host data, a state change).
    pub fn poll_dirty(&mut self) -> Option<FlowId> {
        let id = self.dirty.pop_front()?;
        self.dirty_set.remove(&id);
        Some(id)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.flows.is_empty() {
            return None;
        }
        let t = self.smol_now(now);
        let smol = self.iface.poll_at(t, &self.sockets).map(|at| {
            self.epoch + Duration::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
        });
        let sweep = now + SWEEP;
        Some(smol.map_or(sweep, |s| s.min(sweep)))
    }

    /// TCP timers and flow timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.poll(now);
        let l = self.cfg.limits.clone();
        let mut expired = Vec::new();
        for (id, f) in &self.flows {
            let idle = now.saturating_duration_since(f.last);
            let over = match (&f.kind, f.handshake) {
                (Kind::Connecting { .. }, _) => idle >= l.tcp_connect_timeout,
                (Kind::Tcp { .. }, Some(since)) => {
                    let late = now.saturating_duration_since(since) >= l.tcp_handshake_timeout;
                    if late {
                        self.stats.handshake_timeouts += 1;
                    }
                    late
                }
                (Kind::Tcp { .. }, None) => idle >= l.tcp_idle,
                (Kind::Udp, _) if f.replied => idle >= l.udp_assured,
                (Kind::Udp, _) => idle >= l.udp_unreplied,
                (Kind::Icmp, _) => idle >= l.icmp_timeout,
            };
            if over {
                expired.push(*id);
            }
        }
        for id in expired {
            self.stats.timeouts += 1;
            let connecting = matches!(
                self.flows.get(&id).map(|f| &f.kind),
                Some(Kind::Connecting { .. })
            );
            if connecting {
                self.opened(now, id, Err(OpenError::Unreachable));
                continue;
            }
            if let Some(Kind::Tcp { handle, .. }) = self.flows.get(&id).map(|f| &f.kind) {
                self.sockets.get_mut::<tcp::Socket<'_>>(*handle).abort();
                self.poll(now);
            }
            self.remove(id);
        }
        let tcp: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, f)| matches!(f.kind, Kind::Tcp { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in tcp {
            self.reap(id);
        }
    }

    /// A frame a guest sent to the gateway's MAC for an address off the segment (or for
    /// the gateway's address on a port its services do not own).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        let Ok(p) = SlicedPacket::from_ethernet(frame) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        let (src, dst, fragmented) = match &p.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
                ip.is_payload_fragmented(),
            ),
            Some(NetSlice::Ipv6(ip)) if !self.cfg.ipv6.is_empty() => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.is_payload_fragmented(),
            ),
            _ => {
                self.stats.drop(DropReason::NotIpv4);
                return;
            }
        };
        if fragmented {
            self.stats.drop(DropReason::Fragment);
            return;
        }
        if !self.cfg.is_guest(src) {
            self.stats.drop(DropReason::ForeignSource);
            return;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(frame.get(6..12).unwrap_or(&[0; 6]));
        self.learn(src, mac);
        match &p.transport {
            Some(TransportSlice::Tcp(tcp)) => self.tcp_in(now, src, dst, tcp, frame),
            Some(TransportSlice::Udp(udp)) => self.udp_in(
                now,
                SocketAddr::new(src, udp.source_port()),
                SocketAddr::new(dst, udp.destination_port()),
                udp.payload(),
            ),
            Some(TransportSlice::Icmpv4(icmp)) => self.icmp_in(now, src, dst, icmp),
            Some(TransportSlice::Icmpv6(icmp)) => self.icmp6_in(now, src, dst, icmp),
            _ => self.stats.drop(DropReason::OtherTransport),
        }
    }

    /// An ARP reply to the gateway (smoltcp asked for a guest's MAC).
    pub fn handle_arp(&mut self, now: Instant, frame: &[u8]) {
        let f = self.dev.copy_of(frame);
        self.dev.rx.push_back(f);
        self.poll(now);
    }

    /// The host connect of a TCP `flow` finished.
    pub fn opened(&mut self, now: Instant, id: FlowId, result: Result<(), OpenError>) {
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        // only a connecting flow is waiting for this (a second report changes nothing)
        if !matches!(flow.kind, Kind::Connecting { .. }) {
            return;
        }
        let Kind::Connecting { syn, seq } = std::mem::replace(&mut flow.kind, Kind::Udp) else {
            return;
        };
        let key = flow.key;
        match result {
            Ok(()) => {
                // The socket listens on the remote address for the one SYN fed to it
                // next, and must leave Listen with it: a listener left in the set
                // would take the next SYN to that remote from any guest.
                let mut sock = tcp_socket(&self.cfg.limits, &mut self.tcp_memory);
                let _ = sock.listen(IpListenEndpoint {
                    addr: Some(smol(key.remote.ip())),
                    port: key.remote.port(),
                });
                let handle = self.sockets.add(sock);
                flow.kind = Kind::Tcp {
                    handle,
                    host_eof: false,
                    host_shut: false,
                };
                flow.last = now;
                flow.handshake = Some(now);
                self.feed(now, key.guest.ip(), syn);
                let s = self.sockets.get::<tcp::Socket<'_>>(handle);
                let guest = IpEndpoint::new(smol(key.guest.ip()), key.guest.port());
                if s.state() != tcp::State::SynReceived || s.remote_endpoint() != Some(guest) {
                    // smoltcp refused the SYN (SYN|FIN, port 0, a bad checksum)
                    self.stats.handshake_aborts += 1;
                    self.send_rst(key, 0, seq.wrapping_add(1));
                    self.remove(id);
                    return;
                }
                self.mark(id);
            }
            Err(e) => {
                match e {
                    OpenError::Refused => {
                        self.stats.refused_remote += 1;
                        self.send_rst(key, 0, seq.wrapping_add(1));
                    }
                    OpenError::Unreachable => {
                        self.stats.unreachable += 1;
                        self.send_unreachable(key.guest, Unreachable::Host, &syn);
                    }
                }
                self.remove(id);
            }
        }
    }

    /// Moves a TCP flow's bytes: guest data to the host socket while it takes them,
    /// host data to the guest while its window has room; half-closes and resets both
    /// ways. Call it for every [`poll_dirty`](Self::poll_dirty) flow and whenever the
    /// host socket becomes readable or writable.
    pub fn pump(&mut self, now: Instant, id: FlowId, host: &mut dyn HostStream) {
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        let Kind::Tcp {
            handle,
            host_eof,
            host_shut,
        } = &mut flow.kind
        else {
            return;
        };
        let sock = self.sockets.get_mut::<tcp::Socket<'_>>(*handle);
        let mut failed = false;
        // guest → host
        while sock.can_recv() {
            let r = sock.recv(|buf| match host.write(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            });
            match r {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => flow.bytes_out += n as u64,
                Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(_)) => {
                    failed = true;
                    break;
                }
            }
        }
        let guest_done = matches!(
            sock.state(),
            tcp::State::CloseWait
                | tcp::State::LastAck
                | tcp::State::Closing
                | tcp::State::TimeWait
        );
        if guest_done && !*host_shut && sock.recv_queue() == 0 {
            let _ = host.shutdown_write();
            *host_shut = true;
        }
        // host → guest
        while !*host_eof && !failed && sock.can_send() {
            let r = sock.send(|buf| match host.read(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            });
            match r {
                Ok(Ok(0)) => {
                    *host_eof = true;
                    sock.close();
                }
                Ok(Ok(n)) => flow.bytes_in += n as u64,
                Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(_)) => failed = true,
                Err(_) => break,
            }
        }
        if failed {
            sock.abort();
        }
        flow.last = now;
        self.poll(now);
        self.reap(id);
    }

    /// A datagram from a flow's host socket: a UDP payload, or an ICMP echo reply.
    pub fn datagram(&mut self, now: Instant, id: FlowId, data: &[u8]) {
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        flow.last = now;
        flow.replied = true;
        flow.bytes_in += data.len() as u64;
        let key = flow.key;
        match flow.kind {
            Kind::Udp => self.send_udp(key.remote, key.guest, data),
            Kind::Icmp if key.guest.is_ipv4() => {
                let Ok(icmp) = Icmpv4Slice::from_slice(data) else {
                    return;
                };
                if let Icmpv4Type::EchoReply(echo) = icmp.icmp_type() {
                    self.send_echo_reply(key.remote.ip(), key.guest, echo.seq, icmp.payload());
                }
            }
            Kind::Icmp => {
                let Ok(icmp) = Icmpv6Slice::from_slice(data) else {
                    return;
                };
                if let Icmpv6Type::EchoReply(echo) = icmp.icmp_type() {
                    self.send_echo_reply(key.remote.ip(), key.guest, echo.seq, icmp.payload());
                }
            }
            _ => {}
        }
    }

    /// A connection accepted on a forwarded host port, to `guest`: opens a TCP
    /// connection to the guest from the client's own address. `None` when the bounds
    /// refuse it (the driver closes the connection).
    pub fn accept_inbound(
        &mut self,
        now: Instant,
        client: SocketAddr,
        guest: SocketAddr,
    ) -> Option<FlowId> {
        let key = Key {
            proto: Proto::Tcp,
            guest,
            remote: client,
        };
        if self.by_key.contains_key(&key)
            || !self.admit(guest.ip())
            || guest.is_ipv4() != client.is_ipv4()
        {
            return None;
        }
        let mut sock = tcp_socket(&self.cfg.limits, &mut self.tcp_memory);
        let remote = IpEndpoint::new(smol(guest.ip()), guest.port());
        let local = IpListenEndpoint {
            addr: Some(smol(client.ip())),
            port: client.port(),
        };
        if sock.connect(self.iface.context(), remote, local).is_err() {
            return None;
        }
        let handle = self.sockets.add(sock);
        let id = self.insert(
            now,
            key,
            client,
            Kind::Tcp {
                handle,
                host_eof: false,
                host_shut: false,
            },
            true,
        );
        self.stats.tcp_flows += 1;
        self.feed_neighbour(now, guest.ip());
        self.poll(now);
        Some(id)
    }

    /// A datagram that arrived on a forwarded host UDP port from `client`, for `guest`.
    /// Returns the flow (the driver sends the guest's replies, which come out as
    /// [`Action::Datagram`], to `client` from that port); `None` if refused.
    pub fn inbound_datagram(
        &mut self,
        now: Instant,
        client: SocketAddr,
        guest: SocketAddr,
        data: &[u8],
    ) -> Option<FlowId> {
        if guest.is_ipv4() != client.is_ipv4() {
            return None;
        }
        let key = Key {
            proto: Proto::Udp,
            guest,
            remote: client,
        };
        let id = match self.by_key.get(&key) {
            Some(id) => *id,
            None => {
                if !self.admit(guest.ip()) {
                    return None;
                }
                self.stats.udp_flows += 1;
                self.insert(now, key, client, Kind::Udp, true)
            }
        };
        if let Some(f) = self.flows.get_mut(&id) {
            f.last = now;
            f.bytes_in += data.len() as u64;
        }
        self.send_udp(client, guest, data);
        Some(id)
    }

    // ---- guest traffic ----

    fn tcp_in(&mut self, now: Instant, src: IpAddr, dst: IpAddr, tcp: &TcpSlice<'_>, frame: &[u8]) {
        let key = Key {
            proto: Proto::Tcp,
            guest: SocketAddr::new(src, tcp.source_port()),
            remote: SocketAddr::new(dst, tcp.destination_port()),
        };
        if let Some(&id) = self.by_key.get(&key) {
            let Some(flow) = self.flows.get_mut(&id) else {
                return;
            };
            flow.last = now;
            if matches!(flow.kind, Kind::Tcp { .. }) {
                let mut f = self.dev.copy_of(frame);
                if tcp.syn() && self.cfg.guest_tso {
                    raise_mss(&mut f);
                }
                self.feed(now, src, f);
                if self.settle(id) {
                    self.mark(id);
                }
            }
            // Connecting: a retransmitted SYN; the first is replayed once connected.
            return;
        }
        if tcp.rst() {
            return;
        }
        if !tcp.syn() || tcp.ack() {
            // Not ours (a flow that ended): reset it, as a host would.
            let seg_len = u32::try_from(tcp.payload().len()).unwrap_or(0)
                + u32::from(tcp.syn())
                + u32::from(tcp.fin());
            let (seq, ack) = if tcp.ack() {
                (tcp.acknowledgment_number(), 0)
            } else {
                (0, tcp.sequence_number().wrapping_add(seg_len))
            };
            self.send_rst(key, seq, ack);
            return;
        }
        let Some(target) = self.target_for(key.remote) else {
            self.send_rst(key, 0, tcp.sequence_number().wrapping_add(1));
            return;
        };
        if !self.admit(src) {
            self.stats.refused_limit += 1;
            self.send_rst(key, 0, tcp.sequence_number().wrapping_add(1));
            return;
        }
        let half_open = self.per_guest.get(&src).map_or(0, |g| g.half_open);
        if half_open >= self.cfg.limits.max_half_open_per_guest {
            self.stats.refused_limit += 1;
            self.stats.refused_half_open += 1;
            self.send_rst(key, 0, tcp.sequence_number().wrapping_add(1));
            return;
        }
        self.stats.tcp_flows += 1;
        let mut syn = frame.to_vec();
        if self.cfg.guest_tso {
            raise_mss(&mut syn);
        }
        let id = self.insert(
            now,
            key,
            target,
            Kind::Connecting {
                syn,
                seq: tcp.sequence_number(),
            },
            false,
        );
        self.actions.push_back(Action::Open {
            flow: id,
            proto: Proto::Tcp,
            target,
        });
    }

    fn udp_in(&mut self, now: Instant, guest: SocketAddr, remote: SocketAddr, payload: &[u8]) {
        let key = Key {
            proto: Proto::Udp,
            guest,
            remote,
        };
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(f) = self.flows.get_mut(&id) {
                f.last = now;
                f.bytes_out += payload.len() as u64;
            }
            let data = self.dev.copy_of(payload);
            self.actions.push_back(Action::Datagram { flow: id, data });
            return;
        }
        let Some(target) = self.target_for(remote) else {
            self.stats.drop(DropReason::NoTarget);
            return;
        };
        if !self.admit(guest.ip()) {
            self.stats.refused_limit += 1;
            let orig = self.udp_original(guest, remote, payload);
            self.send_unreachable(guest, Unreachable::Prohibited, &orig);
            return;
        }
        self.stats.udp_flows += 1;
        let id = self.insert(now, key, target, Kind::Udp, false);
        if let Some(f) = self.flows.get_mut(&id) {
            f.bytes_out += payload.len() as u64;
        }
        self.actions.push_back(Action::Open {
            flow: id,
            proto: Proto::Udp,
            target,
        });
        self.actions.push_back(Action::Datagram {
            flow: id,
            data: payload.to_vec(),
        });
    }

    fn icmp_in(&mut self, now: Instant, src: IpAddr, dst: IpAddr, icmp: &Icmpv4Slice<'_>) {
        let Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else {
            self.stats.drop(DropReason::NotEchoRequest);
            return;
        };
        self.echo_in(now, src, dst, 8, (echo.id, echo.seq), icmp.payload());
    }

    fn icmp6_in(&mut self, now: Instant, src: IpAddr, dst: IpAddr, icmp: &Icmpv6Slice<'_>) {
        let Icmpv6Type::EchoRequest(echo) = icmp.icmp_type() else {
            self.stats.drop(DropReason::NotEchoRequest);
            return;
        };
        self.echo_in(now, src, dst, 128, (echo.id, echo.seq), icmp.payload());
    }

    /// An echo request (ICMP type 8, ICMPv6 type 128: `kind`) with `id` and `seq`.
    fn echo_in(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        kind: u8,
        (id, seq): (u16, u16),
        payload: &[u8],
    ) {
        let key = Key {
            proto: Proto::Icmp,
            guest: SocketAddr::new(src, id),
            remote: SocketAddr::new(dst, 0),
        };
        let mut data = self.dev.buffer();
        data.extend_from_slice(&[kind, 0, 0, 0]);
        data.extend_from_slice(&id.to_be_bytes());
        data.extend_from_slice(&seq.to_be_bytes());
        data.extend_from_slice(payload);
        let id = match self.by_key.get(&key) {
            Some(id) => *id,
            None => {
                let Some(target) = self.target_for(key.remote) else {
                    self.stats.drop(DropReason::NoTarget);
                    return;
                };
                if !self.admit(src) {
                    self.stats.refused_limit += 1;
                    return;
                }
                self.stats.icmp_flows += 1;
                let id = self.insert(now, key, target, Kind::Icmp, false);
                self.actions.push_back(Action::Open {
                    flow: id,
                    proto: Proto::Icmp,
                    target,
                });
                id
            }
        };
        if let Some(f) = self.flows.get_mut(&id) {
            f.last = now;
            f.bytes_out += data.len() as u64;
        }
        self.actions.push_back(Action::Datagram { flow: id, data });
    }

    /// Where the host side of a flow to `remote` goes: the remote itself, or the
    /// host's loopback for the gateway's own address; `None` if it may not go out.
    fn target_for(&self, remote: SocketAddr) -> Option<SocketAddr> {
        let ip = remote.ip();
        if self.cfg.is_gateway(ip) {
            let lo = match ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            return self
                .cfg
                .host_access
                .then(|| SocketAddr::new(lo, remote.port()));
        }
        // the host's loopback only through the gateway address (host access): a guest
        // packet addressed to 127.0.0.0/8 or ::1 itself goes nowhere
        let nowhere = match ip {
            IpAddr::V4(a) => a.is_broadcast() || self.cfg.in_subnet(a),
            // link-local and unique-local-on-the-segment addresses are not routed
            IpAddr::V6(a) => a.is_unicast_link_local() || self.cfg.in_prefix6(a),
        };
        if nowhere || ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            return None;
        }
        Some(remote)
    }

    // ---- tables ----

    fn admit(&self, guest: IpAddr) -> bool {
        let l = &self.cfg.limits;
        self.flows.len() < l.max_flows
            && self.per_guest.get(&guest).map_or(0, |g| g.flows) < l.max_flows_per_guest
    }

    fn insert(
        &mut self,
        now: Instant,
        key: Key,
        target: SocketAddr,
        kind: Kind,
        inbound: bool,
    ) -> FlowId {
        let id = FlowId(self.next);
        self.next += 1;
        let handshake = match kind {
            Kind::Connecting { .. } => Some(now),
            Kind::Tcp { .. } if inbound => Some(now),
            _ => None,
        };
        let flow = Flow {
            key,
            target,
            kind,
            created: now,
            last: now,
            replied: false,
            inbound,
            handshake,
            bytes_out: 0,
            bytes_in: 0,
        };
        let g = self.per_guest.entry(key.guest.ip()).or_default();
        g.flows += 1;
        g.half_open += usize::from(flow.half_open());
        self.by_key.insert(key, id);
        self.flows.insert(id, flow);
        id
    }

    fn remove(&mut self, id: FlowId) {
        let Some(f) = self.flows.remove(&id) else {
            return;
        };
        self.by_key.remove(&f.key);
        if let Some(g) = self.per_guest.get_mut(&f.key.guest.ip()) {
            g.flows = g.flows.saturating_sub(1);
            if f.half_open() {
                g.half_open = g.half_open.saturating_sub(1);
            }
            if g.flows == 0 {
                self.per_guest.remove(&f.key.guest.ip());
            }
        }
        if let Kind::Tcp { handle, .. } = f.kind {
            // the set holds only TCP sockets (other variants exist when a crate in the
            // same build enables more of smoltcp's socket features)
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::socket::Socket::Tcp(t) = self.sockets.remove(handle) {
                let size = t.recv_capacity() + t.send_capacity();
                if size > 2 * self.cfg.limits.tcp_buffer_min {
                    self.tcp_memory = self.tcp_memory.saturating_sub(size);
                }
            }
        }
        self.actions.push_back(Action::Close { flow: id });
    }

    /// Ends a TCP flow whose guest side is over (or back in Listen: see
    /// [`settle`](Self::settle)).
    fn reap(&mut self, id: FlowId) {
        let Some(Kind::Tcp { handle, .. }) = self.flows.get(&id).map(|f| &f.kind) else {
            return;
        };
        match self.sockets.get::<tcp::Socket<'_>>(*handle).state() {
            tcp::State::Closed | tcp::State::TimeWait => self.remove(id),
            tcp::State::Listen => {
                self.stats.handshake_aborts += 1;
                self.remove(id);
            }
            _ => {}
        }
    }

    /// After a guest segment reached TCP flow `id`'s socket: ends the flow if the
    /// socket went back to Listen, notes a finished handshake. Returns whether the
    /// flow lives on.
    ///
    /// RFC 9293 §3.10.7.4: a RST in SYN-RECEIVED returns a passive open to LISTEN, which
    /// is what a guest's kernel makes of a SYN-ACK to a raw SYN it sent (a SYN scan).
    /// The socket listens on the remote address the guest asked for, so it would take
    /// the next SYN to that remote from any guest: the flow is dead and goes now, with
    /// its host socket.
    fn settle(&mut self, id: FlowId) -> bool {
        let Some(flow) = self.flows.get_mut(&id) else {
            return false;
        };
        let Kind::Tcp { handle, .. } = &flow.kind else {
            return true;
        };
        match self.sockets.get::<tcp::Socket<'_>>(*handle).state() {
            tcp::State::Listen => {
                self.stats.handshake_aborts += 1;
                self.remove(id);
                return false;
            }
            tcp::State::Closed | tcp::State::SynSent | tcp::State::SynReceived => {}
            _ => {
                let half_open = flow.half_open();
                if flow.handshake.take().is_some() && half_open {
                    if let Some(g) = self.per_guest.get_mut(&flow.key.guest.ip()) {
                        g.half_open = g.half_open.saturating_sub(1);
                    }
                }
            }
        }
        true
    }

    fn mark(&mut self, id: FlowId) {
        if self.dirty_set.insert(id) {
            self.dirty.push_back(id);
        }
    }

    fn learn(&mut self, ip: IpAddr, mac: [u8; 6]) {
        if let Some(e) = self.neighbours.get_mut(&ip) {
            if e.0 != mac {
                *e = (mac, None);
            }
            return;
        }
        if self.neighbours.len() >= MAX_NEIGHBOURS {
            self.neighbours.clear();
        }
        self.neighbours.insert(ip, (mac, None));
    }

    fn guest_mac(&self, ip: IpAddr) -> [u8; 6] {
        self.neighbours.get(&ip).map_or([0xff; 6], |e| e.0)
    }

    // ---- smoltcp ----

    fn smol_now(&self, now: Instant) -> SmolInstant {
        let us = now.saturating_duration_since(self.epoch).as_micros();
        SmolInstant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    fn poll(&mut self, now: Instant) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
    }

    /// Hands smoltcp a guest frame, telling it first (a synthetic ARP reply) where the
    /// guest is, so its answers need no ARP round trip.
    fn feed(&mut self, now: Instant, guest: IpAddr, frame: Vec<u8>) {
        self.feed_neighbour(now, guest);
        self.dev.rx.push_back(frame);
        self.poll(now);
    }

    fn feed_neighbour(&mut self, now: Instant, guest: IpAddr) {
        let Some(entry) = self.neighbours.get_mut(&guest) else {
            return;
        };
        if entry
            .1
            .is_some_and(|t| now.saturating_duration_since(t) < ARP_REFRESH)
        {
            return;
        }
        entry.1 = Some(now);
        let mac = entry.0;
        let guest = match guest {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => {
                self.feed_neighbour6(mac, a);
                return;
            }
        };
        let own = EthernetAddress(self.cfg.gateway_mac);
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: guest,
            target_hardware_addr: own,
            target_protocol_addr: self.cfg.gateway_ip,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(mac),
            dst_addr: own,
            ethertype: EthernetProtocol::Arp,
        };
        let mut buf = vec![0; eth.buffer_len() + arp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
        self.dev.rx.push_back(buf);
    }

    /// The IPv6 form of the synthetic ARP reply: an unsolicited neighbor advertisement
    /// from the guest for its own address, which smoltcp takes into its neighbor cache.
    fn feed_neighbour6(&mut self, mac: [u8; 6], guest: Ipv6Addr) {
        let Some(&(own, _)) = self.cfg.ipv6.first() else {
            return;
        };
        let na = neighbor_advert(mac, guest, self.cfg.gateway_mac, own);
        self.dev.rx.push_back(na);
    }

    /// The IP layer of a frame from `src` to the guest at `dst` (both of one family).
    fn ip_to_guest(&self, src: IpAddr, dst: IpAddr) -> Option<PacketBuilderStep<IpHeaders>> {
        let eth = PacketBuilder::ethernet2(self.cfg.gateway_mac, self.guest_mac(dst));
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(eth.ipv4(s.octets(), d.octets(), TTL)),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(eth.ipv6(s.octets(), d.octets(), TTL)),
            _ => None,
        }
    }

    /// The gateway's address of `guest`'s family (errors come from it).
    fn gateway_for(&self, guest: IpAddr) -> IpAddr {
        match guest {
            IpAddr::V4(_) => IpAddr::V4(self.cfg.gateway_ip),
            IpAddr::V6(_) => self
                .cfg
                .ipv6
                .first()
                .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |(a, _)| IpAddr::V6(*a)),
        }
    }

    // ---- frames built here ----

    fn send_rst(&mut self, key: Key, seq: u32, ack: u32) {
        let Some(ip) = self.ip_to_guest(key.remote.ip(), key.guest.ip()) else {
            return;
        };
        let b = ip
            .tcp(key.remote.port(), key.guest.port(), seq, 0)
            .rst()
            .ack(ack);
        let mut frame = Vec::with_capacity(b.size(0));
        if b.write(&mut frame, &[]).is_ok() {
            self.dev.tx.push_back(frame);
        }
    }

    /// Destination unreachable (ICMP, or ICMPv6 for an IPv6 guest) from the gateway,
    /// quoting `orig` (an Ethernet frame or an IP packet): for IPv4 the IP header and 8
    /// bytes, for IPv6 as much as fits in the minimum MTU (RFC 4443 §3.1).
    fn send_unreachable(&mut self, guest: SocketAddr, why: Unreachable, orig: &[u8]) {
        let ether = orig.get(12..14);
        let ip = if orig.len() > 14 && matches!(ether, Some([0x08, 0x00] | [0x86, 0xdd])) {
            &orig[14..]
        } else {
            orig
        };
        let from = self.gateway_for(guest.ip());
        let Some(step) = self.ip_to_guest(from, guest.ip()) else {
            return;
        };
        let mut frame = Vec::new();
        let written = if guest.is_ipv4() {
            let ihl = usize::from(ip.first().map_or(5, |b| b & 0x0f)) * 4;
            let code = match why {
                Unreachable::Host => DestUnreachableHeader::Host,
                Unreachable::Prohibited => DestUnreachableHeader::FilterProhibited,
            };
            let quoted = ip.get(..(ihl + 8).min(ip.len())).unwrap_or(ip);
            step.icmpv4(Icmpv4Type::DestinationUnreachable(code))
                .write(&mut frame, quoted)
        } else {
            let code = match why {
                Unreachable::Host => DestUnreachableCode::Address,
                Unreachable::Prohibited => DestUnreachableCode::Prohibited,
            };
            let quoted = ip.get(..ip.len().min(1280 - 48)).unwrap_or(ip);
            step.icmpv6(Icmpv6Type::DestinationUnreachable(code))
                .write(&mut frame, quoted)
        };
        if written.is_ok() {
            self.dev.tx.push_back(frame);
        }
    }

    /// The IP packet a guest's UDP datagram was (for quoting in an ICMP error).
    fn udp_original(&self, guest: SocketAddr, remote: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let ip = match (guest.ip(), remote.ip()) {
            (IpAddr::V4(g), IpAddr::V4(r)) => PacketBuilder::ipv4(g.octets(), r.octets(), TTL),
            (IpAddr::V6(g), IpAddr::V6(r)) => PacketBuilder::ipv6(g.octets(), r.octets(), TTL),
            _ => return Vec::new(),
        };
        let b = ip.udp(guest.port(), remote.port());
        let mut v = Vec::new();
        let _ = b.write(&mut v, payload.get(..8).unwrap_or(payload));
        v
    }

    fn send_udp(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let Some(ip) = self.ip_to_guest(from.ip(), to.ip()) else {
            return;
        };
        let b = ip.udp(from.port(), to.port());
        let mut frame = self.dev.buffer();
        if b.write(&mut frame, data).is_ok() {
            self.dev.tx.push_back(frame);
        }
    }

    fn send_echo_reply(&mut self, from: IpAddr, to: SocketAddr, seq: u16, data: &[u8]) {
        let Some(ip) = self.ip_to_guest(from, to.ip()) else {
            return;
        };
        let mut frame = self.dev.buffer();
        let written = if to.is_ipv4() {
            ip.icmpv4_echo_reply(to.port(), seq).write(&mut frame, data)
        } else {
            ip.icmpv6_echo_reply(to.port(), seq).write(&mut frame, data)
        };
        if written.is_ok() {
            self.dev.tx.push_back(frame);
        }
    }
}

/// An unsolicited neighbor advertisement (override) from `mac`/`ip` for its own
/// address, to `to_mac`/`to`: what a smoltcp interface takes into its neighbor cache, so
/// that its answers to `ip` need no solicitation round trip (the IPv6 form of a
/// synthetic ARP reply).
pub fn neighbor_advert(mac: [u8; 6], ip: Ipv6Addr, to_mac: [u8; 6], to: Ipv6Addr) -> Vec<u8> {
    let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: ip,
        lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
    });
    let repr = Ipv6Repr {
        src_addr: ip,
        dst_addr: to,
        next_header: IpProtocol::Icmpv6,
        payload_len: na.buffer_len(),
        hop_limit: 255,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(to_mac),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut buf = vec![0; eth.buffer_len() + repr.buffer_len() + na.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut packet = Ipv6Packet::new_unchecked(f.payload_mut());
    repr.emit(&mut packet);
    na.emit(
        &ip,
        &to,
        &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// The MSS that fills a 64 KiB IP packet.
const BIG_MSS: u16 = u16::MAX - 40;

/// Raises the MSS option of a guest's SYN (in an Ethernet frame) to [`BIG_MSS`]: the
/// guest takes super-frames through its offload-capable port, so the guest-facing TCP
/// may send 64 KiB segments (marked for segmentation on the way out). The checksum is
/// not fixed: smoltcp does not verify it (guests send partial checksums anyway).
fn raise_mss(frame: &mut [u8]) {
    let Some(&vihl) = frame.get(14) else { return };
    let tcp = match vihl >> 4 {
        4 => 14 + usize::from(vihl & 0x0f) * 4,
        // IPv6 without extension headers (next header TCP); others keep their MSS
        6 if frame.get(20) == Some(&6) => 14 + 40,
        _ => return,
    };
    let Some(&off) = frame.get(tcp + 12) else {
        return;
    };
    let end = (tcp + usize::from(off >> 4) * 4).min(frame.len());
    let mut i = tcp + 20;
    while i < end {
        match frame.get(i).copied() {
            Some(0) | None => return,
            Some(1) => i += 1,
            Some(2) => {
                if frame.get(i + 1) == Some(&4) {
                    if let Some(v) = frame.get_mut(i + 2..i + 4) {
                        v.copy_from_slice(&BIG_MSS.to_be_bytes());
                    }
                }
                return;
            }
            Some(_) => {
                let len = usize::from(frame.get(i + 1).copied().unwrap_or(0));
                if len < 2 {
                    return;
                }
                i += len;
            }
        }
    }
}

fn tcp_state_name(s: tcp::State) -> &'static str {
    match s {
        tcp::State::Closed => "closed",
        tcp::State::Listen => "listen",
        tcp::State::SynSent => "syn-sent",
        tcp::State::SynReceived => "syn-received",
        tcp::State::Established => "established",
        tcp::State::FinWait1 => "fin-wait-1",
        tcp::State::FinWait2 => "fin-wait-2",
        tcp::State::CloseWait => "close-wait",
        tcp::State::Closing => "closing",
        tcp::State::LastAck => "last-ack",
        tcp::State::TimeWait => "time-wait",
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn big_buffers_until_the_budget_is_spent_then_small_ones() {
        let limits = Limits {
            tcp_buffer: 1 << 20,
            tcp_buffer_min: 64 << 10,
            tcp_memory: 5 << 20,
            ..Limits::default()
        };
        let mut in_use = 0;
        let sizes: Vec<usize> = (0..4)
            .map(|_| tcp_socket(&limits, &mut in_use).send_capacity())
            .collect();
        assert_eq!(sizes, [1 << 20, 1 << 20, 64 << 10, 64 << 10]);
        assert_eq!(in_use, 4 << 20);
    }
}
