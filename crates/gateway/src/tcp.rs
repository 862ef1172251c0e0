//! TCP on the gateway's addresses (IPv4 and IPv6), for DNS over TCP (port 53), on a
//! `smoltcp` interface.
//!
//! The gateway has no kernel socket: TCP segments addressed to it arrive as Ethernet
//! frames from the switch. They are fed to a `smoltcp` interface that owns a fixed set of
//! listening sockets; complete length-prefixed messages (RFC 1035 §4.2.2) are handed to
//! the caller's handler and its answers written back. Frames smoltcp emits are returned
//! to the gateway's out queue.
//!
//! Bounds: [`MAX_CONNS`] connections at once, [`MAX_CONNS_PER_CLIENT`] per client
//! address (more are reset), an idle timeout of [`IDLE_TIMEOUT`], one message answered
//! at a time per connection (the next is read once the answer is sent).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint,
};

/// Connections served at once.
pub const MAX_CONNS: usize = 16;
/// Connections one client address may hold at once.
pub const MAX_CONNS_PER_CLIENT: usize = 4;
/// Addresses the service listens on (the smoltcp interface's capacity).
pub const MAX_ADDRS: usize = 8;
/// A connection without traffic for this long is closed.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const RX_BUF: usize = 4 * 1024;
const TX_BUF: usize = 2 + 65_535;
/// Largest message a client may send (a DNS query is far smaller).
const MAX_MESSAGE: usize = RX_BUF - 2;

/// Answers one message from a client (`None`: the answer comes later, or never).
pub(crate) type Handler<'a> = dyn FnMut(SocketAddr, &[u8]) -> Option<Vec<u8>> + 'a;

/// Frames in and out of the smoltcp interface.
#[derive(Debug, Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        // Guests with checksum offload send TCP segments with a partial checksum (the
        // virtio-net header says so); the TAP already vouched for them. Compute on send.
        caps.checksum.tcp = Checksum::Tx;
        caps
    }
}

struct Conn {
    handle: SocketHandle,
    inbuf: Vec<u8>,
}

/// TCP service on the gateway address. See the module doc.
pub(crate) struct TcpService {
    iface: Interface,
    dev: Queues,
    sockets: SocketSet<'static>,
    conns: Vec<Conn>,
    epoch: std::time::Instant,
    /// The gateway's IPv4 address, if it has one.
    ip: Option<Ipv4Addr>,
    /// An IPv6 address of the gateway's (the target of synthetic neighbor adverts).
    ip6: Option<Ipv6Addr>,
    mac: EthernetAddress,
    port: u16,
    /// Connections reset because the client held too many.
    pub(crate) refused: u64,
    /// Answers for connections that were gone or full.
    pub(crate) lost_answers: u64,
}

impl std::fmt::Debug for TcpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpService")
            .field("ip", &self.ip)
            .field("port", &self.port)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl TcpService {
    /// Listens on `port` of the gateway's addresses (`ip`: IPv4 with its prefix; `ip6`:
    /// IPv6, with the link-local) with its `mac`; `mtu` is the network's IP MTU. Up to
    /// [`MAX_ADDRS`] addresses are served.
    pub(crate) fn new(
        mac: [u8; 6],
        ip: Option<(Ipv4Addr, u8)>,
        ip6: &[(Ipv6Addr, u8)],
        mtu: usize,
        port: u16,
        now: std::time::Instant,
    ) -> Self {
        let mut dev = Queues {
            mtu: mtu + 14,
            ..Queues::default()
        };
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let mut iface = Interface::new(config, &mut dev, SmolInstant::ZERO);
        iface.update_ip_addrs(|addrs| {
            if let Some((ip, prefix)) = ip {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ip), prefix.min(32)));
            }
            for (ip6, prefix) in ip6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(*ip6), (*prefix).min(128)));
            }
        });
        let mut s = Self {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            conns: Vec::new(),
            epoch: now,
            ip: ip.map(|(a, _)| a),
            ip6: ip6.first().map(|(a, _)| *a),
            mac: EthernetAddress(mac),
            port,
            refused: 0,
            lost_answers: 0,
        };
        for _ in 0..MAX_CONNS {
            let sock = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUF]),
                tcp::SocketBuffer::new(vec![0; TX_BUF]),
            );
            let handle = s.sockets.add(sock);
            s.conns.push(Conn {
                handle,
                inbuf: Vec::new(),
            });
        }
        for i in 0..s.conns.len() {
            s.relisten(i);
        }
        s
    }

    fn smol_now(&self, now: std::time::Instant) -> SmolInstant {
        let us = now.saturating_duration_since(self.epoch).as_micros();
        SmolInstant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    fn relisten(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        c.inbuf.clear();
        let sock = self.sockets.get_mut::<tcp::Socket<'_>>(c.handle);
        if sock.state() == tcp::State::Closed {
            // any of the interface's addresses: the gateway hands over only segments
            // for its own
            let _ = sock.listen(IpListenEndpoint {
                addr: None,
                port: self.port,
            });
            sock.set_timeout(Some(SmolDuration::from_micros(
                u64::try_from(IDLE_TIMEOUT.as_micros()).unwrap_or(u64::MAX),
            )));
        }
    }

    /// A TCP segment (a whole Ethernet frame) for the gateway from `src_mac`/`src_ip`.
    pub(crate) fn handle_frame(
        &mut self,
        now: std::time::Instant,
        frame: &[u8],
        src_mac: [u8; 6],
        src_ip: IpAddr,
    ) {
        // Tell smoltcp where the client is (a synthetic ARP reply or neighbor advert),
        // so its answer needs no resolution round trip: the gateway has just seen the
        // client's MAC.
        let hint = match src_ip {
            IpAddr::V4(ip) => self.arp_reply_from(src_mac, ip),
            IpAddr::V6(ip) => self.neighbor_advert_from(src_mac, ip),
        };
        if let Some(hint) = hint {
            self.dev.rx.push_back(hint);
        }
        self.dev.rx.push_back(frame.to_vec());
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
    }

    fn arp_reply_from(&self, mac: [u8; 6], ip: Ipv4Addr) -> Option<Vec<u8>> {
        let own = self.mac;
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: ip,
            target_hardware_addr: own,
            target_protocol_addr: self.ip?,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(mac),
            dst_addr: own,
            ethertype: EthernetProtocol::Arp,
        };
        let mut buf = vec![0; eth.buffer_len() + arp.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        Some(buf)
    }

    /// An unsolicited neighbor advertisement from the client for its own address,
    /// which smoltcp takes into its neighbor cache.
    fn neighbor_advert_from(&self, mac: [u8; 6], ip: Ipv6Addr) -> Option<Vec<u8>> {
        Some(vnet_nat::neighbor_advert(mac, ip, self.mac.0, self.ip6?))
    }

    /// Reads complete messages and answers them with `handler` (`None`: the answer comes
    /// later through [`send_to`](Self::send_to)); recycles closed connections.
    pub(crate) fn service(&mut self, now: std::time::Instant, handler: &mut Handler<'_>) {
        for i in 0..self.conns.len() {
            let handle = self.conns[i].handle;
            let sock = self.sockets.get_mut::<tcp::Socket<'_>>(handle);
            match sock.state() {
                tcp::State::Closed => {
                    self.relisten(i);
                    continue;
                }
                tcp::State::CloseWait => {
                    sock.close();
                    continue;
                }
                tcp::State::Established => {}
                _ => continue,
            }
            let Some(remote) = sock.remote_endpoint().map(socket_addr) else {
                continue;
            };
            if self.conns[i].inbuf.is_empty() && sock.send_queue() == 0 {
                let held = self.count_conns_of(remote.ip());
                if held > MAX_CONNS_PER_CLIENT && self.is_newest_of(i, remote.ip()) {
                    self.sockets.get_mut::<tcp::Socket<'_>>(handle).abort();
                    self.refused += 1;
                    continue;
                }
            }
            let sock = self.sockets.get_mut::<tcp::Socket<'_>>(handle);
            let c = &mut self.conns[i];
            // one message at a time: read on only when the last answer is sent
            while sock.can_recv() && sock.send_queue() == 0 {
                let want = message_len(&c.inbuf).map_or(2, |n| n + 2);
                if c.inbuf.len() < want {
                    let mut chunk = [0u8; 512];
                    let room = (want - c.inbuf.len()).min(chunk.len());
                    match sock.recv_slice(&mut chunk[..room]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                    }
                }
                let Some(n) = message_len(&c.inbuf) else {
                    continue;
                };
                if n > MAX_MESSAGE {
                    sock.abort();
                    break;
                }
                if c.inbuf.len() < n + 2 {
                    continue;
                }
                let msg: Vec<u8> = c.inbuf.drain(..n + 2).skip(2).collect();
                if let Some(answer) = handler(remote, &msg) {
                    write_message(sock, &answer);
                }
            }
        }
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
    }

    fn count_conns_of(&self, ip: IpAddr) -> usize {
        self.conns
            .iter()
            .filter(|c| {
                let s = self.sockets.get::<tcp::Socket<'_>>(c.handle);
                s.is_active()
                    && s.remote_endpoint()
                        .is_some_and(|r| socket_addr(r).ip() == ip)
            })
            .count()
    }

    /// Whether connection `i` is the last of `ip`'s in the table (the one to refuse).
    fn is_newest_of(&self, i: usize, ip: IpAddr) -> bool {
        !self.conns.iter().skip(i + 1).any(|c| {
            let s = self.sockets.get::<tcp::Socket<'_>>(c.handle);
            s.is_active()
                && s.remote_endpoint()
                    .is_some_and(|r| socket_addr(r).ip() == ip)
        })
    }

    /// Sends a late answer to the connection of `client`; false if it is gone.
    pub(crate) fn send_to(&mut self, now: std::time::Instant, client: SocketAddr, msg: &[u8]) {
        let found = self.conns.iter().find(|c| {
            let s = self.sockets.get::<tcp::Socket<'_>>(c.handle);
            s.state() == tcp::State::Established
                && s.remote_endpoint().map(socket_addr) == Some(client)
        });
        let Some(handle) = found.map(|c| c.handle) else {
            self.lost_answers += 1;
            return;
        };
        let sock = self.sockets.get_mut::<tcp::Socket<'_>>(handle);
        if !write_message(sock, msg) {
            self.lost_answers += 1;
        }
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
    }

    /// Timers (retransmission, idle timeout).
    pub(crate) fn handle_timeout(&mut self, now: std::time::Instant) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub(crate) fn poll_at(&mut self, now: std::time::Instant) -> Option<std::time::Instant> {
        let t = self.smol_now(now);
        let at = self.iface.poll_at(t, &self.sockets)?;
        let us = u64::try_from(at.total_micros()).unwrap_or(0);
        Some(self.epoch + std::time::Duration::from_micros(us))
    }

    /// The next frame smoltcp sent.
    pub(crate) fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.dev.tx.pop_front()
    }

    /// Open connections.
    pub(crate) fn open_conns(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| self.sockets.get::<tcp::Socket<'_>>(c.handle).is_active())
            .count()
    }
}

fn socket_addr(e: IpEndpoint) -> SocketAddr {
    match e.addr {
        IpAddress::Ipv4(ip) => SocketAddr::new(IpAddr::V4(ip), e.port),
        IpAddress::Ipv6(ip) => SocketAddr::new(IpAddr::V6(ip), e.port),
    }
}

/// The length a buffered message announces, once its 2-byte prefix is in.
fn message_len(buf: &[u8]) -> Option<usize> {
    match buf {
        [hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// Writes `msg` with its length prefix; false (nothing written) if it does not fit.
fn write_message(sock: &mut tcp::Socket<'_>, msg: &[u8]) -> bool {
    let Ok(len) = u16::try_from(msg.len()) else {
        return false;
    };
    if sock.send_capacity() - sock.send_queue() < msg.len() + 2 {
        return false;
    }
    let _ = sock.send_slice(&len.to_be_bytes());
    let _ = sock.send_slice(msg);
    true
}
