//! The uplinks of a network: in route and open modes an AF_PACKET socket on the
//! forward interface and the router (`vnet_gateway::route`) that moves IPv4 between it
//! and the segment ([`open`]); in bridge mode the interface the segment is bridged to,
//! as a promiscuous port of the switch ([`open_bridge`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vnet_config::{ForwardMode, Network};
use vnet_gateway::route::v6::{Prefix6, RouterConfig6};
use vnet_gateway::route::{Prefix, Router, RouterConfig, UplinkRoute};
use vnet_gateway::GatewayConfig;
use vnet_ports::{PacketOptions, PacketPort};

use crate::Error;

/// The uplink of a routed network: its socket and the router that uses it.
#[derive(Debug)]
pub struct Uplink {
    /// The AF_PACKET socket on the forward interface.
    pub port: PacketPort,
    /// The router between the segment and that interface (the network takes it).
    pub router: Router,
}

/// `Err(Error::Config(..))` from a format string.
macro_rules! bail {
    ($($t:tt)*) => { return Err(Error::Config(format!($($t)*))) };
}

/// A route of the host's table (`/proc/net/route`).
struct HostRoute {
    iface: String,
    dst: Prefix,
    via: Option<Ipv4Addr>,
}

fn host_routes() -> Vec<HostRoute> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    let addr = |h: &str| {
        u32::from_str_radix(h, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_le_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dst, gw, flags, mask) =
                (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let mask = addr(mask)?;
            Some(HostRoute {
                iface: (*iface).to_owned(),
                dst: Prefix::new(addr(dst)?, u8::try_from(u32::from(mask).count_ones()).ok()?),
                via: (flags & 0x2 != 0).then(|| addr(gw)).flatten(),
            })
        })
        .collect()
}

/// The IPv6 side of the router on uplink `dev`: the network's IPv6 prefixes and
/// `<route family='ipv6'>`s, the uplink's global address (`/proc/net/if_inet6`), its
/// IPv6 routes (`/proc/net/ipv6_route`) and MTU. `None` without an IPv6 `<ip>` or
/// without a global address on the uplink.
fn ipv6_side(dev: &str, network: &Network, gw: &GatewayConfig) -> Option<RouterConfig6> {
    let v6 = gw.ipv6.as_ref()?;
    let hex = |h: &str| u128::from_str_radix(h, 16).ok().map(Ipv6Addr::from);
    let addrs = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let uplink_ip = addrs.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // address, index, prefix length, scope (00: global), flags, name
        (f.len() >= 6 && f[5] == dev && f[3] == "00")
            .then(|| hex(f[0]))
            .flatten()
    })?;
    let routes = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let uplink_routes = routes
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // dst, dst len, src, src len, next hop, metric, refs, use, flags, name
            if f.len() < 10 || f[9] != dev {
                return None;
            }
            let dst = hex(f[0])?;
            let len = u8::from_str_radix(f[1], 16).ok()?;
            let via = hex(f[4]).filter(|h| !h.is_unspecified());
            (!dst.is_multicast()).then_some((Prefix6::new(dst, len), via))
        })
        .collect();
    let uplink_mtu = std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .ok()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(1500);
    let behind_guests = network
        .routes()
        .iter()
        .filter_map(|r| match (r.address, r.gateway) {
            (IpAddr::V6(a), IpAddr::V6(g)) => Some((Prefix6::new(a, r.prefix_len()), g)),
            _ => None,
        })
        .collect();
    Some(RouterConfig6 {
        gateway_ip: v6.prefixes.first()?.addr,
        gateway_ll: gw.mac.ipv6_link_local(),
        segment: v6
            .prefixes
            .iter()
            .map(|p| Prefix6::new(p.addr, p.len))
            .collect(),
        behind_guests,
        uplink_ip,
        uplink_routes,
        uplink_mtu,
    })
}

/// Opens the uplink of a route/open network, if it is one: `<forward dev>`, else the
/// interface of the host's default route.
pub fn open(network: &Network, gw: Option<&GatewayConfig>) -> Result<Option<Uplink>, Error> {
    if !matches!(
        network.forward_mode(),
        ForwardMode::Route | ForwardMode::Open
    ) {
        return Ok(None);
    }
    let Some((gw, gw_ip)) = gw.and_then(|g| Some((g, g.ip?))) else {
        bail!(
            "network {:?}: mode {} needs an IPv4 <ip> (the gateway)",
            network.name(),
            network.forward_mode().as_str()
        );
    };
    let routes = host_routes();
    let (dev, element) = match network.forward().dev() {
        Some(d) => (d.to_owned(), "<forward dev>"),
        None => match routes.iter().find(|r| r.dst.len == 0) {
            Some(r) => (r.iface.clone(), "the default route's interface"),
            None => bail!(
                "network {:?}: no <forward dev> and no default route to take the uplink from",
                network.name()
            ),
        },
    };
    let port = PacketPort::open(&PacketOptions::new(&dev)).map_err(|e| Error::Port {
        what: format!("network {:?}: uplink {element} {dev:?}", network.name()),
        source: e,
    })?;
    let (mac, ip) = port.mac_ipv4().map_err(|e| Error::Port {
        what: format!("network {:?}: uplink {dev}", network.name()),
        source: e,
    })?;
    let Some(uplink_ip) = ip else {
        bail!(
            "network {:?}: uplink {element} {dev:?} has no IPv4 address (the router answers \
             ARP on it from that address)",
            network.name()
        );
    };
    let uplink_routes: Vec<UplinkRoute> = routes
        .iter()
        .filter(|r| r.iface == dev)
        .map(|r| UplinkRoute {
            dst: r.dst,
            via: r.via,
        })
        .collect();
    let segment = Prefix::new(gw_ip, gw.prefix);
    let behind_guests = network
        .routes()
        .iter()
        .filter_map(|r| match (r.address, r.gateway) {
            (IpAddr::V4(a), IpAddr::V4(g)) => Some((Prefix::new(a, r.prefix_len()), g)),
            _ => None,
        })
        .collect();
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1") {
        tracing::warn!(
            "net.ipv4.ip_forward is 1: the kernel may forward the same packets as \
             switchd (duplicates) where it has a route to {}/{}; set it to 0 in this namespace",
            gw_ip,
            gw.prefix
        );
    }
    tracing::info!(
        "{} mode: uplink {dev} ({uplink_ip}), {} route(s) on it",
        network.forward_mode().as_str(),
        uplink_routes.len()
    );
    let ipv6 = ipv6_side(&dev, network, gw);
    match &ipv6 {
        Some(v6) => tracing::info!(
            "{} mode: IPv6 through {dev} ({}), {} route(s) on it, MTU {}",
            network.forward_mode().as_str(),
            v6.uplink_ip,
            v6.uplink_routes.len(),
            v6.uplink_mtu
        ),
        None if gw.ipv6.is_some() => tracing::warn!(
            "{} mode: uplink {dev} has no global IPv6 address: the network's IPv6 stays on \
             the segment",
            network.forward_mode().as_str()
        ),
        None => {}
    }
    let router = Router::new(RouterConfig {
        gateway_mac: gw.mac.0,
        gateway_ip: gw_ip,
        segment,
        behind_guests,
        uplink_mac: mac,
        uplink_ip,
        uplink_routes,
        ipv6,
    });
    Ok(Some(Uplink { port, router }))
}

/// The uplink of a bridge-mode network, opened (promiscuous): the first `<forward>`
/// `<interface dev>` (or `<forward dev>`), else `<bridge name>`, which in this mode names
/// an existing interface, not one the driver makes. `None` in the other modes.
pub fn open_bridge(network: &Network) -> Result<Option<PacketPort>, Error> {
    if network.forward_mode() != ForwardMode::Bridge {
        return Ok(None);
    }
    let (dev, element) = match (network.forward().dev(), network.bridge_name()) {
        (Some(d), _) => (d, "<forward><interface dev>"),
        (None, Some(b)) => (b, "<bridge name>"),
        (None, None) => bail!(
            "network {:?}: <forward mode='bridge'> needs <bridge name> or <interface dev> naming the uplink",
            network.name()
        ),
    };
    if network.forward().interfaces.len() > 1 {
        tracing::info!(
            "<forward mode='bridge'> lists {} interfaces; only {dev} is attached (several uplinks to one segment would loop)",
            network.forward().interfaces.len()
        );
    }
    let mut opts = PacketOptions::new(dev);
    opts.promiscuous = true;
    let port = PacketPort::open(&opts).map_err(|e| Error::Port {
        what: format!("network {:?}: uplink {element}={dev:?}", network.name()),
        source: e,
    })?;
    tracing::info!("bridge mode: uplink {dev} attached (promiscuous)");
    Ok(Some(port))
}
