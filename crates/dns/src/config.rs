//! What the server needs from a network definition, and how it is read from one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use vnet_config::{ForwardMode, IpFamily, Network};

/// The port of an upstream server when `<forwarder>` gives none.
pub const DEFAULT_UPSTREAM_PORT: u16 = 53;

/// The UDP payload size the server advertises in its EDNS OPT records (to clients and
/// to upstreams): the DNS flag day 2020 value, which avoids IP fragmentation.
pub const EDNS_UDP_SIZE: u16 = 1232;

/// The largest EDNS UDP payload size a client may ask for that the server honours.
pub const MAX_CLIENT_UDP_SIZE: u16 = 4096;

/// An address range of the network: an `<ip address prefix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// The network's own address in it (the gateway address).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Whether `ip` is inside the subnet (same family, same network bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix.min(32)))
                    .unwrap_or(0);
                u32::from(a) & m == u32::from(b) & m
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0);
                u128::from(a) & m == u128::from(b) & m
            }
            _ => false,
        }
    }
}

/// `<forwarder addr port domain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarder {
    /// The upstream server; `None`: the domain is answered locally only
    /// (dnsmasq `local=/domain/`).
    pub addr: Option<SocketAddr>,
    /// Only names in this domain (and its subdomains) go there; `None`: a general
    /// upstream, used for everything else, in strict order.
    pub domain: Option<String>,
}

/// `<dns><host ip><hostname>…</host>`: names for an address (A or AAAA, and PTR to the
/// first name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRecord {
    /// The address.
    pub ip: IpAddr,
    /// The names, in order. A name without a dot is also served as `name.<domain>`
    /// (dnsmasq `expand-hosts`).
    pub names: Vec<String>,
}

/// `<txt name value>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxtRecord {
    /// The owner name, served as written.
    pub name: String,
    /// The text (split into 255-byte strings on the wire).
    pub value: String,
}

/// `<srv service protocol domain target port priority weight>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    /// `service`, without the leading underscore.
    pub service: String,
    /// `protocol` (`tcp`, `udp`), without the leading underscore.
    pub protocol: String,
    /// `domain`; `None`: the network's domain (dnsmasq's default), else none.
    pub domain: Option<String>,
    /// `target`; `None`: `.`, "service not available here" (RFC 2782).
    pub target: Option<String>,
    /// `port` (dnsmasq's default is 1).
    pub port: u16,
    /// `priority`.
    pub priority: u16,
    /// `weight`.
    pub weight: u16,
}

impl SrvRecord {
    /// The owner name, `_service._protocol.domain` as dnsmasq's `srv-host` builds it:
    /// the record's domain, else `default_domain`, else `_service._protocol`.
    pub fn owner(&self, default_domain: Option<&str>) -> String {
        match self.domain.as_deref().or(default_domain) {
            Some(d) if !d.is_empty() => format!("_{}._{}.{d}", self.service, self.protocol),
            _ => format!("_{}._{}", self.service, self.protocol),
        }
    }
}

/// A `<dhcp><host name ip>` reservation: the name is served for the address whether or
/// not a lease is active (dnsmasq serves `dhcp-host` names from its configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedAddress {
    /// The reserved address.
    pub ip: IpAddr,
    /// The host name (a single label, or `label.<domain>`).
    pub name: String,
}

/// The server's bounds, timers and TTLs.
///
/// Every table a guest can fill is bounded by one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Client queries waiting for an upstream answer, all clients together (dnsmasq's
    /// `dns-forward-max` is 150; 1024 here). Queries over it are dropped and counted.
    pub max_in_flight: usize,
    /// Client queries waiting for an upstream answer from one client address: a guest
    /// flooding the server cannot starve the others. Queries over it are dropped.
    pub max_in_flight_per_client: usize,
    /// Cached upstream answers (least recently used out first).
    pub cache_entries: usize,
    /// Upstream answers larger than this (bytes) are relayed but not cached.
    pub max_cached_message: usize,
    /// Names from DHCP leases ([`Server::set_lease_name`](crate::Server::set_lease_name)).
    pub lease_names: usize,
    /// How long an upstream has to answer before the next one is tried (the last one
    /// failing means SERVFAIL to the client).
    pub upstream_timeout: Duration,
    /// The TTL of local answers (dnsmasq's `local-ttl`, 0 by default: guests always see
    /// the current lease names).
    pub local_ttl: u32,
    /// Upper bound on how long a positive upstream answer is cached (seconds).
    pub max_ttl: u32,
    /// Upper bound on how long a negative upstream answer (NXDOMAIN, NODATA with an
    /// SOA) is cached (seconds).
    pub max_negative_ttl: u32,
    /// Upstream servers kept per list (general forwarders, system upstreams, each
    /// domain's forwarders); the rest are ignored.
    pub max_upstreams: usize,
}

impl Limits {
    /// The defaults: 1024 in flight, 64 per client, 4096 cached answers of at most
    /// 4096 bytes, 65 536 lease names, 2 s per upstream, local TTL 0, cache TTLs capped
    /// at 1 day (positive) and 1 hour (negative), 16 upstreams per list.
    pub const DEFAULT: Self = Self {
        max_in_flight: 1024,
        max_in_flight_per_client: 64,
        cache_entries: 4096,
        max_cached_message: 4096,
        lease_names: 65_536,
        upstream_timeout: Duration::from_secs(2),
        local_ttl: 0,
        max_ttl: 86_400,
        max_negative_ttl: 3600,
        max_upstreams: 16,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Everything the DNS server needs from the network definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The gateway address where guests send queries: the first IPv4 `<ip address>`,
    /// or the first IPv6 one on an IPv6-only network (its other addresses are in
    /// `subnets`).
    pub server_ip: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// All of the network's `<ip>`s. Queries are answered only for clients inside one
    /// of them (or inside `server_ip/prefix`); their addresses are the server's own
    /// (an upstream at one of them is a loop).
    pub subnets: Vec<Subnet>,
    /// `<domain name>`, without a trailing dot.
    pub domain: Option<String>,
    /// `<domain localOnly='yes'>`: names under the domain are never forwarded
    /// (dnsmasq `local=/domain/`).
    pub local_only: bool,
    /// `<domain register='yes'>`: for the driver (register the domain with the host's
    /// resolver); the server itself does nothing with it.
    pub register: bool,
    /// `<dns forwardPlainNames>` (default yes); no: names without a dot are never
    /// forwarded (dnsmasq `domain-needed`).
    pub forward_plain_names: bool,
    /// `<dns><host>` records.
    pub hosts: Vec<HostRecord>,
    /// `<dns><txt>` records.
    pub txt: Vec<TxtRecord>,
    /// `<dns><srv>` records.
    pub srv: Vec<SrvRecord>,
    /// `<dns><forwarder>`s, in order.
    pub forwarders: Vec<Forwarder>,
    /// `<dhcp><host name ip>` reservations with a name.
    pub reservations: Vec<NamedAddress>,
    /// The `<ip localPtr='yes'>` subnets: reverse (PTR) names inside them without a
    /// record get NXDOMAIN locally instead of being forwarded.
    pub local_ptr: Vec<Subnet>,
    /// Forward mode none (an isolated network): queries that no `<forwarder addr>`
    /// covers are not forwarded to the system upstreams but answered REFUSED.
    pub isolated: bool,
    /// Bounds and timers.
    pub limits: Limits,
}

impl DnsConfig {
    /// A configuration for a server at `server_ip/prefix` with no local data, no
    /// domain, plain names forwarded, not isolated, and the default [`Limits`].
    pub fn new(server_ip: impl Into<IpAddr>, prefix: u8) -> Self {
        let server_ip = server_ip.into();
        let prefix = prefix.min(if server_ip.is_ipv4() { 32 } else { 128 });
        Self {
            server_ip,
            prefix,
            subnets: vec![Subnet {
                addr: server_ip,
                prefix,
            }],
            domain: None,
            local_only: false,
            register: false,
            forward_plain_names: true,
            hosts: Vec::new(),
            txt: Vec::new(),
            srv: Vec::new(),
            forwarders: Vec::new(),
            reservations: Vec::new(),
            local_ptr: Vec::new(),
            isolated: false,
            limits: Limits::DEFAULT,
        }
    }

    /// From a libvirt network; `None` when it has `<dns enable='no'>`, no `<ip>`,
    /// or a forward mode without a bridge of its own (bridge, where libvirt runs no
    /// dnsmasq).
    ///
    /// Reads `<domain>`, `<dns>` (`forwardPlainNames`, `<forwarder>`, `<host>`,
    /// `<txt>`, `<srv>`), every `<ip>` (subnets, `localPtr`, named `<dhcp><host>`s)
    /// and the forward mode (none: isolated). A `<forwarder>` without `port` uses 53;
    /// an `<srv>` without `port` uses 1, as dnsmasq does.
    pub fn from_network(net: &Network) -> Option<Self> {
        if !net.dns().enabled() || !net.forward_mode().has_own_bridge() {
            return None;
        }
        let first = net
            .ips()
            .iter()
            .find(|ip| ip.family() == IpFamily::V4)
            .or_else(|| net.ips().first())?;
        let mut c = Self::new(first.address, first.prefix_len());
        c.subnets = net
            .ips()
            .iter()
            .map(|ip| Subnet {
                addr: ip.address,
                prefix: ip.prefix_len(),
            })
            .collect();
        c.local_ptr = net
            .ips()
            .iter()
            .filter(|ip| ip.local_ptr == Some(true))
            .map(|ip| Subnet {
                addr: ip.address,
                prefix: ip.prefix_len(),
            })
            .collect();
        c.reservations = net
            .ips()
            .iter()
            .filter_map(|ip| ip.dhcp.as_ref())
            .flat_map(|d| d.hosts.iter())
            .filter_map(|h| {
                Some(NamedAddress {
                    ip: h.ip,
                    name: h.name.clone()?,
                })
            })
            .collect();
        if let Some(d) = net.domain() {
            let name = d.name.trim_end_matches('.');
            c.domain = (!name.is_empty()).then(|| name.to_owned());
            c.local_only = d.local_only == Some(true);
            c.register = d.register == Some(true);
        }
        let dns = net.dns();
        c.forward_plain_names = dns.forward_plain_names != Some(false);
        c.forwarders = dns
            .forwarders
            .iter()
            .map(|f| Forwarder {
                addr: f
                    .addr
                    .map(|a| SocketAddr::new(a, f.port.unwrap_or(DEFAULT_UPSTREAM_PORT))),
                domain: f
                    .domain
                    .as_deref()
                    .map(|d| d.trim_end_matches('.').to_owned()),
            })
            .collect();
        c.hosts = dns
            .hosts
            .iter()
            .map(|h| HostRecord {
                ip: h.ip,
                names: h.hostnames.clone(),
            })
            .collect();
        c.txt = dns
            .txts
            .iter()
            .map(|t| TxtRecord {
                name: t.name.clone(),
                value: t.value.clone(),
            })
            .collect();
        c.srv = dns
            .srvs
            .iter()
            .map(|s| SrvRecord {
                service: s.service.clone(),
                protocol: s.protocol.clone(),
                domain: s.domain.clone(),
                target: s.target.clone(),
                port: s.port.unwrap_or(1),
                priority: s.priority.unwrap_or(0),
                weight: s.weight.unwrap_or(0),
            })
            .collect();
        c.isolated = net.forward_mode() == ForwardMode::None;
        Some(c)
    }

    /// Whether `ip` may use the server: inside one of the network's subnets.
    pub fn is_guest(&self, ip: IpAddr) -> bool {
        let primary = Subnet {
            addr: self.server_ip,
            prefix: self.prefix,
        };
        primary.contains(ip) || self.subnets.iter().any(|s| s.contains(ip))
    }

    /// Whether `ip` is one of the server's own addresses (an upstream there is a loop).
    pub fn is_own_address(&self, ip: IpAddr) -> bool {
        ip == self.server_ip || ip.is_unspecified() || self.subnets.iter().any(|s| s.addr == ip)
    }
}
