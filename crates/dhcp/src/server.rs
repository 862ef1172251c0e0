//! The sans-IO DHCPv4 server: bytes and time in, replies and events out.
//!
//! # No-panic contract
//!
//! [`Server::handle`] takes any bytes. Lengths are checked before anything is read,
//! `chaddr` is read only once `hlen` is known to be 6, and every address computation
//! is checked or saturating; a message that does not make sense is a
//! [`DropReason`], counted in [`Stats`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use dhcproto::v4::{
    DhcpOption, HType, Message, MessageType, Opcode, OptionCode, MAGIC, MIN_PACKET_SIZE,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, Name};

use crate::config::{LeaseDuration, Reservation, ServerConfig};
use crate::event::{ClientKey, Event, Lease};
use crate::seen::{Claim, ClaimEviction, SeenTable, SEEN_PER_PORT};

mod pool;
mod wire;

use wire::parse;

/// How long an offered address is held for the client it was offered to (other
/// clients get it only when nothing else is free).
pub const OFFER_HOLD: Duration = Duration::from_secs(30);

/// How long an address seen in use on the segment ([`Server::note_in_use`]) is kept out
/// of offers to other clients after it was last seen: the switch's default MAC aging time.
pub const SEEN_HOLD: Duration = Duration::from_secs(300);

/// The fixed BOOTP header plus the magic cookie (RFC 2131 §2, RFC 2132 §2).
const HEADER_LEN: usize = 240;
/// `chaddr` in the BOOTP header.
const CHADDR: std::ops::Range<usize> = 28..34;

/// What the driver knows about the packet besides its UDP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// The Ethernet source address.
    pub src_mac: [u8; 6],
    /// The IPv4 source address (`0.0.0.0` from a client without an address).
    pub src_ip: Ipv4Addr,
    /// The IPv4 destination address (broadcast, or ours for a unicast renewal).
    pub dst_ip: Ipv4Addr,
}

/// A message to send from port 67 to the client's port 68.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The UDP payload (a BOOTREPLY, padded to 300 bytes).
    pub payload: Vec<u8>,
    /// Where to send it.
    pub dst: ReplyDest,
}

/// Where a reply goes (RFC 2131 §4.1).
///
/// A closed set, so not `#[non_exhaustive]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyDest {
    /// To 255.255.255.255 and ff:ff:ff:ff:ff:ff: the client asked for it (broadcast
    /// bit), has no address to receive on, or is being refused (DHCPNAK).
    Broadcast,
    /// To this address and MAC: `ciaddr` (renewal, INFORM), else `yiaddr`/`chaddr`.
    Unicast {
        /// The IPv4 destination.
        ip: Ipv4Addr,
        /// The Ethernet destination.
        mac: [u8; 6],
    },
}

/// Why a message was dropped without an answer. Counted in [`Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than the BOOTP header and magic cookie, or an option runs past the end.
    #[error("truncated message")]
    Truncated,
    /// No DHCP magic cookie, or the message does not decode.
    #[error("malformed message")]
    Malformed,
    /// `op` is not BOOTREQUEST.
    #[error("not a BOOTREQUEST")]
    NotRequest,
    /// `htype`/`hlen` are not Ethernet's (1/6).
    #[error("not an Ethernet client")]
    BadHardware,
    /// No option 53: a BOOTP client, which this server does not serve.
    #[error("no DHCP message type")]
    NoMessageType,
    /// A message type a client does not send to a server (OFFER, ACK, ...).
    #[error("unexpected DHCP message type")]
    UnexpectedMessageType,
    /// Forwarded by a relay agent (`giaddr` set): this server serves its own link only.
    #[error("relayed message")]
    Relayed,
    /// A REQUEST or DECLINE naming no address (no option 50 and no `ciaddr`).
    #[error("no requested address")]
    NoRequestedAddress,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [Self; 8] = [
        Self::Truncated,
        Self::Malformed,
        Self::NotRequest,
        Self::BadHardware,
        Self::NoMessageType,
        Self::UnexpectedMessageType,
        Self::Relayed,
        Self::NoRequestedAddress,
    ];

    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::NotRequest => "not-request",
            Self::BadHardware => "bad-hardware",
            Self::NoMessageType => "no-message-type",
            Self::UnexpectedMessageType => "unexpected-message-type",
            Self::Relayed => "relayed",
            Self::NoRequestedAddress => "no-requested-address",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Truncated => 0,
            Self::Malformed => 1,
            Self::NotRequest => 2,
            Self::BadHardware => 3,
            Self::NoMessageType => 4,
            Self::UnexpectedMessageType => 5,
            Self::Relayed => 6,
            Self::NoRequestedAddress => 7,
        }
    }
}

/// Counts of DHCP messages by type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageCounts {
    /// DHCPDISCOVER.
    pub discover: u64,
    /// DHCPOFFER.
    pub offer: u64,
    /// DHCPREQUEST.
    pub request: u64,
    /// DHCPDECLINE.
    pub decline: u64,
    /// DHCPACK.
    pub ack: u64,
    /// DHCPNAK.
    pub nak: u64,
    /// DHCPRELEASE.
    pub release: u64,
    /// DHCPINFORM.
    pub inform: u64,
}

impl MessageCounts {
    fn count(&mut self, t: MessageType) {
        let c = match t {
            MessageType::Discover => &mut self.discover,
            MessageType::Offer => &mut self.offer,
            MessageType::Request => &mut self.request,
            MessageType::Decline => &mut self.decline,
            MessageType::Ack => &mut self.ack,
            MessageType::Nak => &mut self.nak,
            MessageType::Release => &mut self.release,
            MessageType::Inform => &mut self.inform,
            _ => return,
        };
        *c = c.saturating_add(1);
    }
}

/// The server's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages received (and parsed), by type.
    pub received: MessageCounts,
    /// Replies sent, by type.
    pub sent: MessageCounts,
    /// Messages dropped, by reason: read with [`Stats::dropped`].
    dropped: [u64; DropReason::ALL.len()],
    /// Messages for another server (a REQUEST or RELEASE naming another server id).
    pub other_server: u64,
    /// DISCOVERs left unanswered because no address was free.
    pub pool_exhausted: u64,
    /// Replies that could not be encoded (a bug: nothing was sent).
    pub encode_errors: u64,
    /// DISCOVERs and REQUESTs ignored because their port already had as many clients
    /// as [`Server::set_port_cap`] allows.
    pub port_capped: u64,
    /// Seen addresses ([`Server::note_in_use`]) forgotten early, by reason: read with
    /// [`Stats::claims_evicted`].
    claims_evicted: [u64; ClaimEviction::ALL.len()],
}

impl Stats {
    /// Messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// Messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }

    /// Seen addresses forgotten before [`SEEN_HOLD`] ran out because their MAC or port
    /// claimed more than its bound ([`Server::note_in_use`]).
    pub fn claims_evicted(&self, reason: ClaimEviction) -> u64 {
        self.claims_evicted
            .get(reason.index())
            .copied()
            .unwrap_or(0)
    }

    /// Seen addresses forgotten early, for any reason.
    pub fn claims_evicted_total(&self) -> u64 {
        self.claims_evicted.iter().sum()
    }

    /// Every counter by name: `received_<type>` and `sent_<type>` per message type,
    /// `dropped_<reason>` per [`DropReason`], `claims_evicted_<reason>` per
    /// [`ClaimEviction`], and the rest by field name. What listings and metrics show, so
    /// none is left out.
    pub fn counters(&self) -> impl Iterator<Item = (std::borrow::Cow<'static, str>, u64)> + '_ {
        use std::borrow::Cow;
        let by_type = |dir: &'static str, c: &MessageCounts| {
            [
                ("discover", c.discover),
                ("offer", c.offer),
                ("request", c.request),
                ("decline", c.decline),
                ("ack", c.ack),
                ("nak", c.nak),
                ("release", c.release),
                ("inform", c.inform),
            ]
            .map(|(t, v)| (Cow::Owned(format!("{dir}_{t}")), v))
        };
        by_type("received", &self.received)
            .into_iter()
            .chain(by_type("sent", &self.sent))
            .chain(DropReason::ALL.into_iter().map(|r| {
                (
                    Cow::Owned(format!("dropped_{}", r.as_str())),
                    self.dropped(r),
                )
            }))
            .chain(ClaimEviction::ALL.into_iter().map(|r| {
                (
                    Cow::Owned(format!("claims_evicted_{}", r.as_str())),
                    self.claims_evicted(r),
                )
            }))
            .chain(
                [
                    ("pool_exhausted", self.pool_exhausted),
                    ("port_capped", self.port_capped),
                    ("other_server", self.other_server),
                    ("encode_errors", self.encode_errors),
                ]
                .map(|(k, v)| (Cow::Borrowed(k), v)),
            )
    }

    fn evict(&mut self, reason: ClaimEviction) {
        if let Some(c) = self.claims_evicted.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
}

/// An address offered to a client, held for it until `until`.
#[derive(Clone, Debug)]
struct PendingOffer {
    key: ClientKey,
    until: SystemTime,
}

/// The parts of a request the server acts on.
#[derive(Debug)]
struct Request {
    msg: Message,
    kind: MessageType,
    mac: [u8; 6],
    client_id: Option<Vec<u8>>,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    hostname: Option<String>,
}

impl Request {
    fn key(&self) -> ClientKey {
        ClientKey::new(self.mac, self.client_id.as_deref())
    }
}

/// What goes into a reply besides the header fields copied from the request.
#[derive(Debug, Default)]
struct ReplyParts<'a> {
    yiaddr: Option<Ipv4Addr>,
    lease: Option<LeaseDuration>,
    hostname: Option<&'a str>,
    nak_reason: Option<&'static str>,
}

/// A DHCPv4 server for one network. Owns no socket and reads no clock.
///
/// Bounds: the lease table holds at most [`ServerConfig::lease_limit`] leases (the
/// pool plus the reserved addresses outside it), one per client; offers, quarantined
/// addresses and the "last address of this client" memory are keyed by address and
/// only ever hold addresses the server could lease. Addresses seen in use
/// ([`Server::note_in_use`]) are pool addresses too, and at most [`SEEN_PER_MAC`] per
/// MAC and [`SEEN_PER_PORT`] (or the port cap) per port.
///
/// [`SEEN_PER_MAC`]: crate::SEEN_PER_MAC
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    /// The reservations naming each address (indices into `config.hosts`).
    reserved: HashMap<Ipv4Addr, Vec<usize>>,
    leases: BTreeMap<Ipv4Addr, Lease>,
    by_key: HashMap<ClientKey, Ipv4Addr>,
    expiries: BTreeSet<(SystemTime, Ipv4Addr)>,
    quarantine: BTreeMap<Ipv4Addr, SystemTime>,
    quarantine_ends: BTreeSet<(SystemTime, Ipv4Addr)>,
    offers: BTreeMap<Ipv4Addr, PendingOffer>,
    previous: BTreeMap<Ipv4Addr, ClientKey>,
    previous_by_key: HashMap<ClientKey, Ipv4Addr>,
    /// Pool addresses seen in use on the segment by a station without a lease for them:
    /// the station's MAC and port, and until when the address is kept out of offers.
    seen: SeenTable,
    events: VecDeque<Event>,
    stats: Stats,
    /// At most this many clients (MACs) per port, when set.
    port_cap: Option<usize>,
    /// The port of the message being handled ([`Server::handle_from`]).
    current_port: Option<u32>,
    /// Clients seen per port: MAC and until when it counts without a lease.
    by_port: HashMap<u32, Vec<([u8; 6], SystemTime)>>,
}

impl Server {
    /// A server for `config`. `leases` are loaded from the database; expired ones are
    /// dropped at `now` (each reported as [`Event::LeaseExpired`], and remembered so
    /// their client gets the same address back while it is free). Of two leases for
    /// the same address or client, the first is kept.
    pub fn new(config: ServerConfig, leases: Vec<Lease>, now: SystemTime) -> Self {
        let mut s = Self {
            reserved: index_reservations(&config),
            config,
            leases: BTreeMap::new(),
            by_key: HashMap::new(),
            expiries: BTreeSet::new(),
            quarantine: BTreeMap::new(),
            quarantine_ends: BTreeSet::new(),
            offers: BTreeMap::new(),
            port_cap: None,
            current_port: None,
            by_port: HashMap::new(),
            previous: BTreeMap::new(),
            previous_by_key: HashMap::new(),
            seen: SeenTable::default(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        for lease in leases {
            if !lease.is_active(now) {
                s.remember(lease.ip, lease.key());
                s.events.push_back(Event::LeaseExpired(lease));
            } else if !s.leases.contains_key(&lease.ip) && !s.by_key.contains_key(&lease.key()) {
                s.insert_lease(lease);
            }
        }
        s
    }

    /// Replaces the configuration (live `net-update`). Reservations take effect at
    /// once: an address now reserved for another client is refused at its holder's
    /// next renewal, and pending offers are forgotten.
    pub fn set_config(&mut self, config: ServerConfig) {
        self.reserved = index_reservations(&config);
        self.config = config;
        self.offers.clear();
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Handles one DHCP message (the UDP payload sent to port 67).
    ///
    /// `Ok(None)`: nothing to send (RELEASE, DECLINE, pool exhausted, a REQUEST for
    /// another server). `Err`: the message is malformed, truncated or not a request;
    /// it is counted in [`Stats`]. Leases due to expire at `now` expire first.
    pub fn handle(
        &mut self,
        now: SystemTime,
        meta: &PacketMeta,
        payload: &[u8],
    ) -> Result<Option<Reply>, DropReason> {
        self.handle_timeout(now);
        let req = match parse(payload) {
            Ok(r) => r,
            Err(reason) => {
                self.stats.drop(reason);
                return Err(reason);
            }
        };
        self.stats.received.count(req.kind);
        let capped_port = match (self.current_port, self.port_cap, req.kind) {
            (Some(p), Some(cap), MessageType::Discover | MessageType::Request) => {
                if !self.port_admits(now, p, cap, req.mac) {
                    self.stats.port_capped += 1;
                    return Ok(None);
                }
                Some(p)
            }
            _ => None,
        };
        let reply = match req.kind {
            MessageType::Discover => self.discover(now, &req),
            MessageType::Request => self.request(now, &req)?,
            MessageType::Decline => self.decline(now, &req)?,
            MessageType::Release => self.release(&req),
            MessageType::Inform => self.inform(meta, &req),
            _ => None, // parse() lets only the five above through.
        };
        if let (Some(p), Some(_)) = (capped_port, &reply) {
            let until = now.checked_add(OFFER_HOLD).unwrap_or(now);
            let clients = self.by_port.entry(p).or_default();
            match clients.iter_mut().find(|(m, _)| *m == req.mac) {
                Some(c) => c.1 = until,
                None => clients.push((req.mac, until)),
            }
        }
        Ok(reply)
    }

    /// Bounds the clients (MACs) one port may have leases or offers for: past `cap`,
    /// DISCOVERs and REQUESTs of new clients from that port are ignored and counted
    /// (`port_capped`), so a guest sending with random client MACs cannot take the
    /// pool. `None`: no bound (the default). The cap also bounds the addresses a port
    /// may keep out of offers by being seen using them ([`Server::note_in_use`]; without
    /// a cap, [`SEEN_PER_PORT`]): a port holds at most `cap` leases or offers plus `cap`
    /// seen addresses.
    pub fn set_port_cap(&mut self, cap: Option<usize>) {
        self.port_cap = cap;
    }

    /// [`handle`](Self::handle) for a message that arrived on switch port `port` (for
    /// [`set_port_cap`](Self::set_port_cap)).
    pub fn handle_from(
        &mut self,
        now: SystemTime,
        meta: &PacketMeta,
        port: Option<u32>,
        payload: &[u8],
    ) -> Result<Option<Reply>, DropReason> {
        self.current_port = port;
        let r = self.handle(now, meta, payload);
        self.current_port = None;
        r
    }

    /// Whether port `p` may serve client `mac`: it already counts, or the port has
    /// fewer than `cap` clients with a lease or a recent offer.
    fn port_admits(&mut self, now: SystemTime, p: u32, cap: usize, mac: [u8; 6]) -> bool {
        let leases = &self.leases;
        let clients = self.by_port.entry(p).or_default();
        clients.retain(|(m, until)| *until > now || leases.values().any(|l| l.mac == *m));
        clients.iter().any(|(m, _)| *m == mac) || clients.len() < cap
    }

    /// The next event for logging and persistence, if any. Drain after each
    /// [`handle`](Self::handle)/[`handle_timeout`](Self::handle_timeout); persist the
    /// `Lease*` events before sending the reply of that call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next: the next lease
    /// expiry or quarantine end.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let lease = self.expiries.first().map(|(t, _)| *t);
        let quarantine = self.quarantine_ends.first().map(|(t, _)| *t);
        match (lease, quarantine) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires the leases and quarantines due at `now`.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        while let Some(&(t, ip)) = self.expiries.first() {
            if t > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(lease) = self.remove_lease(ip) {
                self.remember(ip, lease.key());
                self.events.push_back(Event::LeaseExpired(lease));
            }
        }
        while let Some(&(t, ip)) = self.quarantine_ends.first() {
            if t > now {
                break;
            }
            self.quarantine_ends.pop_first();
            self.quarantine.remove(&ip);
        }
        self.offers.retain(|_, o| o.until > now);
        self.seen.expire(now);
    }

    /// Tells the server that the station `mac`, behind switch port `port` (`None`: the
    /// driver does not know), uses `ip`: the driver saw it as the sender of an ARP
    /// packet on the segment. Where dnsmasq pings an address for about 3 s before its
    /// first offer, vnet sees the segment: an address of the ranges that a station
    /// without a lease for it uses is not offered to anyone else for [`SEEN_HOLD`]
    /// after it was last seen. Addresses outside the ranges and the address a station
    /// holds a lease for are ignored.
    ///
    /// ARP names whatever sender the guest writes, so what one guest can hold out of
    /// the pool this way is bounded: each MAC keeps its newest [`SEEN_PER_MAC`]
    /// addresses, each port (all of its MACs; `None` is one port) its newest
    /// [`SEEN_PER_PORT`], or the cap of [`set_port_cap`](Self::set_port_cap).
    /// Older claims are forgotten, and counted ([`Stats::claims_evicted`]).
    ///
    /// [`SEEN_PER_MAC`]: crate::SEEN_PER_MAC
    pub fn note_in_use(&mut self, now: SystemTime, port: Option<u32>, ip: Ipv4Addr, mac: [u8; 6]) {
        if !self.config.in_ranges(ip) || self.leases.get(&ip).is_some_and(|l| l.mac == mac) {
            return;
        }
        let until = now.checked_add(SEEN_HOLD).unwrap_or(now);
        let bound = self.port_cap.unwrap_or(SEEN_PER_PORT);
        for (_, reason) in self.seen.note(ip, Claim { mac, port, until }, bound) {
            self.stats.evict(reason);
        }
    }

    /// The addresses seen in use, for the tests' checks.
    #[cfg(test)]
    pub(crate) fn seen(&self) -> &SeenTable {
        &self.seen
    }

    /// The active leases, by address.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The active lease of `ip`, if any.
    pub fn lease(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&ip)
    }

    /// Whether `ip` is leased, reserved or quarantined (the gateway uses it to avoid
    /// conflicts).
    pub fn is_assigned(&self, ip: Ipv4Addr) -> bool {
        self.leases.contains_key(&ip)
            || self.quarantine.contains_key(&ip)
            || self.reserved.contains_key(&ip)
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // --- Message handlers -------------------------------------------------------------

    /// RFC 2131 §4.3.1: DISCOVER → OFFER, or nothing when the pool is exhausted.
    fn discover(&mut self, now: SystemTime, req: &Request) -> Option<Reply> {
        self.events.push_back(Event::Discover {
            mac: req.mac,
            hostname: req.hostname.clone(),
        });
        let key = req.key();
        let Some(ip) = self.pick_address(now, req, &key) else {
            self.stats.pool_exhausted = self.stats.pool_exhausted.saturating_add(1);
            self.events.push_back(Event::PoolExhausted { mac: req.mac });
            return None;
        };
        self.offers.insert(
            ip,
            PendingOffer {
                key,
                until: now.checked_add(OFFER_HOLD).unwrap_or(now),
            },
        );
        let reservation = self.reservation_for(req.mac, req.client_id.as_deref());
        let lease = self.lease_time(reservation, ip);
        let hostname = reservation
            .and_then(|r| r.name.clone())
            .or_else(|| req.hostname.clone());
        let reply = self.reply(
            req,
            MessageType::Offer,
            &ReplyParts {
                yiaddr: Some(ip),
                lease: Some(lease),
                hostname: hostname.as_deref(),
                nak_reason: None,
            },
        );
        if reply.is_some() {
            self.events.push_back(Event::Offer { ip, mac: req.mac });
        }
        reply
    }

    /// RFC 2131 §4.3.2: REQUEST in SELECTING, INIT-REBOOT, RENEWING or REBINDING.
    fn request(&mut self, now: SystemTime, req: &Request) -> Result<Option<Reply>, DropReason> {
        let key = req.key();
        let ciaddr = req.msg.ciaddr();
        let ip = if let Some(sid) = req.server_id {
            if sid != self.config.server_ip {
                // SELECTING another server's offer: forget ours quietly.
                self.offers.retain(|_, o| o.key != key);
                self.stats.other_server = self.stats.other_server.saturating_add(1);
                return Ok(None);
            }
            req.requested.or_else(|| nonzero(ciaddr))
        } else if let Some(c) = nonzero(ciaddr) {
            Some(c) // RENEWING/REBINDING: the address is in ciaddr.
        } else {
            req.requested // INIT-REBOOT.
        };
        let Some(ip) = ip else {
            self.stats.drop(DropReason::NoRequestedAddress);
            return Err(DropReason::NoRequestedAddress);
        };
        self.events.push_back(Event::Request { ip, mac: req.mac });

        if let Err(reason) = self.check_request(now, req, &key, ip) {
            // The client loses whatever lease it had on that address.
            if self.leases.get(&ip).is_some_and(|l| l.key() == key) {
                if let Some(old) = self.remove_lease(ip) {
                    self.events.push_back(Event::LeaseReleased(old));
                }
            }
            return Ok(self.nak(req, ip, reason));
        }

        // Grant (or renew). A lease the client holds elsewhere is replaced.
        if let Some(&old_ip) = self.by_key.get(&key) {
            if old_ip != ip {
                if let Some(old) = self.remove_lease(old_ip) {
                    self.events.push_back(Event::LeaseReleased(old));
                }
            }
        }
        let reservation = self.reservation_for(req.mac, req.client_id.as_deref());
        let duration = self.lease_time(reservation, ip);
        let hostname = reservation
            .and_then(|r| r.name.clone())
            .or_else(|| req.hostname.clone())
            .or_else(|| self.leases.get(&ip).and_then(|l| l.hostname.clone()));
        let lease = Lease {
            mac: req.mac,
            client_id: req.client_id.clone(),
            ip,
            hostname,
            expires: match duration {
                LeaseDuration::Finite(d) => now.checked_add(d),
                LeaseDuration::Infinite => None,
            },
        };
        let reply = self.reply(
            req,
            MessageType::Ack,
            &ReplyParts {
                yiaddr: Some(ip),
                lease: Some(duration),
                hostname: lease.hostname.as_deref(),
                nak_reason: None,
            },
        );
        if reply.is_none() {
            return Ok(None);
        }
        self.offers.remove(&ip);
        self.forget(ip, &key);
        self.insert_lease(lease.clone());
        self.events.push_back(Event::Ack {
            lease: lease.clone(),
        });
        self.events.push_back(Event::LeaseGranted(lease));
        Ok(reply)
    }

    /// Whether `key` may have `ip` now; the NAK reason (dnsmasq's words) if not.
    fn check_request(
        &self,
        now: SystemTime,
        req: &Request,
        key: &ClientKey,
        ip: Ipv4Addr,
    ) -> Result<(), &'static str> {
        self.available_for(now, ip, req, key, true)?;
        let reservation = self.reservation_for(req.mac, req.client_id.as_deref());
        if let Some(fixed) = reservation.and_then(|r| r.ip) {
            // dnsmasq: a client with a (newly) reserved address is moved to it as soon
            // as that address is free.
            if fixed != ip && self.available_for(now, fixed, req, key, true).is_ok() {
                return Err("static lease available");
            }
        }
        if !self.by_key.contains_key(key) && self.leases.len() >= self.config.lease_limit() {
            return Err("no leases left");
        }
        Ok(())
    }

    /// RFC 2131 §4.3.3: the client found the address in use: quarantine it.
    fn decline(&mut self, now: SystemTime, req: &Request) -> Result<Option<Reply>, DropReason> {
        if req.server_id.is_some_and(|s| s != self.config.server_ip) {
            self.stats.other_server = self.stats.other_server.saturating_add(1);
            return Ok(None);
        }
        let Some(ip) = req.requested.or_else(|| nonzero(req.msg.ciaddr())) else {
            self.stats.drop(DropReason::NoRequestedAddress);
            return Err(DropReason::NoRequestedAddress);
        };
        self.events.push_back(Event::Decline { ip, mac: req.mac });
        let key = req.key();
        let leased = self.leases.get(&ip).is_some_and(|l| l.key() == key);
        let offered = self.offers.get(&ip).is_some_and(|o| o.key == key);
        if !leased && !offered {
            return Ok(None); // Not this client's address: ignore (no spoofed quarantines).
        }
        if leased {
            if let Some(old) = self.remove_lease(ip) {
                self.events.push_back(Event::LeaseReleased(old));
            }
        }
        self.offers.remove(&ip);
        self.forget(ip, &key);
        let until = now
            .checked_add(self.config.decline_quarantine)
            .unwrap_or(now);
        if let Some(old) = self.quarantine.insert(ip, until) {
            self.quarantine_ends.remove(&(old, ip));
        }
        self.quarantine_ends.insert((until, ip));
        Ok(None)
    }

    /// RFC 2131 §4.3.4: the client gives its address back.
    fn release(&mut self, req: &Request) -> Option<Reply> {
        if req.server_id.is_some_and(|s| s != self.config.server_ip) {
            self.stats.other_server = self.stats.other_server.saturating_add(1);
            return None;
        }
        let ip = req.msg.ciaddr();
        self.events.push_back(Event::Release { ip, mac: req.mac });
        let key = req.key();
        if self.leases.get(&ip).is_some_and(|l| l.key() == key) {
            if let Some(old) = self.remove_lease(ip) {
                self.remember(ip, key);
                self.events.push_back(Event::LeaseReleased(old));
            }
        }
        None
    }

    /// RFC 2131 §4.3.5: configuration only: an ACK without lease or `yiaddr`.
    fn inform(&mut self, meta: &PacketMeta, req: &Request) -> Option<Reply> {
        let ip = nonzero(req.msg.ciaddr()).unwrap_or(meta.src_ip);
        self.events.push_back(Event::Inform { ip, mac: req.mac });
        let mut reply = self.reply(req, MessageType::Ack, &ReplyParts::default())?;
        if req.msg.ciaddr().is_unspecified() && !meta.src_ip.is_unspecified() {
            reply.dst = ReplyDest::Unicast {
                ip: meta.src_ip,
                mac: req.mac,
            };
        }
        Some(reply)
    }

    /// A NAK for `ip` with `reason`.
    fn nak(&mut self, req: &Request, ip: Ipv4Addr, reason: &'static str) -> Option<Reply> {
        let reply = self.reply(
            req,
            MessageType::Nak,
            &ReplyParts {
                nak_reason: Some(reason),
                ..ReplyParts::default()
            },
        );
        if reply.is_some() {
            self.events.push_back(Event::Nak {
                ip,
                mac: req.mac,
                reason,
            });
        }
        reply
    }

    // --- Replies ----------------------------------------------------------------------

    /// Builds a reply of type `kind` to `req` (RFC 2131 §4.3.1 table 3).
    fn reply(&mut self, req: &Request, kind: MessageType, parts: &ReplyParts<'_>) -> Option<Reply> {
        let c = &self.config;
        let nak = kind == MessageType::Nak;
        let ciaddr = if nak || kind == MessageType::Offer {
            Ipv4Addr::UNSPECIFIED
        } else {
            req.msg.ciaddr()
        };
        let yiaddr = parts.yiaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let siaddr = match (&c.bootp, nak) {
            (Some(b), false) => b.server.unwrap_or(c.server_ip),
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let mut msg = Message::new_with_id(
            req.msg.xid(),
            ciaddr,
            yiaddr,
            siaddr,
            req.msg.giaddr(),
            &req.mac,
        );
        msg.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_flags(req.msg.flags());
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(c.server_ip));
        if let Some(id) = &req.client_id {
            // RFC 6842: echo the client identifier.
            opts.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if let Some(reason) = parts.nak_reason {
            opts.insert(DhcpOption::Message(reason.to_owned()));
        } else {
            opts.insert(DhcpOption::SubnetMask(c.netmask()));
            opts.insert(DhcpOption::BroadcastAddr(c.broadcast()));
            if let Some(r) = c.router {
                opts.insert(DhcpOption::Router(vec![r]));
            }
            if !c.dns_servers.is_empty() {
                opts.insert(DhcpOption::DomainNameServer(c.dns_servers.clone()));
            }
            if let Some(d) = &c.domain {
                opts.insert(DhcpOption::DomainName(d.clone()));
                // RFC 3397: the search list, as DNS wire-format names.
                if let Ok(name) = Name::from_ascii(d) {
                    opts.insert(DhcpOption::DomainSearch(vec![name]));
                }
            }
            if let Some(m) = c.mtu {
                opts.insert(DhcpOption::InterfaceMtu(m));
            }
            if let Some(h) = parts.hostname {
                opts.insert(DhcpOption::Hostname(h.to_owned()));
            }
            if let Some(l) = parts.lease {
                let secs = l.option_secs();
                opts.insert(DhcpOption::AddressLeaseTime(secs));
                if l != LeaseDuration::Infinite {
                    // RFC 2131 §4.4.5: T1 = 0.5, T2 = 0.875 of the lease.
                    let t1 = u64::from(secs) / 2;
                    let t2 = u64::from(secs) * 7 / 8;
                    opts.insert(DhcpOption::Renewal(u32::try_from(t1).unwrap_or(u32::MAX)));
                    opts.insert(DhcpOption::Rebinding(u32::try_from(t2).unwrap_or(u32::MAX)));
                }
            }
            if let Some(b) = &c.bootp {
                let server = b.server.unwrap_or(c.server_ip);
                opts.insert(DhcpOption::TFTPServerName(server.to_string().into_bytes()));
                opts.insert(DhcpOption::BootfileName(b.file.clone().into_bytes()));
                msg.set_fname_str(&b.file);
            }
        }
        let mut payload = Vec::with_capacity(MIN_PACKET_SIZE);
        if msg.encode(&mut Encoder::new(&mut payload)).is_err() {
            self.stats.encode_errors = self.stats.encode_errors.saturating_add(1);
            return None;
        }
        if payload.len() < MIN_PACKET_SIZE {
            // BOOTP relays and old clients expect at least 300 bytes (RFC 1542 §2.1).
            payload.resize(MIN_PACKET_SIZE, 0);
        }
        let dst = destination(req, yiaddr, nak);
        self.stats.sent.count(kind);
        Some(Reply { payload, dst })
    }
}

/// The reservations by address.
fn index_reservations(config: &ServerConfig) -> HashMap<Ipv4Addr, Vec<usize>> {
    let mut index: HashMap<Ipv4Addr, Vec<usize>> = HashMap::new();
    for (i, h) in config.hosts.iter().enumerate() {
        if let Some(ip) = h.ip {
            index.entry(ip).or_default().push(i);
        }
    }
    index
}

/// RFC 2131 §4.1: where a reply to `req` goes (relayed messages are not served).
fn destination(req: &Request, yiaddr: Ipv4Addr, nak: bool) -> ReplyDest {
    if nak {
        return ReplyDest::Broadcast;
    }
    if let Some(ciaddr) = nonzero(req.msg.ciaddr()) {
        return ReplyDest::Unicast {
            ip: ciaddr,
            mac: req.mac,
        };
    }
    if req.msg.flags().broadcast() || yiaddr.is_unspecified() {
        return ReplyDest::Broadcast;
    }
    ReplyDest::Unicast {
        ip: yiaddr,
        mac: req.mac,
    }
}

fn nonzero(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    (!ip.is_unspecified()).then_some(ip)
}
