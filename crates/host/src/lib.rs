//! The host side of a vnet network: the sockets its sans-IO engines ask for, registered
//! in the driver's `mio` loop.
//!
//! - [`NatHost`]: one host socket per NAT flow (a TCP connection, a connected UDP
//!   socket, an ICMP ping socket or an echo id on a shared raw socket) and the listeners
//!   of port forwards; it carries out [`vnet_nat::Action`]s and feeds readiness back to
//!   the engine.
//! - [`DnsUpstream`]: the socket the DNS server's forwarded queries leave from.
//! - [`GatewayHost`]: the gateway's host side as a whole: the lease database its DHCP
//!   server writes through (before the ACK leaves), the DNS socket, the host's
//!   resolvers (`/etc/resolv.conf`, re-read when it changes), the NAT host sockets.
//! - [`uplink`]: the interface a routed network's router sends through, and the one a
//!   bridged network's segment is bridged to.
//! - [`Devices`]: the devices behind the ports (TAPs, interfaces, QEMU sockets'
//!   peers), their writer threads and the queue of ports with frames waiting;
//!   [`qemu`]: the stream and dgram sockets QEMU guests attach to; [`open_port`]: the
//!   device a `port-add` asks for; [`open_host_port`]: the host's TAP on the segment.
//! - [`Source`]: every token of the driver's loop, as one type: what each readiness
//!   event is for, decoded in one place instead of ranges of constants and match guards
//!   whose order matters.
//!
//! The engines decide; this crate only does the I/O they ask for. It has no `unsafe`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod devices;
mod dns;
mod error;
mod gateway;
mod nat;
mod port;
pub mod qemu;
mod token;
pub mod uplink;

pub use devices::{Device, Devices, Read};
pub use dns::DnsUpstream;
pub use error::Error;
pub use gateway::GatewayHost;
pub use nat::{NatHost, MAX_LISTENERS};
pub use port::{open_host_port, open_port, Opened, PortAddError};
pub use token::Source;
