//! A DHCPv4 server for vnet networks (replacing libvirt's dnsmasq), and its lease
//! database.
//!
//! [`Server`] is sans-IO: [`Server::handle`] takes the time, what the driver knows about
//! the packet ([`PacketMeta`]) and the UDP payload sent to port 67, and returns the
//! [`Reply`] to send and where to send it ([`ReplyDest`], RFC 2131 §4.1). It owns no
//! socket, reads no clock and does no file I/O. Lease expiries and quarantines are
//! driven by [`Server::poll_timeout`]/[`Server::handle_timeout`]. What happened comes out
//! of [`Server::poll_event`]: dnsmasq-style log lines ([`Event::log_line`]) and the lease
//! changes the driver records in the [`LeaseDb`] before sending the reply.
//!
//! The server follows RFC 2131 and dnsmasq's habits: it is authoritative (a client
//! asking for an address that is not its to have gets a DHCPNAK), a client gets the
//! address it had before while that address is free, reservations (`<host>`) match by
//! client identifier or MAC and win over dynamic leases at the next renewal, declined
//! addresses are quarantined. [`ServerConfig::from_network`] reads a libvirt network.
//!
//! Not done: relayed requests (`giaddr`), DHCPv6, option 81 (client FQDN), BOOTP
//! clients without a DHCP message type, and DNS registration of host names (the
//! leases carry the names for the DNS server to use).
//!
//! [`db`] is the lease database: an append-only text log, crash-safe and compacted.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use std::time::{Duration, SystemTime};
//! use vnet_dhcp::dhcproto::v4::{DhcpOption, Message, MessageType};
//! use vnet_dhcp::dhcproto::{Decodable, Decoder, Encodable, Encoder};
//! use vnet_dhcp::{Event, PacketMeta, ReplyDest, Server, ServerConfig};
//!
//! let net = vnet_config::Network::libvirt_default();
//! let config = ServerConfig::from_network(&net).expect("the default network has DHCP");
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut server = Server::new(config, Vec::new(), now);
//!
//! // A DHCPDISCOVER from 52:54:00:12:34:56.
//! let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
//! let unspecified = Ipv4Addr::UNSPECIFIED;
//! let mut discover = Message::new_with_id(7, unspecified, unspecified, unspecified, unspecified, &mac);
//! discover.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
//! let mut payload = Vec::new();
//! discover.encode(&mut Encoder::new(&mut payload))?;
//!
//! let meta = PacketMeta { src_mac: mac, src_ip: unspecified, dst_ip: Ipv4Addr::BROADCAST };
//! let reply = server.handle(now, &meta, &payload).expect("well formed").expect("an offer");
//! let offer = Message::decode(&mut Decoder::new(&reply.payload))?;
//! assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
//! assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 168, 122, 2));
//! assert_eq!(reply.dst, ReplyDest::Unicast { ip: offer.yiaddr(), mac });
//!
//! let lines: Vec<String> =
//!     std::iter::from_fn(|| server.poll_event()).filter_map(|e| e.log_line("default")).collect();
//! assert_eq!(lines, [
//!     "DHCPDISCOVER(default) 52:54:00:12:34:56",
//!     "DHCPOFFER(default) 192.168.122.2 52:54:00:12:34:56",
//! ]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod config;
pub mod db;
mod event;
mod seen;
mod server;
pub mod v6;

#[cfg(test)]
mod tests;

pub use config::{
    BootpConfig, LeaseDuration, PoolRange, Reservation, ServerConfig, DEFAULT_DECLINE_QUARANTINE,
    MIN_LEASE,
};
pub use db::{DbError, LeaseDb};
/// The DHCP codec this crate uses, to build and read messages with the same version.
pub use dhcproto;
pub use event::{Event, Lease, Mac};
pub use seen::{ClaimEviction, SEEN_PER_MAC, SEEN_PER_PORT};
pub use server::{
    DropReason, MessageCounts, PacketMeta, Reply, ReplyDest, Server, Stats, OFFER_HOLD, SEEN_HOLD,
};
