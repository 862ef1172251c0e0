//! One vnet network, sans IO: the learning switch, the gateway (ARP, ping, DHCP, DNS,
//! NAT), the router of route/open modes and the host port, composed once.
//!
//! [`Network`] decides what becomes of each frame: which port it leaves by, whether the
//! gateway, the router or the host port takes it, what the gateway answers. It owns no
//! socket, no file and no clock: the driver hands in the frame, the ingress port and the
//! time ([`Now`]); everything that touches the outside goes through the driver's [`Io`]:
//! frames out of ports and the uplink, lease changes to persist, DNS queries to forward,
//! the NAT's host sockets. `switchd` is one driver (TAPs, QEMU sockets, a mio loop); a
//! VMM or a container runtime that embeds a network is another (see
//! `examples/embed.rs`), and the tests under `tests/` drive one with in-memory guests and
//! virtual time.
//!
//! The rules it keeps, whoever drives it:
//! - a lease is handed to [`Io::dhcp_event`] (to be persisted) before the DHCP reply
//!   that grants it is transmitted;
//! - port security follows the leases: a protected port may send from the addresses
//!   its MAC holds (leases and fixed reservations), refreshed after each lease change;
//! - with a host port, frames for the gateway's identity are split between the host
//!   kernel and the gateway's services ([`vnet_gateway::Gateway::host_claim`]);
//! - bounds that were hit and station moves become [`Event`]s, at most one per kind a
//!   second; events wait in a bounded queue ([`MAX_EVENTS`]).
//!
//! # Example
//! ```
//! use vnet_network::{Io, Network, Now, Options, PortId};
//! use vnet_ports::FrameBuf;
//!
//! /// Frames the network sends, kept in memory.
//! struct Out(Vec<(PortId, Vec<u8>)>);
//! impl Io for Out {
//!     fn transmit(&mut self, port: PortId, buf: &mut FrameBuf, _take: bool) -> bool {
//!         self.0.push((port, buf.frame().to_vec()));
//!         true
//!     }
//! }
//!
//! let mut def = vnet_config::Network::libvirt_default();
//! def.fill_defaults(&[]); // a MAC for the gateway
//! let now = Now::system();
//! let mut net = Network::from_config(&def, Options::default(), now).unwrap();
//! let guest = net.add_port(Default::default()).unwrap();
//! // a broadcast ARP request for the gateway (192.168.122.1) from 192.168.122.10
//! let mut arp = vec![0xff; 6];
//! arp.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 0x10, 0x08, 0x06]);
//! arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0, 0, 0x10]);
//! arp.extend_from_slice(&[192, 168, 122, 10, 0, 0, 0, 0, 0, 0, 192, 168, 122, 1]);
//! let mut buf = FrameBuf::new();
//! buf.set_frame(&arp);
//! let mut out = Out(Vec::new());
//! net.handle_frame(now, guest, &mut buf, &mut out);
//! // the gateway answers on the guest's port (after its gratuitous ARP at start)
//! let reply = |(port, f): &(PortId, Vec<u8>)| *port == guest && f[12..14] == [8, 6] && f[21] == 2;
//! assert!(out.0.iter().any(reply));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use vnet_config::ForwardMode;
use vnet_gateway::route::{Router, Verdict as RouteVerdict};
use vnet_gateway::Claim;
use vnet_ports::VNET_HDR_LEN;
use vnet_switch::{Switch, Verdict};

pub use vnet_dhcp::Lease;
pub use vnet_gateway::{Gateway, GatewayConfig, Ipv6Config, Ipv6Prefix, Now};
pub use vnet_ports::FrameBuf;
pub use vnet_switch::{MacAddr, PortConfig, PortId};

/// Events waiting in [`Network::poll_event`]; past it, the oldest is dropped.
pub const MAX_EVENTS: usize = 1024;

/// The network's outside, as the driver provides it. Only [`Io::transmit`] is required:
/// a driver without an uplink, persistence, DNS forwarding or NAT sockets leaves the
/// rest as they are (nothing leaves the segment then).
pub trait Io {
    /// Sends the frame in `buf` (virtio-net header included) out of `port`. `take`: no
    /// one reads `buf` after this call, so the driver may take its storage instead of
    /// copying it. Returns false when the port could not take the frame (the switch
    /// counts a transmit failure).
    fn transmit(&mut self, port: PortId, buf: &mut FrameBuf, take: bool) -> bool;

    /// Sends the frame in `buf` out of the uplink (route and open modes).
    fn uplink(&mut self, buf: &FrameBuf) {
        let _ = buf;
    }

    /// True while [`Io::observe`] wants frames (captures): asked once per frame.
    fn observing(&self) -> bool {
        false
    }

    /// Sees a frame as it enters (`ingress`) or leaves `port` (the gateway's port
    /// included).
    fn observe(&mut self, port: PortId, ingress: bool, frame: &[u8]) {
        let _ = (port, ingress, frame);
    }

    /// A DHCPv6 event: the lease it carries is to be persisted here, before the reply
    /// that follows it is transmitted; it may be logged.
    fn dhcp6_event(&mut self, ev: &vnet_dhcp::v6::Event6) {
        let _ = ev;
    }

    /// A DHCP event: a grant, release or expiry is to be persisted here, before the
    /// reply that follows it is transmitted; every event may be logged.
    fn dhcp_event(&mut self, ev: &vnet_dhcp::Event) {
        let _ = ev;
    }

    /// A DNS server event (to log).
    fn dns_event(&mut self, ev: &vnet_dns::Event) {
        let _ = ev;
    }

    /// Sends a DNS query the gateway forwards to the upstream server `to` (answers come
    /// back through [`Network::handle_dns_upstream`]).
    fn dns_query(&mut self, to: SocketAddr, payload: &[u8]) {
        let _ = (to, payload);
    }

    /// Does the NAT's host-side work: performs its [`vnet_nat::Action`]s and pumps its
    /// flows' sockets (NAT mode). Called whenever the gateway has been given frames.
    fn nat(&mut self, nat: &mut vnet_nat::Nat, now: std::time::Instant) {
        let _ = (nat, now);
    }
}

/// What happened on the network, for subscribers (`switchctl net-event`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A lease was granted (or renewed with a change).
    LeaseGranted(Lease),
    /// A guest released its lease.
    LeaseReleased(Lease),
    /// A lease expired.
    LeaseExpired(Lease),
    /// A station moved between ports (the last of `moves` in the past second).
    MacMoved {
        /// Its MAC.
        mac: MacAddr,
        /// Where it was.
        from: PortId,
        /// Where it is now.
        to: PortId,
        /// Moves since the last report.
        moves: u64,
    },
    /// A bound was hit: the FDB, the NAT flow table, the DHCP pool or the router's ARP
    /// queue.
    BoundHit(String),
    /// A DHCPv6 lease changed (granted or renewed, released or declined, expired).
    Lease6(vnet_dhcp::v6::Event6),
}

impl Event {
    /// The event's kind as `net-event` names it: `lease-granted`, `lease-released`,
    /// `lease-expired`, `mac-moved`, `bound-hit`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LeaseGranted(_) => "lease-granted",
            Self::LeaseReleased(_) => "lease-released",
            Self::LeaseExpired(_) => "lease-expired",
            Self::MacMoved { .. } => "mac-moved",
            Self::BoundHit(_) => "bound-hit",
            Self::Lease6(vnet_dhcp::v6::Event6::Granted(_)) => "lease-granted",
            Self::Lease6(vnet_dhcp::v6::Event6::Expired(_)) => "lease-expired",
            Self::Lease6(_) => "lease-released",
        }
    }

    /// The event's detail as a log line and `net-event` show it, with ports named by
    /// `name`: `IP MAC [HOSTNAME]` for a lease, `MAC moved from A to B (N moves)`, the
    /// bound's report.
    pub fn describe(&self, name: impl Fn(PortId) -> String) -> String {
        match self {
            Self::LeaseGranted(l) | Self::LeaseReleased(l) | Self::LeaseExpired(l) => {
                let host = l.hostname.as_deref().map(|h| format!(" {h}"));
                format!("{} {}{}", l.ip, MacAddr(l.mac), host.unwrap_or_default())
            }
            Self::MacMoved {
                mac,
                from,
                to,
                moves,
            } => {
                let n = (*moves > 1).then(|| format!(" ({moves} moves)"));
                let (from, to) = (name(*from), name(*to));
                format!("{mac} moved from {from} to {to}{}", n.unwrap_or_default())
            }
            Self::BoundHit(d) => d.clone(),
            Self::Lease6(e) => {
                let (vnet_dhcp::v6::Event6::Granted(l)
                | vnet_dhcp::v6::Event6::Released(l)
                | vnet_dhcp::v6::Event6::Expired(l)) = e
                else {
                    return String::new();
                };
                let duid: Vec<String> = l.duid.iter().map(|b| format!("{b:02x}")).collect();
                let host = l.hostname.as_deref().map(|h| format!(" {h}"));
                format!("{} {}{}", l.ip, duid.join(":"), host.unwrap_or_default())
            }
        }
    }
}

/// Why a network cannot be built or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The switch has no room for another port.
    #[error("adding a port: {0}")]
    Port(#[from] vnet_switch::Error),
    /// The network already has a gateway.
    #[error("the network already has a gateway")]
    GatewayExists,
    /// A route or open network without an IPv4 address has no gateway to route from.
    #[error("mode {0} needs an IPv4 <ip> (the gateway)")]
    NoGateway(&'static str),
}

/// What [`Network::from_config`] takes beside the definition.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// The switch's settings (FDB size, aging, flood limit).
    pub switch: vnet_switch::Config,
    /// The leases the DHCP server starts with (from the driver's lease database).
    pub leases: Vec<Lease>,
    /// The leases the DHCPv6 server starts with (from the same database).
    pub leases6: Vec<vnet_dhcp::v6::Lease6>,
    /// The NAT's bounds.
    pub nat_limits: vnet_nat::Limits,
    /// At most this many DHCP clients per port, and as many DHCPv6 clients (`None`: no
    /// bound per port).
    pub dhcp_port_cap: Option<usize>,
    /// The seed of the DNS query ids and NAT port choices (a driver seeds it from the
    /// OS; tests fix it).
    pub seed: u64,
}

impl Options {
    /// Options with these leases and seed, the rest default.
    pub fn new(leases: Vec<Lease>, seed: u64) -> Self {
        Self {
            leases,
            seed,
            ..Self::default()
        }
    }
}

/// Where the gateway of `net` lives: its first IPv4 `<ip>` and its IPv6 `<ip>`s, with the
/// network's MAC; none in bridge mode (the segment is the LAN's), without a MAC, or
/// without any address.
pub fn gateway_config(net: &vnet_config::Network) -> Option<GatewayConfig> {
    if net.forward_mode() == ForwardMode::Bridge {
        return None;
    }
    let mac = MacAddr(net.mac_addr()?.0);
    let v4 = net.ips().iter().find_map(|ip| match ip.address {
        IpAddr::V4(a) => Some((a, ip.prefix_len())),
        IpAddr::V6(_) => None,
    });
    let mtu = net
        .mtu()
        .and_then(|m| u16::try_from(m).ok())
        .unwrap_or(1500);
    let prefixes: Vec<Ipv6Prefix> = net
        .ips()
        .iter()
        .filter_map(|ip| match ip.address {
            IpAddr::V6(addr) => Some(Ipv6Prefix {
                addr,
                len: ip.prefix_len(),
                // SLAAC unless this <ip> hands out addresses by DHCPv6
                autonomous: ip
                    .dhcp
                    .as_ref()
                    .is_none_or(|d| d.ranges.is_empty() && d.hosts.is_empty()),
            }),
            IpAddr::V4(_) => None,
        })
        .collect();
    if v4.is_none() && prefixes.is_empty() {
        return None;
    }
    let ipv6 = (!prefixes.is_empty()).then(|| Ipv6Config {
        prefixes,
        // an isolated network is no way out: its gateway is not a default router
        router_lifetime: if net.forward_mode() == ForwardMode::None {
            0
        } else {
            1800
        },
        dns: vnet_dns::DnsConfig::from_network(net).is_some(),
        domain: net.domain().map(|d| d.name.clone()),
        managed: vnet_dhcp::v6::Config6::from_network(net, mac.0, None)
            .is_some_and(|c| c.stateful()),
    });
    Some(GatewayConfig {
        mac,
        ip: v4.map(|(a, _)| a),
        prefix: v4.map_or(0, |(_, p)| p),
        mtu,
        ipv6,
    })
}

/// Counters as of the last check for bound and move events.
#[derive(Debug, Default)]
struct Watch {
    at: Option<std::time::Instant>,
    moves: u64,
    evictions: u64,
    nat_refused: u64,
    pool_exhausted: u64,
    router_waiting_full: u64,
}

/// One virtual network. See the crate documentation.
#[derive(Debug)]
pub struct Network {
    sw: Switch,
    /// The gateway and its switch port (none in bridge mode).
    gateway: Option<(PortId, Gateway)>,
    /// The router of route/open modes.
    router: Option<Router>,
    /// The port that reaches the host kernel with the gateway's identity.
    host_port: Option<PortId>,
    /// The switch's clock starts here.
    epoch: std::time::Instant,
    /// Reused list of flood targets (no allocation per frame).
    targets: Vec<PortId>,
    /// The ingress port of the frame being forwarded (DHCP bounds clients per port).
    ingress: PortId,
    /// The frame being forwarded may be taken by the next transmit (a unicast forward).
    take_buf: bool,
    events: VecDeque<Event>,
    watch: Watch,
}

impl Network {
    /// A network with a switch and nothing else yet: add ports, a gateway
    /// ([`Network::add_gateway`]), a router, a host port.
    pub fn new(switch: vnet_switch::Config, now: Now) -> Self {
        Self {
            sw: Switch::new(switch),
            gateway: None,
            router: None,
            host_port: None,
            epoch: now.mono,
            targets: Vec::new(),
            ingress: PortId(0),
            take_buf: false,
            events: VecDeque::new(),
            watch: Watch::default(),
        }
    }

    /// The network a libvirt definition describes: the switch, and unless it is a
    /// bridge-mode network its gateway on a port of its own, with the DHCP server (with
    /// `opts.leases`), the DNS server and, in NAT mode, the NAT engine. The router of
    /// route/open modes needs the host's routes: the driver adds it
    /// ([`Network::set_router`]); so are the host port, the NAT's port forwards (host
    /// sockets) and the DNS server's system resolvers.
    pub fn from_config(
        net: &vnet_config::Network,
        mut opts: Options,
        now: Now,
    ) -> Result<Self, Error> {
        let mut network = Self::new(opts.switch.clone(), now);
        let Some(cfg) = gateway_config(net) else {
            return match net.forward_mode() {
                m @ (ForwardMode::Route | ForwardMode::Open) => Err(Error::NoGateway(m.as_str())),
                _ => Ok(network),
            };
        };
        let dhcp = vnet_dhcp::ServerConfig::from_network(net).map(|sc| {
            let mut s = vnet_dhcp::Server::new(sc, opts.leases, now.wall);
            s.set_port_cap(opts.dhcp_port_cap);
            s
        });
        let names: Vec<(Ipv4Addr, String)> = dhcp
            .iter()
            .flat_map(vnet_dhcp::Server::leases)
            .filter_map(|l| Some((l.ip, l.hostname.clone()?)))
            .collect();
        let dns = vnet_dns::DnsConfig::from_network(net)
            .map(|c| vnet_dns::Server::with_seed(c, opts.seed));
        let mut gw = Gateway::new(cfg.clone(), dhcp, dns, now.mono);
        if let Some(dns) = gw.dns_mut() {
            for (ip, name) in &names {
                dns.set_lease_name(*ip, name);
            }
        }
        let dns6 = gw
            .ndp()
            .filter(|n| n.config().dns)
            .map(vnet_gateway::ndp::Ndp::dns_addr);
        if let Some(c6) = vnet_dhcp::v6::Config6::from_network(net, cfg.mac.0, dns6) {
            let leases6 = std::mem::take(&mut opts.leases6);
            let mut server = vnet_dhcp::v6::Server6::with_leases(c6, leases6);
            server.set_port_cap(opts.dhcp_port_cap);
            let names6: Vec<(Ipv6Addr, String)> = server
                .leases()
                .filter(|l| !server.config().hosts.iter().any(|h| h.ip == l.ip))
                .filter_map(|l| Some((l.ip, l.hostname.clone()?)))
                .collect();
            gw.set_dhcp6(server);
            if let Some(dns) = gw.dns_mut() {
                for (ip, name) in &names6 {
                    dns.set_lease_name(*ip, name);
                }
            }
        }
        // IPv4 masquerade, and IPv6 too with <nat ipv6='yes'> (an IPv6-only network
        // without it has nothing for NAT)
        let nat6: Vec<(Ipv6Addr, u8)> = match (&cfg.ipv6, net.nat_ipv6()) {
            (Some(v6), true) => v6.prefixes.iter().map(|p| (p.addr, p.len)).collect(),
            _ => Vec::new(),
        };
        if net.forward_mode() == ForwardMode::Nat && (cfg.ip.is_some() || !nat6.is_empty()) {
            // no IPv4 address: a /32 of 0.0.0.0, which no guest can send from
            let ip = cfg.ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let prefix = if cfg.ip.is_some() { cfg.prefix } else { 32 };
            let mut nc = vnet_nat::NatConfig::new(cfg.mac.0, ip, prefix);
            nc.ipv6 = nat6;
            nc.mtu = usize::from(cfg.mtu);
            nc.host_access = net.host_access();
            nc.limits = opts.nat_limits;
            gw.set_nat(vnet_nat::Nat::new(nc, now.mono, opts.seed));
        }
        gw.announce();
        network.add_gateway(gw)?;
        Ok(network)
    }

    /// Puts `gw` on a port of its own: frames for its MAC (and broadcasts) reach it.
    pub fn add_gateway(&mut self, gw: Gateway) -> Result<PortId, Error> {
        if self.gateway.is_some() {
            return Err(Error::GatewayExists);
        }
        let id = self.sw.add_port(PortConfig::default())?;
        self.gateway = Some((id, gw));
        Ok(id)
    }

    /// Routes between the segment and the uplink with `router` (route and open modes):
    /// what the gateway port receives goes through it first.
    pub fn set_router(&mut self, router: Router) {
        self.router = Some(router);
    }

    /// Adds a port to the switch (a guest's, the uplink's, the host port).
    pub fn add_port(&mut self, cfg: PortConfig) -> Result<PortId, Error> {
        Ok(self.sw.add_port(cfg)?)
    }

    /// Removes a port (its FDB entries go with it).
    pub fn remove_port(&mut self, id: PortId) {
        if self.host_port == Some(id) {
            self.host_port = None;
        }
        let _ = self.sw.remove_port(id);
    }

    /// Makes `port` the host port: it shares the gateway's identity, and frames for that
    /// identity are split between it and the gateway ([`Gateway::host_claim`]).
    pub fn set_host_port(&mut self, port: Option<PortId>) {
        self.host_port = port;
    }

    /// The host port, if there is one.
    pub fn host_port(&self) -> Option<PortId> {
        self.host_port
    }

    /// The switch.
    pub fn switch(&self) -> &Switch {
        &self.sw
    }

    /// The switch, to configure ports (flags, security) and read counters.
    pub fn switch_mut(&mut self) -> &mut Switch {
        &mut self.sw
    }

    /// The gateway, if the network has one.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref().map(|(_, g)| g)
    }

    /// The gateway, to reconfigure its services or reach the NAT.
    pub fn gateway_mut(&mut self) -> Option<&mut Gateway> {
        self.gateway.as_mut().map(|(_, g)| g)
    }

    /// The gateway's switch port.
    pub fn gateway_port(&self) -> Option<PortId> {
        self.gateway.as_ref().map(|(id, _)| *id)
    }

    /// The router (route and open modes).
    pub fn router(&self) -> Option<&Router> {
        self.router.as_ref()
    }

    /// The switch's time at `now` (its clock starts when the network was made).
    pub fn switch_time(&self, now: Now) -> vnet_switch::Instant {
        vnet_switch::Instant::from_micros(
            u64::try_from(now.mono.saturating_duration_since(self.epoch).as_micros())
                .unwrap_or(u64::MAX),
        )
    }

    /// A frame arrived on `ingress` (in `buf`): it is switched, and what the gateway
    /// answers is sent. `buf` is the driver's to reuse afterwards.
    pub fn handle_frame(
        &mut self,
        now: Now,
        ingress: PortId,
        buf: &mut FrameBuf,
        io: &mut impl Io,
    ) {
        self.forward(now, ingress, buf, io);
        self.drain_gateway(now, buf, io);
    }

    /// A frame arrived on the uplink (route and open modes): packets for the segment
    /// enter it from the gateway port; ARP answers feed the router; the rest (the
    /// host's own traffic) is left alone.
    pub fn handle_uplink(&mut self, now: Now, buf: &mut FrameBuf, io: &mut impl Io) {
        let (Some(gw_id), Some(r)) = (self.gateway_port(), self.router.as_mut()) else {
            return;
        };
        let mut hdr = [0u8; VNET_HDR_LEN];
        let _ = buf.vnet_hdr().emit(&mut hdr);
        if r.from_uplink(now.mono, &hdr, buf.frame_mut()) == RouteVerdict::Segment {
            self.forward(now, gw_id, buf, io);
        }
    }

    /// An upstream DNS server answered a forwarded query (the answer is sent on the
    /// next [`Network::poll`]).
    pub fn handle_dns_upstream(&mut self, now: Now, from: SocketAddr, payload: &[u8]) {
        if let Some(g) = self.gateway_mut() {
            g.handle_dns_upstream(now, from, payload);
        }
    }

    /// How long until the network next has timed work ([`Network::poll`]): FDB aging
    /// (looked at at least once a second), DHCP expiries, DNS and TCP timers, the
    /// router's ARP retries.
    pub fn poll_timeout(&mut self, now: Now) -> Option<Duration> {
        let swn = self.switch_time(now);
        let sw = self
            .sw
            .poll_timeout()
            .map(|t| t.saturating_duration_since(swn).min(Duration::from_secs(1)));
        let (dhcp, gw) = match self.gateway.as_mut() {
            Some((_, g)) => (
                g.dhcp()
                    .and_then(vnet_dhcp::Server::poll_timeout)
                    .into_iter()
                    .chain(g.dhcp6().and_then(vnet_dhcp::v6::Server6::poll_timeout))
                    .min()
                    .map(|t| t.duration_since(now.wall).unwrap_or(Duration::ZERO)),
                g.poll_timeout(now)
                    .map(|t| t.saturating_duration_since(now.mono)),
            ),
            None => (None, None),
        };
        let rt = self
            .router
            .as_ref()
            .and_then(Router::poll_at)
            .map(|t| t.saturating_duration_since(now.mono));
        [sw, dhcp, gw, rt].into_iter().flatten().min()
    }

    /// Does the timed work that is due and sends everything queued: what the router
    /// made or released, what the gateway answered (DNS answers from upstream, NAT
    /// traffic from host sockets). Drivers call it once per turn of their loop.
    pub fn poll(&mut self, now: Now, buf: &mut FrameBuf, io: &mut impl Io) {
        let swn = self.switch_time(now);
        if self.sw.poll_timeout().is_some_and(|t| t <= swn) {
            self.sw.handle_timeout(swn);
        }
        if let Some((_, g)) = self.gateway.as_mut() {
            if let Some(s) = g.dhcp_mut() {
                if s.poll_timeout().is_some_and(|t| t <= now.wall) {
                    s.handle_timeout(now.wall);
                }
            }
            if let Some(s) = g.dhcp6_mut() {
                if s.poll_timeout().is_some_and(|t| t <= now.wall) {
                    s.expire(now.wall);
                }
            }
            if g.poll_timeout(now).is_some_and(|t| t <= now.mono) {
                g.handle_timeout(now);
            }
        }
        if let Some(r) = self.router.as_mut() {
            r.poll(now.mono);
        }
        self.watch_counters(now);
        self.drain_router(now, buf, io);
        self.drain_gateway(now, buf, io);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_event(events: &mut VecDeque<Event>, ev: Event) {
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(ev);
    }

    /// Gives every protected port the IPv4 addresses its MAC holds: active leases and
    /// fixed reservations. Done after each lease change; call it after adding a port
    /// with security.
    pub fn refresh_port_security(&mut self) {
        let Some(server) = self.gateway.as_ref().and_then(|(_, g)| g.dhcp()) else {
            return;
        };
        for i in 0..self.sw.ports().len() {
            let Some(&id) = self.sw.ports().get(i) else {
                break;
            };
            let Some(mac) = self
                .sw
                .port_config(id)
                .and_then(|c| c.security)
                .and_then(|s| s.mac)
            else {
                continue;
            };
            let leased = server.leases().filter(|l| l.mac == mac.0).map(|l| l.ip);
            let reserved = server
                .config()
                .hosts
                .iter()
                .filter(|h| h.mac == Some(mac.0))
                .filter_map(|h| h.ip);
            let addrs: Vec<Ipv4Addr> = leased.chain(reserved).collect();
            self.sw.set_port_addrs(id, addrs);
        }
    }

    // ---- the datapath ----

    fn forward(&mut self, now: Now, ingress: PortId, buf: &mut FrameBuf, io: &mut impl Io) {
        self.ingress = ingress;
        if io.observing() {
            io.observe(ingress, true, buf.frame());
        }
        match self
            .sw
            .handle_frame(self.switch_time(now), ingress, buf.frame())
        {
            Verdict::Forward(egress) => {
                // nothing reads the frame after this one transmit
                self.take_buf = true;
                self.transmit(now, egress, buf, io);
            }
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.targets);
                targets.clear();
                targets.extend(self.sw.flood_targets(ingress));
                for &egress in &targets {
                    self.transmit(now, egress, buf, io);
                }
                self.targets = targets;
            }
            Verdict::Drop(_) => {}
        }
    }

    fn transmit(&mut self, now: Now, egress: PortId, buf: &mut FrameBuf, io: &mut impl Io) {
        let take = std::mem::take(&mut self.take_buf);
        if io.observing() {
            io.observe(egress, false, buf.frame());
        }
        if self.gateway_port() != Some(egress) {
            if !io.transmit(egress, buf, take) {
                self.sw.count_tx_failure(egress, buf.len());
            }
            return;
        }
        if let Some(r) = self.router.as_mut() {
            let mut hdr = [0u8; VNET_HDR_LEN];
            let _ = buf.vnet_hdr().emit(&mut hdr);
            match r.from_segment(now.mono, &hdr, buf.frame_mut()) {
                RouteVerdict::Uplink => return io.uplink(buf),
                // to a prefix behind another guest: back into the segment
                RouteVerdict::Segment => return self.forward(now, egress, buf, io),
                RouteVerdict::Waiting | RouteVerdict::Dropped => return,
                RouteVerdict::Host => {
                    if let Some(h) = self.host_port {
                        self.transmit(now, h, buf, io);
                    }
                    return;
                }
                _ => {}
            }
        }
        let claim = match (self.host_port, self.gateway.as_ref()) {
            (_, None) => return,
            (Some(_), Some((_, g))) => g.host_claim(buf.frame()),
            (None, Some(_)) => Claim::Gateway,
        };
        if let (Some(h), Claim::Host | Claim::Both) = (self.host_port, claim) {
            self.transmit(now, h, buf, io);
        }
        if claim != Claim::Host {
            let ingress = u32::from(self.ingress.0);
            if let Some((_, g)) = self.gateway.as_mut() {
                g.set_ingress(Some(ingress));
                g.handle_frame(now, buf.frame());
            }
        }
    }

    /// Hands the gateway's events to the driver (leases first, to persist) and sends
    /// what the gateway queued into the switch, as frames arriving on its port.
    fn drain_gateway(&mut self, now: Now, buf: &mut FrameBuf, io: &mut impl Io) {
        loop {
            if self.service_gateway(now, io) {
                self.refresh_port_security();
            }
            let Some((id, g)) = self.gateway.as_mut() else {
                return;
            };
            let Some(frame) = g.poll_transmit() else {
                return;
            };
            let (id, mtu) = (*id, usize::from(g.config().mtu));
            buf.set_frame(&frame);
            g.recycle(frame);
            // NAT's TCP super-frames go to guests as TSO frames
            buf.offload_tcp(mtu);
            self.forward(now, id, buf, io);
        }
    }

    /// The gateway's host-side work: DHCP events (persisted by the driver, lease names
    /// to DNS), DNS events and forwarded queries, the NAT's actions. True if a lease
    /// changed.
    fn service_gateway(&mut self, now: Now, io: &mut impl Io) -> bool {
        let Some((_, g)) = self.gateway.as_mut() else {
            return false;
        };
        let mut names: Vec<(IpAddr, Option<String>)> = Vec::new();
        if let Some(server) = g.dhcp6_mut() {
            while let Some(ev) = server.poll_event() {
                io.dhcp6_event(&ev);
                // a reservation's name is DNS data already (and may be any name)
                let reserved = |ip| server.config().hosts.iter().any(|h| h.ip == ip);
                match &ev {
                    vnet_dhcp::v6::Event6::Granted(l) if !reserved(l.ip) => {
                        names.push((l.ip.into(), l.hostname.clone()));
                    }
                    vnet_dhcp::v6::Event6::Released(l) | vnet_dhcp::v6::Event6::Expired(l) => {
                        names.push((l.ip.into(), None));
                    }
                    _ => {}
                }
                Self::push_event(&mut self.events, Event::Lease6(ev));
            }
        }
        if let Some(server) = g.dhcp_mut() {
            while let Some(ev) = server.poll_event() {
                io.dhcp_event(&ev);
                let (name, event) = match ev {
                    vnet_dhcp::Event::LeaseGranted(l) => {
                        ((l.ip.into(), l.hostname.clone()), Event::LeaseGranted(l))
                    }
                    vnet_dhcp::Event::LeaseReleased(l) => {
                        ((l.ip.into(), None), Event::LeaseReleased(l))
                    }
                    vnet_dhcp::Event::LeaseExpired(l) => {
                        ((l.ip.into(), None), Event::LeaseExpired(l))
                    }
                    _ => continue,
                };
                names.push(name);
                Self::push_event(&mut self.events, event);
            }
        }
        let changed = !names.is_empty();
        if let Some(dns) = g.dns_mut() {
            for (ip, name) in names {
                match name {
                    Some(n) => dns.set_lease_name(ip, &n),
                    None => dns.remove_lease_name(ip),
                }
            }
            while let Some(ev) = dns.poll_event() {
                io.dns_event(&ev);
            }
            while let Some(q) = dns.poll_upstream() {
                io.dns_query(q.to, &q.payload);
            }
        }
        if let Some(nat) = g.nat_mut() {
            io.nat(nat, now.mono);
        }
        changed
    }

    /// Sends what the router made or released: ARP questions, ICMP errors, packets that
    /// waited for their next hop.
    fn drain_router(&mut self, now: Now, buf: &mut FrameBuf, io: &mut impl Io) {
        let Some(gw_id) = self.gateway_port() else {
            return;
        };
        loop {
            let Some(r) = self.router.as_mut() else {
                return;
            };
            if let Some((hdr, frame)) = r.poll_uplink() {
                buf.set_frame(&frame);
                if let Some(h) = vnet_ports::VirtioNetHdr::parse(&hdr) {
                    buf.set_vnet_hdr(&h);
                }
                io.uplink(buf);
                continue;
            }
            let Some((hdr, frame)) = r.poll_segment() else {
                return;
            };
            buf.set_frame(&frame);
            if let Some(h) = vnet_ports::VirtioNetHdr::parse(&hdr) {
                buf.set_vnet_hdr(&h);
            }
            self.forward(now, gw_id, buf, io);
        }
    }

    /// Once a second: a station move and bounds that were hit since the last check
    /// become events, one per kind.
    fn watch_counters(&mut self, now: Now) {
        let at = now.mono;
        if self
            .watch
            .at
            .is_some_and(|t| at.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.watch.at = Some(at);
        let fdb = self.sw.fdb().stats();
        let bound =
            |events: &mut VecDeque<Event>, now: u64, before: u64, what: &dyn Fn(u64) -> String| {
                if now > before {
                    Self::push_event(events, Event::BoundHit(what(now - before)));
                }
            };
        if fdb.moves > self.watch.moves {
            if let Some(m) = self.sw.fdb().last_move() {
                Self::push_event(
                    &mut self.events,
                    Event::MacMoved {
                        mac: m.mac,
                        from: m.from,
                        to: m.to,
                        moves: fdb.moves - self.watch.moves,
                    },
                );
            }
        }
        let max = self.sw.fdb().max_entries();
        bound(
            &mut self.events,
            fdb.evictions,
            self.watch.evictions,
            &|n| format!("FDB full ({max} entries): {n} evicted"),
        );
        let (nat_refused, pool_exhausted) = self.gateway.as_ref().map_or((0, 0), |(_, g)| {
            (
                g.nat().map_or(0, |n| n.stats().refused_limit),
                g.dhcp().map_or(0, |d| d.stats().pool_exhausted),
            )
        });
        bound(
            &mut self.events,
            nat_refused,
            self.watch.nat_refused,
            &|n| format!("NAT flow bound: {n} new flows refused"),
        );
        bound(
            &mut self.events,
            pool_exhausted,
            self.watch.pool_exhausted,
            &|n| format!("DHCP pool exhausted: {n} requests unanswered"),
        );
        let waiting_full = self.router.as_ref().map_or(0, |r| r.stats().waiting_full);
        bound(
            &mut self.events,
            waiting_full,
            self.watch.router_waiting_full,
            &|n| format!("router: {n} packets dropped, too many waiting for ARP"),
        );
        self.watch.moves = fdb.moves;
        self.watch.evictions = fdb.evictions;
        self.watch.nat_refused = nat_refused;
        self.watch.pool_exhausted = pool_exhausted;
        self.watch.router_waiting_full = waiting_full;
    }
}
