//! The gateway port: the network's own address on the segment (ARP, ping, DHCP), and the
//! lease database that backs its DHCP server.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use vnet_config::{ForwardMode, Network};
use vnet_control::{GatewayInfo, LeaseRow};
use vnet_dhcp::{Event, LeaseDb, Server, ServerConfig};
use vnet_gateway::{Gateway, GatewayConfig};
use vnet_switch::{MacAddr, PortId};

/// The gateway as a port of the switch.
pub(crate) struct GatewayPort {
    pub(crate) id: PortId,
    pub(crate) gw: Gateway,
    db: Option<LeaseDb>,
    db_path: PathBuf,
}

/// Where the gateway lives: the first IPv4 `<ip>` of a network that has a bridge of its
/// own (not bridge mode), with the network's MAC.
pub(crate) fn gateway_config(net: &Network) -> Option<GatewayConfig> {
    if net.forward_mode() == ForwardMode::Bridge {
        return None;
    }
    let mac = MacAddr(net.mac_addr()?.0);
    let (ip, prefix) = net.ips().iter().find_map(|ip| match ip.address {
        std::net::IpAddr::V4(a) => Some((a, ip.prefix_len())),
        std::net::IpAddr::V6(_) => None,
    })?;
    Some(GatewayConfig { mac, ip, prefix })
}

impl GatewayPort {
    /// The gateway of `net` on switch port `id`, its DHCP server loaded from the lease
    /// database under `state_dir` (when the network serves DHCP).
    pub(crate) fn new(
        id: PortId,
        cfg: GatewayConfig,
        net: &Network,
        state_dir: &std::path::Path,
    ) -> Result<Self> {
        let db_path = state_dir
            .join("leases")
            .join(format!("{}.leases", net.name()));
        let (db, server) = match ServerConfig::from_network(net) {
            Some(sc) => {
                if let Some(dir) = db_path.parent() {
                    std::fs::create_dir_all(dir)
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
        let mut gw = Gateway::new(cfg, server);
        gw.announce();
        Ok(Self {
            id,
            gw,
            db,
            db_path,
        })
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

    /// Applies a changed definition (live net-update) to the DHCP server.
    pub(crate) fn reconfigure(&mut self, net: &Network) {
        if let (Some(server), Some(sc)) = (self.gw.dhcp_mut(), ServerConfig::from_network(net)) {
            server.set_config(sc);
        }
    }

    /// Logs and persists the DHCP server's events. Called before any frame the gateway
    /// queued is sent, so a lease is on disk before its ACK leaves.
    pub(crate) fn drain_events(&mut self, network: &str) {
        let Some(server) = self.gw.dhcp_mut() else {
            return;
        };
        while let Some(ev) = server.poll_event() {
            if let Some(line) = ev.log_line(network) {
                log!("{line}");
            }
            let Some(db) = self.db.as_mut() else { continue };
            let r = match &ev {
                Event::LeaseGranted(l) => db.grant(l),
                Event::LeaseReleased(l) | Event::LeaseExpired(l) => db.remove(l.mac, l.ip),
                _ => continue,
            };
            if let Err(e) = r {
                log!("lease database {}: {e}", self.db_path.display());
            }
        }
    }

    /// When the DHCP server next has timed work.
    pub(crate) fn poll_timeout(&self) -> Option<SystemTime> {
        self.gw.dhcp().and_then(Server::poll_timeout)
    }

    /// Does the DHCP server's timed work (lease expiry, quarantine end).
    pub(crate) fn handle_timeout(&mut self, now: SystemTime) {
        if let Some(s) = self.gw.dhcp_mut() {
            s.handle_timeout(now);
        }
    }
}
