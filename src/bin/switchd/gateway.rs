//! The gateway port: the network's own address on the segment (ARP, ping, DHCP, DNS),
//! the lease database that backs its DHCP server, and the UDP socket its DNS server
//! forwards through.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use vnet_config::{ForwardMode, Network};
use vnet_control::{DnsRecordRow, GatewayInfo, LeaseRow, NatFlowRow};

use vnet_dhcp::{Event, LeaseDb, Server, ServerConfig};
use vnet_gateway::{Gateway, GatewayConfig, Now};
use vnet_host::{DnsUpstream, NatHost};
use vnet_switch::{MacAddr, PortId};

/// Where the host's resolvers are listed (used when the network has no forwarders).
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How often `/etc/resolv.conf` is checked for changes.
const RESOLV_CHECK: Duration = Duration::from_secs(2);

/// The gateway as a port of the switch.
pub(crate) struct GatewayPort {
    pub(crate) id: PortId,
    pub(crate) gw: Gateway,
    db: Option<LeaseDb>,
    db_path: PathBuf,
    /// The socket DNS queries are forwarded from (in switchd's own namespace).
    pub(crate) upstream: Option<DnsUpstream>,
    resolv: Option<String>,
    resolv_checked: std::time::Instant,
    network: String,
    /// The host sockets of NAT flows (NAT mode only).
    nat_host: Option<NatHost>,
    /// Lease events for `net-event` subscribers: (kind, detail).
    pub(crate) events: Vec<(&'static str, String)>,
}

/// Where the gateway lives: the first IPv4 `<ip>` of a network that has a bridge of its
/// own (not bridge mode), with the network's MAC.
pub(crate) fn gateway_config(net: &Network) -> Option<GatewayConfig> {
    if net.forward_mode() == ForwardMode::Bridge {
        return None;
    }
    let mac = MacAddr(net.mac_addr()?.0);
    let (ip, prefix) = net.ips().iter().find_map(|ip| match ip.address {
        IpAddr::V4(a) => Some((a, ip.prefix_len())),
        IpAddr::V6(_) => None,
    })?;
    let mtu = net
        .mtu()
        .and_then(|m| u16::try_from(m).ok())
        .unwrap_or(1500);
    Some(GatewayConfig {
        mac,
        ip,
        prefix,
        mtu,
    })
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

impl GatewayPort {
    /// The gateway of `net` on switch port `id`, its DHCP server loaded from the lease
    /// database under `state_dir` (when the network serves DHCP).
    pub(crate) fn new(
        id: PortId,
        cfg: GatewayConfig,
        net: &Network,
        state_dir: &std::path::Path,
        registry: mio::Registry,
        nat_limits: &vnet_nat::Limits,
    ) -> Result<Self> {
        let db_path = state_dir
            .join("leases")
            .join(format!("{}.leases", net.name()));
        let (db, server) = match ServerConfig::from_network(net) {
            Some(sc) => {
                if let Some(dir) = db_path.parent() {
                    vnet_control::store::create_private_dir(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let (db, leases) = LeaseDb::open(&db_path)
                    .with_context(|| format!("opening the lease database {}", db_path.display()))?;
                log!(
                    "DHCP on {}/{}: {} lease(s) loaded from {}",
                    cfg.ip,
                    cfg.prefix,
                    leases.len(),
                    db_path.display()
                );
                (Some(db), Some(Server::new(sc, leases, SystemTime::now())))
            }
            None => (None, None),
        };
        let names: Vec<(Ipv4Addr, String)> = server
            .iter()
            .flat_map(Server::leases)
            .filter_map(|l| Some((l.ip, l.hostname.clone()?)))
            .collect();
        // Upstream query ids come from the server's PRNG: seed it from the OS (std's
        // per-process random hash keys).
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let dns =
            vnet_dns::DnsConfig::from_network(net).map(|c| vnet_dns::Server::with_seed(c, seed));
        let upstream = match &dns {
            Some(_) => Some(DnsUpstream::open().context("binding the DNS forwarding socket")?),
            None => None,
        };
        let mut gw = Gateway::new(cfg.clone(), server, dns, std::time::Instant::now());
        if let Some(dns) = gw.dns_mut() {
            for (ip, name) in &names {
                dns.set_lease_name(*ip, name);
            }
        }
        gw.announce();
        let nat_host = if net.forward_mode() == ForwardMode::Nat {
            let mut nc = vnet_nat::NatConfig::new(cfg.mac.0, cfg.ip, cfg.prefix);
            nc.mtu = usize::from(cfg.mtu);
            nc.host_access = net.host_access();
            nc.limits = nat_limits.clone();
            gw.set_nat(vnet_nat::Nat::new(nc, std::time::Instant::now(), seed));
            log!(
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
                    .with_context(|| format!("forwarding {f}"))?;
                log!("port forward {f}");
            }
            Some(host)
        } else {
            None
        };
        let mut port = Self {
            id,
            gw,
            db,
            db_path,
            upstream,
            resolv: None,
            resolv_checked: std::time::Instant::now(),
            network: net.name().to_owned(),
            nat_host,
            events: Vec::new(),
        };
        if port.gw.dns().is_some() {
            log!("DNS on {}:53 (UDP and TCP)", port.gw.config().ip);
            port.reload_resolv_conf(std::time::Instant::now());
        }
        Ok(port)
    }

    /// Reads the host's resolvers (the DNS server's upstreams when the network names no
    /// forwarder) if `/etc/resolv.conf` changed.
    fn reload_resolv_conf(&mut self, now: std::time::Instant) {
        self.resolv_checked = now;
        let text = match std::fs::read_to_string(RESOLV_CONF) {
            Ok(t) => t,
            // gone: the host has no resolvers now
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            // unreadable (out of descriptors, a permission change): keep the resolvers
            // read last, rather than leave the network with none
            Err(e) => {
                warn!(
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
        log!(
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
        if let Some(dns) = self.gw.dns_mut() {
            dns.set_system_upstreams(ups);
        }
        self.resolv = Some(text);
    }

    /// Reads the upstream servers' answers from the forwarding socket.
    pub(crate) fn on_upstream_readable(&mut self, now: Now) {
        let Some(sock) = self.upstream.as_ref() else {
            return;
        };
        let gw = &mut self.gw;
        sock.recv_all(|from, payload| gw.handle_dns_upstream(now, from, payload));
    }

    /// Sends the queries the DNS server forwards.
    fn send_upstream(&mut self) {
        let Some(dns) = self.gw.dns_mut() else {
            return;
        };
        while let Some(q) = dns.poll_upstream() {
            if let Some(sock) = self.upstream.as_ref() {
                sock.send(q.to, &q.payload);
            }
        }
    }

    /// The DNS records the network serves, for `net-dns-records`.
    pub(crate) fn dns_records(&self) -> Vec<DnsRecordRow> {
        self.gw
            .dns()
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
    pub(crate) fn info(&self) -> GatewayInfo {
        let st = self.gw.stats();
        let cfg = self.gw.config();
        GatewayInfo {
            ip: cfg.ip.to_string(),
            mac: cfg.mac.to_string(),
            dhcp: self.gw.dhcp().is_some(),
            leases: self.gw.dhcp().map_or(0, |s| s.leases().count()),
            arp_replies: st.arp_replies,
            echo_replies: st.echo_replies,
            dhcp_in: st.dhcp_in,
            dhcp_out: st.dhcp_out,
            dhcp_dropped: st.dhcp_dropped,
            malformed: st.malformed,
            dhcp_stats: self.gw.dhcp().map(dhcp_stats_map).unwrap_or_default(),
            nat: self.gw.nat().map(|n| {
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
            dns: self.gw.dns().is_some(),
            dns_stats: self
                .gw
                .dns()
                .map(|d| {
                    let mut m = dns_stats_map(&d.stats());
                    m.insert("udp_in".into(), st.dns_udp_in);
                    m.insert("udp_out".into(), st.dns_udp_out);
                    m.insert(
                        "tcp_connections".into(),
                        self.gw.dns_tcp_connections() as u64,
                    );
                    m.insert("tcp_lost".into(), st.dns_tcp_lost);
                    m.insert("tcp_refused".into(), st.dns_tcp_refused);
                    m.insert("no_neighbour".into(), st.dns_no_neighbour);
                    m
                })
                .unwrap_or_default(),
        }
    }

    /// The active leases, for `net-dhcp-leases`.
    pub(crate) fn lease_rows(&self) -> Vec<LeaseRow> {
        let prefix = self.gw.config().prefix;
        let mut rows: Vec<LeaseRow> = self
            .gw
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
        rows.sort_by(|a, b| a.mac.cmp(&b.mac));
        rows
    }

    /// Applies a changed definition (live net-update) to the DHCP and DNS servers.
    pub(crate) fn reconfigure(&mut self, net: &Network) {
        if let (Some(server), Some(sc)) = (self.gw.dhcp_mut(), ServerConfig::from_network(net)) {
            server.set_config(sc);
        }
        if let (Some(dns), Some(dc)) = (self.gw.dns_mut(), vnet_dns::DnsConfig::from_network(net)) {
            dns.set_config(dc);
        }
    }

    /// Logs and persists the DHCP server's events (a lease is on disk before its ACK
    /// leaves: called before any frame the gateway queued is sent), gives lease names to
    /// the DNS server, logs the DNS server's events and sends its forwarded queries.
    pub(crate) fn drain_events(&mut self, network: &str, now: Now) {
        let mut names: Vec<(Ipv4Addr, Option<String>)> = Vec::new();
        if let Some(server) = self.gw.dhcp_mut() {
            while let Some(ev) = server.poll_event() {
                if let Some(line) = ev.log_line(network) {
                    log!("{line}");
                }
                let detail = |l: &vnet_dhcp::Lease| {
                    format!(
                        "{} {}{}",
                        l.ip,
                        MacAddr(l.mac),
                        l.hostname
                            .as_deref()
                            .map(|h| format!(" {h}"))
                            .unwrap_or_default()
                    )
                };
                match &ev {
                    Event::LeaseGranted(l) => self.events.push(("lease-granted", detail(l))),
                    Event::LeaseReleased(l) => self.events.push(("lease-released", detail(l))),
                    Event::LeaseExpired(l) => self.events.push(("lease-expired", detail(l))),
                    _ => {}
                }
                if self.events.len() > 1024 {
                    self.events.remove(0);
                }
                let r = match &ev {
                    Event::LeaseGranted(l) => {
                        names.push((l.ip, l.hostname.clone()));
                        self.db.as_mut().map(|db| db.grant(l))
                    }
                    Event::LeaseReleased(l) | Event::LeaseExpired(l) => {
                        names.push((l.ip, None));
                        self.db.as_mut().map(|db| db.remove(l.mac, l.ip))
                    }
                    _ => None,
                };
                if let Some(Err(e)) = r {
                    log!("lease database {}: {e}", self.db_path.display());
                }
            }
        }
        if let Some(dns) = self.gw.dns_mut() {
            for (ip, name) in names {
                match name {
                    Some(n) => dns.set_lease_name(ip, &n),
                    None => dns.remove_lease_name(ip),
                }
            }
            while let Some(ev) = dns.poll_event() {
                log!("{}", ev.log_line(network));
            }
        }
        self.send_upstream();
        if let (Some(host), Some(nat)) = (self.nat_host.as_mut(), self.gw.nat_mut()) {
            host.run(nat, now.mono);
        }
    }

    /// A NAT host socket (a flow's, a forwarded port's, the shared raw ICMP one) is
    /// ready.
    pub(crate) fn on_nat_event(&mut self, source: vnet_host::Source, now: Now) {
        if let (Some(host), Some(nat)) = (self.nat_host.as_mut(), self.gw.nat_mut()) {
            host.handle(nat, now.mono, source);
        }
    }

    /// Opens a port forward's host ports.
    pub(crate) fn add_forward(&mut self, fwd: &vnet_config::PortForward) -> std::io::Result<()> {
        match self.nat_host.as_mut() {
            Some(h) => h.add_forward(fwd),
            None => Err(std::io::Error::other("port forwards need NAT mode")),
        }
    }

    /// Closes a port forward's host ports.
    pub(crate) fn remove_forward(&mut self, fwd: &vnet_config::PortForward) {
        if let Some(h) = self.nat_host.as_mut() {
            h.remove_forward(fwd);
        }
    }

    /// The NAT flows, for `nat-flows`.
    pub(crate) fn nat_flows(&self) -> Vec<NatFlowRow> {
        let now = std::time::Instant::now();
        self.gw
            .nat()
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

    /// How long until the gateway next has timed work (DHCP expiries, DNS timeouts,
    /// TCP timers, the resolv.conf check).
    pub(crate) fn poll_timeout(&mut self, now: Now) -> Option<Duration> {
        let dhcp = self
            .gw
            .dhcp()
            .and_then(Server::poll_timeout)
            .map(|t| t.duration_since(now.wall).unwrap_or(Duration::ZERO));
        let other = self
            .gw
            .poll_timeout(now)
            .map(|t| t.saturating_duration_since(now.mono));
        let resolv = self
            .gw
            .dns()
            .map(|_| (self.resolv_checked + RESOLV_CHECK).saturating_duration_since(now.mono));
        [dhcp, other, resolv].into_iter().flatten().min()
    }

    /// Does the gateway's timed work that is due.
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        if let Some(s) = self.gw.dhcp_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now.wall) {
                s.handle_timeout(now.wall);
            }
        }
        if self.gw.poll_timeout(now).is_some_and(|t| t <= now.mono) {
            self.gw.handle_timeout(now);
        }
        if self.gw.dns().is_some() && now.mono >= self.resolv_checked + RESOLV_CHECK {
            self.reload_resolv_conf(now.mono);
        }
    }
}
