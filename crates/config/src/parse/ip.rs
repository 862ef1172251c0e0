//! `<ip>` and its `<dhcp>`: ranges, hosts, leases.

use super::*;

/// DHCP data seen so far in the network, to reject duplicates.
#[derive(Default)]
pub(crate) struct DhcpSeen {
    macs: HashMap<MacAddr, ()>,
    ips: HashMap<IpAddr, ()>,
    families: Vec<IpFamily>,
}

impl DhcpSeen {
    /// What the network holds, except the `<ip>` at `skip_ip` and its host at `skip_host`.
    pub(crate) fn of(ips: &[IpDef], skip_host: Option<(usize, usize)>) -> Self {
        let mut seen = Self::default();
        for (i, ip) in ips.iter().enumerate() {
            let Some(dhcp) = &ip.dhcp else { continue };
            seen.families.push(ip.family());
            for (h, host) in dhcp.hosts.iter().enumerate() {
                if skip_host == Some((i, h)) {
                    continue;
                }
                if let Some(mac) = host.mac {
                    seen.macs.insert(mac, ());
                }
                seen.ips.insert(host.ip, ());
            }
        }
        seen
    }

    /// Records a host; an error if its MAC or IP is already used.
    pub(crate) fn host(&mut self, node: Node<'_, '_>, host: &DhcpHost) -> Result<()> {
        if let Some(mac) = host.mac {
            if self.macs.insert(mac, ()).is_some() {
                return Err(err_attr(
                    node,
                    "mac",
                    "another DHCP host already has this MAC address",
                ));
            }
        }
        if self.ips.insert(host.ip, ()).is_some() {
            return Err(err_attr(
                node,
                "ip",
                "another DHCP host already has this IP address",
            ));
        }
        Ok(())
    }

    /// Whether some `<ip>` of `family` already has DHCP.
    pub(crate) fn has_family(&self, family: IpFamily) -> bool {
        self.families.contains(&family)
    }
}

/// `family='ipv4|ipv6'`, if given.
pub(super) fn family_attr(node: Node<'_, '_>) -> Result<Option<IpFamily>> {
    match node.attribute("family") {
        None => Ok(None),
        Some("ipv4") => Ok(Some(IpFamily::V4)),
        Some("ipv6") => Ok(Some(IpFamily::V6)),
        Some(_) => Err(err_attr(node, "family", "expected 'ipv4' or 'ipv6'")),
    }
}

/// `netmask` (IPv4 only) or `prefix` (`min` to 32 or 128), at most one of them, for an
/// address of `family`.
pub(super) fn netmask_or_prefix(
    node: Node<'_, '_>,
    family: IpFamily,
    min: u8,
) -> Result<(Option<Ipv4Addr>, Option<u8>)> {
    let netmask = if family == IpFamily::V6 {
        if node.attribute("netmask").is_some() {
            return Err(err_attr(
                node,
                "netmask",
                "netmask is not allowed with IPv6; use prefix",
            ));
        }
        None
    } else {
        netmask_attr(node, "netmask")?
    };
    let prefix: Option<u8> = number(node, "prefix", "a prefix length")?;
    if let Some(p) = prefix {
        if netmask.is_some() {
            return Err(err_attr(
                node,
                "prefix",
                "give either netmask or prefix, not both",
            ));
        }
        let max = if family == IpFamily::V4 { 32 } else { 128 };
        if p < min || p > max {
            return Err(err_attr(
                node,
                "prefix",
                format!(
                    "prefix out of range ({min} to {max} for {})",
                    family.label()
                ),
            ));
        }
    }
    Ok((netmask, prefix))
}

pub(super) fn ip(node: Node<'_, '_>, seen: &mut DhcpSeen) -> Result<IpDef> {
    check_attrs(
        node,
        &["address", "netmask", "prefix", "family", "localPtr"],
    )?;
    check_children(node, &["tftp", "dhcp"])?;
    let family = family_attr(node)?;
    let address = ip_required(node, "address", "the host's address on the network")?;
    let actual = IpFamily::of(address);
    if family.is_some_and(|f| f != actual) || (family.is_none() && actual == IpFamily::V6) {
        let reason = match family {
            Some(f) => format!(
                "family '{}' does not match the {} address",
                f.as_str(),
                actual.label()
            ),
            None => "an IPv6 address needs family='ipv6'".to_owned(),
        };
        return Err(err_attr(node, "address", reason));
    }
    let (netmask, prefix) = netmask_or_prefix(node, actual, 1)?;
    if let IpAddr::V4(a) = address {
        if prefix.is_none() && netmask.is_none() && classful_prefix(a).is_none() {
            return Err(err_attr(
                node,
                "address",
                "no netmask or prefix given, and the address has no classful default",
            ));
        }
    }
    let mut def = IpDef {
        family,
        address,
        netmask,
        prefix,
        local_ptr: yes_no(node, "localPtr")?,
        tftp_root: None,
        dhcp: None,
    };
    if let Some(t) = single(node, "tftp")? {
        check_attrs(t, &["root"])?;
        check_children(t, &[])?;
        if actual != IpFamily::V4 {
            return Err(err(t, "<tftp> is only supported in an IPv4 <ip>"));
        }
        def.tftp_root = Some(required(t, "root", "the directory served over TFTP")?.to_owned());
    }
    if let Some(d) = single(node, "dhcp")? {
        let dhcp = dhcp(d, &def, seen)?;
        if !dhcp.ranges.is_empty() || !dhcp.hosts.is_empty() {
            if seen.has_family(actual) {
                return Err(err(
                    d,
                    format!(
                        "only one {} <ip> of a network may have <dhcp> (libvirt's rule)",
                        actual.label()
                    ),
                ));
            }
            seen.families.push(actual);
        }
        if !dhcp.ranges.is_empty() || !dhcp.hosts.is_empty() || dhcp.bootp.is_some() {
            def.dhcp = Some(dhcp);
        }
    }
    Ok(def)
}

pub(super) fn dhcp(node: Node<'_, '_>, ip: &IpDef, seen: &mut DhcpSeen) -> Result<Dhcp> {
    check_attrs(node, &[])?;
    check_children(node, &["range", "host", "bootp"])?;
    let mut out = Dhcp::default();
    for child in elements(node) {
        match child.tag_name().name() {
            "range" => {
                let r = dhcp_range(child, ip)?;
                check_range_overlap(child, &r, &out.ranges)?;
                out.ranges.push(r);
            }
            "host" => {
                let host = dhcp_host(child, ip, false)?.complete(child, ip)?;
                seen.host(child, &host)?;
                out.hosts.push(host);
            }
            "bootp" => {
                if out.bootp.is_some() {
                    return Err(err(child, "only one <bootp> is allowed inside <dhcp>"));
                }
                check_attrs(child, &["file", "server"])?;
                check_children(child, &[])?;
                if ip.family() != IpFamily::V4 {
                    return Err(err(child, "<bootp> is only supported in an IPv4 <ip>"));
                }
                let file = required(child, "file", "the boot file name")?.to_owned();
                let server = ip_attr(child, "server")?;
                out.bootp = Some(Bootp { file, server });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `<range start end>`, checked against its `<ip>`.
pub(crate) fn dhcp_range(node: Node<'_, '_>, ip: &IpDef) -> Result<DhcpRange> {
    check_attrs(node, &["start", "end"])?;
    check_children(node, &["lease"])?;
    let start = ip_required(node, "start", "the first address of the range")?;
    let end = ip_required(node, "end", "the last address of the range")?;
    let subnet = format!("{}/{}", ip.network(), ip.prefix_len());
    for (attr, addr) in [("start", start), ("end", end)] {
        if !ip.contains(addr) {
            return Err(err_attr(
                node,
                attr,
                format!("DHCP range {attr} is outside the <ip> subnet {subnet}"),
            ));
        }
    }
    if start > end {
        return Err(err_attr(
            node,
            "end",
            "the DHCP range ends before it starts",
        ));
    }
    // libvirt (virSocketAddrGetRange): an IPv4 range may not start at the network
    // address or end at the broadcast address; as the DHCP server does, and RFC 3021
    // says, a /31 or /32 has neither.
    if let (IpAddr::V4(network), IpAddr::V4(s), IpAddr::V4(e)) = (ip.network(), start, end) {
        let prefix = ip.prefix_len();
        if prefix < 31 {
            let broadcast = Ipv4Addr::from(u32::from(network) | (u32::MAX >> prefix));
            if s == network {
                return Err(err_attr(
                    node,
                    "start",
                    format!("DHCP range start is the network address of {subnet}"),
                ));
            }
            if e == broadcast {
                return Err(err_attr(
                    node,
                    "end",
                    format!("DHCP range end is the broadcast address of {subnet}"),
                ));
            }
        }
    }
    let lease = single(node, "lease")?.map(lease).transpose()?;
    Ok(DhcpRange { start, end, lease })
}

/// An error if `range` (the range `node` defines) shares an address with one of
/// `others`, naming the first such. libvirt accepts overlapping ranges, but one
/// address in two ranges makes the pool look larger than it is (vnet's lease bound
/// counts range sizes) and leaves its lease time ambiguous.
pub(crate) fn check_range_overlap(
    node: Node<'_, '_>,
    range: &DhcpRange,
    others: &[DhcpRange],
) -> Result<()> {
    let Some(o) = others
        .iter()
        .find(|o| o.start <= range.end && range.start <= o.end)
    else {
        return Ok(());
    };
    if o.start == range.start && o.end == range.end {
        return Err(err(node, "this DHCP range is listed twice"));
    }
    Err(err(
        node,
        format!(
            "the DHCP range {} to {} overlaps the range {} to {}",
            range.start, range.end, o.start, o.end
        ),
    ))
}

/// A DHCP host as written; the IP may be missing in a `net-update delete`.
#[derive(Debug)]
pub(crate) struct DhcpHostPattern {
    pub(crate) mac: Option<MacAddr>,
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) lease: Option<Lease>,
}

impl DhcpHostPattern {
    /// The full host; checks what a defined host needs.
    pub(crate) fn complete(self, node: Node<'_, '_>, ip: &IpDef) -> Result<DhcpHost> {
        match ip.family() {
            IpFamily::V4 if self.mac.is_none() && self.name.is_none() => {
                return Err(err(
                    node,
                    "a DHCP host of an IPv4 network needs a mac or a name",
                ))
            }
            IpFamily::V6 if self.id.is_none() && self.name.is_none() => {
                return Err(err(
                    node,
                    "a DHCP host of an IPv6 network needs an id or a name",
                ))
            }
            _ => {}
        }
        let Some(addr) = self.ip else {
            return Err(err_attr(
                node,
                "ip",
                "missing attribute 'ip' (a static DHCP host needs its address)",
            ));
        };
        if !ip.contains(addr) {
            return Err(err_attr(
                node,
                "ip",
                format!(
                    "DHCP host address is outside the <ip> subnet {}/{}",
                    ip.network(),
                    ip.prefix_len()
                ),
            ));
        }
        Ok(DhcpHost {
            mac: self.mac,
            id: self.id,
            name: self.name,
            ip: addr,
            lease: self.lease,
        })
    }
}

pub(crate) fn dhcp_host(node: Node<'_, '_>, ip: &IpDef, partial: bool) -> Result<DhcpHostPattern> {
    check_attrs(node, &["mac", "id", "name", "ip"])?;
    check_children(node, &["lease"])?;
    let mac = match node.attribute("mac") {
        Some(text) => {
            if ip.family() == IpFamily::V6 {
                return Err(err_attr(
                    node,
                    "mac",
                    "a MAC address is not allowed in an IPv6 DHCP host (use id)",
                ));
            }
            Some(parse_mac(node, "mac", text)?)
        }
        None => None,
    };
    let id = node.attribute("id").map(str::to_owned);
    if let Some(id) = &id {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(err_attr(
                node,
                "id",
                "a DHCP client id holds only hex digits and ':'",
            ));
        }
    }
    let name = node.attribute("name").map(str::to_owned);
    if let Some(n) = &name {
        if !n.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(err_attr(
                node,
                "name",
                "a DHCP host name must start with a letter or digit",
            ));
        }
        if n.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(err_attr(
                node,
                "name",
                "a DHCP host name cannot contain whitespace or ','",
            ));
        }
    }
    let addr = ip_attr(node, "ip")?;
    let lease = single(node, "lease")?.map(lease).transpose()?;
    if partial && mac.is_none() && name.is_none() && addr.is_none() {
        return Err(err(
            node,
            "a DHCP host needs at least one of mac, name or ip",
        ));
    }
    Ok(DhcpHostPattern {
        mac,
        id,
        name,
        ip: addr,
        lease,
    })
}

pub(super) fn lease(node: Node<'_, '_>) -> Result<Lease> {
    check_attrs(node, &["expiry", "unit"])?;
    check_children(node, &[])?;
    required(node, "expiry", "the lease time; 0 means infinite")?;
    let expiry: u64 = number(node, "expiry", "a whole number")?.unwrap_or_default();
    let unit = match node.attribute("unit") {
        None | Some("minutes") => LeaseUnit::Minutes,
        Some("seconds") => LeaseUnit::Seconds,
        Some("hours") => LeaseUnit::Hours,
        Some(_) => {
            return Err(err_attr(
                node,
                "unit",
                "expected 'seconds', 'minutes' or 'hours'",
            ))
        }
    };
    let lease = Lease { expiry, unit };
    // dnsmasq: "The minimum lease time is two minutes."
    if matches!(lease.time(), crate::LeaseTime::Seconds(s) if s < 120) {
        return Err(err_attr(
            node,
            "expiry",
            "the minimum lease time is 2 minutes",
        ));
    }
    Ok(lease)
}
