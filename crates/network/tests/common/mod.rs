//! A network in memory, driven like quinn's `Pair`: guests are smoltcp stacks (a real
//! DHCP client, DNS resolver, TCP, UDP and ICMP) on ports of a [`Network`], time is
//! virtual, and the host side (the NAT's sockets, the DNS upstream, the lease
//! database) is in memory too. Nothing leaves the process: no socket, no device.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};
use vnet_nat::{Action, FlowId, HostStream, Nat, Proto};
use vnet_network::{FrameBuf, Io, Network, Now, Options, PortConfig, PortId};

/// A guest's wire: frames it sent (to the network) and frames for it.
#[derive(Default)]
pub(crate) struct Wire {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: VecDeque<Vec<u8>>,
}

pub(crate) struct Rx(Vec<u8>);
pub(crate) struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// A guest: a smoltcp interface on a port of the network.
pub(crate) struct Guest {
    pub(crate) port: PortId,
    pub(crate) mac: [u8; 6],
    pub(crate) iface: Interface,
    pub(crate) wire: Wire,
    pub(crate) sockets: SocketSet<'static>,
    /// Its DHCP client, when it asked for a lease.
    pub(crate) dhcp: Option<SocketHandle>,
    /// The address DHCP gave it.
    pub(crate) leased: Option<Ipv4Addr>,
}

/// A host-side TCP socket in memory: an echo server, or a client of a port forward.
#[derive(Default)]
pub(crate) struct Mem {
    pub(crate) echo: bool,
    pub(crate) written: Vec<u8>,
    pub(crate) to_read: Vec<u8>,
}

impl HostStream for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_read.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.to_read.len());
        buf[..n].copy_from_slice(&self.to_read[..n]);
        self.to_read.drain(..n);
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        if self.echo {
            self.to_read.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What happened on the host side, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A lease grant was handed over to be persisted.
    Persisted(Ipv4Addr),
    /// A DHCP ACK left the network by a port.
    DhcpAck(PortId),
    /// A DHCPv6 lease grant was handed over to be persisted.
    Persisted6(std::net::Ipv6Addr),
    /// A DHCPv6 REPLY left the network by a port.
    Dhcp6Reply(PortId),
}

/// The network's outside, in memory. Remote hosts beyond the NAT: TCP port 7 echoes,
/// TCP port 9 refuses, UDP echoes, ICMP echo is answered.
#[derive(Default)]
pub(crate) struct Host {
    /// Frames out of each port.
    pub(crate) out: HashMap<PortId, Vec<Vec<u8>>>,
    pub(crate) log: Vec<Entry>,
    pub(crate) streams: HashMap<FlowId, Mem>,
    pub(crate) protos: HashMap<FlowId, Proto>,
    /// Where the NAT opened host sockets to.
    pub(crate) opened: Vec<(Proto, SocketAddr)>,
    /// Queries forwarded to upstream DNS servers.
    pub(crate) queries: Vec<(SocketAddr, Vec<u8>)>,
}

/// An IPv6/UDP frame from port 547 carrying a DHCPv6 REPLY (type 7).
fn is_dhcp6_reply(frame: &[u8]) -> bool {
    frame.len() > 62
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 17
        && frame[54..56] == 547u16.to_be_bytes()
        && frame[62] == 7
}

fn is_dhcp_ack(frame: &[u8]) -> bool {
    // Ethernet 14 + IPv4 20 + UDP 8; UDP source port 67; options after 240 bytes of BOOTP
    frame.len() > 14 + 20 + 8 + 240
        && frame[12..14] == [0x08, 0x00]
        && frame[34..36] == 67u16.to_be_bytes()
        && frame[42 + 240..].windows(3).any(|w| w == [53, 1, 5])
}

impl Io for Host {
    fn transmit(&mut self, port: PortId, buf: &mut FrameBuf, _take: bool) -> bool {
        // guests take plain frames: checksums completed, super-frames cut (as a QEMU
        // socket port does)
        let out = self.out.entry(port).or_default();
        let log = &mut self.log;
        vnet_ports::soft::for_each_plain(buf, &mut Vec::new(), |f| {
            if is_dhcp_ack(f) {
                log.push(Entry::DhcpAck(port));
            }
            if is_dhcp6_reply(f) {
                log.push(Entry::Dhcp6Reply(port));
            }
            out.push(f.to_vec());
        })
        .is_ok()
    }

    fn dhcp_event(&mut self, ev: &vnet_dhcp::Event) {
        if let vnet_dhcp::Event::LeaseGranted(l) = ev {
            self.log.push(Entry::Persisted(l.ip));
        }
    }

    fn dhcp6_event(&mut self, ev: &vnet_dhcp::v6::Event6) {
        if let vnet_dhcp::v6::Event6::Granted(l) = ev {
            self.log.push(Entry::Persisted6(l.ip));
        }
    }

    fn dns_query(&mut self, to: SocketAddr, payload: &[u8]) {
        self.queries.push((to, payload.to_vec()));
    }

    fn nat(&mut self, nat: &mut Nat, now: std::time::Instant) {
        loop {
            let mut busy = false;
            while let Some(a) = nat.poll_action() {
                busy = true;
                match a {
                    Action::Open {
                        flow,
                        proto,
                        target,
                    } => {
                        self.opened.push((proto, target));
                        self.protos.insert(flow, proto);
                        if proto == Proto::Tcp {
                            if target.port() == 9 {
                                nat.opened(now, flow, Err(vnet_nat::OpenError::Refused));
                            } else {
                                self.streams.insert(
                                    flow,
                                    Mem {
                                        echo: true,
                                        ..Mem::default()
                                    },
                                );
                                nat.opened(now, flow, Ok(()));
                            }
                        }
                    }
                    Action::Datagram { flow, mut data } => {
                        match self.protos.get(&flow) {
                            Some(Proto::Udp) => nat.datagram(now, flow, &data),
                            Some(Proto::Icmp) => {
                                // the remote's echo reply: type 0, the rest as sent
                                if let Some(t) = data.first_mut() {
                                    *t = 0;
                                }
                                nat.datagram(now, flow, &data);
                            }
                            _ => {}
                        }
                        nat.recycle(data);
                    }
                    Action::Close { flow } => {
                        self.streams.remove(&flow);
                        self.protos.remove(&flow);
                    }
                }
            }
            while let Some(flow) = nat.poll_dirty() {
                busy = true;
                if let Some(s) = self.streams.get_mut(&flow) {
                    nat.pump(now, flow, s);
                }
            }
            // echoed bytes wait in the streams: pump them back too
            let flows: Vec<FlowId> = self
                .streams
                .iter()
                .filter(|(_, m)| !m.to_read.is_empty())
                .map(|(f, _)| *f)
                .collect();
            for flow in flows {
                if let Some(s) = self.streams.get_mut(&flow) {
                    let before = s.to_read.len();
                    nat.pump(now, flow, s);
                    busy |= s.to_read.len() != before;
                }
            }
            if !busy {
                return;
            }
        }
    }
}

/// The network, its guests, its host side and the virtual clock.
pub(crate) struct Harness {
    pub(crate) net: Network,
    pub(crate) host: Host,
    pub(crate) guests: Vec<Guest>,
    pub(crate) buf: FrameBuf,
    t0: std::time::Instant,
    wall0: SystemTime,
    /// Virtual time since the start.
    pub(crate) elapsed: Duration,
}

/// The libvirt default network (NAT, 192.168.122.0/24, DHCP .2–.254, DNS).
pub(crate) fn default_network() -> vnet_config::Network {
    let mut def = vnet_config::Network::libvirt_default();
    def.fill_defaults(&[]);
    def
}

impl Harness {
    pub(crate) fn new(def: &vnet_config::Network) -> Self {
        let t0 = std::time::Instant::now();
        let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = Now {
            wall: wall0,
            mono: t0,
        };
        let net = Network::from_config(def, Options::new(Vec::new(), 7), now).unwrap();
        Self {
            net,
            host: Host::default(),
            guests: Vec::new(),
            buf: FrameBuf::new(),
            t0,
            wall0,
            elapsed: Duration::ZERO,
        }
    }

    pub(crate) fn now(&self) -> Now {
        Now {
            wall: self.wall0 + self.elapsed,
            mono: self.t0 + self.elapsed,
        }
    }

    /// A guest with MAC `52:54:00:00:00:<n>` on a new port (`cfg`), without an address.
    pub(crate) fn add_guest(&mut self, n: u8, cfg: PortConfig) -> usize {
        let port = self.net.add_port(cfg).unwrap();
        self.net.refresh_port_security();
        let mac = [0x52, 0x54, 0, 0, 0, n];
        let mut wire = Wire::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = u64::from(n);
        let iface = Interface::new(config, &mut wire, SmolInstant::from_millis(0));
        self.guests.push(Guest {
            port,
            mac,
            iface,
            wire,
            sockets: SocketSet::new(Vec::new()),
            dhcp: None,
            leased: None,
        });
        self.guests.len() - 1
    }

    /// Gives guest `g` a DHCP client (announcing `hostname`, if any).
    pub(crate) fn start_dhcp(&mut self, g: usize, hostname: Option<&'static [u8]>) {
        let mut s = dhcpv4::Socket::new();
        if let Some(h) = hostname {
            let opts: &'static [smoltcp::wire::DhcpOption<'static>] =
                Box::leak(Box::new([smoltcp::wire::DhcpOption { kind: 12, data: h }]));
            s.set_outgoing_options(opts);
        }
        let guest = &mut self.guests[g];
        guest.dhcp = Some(guest.sockets.add(s));
    }

    /// Gives guest `g` a static address in the /24 with the gateway as its router.
    pub(crate) fn set_static(&mut self, g: usize, ip: Ipv4Addr) {
        let guest = &mut self.guests[g];
        guest.iface.update_ip_addrs(|a| {
            a.clear();
            let _ = a.push(IpCidr::new(ip.into(), 24));
        });
        let _ = guest
            .iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Addr::new(192, 168, 122, 1));
    }

    /// One turn: every guest polls its stack and sends; the network handles the frames
    /// and its timers; what leaves each guest's port reaches that guest; time moves on
    /// by `dt`.
    pub(crate) fn step(&mut self, dt: Duration) {
        let ts = SmolInstant::from_micros(i64::try_from(self.elapsed.as_micros()).unwrap());
        let now = self.now();
        for g in &mut self.guests {
            g.iface.poll(ts, &mut g.wire, &mut g.sockets);
            if let Some(h) = g.dhcp {
                if let Some(dhcpv4::Event::Configured(c)) =
                    g.sockets.get_mut::<dhcpv4::Socket>(h).poll()
                {
                    g.leased = Some(c.address.address());
                    g.iface.update_ip_addrs(|a| {
                        a.clear();
                        let _ = a.push(IpCidr::Ipv4(c.address));
                    });
                    if let Some(r) = c.router {
                        let _ = g.iface.routes_mut().add_default_ipv4_route(r);
                    }
                }
            }
            while let Some(f) = g.wire.tx.pop_front() {
                self.buf.set_frame(&f);
                self.net
                    .handle_frame(now, g.port, &mut self.buf, &mut self.host);
            }
        }
        self.net.poll(now, &mut self.buf, &mut self.host);
        for g in &mut self.guests {
            if let Some(frames) = self.host.out.remove(&g.port) {
                g.wire.rx.extend(frames);
            }
        }
        self.elapsed += dt;
    }

    /// Steps (10 ms each) until `done` holds, for at most `limit` of virtual time.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let end = self.elapsed + limit;
        while self.elapsed < end {
            self.step(Duration::from_millis(10));
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Steps until guest `g` holds a lease; returns its address.
    pub(crate) fn lease(&mut self, g: usize) -> Ipv4Addr {
        assert!(
            self.run_until(Duration::from_secs(30), |h| h.guests[g].leased.is_some()),
            "guest {g} got no lease"
        );
        self.guests[g].leased.unwrap()
    }
}

/// An ICMP echo request message (type 8) with its checksum.
pub(crate) fn echo_request(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let mut sum = 0u32;
    for c in m.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !u16::try_from(sum).unwrap_or(0);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    m
}
