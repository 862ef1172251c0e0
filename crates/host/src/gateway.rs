//! The gateway's host side: the lease database that backs its DHCP server, the UDP
//! socket its DNS server forwards through, the host's resolvers, the NAT's host
//! sockets; and the gateway's tables as the control protocol shows them.
//!
//! The gateway itself (its DHCP, DNS and NAT engines) is sans IO, in the
//! `vnet_network::Network`; a driver gives it this host side through its `Io`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use vnet_config::{ForwardMode, Network};
use vnet_control::{DnsRecordRow, GatewayInfo, LeaseRow, NatFlowRow};

use vnet_dhcp::{Event, LeaseDb, Server, ServerConfig};
use vnet_gateway::{Gateway, GatewayConfig, Now};
use vnet_switch::MacAddr;

use crate::{DnsUpstream, Error, NatHost};

/// Where the host's resolvers are listed (used when the network has no forwarders).
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How often `/etc/resolv.conf` is checked for changes.
const RESOLV_CHECK: Duration = Duration::from_secs(2);

/// The gateway's host side: the lease database its DHCP server writes through, the
/// socket its DNS server forwards from, the host's resolvers, the NAT's host sockets.
/// The gateway itself is in the [`vnet_network::Network`].
#[derive(Debug)]
pub struct GatewayHost {
    db: Option<LeaseDb>,
    db_path: PathBuf,
    /// The socket DNS queries are forwarded from (in the driver's own namespace).
    pub upstream: Option<DnsUpstream>,
    resolv: Option<String>,
    resolv_checked: std::time::Instant,
    network: String,
    /// The host sockets of NAT flows (NAT mode only).
    nat_host: Option<NatHost>,
    /// The DHCPv6 leases the database held at start, until the network takes them.
    loaded6: Vec<vnet_dhcp::v6::Lease6>,
}

/// The DHCP server's counters by name, for `net-info`, `stats` and metrics.
fn dhcp_stats_map(server: &Server) -> BTreeMap<String, u64> {
    server
        .stats()
        .counters()
        .map(|(k, v)| (k.into_owned(), v))
        .collect()
}

/// The DNS server's counters by name, for `net-info`.
fn dns_stats_map(st: &vnet_dns::Stats) -> BTreeMap<String, u64> {
    st.counters().map(|(k, v)| (k.into_owned(), v)).collect()
}

/// The nameservers of a resolv.conf text, port 53.
fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl GatewayHost {
    /// The host side of `net`'s gateway: its lease database under `state_dir` (when the
    /// network serves DHCP; the leases it holds are returned), its DNS forwarding
    /// socket (when it serves DNS), its NAT host sockets and port forwards (NAT mode).
    pub fn open(
        cfg: &GatewayConfig,
        net: &Network,
        state_dir: &std::path::Path,
        registry: mio::Registry,
    ) -> Result<(Self, Vec<vnet_dhcp::Lease>), Error> {
        let db_path = state_dir
            .join("leases")
            .join(format!("{}.leases", net.name()));
        let mut loaded6 = Vec::new();
        let v6 = vnet_dhcp::v6::Config6::from_network(net, cfg.mac.0, None).is_some();
        // one database for both families, when either serves DHCP
        let (db, leases) = match ServerConfig::from_network(net).is_some() || v6 {
            true => {
                if let Some(dir) = db_path.parent() {
                    vnet_control::store::create_private_dir(dir)
                        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                }
                let (db, leases) = LeaseDb::open(&db_path).map_err(|e| Error::Leases {
                    what: format!("opening the lease database {}", db_path.display()),
                    source: e,
                })?;
                loaded6 = db.leases6().cloned().collect();
                tracing::info!(
                    "DHCP on {}: {} lease(s) loaded from {}{}",
                    cfg.addresses(),
                    leases.len(),
                    db_path.display(),
                    if v6 {
                        format!(", {} DHCPv6 lease(s)", loaded6.len())
                    } else {
                        String::new()
                    }
                );
                (Some(db), leases)
            }
            false => (None, Vec::new()),
        };
        let upstream = match vnet_dns::DnsConfig::from_network(net) {
            Some(_) => Some(
                DnsUpstream::open()
                    .map_err(|e| Error::io("binding the DNS forwarding socket".into(), e))?,
            ),
            None => None,
        };
        let nat_host = if net.forward_mode() == ForwardMode::Nat {
            tracing::info!(
                "NAT: guest flows leave through host sockets{}",
                if net.host_access() {
                    "; without a host port, the gateway address reaches the host's loopback"
                } else {
                    ""
                }
            );
            let mut host = NatHost::new(registry, net.forward().nat.as_ref());
            for f in net.port_forwards() {
                host.add_forward(f)
                    .map_err(|e| Error::io(format!("forwarding {f}"), e))?;
                tracing::info!("port forward {f}");
            }
            Some(host)
        } else {
            None
        };
        let host = Self {
            db,
            db_path,
            upstream,
            resolv: None,
            resolv_checked: std::time::Instant::now(),
            network: net.name().to_owned(),
            nat_host,
            loaded6,
        };
        Ok((host, leases))
    }

    /// Starts the DNS server on the host's resolvers (when it serves DNS).
    pub fn start(&mut self, gw: &mut Gateway) {
        if gw.dns().is_some() {
            tracing::info!("DNS on {} port 53 (UDP and TCP)", gw.config().addresses());
            self.reload_resolv_conf(gw, std::time::Instant::now());
        }
    }

    /// Reads the host's resolvers (the DNS server's upstreams when the network names no
    /// forwarder) if `/etc/resolv.conf` changed.
    fn reload_resolv_conf(&mut self, gw: &mut Gateway, now: std::time::Instant) {
        self.resolv_checked = now;
        let text = match std::fs::read_to_string(RESOLV_CONF) {
            Ok(t) => t,
            // gone: the host has no resolvers now
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            // unreadable (out of descriptors, a permission change): keep the resolvers
            // read last, rather than leave the network with none
            Err(e) => {
                tracing::warn!(
                    "DNS({}): cannot read {RESOLV_CONF} ({e}); keeping the resolvers read before",
                    self.network
                );
                return;
            }
        };
        if self.resolv.as_deref() == Some(text.as_str()) {
            return;
        }
        let ups = parse_resolv_conf(&text);
        tracing::info!(
            "DNS({}): host resolvers from {RESOLV_CONF}: {}",
            self.network,
            if ups.is_empty() {
                "none".to_owned()
            } else {
                ups.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if let Some(dns) = gw.dns_mut() {
            dns.set_system_upstreams(ups);
        }
        self.resolv = Some(text);
    }

    /// Reads the upstream servers' answers from the forwarding socket, each to
    /// `answer` (the network's `handle_dns_upstream`).
    pub fn on_upstream_readable(&mut self, answer: impl FnMut(SocketAddr, &[u8])) {
        let Some(sock) = self.upstream.as_ref() else {
            return;
        };
        sock.recv_all(answer);
    }

    /// The DNS records the network serves, for `net-dns-records`.
    pub fn dns_records(gw: &Gateway) -> Vec<DnsRecordRow> {
        gw.dns()
            .map(|d| {
                d.records()
                    .into_iter()
                    .map(|r| DnsRecordRow {
                        name: r.name,
                        rtype: r.rtype,
                        value: r.value,
                        source: r.source.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Identity and counters, for `net-info`.
    pub fn info(&self, gw: &Gateway) -> GatewayInfo {
        let st = gw.stats();
        let cfg = gw.config();
        GatewayInfo {
            ip: cfg.ip.map_or_else(String::new, |ip| ip.to_string()),
            mac: cfg.mac.to_string(),
            dhcp: gw.dhcp().is_some(),
            leases: gw.dhcp().map_or(0, |s| s.leases().count()),
            arp_replies: st.arp_replies,
            echo_replies: st.echo_replies,
            dhcp_in: st.dhcp_in,
            dhcp_out: st.dhcp_out,
            dhcp_dropped: st.dhcp_dropped,
            malformed: st.malformed,
            dhcp_stats: {
                let mut m = gw.dhcp().map(dhcp_stats_map).unwrap_or_default();
                if let Some(s6) = gw.dhcp6() {
                    m.extend(s6.stats().counters().map(|(k, v)| (k.to_owned(), v)));
                }
                m
            },
            nat: gw.nat().map(|n| {
                let mut m: BTreeMap<String, u64> = n
                    .stats()
                    .counters()
                    .map(|(k, v)| (k.into_owned(), v))
                    .collect();
                if let Some(h) = &self.nat_host {
                    m.insert("host_sockets".to_owned(), h.sockets() as u64);
                    m.insert("open_failures".to_owned(), h.open_failures);
                }
                m
            }),
            ipv6: gw
                .ndp()
                .map(|n| {
                    let c = n.stats();
                    c.counters().map(|(k, v)| (k.to_owned(), v)).collect()
                })
                .unwrap_or_default(),
            dns: gw.dns().is_some(),
            dns_stats: gw
                .dns()
                .map(|d| {
                    let mut m = dns_stats_map(&d.stats());
                    m.insert("udp_in".into(), st.dns_udp_in);
                    m.insert("udp_out".into(), st.dns_udp_out);
                    m.insert("tcp_connections".into(), gw.dns_tcp_connections() as u64);
                    m.insert("tcp_lost".into(), st.dns_tcp_lost);
                    m.insert("tcp_refused".into(), st.dns_tcp_refused);
                    m.insert("no_neighbour".into(), st.dns_no_neighbour);
                    m
                })
                .unwrap_or_default(),
        }
    }

    /// The active leases, for `net-dhcp-leases`.
    pub fn lease_rows(gw: &Gateway) -> Vec<LeaseRow> {
        let prefix = gw.config().prefix;
        let mut rows: Vec<LeaseRow> = gw
            .dhcp()
            .into_iter()
            .flat_map(Server::leases)
            .map(|l| LeaseRow {
                expiry: l.expires.map(|t| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                }),
                mac: MacAddr(l.mac).to_string(),
                protocol: "ipv4".to_owned(),
                ip: format!("{}/{prefix}", l.ip),
                hostname: l.hostname.clone(),
                client_id: l.client_id.as_ref().map(|id| {
                    id.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                }),
            })
            .collect();
        // the prefix length of the IPv6 <ip> a lease is in
        let prefix6 = |ip: std::net::Ipv6Addr| {
            let inside = |p: &&vnet_gateway::Ipv6Prefix| {
                let m = u128::MAX.checked_shl(128 - u32::from(p.len)).unwrap_or(0);
                u128::from(p.addr) & m == u128::from(ip) & m
            };
            gw.ndp()
                .and_then(|n| n.config().prefixes.iter().find(inside).map(|p| p.len))
                .unwrap_or(64)
        };
        for l in gw
            .dhcp6()
            .into_iter()
            .flat_map(vnet_dhcp::v6::Server6::leases)
        {
            // the MAC a DUID-LLT (type 1) or DUID-LL (type 3) of Ethernet carries
            let mac = match l.duid.as_slice() {
                [0, 1, 0, 1, _, _, _, _, m @ ..] | [0, 3, 0, 1, m @ ..] if m.len() == 6 => {
                    <[u8; 6]>::try_from(m).ok().map(MacAddr)
                }
                _ => None,
            };
            rows.push(LeaseRow {
                expiry: l.expires.map(|t| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                }),
                mac: mac.map(|m| m.to_string()).unwrap_or_default(),
                protocol: "ipv6".to_owned(),
                ip: format!("{}/{}", l.ip, prefix6(l.ip)),
                hostname: l.hostname.clone(),
                client_id: Some(
                    l.duid
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
            });
        }
        rows.sort_by(|a, b| (&a.protocol, &a.mac).cmp(&(&b.protocol, &b.mac)));
        rows
    }

    /// Applies a changed definition (live net-update) to the DHCP and DNS servers.
    pub fn reconfigure(gw: &mut Gateway, net: &Network) {
        if let (Some(server), Some(sc)) = (gw.dhcp_mut(), ServerConfig::from_network(net)) {
            server.set_config(sc);
        }
        if let (Some(dns), Some(dc)) = (gw.dns_mut(), vnet_dns::DnsConfig::from_network(net)) {
            dns.set_config(dc);
        }
    }

    /// Logs a DHCP event and persists a lease change (called by the network before
    /// the reply that follows it is sent).
    pub fn dhcp_event(&mut self, ev: &Event) {
        if let Some(line) = ev.log_line(&self.network) {
            tracing::info!("{line}");
        }
        let r = match ev {
            Event::LeaseGranted(l) => self.db.as_mut().map(|db| db.grant(l)),
            Event::LeaseReleased(l) | Event::LeaseExpired(l) => {
                self.db.as_mut().map(|db| db.remove(l.mac, l.ip))
            }
            _ => None,
        };
        if let Some(Err(e)) = r {
            tracing::info!("lease database {}: {e}", self.db_path.display());
        }
    }

    /// The DHCPv6 leases loaded at start, for the network's `Options::leases6`.
    pub fn take_leases6(&mut self) -> Vec<vnet_dhcp::v6::Lease6> {
        std::mem::take(&mut self.loaded6)
    }

    /// Logs a DHCPv6 lease change and persists it (called by the network before the
    /// reply that follows it is sent).
    pub fn dhcp6_event(&mut self, ev: &vnet_dhcp::v6::Event6) {
        use vnet_dhcp::v6::Event6;
        tracing::info!("{}", ev.log_line(&self.network));
        let r = match ev {
            Event6::Granted(l) => self.db.as_mut().map(|db| db.grant6(l)),
            Event6::Released(l) | Event6::Expired(l) => {
                self.db.as_mut().map(|db| db.remove6(&l.duid, l.iaid, l.ip))
            }
            _ => None,
        };
        if let Some(Err(e)) = r {
            tracing::warn!("lease database {}: {e}", self.db_path.display());
        }
    }

    /// Forwards a DNS query upstream.
    pub fn dns_query(&self, to: SocketAddr, payload: &[u8]) {
        if let Some(sock) = self.upstream.as_ref() {
            sock.send(to, payload);
        }
    }

    /// Does the NAT's host-side work.
    pub fn run_nat(&mut self, nat: &mut vnet_nat::Nat, now: std::time::Instant) {
        if let Some(host) = self.nat_host.as_mut() {
            host.run(nat, now);
        }
    }

    /// The network's name (for log lines).
    pub fn network(&self) -> &str {
        &self.network
    }

    /// A NAT host socket (a flow's, a forwarded port's, the shared raw ICMP one) is
    /// ready.
    pub fn on_nat_event(&mut self, gw: &mut Gateway, source: crate::Source, now: Now) {
        if let (Some(host), Some(nat)) = (self.nat_host.as_mut(), gw.nat_mut()) {
            host.handle(nat, now.mono, source);
        }
    }

    /// Opens a port forward's host ports.
    pub fn add_forward(&mut self, fwd: &vnet_config::PortForward) -> std::io::Result<()> {
        match self.nat_host.as_mut() {
            Some(h) => h.add_forward(fwd),
            None => Err(std::io::Error::other("port forwards need NAT mode")),
        }
    }

    /// Closes a port forward's host ports.
    pub fn remove_forward(&mut self, fwd: &vnet_config::PortForward) {
        if let Some(h) = self.nat_host.as_mut() {
            h.remove_forward(fwd);
        }
    }

    /// The NAT flows, for `nat-flows`.
    pub fn nat_flows(gw: &Gateway) -> Vec<NatFlowRow> {
        let now = std::time::Instant::now();
        gw.nat()
            .map(|n| {
                n.flows(now)
                    .into_iter()
                    .map(|f| NatFlowRow {
                        id: f.id.0,
                        proto: f.proto.as_str().to_owned(),
                        guest: f.guest.to_string(),
                        remote: f.remote.to_string(),
                        target: f.target.to_string(),
                        inbound: f.inbound,
                        state: f.state.to_owned(),
                        bytes_out: f.bytes_out,
                        bytes_in: f.bytes_in,
                        age_secs: f.age.as_secs(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How long until the host's resolvers are looked at again.
    pub fn poll_timeout(&self, gw: &Gateway, now: Now) -> Option<Duration> {
        gw.dns()
            .map(|_| (self.resolv_checked + RESOLV_CHECK).saturating_duration_since(now.mono))
    }

    /// Re-reads the host's resolvers when it is time.
    pub fn handle_timeout(&mut self, gw: &mut Gateway, now: Now) {
        if gw.dns().is_some() && now.mono >= self.resolv_checked + RESOLV_CHECK {
            self.reload_resolv_conf(gw, now.mono);
        }
    }
}
