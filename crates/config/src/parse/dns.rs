//! `<dns>`: forwarders, hosts, SRV and TXT records.

use super::*;

pub(super) fn dns(node: Node<'_, '_>) -> Result<Dns> {
    check_attrs(node, &["enable", "forwardPlainNames"])?;
    check_children(node, &["forwarder", "host", "srv", "txt"])?;
    let mut dns = Dns {
        enable: yes_no(node, "enable")?,
        forward_plain_names: yes_no(node, "forwardPlainNames")?,
        ..Dns::default()
    };
    for child in elements(node) {
        match child.tag_name().name() {
            "forwarder" => dns.forwarders.push(dns_forwarder(child)?),
            "host" => {
                let host = dns_host(child, false)?.complete(child)?;
                if dns.hosts.iter().any(|h| h.ip == host.ip) {
                    return Err(err_attr(
                        child,
                        "ip",
                        "another DNS <host> already has this address; list all its names in one <host>",
                    ));
                }
                dns.hosts.push(host);
            }
            "srv" => dns.srvs.push(dns_srv(child, false)?.complete(child)?),
            "txt" => {
                let txt = dns_txt(child, false)?;
                let value = txt.value.unwrap_or_default();
                if dns.txts.iter().any(|t| t.name == txt.name) {
                    return Err(err_attr(
                        child,
                        "name",
                        "a DNS TXT record with this name already exists",
                    ));
                }
                dns.txts.push(DnsTxt {
                    name: txt.name,
                    value,
                });
            }
            _ => {}
        }
    }
    let has_records = !dns.forwarders.is_empty()
        || !dns.hosts.is_empty()
        || !dns.srvs.is_empty()
        || !dns.txts.is_empty();
    if !dns.enabled() && has_records {
        return Err(err_attr(
            node,
            "enable",
            "DNS is disabled, so it cannot have forwarders, hosts, srv or txt records",
        ));
    }
    Ok(dns)
}

pub(super) fn dns_forwarder(node: Node<'_, '_>) -> Result<DnsForwarder> {
    check_attrs(node, &["addr", "port", "domain"])?;
    check_children(node, &[])?;
    let addr = ip_attr(node, "addr")?;
    let port: Option<u16> = number(node, "port", "a port number (1-65535)")?;
    if port == Some(0) {
        return Err(err_attr(node, "port", "expected a port number (1-65535)"));
    }
    if port.is_some() && addr.is_none() {
        return Err(err_attr(node, "port", "a forwarder port needs an addr"));
    }
    let domain = node.attribute("domain").map(str::to_owned);
    if addr.is_none() && domain.is_none() {
        return Err(err(node, "a <forwarder> needs addr, domain or both"));
    }
    Ok(DnsForwarder { addr, port, domain })
}

/// A DNS host as written; `ip` or hostnames may be missing in a `net-update delete`.
#[derive(Debug)]
pub(crate) struct DnsHostPattern {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) hostnames: Vec<String>,
}

impl DnsHostPattern {
    pub(crate) fn complete(self, node: Node<'_, '_>) -> Result<DnsHost> {
        let Some(ip) = self.ip else {
            return Err(err_attr(
                node,
                "ip",
                "missing attribute 'ip' (a DNS host needs an address)",
            ));
        };
        if self.hostnames.is_empty() {
            return Err(err(node, "a DNS <host> needs at least one <hostname>"));
        }
        Ok(DnsHost {
            ip,
            hostnames: self.hostnames,
        })
    }
}

pub(crate) fn dns_host(node: Node<'_, '_>, partial: bool) -> Result<DnsHostPattern> {
    check_attrs(node, &["ip"])?;
    check_children(node, &["hostname"])?;
    let ip = ip_attr(node, "ip")?;
    let mut hostnames = Vec::new();
    for h in elements(node) {
        check_attrs(h, &[])?;
        let name = text_of(h)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(err(h, "empty <hostname>"));
        }
        hostnames.push(name.to_owned());
    }
    let pattern = DnsHostPattern { ip, hostnames };
    if partial {
        if pattern.ip.is_none() && pattern.hostnames.is_empty() {
            return Err(err(
                node,
                "a DNS <host> needs an ip or at least one <hostname>",
            ));
        }
        return Ok(pattern);
    }
    Ok(pattern)
}

/// A DNS SRV record as written; service/protocol may be missing in a `net-update delete`.
#[derive(Debug)]
pub(crate) struct DnsSrvPattern {
    pub(crate) service: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) priority: Option<u16>,
    pub(crate) weight: Option<u16>,
}

impl DnsSrvPattern {
    pub(crate) fn complete(self, node: Node<'_, '_>) -> Result<DnsSrv> {
        let Some(service) = self.service else {
            return Err(err_attr(
                node,
                "service",
                "missing attribute 'service' (an SRV record needs a service)",
            ));
        };
        let Some(protocol) = self.protocol else {
            return Err(err_attr(
                node,
                "protocol",
                "missing attribute 'protocol' (tcp or udp)",
            ));
        };
        Ok(DnsSrv {
            service,
            protocol,
            domain: self.domain,
            target: self.target,
            port: self.port,
            priority: self.priority,
            weight: self.weight,
        })
    }

    /// Whether every field given in the pattern equals the record's (libvirt's match).
    pub(crate) fn matches(&self, srv: &DnsSrv) -> bool {
        self.service.as_ref().is_none_or(|s| *s == srv.service)
            && self.protocol.as_ref().is_none_or(|p| *p == srv.protocol)
            && self
                .domain
                .as_ref()
                .is_none_or(|d| Some(d) == srv.domain.as_ref())
            && self
                .target
                .as_ref()
                .is_none_or(|t| Some(t) == srv.target.as_ref())
    }
}

pub(crate) fn dns_srv(node: Node<'_, '_>, partial: bool) -> Result<DnsSrvPattern> {
    check_attrs(
        node,
        &[
            "service", "protocol", "domain", "target", "port", "priority", "weight",
        ],
    )?;
    check_children(node, &[])?;
    let service = node.attribute("service").map(str::to_owned);
    if let Some(s) = &service {
        if s.is_empty() || s.chars().count() > 15 {
            return Err(err_attr(
                node,
                "service",
                "an SRV service name is 1 to 15 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-+/*".contains(c))
        {
            return Err(err_attr(
                node,
                "service",
                "invalid character in the SRV service name",
            ));
        }
    }
    let protocol = node.attribute("protocol").map(str::to_owned);
    if let Some(p) = &protocol {
        if p != "tcp" && p != "udp" {
            return Err(err_attr(
                node,
                "protocol",
                "an SRV protocol is 'tcp' or 'udp'",
            ));
        }
    }
    let domain = node.attribute("domain").map(str::to_owned);
    let target = node.attribute("target").map(str::to_owned);
    let mut nums = [None; 3];
    for (slot, attr) in nums.iter_mut().zip(["port", "priority", "weight"]) {
        let v: Option<u16> = number(node, attr, "a number from 0 to 65535")?;
        if v.is_some() && target.is_none() {
            return Err(err_attr(
                node,
                attr,
                format!("an SRV {attr} is not allowed without a target"),
            ));
        }
        *slot = v;
    }
    let [port, priority, weight] = nums;
    if port == Some(0) {
        return Err(err_attr(node, "port", "an SRV port is 1 to 65535"));
    }
    let pattern = DnsSrvPattern {
        service,
        protocol,
        domain,
        target,
        port,
        // libvirt writes a zero priority or weight as absent.
        priority: priority.filter(|p| *p != 0),
        weight: weight.filter(|w| *w != 0),
    };
    if !partial {
        if pattern.service.is_none() {
            return Err(err_attr(
                node,
                "service",
                "missing attribute 'service' (an SRV record needs a service)",
            ));
        }
        if pattern.protocol.is_none() {
            return Err(err_attr(
                node,
                "protocol",
                "missing attribute 'protocol' (tcp or udp)",
            ));
        }
    }
    Ok(pattern)
}

/// A DNS TXT record as written; the value may be missing in a `net-update delete`.
#[derive(Debug)]
pub(crate) struct DnsTxtPattern {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

pub(crate) fn dns_txt(node: Node<'_, '_>, partial: bool) -> Result<DnsTxtPattern> {
    check_attrs(node, &["name", "value"])?;
    check_children(node, &[])?;
    let name = required(node, "name", "a TXT record needs a name")?;
    if name.is_empty() || name.contains([' ', ',']) {
        return Err(err_attr(
            node,
            "name",
            "a TXT record name is not empty and has no space or comma",
        ));
    }
    let value = node.attribute("value").map(str::to_owned);
    if value.is_none() && !partial {
        return Err(err_attr(
            node,
            "value",
            "missing attribute 'value' (a TXT record needs a value)",
        ));
    }
    Ok(DnsTxtPattern {
        name: name.to_owned(),
        value,
    })
}
