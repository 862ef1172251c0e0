//! Opening the device a `port-add` asks for, and the host's own port on the segment.

use vnet_control::{PortAdd, PortKind};
use vnet_gateway::GatewayConfig;
use vnet_ports::{
    NetnsRef, PacketOptions, PacketPort, Port, Tap, TapOptions, VhostUserMode, VhostUserPort,
};
use vnet_switch::MacAddr;

/// Why a `port-add` was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortAddError {
    /// The request's arguments are wrong or do not go together.
    #[error("{0}")]
    Invalid(String),
    /// The device could not be made or attached.
    #[error("{0}")]
    Open(#[from] vnet_ports::Error),
}

/// A `port-add`'s device, opened.
#[derive(Debug)]
pub struct Opened {
    /// The device.
    pub dev: Box<dyn Port>,
    /// The MAC the request gave the guest (port security pins it).
    pub mac: Option<MacAddr>,
    /// The port's name when the request gave none and the device's name does not fit
    /// (a vhost-user port: its socket's file name without the extension).
    pub name: Option<String>,
}

/// Checks what a `port-add` asks for on its own (the network's checks, such as the
/// portgroup and whether the name is taken, are the caller's) and opens its device: a
/// TAP made (or attached to, `--attach`), in a namespace with `--netns`, or an existing
/// interface through AF_PACKET (`netdev`, promiscuous), or a vhost-user socket
/// listened on (`socket`) or dialled (`connect`).
pub fn open_port(req: &PortAdd) -> Result<Opened, PortAddError> {
    let invalid = |s: &str| Err(PortAddError::Invalid(s.to_owned()));
    if req.secure && req.trusted {
        return invalid("a port is either --secure or --trusted");
    }
    if let Some(n) = &req.name {
        if n.is_empty() || n.len() > 64 || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let why = format!("port name {n:?} must be 1 to 64 characters without white space");
            return Err(PortAddError::Invalid(why));
        }
    }
    if req.ifname.is_some() && req.netns.is_none() && req.name.is_some() && req.ifname != req.name {
        return invalid("--ifname without --netns: give only --name (the interface name)");
    }
    let mac = match &req.mac {
        None => None,
        Some(m) => {
            let mac: MacAddr = m
                .parse()
                .map_err(|e| PortAddError::Invalid(format!("{e}")))?;
            if !mac.is_unicast() {
                let why = format!("MAC address {mac} is not a unicast station address");
                return Err(PortAddError::Invalid(why));
            }
            Some(mac)
        }
    };
    if req.kind == Some(PortKind::VhostUser) {
        return open_vhost_user(req, mac);
    }
    if req.socket.is_some() || req.connect.is_some() {
        return invalid("--socket and --connect are for vhost-user ports");
    }
    let ifname = req.ifname.clone().or_else(|| req.name.clone());
    if let Some(i) = &ifname {
        vnet_ports::validate_ifname(i).map_err(|e| PortAddError::Invalid(e.to_string()))?;
    }
    let netns = req.netns.as_deref().map(NetnsRef::new);
    let dev: Box<dyn Port> = match req.kind.unwrap_or(PortKind::Tap) {
        PortKind::Netdev => {
            if req.attach || req.persistent || mac.is_some() {
                return invalid(
                    "a netdev port takes no --attach, --persistent or --mac: the interface exists",
                );
            }
            let Some(ifname) = ifname else {
                return invalid("a netdev port needs the interface to attach to");
            };
            let mut opts = PacketOptions::new(&ifname);
            opts.netns = netns;
            opts.promiscuous = true;
            Box::new(PacketPort::open(&opts)?)
        }
        _ => {
            let mut opts = TapOptions::default();
            opts.name = ifname;
            opts.netns = netns;
            opts.persistent = req.persistent;
            // an existing TAP keeps the MAC it has (its guest may be using it)
            opts.mac = if req.attach { None } else { mac.map(|m| m.0) };
            if req.attach {
                // a TAP made beforehand (possibly for an unprivileged switchd): as it is
                opts.attach_existing = true;
                opts.up = false;
            }
            opts.offloads = !req.no_offloads;
            Box::new(Tap::create(&opts)?)
        }
    };
    Ok(Opened {
        dev,
        mac,
        name: None,
    })
}

/// A vhost-user port: checks and opens it.
fn open_vhost_user(req: &PortAdd, mac: Option<MacAddr>) -> Result<Opened, PortAddError> {
    let invalid = |s: &str| Err(PortAddError::Invalid(s.to_owned()));
    if req.netns.is_some() || req.ifname.is_some() || req.attach || req.persistent {
        return invalid(
            "a vhost-user port takes no --netns, --ifname, --attach or --persistent: it is a socket",
        );
    }
    if req.no_offloads {
        return invalid(
            "a vhost-user port negotiates offloads with its frontend: no --no-offloads",
        );
    }
    let mode = match (&req.socket, &req.connect) {
        (Some(p), None) => VhostUserMode::Listen(p.into()),
        (None, Some(p)) => VhostUserMode::Connect(p.into()),
        (Some(_), Some(_)) => {
            return invalid("a vhost-user port either listens (--socket) or connects (--connect)")
        }
        (None, None) => {
            return invalid("a vhost-user port needs --socket PATH (or --connect PATH)")
        }
    };
    if !mode.path().is_absolute() {
        return invalid("the vhost-user socket path must be absolute");
    }
    let name = req.name.clone().or_else(|| {
        mode.path()
            .file_stem()
            .map(|s| s.to_string_lossy().chars().take(64).collect())
    });
    let dev = VhostUserPort::start(mode)?;
    Ok(Opened {
        dev: Box::new(dev),
        mac,
        name,
    })
}

/// The host's port on the segment: a TAP named `bridge` (`<bridge name>`) with the
/// gateway's MAC and addresses (IPv4, and IPv6 when the network has some), so the host and the gateway are one identity to guests
/// (`vnet_gateway::Gateway::host_claim` splits what each answers). The error says why
/// not (no privilege, the name taken by libvirt's own `virbr0`).
pub fn open_host_port(bridge: &str, gw: &GatewayConfig) -> Result<Tap, String> {
    let mut opts = TapOptions::default();
    opts.name = Some(bridge.to_owned());
    opts.mac = Some(gw.mac.0);
    let tap = Tap::create(&opts).map_err(|e| {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
        format!("cannot create {bridge} ({e}{})", cause.unwrap_or_default())
    })?;
    if let Some(ip) = gw.ip {
        tap.set_ipv4(ip, gw.prefix)
            .map_err(|e| format!("cannot give {bridge} the address {ip}/{}: {e}", gw.prefix))?;
    }
    if let Some(v6) = &gw.ipv6 {
        // as libvirt sets its bridge: IPv6 on, and the host does not configure itself
        // from the gateway's own router advertisements; router behaviour on it
        // (`forwarding` of one interface forwards nothing by itself), so the host's
        // neighbor advertisements for the shared addresses say "router" as the
        // gateway's do (an advertisement without it would make guests drop their
        // default route, RFC 4861 §7.2.5)
        let keys = [
            ("disable_ipv6", "0"),
            ("accept_ra", "0"),
            ("autoconf", "0"),
            ("forwarding", "1"),
        ];
        for (key, value) in keys {
            let path = format!("/proc/sys/net/ipv6/conf/{bridge}/{key}");
            if let Err(e) = std::fs::write(&path, value) {
                tracing::warn!("host port: cannot set {path} to {value}: {e}");
            }
        }
        for p in &v6.prefixes {
            if let Err(e) = tap.add_ipv6(p.addr, p.len) {
                let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
                tracing::warn!(
                    "host port: cannot give {bridge} the address {}/{} ({e}{}); the host reaches guests over IPv4 only",
                    p.addr,
                    p.len,
                    cause.unwrap_or_default()
                );
            }
        }
    }
    Ok(tap)
}
