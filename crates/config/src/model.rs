//! The typed parts of a network definition.
//!
//! These types are read through [`Network`](crate::Network)'s accessors; they are
//! `#[non_exhaustive]` so that fields can be added as later features honour more of
//! libvirt's schema.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// The `<forward mode>` of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ForwardMode {
    /// No `<forward>`: an isolated network (guests, host and each other only).
    #[default]
    None,
    /// `mode='nat'` (also a `<forward>` without a mode): masquerade to the outside.
    Nat,
    /// `mode='route'`: routed without NAT.
    Route,
    /// `mode='open'`: routed, no firewall rules at all.
    Open,
    /// `mode='bridge'`: guests join an existing host bridge (or, with `<interface>`s, macvtap).
    Bridge,
}

impl ForwardMode {
    /// The mode as libvirt spells it (`"none"` for an isolated network).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Nat => "nat",
            Self::Route => "route",
            Self::Open => "open",
            Self::Bridge => "bridge",
        }
    }

    /// Whether the network has a bridge (and IP stack) of its own: none, nat, route, open.
    pub fn has_own_bridge(self) -> bool {
        matches!(self, Self::None | Self::Nat | Self::Route | Self::Open)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the group bit (multicast/broadcast) is set.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Six groups of one or two hex digits separated by `:` (as libvirt accepts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or("a MAC address has six groups")?;
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("'{part}' is not one or two hex digits"));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|e| e.to_string())?;
        }
        if parts.next().is_some() {
            return Err("a MAC address has six groups".into());
        }
        Ok(Self(out))
    }
}

/// `<forward>`: how the network reaches the outside.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Forward {
    /// The mode ([`ForwardMode::None`] when there is no `<forward>`).
    pub mode: ForwardMode,
    /// `<interface dev>` names, in order. `<forward dev='X'>` is the first of them, as in
    /// libvirt (which adds the `<interface>` when only `dev` is given).
    pub interfaces: Vec<String>,
    /// `<nat>` settings (mode nat only).
    pub nat: Option<Nat>,
}

impl Forward {
    /// `<forward dev>`: the first forward interface, if any.
    pub fn dev(&self) -> Option<&str> {
        self.interfaces.first().map(String::as_str)
    }
}

/// `<forward><nat>`: SNAT address and port ranges.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Nat {
    /// `ipv6='yes|no'`: also masquerade IPv6.
    pub ipv6: Option<bool>,
    /// `<address start end>`: the public IPv4 addresses to SNAT to.
    pub addresses: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `<port start end>`: the source port range to use.
    pub ports: Option<(u16, u16)>,
}

/// `<bridge>` attributes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Bridge {
    /// `name`: the bridge device (`virbr0`); may hold a `%d` template.
    pub name: Option<String>,
    /// `stp='on|off'`. libvirt fills `on` for modes none/nat/route/open.
    pub stp: Option<bool>,
    /// `delay` (STP forward delay, seconds). libvirt fills `0` for modes none/nat/route/open.
    pub delay: Option<u64>,
    /// `macTableManager`.
    pub mac_table_manager: Option<MacTableManager>,
    /// `zone`: the firewalld zone.
    pub zone: Option<String>,
}

/// `<bridge macTableManager>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MacTableManager {
    /// `kernel`: the bridge learns MAC addresses itself.
    Kernel,
    /// `libvirt`: libvirt programs the forwarding table.
    Libvirt,
}

impl MacTableManager {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Libvirt => "libvirt",
        }
    }
}

/// `<domain>`: the DNS domain of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Domain {
    /// `name`.
    pub name: String,
    /// `localOnly='yes|no'`: never forward queries for this domain upstream.
    pub local_only: Option<bool>,
    /// `register='yes|no'`.
    pub register: Option<bool>,
}

/// The family of an `<ip>` or `<route>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    pub(crate) fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

/// `<ip>`: an address of the network's bridge, with its DHCP and TFTP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpDef {
    /// `family` as written (`None` when absent; the family then follows `address`).
    pub family: Option<IpFamily>,
    /// `address`: the host's address on the network.
    pub address: IpAddr,
    /// `netmask` (IPv4 only).
    pub netmask: Option<Ipv4Addr>,
    /// `prefix`.
    pub prefix: Option<u8>,
    /// `localPtr='yes|no'`.
    pub local_ptr: Option<bool>,
    /// `<tftp root>` (IPv4 only).
    pub tftp_root: Option<String>,
    /// `<dhcp>`; `None` when absent or empty (libvirt drops an empty `<dhcp>`).
    pub dhcp: Option<Dhcp>,
}

impl IpDef {
    /// The address family.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.address)
    }

    /// The prefix length: `prefix`, else the netmask's, else (IPv4) the classful default
    /// or (IPv6) 64, as libvirt computes it.
    pub fn prefix_len(&self) -> u8 {
        if let Some(p) = self.prefix {
            return p;
        }
        if let Some(m) = self.netmask {
            // Contiguity is checked at parse time.
            return ones(m);
        }
        match self.address {
            IpAddr::V4(a) => classful_prefix(a).unwrap_or(32),
            IpAddr::V6(_) => 64,
        }
    }

    /// The network address (the address with the host bits cleared).
    pub fn network(&self) -> IpAddr {
        mask(self.address, self.prefix_len())
    }

    /// Whether `addr` lies inside this `<ip>`'s subnet.
    pub fn contains(&self, addr: IpAddr) -> bool {
        IpFamily::of(addr) == self.family() && mask(addr, self.prefix_len()) == self.network()
    }
}

/// The number of leading 1 bits of a netmask.
pub(crate) fn ones(m: Ipv4Addr) -> u8 {
    u8::try_from(u32::from(m).leading_ones()).unwrap_or(32)
}

/// The classful prefix libvirt uses for an IPv4 `<ip>` with neither netmask nor prefix.
pub(crate) fn classful_prefix(a: Ipv4Addr) -> Option<u8> {
    let first = a.octets()[0];
    if first & 0x80 == 0 {
        Some(8)
    } else if first & 0xC0 == 0x80 {
        Some(16)
    } else if first & 0xE0 == 0xC0 {
        Some(24)
    } else {
        None
    }
}

/// Clears the host bits of `addr` beyond `prefix`.
pub(crate) fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// `<dhcp>` of one `<ip>`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Dhcp {
    /// `<range>`s, in order.
    pub ranges: Vec<DhcpRange>,
    /// `<host>`s (static leases), in order.
    pub hosts: Vec<DhcpHost>,
    /// `<bootp>` (IPv4 only).
    pub bootp: Option<Bootp>,
}

/// The lease time used when a range or host has no `<lease>` (dnsmasq's default, 1 h).
pub const DEFAULT_LEASE_SECS: u64 = 3600;

/// How long a DHCP lease lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseTime {
    /// `<lease expiry='0'/>`: never expires.
    Infinite,
    /// A finite lease, in seconds.
    Seconds(u64),
}

/// `<range start end>` of a `<dhcp>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DhcpRange {
    /// First address handed out.
    pub start: IpAddr,
    /// Last address handed out.
    pub end: IpAddr,
    /// `<lease>` as written.
    pub lease: Option<Lease>,
}

impl DhcpRange {
    /// The lease time for this range ([`DEFAULT_LEASE_SECS`] when there is no `<lease>`).
    pub fn lease_time(&self) -> LeaseTime {
        self.lease
            .map_or(LeaseTime::Seconds(DEFAULT_LEASE_SECS), Lease::time)
    }
}

/// `<host>` of a `<dhcp>`: a static lease.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DhcpHost {
    /// `mac` (IPv4 hosts).
    pub mac: Option<MacAddr>,
    /// `id`: the DHCPv6 DUID (IPv6 hosts), as written.
    pub id: Option<String>,
    /// `name`: the host name given to the guest.
    pub name: Option<String>,
    /// `ip`: the fixed address.
    pub ip: IpAddr,
    /// `<lease>` as written.
    pub lease: Option<Lease>,
}

impl DhcpHost {
    /// The lease time for this host ([`DEFAULT_LEASE_SECS`] when there is no `<lease>`).
    pub fn lease_time(&self) -> LeaseTime {
        self.lease
            .map_or(LeaseTime::Seconds(DEFAULT_LEASE_SECS), Lease::time)
    }
}

/// `<lease expiry unit>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// `expiry`; 0 means infinite.
    pub expiry: u64,
    /// `unit` (libvirt's default is minutes).
    pub unit: LeaseUnit,
}

impl Lease {
    /// The lease time this element describes.
    pub fn time(self) -> LeaseTime {
        if self.expiry == 0 {
            return LeaseTime::Infinite;
        }
        let factor = match self.unit {
            LeaseUnit::Seconds => 1,
            LeaseUnit::Minutes => 60,
            LeaseUnit::Hours => 3600,
        };
        LeaseTime::Seconds(self.expiry.saturating_mul(factor))
    }
}

/// `<lease unit>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseUnit {
    /// `seconds`.
    Seconds,
    /// `minutes` (the default).
    Minutes,
    /// `hours`.
    Hours,
}

impl LeaseUnit {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Minutes => "minutes",
            Self::Hours => "hours",
        }
    }
}

/// `<bootp file server>`: network boot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bootp {
    /// `file`: the boot file name.
    pub file: String,
    /// `server`: the TFTP server, if not this host.
    pub server: Option<IpAddr>,
}

/// `<dns>`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Dns {
    /// `enable='yes|no'` (absent means yes).
    pub enable: Option<bool>,
    /// `forwardPlainNames='yes|no'`.
    pub forward_plain_names: Option<bool>,
    /// `<forwarder>`s.
    pub forwarders: Vec<DnsForwarder>,
    /// `<txt>` records.
    pub txts: Vec<DnsTxt>,
    /// `<srv>` records.
    pub srvs: Vec<DnsSrv>,
    /// `<host>` records.
    pub hosts: Vec<DnsHost>,
}

impl Dns {
    /// Whether the DNS server is enabled (the default).
    pub fn enabled(&self) -> bool {
        self.enable != Some(false)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.enable.is_none()
            && self.forward_plain_names.is_none()
            && self.forwarders.is_empty()
            && self.txts.is_empty()
            && self.srvs.is_empty()
            && self.hosts.is_empty()
    }
}

/// `<forwarder addr port domain>`: an upstream server (for a domain, or for everything).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsForwarder {
    /// `addr`: the upstream server.
    pub addr: Option<IpAddr>,
    /// `port` of the upstream server.
    pub port: Option<u16>,
    /// `domain`: only queries for this domain go there (without `addr`: answered locally).
    pub domain: Option<String>,
}

/// `<txt name value>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsTxt {
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: String,
}

/// `<srv service protocol domain target port priority weight>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsSrv {
    /// `service` (up to 15 characters).
    pub service: String,
    /// `protocol`: `tcp` or `udp`.
    pub protocol: String,
    /// `domain`.
    pub domain: Option<String>,
    /// `target`.
    pub target: Option<String>,
    /// `port`.
    pub port: Option<u16>,
    /// `priority` (0 is written as absent, as libvirt does).
    pub priority: Option<u16>,
    /// `weight` (0 is written as absent, as libvirt does).
    pub weight: Option<u16>,
}

/// `<host ip><hostname/>…</host>` of `<dns>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsHost {
    /// `ip`.
    pub ip: IpAddr,
    /// The `<hostname>`s, in order.
    pub hostnames: Vec<String>,
}

/// `<route>`: a static route the host adds towards a gateway on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// `family` as written.
    pub family: Option<IpFamily>,
    /// `address`: the destination network.
    pub address: IpAddr,
    /// `netmask` (IPv4).
    pub netmask: Option<Ipv4Addr>,
    /// `prefix`.
    pub prefix: Option<u8>,
    /// `gateway`: must be inside one of the network's `<ip>` subnets.
    pub gateway: IpAddr,
    /// `metric`.
    pub metric: Option<u32>,
}

impl Route {
    /// The destination prefix length (from `prefix` or `netmask`; a host route otherwise).
    pub fn prefix_len(&self) -> u8 {
        if let Some(p) = self.prefix {
            return p;
        }
        if let Some(m) = self.netmask {
            return ones(m);
        }
        match self.address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

/// `<portgroup>`: named settings guests can select.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortGroup {
    /// `name`.
    pub name: String,
    /// `default='yes'`.
    pub default: bool,
    /// `trustGuestRxFilters='yes|no'`.
    pub trust_guest_rx_filters: Option<bool>,
    /// `<vlan>`.
    pub vlan: Option<Vlan>,
    /// `<virtualport>`.
    pub virtualport: Option<VirtualPort>,
    /// `<bandwidth>`.
    pub bandwidth: Option<Bandwidth>,
    /// `<vnet:port-security enabled='yes|no'>`: the group's ports are protected
    /// against spoofing (yes) or exempt from the network's port security (no); absent,
    /// the network's setting holds.
    pub port_security: Option<bool>,
}

/// `<vlan>`: 802.1Q tags.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Vlan {
    /// `trunk='yes'` (implied by more than one tag).
    pub trunk: bool,
    /// The `<tag>`s, in order.
    pub tags: Vec<VlanTag>,
}

/// `<tag id nativeMode>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VlanTag {
    /// `id`: 0–4095.
    pub id: u16,
    /// `nativeMode`.
    pub native_mode: Option<NativeMode>,
}

/// `<tag nativeMode>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeMode {
    /// `tagged`.
    Tagged,
    /// `untagged`.
    Untagged,
}

impl NativeMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Tagged => "tagged",
            Self::Untagged => "untagged",
        }
    }
}

/// `<bandwidth>`: rate limits (kilobytes per second, burst in kilobytes).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Bandwidth {
    /// `<inbound>`: traffic towards the guests.
    pub inbound: Option<BandwidthRate>,
    /// `<outbound>`: traffic from the guests.
    pub outbound: Option<BandwidthRate>,
}

/// `<inbound>`/`<outbound>` of `<bandwidth>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BandwidthRate {
    /// `average` (KiB/s).
    pub average: u64,
    /// `peak` (KiB/s).
    pub peak: Option<u64>,
    /// `burst` (KiB).
    pub burst: Option<u64>,
}

/// `<virtualport>`: a port profile for an external switch, kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VirtualPort {
    /// `type` (`openvswitch`, `802.1Qbh`, `802.1Qbg`, `midonet`).
    pub kind: Option<String>,
    /// The attributes of `<parameters>`, in order (`None` when there is no `<parameters>`).
    pub parameters: Option<Vec<(String, String)>>,
}

/// An XML element kept verbatim: the contents of `<metadata>` and foreign-namespace
/// extensions of `<network>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawElement {
    /// The namespace URI, if any.
    pub namespace: Option<String>,
    /// The prefix the element was written with (`None`: the default namespace).
    pub prefix: Option<String>,
    /// The local name.
    pub name: String,
    /// Attributes in document order.
    pub attributes: Vec<RawAttribute>,
    /// Child elements and non-blank text, in document order.
    pub children: Vec<RawNode>,
}

impl RawElement {
    /// The name as written, `prefix:name` or `name`.
    pub fn qualified_name(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// An attribute of a [`RawElement`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawAttribute {
    /// The namespace URI, if any.
    pub namespace: Option<String>,
    /// The prefix it was written with.
    pub prefix: Option<String>,
    /// The local name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// A child of a [`RawElement`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawNode {
    /// A child element.
    Element(RawElement),
    /// Text (blank text between elements is not kept).
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_format() {
        let m: MacAddr = "12:34:56:78:9A:BC".parse().unwrap();
        assert_eq!(m.to_string(), "12:34:56:78:9a:bc");
        let m: MacAddr = "0:16:3e:7:e2:ed".parse().unwrap();
        assert_eq!(m.to_string(), "00:16:3e:07:e2:ed");
        assert!(!m.is_multicast());
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        for bad in [
            "",
            "12:34:56:78:9a",
            "12:34:56:78:9a:bc:de",
            "123:4:5:6:7:8",
            "zz:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn masks() {
        let a: IpAddr = "192.168.122.77".parse().unwrap();
        assert_eq!(mask(a, 24).to_string(), "192.168.122.0");
        assert_eq!(mask(a, 0).to_string(), "0.0.0.0");
        assert_eq!(mask(a, 32), a);
        let b: IpAddr = "2001:db8:ac10:fd01::1:20".parse().unwrap();
        assert_eq!(mask(b, 64).to_string(), "2001:db8:ac10:fd01::");
        assert_eq!(classful_prefix("10.24.10.1".parse().unwrap()), Some(8));
        assert_eq!(classful_prefix("172.16.0.1".parse().unwrap()), Some(16));
        assert_eq!(classful_prefix("224.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn lease_times() {
        let l = Lease {
            expiry: 10,
            unit: LeaseUnit::Minutes,
        };
        assert_eq!(l.time(), LeaseTime::Seconds(600));
        let l = Lease {
            expiry: 0,
            unit: LeaseUnit::Hours,
        };
        assert_eq!(l.time(), LeaseTime::Infinite);
    }
}
