//! The virtual gateway of a vnet network: the network's own address on the segment.
//!
//! In libvirt the host answers for the network's address (on `virbr0`) and dnsmasq hands
//! out leases. In vnet the gateway is one more port of the switch, inside `switchd`:
//! frames the switch delivers to it (broadcasts, and unicast to its MAC) are answered here:
//! - ARP requests for the gateway address (and a gratuitous ARP when it starts);
//! - ICMP echo requests to the gateway address;
//! - DHCP (UDP port 67), handed to a [`vnet_dhcp::Server`];
//! - DNS on UDP and TCP port 53, handed to a [`vnet_dns::Server`] (TCP runs on a small
//!   `smoltcp` interface, see [`tcp`]); forwarded queries leave through the driver
//!   ([`Gateway::dns_mut`]`.poll_upstream()`), their answers come back through
//!   [`Gateway::handle_dns_upstream`];
//! - the sender of every ARP packet it sees is reported to the DHCP server
//!   ([`Server::note_in_use`]), so addresses guests configured by hand are not offered;
//! - IPv6 ([`ndp`]): neighbor discovery for its link-local and `<ip family='ipv6'>`
//!   addresses, router advertisements (SLAAC, DNS server, search domain), ICMPv6 echo.
//!
//! Sans-IO: frames and the time ([`Now`]) come in ([`Gateway::handle_frame`]), frames to
//! inject into the switch go out ([`Gateway::poll_transmit`]). It owns no socket and
//! reads no clock. The gateway's traffic is control-plane traffic (ARP, ping, DHCP, DNS),
//! so replies are built in fresh buffers; the guest-to-guest path never comes here.
//!
//! It does not forward anything off the segment: the NAT and routing engines do that.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::SystemTime;

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Icmpv4Slice, Icmpv4Type, IpNumber,
    Ipv4Slice, PacketBuilder, TcpHeaderSlice, UdpSlice,
};
use vnet_dhcp::{PacketMeta, ReplyDest, Server};
use vnet_dns::Transport;
use vnet_switch::wire::{EtherType as WireEtherType, EthernetFrame};
use vnet_switch::MacAddr;

/// Who takes a frame addressed to the gateway when a host port shares its identity
/// ([`Gateway::host_claim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The gateway's services or the mode's engine.
    Gateway,
    /// The host port (the host kernel).
    Host,
    /// Both (ARP replies).
    Both,
}

/// Bound on frames waiting in [`Gateway::poll_transmit`]; past it, replies are dropped
/// and counted (a guest cannot make the gateway buffer without bound).
pub const MAX_QUEUED: usize = 256;

/// Bound on the gateway's neighbour table (guest address → MAC, for late DNS answers).
pub const MAX_NEIGHBOURS: usize = 4096;

pub mod ndp;
pub mod tcp;

pub use ndp::{Ipv6Config, Ipv6Prefix, NdpStats};

const DNS_PORT: u16 = 53;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const TTL: u8 = 64;

/// Who the gateway is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's MAC address (the network's `<mac address>`).
    pub mac: MacAddr,
    /// The gateway's IPv4 address (the network's first IPv4 `<ip address>`; `None`: an
    /// IPv6-only network, where the gateway answers no ARP and no IPv4).
    pub ip: Option<Ipv4Addr>,
    /// The IPv4 subnet's prefix length.
    pub prefix: u8,
    /// The network's IP MTU (1500 unless the network has `<mtu>`).
    pub mtu: u16,
    /// The IPv6 side: what router advertisements say (`None`: no IPv6 on the gateway).
    pub ipv6: Option<Ipv6Config>,
}

/// The time, as the gateway's services want it: the wall clock for DHCP leases, a
/// monotonic clock for DNS and TCP timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Wall-clock time.
    pub wall: SystemTime,
    /// Monotonic time.
    pub mono: std::time::Instant,
}

impl Now {
    /// The current time from the system's clocks (for drivers; the gateway never calls it).
    pub fn system() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }
}

impl GatewayConfig {
    /// The gateway's addresses with their prefixes, for log lines:
    /// `192.168.122.1/24, 2001:db8::1/64`.
    pub fn addresses(&self) -> String {
        let v4 = self.ip.map(|ip| format!("{ip}/{}", self.prefix));
        let v6 = self
            .ipv6
            .iter()
            .flat_map(|v6| v6.prefixes.iter())
            .map(|p| format!("{}/{}", p.addr, p.len));
        v4.into_iter().chain(v6).collect::<Vec<_>>().join(", ")
    }

    /// The IPv4 address, or 0.0.0.0 on an IPv6-only network (whose gateway never takes
    /// the IPv4 paths that use it).
    fn ip4(&self) -> Ipv4Addr {
        self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        self.ip.is_some() && u32::from(ip) & mask == u32::from(self.ip4()) & mask
    }

    fn broadcast(&self) -> Ipv4Addr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.ip4()) | !mask)
    }
}

/// Counters of the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayStats {
    /// ARP replies sent for the gateway address.
    pub arp_replies: u64,
    /// Gratuitous ARPs sent.
    pub gratuitous_arps: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// DHCP messages handed to the server.
    pub dhcp_in: u64,
    /// DHCP replies sent.
    pub dhcp_out: u64,
    /// DHCP messages the server dropped (malformed, truncated, not a request).
    pub dhcp_dropped: u64,
    /// Frames addressed to the gateway that could not be parsed.
    pub malformed: u64,
    /// Frames not for any gateway service (ignored).
    pub ignored: u64,
    /// Replies dropped because [`MAX_QUEUED`] frames were waiting.
    pub queue_full: u64,
    /// DNS queries over UDP handed to the DNS server.
    pub dns_udp_in: u64,
    /// DNS answers sent over UDP.
    pub dns_udp_out: u64,
    /// DNS answers over TCP whose connection was gone or full.
    pub dns_tcp_lost: u64,
    /// TCP connections refused: the client already held its share.
    pub dns_tcp_refused: u64,
    /// Late DNS answers for a client whose MAC the gateway no longer knew.
    pub dns_no_neighbour: u64,
}

/// The gateway. See the crate doc.
#[derive(Debug)]
pub struct Gateway {
    cfg: GatewayConfig,
    dhcp: Option<Server>,
    dns: Option<vnet_dns::Server>,
    tcp: Option<tcp::TcpService>,
    nat: Option<vnet_nat::Nat>,
    /// The IPv6 side (neighbor discovery, router advertisements, echo).
    ndp: Option<ndp::Ndp>,
    /// The DHCPv6 server (UDP port 547), when an IPv6 `<ip>` has a `<dhcp>`.
    dhcp6: Option<vnet_dhcp::v6::Server6>,
    /// Guest address → MAC, from ARP and from frames sent to the gateway (bounded).
    neighbours: HashMap<Ipv4Addr, [u8; 6]>,
    /// IPv6 DNS clients → their MAC and the gateway address they asked (bounded), for
    /// answers that come later (forwarded queries).
    neighbours6: HashMap<Ipv6Addr, ([u8; 6], Ipv6Addr)>,
    out: VecDeque<Vec<u8>>,
    stats: GatewayStats,
    /// The switch port the frame being handled came from, when the driver says
    /// ([`Gateway::set_ingress`]); DHCP bounds clients per port with it.
    ingress: Option<u32>,
}

impl Gateway {
    /// A gateway, with a DHCP server if the network serves DHCP and a DNS server (UDP
    /// and TCP) if it serves DNS.
    pub fn new(
        cfg: GatewayConfig,
        dhcp: Option<Server>,
        dns: Option<vnet_dns::Server>,
        now: std::time::Instant,
    ) -> Self {
        let ndp = cfg
            .ipv6
            .clone()
            .map(|v6| ndp::Ndp::new(cfg.mac, v6, cfg.mtu));
        let tcp = dns.as_ref().map(|_| {
            let mut ip6 = Vec::new();
            if let Some(n) = &ndp {
                ip6.push((n.link_local(), 64));
                ip6.extend(n.config().prefixes.iter().map(|p| (p.addr, p.len)));
            }
            tcp::TcpService::new(
                cfg.mac.0,
                cfg.ip.map(|ip| (ip, cfg.prefix)),
                &ip6,
                usize::from(cfg.mtu),
                DNS_PORT,
                now,
            )
        });
        Self {
            cfg,
            dhcp,
            dns,
            tcp,
            nat: None,
            ndp,
            dhcp6: None,
            neighbours: HashMap::new(),
            neighbours6: HashMap::new(),
            out: VecDeque::new(),
            stats: GatewayStats::default(),
            ingress: None,
        }
    }

    /// Says which switch port the next frames given to [`Gateway::handle_frame`] came
    /// from (`None`: unknown). The DHCP server bounds its clients per port with it
    /// ([`vnet_dhcp::Server::set_port_cap`]).
    pub fn set_ingress(&mut self, port: Option<u32>) {
        self.ingress = port;
    }

    /// Who the gateway is.
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    /// The DHCP server, if any.
    pub fn dhcp(&self) -> Option<&Server> {
        self.dhcp.as_ref()
    }

    /// The DHCP server, if any, for events, timeouts and live configuration.
    pub fn dhcp_mut(&mut self) -> Option<&mut Server> {
        self.dhcp.as_mut()
    }

    /// Gives the gateway a NAT engine: guest traffic for addresses off the segment (and
    /// for the gateway's address on ports its services do not own) goes to it.
    pub fn set_nat(&mut self, nat: vnet_nat::Nat) {
        self.nat = Some(nat);
    }

    /// The NAT engine, if any.
    pub fn nat(&self) -> Option<&vnet_nat::Nat> {
        self.nat.as_ref()
    }

    /// The NAT engine, if any: host-side actions, flows to pump, host events.
    pub fn nat_mut(&mut self) -> Option<&mut vnet_nat::Nat> {
        self.nat.as_mut()
    }

    /// The IPv6 side, if the network has IPv6 addresses.
    pub fn ndp(&self) -> Option<&ndp::Ndp> {
        self.ndp.as_ref()
    }

    /// Gives the gateway a DHCPv6 server (it needs the IPv6 side: without it, none).
    pub fn set_dhcp6(&mut self, server: vnet_dhcp::v6::Server6) {
        if self.ndp.is_some() {
            self.dhcp6 = Some(server);
        }
    }

    /// The DHCPv6 server, if any.
    pub fn dhcp6(&self) -> Option<&vnet_dhcp::v6::Server6> {
        self.dhcp6.as_ref()
    }

    /// The DHCPv6 server, if any, for its events and timeouts.
    pub fn dhcp6_mut(&mut self) -> Option<&mut vnet_dhcp::v6::Server6> {
        self.dhcp6.as_mut()
    }

    /// The DNS server, if any.
    pub fn dns(&self) -> Option<&vnet_dns::Server> {
        self.dns.as_ref()
    }

    /// The DNS server, if any: queries to send upstream (`poll_upstream`), lease names,
    /// live configuration, events.
    pub fn dns_mut(&mut self) -> Option<&mut vnet_dns::Server> {
        self.dns.as_mut()
    }

    /// Counters.
    pub fn stats(&self) -> GatewayStats {
        let mut st = self.stats;
        if let Some(t) = &self.tcp {
            st.dns_tcp_lost += t.lost_answers;
            st.dns_tcp_refused += t.refused;
        }
        st
    }

    /// Open DNS-over-TCP connections.
    pub fn dns_tcp_connections(&self) -> usize {
        self.tcp.as_ref().map_or(0, tcp::TcpService::open_conns)
    }

    /// An upstream DNS server's answer (UDP payload from `from`), for a query the driver
    /// sent on the DNS server's behalf.
    pub fn handle_dns_upstream(&mut self, now: Now, from: SocketAddr, payload: &[u8]) {
        if let Some(dns) = self.dns.as_mut() {
            dns.handle_upstream(now.mono, from, payload);
        }
        self.flush_dns(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due for DNS and TCP
    /// (the DHCP server's timers are the driver's, through [`dhcp_mut`](Self::dhcp_mut)).
    pub fn poll_timeout(&mut self, now: Now) -> Option<std::time::Instant> {
        let dns = self.dns.as_ref().and_then(vnet_dns::Server::poll_timeout);
        let tcp = self.tcp.as_mut().and_then(|t| t.poll_at(now.mono));
        let nat = self.nat.as_mut().and_then(|n| n.poll_timeout(now.mono));
        let ndp = self.ndp.as_ref().map(|n| n.poll_timeout(now.mono));
        [dns, tcp, nat, ndp].into_iter().flatten().min()
    }

    /// DNS timers (upstream timeouts, cache) and TCP timers.
    pub fn handle_timeout(&mut self, now: Now) {
        if let Some(dns) = self.dns.as_mut() {
            dns.handle_timeout(now.mono);
        }
        if let Some(t) = self.tcp.as_mut() {
            t.handle_timeout(now.mono);
        }
        if let Some(n) = self.nat.as_mut() {
            n.handle_timeout(now.mono);
        }
        if let Some(f) = self.ndp.as_mut().and_then(|n| n.handle_timeout(now.mono)) {
            self.push(f);
        }
        self.flush_dns(now);
    }

    /// Sends the DNS server's late answers (forwarded queries, SERVFAILs) to their
    /// clients, and what TCP has to send.
    fn flush_dns(&mut self, now: Now) {
        while let Some(a) = self.dns.as_mut().and_then(vnet_dns::Server::poll_answer) {
            match a.transport {
                Transport::Udp => match a.client {
                    SocketAddr::V4(client) => match self.neighbours.get(client.ip()).copied() {
                        Some(mac) => self.push_dns_udp(mac, client, &a.payload),
                        None => self.stats.dns_no_neighbour += 1,
                    },
                    SocketAddr::V6(client) => match self.neighbours6.get(client.ip()).copied() {
                        Some((mac, server)) => {
                            self.push_dns_udp6(mac, server, client, &a.payload);
                        }
                        None => self.stats.dns_no_neighbour += 1,
                    },
                },
                Transport::Tcp => {
                    if let Some(t) = self.tcp.as_mut() {
                        t.send_to(now.mono, a.client, &a.payload);
                    }
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        self.drain_tcp();
    }

    fn drain_tcp(&mut self) {
        while let Some(frame) = self.tcp.as_mut().and_then(tcp::TcpService::pop_tx) {
            self.push(frame);
        }
    }

    fn learn_neighbour(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        if ip.is_unspecified() || Some(ip) == self.cfg.ip || !self.cfg.in_subnet(ip) {
            return;
        }
        if self.neighbours.len() >= MAX_NEIGHBOURS && !self.neighbours.contains_key(&ip) {
            // Full (a guest sweeping addresses): start over; real neighbours come back
            // with their next frame.
            self.neighbours.clear();
        }
        self.neighbours.insert(ip, mac);
    }

    fn push_dns_udp(&mut self, mac: [u8; 6], client: SocketAddrV4, payload: &[u8]) {
        let builder = PacketBuilder::ethernet2(self.cfg.mac.0, mac)
            .ipv4(self.cfg.ip4().octets(), client.ip().octets(), TTL)
            .udp(DNS_PORT, client.port());
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        if builder.write(&mut frame, payload).is_ok() && self.push(frame) {
            self.stats.dns_udp_out += 1;
        }
    }

    /// Queues a gratuitous ARP announcing the gateway's address and MAC (at start, so
    /// guests and the switch learn where the gateway is). Nothing on an IPv6-only
    /// network.
    pub fn announce(&mut self) {
        let Some(ip) = self.cfg.ip else {
            return;
        };
        let arp = ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: self.cfg.mac.0,
            sender_ipv4: ip.octets(),
            target_mac: [0; 6],
            target_ipv4: ip.octets(),
        };
        if self.push_arp(MacAddr::BROADCAST, &arp) {
            self.stats.gratuitous_arps += 1;
        }
    }

    /// A frame the switch delivered to the gateway port.
    pub fn handle_frame(&mut self, now: Now, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.stats.malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        // IPv6 multicast (33:33:..): router solicitations, neighbor solicitations for
        // the gateway's addresses (their solicited-node groups)
        let v6_group = self.ndp.is_some() && dst.0[..2] == [0x33, 0x33];
        if dst != self.cfg.mac && !dst.is_broadcast() && !v6_group {
            self.stats.ignored += 1;
            return;
        }
        let src = eth.src_addr();
        match eth.ethertype() {
            WireEtherType::Arp | WireEtherType::Ipv4 if self.cfg.ip.is_none() => {
                self.stats.ignored += 1;
            }
            WireEtherType::Arp => self.handle_arp(now, eth.payload(), frame),
            WireEtherType::Ipv4 => self.handle_ipv4(now, src, eth.payload(), frame),
            WireEtherType::Ipv6 => {
                // parsed once for the services; neighbor discovery parses (and counts
                // malformed) packets on its own
                if let Ok(ip) = etherparse::Ipv6Slice::from_slice(eth.payload()) {
                    if self.handle_ipv6(now, src, dst, &ip, frame) {
                        return;
                    }
                }
                match self.ndp.as_mut() {
                    Some(n) => {
                        if let Some(f) = n.handle(now.mono, src, dst, eth.payload()) {
                            self.push(f);
                        }
                    }
                    None => self.stats.ignored += 1,
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    /// Who takes `frame`, a frame the switch delivers to the gateway port, when a host
    /// port shares the gateway's MAC and address (the host kernel sits on the segment
    /// with the gateway's identity, as on libvirt's `virbr0`).
    ///
    /// The gateway keeps what its services and the mode's engine own: broadcasts (the
    /// host port gets its own flooded copy), ARP requests, DHCP, DNS, ICMP echo
    /// requests, and traffic to other addresses (NAT, routing). The host gets the rest
    /// of what is addressed to the gateway's address (replies to connections the host
    /// opened, its services such as ssh, IPv6) and a copy of ARP replies (answers to
    /// its own requests; the gateway learns from them too).
    pub fn host_claim(&self, frame: &[u8]) -> Claim {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Claim::Gateway;
        };
        if eth.dst_addr() != self.cfg.mac {
            return Claim::Gateway;
        }
        match eth.ethertype() {
            WireEtherType::Arp => {
                let reply = ArpPacket::from_slice(eth.payload())
                    .is_ok_and(|a| a.operation == ArpOperation::REPLY);
                if reply {
                    Claim::Both
                } else {
                    Claim::Gateway
                }
            }
            WireEtherType::Ipv4 => {
                let Ok(ip) = Ipv4Slice::from_slice(eth.payload()) else {
                    return Claim::Gateway;
                };
                if Some(ip.header().destination_addr()) != self.cfg.ip {
                    return Claim::Gateway;
                }
                if ip.is_payload_fragmented() {
                    return Claim::Host;
                }
                let body = ip.payload().payload;
                let ours = match ip.payload_ip_number() {
                    IpNumber::UDP => UdpSlice::from_slice(body).is_ok_and(|u| {
                        u.destination_port() == DHCP_SERVER_PORT
                            || (u.destination_port() == DNS_PORT && self.dns.is_some())
                    }),
                    IpNumber::TCP => TcpHeaderSlice::from_slice(body)
                        .is_ok_and(|t| t.destination_port() == DNS_PORT && self.tcp.is_some()),
                    IpNumber::ICMP => Icmpv4Slice::from_slice(body)
                        .is_ok_and(|i| matches!(i.icmp_type(), Icmpv4Type::EchoRequest(_))),
                    _ => false,
                };
                if ours {
                    Claim::Gateway
                } else {
                    Claim::Host
                }
            }
            // neighbor discovery to the gateway's MAC: the gateway answers for its
            // addresses, the host kernel for its own (the link-local they share: the
            // same answer twice); echo to the gateway's addresses, and what is to be
            // routed, is the gateway's; the rest (connections to the host) the host's
            WireEtherType::Ipv6 => {
                let Some(n) = self.ndp.as_ref() else {
                    return Claim::Host;
                };
                let Ok(ip) = etherparse::Ipv6Slice::from_slice(eth.payload()) else {
                    return Claim::Gateway;
                };
                let icmp = (ip.payload().ip_number == IpNumber::IPV6_ICMP)
                    .then(|| ip.payload().payload.first().copied())
                    .flatten();
                let dst = ip.header().destination_addr();
                let body = ip.payload().payload;
                let dns = self.dns.is_some()
                    && match ip.payload().ip_number {
                        IpNumber::UDP => UdpSlice::from_slice(body)
                            .is_ok_and(|u| u.destination_port() == DNS_PORT),
                        IpNumber::TCP => TcpHeaderSlice::from_slice(body)
                            .is_ok_and(|t| t.destination_port() == DNS_PORT),
                        _ => false,
                    };
                match icmp {
                    _ if dns && n.is_ours(dst) => Claim::Gateway,
                    Some(133..=136) => Claim::Both,
                    Some(128) => Claim::Gateway,
                    _ if !n.is_ours(dst) => Claim::Gateway,
                    _ => Claim::Host,
                }
            }
            _ => Claim::Host,
        }
    }

    /// The next frame to inject into the switch, as sent by the gateway port.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out
            .pop_front()
            .or_else(|| self.nat.as_mut()?.poll_transmit())
    }

    /// Gives back a frame from [`poll_transmit`](Self::poll_transmit) once used, so
    /// NAT builds the next ones in it (optional).
    pub fn recycle(&mut self, frame: Vec<u8>) {
        if let Some(nat) = self.nat.as_mut() {
            nat.recycle(frame);
        }
    }

    fn push(&mut self, frame: Vec<u8>) -> bool {
        if self.out.len() >= MAX_QUEUED {
            self.stats.queue_full += 1;
            return false;
        }
        self.out.push_back(frame);
        true
    }

    fn push_arp(&mut self, dst: MacAddr, arp: &ArpEthIpv4Packet) -> bool {
        let mut frame = Vec::with_capacity(14 + ArpEthIpv4Packet::LEN);
        frame.extend_from_slice(&dst.0);
        frame.extend_from_slice(&self.cfg.mac.0);
        frame.extend_from_slice(&EtherType::ARP.0.to_be_bytes());
        frame.extend_from_slice(&arp.to_bytes());
        // pad to the Ethernet minimum, as a NIC would
        frame.resize(60, 0);
        self.push(frame)
    }

    fn handle_arp(&mut self, now: Now, payload: &[u8], frame: &[u8]) {
        let Some(arp) = ArpPacket::from_slice(payload)
            .ok()
            .and_then(|p| p.try_eth_ipv4().ok())
        else {
            self.stats.malformed += 1;
            return;
        };
        // Who uses which address: every ARP packet that reaches the gateway (requests
        // are broadcast) names its sender. The DHCP server keeps those addresses out of
        // its offers to others (an ARP probe, sender 0.0.0.0, claims nothing).
        let sender = arp.sender_ipv4_addr();
        let own = self.cfg.ip4();
        if !sender.is_unspecified() && sender != own {
            if let Some(server) = self.dhcp.as_mut() {
                server.note_in_use(now.wall, self.ingress, sender, arp.sender_mac);
            }
            self.learn_neighbour(sender, arp.sender_mac);
        }
        if arp.operation == ArpOperation::REPLY && arp.target_ipv4_addr() == own {
            // an answer to the NAT engine's own ARP request (a port forward to a guest
            // it has not seen yet)
            if let Some(nat) = self.nat.as_mut() {
                nat.handle_arp(now.mono, frame);
                return;
            }
        }
        if arp.operation != ArpOperation::REQUEST || arp.target_ipv4_addr() != own {
            self.stats.ignored += 1;
            return;
        }
        // a gratuitous ARP from someone else claiming our address is not answered
        if arp.sender_ipv4_addr() == own {
            self.stats.ignored += 1;
            return;
        }
        let reply = ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: self.cfg.mac.0,
            sender_ipv4: own.octets(),
            target_mac: arp.sender_mac,
            target_ipv4: arp.sender_ipv4,
        };
        if self.push_arp(MacAddr(arp.sender_mac), &reply) {
            self.stats.arp_replies += 1;
        }
    }

    fn handle_ipv4(&mut self, now: Now, src_mac: MacAddr, payload: &[u8], frame: &[u8]) {
        let Ok(ip) = Ipv4Slice::from_slice(payload) else {
            self.stats.malformed += 1;
            return;
        };
        if ip.is_payload_fragmented() {
            self.stats.ignored += 1;
            return;
        }
        let hdr = ip.header();
        let (src_ip, dst_ip) = (hdr.source_addr(), hdr.destination_addr());
        let to_us = Some(dst_ip) == self.cfg.ip;
        let broadcast = dst_ip == Ipv4Addr::BROADCAST || dst_ip == self.cfg.broadcast();
        let body = ip.payload().payload;
        if to_us {
            self.learn_neighbour(src_ip, src_mac.0);
        }
        if !to_us && !broadcast && !self.cfg.in_subnet(dst_ip) && !dst_ip.is_multicast() {
            match self.nat.as_mut() {
                Some(nat) => nat.handle_frame(now.mono, frame),
                None => self.stats.ignored += 1,
            }
            return;
        }
        match ip.payload_ip_number() {
            IpNumber::ICMP if to_us => self.handle_icmp(src_mac, src_ip, body),
            IpNumber::UDP if to_us || broadcast => {
                let Ok(udp) = UdpSlice::from_slice(body) else {
                    self.stats.malformed += 1;
                    return;
                };
                match udp.destination_port() {
                    DHCP_SERVER_PORT => {
                        let meta = PacketMeta {
                            src_mac: src_mac.0,
                            src_ip,
                            dst_ip,
                        };
                        self.handle_dhcp(now.wall, &meta, udp.payload());
                    }
                    DNS_PORT if to_us && self.dns.is_some() => {
                        let client = SocketAddrV4::new(src_ip, udp.source_port());
                        self.handle_dns_udp(now, src_mac.0, client, udp.payload());
                    }
                    // host access: other ports of the gateway address
                    _ if to_us && self.nat.is_some() => {
                        if let Some(nat) = self.nat.as_mut() {
                            nat.handle_frame(now.mono, frame);
                        }
                    }
                    _ => self.stats.ignored += 1,
                }
            }
            IpNumber::TCP if to_us => {
                let dport = TcpHeaderSlice::from_slice(body).map(|t| t.destination_port());
                if dport == Ok(DNS_PORT) && self.tcp.is_some() {
                    if let Some(t) = self.tcp.as_mut() {
                        t.handle_frame(now.mono, frame, src_mac.0, src_ip.into());
                    }
                    self.service_tcp(now);
                } else if let Some(nat) = self.nat.as_mut() {
                    nat.handle_frame(now.mono, frame);
                } else {
                    self.stats.ignored += 1;
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn handle_dns_udp(&mut self, now: Now, mac: [u8; 6], client: SocketAddrV4, payload: &[u8]) {
        let Some(dns) = self.dns.as_mut() else {
            return;
        };
        self.stats.dns_udp_in += 1;
        if let Some(answer) =
            dns.handle_query(now.mono, SocketAddr::V4(client), Transport::Udp, payload)
        {
            self.push_dns_udp(mac, client, &answer);
        }
        // a query may also end others (an upstream found looping, ...)
        self.flush_dns(now);
    }

    /// The gateway's IPv6 services, in turn: DNS over TCP, the NAT engine, DNS over
    /// UDP, DHCPv6. True when one of them took the packet (else it is neighbor
    /// discovery's).
    fn handle_ipv6(
        &mut self,
        now: Now,
        src: MacAddr,
        dst: MacAddr,
        ip: &etherparse::Ipv6Slice<'_>,
        frame: &[u8],
    ) -> bool {
        if self.tcp6(now, src, ip, frame) {
            return true;
        }
        if dst == self.cfg.mac && self.nat6(now, ip, frame) {
            return true;
        }
        // a neighbor advertisement may answer the NAT engine's own solicitation (a port
        // forward to a guest it has not seen yet): it gets a copy
        let advert = ip.payload().ip_number == IpNumber::IPV6_ICMP
            && ip.payload().payload.first() == Some(&136);
        if advert {
            if let Some(nat) = self.nat.as_mut().filter(|n| !n.config().ipv6.is_empty()) {
                nat.handle_arp(now.mono, frame);
            }
        }
        if let Some((client, server, query)) = self.dns6_query(ip) {
            self.handle_dns_udp6(now, src.0, client, server, query);
            return true;
        }
        self.handle_dhcp6(now, src, ip)
    }

    /// A DNS query over UDP to one of the gateway's IPv6 addresses: the client, the
    /// address it asked, the query.
    fn dns6_query<'a>(
        &self,
        ip: &etherparse::Ipv6Slice<'a>,
    ) -> Option<(SocketAddrV6, Ipv6Addr, &'a [u8])> {
        let (ndp, _) = (self.ndp.as_ref()?, self.dns.as_ref()?);
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        if ip.payload().ip_number != IpNumber::UDP
            || !ndp.is_ours(dst)
            || ip.is_payload_fragmented()
        {
            return None;
        }
        let udp = UdpSlice::from_slice(ip.payload().payload).ok()?;
        if udp.destination_port() != DNS_PORT || src.is_unspecified() || src.is_multicast() {
            return None;
        }
        Some((
            SocketAddrV6::new(src, udp.source_port(), 0, 0),
            dst,
            udp.payload(),
        ))
    }

    /// IPv6 for the NAT engine, when it translates IPv6 (`<nat ipv6='yes'>`): packets to
    /// addresses off the segment, and TCP or UDP to the gateway's own addresses on ports
    /// its services do not own (host access). True when it took the packet.
    fn nat6(&mut self, now: Now, ip: &etherparse::Ipv6Slice<'_>, frame: &[u8]) -> bool {
        let (Some(ndp), Some(nat)) = (self.ndp.as_ref(), self.nat.as_mut()) else {
            return false;
        };
        if nat.config().ipv6.is_empty() {
            return false;
        }
        let dst = ip.header().destination_addr();
        let on_link = ndp
            .config()
            .prefixes
            .iter()
            .any(|p| route::v6::Prefix6::new(p.addr, p.len).contains(dst));
        let transport = matches!(ip.payload().ip_number, IpNumber::TCP | IpNumber::UDP);
        let take = if ndp.is_ours(dst) {
            transport
        } else {
            !dst.is_multicast() && !on_link && !dst.is_unicast_link_local()
        };
        if take {
            nat.handle_frame(now.mono, frame);
        }
        take
    }

    /// A TCP segment for DNS on one of the gateway's IPv6 addresses: handed to the TCP
    /// service. True when it was one.
    fn tcp6(
        &mut self,
        now: Now,
        src_mac: MacAddr,
        ip: &etherparse::Ipv6Slice<'_>,
        frame: &[u8],
    ) -> bool {
        let (Some(ndp), Some(t)) = (self.ndp.as_ref(), self.tcp.as_mut()) else {
            return false;
        };
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        if ip.payload().ip_number != IpNumber::TCP
            || !ndp.is_ours(dst)
            || ip.is_payload_fragmented()
            || src.is_unspecified()
            || src.is_multicast()
        {
            return false;
        }
        let dport = TcpHeaderSlice::from_slice(ip.payload().payload).map(|t| t.destination_port());
        if dport != Ok(DNS_PORT) {
            return false;
        }
        t.handle_frame(now.mono, frame, src_mac.0, src.into());
        self.service_tcp(now);
        true
    }

    /// A DHCPv6 client message (UDP 546 → 547, to the servers' group or the gateway):
    /// answered from the gateway's link-local address to the client's. True when it
    /// was one.
    fn handle_dhcp6(&mut self, now: Now, src_mac: MacAddr, ip: &etherparse::Ipv6Slice<'_>) -> bool {
        const ALL_DHCP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
        let (Some(server), Some(ndp)) = (self.dhcp6.as_mut(), self.ndp.as_ref()) else {
            return false;
        };
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        if ip.payload().ip_number != IpNumber::UDP || (dst != ALL_DHCP && !ndp.is_ours(dst)) {
            return false;
        }
        let Ok(udp) = UdpSlice::from_slice(ip.payload().payload) else {
            return false;
        };
        if udp.destination_port() != 547 {
            return false;
        }
        let Some(reply) = server.handle_from(now.wall, self.ingress, udp.payload()) else {
            return true;
        };
        if src.is_unspecified() || src.is_multicast() {
            return true;
        }
        let builder = PacketBuilder::ethernet2(self.cfg.mac.0, src_mac.0)
            .ipv6(ndp.link_local().octets(), src.octets(), TTL)
            .udp(547, udp.source_port());
        let mut frame = Vec::with_capacity(builder.size(reply.len()));
        if builder.write(&mut frame, &reply).is_ok() {
            self.push(frame);
        }
        true
    }

    fn handle_dns_udp6(
        &mut self,
        now: Now,
        mac: [u8; 6],
        client: SocketAddrV6,
        server: Ipv6Addr,
        payload: &[u8],
    ) {
        let Some(dns) = self.dns.as_mut() else {
            return;
        };
        self.stats.dns_udp_in += 1;
        let answer = dns.handle_query(now.mono, SocketAddr::V6(client), Transport::Udp, payload);
        if self.neighbours6.len() >= MAX_NEIGHBOURS && !self.neighbours6.contains_key(client.ip()) {
            self.neighbours6.clear();
        }
        self.neighbours6.insert(*client.ip(), (mac, server));
        if let Some(answer) = answer {
            self.push_dns_udp6(mac, server, client, &answer);
        }
        self.flush_dns(now);
    }

    fn push_dns_udp6(
        &mut self,
        mac: [u8; 6],
        server: Ipv6Addr,
        client: SocketAddrV6,
        payload: &[u8],
    ) {
        let builder = PacketBuilder::ethernet2(self.cfg.mac.0, mac)
            .ipv6(server.octets(), client.ip().octets(), TTL)
            .udp(DNS_PORT, client.port());
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        if builder.write(&mut frame, payload).is_ok() && self.push(frame) {
            self.stats.dns_udp_out += 1;
        }
    }

    fn service_tcp(&mut self, now: Now) {
        if let (Some(t), Some(dns)) = (self.tcp.as_mut(), self.dns.as_mut()) {
            t.service(now.mono, &mut |client, msg| {
                dns.handle_query(now.mono, client, Transport::Tcp, msg)
            });
        }
        self.flush_dns(now);
    }

    fn handle_icmp(&mut self, src_mac: MacAddr, src_ip: Ipv4Addr, body: &[u8]) {
        let Ok(icmp) = Icmpv4Slice::from_slice(body) else {
            self.stats.malformed += 1;
            return;
        };
        let Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else {
            self.stats.ignored += 1;
            return;
        };
        let builder = PacketBuilder::ethernet2(self.cfg.mac.0, src_mac.0)
            .ipv4(self.cfg.ip4().octets(), src_ip.octets(), TTL)
            .icmpv4_echo_reply(echo.id, echo.seq);
        let mut frame = Vec::with_capacity(builder.size(icmp.payload().len()));
        if builder.write(&mut frame, icmp.payload()).is_ok() && self.push(frame) {
            self.stats.echo_replies += 1;
        }
    }

    fn handle_dhcp(&mut self, now: SystemTime, meta: &PacketMeta, payload: &[u8]) {
        let Some(server) = self.dhcp.as_mut() else {
            self.stats.ignored += 1;
            return;
        };
        self.stats.dhcp_in += 1;
        let reply = match server.handle_from(now, meta, self.ingress, payload) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(_) => {
                self.stats.dhcp_dropped += 1;
                return;
            }
        };
        let (dst_ip, dst_mac) = match reply.dst {
            ReplyDest::Broadcast => (Ipv4Addr::BROADCAST, MacAddr::BROADCAST),
            ReplyDest::Unicast { ip, mac } => (ip, MacAddr(mac)),
            #[allow(unreachable_patterns)]
            _ => (Ipv4Addr::BROADCAST, MacAddr::BROADCAST),
        };
        let builder = PacketBuilder::ethernet2(self.cfg.mac.0, dst_mac.0)
            .ipv4(self.cfg.ip4().octets(), dst_ip.octets(), TTL)
            .udp(DHCP_SERVER_PORT, DHCP_CLIENT_PORT);
        let mut frame = Vec::with_capacity(builder.size(reply.payload.len()));
        if builder.write(&mut frame, &reply.payload).is_ok() && self.push(frame) {
            self.stats.dhcp_out += 1;
        }
    }
}

pub mod route;

#[cfg(test)]
mod tests;
