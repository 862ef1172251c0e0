//! A DNS server for vnet networks (replacing libvirt's dnsmasq): the network's own
//! names, forwarding to upstream servers, a cache, and loop detection.
//!
//! [`Server`] is sans-IO: [`Server::handle_query`] takes the time, the client's
//! address, the [`Transport`] and the DNS message a guest sent to the gateway's port
//! 53, and returns the answer to send now, if there is one. Queries it forwards come out
//! of [`Server::poll_upstream`] for the driver to send over UDP from the host; the
//! upstreams' answers go into [`Server::handle_upstream`], and the clients' answers come
//! out of [`Server::poll_answer`]. Upstream timeouts are driven by
//! [`Server::poll_timeout`]/[`Server::handle_timeout`]; log lines come from
//! [`Server::poll_event`] ([`Event::log_line`]). It owns no socket, reads no clock, does
//! no file I/O and draws no randomness of its own (a seed comes in with
//! [`Server::with_seed`]). [`DnsConfig::from_network`] reads a libvirt network.
//!
//! The public API speaks bytes, `std` addresses and this crate's own types. The DNS
//! wire format is hickory-proto's, kept behind a thin private adapter so that the rest
//! of vnet never names a hickory type. hickory-server does not fit here: it is a tokio
//! server that owns its UDP/TCP sockets and answers through async
//! `Authority`/`RequestHandler` traits, while switchd receives DNS queries as Ethernet
//! frames addressed to the gateway inside a single-threaded mio loop. So vnet uses
//! hickory's message codec only and keeps the server logic sans-IO, like `vnet-dhcp`.
//!
//! # What it answers (dnsmasq as libvirt configures it)
//!
//! - **Local names**, authoritative (AA), TTL [`Limits::local_ttl`] (0, dnsmasq's
//!   `local-ttl` default): A and PTR for DHCP lease host names
//!   ([`Server::set_lease_name`]) and named `<dhcp><host>` reservations, as `name` and
//!   `name.<domain>`; `<dns><host>` (A or AAAA, PTR to the first name; plain names also
//!   under the domain, dnsmasq `expand-hosts`); `<txt>`; `<srv>` as
//!   `_service._protocol.<domain>`. Names are case-insensitive. A known name without
//!   the asked type: NODATA (NOERROR, no answer, no SOA).
//! - **NXDOMAIN, not forwarded**: names under `<domain localOnly='yes'>` and under
//!   `<forwarder domain>` without `addr` (dnsmasq `local=/domain/`); reverse names
//!   inside an `<ip localPtr='yes'>` subnet; plain names (no dot) with
//!   `forwardPlainNames='no'` (dnsmasq `domain-needed`); names under
//!   [`LOOP_CHECK_ZONE`]. Names under a domain that is not local-only are forwarded, as
//!   dnsmasq does.
//! - **Forwarded**: names under a `<forwarder domain addr>` go to that upstream (the
//!   longest domain wins); everything else goes to the `<forwarder addr>`s without a
//!   domain, else to the host's resolvers ([`Server::set_system_upstreams`]), tried in
//!   strict order: the next one after a timeout ([`Limits::upstream_timeout`], 2 s) or
//!   a SERVFAIL/REFUSED/NOTIMP, SERVFAIL to the client after the last. Each upstream
//!   query has a fresh random id; an answer is accepted only from the address the query
//!   went to, with its id and question. Identical questions in flight share one
//!   upstream query.
//! - **Isolated networks** (forward mode none) forward only to `<forwarder addr>`s;
//!   other names get **REFUSED**: the policy answer "not served here", where SERVFAIL
//!   would claim a failure and NXDOMAIN a non-existence that resolvers cache. No
//!   usable upstream on other networks: SERVFAIL.
//! - **Cache**: answers by (name, type, class), [`Limits::cache_entries`] (4096) of at
//!   most 4096 bytes, least recently used out first; TTL = the smallest answer TTL
//!   (at most 1 day), negative answers the SOA's minimum (RFC 2308, at most 1 hour,
//!   not cached without an SOA); SERVFAIL and truncated answers are not cached. Served
//!   with the time spent in the cache taken off every TTL.
//! - **Loops** (dnsmasq `--dns-loop-detect`): an upstream at one of the network's own
//!   addresses is never used ([`Event::UpstreamIsSelf`]); whenever the set of
//!   upstreams changes, each is sent a TXT query for a random name under
//!   [`LOOP_CHECK_ZONE`], and an upstream whose probe comes back as a query is dropped
//!   ([`Event::UpstreamLoop`]) until the upstreams change or [`Server::reprobe`].
//! - **Not an open resolver**: only clients inside the network's subnets get answers.
//! - **Sizes**: UDP answers over 512 bytes, or over the client's EDNS size (at most
//!   4096 honoured), are truncated to header and question with TC=1; TCP answers may be
//!   64 KiB. A query with an OPT record gets one back ([`EDNS_UDP_SIZE`], 1232).
//! - **Errors**: one question and opcode QUERY only (else FORMERR/NOTIMP), EDNS
//!   version 0 only (else BADVERS), class IN only and no zone transfers (else
//!   REFUSED). Fewer than 12 bytes, or QR=1: dropped and counted.
//! - **Bounds**: every table a guest can fill has one ([`Limits`]): in-flight
//!   queries (1024, 64 per client: a flooding guest's excess is dropped while others
//!   are still answered), the cache, lease names (65 536), the output queues.
//!
//! Not done: DNSSEC validation (DO and CD are passed through; DNSSEC records are
//! stripped for clients without DO), TCP or DoT to upstreams (a truncated upstream
//! answer is relayed as is and not cached), 0x20 case randomization of upstream
//! queries, DNS cookies (RFC 7873), SOA records in local negative answers, local
//! CNAME/MX/wildcard records, periodic loop re-probing (the driver may call
//! [`Server::reprobe`] on a timer), and query rate limits beyond the in-flight bounds.
//!
//! ```
//! use std::net::{Ipv4Addr, SocketAddr};
//! use std::time::{Duration, Instant};
//! use vnet_dns::{DnsConfig, Server, Transport};
//!
//! let net = vnet_config::Network::libvirt_default();
//! let config = DnsConfig::from_network(&net).expect("the default network has DNS");
//! let mut server = Server::with_seed(config, 42);
//! server.set_lease_name(Ipv4Addr::new(192, 168, 122, 10), "vm1");
//!
//! // A guest asks for vm1's address: id 0x1234, RD, one question: vm1 A IN.
//! let query = [
//!     0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
//!     3, b'v', b'm', b'1', 0, 0, 1, 0, 1,
//! ];
//! let guest: SocketAddr = "192.168.122.10:40000".parse()?;
//! let now = Instant::now();
//! let answer = server.handle_query(now, guest, Transport::Udp, &query).expect("local");
//! assert_eq!(&answer[..4], &[0x12, 0x34, 0x85, 0x80]); // QR AA RD RA, NOERROR
//! assert_eq!(&answer[6..8], &[0, 1]); // one answer
//! assert_eq!(&answer[answer.len() - 4..], &[192, 168, 122, 10]);
//!
//! // Names that are not the network's go to the host's resolver. The first thing sent
//! // to a new upstream is its loop probe.
//! let upstream: SocketAddr = "192.0.2.53:53".parse()?;
//! server.set_system_upstreams(vec![upstream]);
//! let probe = server.poll_upstream().expect("a loop probe");
//! assert_eq!(probe.to, upstream);
//!
//! let query = [
//!     0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
//!     7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
//! ];
//! assert_eq!(server.handle_query(now, guest, Transport::Udp, &query), None);
//! let sent = server.poll_upstream().expect("forwarded");
//! assert_eq!(sent.to, upstream);
//!
//! // The upstream answers (here: NOERROR, no records) with the id it was sent.
//! let mut reply = sent.payload.clone();
//! reply[2] |= 0x80; // QR
//! reply[3] |= 0x80; // RA
//! server.handle_upstream(now + Duration::from_millis(20), upstream, &reply);
//! let answer = server.poll_answer().expect("relayed");
//! assert_eq!(answer.client, guest);
//! assert_eq!(&answer.payload[..2], &[0xab, 0xcd]); // the guest's id again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod cache;
mod config;
mod event;
mod local;
mod server;
mod wire;

#[cfg(test)]
mod tests;

pub use config::{
    DnsConfig, Forwarder, HostRecord, Limits, NamedAddress, SrvRecord, Subnet, TxtRecord,
    DEFAULT_UPSTREAM_PORT, EDNS_UDP_SIZE, MAX_CLIENT_UDP_SIZE,
};
pub use event::{Event, Upstream};
pub use local::{RecordRow, RecordSource};
pub use server::{Answer, DropReason, Server, Stats, Transport, UpstreamQuery, LOOP_CHECK_ZONE};
