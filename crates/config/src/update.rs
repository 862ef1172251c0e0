//! `virsh net-update`: add, delete or modify one entry of a section of a network.
//!
//! The rules follow libvirt's `virNetworkDefUpdateSection` (network_conf.c): which
//! fragment element each section takes, how an entry is matched, what counts as a
//! duplicate. Like newer libvirt, DNS host, TXT and SRV records can also be modified.

use std::fmt;
use std::str::FromStr;

use roxmltree::Node;

use crate::model::{IpFamily, PortGroup};
use crate::parse::{self, err, err_attr, DhcpSeen, Result};
use crate::{Error, ForwardMode, Network};

/// The `net-update` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpdateCommand {
    /// `add`: the same as `add-last`.
    Add,
    /// `add-first`: insert before the existing entries.
    AddFirst,
    /// `add-last`: append after the existing entries.
    AddLast,
    /// `delete`: remove the matching entry (the fragment may give only some attributes).
    Delete,
    /// `modify`: replace the matching entry.
    Modify,
}

impl UpdateCommand {
    /// The command as virsh spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::AddFirst => "add-first",
            Self::AddLast => "add-last",
            Self::Delete => "delete",
            Self::Modify => "modify",
        }
    }
}

impl FromStr for UpdateCommand {
    type Err = Error;

    fn from_str(s: &str) -> std::result::Result<Self, Error> {
        Ok(match s {
            "add" => Self::Add,
            "add-first" => Self::AddFirst,
            "add-last" => Self::AddLast,
            "delete" => Self::Delete,
            "modify" => Self::Modify,
            _ => {
                return Err(Error::new(
                    "",
                    format!(
                        "unknown net-update command '{s}' (expected add, add-first, add-last, \
                         delete or modify)"
                    ),
                ))
            }
        })
    }
}

impl fmt::Display for UpdateCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `net-update` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpdateSection {
    /// `ip-dhcp-host`: a `<host>` of an `<ip>`'s `<dhcp>`.
    IpDhcpHost,
    /// `ip-dhcp-range`: a `<range>` of an `<ip>`'s `<dhcp>`.
    IpDhcpRange,
    /// `dns-host`: a `<host>` of `<dns>`.
    DnsHost,
    /// `dns-txt`: a `<txt>` of `<dns>`.
    DnsTxt,
    /// `dns-srv`: a `<srv>` of `<dns>`.
    DnsSrv,
    /// `portgroup`: a `<portgroup>`.
    Portgroup,
    /// `forward-interface`: an `<interface>` of `<forward>`.
    ForwardInterface,
}

impl UpdateSection {
    /// The section as virsh spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IpDhcpHost => "ip-dhcp-host",
            Self::IpDhcpRange => "ip-dhcp-range",
            Self::DnsHost => "dns-host",
            Self::DnsTxt => "dns-txt",
            Self::DnsSrv => "dns-srv",
            Self::Portgroup => "portgroup",
            Self::ForwardInterface => "forward-interface",
        }
    }

    /// The element the fragment must be.
    fn element(self) -> &'static str {
        match self {
            Self::IpDhcpHost | Self::DnsHost => "host",
            Self::IpDhcpRange => "range",
            Self::DnsTxt => "txt",
            Self::DnsSrv => "srv",
            Self::Portgroup => "portgroup",
            Self::ForwardInterface => "interface",
        }
    }
}

impl FromStr for UpdateSection {
    type Err = Error;

    fn from_str(s: &str) -> std::result::Result<Self, Error> {
        Ok(match s {
            "ip-dhcp-host" => Self::IpDhcpHost,
            "ip-dhcp-range" => Self::IpDhcpRange,
            "dns-host" => Self::DnsHost,
            "dns-txt" => Self::DnsTxt,
            "dns-srv" => Self::DnsSrv,
            "portgroup" => Self::Portgroup,
            "forward-interface" => Self::ForwardInterface,
            _ => {
                return Err(Error::new(
                    "",
                    format!(
                        "unknown or unsupported net-update section '{s}' (expected ip-dhcp-host, \
                         ip-dhcp-range, dns-host, dns-txt, dns-srv, portgroup or forward-interface)"
                    ),
                ))
            }
        })
    }
}

impl fmt::Display for UpdateSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `<dhcp>` of `<ip>` number `idx` (created if missing).
fn dhcp_of<'n>(
    net: &'n mut Network,
    idx: usize,
    node: Node<'_, '_>,
) -> Result<&'n mut crate::Dhcp> {
    net.dhcp_mut(idx).ok_or_else(|| err(node, "no such <ip>"))
}

/// Where an add puts the new entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    First,
    Last,
    Delete,
    Modify,
}

fn insert<T>(v: &mut Vec<T>, op: Op, item: T) {
    if op == Op::First {
        v.insert(0, item);
    } else {
        v.push(item);
    }
}

/// Applies one update to a copy of `net` and, if it succeeds, replaces `net` with it.
pub(crate) fn apply(
    net: &mut Network,
    command: UpdateCommand,
    section: UpdateSection,
    parent_index: Option<usize>,
    xml: &str,
) -> Result<()> {
    let doc = parse::document(xml)?;
    let node = doc.root_element();
    let expected = section.element();
    if node.tag_name().namespace().is_some() || node.tag_name().name() != expected {
        return Err(err(
            node,
            format!("unexpected element, expecting <{expected}> for section '{section}'"),
        ));
    }
    let op = match command {
        UpdateCommand::Add | UpdateCommand::AddLast => Op::Last,
        UpdateCommand::AddFirst => Op::First,
        UpdateCommand::Delete => Op::Delete,
        UpdateCommand::Modify => Op::Modify,
    };
    let mut new = net.clone();
    match section {
        UpdateSection::IpDhcpHost => dhcp_host(&mut new, op, parent_index, node)?,
        UpdateSection::IpDhcpRange => dhcp_range(&mut new, op, parent_index, node)?,
        UpdateSection::DnsHost => dns_host(&mut new, op, node)?,
        UpdateSection::DnsTxt => dns_txt(&mut new, op, node)?,
        UpdateSection::DnsSrv => dns_srv(&mut new, op, node)?,
        UpdateSection::Portgroup => portgroup(&mut new, op, node)?,
        UpdateSection::ForwardInterface => forward_interface(&mut new, op, node)?,
    }
    new.refresh_warnings();
    *net = new;
    Ok(())
}

/// The `<ip>` a DHCP update works on: the one at `parent_index`, else the one with DHCP,
/// else the first IPv4, else the first IPv6 (libvirt's `virNetworkIPDefByIndex`).
fn ip_index(net: &Network, parent_index: Option<usize>, node: Node<'_, '_>) -> Result<usize> {
    if let Some(i) = parent_index {
        if i < net.ips.len() {
            return Ok(i);
        }
        return Err(err(
            node,
            format!("no <ip> element at index {i} in network '{}'", net.name),
        ));
    }
    let with_dhcp = net.ips.iter().position(|ip| {
        ip.dhcp
            .as_ref()
            .is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty())
    });
    with_dhcp
        .or_else(|| net.ips.iter().position(|ip| ip.family() == IpFamily::V4))
        .or_else(|| net.ips.iter().position(|ip| ip.family() == IpFamily::V6))
        .ok_or_else(|| err(node, format!("network '{}' has no <ip> element", net.name)))
}

/// libvirt: only one `<ip>` per family may have DHCP.
fn check_multi_dhcp(net: &Network, idx: usize, node: Node<'_, '_>) -> Result<()> {
    let Some(family) = net.ips.get(idx).map(|ip| ip.family()) else {
        return Ok(());
    };
    let other = net.ips.iter().enumerate().any(|(i, ip)| {
        i != idx
            && ip.family() == family
            && ip
                .dhcp
                .as_ref()
                .is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty())
    });
    if other {
        return Err(err(
            node,
            format!(
                "DHCP is supported only for a single {} <ip> of a network",
                family.label()
            ),
        ));
    }
    Ok(())
}

fn dhcp_host(
    net: &mut Network,
    op: Op,
    parent_index: Option<usize>,
    node: Node<'_, '_>,
) -> Result<()> {
    let idx = ip_index(net, parent_index, node)?;
    let Some(ip) = net.ips.get(idx).cloned() else {
        return Err(err(node, "no such <ip>"));
    };
    let hosts = ip
        .dhcp
        .as_ref()
        .map(|d| d.hosts.as_slice())
        .unwrap_or_default();
    let name = net.name.clone();
    match op {
        Op::Modify => {
            let host = parse::dhcp_host(node, &ip, false)?.complete(node, &ip)?;
            let found = hosts.iter().position(|h| {
                (host.mac.is_some() && h.mac == host.mac)
                    || h.ip == host.ip
                    || (host.name.is_some() && h.name == host.name)
            });
            let Some(h) = found else {
                return Err(err(
                    node,
                    format!("couldn't locate an existing DHCP host entry with this mac, name or ip in network '{name}'"),
                ));
            };
            DhcpSeen::of(&net.ips, Some((idx, h))).host(node, &host)?;
            if let Some(slot) = dhcp_of(net, idx, node)?.hosts.get_mut(h) {
                *slot = host;
            }
        }
        Op::First | Op::Last => {
            let host = parse::dhcp_host(node, &ip, false)?.complete(node, &ip)?;
            check_multi_dhcp(net, idx, node)?;
            let dup = hosts.iter().any(|h| {
                (host.mac.is_some() && h.mac == host.mac)
                    || (host.name.is_some() && h.name == host.name)
                    || h.ip == host.ip
            });
            if dup {
                return Err(err(
                    node,
                    format!("there is an existing DHCP host entry in network '{name}' that matches this mac, name or ip"),
                ));
            }
            DhcpSeen::of(&net.ips, None).host(node, &host)?;
            insert(&mut dhcp_of(net, idx, node)?.hosts, op, host);
        }
        Op::Delete => {
            let pat = parse::dhcp_host(node, &ip, true)?;
            // Every attribute given must match (libvirt: a host without a MAC matches any).
            let found = hosts.iter().position(|h| {
                (pat.mac.is_none() || h.mac.is_none() || pat.mac == h.mac)
                    && (pat.name.is_none() || pat.name == h.name)
                    && pat.ip.is_none_or(|a| a == h.ip)
            });
            let Some(h) = found else {
                return Err(err(
                    node,
                    format!("couldn't locate a matching DHCP host entry in network '{name}'"),
                ));
            };
            dhcp_of(net, idx, node)?.hosts.remove(h);
            net.drop_empty_dhcp(idx);
        }
    }
    Ok(())
}

fn dhcp_range(
    net: &mut Network,
    op: Op,
    parent_index: Option<usize>,
    node: Node<'_, '_>,
) -> Result<()> {
    let idx = ip_index(net, parent_index, node)?;
    let Some(ip) = net.ips.get(idx).cloned() else {
        return Err(err(node, "no such <ip>"));
    };
    if op == Op::Modify {
        return Err(err(
            node,
            "DHCP ranges cannot be modified, only added or deleted",
        ));
    }
    let range = parse::dhcp_range(node, &ip)?;
    let ranges = ip
        .dhcp
        .as_ref()
        .map(|d| d.ranges.as_slice())
        .unwrap_or_default();
    let found = ranges
        .iter()
        .position(|r| r.start == range.start && r.end == range.end);
    let name = net.name.clone();
    if op == Op::Delete {
        let Some(r) = found else {
            return Err(err(
                node,
                format!("couldn't locate a matching DHCP range entry in network '{name}'"),
            ));
        };
        dhcp_of(net, idx, node)?.ranges.remove(r);
        net.drop_empty_dhcp(idx);
        return Ok(());
    }
    check_multi_dhcp(net, idx, node)?;
    if found.is_some() {
        return Err(err(
            node,
            format!("there is an existing DHCP range entry in network '{name}' that matches"),
        ));
    }
    parse::check_range_overlap(node, &range, ranges)?;
    insert(&mut dhcp_of(net, idx, node)?.ranges, op, range);
    Ok(())
}

fn forward_interface(net: &mut Network, op: Op, node: Node<'_, '_>) -> Result<()> {
    if op == Op::Modify {
        return Err(err(
            node,
            "forward interface entries cannot be modified, only added or deleted",
        ));
    }
    let dev = parse::forward_interface(node)?;
    let found = net.forward.interfaces.iter().position(|d| *d == dev);
    let name = net.name.clone();
    if op == Op::Delete {
        let Some(i) = found else {
            return Err(err_attr(
                node,
                "dev",
                format!("couldn't find an interface entry in network '{name}' matching <interface dev='{dev}'>"),
            ));
        };
        net.forward.interfaces.remove(i);
        return Ok(());
    }
    match net.forward.mode {
        ForwardMode::None => {
            return Err(err(
                node,
                format!("network '{name}' has no <forward>, so it has no forward interfaces"),
            ))
        }
        ForwardMode::Open => {
            return Err(err(
                node,
                "forward mode 'open' does not accept forward interfaces",
            ))
        }
        ForwardMode::Bridge if net.bridge.name.is_some() => {
            return Err(err(
                node,
                "a network with forward mode='bridge' can name a bridge or a forward dev, not both",
            ))
        }
        _ => {}
    }
    if found.is_some() {
        return Err(err_attr(
            node,
            "dev",
            format!("there is an existing interface entry in network '{name}' that matches <interface dev='{dev}'>"),
        ));
    }
    insert(&mut net.forward.interfaces, op, dev);
    Ok(())
}

fn portgroup(net: &mut Network, op: Op, node: Node<'_, '_>) -> Result<()> {
    let pg: PortGroup = parse::portgroup(node)?;
    let found = net.portgroups.iter().position(|p| p.name == pg.name);
    let name = net.name.clone();
    match (op, found) {
        (Op::Modify | Op::Delete, None) => {
            return Err(err_attr(
                node,
                "name",
                format!("couldn't find a portgroup entry in network '{name}' matching <portgroup name='{}'>", pg.name),
            ))
        }
        (Op::First | Op::Last, Some(_)) => {
            return Err(err_attr(
                node,
                "name",
                format!("there is an existing portgroup entry in network '{name}' that matches <portgroup name='{}'>", pg.name),
            ))
        }
        (Op::Delete, Some(i)) => {
            net.portgroups.remove(i);
        }
        (Op::Modify, Some(i)) => {
            parse::check_portgroup_unique(node, &pg, &net.portgroups, Some(i))?;
            if let Some(slot) = net.portgroups.get_mut(i) {
                *slot = pg;
            }
        }
        (Op::First | Op::Last, None) => {
            parse::check_portgroup_unique(node, &pg, &net.portgroups, None)?;
            insert(&mut net.portgroups, op, pg);
        }
    }
    Ok(())
}

fn check_dns_enabled(net: &Network, op: Op, node: Node<'_, '_>) -> Result<()> {
    if matches!(op, Op::First | Op::Last | Op::Modify) && !net.dns.enabled() {
        return Err(err(
            node,
            format!("DNS is disabled (enable='no') in network '{}'", net.name),
        ));
    }
    Ok(())
}

fn dns_host(net: &mut Network, op: Op, node: Node<'_, '_>) -> Result<()> {
    check_dns_enabled(net, op, node)?;
    let pat = parse::dns_host(node, op == Op::Delete)?;
    let name = net.name.clone();
    let hosts = &mut net.dns.hosts;
    match op {
        Op::First | Op::Last => {
            let host = pat.complete(node)?;
            if hosts.iter().any(|h| h.ip == host.ip) {
                return Err(err_attr(
                    node,
                    "ip",
                    format!(
                        "there is already a DNS host record with this address in network '{name}'"
                    ),
                ));
            }
            insert(hosts, op, host);
        }
        Op::Modify => {
            let host = pat.complete(node)?;
            let Some(slot) = hosts.iter_mut().find(|h| h.ip == host.ip) else {
                return Err(err_attr(
                    node,
                    "ip",
                    format!(
                        "couldn't locate a DNS host record with this address in network '{name}'"
                    ),
                ));
            };
            *slot = host;
        }
        Op::Delete => {
            let matching: Vec<usize> = hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    pat.ip == Some(h.ip) || pat.hostnames.iter().any(|n| h.hostnames.contains(n))
                })
                .map(|(i, _)| i)
                .collect();
            match matching.as_slice() {
                [] => {
                    return Err(err(
                        node,
                        format!("couldn't locate a matching DNS host record in network '{name}'"),
                    ))
                }
                [i] => {
                    hosts.remove(*i);
                }
                _ => {
                    return Err(err(
                        node,
                        format!(
                            "multiple matching DNS host records were found in network '{name}'"
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

fn dns_txt(net: &mut Network, op: Op, node: Node<'_, '_>) -> Result<()> {
    check_dns_enabled(net, op, node)?;
    let pat = parse::dns_txt(node, op == Op::Delete)?;
    let name = net.name.clone();
    let txts = &mut net.dns.txts;
    let found = txts.iter().position(|t| t.name == pat.name);
    match (op, found) {
        (Op::First | Op::Last, Some(_)) => Err(err_attr(
            node,
            "name",
            format!(
                "there is already a DNS TXT record named '{}' in network '{name}'",
                pat.name
            ),
        )),
        (Op::First | Op::Last, None) => {
            let value = pat.value.unwrap_or_default();
            insert(
                txts,
                op,
                crate::DnsTxt {
                    name: pat.name,
                    value,
                },
            );
            Ok(())
        }
        (Op::Delete | Op::Modify, None) => Err(err_attr(
            node,
            "name",
            format!(
                "couldn't locate a DNS TXT record named '{}' in network '{name}'",
                pat.name
            ),
        )),
        (Op::Delete, Some(i)) => {
            txts.remove(i);
            Ok(())
        }
        (Op::Modify, Some(i)) => {
            if let (Some(slot), Some(value)) = (txts.get_mut(i), pat.value) {
                slot.value = value;
            }
            Ok(())
        }
    }
}

fn dns_srv(net: &mut Network, op: Op, node: Node<'_, '_>) -> Result<()> {
    check_dns_enabled(net, op, node)?;
    let pat = parse::dns_srv(node, op == Op::Delete)?;
    let name = net.name.clone();
    let srvs = &mut net.dns.srvs;
    let matching: Vec<usize> = srvs
        .iter()
        .enumerate()
        .filter(|(_, s)| pat.matches(s))
        .map(|(i, _)| i)
        .collect();
    match op {
        Op::First | Op::Last => {
            if !matching.is_empty() {
                return Err(err(
                    node,
                    format!("there is already a DNS SRV record matching all given fields in network '{name}'"),
                ));
            }
            let srv = pat.complete(node)?;
            insert(srvs, op, srv);
        }
        Op::Delete | Op::Modify => {
            let i = match matching.as_slice() {
                [i] => *i,
                [] => {
                    return Err(err(
                        node,
                        format!("couldn't locate a matching DNS SRV record in network '{name}'"),
                    ))
                }
                _ => {
                    return Err(err(
                        node,
                        format!("multiple DNS SRV records matching all given fields were found in network '{name}'"),
                    ))
                }
            };
            if op == Op::Delete {
                srvs.remove(i);
            } else {
                let srv = pat.complete(node)?;
                if let Some(slot) = srvs.get_mut(i) {
                    *slot = srv;
                }
            }
        }
    }
    Ok(())
}
