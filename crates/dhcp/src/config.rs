//! What the server needs from a network definition, and how it is read from one.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vnet_config::{ForwardMode, IpFamily, LeaseTime, Network};

/// The shortest lease the server grants: libvirt (like dnsmasq) raises shorter ones to
/// two minutes.
pub const MIN_LEASE: Duration = Duration::from_secs(120);

/// How long a declined address stays out of the pool by default (dnsmasq's 10 minutes).
pub const DEFAULT_DECLINE_QUARANTINE: Duration = Duration::from_secs(600);

/// How long a lease lasts.
///
/// A closed set (a lease is either finite or not), so not `#[non_exhaustive]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseDuration {
    /// A finite lease. Shorter than [`MIN_LEASE`] is raised to it when granted.
    Finite(Duration),
    /// A lease that never expires (libvirt `<lease expiry='0'/>`; option 51 = `0xffffffff`).
    Infinite,
}

impl LeaseDuration {
    /// libvirt's default: one hour.
    pub const DEFAULT: Self = Self::Finite(Duration::from_secs(vnet_config::DEFAULT_LEASE_SECS));

    /// The duration the server actually grants: finite ones raised to [`MIN_LEASE`].
    pub fn effective(self) -> Self {
        match self {
            Self::Finite(d) => Self::Finite(d.max(MIN_LEASE)),
            Self::Infinite => Self::Infinite,
        }
    }

    /// The value of option 51 (seconds; `0xffffffff` for infinite, finite ones capped
    /// just below it).
    pub fn option_secs(self) -> u32 {
        match self.effective() {
            Self::Finite(d) => {
                u32::try_from(d.as_secs()).map_or(u32::MAX - 1, |s| s.min(u32::MAX - 1))
            }
            Self::Infinite => u32::MAX,
        }
    }
}

impl Default for LeaseDuration {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl From<LeaseTime> for LeaseDuration {
    /// libvirt's lease time: 0 (infinite) stays infinite; finite ones are raised to
    /// [`MIN_LEASE`].
    fn from(t: LeaseTime) -> Self {
        match t {
            LeaseTime::Infinite => Self::Infinite,
            LeaseTime::Seconds(s) => Self::Finite(Duration::from_secs(s)).effective(),
            #[allow(unreachable_patterns)] // LeaseTime is #[non_exhaustive].
            _ => Self::DEFAULT,
        }
    }
}

/// One `<range>`: addresses handed out dynamically, inclusive at both ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRange {
    /// The first address handed out.
    pub start: Ipv4Addr,
    /// The last address handed out.
    pub end: Ipv4Addr,
    /// The lease time of addresses from this range.
    pub lease: LeaseDuration,
}

impl PoolRange {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }

    /// The number of addresses in the range (0 if `end < start`).
    pub fn len(&self) -> u64 {
        let (s, e) = (u32::from(self.start), u32::from(self.end));
        if e < s {
            0
        } else {
            u64::from(e - s) + 1
        }
    }

    /// Whether the range holds no address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `<host>`: a static lease, matched by client identifier or MAC address.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reservation {
    /// The client's MAC address.
    pub mac: Option<[u8; 6]>,
    /// The client identifier (option 61), as the client sends it (type byte included).
    pub client_id: Option<Vec<u8>>,
    /// The host name given to the client (option 12).
    pub name: Option<String>,
    /// The fixed address; `None`: the host gets a pool address (and its name and lease time).
    pub ip: Option<Ipv4Addr>,
    /// The lease time for this host.
    pub lease: LeaseDuration,
}

impl Reservation {
    /// Whether a client with this MAC and client identifier is this host. The client
    /// identifier is tried first; the MAC matches when the reservation names one.
    pub fn matches(&self, mac: [u8; 6], client_id: Option<&[u8]>) -> bool {
        if let (Some(want), Some(got)) = (&self.client_id, client_id) {
            if want.as_slice() == got {
                return true;
            }
        }
        self.mac == Some(mac)
    }
}

/// `<bootp>`: network boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootpConfig {
    /// The boot file (the `file` field and option 67).
    pub file: String,
    /// The TFTP server (`siaddr` and option 66); `None`: this server.
    pub server: Option<Ipv4Addr>,
}

/// Everything the server needs from the network definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The gateway address (`<ip address>`): the server identifier (option 54).
    pub server_ip: Ipv4Addr,
    /// The subnet prefix length.
    pub prefix: u8,
    /// The dynamic ranges, in order: the first free address is taken from the first range.
    pub ranges: Vec<PoolRange>,
    /// Static leases.
    pub hosts: Vec<Reservation>,
    /// Option 3 (`None`: omitted, so the guest gets no default route).
    pub router: Option<Ipv4Addr>,
    /// Option 6 (empty: omitted).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Options 15 and 119.
    pub domain: Option<String>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// `siaddr`/`file` and options 66/67.
    pub bootp: Option<BootpConfig>,
    /// How long a declined address stays out of the pool.
    pub decline_quarantine: Duration,
}

impl ServerConfig {
    /// A configuration serving `server_ip/prefix` from `ranges`, with the gateway as
    /// router and DNS server and nothing else.
    pub fn new(server_ip: Ipv4Addr, prefix: u8, ranges: Vec<PoolRange>) -> Self {
        Self {
            server_ip,
            prefix,
            ranges,
            hosts: Vec::new(),
            router: Some(server_ip),
            dns_servers: vec![server_ip],
            domain: None,
            mtu: None,
            bootp: None,
            decline_quarantine: DEFAULT_DECLINE_QUARANTINE,
        }
    }

    /// From the first IPv4 `<ip>` of the network that has a `<dhcp>` block; `None` if none.
    ///
    /// `router` is the gateway address unless the network is isolated (no `<forward>`)
    /// and has no `<route>`; `dns_servers` is `[gateway]` unless `<dns enable='no'>`;
    /// `domain` comes from `<domain name>` and `mtu` from `<mtu size>` (if it fits 16 bits).
    /// IPv6 `<host>`s are skipped.
    pub fn from_network(net: &Network) -> Option<Self> {
        let (ipdef, dhcp) = net
            .ips()
            .iter()
            .find_map(|ip| match (ip.family(), &ip.dhcp) {
                (IpFamily::V4, Some(d)) => Some((ip, d)),
                _ => None,
            })?;
        let IpAddr::V4(server_ip) = ipdef.address else {
            return None;
        };
        let ranges = dhcp
            .ranges
            .iter()
            .filter_map(|r| match (r.start, r.end) {
                (IpAddr::V4(start), IpAddr::V4(end)) => Some(PoolRange {
                    start,
                    end,
                    lease: r.lease_time().into(),
                }),
                _ => None,
            })
            .collect();
        let hosts = dhcp
            .hosts
            .iter()
            .filter_map(|h| {
                let IpAddr::V4(ip) = h.ip else { return None };
                Some(Reservation {
                    mac: h.mac.map(|m| m.0),
                    client_id: None,
                    name: h.name.clone(),
                    ip: Some(ip),
                    lease: h.lease_time().into(),
                })
            })
            .collect();
        let isolated = net.forward_mode() == ForwardMode::None && net.routes().is_empty();
        Some(Self {
            server_ip,
            prefix: ipdef.prefix_len().min(32),
            ranges,
            hosts,
            router: (!isolated).then_some(server_ip),
            dns_servers: if net.dns().enabled() {
                vec![server_ip]
            } else {
                Vec::new()
            },
            domain: net.domain().map(|d| d.name.clone()),
            mtu: net.mtu().and_then(|m| u16::try_from(m).ok()),
            bootp: dhcp.bootp.as_ref().map(|b| BootpConfig {
                file: b.file.clone(),
                server: match b.server {
                    Some(IpAddr::V4(s)) => Some(s),
                    _ => None,
                },
            }),
            decline_quarantine: DEFAULT_DECLINE_QUARANTINE,
        })
    }

    /// The subnet mask (option 1).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.server_ip) & mask_bits(self.prefix))
    }

    /// The broadcast address (option 28).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.server_ip) | !mask_bits(self.prefix))
    }

    /// Whether `ip` is inside the subnet.
    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let m = mask_bits(self.prefix);
        u32::from(ip) & m == u32::from(self.server_ip) & m
    }

    /// Whether `ip` is inside one of the ranges.
    pub fn in_ranges(&self, ip: Ipv4Addr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// The lease time of a dynamic address: its range's (the default if none).
    pub fn range_lease(&self, ip: Ipv4Addr) -> LeaseDuration {
        self.ranges
            .iter()
            .find(|r| r.contains(ip))
            .map_or(LeaseDuration::DEFAULT, |r| r.lease)
    }

    /// How many leases the server holds at most: the addresses in the ranges plus the
    /// reserved addresses outside them (dnsmasq's `dhcp-lease-max` as libvirt sets it).
    pub fn lease_limit(&self) -> usize {
        let pool: u64 = self.ranges.iter().map(PoolRange::len).sum();
        let outside = self
            .hosts
            .iter()
            .filter_map(|h| h.ip)
            .filter(|ip| !self.in_ranges(*ip))
            .count();
        usize::try_from(pool)
            .unwrap_or(usize::MAX)
            .saturating_add(outside)
    }
}

/// The netmask of `prefix` as a `u32` (prefixes past 32 count as 32).
fn mask_bits(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_libvirt_default() {
        let net = Network::libvirt_default();
        let c = ServerConfig::from_network(&net).unwrap();
        assert_eq!(c.server_ip, Ipv4Addr::new(192, 168, 122, 1));
        assert_eq!(c.prefix, 24);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(192, 168, 122, 255));
        assert_eq!(
            c.ranges,
            vec![PoolRange {
                start: Ipv4Addr::new(192, 168, 122, 2),
                end: Ipv4Addr::new(192, 168, 122, 254),
                lease: LeaseDuration::Finite(Duration::from_secs(3600)),
            }]
        );
        assert_eq!(c.router, Some(c.server_ip));
        assert_eq!(c.dns_servers, vec![c.server_ip]);
        assert_eq!(c.lease_limit(), 253);
        assert_eq!(c.decline_quarantine, Duration::from_secs(600));
    }

    #[test]
    fn from_isolated_network_with_hosts_and_options() {
        let net = Network::from_xml(
            "<network>
               <name>iso</name>
               <mtu size='9000'/>
               <domain name='lab.example'/>
               <dns enable='no'/>
               <ip family='ipv6' address='fd00::1' prefix='64'>
                 <dhcp><range start='fd00::10' end='fd00::20'/></dhcp>
               </ip>
               <ip address='10.0.5.1' netmask='255.255.255.0'>
                 <dhcp>
                   <range start='10.0.5.10' end='10.0.5.19'>
                     <lease expiry='90'/>
                   </range>
                   <host mac='52:54:00:aa:bb:cc' name='web' ip='10.0.5.5'>
                     <lease expiry='0'/>
                   </host>
                   <bootp file='pxelinux.0' server='10.0.5.2'/>
                 </dhcp>
               </ip>
             </network>",
        )
        .unwrap();
        let c = ServerConfig::from_network(&net).unwrap();
        assert_eq!(c.server_ip, Ipv4Addr::new(10, 0, 5, 1));
        assert_eq!(c.router, None, "isolated, no routes: no default route");
        assert!(c.dns_servers.is_empty());
        assert_eq!(c.domain.as_deref(), Some("lab.example"));
        assert_eq!(c.mtu, Some(9000));
        // libvirt's default unit is minutes.
        assert_eq!(
            c.ranges[0].lease,
            LeaseDuration::Finite(Duration::from_secs(5400))
        );
        assert_eq!(
            c.hosts,
            vec![Reservation {
                mac: Some([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]),
                client_id: None,
                name: Some("web".into()),
                ip: Some(Ipv4Addr::new(10, 0, 5, 5)),
                lease: LeaseDuration::Infinite,
            }]
        );
        assert_eq!(
            c.bootp,
            Some(BootpConfig {
                file: "pxelinux.0".into(),
                server: Some(Ipv4Addr::new(10, 0, 5, 2)),
            })
        );
        assert_eq!(c.lease_limit(), 11);
    }

    #[test]
    fn no_dhcp_no_config() {
        let net = Network::from_xml(
            "<network><name>n</name><ip address='10.1.0.1' prefix='16'/></network>",
        )
        .unwrap();
        assert_eq!(ServerConfig::from_network(&net), None);
    }

    #[test]
    fn lease_option_values() {
        assert_eq!(LeaseDuration::Infinite.option_secs(), 0xffff_ffff);
        assert_eq!(
            LeaseDuration::Finite(Duration::from_secs(10)).option_secs(),
            120
        );
        assert_eq!(
            LeaseDuration::Finite(Duration::from_secs(3600)).option_secs(),
            3600
        );
        assert_eq!(
            LeaseDuration::Finite(Duration::from_secs(u64::MAX)).option_secs(),
            0xffff_fffe
        );
    }
}
