//! The host side of a vnet network: the sockets its sans-IO engines ask for, registered
//! in the driver's `mio` loop.
//!
//! - [`NatHost`]: one host socket per NAT flow (a TCP connection, a connected UDP
//!   socket, an ICMP ping socket or an echo id on a shared raw socket) and the listeners
//!   of port forwards; it carries out [`vnet_nat::Action`]s and feeds readiness back to
//!   the engine.
//! - [`DnsUpstream`]: the socket the DNS server's forwarded queries leave from.
//! - [`Source`]: every token of the driver's loop, as one type: what each readiness
//!   event is for, decoded in one place instead of ranges of constants and match guards
//!   whose order matters.
//!
//! The engines decide; this crate only does the I/O they ask for. It has no `unsafe`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod dns;
mod nat;
mod token;

pub use dns::DnsUpstream;
pub use nat::{NatHost, MAX_LISTENERS};
pub use token::Source;
