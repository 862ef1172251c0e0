//! `<forward>` and its `<nat>`.

use super::*;

pub(super) fn forward(node: Node<'_, '_>) -> Result<Forward> {
    let mode = match node.attribute("mode") {
        None | Some("nat") => ForwardMode::Nat,
        Some("route") => ForwardMode::Route,
        Some("open") => ForwardMode::Open,
        Some("bridge") => ForwardMode::Bridge,
        Some(m @ ("passthrough" | "private" | "vepa" | "hostdev")) => {
            return Err(err_attr(
                node,
                "mode",
                format!(
                    "forward mode '{m}' is not supported: it hands host NICs or SR-IOV \
                     functions to guests (macvtap/PCI passthrough), which a user-space switch \
                     cannot serve; use nat, route, open or bridge"
                ),
            ))
        }
        Some(m) => {
            return Err(err_attr(
                node,
                "mode",
                format!("unknown forward mode '{m}' (expected nat, route, open or bridge)"),
            ))
        }
    };
    for child in elements(node).filter(|c| is_plain(*c)) {
        let what = match child.tag_name().name() {
            "pf" => "<pf> (an SR-IOV physical function)",
            "address" => "<address> (a PCI device)",
            "driver" => "<driver> (a hostdev driver)",
            _ => continue,
        };
        return Err(err(
            child,
            format!("{what} is only used by the hostdev/passthrough forward modes, which vnet cannot serve"),
        ));
    }
    check_attrs(node, &["mode", "dev"])?;
    check_children(node, &["nat", "interface"])?;

    if mode == ForwardMode::Open && node.attribute("dev").is_some() {
        return Err(err_attr(
            node,
            "dev",
            "forward mode 'open' does not accept a dev (an open network places no \
             restriction on where traffic goes; libvirt rejects this too)",
        ));
    }

    let mut interfaces: Vec<String> = Vec::new();
    if let Some(dev) = node.attribute("dev") {
        check_ifname(node, "dev", dev)?;
        interfaces.push(dev.to_owned());
    }
    for (i, child) in elements(node)
        .filter(|c| c.tag_name().name() == "interface")
        .enumerate()
    {
        let dev = forward_interface(child)?;
        if i == 0 && !interfaces.is_empty() {
            if interfaces.first().is_some_and(|d| *d != dev) {
                return Err(err_attr(
                    child,
                    "dev",
                    format!(
                        "<forward dev='{}'> must match the first <interface dev='{dev}'/>",
                        interfaces.first().map(String::as_str).unwrap_or_default()
                    ),
                ));
            }
            continue;
        }
        if interfaces.contains(&dev) {
            return Err(err_attr(
                child,
                "dev",
                format!("interface '{dev}' can only be listed once"),
            ));
        }
        interfaces.push(dev);
    }
    if mode == ForwardMode::Open && !interfaces.is_empty() {
        return Err(err(
            node,
            "forward mode 'open' does not accept forward interfaces",
        ));
    }

    let nat = match single(node, "nat")? {
        Some(n) => {
            if mode != ForwardMode::Nat {
                return Err(err(
                    n,
                    format!("<nat> can only be used with forward mode 'nat', not '{mode}'"),
                ));
            }
            nat(n)?
        }
        None => None,
    };
    Ok(Forward {
        mode,
        interfaces,
        nat,
    })
}

/// `<forward><interface dev/>`; returns the device name.
pub(crate) fn forward_interface(node: Node<'_, '_>) -> Result<String> {
    // `connections` is live status printed by net-dumpxml; it is ignored.
    check_attrs(node, &["dev", "connections"])?;
    check_children(node, &[])?;
    let dev = required(node, "dev", "the host interface name")?;
    check_ifname(node, "dev", dev)?;
    Ok(dev.to_owned())
}

pub(super) fn nat(node: Node<'_, '_>) -> Result<Option<Nat>> {
    check_attrs(node, &["ipv6"])?;
    check_children(node, &["address", "port"])?;
    let ipv6 = yes_no(node, "ipv6")?;
    let addresses = match single(node, "address")? {
        Some(a) => {
            check_attrs(a, &["start", "end"])?;
            check_children(a, &[])?;
            let v4 = |attr: &str| -> Result<Ipv4Addr> {
                match ip_required(a, attr, "an IPv4 address to SNAT to")? {
                    IpAddr::V4(v) => Ok(v),
                    IpAddr::V6(_) => Err(err_attr(a, attr, "NAT addresses must be IPv4")),
                }
            };
            let (start, end) = (v4("start")?, v4("end")?);
            if start > end {
                return Err(err_attr(
                    a,
                    "end",
                    "the NAT address range ends before it starts",
                ));
            }
            Some((start, end))
        }
        None => None,
    };
    let ports = match single(node, "port")? {
        Some(p) => {
            check_attrs(p, &["start", "end"])?;
            check_children(p, &[])?;
            required(p, "start", "the first source port")?;
            required(p, "end", "the last source port")?;
            let start: u16 = number(p, "start", "a port number (0-65535)")?.unwrap_or_default();
            let end: u16 = number(p, "end", "a port number (0-65535)")?.unwrap_or_default();
            if end < start {
                return Err(err_attr(
                    p,
                    "end",
                    "the NAT port range ends before it starts",
                ));
            }
            Some((start, end))
        }
        None => None,
    };
    if ipv6.is_none() && addresses.is_none() && ports.is_none() {
        // libvirt drops an empty <nat>.
        return Ok(None);
    }
    Ok(Some(Nat {
        ipv6,
        addresses,
        ports,
    }))
}
