//! The virtual gateway of a vnet network: the network's own address on the segment.
//!
//! In libvirt the host answers for the network's address (on `virbr0`) and dnsmasq hands
//! out leases. In vnet the gateway is one more port of the switch, inside `switchd`:
//! frames the switch delivers to it (broadcasts, and unicast to its MAC) are answered here:
//! - ARP requests for the gateway address (and a gratuitous ARP when it starts);
//! - ICMP echo requests to the gateway address;
//! - DHCP (UDP port 67), handed to a [`vnet_dhcp::Server`];
//! - the sender of every ARP packet it sees is reported to the DHCP server
//!   ([`Server::note_in_use`]), so addresses guests configured by hand are not offered.
//!
//! Sans-IO: frames and the time come in ([`Gateway::handle_frame`]), frames to inject
//! into the switch go out ([`Gateway::poll_transmit`]). It owns no socket and reads no
//! clock. The gateway's traffic is control-plane traffic (ARP, ping, DHCP), so replies are
//! built in fresh buffers; the guest-to-guest path never comes here.
//!
//! It does not forward anything off the segment: the NAT and routing engines do that.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Icmpv4Slice, Icmpv4Type, IpNumber,
    Ipv4Slice, PacketBuilder, UdpSlice,
};
use vnet_dhcp::{PacketMeta, ReplyDest, Server};
use vnet_switch::wire::{EtherType as WireEtherType, EthernetFrame};
use vnet_switch::MacAddr;

/// Bound on frames waiting in [`Gateway::poll_transmit`]; past it, replies are dropped
/// and counted (a guest cannot make the gateway buffer without bound).
pub const MAX_QUEUED: usize = 256;

const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const TTL: u8 = 64;

/// Who the gateway is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's MAC address (the network's `<mac address>`).
    pub mac: MacAddr,
    /// The gateway's address (the network's IPv4 `<ip address>`).
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
}

impl GatewayConfig {
    fn broadcast(&self) -> Ipv4Addr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.ip) | !mask)
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
}

/// The gateway. See the crate doc.
#[derive(Debug)]
pub struct Gateway {
    cfg: GatewayConfig,
    dhcp: Option<Server>,
    out: VecDeque<Vec<u8>>,
    stats: GatewayStats,
}

impl Gateway {
    /// A gateway, with a DHCP server if the network serves DHCP.
    pub fn new(cfg: GatewayConfig, dhcp: Option<Server>) -> Self {
        Self {
            cfg,
            dhcp,
            out: VecDeque::new(),
            stats: GatewayStats::default(),
        }
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

    /// Counters.
    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    /// Queues a gratuitous ARP announcing the gateway's address and MAC (at start, so
    /// guests and the switch learn where the gateway is).
    pub fn announce(&mut self) {
        let arp = ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: self.cfg.mac.0,
            sender_ipv4: self.cfg.ip.octets(),
            target_mac: [0; 6],
            target_ipv4: self.cfg.ip.octets(),
        };
        if self.push_arp(MacAddr::BROADCAST, &arp) {
            self.stats.gratuitous_arps += 1;
        }
    }

    /// A frame the switch delivered to the gateway port.
    pub fn handle_frame(&mut self, now: SystemTime, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.stats.malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.cfg.mac && !dst.is_broadcast() {
            self.stats.ignored += 1;
            return;
        }
        let src = eth.src_addr();
        match eth.ethertype() {
            WireEtherType::Arp => self.handle_arp(now, eth.payload()),
            WireEtherType::Ipv4 => self.handle_ipv4(now, src, eth.payload()),
            _ => self.stats.ignored += 1,
        }
    }

    /// The next frame to inject into the switch, as sent by the gateway port.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
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

    fn handle_arp(&mut self, now: SystemTime, payload: &[u8]) {
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
        if !sender.is_unspecified() && sender != self.cfg.ip {
            if let Some(server) = self.dhcp.as_mut() {
                server.note_in_use(now, sender, arp.sender_mac);
            }
        }
        if arp.operation != ArpOperation::REQUEST || arp.target_ipv4_addr() != self.cfg.ip {
            self.stats.ignored += 1;
            return;
        }
        // a gratuitous ARP from someone else claiming our address is not answered
        if arp.sender_ipv4_addr() == self.cfg.ip {
            self.stats.ignored += 1;
            return;
        }
        let reply = ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: self.cfg.mac.0,
            sender_ipv4: self.cfg.ip.octets(),
            target_mac: arp.sender_mac,
            target_ipv4: arp.sender_ipv4,
        };
        if self.push_arp(MacAddr(arp.sender_mac), &reply) {
            self.stats.arp_replies += 1;
        }
    }

    fn handle_ipv4(&mut self, now: SystemTime, src_mac: MacAddr, payload: &[u8]) {
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
        let to_us = dst_ip == self.cfg.ip;
        let broadcast = dst_ip == Ipv4Addr::BROADCAST || dst_ip == self.cfg.broadcast();
        let body = ip.payload().payload;
        match ip.payload_ip_number() {
            IpNumber::ICMP if to_us => self.handle_icmp(src_mac, src_ip, body),
            IpNumber::UDP if to_us || broadcast => {
                let Ok(udp) = UdpSlice::from_slice(body) else {
                    self.stats.malformed += 1;
                    return;
                };
                if udp.destination_port() == DHCP_SERVER_PORT {
                    let meta = PacketMeta {
                        src_mac: src_mac.0,
                        src_ip,
                        dst_ip,
                    };
                    self.handle_dhcp(now, &meta, udp.payload());
                } else {
                    self.stats.ignored += 1;
                }
            }
            _ => self.stats.ignored += 1,
        }
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
            .ipv4(self.cfg.ip.octets(), src_ip.octets(), TTL)
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
        let reply = match server.handle(now, meta, payload) {
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
            .ipv4(self.cfg.ip.octets(), dst_ip.octets(), TTL)
            .udp(DHCP_SERVER_PORT, DHCP_CLIENT_PORT);
        let mut frame = Vec::with_capacity(builder.size(reply.payload.len()));
        if builder.write(&mut frame, &reply.payload).is_ok() && self.push(frame) {
            self.stats.dhcp_out += 1;
        }
    }
}

#[cfg(test)]
mod tests;
