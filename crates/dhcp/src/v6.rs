//! The sans-IO DHCPv6 server (RFC 8415): addresses (IA_NA) from the `<range>`s of an
//! `<ip family='ipv6'><dhcp>`, `<host id='DUID' name ip>` reservations with their lease
//! times, and the DNS servers (option 23) and domain list (option 24); what dnsmasq
//! serves for a libvirt network with an IPv6 range.
//!
//! The UDP payload and the time come in ([`Server6::handle`]), the reply payload goes
//! out, and lease changes come out of [`Server6::poll_event`] for the driver to persist
//! (the [`LeaseDb`](crate::LeaseDb) takes them beside the IPv4 leases) before the reply
//! is sent. A restarted server takes its leases back ([`Server6::with_leases`]).
//!
//! # No-panic contract
//!
//! [`Server6::handle`] takes any bytes. Before `dhcproto` decodes a message, its option
//! lengths are checked ([`decodable`]): `dhcproto` 0.15 subtracts fixed sizes from
//! option lengths without checking (a status code, vendor or authentication option too
//! short for its own header overflows), and reads fixed-size options (preference,
//! elapsed time, server unicast, ...) whatever their length field says, running into the
//! next option; the fuzz target found both. Every count
//! saturates, and a message that does not make sense is counted in [`Stats6`] and not
//! answered.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::SystemTime;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, StatusCode,
    UnknownOption, IANA,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, Name};
use vnet_config::{IpFamily, Network};

use crate::config::LeaseDuration;

/// Bound on the addresses leased at once (each range is bounded by its size too): as many
/// as the largest IPv4 pool (a /16).
pub const MAX_LEASES6: usize = 65536;

/// An end for leases without one (infinite), when a port counts its clients.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// Bound on the events waiting in [`Server6::poll_event`] (the oldest are dropped).
const MAX_EVENTS6: usize = 1024;

/// How long a declined address is kept from clients (someone else uses it): the IPv4
/// server's default quarantine.
pub const DECLINE_QUARANTINE6: std::time::Duration = crate::config::DEFAULT_DECLINE_QUARANTINE;

/// Bound on the addresses in quarantine at once (the oldest leave first).
const MAX_DECLINED6: usize = 1024;

/// A change of the DHCPv6 leases, for the log and the lease database.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event6 {
    /// A lease was granted or renewed (REPLY to REQUEST, RENEW, REBIND, or a SOLICIT
    /// with rapid commit).
    Granted(Lease6),
    /// The client released or declined it.
    Released(Lease6),
    /// It ended.
    Expired(Lease6),
}

impl Event6 {
    /// A dnsmasq-style log line for network `network`: `DHCPREPLY(net) addr duid name`.
    pub fn log_line(&self, network: &str) -> String {
        let (what, l) = match self {
            Self::Granted(l) => ("DHCPREPLY", l),
            Self::Released(l) => ("DHCPRELEASE", l),
            Self::Expired(l) => ("DHCPEXPIRED", l),
        };
        let duid: Vec<String> = l.duid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{what}({network}) {} {}{}",
            l.ip,
            duid.join(":"),
            l.hostname
                .as_deref()
                .map(|h| format!(" {h}"))
                .unwrap_or_default()
        )
    }
}

/// A `<host>` of an IPv6 `<dhcp>`: a reserved address, for a DUID or a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host6 {
    /// The client's DUID (`id`), as bytes.
    pub duid: Option<Vec<u8>>,
    /// `name`: the lease's name (served in DNS, told the client in a Client FQDN
    /// option); without a `duid`, the host name of the client it is for.
    pub name: Option<String>,
    /// The reserved address.
    pub ip: Ipv6Addr,
    /// Its lease time.
    pub lease: LeaseDuration,
}

/// What the DHCPv6 server hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config6 {
    /// The server's DUID (DUID-LL of the gateway's MAC, RFC 8415 §11.4).
    pub server_duid: Vec<u8>,
    /// Address ranges and their lease times, in order.
    pub ranges: Vec<(Ipv6Addr, Ipv6Addr, LeaseDuration)>,
    /// Reservations.
    pub hosts: Vec<Host6>,
    /// DNS servers (option 23).
    pub dns: Vec<Ipv6Addr>,
    /// Domain search list (option 24): the network's `<domain>`.
    pub domain: Option<String>,
}

impl Host6 {
    /// Whether this is a reservation by name only (no `id`) for host name `name` (its
    /// first label, case-insensitive).
    fn is_named(&self, name: Option<&str>) -> bool {
        let first = |n: &str| n.split('.').next().unwrap_or_default().to_ascii_lowercase();
        match (&self.duid, &self.name, name) {
            (None, Some(h), Some(n)) => !n.is_empty() && first(h) == first(n),
            _ => false,
        }
    }
}

/// The bytes of a libvirt DUID (`0:4:7e:7d:…`, hex bytes separated by colons).
pub fn parse_duid(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|b| {
            u8::from_str_radix(b, 16)
                .ok()
                .filter(|_| (1..=2).contains(&b.len()))
        })
        .collect()
}

impl Config6 {
    /// The DHCPv6 side of `net`: its IPv6 `<ip>` with a `<dhcp>`, the DNS server the
    /// gateway is at (`dns`), the server DUID from the gateway's MAC. `None` without one.
    pub fn from_network(net: &Network, mac: [u8; 6], dns: Option<Ipv6Addr>) -> Option<Self> {
        let dhcp = net
            .ips()
            .iter()
            .find_map(|ip| match (ip.family(), &ip.dhcp) {
                (IpFamily::V6, Some(d)) => Some(d),
                _ => None,
            })?;
        let ranges: Vec<_> = dhcp
            .ranges
            .iter()
            .filter_map(|r| match (r.start, r.end) {
                (IpAddr::V6(s), IpAddr::V6(e)) => Some((s, e, r.lease_time().into())),
                _ => None,
            })
            .collect();
        let hosts = dhcp
            .hosts
            .iter()
            .filter_map(|h| match h.ip {
                IpAddr::V6(ip) => Some(Host6 {
                    duid: h.id.as_deref().and_then(parse_duid),
                    name: h.name.clone(),
                    ip,
                    lease: h.lease_time().into(),
                }),
                IpAddr::V4(_) => None,
            })
            .collect();
        let mut server_duid = vec![0, 3, 0, 1];
        server_duid.extend_from_slice(&mac);
        Some(Self {
            server_duid,
            ranges,
            hosts,
            dns: dns.into_iter().collect(),
            domain: net.domain().map(|d| d.name.clone()),
        })
    }

    /// Whether the server has addresses to hand out (routers then advertise "managed").
    pub fn stateful(&self) -> bool {
        !self.ranges.is_empty() || !self.hosts.is_empty()
    }
}

/// One address leased to one client's IA_NA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease6 {
    /// The address.
    pub ip: Ipv6Addr,
    /// The client's DUID.
    pub duid: Vec<u8>,
    /// The IA's identifier.
    pub iaid: u32,
    /// Its name: the reservation's, else the host name the client sent (Client FQDN).
    pub hostname: Option<String>,
    /// When it ends (`None`: never).
    pub expires: Option<SystemTime>,
}

/// Counters of the DHCPv6 server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats6 {
    /// Messages taken (any type).
    pub received: u64,
    /// Replies sent (ADVERTISE, REPLY).
    pub sent: u64,
    /// Addresses granted or extended.
    pub granted: u64,
    /// Addresses released or declined.
    pub released: u64,
    /// IAs answered with NoAddrsAvail.
    pub no_addrs: u64,
    /// Messages of new clients not answered: their port holds as many clients as
    /// [`Server6::set_port_cap`] allows.
    pub port_capped: u64,
    /// Messages dropped: undecodable, a server's or relay's type, no client id, a server
    /// id that is not ours (or one where there must be none).
    pub dropped: u64,
}

impl Stats6 {
    /// Every counter by name.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("v6_received", self.received),
            ("v6_sent", self.sent),
            ("v6_granted", self.granted),
            ("v6_released", self.released),
            ("v6_no_addrs", self.no_addrs),
            ("v6_port_capped", self.port_capped),
            ("v6_dropped", self.dropped),
        ]
        .into_iter()
    }
}

/// The DHCPv6 server. See the module doc.
#[derive(Debug)]
pub struct Server6 {
    cfg: Config6,
    leases: BTreeMap<Ipv6Addr, Lease6>,
    by_client: HashMap<(Vec<u8>, u32), Ipv6Addr>,
    /// The finite leases by their end, for expiry without a walk over every lease.
    ends: BTreeSet<(SystemTime, Ipv6Addr)>,
    /// Declined addresses and when their quarantine ends.
    declined: BTreeMap<Ipv6Addr, SystemTime>,
    /// Where the search for a free address resumes in each range (after the last one
    /// handed out), so handing out addresses does not walk the range from its start.
    cursors: Vec<u128>,
    events: VecDeque<Event6>,
    stats: Stats6,
    /// At most this many clients (DUIDs) per switch port ([`Server6::set_port_cap`]).
    port_cap: Option<usize>,
    /// The clients of each port and until when they count (their lease's end, or an
    /// advertisement's hold): at most `port_cap` each.
    by_port: HashMap<u32, Vec<(Vec<u8>, SystemTime)>>,
}

impl Server6 {
    /// A server with no leases.
    pub fn new(cfg: Config6) -> Self {
        Self::with_leases(cfg, Vec::new())
    }

    /// A server that takes back `leases` (from the lease database): those whose address
    /// is still in a range or reserved for the client, at most [`MAX_LEASES6`].
    pub fn with_leases(cfg: Config6, leases: Vec<Lease6>) -> Self {
        let cursors = cfg
            .ranges
            .iter()
            .map(|(start, _, _)| u128::from(*start))
            .collect();
        let mut s = Self {
            cfg,
            leases: BTreeMap::new(),
            by_client: HashMap::new(),
            ends: BTreeSet::new(),
            declined: BTreeMap::new(),
            cursors,
            events: VecDeque::new(),
            stats: Stats6::default(),
            port_cap: None,
            by_port: HashMap::new(),
        };
        for l in leases {
            let key = (l.duid.clone(), l.iaid);
            if s.available(l.ip, &key, l.hostname.as_deref()) && !s.by_client.contains_key(&key) {
                s.insert_lease(l);
            }
        }
        s
    }

    /// The next lease change, oldest first.
    pub fn poll_event(&mut self) -> Option<Event6> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: Event6) {
        if self.events.len() >= MAX_EVENTS6 {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// When the next lease ends, if one does.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.ends.first().map(|(t, _)| *t)
    }

    /// Records `l` in the tables, replacing the address's lease and the client's other
    /// address in that IA.
    fn insert_lease(&mut self, l: Lease6) {
        let key = (l.duid.clone(), l.iaid);
        if let Some(old) = self.by_client.get(&key).copied() {
            if old != l.ip {
                self.remove_lease(old);
            }
        }
        self.remove_lease(l.ip);
        if let Some(t) = l.expires {
            self.ends.insert((t, l.ip));
        }
        self.by_client.insert(key, l.ip);
        self.leases.insert(l.ip, l);
    }

    /// Takes the lease of `ip` out of the tables.
    fn remove_lease(&mut self, ip: Ipv6Addr) -> Option<Lease6> {
        let l = self.leases.remove(&ip)?;
        if let Some(t) = l.expires {
            self.ends.remove(&(t, ip));
        }
        if self.by_client.get(&(l.duid.clone(), l.iaid)) == Some(&ip) {
            self.by_client.remove(&(l.duid.clone(), l.iaid));
        }
        Some(l)
    }

    /// What it serves.
    pub fn config(&self) -> &Config6 {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> Stats6 {
        self.stats
    }

    /// The active leases, by address.
    pub fn leases(&self) -> impl Iterator<Item = &Lease6> {
        self.leases.values()
    }

    /// A client message (the UDP payload to port 547) at `now`; the reply payload, if
    /// it is answered.
    pub fn handle(&mut self, now: SystemTime, payload: &[u8]) -> Option<Vec<u8>> {
        self.handle_from(now, None, payload)
    }

    /// Bounds the clients (DUIDs) one switch port may have leases or advertisements
    /// for: past `cap`, SOLICITs, REQUESTs, RENEWs and REBINDs of new clients from that
    /// port are not answered and are counted (`port_capped`), so a guest that makes up
    /// DUIDs cannot take the pool. `None`: no bound (the default). The same cap as the
    /// IPv4 server's ([`Server::set_port_cap`](crate::Server::set_port_cap)).
    pub fn set_port_cap(&mut self, cap: Option<usize>) {
        self.port_cap = cap;
    }

    /// [`handle`](Self::handle) for a message that arrived on switch port `port` (for
    /// [`set_port_cap`](Self::set_port_cap)).
    pub fn handle_from(
        &mut self,
        now: SystemTime,
        port: Option<u32>,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.stats.received = self.stats.received.saturating_add(1);
        self.expire(now);
        let reply = decodable(payload)
            .then(|| Message::decode(&mut Decoder::new(payload)).ok())
            .flatten()
            .and_then(|m| self.answer(now, port, &m));
        match &reply {
            Some(r) => {
                let mut out = Vec::new();
                if r.encode(&mut Encoder::new(&mut out)).is_err() {
                    self.stats.dropped += 1;
                    return None;
                }
                self.stats.sent = self.stats.sent.saturating_add(1);
                Some(out)
            }
            None => {
                self.stats.dropped = self.stats.dropped.saturating_add(1);
                None
            }
        }
    }

    fn answer(&mut self, now: SystemTime, port: Option<u32>, m: &Message) -> Option<Message> {
        let client = match m.opts().get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) if !id.is_empty() => id.clone(),
            _ => return None,
        };
        let server = match m.opts().get(OptionCode::ServerId) {
            Some(DhcpOption::ServerId(id)) => Some(id.as_slice()),
            _ => None,
        };
        let ours = server == Some(self.cfg.server_duid.as_slice());
        use MessageType as T;
        // RFC 8415 §16: which messages carry a server id
        let (kind, commit) = match m.msg_type() {
            T::Solicit if server.is_none() => {
                let rapid = m.opts().get(OptionCode::RapidCommit).is_some();
                (if rapid { T::Reply } else { T::Advertise }, rapid)
            }
            T::Request | T::Renew if ours => (T::Reply, true),
            T::Rebind | T::Confirm if server.is_none() => (T::Reply, true),
            T::Release | T::Decline if ours => (T::Reply, false),
            T::InformationRequest if server.is_none() || ours => (T::Reply, false),
            _ => return None,
        };
        let asks = matches!(m.msg_type(), T::Solicit | T::Request | T::Renew | T::Rebind);
        let capped = port.zip(self.port_cap).filter(|_| asks);
        if let Some((p, cap)) = capped {
            if !self.port_admits(now, p, cap, &client) {
                self.stats.port_capped = self.stats.port_capped.saturating_add(1);
                return None;
            }
        }
        // the host name the client sent (Client FQDN, RFC 4704): a name reservation
        // matches it, and the lease carries it
        let name = m
            .opts()
            .iter()
            .find_map(client_fqdn)
            .and_then(|(_, label)| label);
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::ServerId(self.cfg.server_duid.clone()));
        opts.insert(DhcpOption::ClientId(client.clone()));
        if commit && m.opts().get(OptionCode::RapidCommit).is_some() {
            opts.insert(DhcpOption::RapidCommit);
        }
        let ias = m.opts().iter().filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia.clone()),
            _ => None,
        });
        match m.msg_type() {
            T::Release | T::Decline => {
                for ia in ias {
                    if let Some(ip) = self.by_client.get(&(client.clone(), ia.id)).copied() {
                        if let Some(l) = self.remove_lease(ip) {
                            self.push_event(Event6::Released(l));
                        }
                        self.stats.released += 1;
                        if m.msg_type() == T::Decline {
                            self.quarantine(now, ip);
                        }
                    }
                }
                opts.insert(status(Status::Success, "done"));
            }
            T::Confirm => {
                let on_link = ias
                    .flat_map(|ia| addrs_of(&ia).collect::<Vec<_>>())
                    .all(|a| self.on_link(a));
                let (s, text) = if on_link {
                    (Status::Success, "on link")
                } else {
                    (Status::NotOnLink, "not on this link")
                };
                opts.insert(status(s, text));
            }
            T::InformationRequest => {}
            _ => {
                let rebind = m.msg_type() == T::Rebind;
                for ia in ias {
                    let ia = self.ia(now, &client, name.as_deref(), &ia, commit, rebind);
                    opts.insert(DhcpOption::IANA(ia));
                }
            }
        }
        if let Some(fqdn) = m.opts().iter().find_map(client_fqdn) {
            // RFC 4704 §4.2: the name the server uses for the client, with S set (the
            // server serves its AAAA record) and O when the client asked otherwise
            let served = self
                .reservation(&client, name.as_deref())
                .and_then(|h| h.name.as_deref())
                .or(name.as_deref());
            if let Some(label) = served {
                let flags = 0x01 | if fqdn.0 & 0x01 == 0 { 0x02 } else { 0 };
                opts.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::ClientFqdn,
                    fqdn_option(flags, label, self.cfg.domain.as_deref()),
                )));
            }
        }
        if !self.cfg.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServers(self.cfg.dns.clone()));
        }
        if let Some(d) = self
            .cfg
            .domain
            .as_deref()
            .and_then(|d| Name::from_ascii(d).ok())
        {
            opts.insert(DhcpOption::DomainSearchList(vec![d]));
        }
        if let Some((p, _)) = capped {
            self.note_client(now, p, &client, commit);
        }
        if let (Some(p), T::Release) = (port, m.msg_type()) {
            if let Some(clients) = self.by_port.get_mut(&p) {
                clients.retain(|(d, _)| *d != client);
            }
        }
        let mut reply = Message::new_with_id(kind, m.xid());
        reply.set_opts(opts);
        Some(reply)
    }

    /// Whether port `p` may serve client `duid`: it already counts, or the port has
    /// fewer than `cap` clients.
    fn port_admits(&mut self, now: SystemTime, p: u32, cap: usize, duid: &[u8]) -> bool {
        let clients = self.by_port.entry(p).or_default();
        clients.retain(|(_, until)| *until > now);
        clients.iter().any(|(d, _)| d == duid) || clients.len() < cap
    }

    /// Counts `duid` on port `p`: for an advertisement's hold, or (`committed`) as long
    /// as any lease granted now can last (the longest lease time configured).
    fn note_client(&mut self, now: SystemTime, p: u32, duid: &[u8], committed: bool) {
        let hold = now.checked_add(crate::OFFER_HOLD).unwrap_or(now);
        let until = if committed {
            let longest = self
                .cfg
                .ranges
                .iter()
                .map(|r| r.2)
                .chain(self.cfg.hosts.iter().map(|h| h.lease))
                .map(|l| match l {
                    LeaseDuration::Finite(d) => d,
                    LeaseDuration::Infinite => FOREVER,
                })
                .max()
                .unwrap_or(FOREVER);
            now.checked_add(longest).unwrap_or(now).max(hold)
        } else {
            hold
        };
        let clients = self.by_port.entry(p).or_default();
        match clients.iter_mut().find(|(d, _)| d.as_slice() == duid) {
            Some(c) => c.1 = c.1.max(until),
            None => clients.push((duid.to_vec(), until)),
        }
    }

    /// The answer to one IA_NA of the client with DUID `client` and host name `name`:
    /// its address (granted when `commit`), or NoAddrsAvail.
    fn ia(
        &mut self,
        now: SystemTime,
        client: &[u8],
        name: Option<&str>,
        ia: &IANA,
        commit: bool,
        rebind: bool,
    ) -> IANA {
        let key = (client.to_vec(), ia.id);
        let asked = addrs_of(ia).find(|a| self.available(*a, &key, name));
        let mut cursor = None;
        let picked = self
            .by_client
            .get(&key)
            .copied()
            .or_else(|| self.reservation(client, name).map(|h| h.ip))
            .or(asked)
            .or_else(|| {
                let (ip, r, next) = self.first_free(&key, name)?;
                cursor = Some((r, next));
                Some(ip)
            });
        let Some(ip) = picked.filter(|ip| self.available(*ip, &key, name)) else {
            self.stats.no_addrs += 1;
            let mut opts = DhcpOptions::new();
            opts.insert(status(Status::NoAddrsAvail, "no addresses available"));
            if rebind {
                // RFC 8415 §18.3.5: the addresses asked for, with lifetimes 0
                for a in addrs_of(ia) {
                    opts.insert(DhcpOption::IAAddr(IAAddr {
                        addr: a,
                        preferred_life: 0,
                        valid_life: 0,
                        opts: DhcpOptions::new(),
                    }));
                }
            }
            return IANA {
                id: ia.id,
                t1: 0,
                t2: 0,
                opts,
            };
        };
        let host = self
            .reservation(client, name)
            .filter(|h| h.ip == ip)
            .cloned();
        let lease = host
            .as_ref()
            .map_or_else(|| self.range_lease(ip), |h| h.lease);
        let secs = match lease {
            LeaseDuration::Finite(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1),
            LeaseDuration::Infinite => u32::MAX,
        };
        if commit {
            if let Some((r, next)) = cursor {
                if let Some(c) = self.cursors.get_mut(r) {
                    *c = next;
                }
            }
            let expires = match lease {
                LeaseDuration::Finite(d) => now.checked_add(d),
                LeaseDuration::Infinite => None,
            };
            let l = Lease6 {
                ip,
                duid: client.to_vec(),
                iaid: ia.id,
                hostname: host.and_then(|h| h.name).or(name.map(str::to_owned)),
                expires,
            };
            self.insert_lease(l.clone());
            self.push_event(Event6::Granted(l));
            self.stats.granted += 1;
        }
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: ip,
            preferred_life: secs,
            valid_life: secs,
            opts: DhcpOptions::new(),
        }));
        let (t1, t2) = if secs == u32::MAX {
            (u32::MAX, u32::MAX)
        } else {
            (secs / 2, secs / 5 * 4)
        };
        IANA {
            id: ia.id,
            t1,
            t2,
            opts,
        }
    }

    /// The reservation of the client with DUID `client` and host name `name`: by DUID,
    /// else a `<host name ip>` without an id whose name is the client's (dnsmasq's
    /// `dhcp-host=name,[addr]`).
    fn reservation(&self, client: &[u8], name: Option<&str>) -> Option<&Host6> {
        let hosts = &self.cfg.hosts;
        hosts
            .iter()
            .find(|h| h.duid.as_deref() == Some(client))
            .or_else(|| hosts.iter().find(|h| h.is_named(name)))
    }

    /// Keeps `ip` from every client until its quarantine ends.
    fn quarantine(&mut self, now: SystemTime, ip: Ipv6Addr) {
        if self.declined.len() >= MAX_DECLINED6 {
            let oldest = self
                .declined
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.declined.remove(&a);
            }
        }
        let until = now.checked_add(DECLINE_QUARANTINE6).unwrap_or(now);
        self.declined.insert(ip, until);
    }

    /// Whether `ip` may go to client `key` (with host name `name`): in a range or
    /// reserved for it, not leased to another client, not reserved for another DUID or
    /// name, not in quarantine.
    fn available(&self, ip: Ipv6Addr, key: &(Vec<u8>, u32), name: Option<&str>) -> bool {
        let in_range = self
            .cfg
            .ranges
            .iter()
            .any(|(s, e, _)| (*s..=*e).contains(&ip));
        let reserved = self.cfg.hosts.iter().find(|h| h.ip == ip);
        let for_us = reserved.is_some_and(|h| match &h.duid {
            Some(d) => *d == key.0,
            None => h.is_named(name),
        });
        let other_host = reserved.is_some() && !for_us;
        let leased_to_other = self
            .leases
            .get(&ip)
            .is_some_and(|l| (l.duid.as_slice(), l.iaid) != (key.0.as_slice(), key.1));
        (in_range || for_us)
            && !other_host
            && !leased_to_other
            && !self.declined.contains_key(&ip)
            && (self.leases.contains_key(&ip) || self.leases.len() < MAX_LEASES6)
    }

    /// A free address, from where the last grant's search of each range stopped
    /// (wrapping around once), with its range and where the next search starts. At most `MAX_LEASES6` + reservations + 1 addresses are looked at
    /// per range: past the lease bound nothing is free anyway.
    fn first_free(
        &self,
        key: &(Vec<u8>, u32),
        name: Option<&str>,
    ) -> Option<(Ipv6Addr, usize, u128)> {
        if self.leases.len() >= MAX_LEASES6 {
            return None;
        }
        let limit = MAX_LEASES6 + self.cfg.hosts.len() + 1;
        for r in 0..self.cfg.ranges.len() {
            let (s, e, _) = self.cfg.ranges[r];
            let (start, end) = (u128::from(s), u128::from(e));
            if start > end {
                continue;
            }
            let mut a = self
                .cursors
                .get(r)
                .copied()
                .unwrap_or(start)
                .clamp(start, end);
            let size = usize::try_from(end - start)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            for _ in 0..limit.min(size) {
                let ip = Ipv6Addr::from(a);
                a = if a >= end { start } else { a + 1 };
                if self.available(ip, key, name) {
                    return Some((ip, r, a));
                }
            }
        }
        None
    }

    fn range_lease(&self, ip: Ipv6Addr) -> LeaseDuration {
        self.cfg
            .ranges
            .iter()
            .find(|(s, e, _)| (*s..=*e).contains(&ip))
            .map_or(LeaseDuration::DEFAULT, |r| r.2)
    }

    fn on_link(&self, ip: Ipv6Addr) -> bool {
        self.cfg
            .ranges
            .iter()
            .any(|(s, e, _)| (*s..=*e).contains(&ip))
            || self.cfg.hosts.iter().any(|h| h.ip == ip)
    }

    /// Forgets the leases that ended at or before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        self.declined.retain(|_, until| *until > now);
        while let Some(&(t, ip)) = self.ends.first() {
            if t > now {
                break;
            }
            self.ends.pop_first();
            if let Some(l) = self.remove_lease(ip) {
                self.push_event(Event6::Expired(l));
            }
        }
    }
}

/// Whether `payload` is a client message (SOLICIT, REQUEST, CONFIRM, RENEW, REBIND,
/// RELEASE, DECLINE, INFORMATION-REQUEST) whose options, down into the IAs, are each
/// long enough for what `dhcproto` reads of them, with no relayed message inside.
pub fn decodable(payload: &[u8]) -> bool {
    fn options_ok(mut b: &[u8], depth: u8) -> bool {
        while !b.is_empty() {
            let (Some(c), Some(l)) = (b.get(0..2), b.get(2..4)) else {
                return false;
            };
            let code = u16::from_be_bytes([c[0], c[1]]);
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            let Some(body) = b.get(4..4 + len) else {
                return false;
            };
            let nested = |head: usize| {
                depth < 4
                    && body
                        .get(head..)
                        .is_some_and(|rest| options_ok(rest, depth + 1))
            };
            let ok = match code {
                // IA_NA, IA_PD: id, T1, T2; IA_TA: id; IAADDR: address, lifetimes;
                // IAPREFIX: lifetimes, length, prefix
                3 | 25 => nested(12),
                4 => nested(4),
                5 => nested(24),
                26 => nested(25),
                // a relayed message: never from a client
                9 => false,
                11 => len >= 11,
                13 => len >= 2,
                16 | 17 => len >= 4,
                // fixed sizes the decoder reads whatever the length says (a wrong length
                // makes it read into the next option)
                7 | 19 => len == 1,
                8 => len == 2,
                12 => len == 16,
                14 | 20 => len == 0,
                32 => len == 4,
                _ => true,
            };
            if !ok {
                return false;
            }
            b = b.get(4 + len..).unwrap_or_default();
        }
        true
    }
    matches!(payload.first(), Some(1 | 3 | 4 | 5 | 6 | 8 | 9 | 11))
        && payload.get(4..).is_some_and(|o| options_ok(o, 0))
}

/// A Client FQDN option (39, RFC 4704 §4): its flags, and the host name label it
/// carries (the first label of the name, if it is a valid host name).
fn client_fqdn(o: &DhcpOption) -> Option<(u8, Option<String>)> {
    let DhcpOption::Unknown(u) = o else {
        return None;
    };
    if u.code() != OptionCode::ClientFqdn {
        return None;
    }
    let (&flags, name) = u.data().split_first()?;
    let label = name.split_first().and_then(|(&len, rest)| {
        let label = rest.get(..usize::from(len))?;
        let ok = (1..=63).contains(&label.len())
            && label[0] != b'-'
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
        ok.then(|| String::from_utf8_lossy(label).into_owned())
    });
    Some((flags, label))
}

/// The data of a Client FQDN option: `flags`, then `label.domain` in DNS wire format
/// (`label` alone, partial, without a domain).
fn fqdn_option(flags: u8, label: &str, domain: Option<&str>) -> Vec<u8> {
    let mut out = vec![flags];
    let label = label.split('.').next().unwrap_or_default();
    let labels = std::iter::once(label).chain(
        domain
            .into_iter()
            .flat_map(|d| d.trim_end_matches('.').split('.')),
    );
    for l in labels.filter(|l| !l.is_empty() && l.len() <= 63) {
        out.push(u8::try_from(l.len()).unwrap_or(63));
        out.extend_from_slice(l.as_bytes());
    }
    if domain.is_some() {
        out.push(0);
    }
    out
}

fn status(s: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status: s,
        msg: msg.to_owned(),
    })
}

/// The addresses an IA_NA asks for (its IAADDR options).
fn addrs_of(ia: &IANA) -> impl Iterator<Item = Ipv6Addr> + '_ {
    ia.opts.iter().filter_map(|o| match o {
        DhcpOption::IAAddr(a) => Some(a.addr),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOLICIT from ISC dhclient 4.4 (`dhclient -6`, MAC 52:54:00:12:34:56): client id
    /// DUID-LLT, ORO (DNS, domain list, FQDN, SNTP), elapsed time, IA_NA 0x123456.
    const SOLICIT: [u8; 56] = [
        0x01, 0xbf, 0x74, 0x05, 0x00, 0x01, 0x00, 0x0e, 0x00, 0x01, 0x00, 0x01, 0x32, 0xa5, 0xd0,
        0x44, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x00, 0x06, 0x00, 0x08, 0x00, 0x17, 0x00, 0x18,
        0x00, 0x27, 0x00, 0x1f, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x0c, 0x00,
        0x12, 0x34, 0x56, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x00, 0x15, 0x18,
    ];
    const GW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c];

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn server() -> Server6 {
        let mut server_duid = vec![0, 3, 0, 1];
        server_duid.extend_from_slice(&GW_MAC);
        Server6::new(Config6 {
            server_duid,
            ranges: vec![(ip("fd00::1:10"), ip("fd00::1:12"), LeaseDuration::DEFAULT)],
            hosts: vec![Host6 {
                duid: parse_duid("0:3:0:1:0:16:3e:11:22:33"),
                name: Some("peter".into()),
                ip: ip("fd00::1:22"),
                lease: LeaseDuration::Finite(std::time::Duration::from_secs(600)),
            }],
            dns: vec![ip("fd00::1")],
            domain: Some("example".into()),
        })
    }

    fn decode(b: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(b)).unwrap()
    }

    fn encode(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut Encoder::new(&mut out)).unwrap();
        out
    }

    /// The address the reply's IA_NA carries, and its valid lifetime.
    fn granted(m: &Message) -> Option<(Ipv6Addr, u32)> {
        m.opts().iter().find_map(|o| match o {
            DhcpOption::IANA(ia) => ia.opts.iter().find_map(|o| match o {
                DhcpOption::IAAddr(a) => Some((a.addr, a.valid_life)),
                _ => None,
            }),
            _ => None,
        })
    }

    /// `m` turned into `kind`, with the server's id.
    fn follow(s: &Server6, m: &Message, kind: MessageType) -> Vec<u8> {
        let mut next = m.clone();
        next.set_msg_type(kind);
        next.opts_mut()
            .insert(DhcpOption::ServerId(s.config().server_duid.clone()));
        encode(&next)
    }

    #[test]
    fn solicit_request_renew_release_with_dhclients_bytes() {
        let mut s = server();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let adv = decode(&s.handle(t, &SOLICIT).expect("an advertise"));
        assert_eq!(adv.msg_type(), MessageType::Advertise);
        assert_eq!(adv.xid(), [0xbf, 0x74, 0x05]);
        assert_eq!(granted(&adv), Some((ip("fd00::1:10"), 3600)));
        assert!(matches!(
            adv.opts().get(OptionCode::DomainNameServers),
            Some(DhcpOption::DomainNameServers(d)) if d == &[ip("fd00::1")]
        ));
        assert!(s.leases().next().is_none(), "an advertise commits nothing");
        let sol = decode(&SOLICIT);
        let reply = decode(
            &s.handle(t, &follow(&s, &sol, MessageType::Request))
                .unwrap(),
        );
        assert_eq!(reply.msg_type(), MessageType::Reply);
        assert_eq!(granted(&reply), Some((ip("fd00::1:10"), 3600)));
        assert_eq!(s.leases().count(), 1);
        // renew keeps the address
        let renew = decode(&s.handle(t, &follow(&s, &sol, MessageType::Renew)).unwrap());
        assert_eq!(granted(&renew).map(|g| g.0), Some(ip("fd00::1:10")));
        // a request with another server's id is not ours to answer
        let mut other = sol.clone();
        other.set_msg_type(MessageType::Request);
        other
            .opts_mut()
            .insert(DhcpOption::ServerId(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
        assert!(s.handle(t, &encode(&other)).is_none());
        // release frees it
        assert!(s
            .handle(t, &follow(&s, &sol, MessageType::Release))
            .is_some());
        assert_eq!(s.leases().count(), 0);
        assert_eq!(s.stats().released, 1);
    }

    #[test]
    fn a_reserved_duid_gets_its_address_and_the_pool_runs_out_cleanly() {
        let mut s = server();
        let t = SystemTime::UNIX_EPOCH;
        let mut sol = decode(&SOLICIT);
        sol.opts_mut().insert(DhcpOption::RapidCommit);
        sol.opts_mut().insert(DhcpOption::ClientId(
            parse_duid("0:3:0:1:0:16:3e:11:22:33").unwrap(),
        ));
        let r = decode(&s.handle(t, &encode(&sol)).unwrap());
        assert_eq!(r.msg_type(), MessageType::Reply, "rapid commit");
        assert_eq!(granted(&r), Some((ip("fd00::1:22"), 600)));
        assert_eq!(
            s.leases()
                .next()
                .and_then(|l| l.hostname.clone())
                .as_deref(),
            Some("peter")
        );
        // three clients fill the three-address range; the fourth gets NoAddrsAvail
        for n in 0..4u8 {
            let mut c = decode(&SOLICIT);
            c.opts_mut().insert(DhcpOption::RapidCommit);
            c.opts_mut()
                .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]));
            let r = decode(&s.handle(t, &encode(&c)).unwrap());
            assert_eq!(granted(&r).is_some(), n < 3, "client {n}");
        }
        assert_eq!(s.stats().no_addrs, 1);
        // leases end
        s.expire(t + std::time::Duration::from_secs(3601));
        assert_eq!(s.leases().count(), 0);
    }

    #[test]
    fn a_port_gets_as_many_clients_as_its_cap_and_known_ones_renew() {
        let mut s = server();
        s.set_port_cap(Some(2));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let client = |n: u8| {
            let mut c = decode(&SOLICIT);
            c.opts_mut().insert(DhcpOption::RapidCommit);
            c.opts_mut()
                .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]));
            c
        };
        // port 1: two clients are served, the third (a made-up DUID) is not answered
        for n in 0..3u8 {
            let r = s.handle_from(t, Some(1), &encode(&client(n)));
            assert_eq!(r.is_some(), n < 2, "client {n}");
        }
        assert_eq!(s.stats().port_capped, 1);
        // the two renew; another port's client is served
        for n in 0..2u8 {
            let renew = follow(&s, &client(n), MessageType::Renew);
            assert!(s.handle_from(t, Some(1), &renew).is_some(), "renew {n}");
        }
        assert!(s.handle_from(t, Some(2), &encode(&client(9))).is_some());
        // a release makes room at once
        let release = follow(&s, &client(0), MessageType::Release);
        assert!(s.handle_from(t, Some(1), &release).is_some());
        assert!(s.handle_from(t, Some(1), &encode(&client(5))).is_some());
        // without a port (or a cap) nothing is bounded per port
        assert!(s.handle(t, &encode(&client(7))).is_some());
    }

    #[test]
    fn a_client_fqdn_names_the_lease_and_a_name_reservation_matches_it() {
        let mut s = server();
        s.cfg.hosts.push(Host6 {
            duid: None,
            name: Some("paul".into()),
            ip: ip("fd00::1:21"),
            lease: LeaseDuration::DEFAULT,
        });
        let t = SystemTime::UNIX_EPOCH;
        let named = |duid: u8, name: &[u8]| {
            let mut c = decode(&SOLICIT);
            c.opts_mut().insert(DhcpOption::RapidCommit);
            c.opts_mut()
                .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 1, duid]));
            // flags S; "Paul" as a partial name (one label, no root)
            let mut data = vec![0x01, u8::try_from(name.len()).unwrap()];
            data.extend_from_slice(name);
            c.opts_mut().insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::ClientFqdn,
                data,
            )));
            encode(&c)
        };
        let r = decode(&s.handle(t, &named(1, b"Paul")).unwrap());
        assert_eq!(granted(&r).map(|g| g.0), Some(ip("fd00::1:21")));
        let fqdn = r.opts().iter().find_map(|o| match o {
            DhcpOption::Unknown(u) if u.code() == OptionCode::ClientFqdn => Some(u.data()),
            _ => None,
        });
        assert_eq!(fqdn, Some(&b"\x01\x04paul\x07example\x00"[..]));
        // another client sending a name gets a range address and keeps its name
        let r = decode(&s.handle(t, &named(2, b"gamma")).unwrap());
        let got = granted(&r).map(|g| g.0).unwrap();
        assert_eq!(got, ip("fd00::1:10"));
        let l = s.leases().find(|l| l.ip == got).unwrap();
        assert_eq!(l.hostname.as_deref(), Some("gamma"));
        // a name that is not a host name is not taken
        let r = decode(&s.handle(t, &named(3, b"bad name")).unwrap());
        let got = granted(&r).map(|g| g.0).unwrap();
        assert_eq!(s.leases().find(|l| l.ip == got).unwrap().hostname, None);
        // without the name, paul's address is nobody else's
        assert!(s
            .leases()
            .all(|l| l.ip != ip("fd00::1:21") || l.duid[9] == 1));
    }

    #[test]
    fn a_declined_address_is_kept_from_everyone_until_its_quarantine_ends() {
        let mut s = server();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let rapid = |n: u8| {
            let mut c = decode(&SOLICIT);
            c.opts_mut().insert(DhcpOption::RapidCommit);
            c.opts_mut()
                .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]));
            c
        };
        let first = rapid(1);
        let got = granted(&decode(&s.handle(t, &encode(&first)).unwrap()))
            .unwrap()
            .0;
        assert!(s
            .handle(t, &follow(&s, &first, MessageType::Decline))
            .is_some());
        // the next client gets another address, not the declined one
        let next = granted(&decode(&s.handle(t, &encode(&rapid(2))).unwrap()))
            .unwrap()
            .0;
        assert_ne!(next, got);
        let events: Vec<Event6> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(matches!(
            events.as_slice(),
            [Event6::Granted(_), Event6::Released(_), Event6::Granted(_)]
        ));
        // after the quarantine it is free again: the three-address range fills up with it
        let later = t + DECLINE_QUARANTINE6 + std::time::Duration::from_secs(1);
        let more: Vec<_> = (3..5)
            .filter_map(|n| granted(&decode(&s.handle(later, &encode(&rapid(n))).unwrap())))
            .map(|g| g.0)
            .collect();
        assert_eq!(more.len(), 2);
        assert!(more.contains(&got), "{more:?}");
    }

    #[test]
    fn garbage_and_server_messages_are_dropped() {
        let mut s = server();
        let t = SystemTime::UNIX_EPOCH;
        for bad in [&SOLICIT[..3], &[0xff; 40][..], &[]] {
            assert!(s.handle(t, bad).is_none());
        }
        let mut adv = decode(&SOLICIT);
        adv.set_msg_type(MessageType::Advertise);
        assert!(s.handle(t, &encode(&adv)).is_none());
        // options too short for what the decoder reads of them (a status code of 0
        // bytes, inside an IA too), and a relayed message inside a client's
        let mut short = SOLICIT.to_vec();
        short.extend_from_slice(&[0, 13, 0, 0]);
        let mut nested = SOLICIT[..4].to_vec();
        nested.extend_from_slice(&[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 1]);
        let mut relayed = SOLICIT.to_vec();
        relayed.extend_from_slice(&[0, 9, 0, 4, 1, 0, 0, 0]);
        // a server-unicast option of 12 bytes (the decoder reads 16) followed by a
        // server id: what the fuzz target found in CI
        let mut desync = SOLICIT.to_vec();
        desync.extend_from_slice(&[0, 12, 0, 12, 0, 0x12, 0x34, 0x56, 0, 0, 0x0e, 0x10]);
        desync.extend_from_slice(&[0, 0, 0x15, 0x18, 0, 2, 0, 10, 0, 0x10, 0, 1, 0x52, 0x5d]);
        desync.extend_from_slice(&[0, 0x0a, 0x0b, 0x0c]);
        for bad in [short, nested, relayed, desync] {
            assert!(!decodable(&bad));
            assert!(s.handle(t, &bad).is_none());
        }
        assert!(decodable(&SOLICIT));
        assert_eq!(s.stats().dropped, 8);
        assert_eq!(parse_duid("0:4:7e:7d"), Some(vec![0, 4, 0x7e, 0x7d]));
        assert_eq!(parse_duid("0:4:zz"), None);
    }
}
